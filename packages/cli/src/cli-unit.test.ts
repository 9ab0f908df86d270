import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Readable } from 'node:stream';
import { TroupeError } from '@troupe/runtime/internal';
import { parseEndpoint, parseScope } from './address';
import { readBody, toJson } from './body';
import { parseFrom } from './commands/events';
import { parseProperties } from './commands/run';
import { aggregate } from './commands/stats';
import { CliError, ExitCode, toCliError } from './exit-codes';
import { formatAge, formatProperties } from './output';
import type { MicroStats } from './micro';

// Pure pieces of the CLI: no network, no processes.

test('scope - parses ns, ns.comp, ns.comp.ep and refuses bad names as usage errors', () => {
  assert.equal(parseScope('a.b', 3), { namespace: 'a', component: 'b', endpoint: undefined, text: 'a.b' });
  assert.equal(parseScope(undefined, 3).text, '');
  assert.equal(parseEndpoint('llama_8b.decode.generate'), { namespace: 'llama_8b', component: 'decode', endpoint: 'generate' });
  for (const bad of ['a.b', 'a.b.c.d', 'a..c', 'a.*.c', 'a.b.>', '_x.b.c']) {
    assert.throws(
      () => parseEndpoint(bad),
      (e: unknown) => e instanceof CliError && e.code === 'USAGE',
      bad,
    );
  }
  assert.throws(
    () => parseScope('a.b.c', 2),
    (e: unknown) => e instanceof CliError && e.exitCode === ExitCode.USAGE,
  );
});

test('body - inline JSON, stdin, none; bad JSON is a usage error', async () => {
  assert.equal(await readBody('{"a":[1,2]}'), { a: [1, 2] });
  assert.is(await readBody(undefined), undefined);
  assert.equal(await readBody('-', Readable.from(['{"x":', '1}'])), { x: 1 });
  try {
    await readBody('{nope');
    assert.unreachable('bad JSON accepted');
  } catch (e) {
    assert.ok(e instanceof CliError && e.code === 'USAGE');
  }
  assert.is(toJson({ n: 2n ** 64n, b: new Uint8Array([1, 2]) }), '{"n":"18446744073709551616","b":{"$binary":"AQI="}}');
  assert.is(toJson(undefined), 'null');
});

test('exit codes - one per kind, TroupeErrors by their code', () => {
  assert.is(toCliError(new TroupeError('NO_INSTANCES', 'x')).exitCode, 4);
  assert.is(toCliError(new TroupeError('TIMEOUT', 'x')).exitCode, 5);
  assert.is(toCliError(new TroupeError('BAD_REQUEST', 'x')).exitCode, ExitCode.BAD_REQUEST);
  assert.is(toCliError(new TroupeError('BAD_REQUEST', 'x'), { local: true }).exitCode, ExitCode.USAGE);
  assert.is(toCliError(new Error('a\n  b')).message, 'a b');
  assert.is(toCliError('odd').exitCode, ExitCode.OTHER);
  const codes = Object.values(ExitCode);
  assert.is(new Set(codes).size, codes.length, 'exit codes are distinct');
});

test('events --from - start, new, ages and ISO times', () => {
  assert.is(parseFrom('start'), 'all');
  assert.is(parseFrom('new'), 'new');
  assert.is((parseFrom('10m', 1_000_000_000) as Date).getTime(), 1_000_000_000 - 600_000);
  assert.is((parseFrom('2026-11-30T12:00:00Z') as Date).toISOString(), '2026-11-30T12:00:00.000Z');
  assert.throws(
    () => parseFrom('yesterday'),
    (e: unknown) => e instanceof CliError && e.code === 'USAGE',
  );
});

test('run --properties - JSON values parsed, bare strings kept', () => {
  assert.equal(parseProperties(['model=llama3', 'slots=4', 'gpu=true', 'tags=["a"]', 'eq=a=b']), {
    model: 'llama3',
    slots: 4,
    gpu: true,
    tags: ['a'],
    eq: 'a=b',
  });
  assert.throws(
    () => parseProperties(['=x']),
    (e: unknown) => e instanceof CliError && e.code === 'USAGE',
  );
});

test('stats - folds micro stats responses per endpoint, filters by metadata', () => {
  const reply = (id: string, ns: string, [requests, errors, timeNs]: [number, number, number]): MicroStats => ({
    type: 'io.nats.micro.v1.stats_response',
    name: `${ns}-svc`,
    id,
    version: '0.1.0',
    metadata: { namespace: ns, component: 'svc', host: 'h', pid: '7' },
    endpoints: [
      {
        name: 'work',
        subject: `${ns}.svc.work`,
        num_requests: requests,
        num_errors: errors,
        processing_time: timeNs,
        average_processing_time: requests ? timeNs / requests : 0,
        data: { load: requests },
      },
    ],
  });
  const eps = aggregate(
    { namespace: 'a', component: undefined },
    [reply('i1', 'a', [3, 1, 3e6]), reply('i2', 'a', [1, 0, 5e6]), reply('i1', 'a', [3, 1, 3e6]), reply('i3', 'b', [9, 9, 1])],
    [],
  );
  assert.is(eps.length, 1);
  assert.is(eps[0]?.requests, 4, 'a duplicate answer counts once, another namespace not at all');
  assert.is(eps[0]?.errors, 1);
  assert.is(eps[0]?.averageLatencyMs, 2, '8 ms over 4 requests');
  assert.equal(
    eps[0]?.instances.map((i) => [i.instanceId, i.requests, i.averageLatencyMs, i.load['load'], i.pid]),
    [
      ['i1', 3, 1, 3, 7],
      ['i2', 1, 5, 1, 7],
    ],
  );
});

test('format - ages and properties', () => {
  assert.is(formatAge(59_999), '59s');
  assert.is(formatAge(61_000), '1m01s');
  assert.is(formatAge(3_600_000 * 25), '1d1h');
  assert.is(formatProperties({ b: 1, a: 'x', c: { d: 2 } }), 'a=x b=1 c={"d":2}');
});

test.run();
