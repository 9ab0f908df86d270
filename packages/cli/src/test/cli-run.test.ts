import * as assert from 'uvu/assert';
import * as path from 'node:path';
import { Runtime } from '@troupe/runtime';
import { Cleanup, type NatsServer, serverSuite } from '@troupe/testing';
import type { LsDocument } from '../commands/ls';
import { ExitCode } from '../exit-codes';
import { CliProcess, FIXTURES, runCli } from './cli';

// issue #12: `troupe run ./module.js` serves a module's components and drains on SIGTERM.

const MODULE = path.join(FIXTURES, 'demo.js');
const s = serverSuite('cli - run', new Cleanup());

interface RunLine {
  event: string;
  component?: string;
  endpoints?: string[];
  instanceIds?: string[];
  pid?: number;
  signal?: string;
  drainMs?: number;
}

function startRun(ctx: { cleanup: Cleanup }, args: string[]): CliProcess {
  const p = CliProcess.start(['run', MODULE, '--json', ...args]);
  ctx.cleanup.add(() => p.kill());
  return p;
}

async function ready(p: CliProcess): Promise<RunLine[]> {
  await p.waitForOut((l) => (JSON.parse(l) as RunLine).event === 'ready', 10_000, "run's ready line");
  return p.json<RunLine>();
}

s('run serves every @component the module exports, with --replicas and --properties', async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const p = startRun(ctx, ['--namespace', 'runs', '--replicas', '2', '--properties', 'model=m9', '--properties', 'slots=4', '--server', url]);
  const lines = await ready(p);
  const serving = lines.filter((l) => l.event === 'serving');
  assert.is(serving.length, 1, 'one component (Helper and version are not components)');
  assert.is(serving[0]?.component, 'svc');
  assert.equal(serving[0]?.endpoints, ['work', 'count', 'emit']);
  const ids = serving[0]?.instanceIds as string[];
  assert.is(ids.length, 2);
  const ls = await runCli(['ls', 'runs.svc.work', '--json', '--server', url]);
  const doc = JSON.parse(ls.stdout) as LsDocument;
  assert.equal(new Set(doc.instances.map((i) => i.instanceId)), new Set(ids));
  for (const i of doc.instances) {
    assert.is(i.pid, p.pid, 'served by the run process');
    assert.is(i.properties['model'], 'm9');
    assert.is(i.properties['slots'], 4, 'JSON property values are parsed');
  }
  const call = await runCli(['call', 'runs.svc.work', '--json', '--server', url]);
  assert.ok(ids.includes((JSON.parse(call.stdout) as { reply: { instanceId: string } }).reply.instanceId));
  p.signal('SIGINT');
  const exit = await p.waitExit(10_000);
  assert.is(exit.code, 0);
  assert.is(p.json<RunLine>().at(-1)?.event, 'stopped');
});

s('run drains on SIGTERM: zero failed requests from a concurrent caller', async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const a = startRun(ctx, ['--namespace', 'drain', '--concurrency', '4', '--server', url]);
  const b = startRun(ctx, ['--namespace', 'drain', '--concurrency', '4', '--server', url]);
  const idA = (await ready(a)).find((l) => l.event === 'serving')?.instanceIds?.[0] as string;
  const idB = (await ready(b)).find((l) => l.event === 'serving')?.instanceIds?.[0] as string;
  const rt = ctx.cleanup.runtime(await Runtime.connect({ servers: url }));
  const client = rt.namespace('drain').component('svc').endpoint('work').client<{ ms: number }, { instanceId: string }>();
  await client.waitForInstances(2, { timeout: 5_000 });
  const outcomes: Array<{ ok: boolean; id?: string; error?: string; at: number }> = [];
  let running = true;
  const loop = async (): Promise<void> => {
    while (running) {
      try {
        const r = await client.call({ ms: 20 }, { timeout: 5_000 });
        outcomes.push({ ok: true, id: r.instanceId, at: Date.now() });
      } catch (err) {
        outcomes.push({ ok: false, error: `${(err as { code?: string }).code}: ${(err as Error).message}`, at: Date.now() });
      }
    }
  };
  const callers = Array.from({ length: 4 }, () => loop());
  await new Promise((r) => setTimeout(r, 700));
  const termAt = Date.now();
  a.signal('SIGTERM');
  const exit = await a.waitExit(15_000);
  const exitedAt = Date.now();
  await new Promise((r) => setTimeout(r, 500));
  running = false;
  await Promise.all(callers);
  const failed = outcomes.filter((o) => !o.ok);
  const byA = outcomes.filter((o) => o.id === idA);
  const lateA = byA.filter((o) => o.at > exitedAt);
  const stopped = a.json<RunLine>().at(-1);
  console.log(
    `cli run: SIGTERM under 4 concurrent callers: ${outcomes.length} requests, ${failed.length} failed; ` +
      `${byA.length} served by the stopped process, which exited ${exitedAt - termAt} ms after SIGTERM (drain ${String(stopped?.drainMs)} ms)`,
  );
  assert.is(exit.code, 0, a.err.join('\n'));
  assert.is(stopped?.event, 'stopped');
  assert.is(failed.length, 0, failed.map((f) => f.error).join('; '));
  assert.ok(byA.length > 0, 'the stopped process served requests before SIGTERM');
  assert.is(lateA.length, 0, 'nothing answered by the stopped process after it exited');
  assert.ok(
    outcomes.some((o) => o.id === idB && o.at > exitedAt),
    'the other process kept serving',
  );
});

s('run: bad input is a one-line usage error (exit 2)', async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const cases = [
    ['run', MODULE, '--server', url],
    ['run', MODULE, '--namespace', 'x', '--component', 'Nope', '--server', url],
    ['run', '/nonexistent/mod.js', '--namespace', 'x', '--server', url],
    ['run', MODULE, '--namespace', 'bad.name', '--server', url],
    ['run', MODULE, '--namespace', 'x', '--properties', 'novalue', '--server', url],
    ['run', MODULE, '--namespace', 'x', '--replicas', '0', '--server', url],
  ];
  for (const args of cases) {
    const r = await runCli(args);
    assert.is(r.code, ExitCode.USAGE, `troupe ${args.join(' ')}: ${r.stderr}`);
    assert.is(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /^troupe: USAGE: /);
  }
  // --component picks by component or class name.
  const p = startRun(ctx, ['--namespace', 'pick', '--component', 'Svc', '--server', url]);
  assert.is((await ready(p)).filter((l) => l.event === 'serving').length, 1);
});

s.run();
