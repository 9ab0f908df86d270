import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ErrorCode, fromWire, TroupeError, toTroupeError } from './errors';
import { validateName } from './names';
import { endpointAddress, mailboxSubject, namespaceEventSubject, queueSubject } from './wire/subjects';

test('errors - retryable derives from the code', () => {
  assert.ok(new TroupeError('NO_INSTANCES', 'x').retryable);
  assert.ok(new TroupeError('OVERLOADED', 'x').retryable);
  assert.not.ok(new TroupeError('BAD_REQUEST', 'x').retryable);
  assert.not.ok(new TroupeError('INTERNAL', 'x').retryable);
});

test('errors - anything thrown is normalised', () => {
  assert.is(toTroupeError(new Error('boom')).code, 'INTERNAL');
  assert.is(toTroupeError(new Error('boom')).message, 'boom');
  assert.is(toTroupeError('a string').message, 'a string');
  assert.is(toTroupeError({ weird: true }).code, 'INTERNAL');
  const te = new TroupeError('NOT_FOUND', 'nope');
  assert.is(toTroupeError(te), te);
  const abort = new Error('aborted');
  abort.name = 'AbortError';
  assert.is(toTroupeError(abort).code, 'CANCELLED');
});

test('errors - wire round trip keeps code, message and data; unknown codes become INTERNAL', () => {
  const e = fromWire(new TroupeError('OVERLOADED', 'full', { data: { capacity: 3 } }).toJSON());
  assert.is(e.code, 'OVERLOADED');
  assert.is(e.message, 'full');
  assert.equal(e.data, { capacity: 3 });
  assert.is(fromWire({ code: 'NOPE', message: 'm' }).code, 'INTERNAL');
  assert.is(fromWire(42).code, 'INTERNAL');
  // Every code (however many there are) survives the wire and names itself; the design's codes all exist.
  for (const [key, code] of Object.entries(ErrorCode)) {
    assert.is(key, code);
    assert.is(fromWire(new TroupeError(code, 'm').toJSON()).code, code, `${code} over the wire`);
  }
  const design = [
    'BAD_REQUEST',
    'NOT_FOUND',
    'NO_INSTANCES',
    'INSTANCE_LOST',
    'TIMEOUT',
    'CANCELLED',
    'OVERLOADED',
    'PAYLOAD_TOO_LARGE',
    'UNAVAILABLE',
    'INTERNAL',
  ];
  for (const code of design) assert.ok(code in ErrorCode, `${code} (DESIGN.md) is an ErrorCode`);
});

test('names - valid names pass, invalid ones name the rule', () => {
  for (const ok of ['decode', 'llama_8b', 'a', 'A-1', 'x'.repeat(64)]) assert.is(validateName('component', ok), ok);
  for (const bad of ['', 'a.b', 'a*', '>', 'a b', '-x', 'x'.repeat(65), 'é', 'a\n']) {
    try {
      validateName('component', bad);
      assert.unreachable(`accepted ${JSON.stringify(bad)}`);
    } catch (err) {
      assert.instance(err, TroupeError);
      assert.is((err as TroupeError).code, 'BAD_REQUEST');
      assert.match((err as Error).message, /component name/);
    }
  }
  try {
    validateName('namespace', '_ev');
    assert.unreachable('accepted a reserved name');
  } catch (err) {
    assert.match((err as Error).message, /reserved/);
  }
});

test('subjects - built from validated names', () => {
  const a = endpointAddress('llama_8b', 'decode', 'generate');
  assert.is(queueSubject(a), 'llama_8b.decode.generate');
  assert.is(mailboxSubject(a, '0123456789abcdef'), 'llama_8b.decode.generate.0123456789abcdef');
  assert.is(namespaceEventSubject('llama_8b', 'kv_events'), 'llama_8b._ev.kv_events');
  assert.throws(() => mailboxSubject(a, 'XYZ'), /instance id/);
  assert.throws(() => endpointAddress('ns', 'comp', 'a.>'), /endpoint name/);
});

test.run();
