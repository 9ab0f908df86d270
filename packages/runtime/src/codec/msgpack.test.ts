import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TroupeError } from '../errors';
import { MsgpackCodec } from './msgpack';

const codec = new MsgpackCodec();

test('codec - Uint8Array, Date and bigint round-trip', () => {
  const at = new Date('2026-11-27T10:00:00.123Z');
  const value = { bytes: new Uint8Array([1, 2, 255]), at, big: 2n ** 70n, neg: -(2n ** 64n), n: 2 ** 40, s: 'x' };
  const back = codec.decode(codec.encode(value)) as typeof value;
  assert.instance(back.bytes, Uint8Array);
  assert.equal([...back.bytes], [1, 2, 255]);
  assert.instance(back.at, Date);
  assert.is(back.at.getTime(), at.getTime());
  assert.is(back.big, 2n ** 70n);
  assert.is(back.neg, -(2n ** 64n));
  assert.is(back.n, 2 ** 40, 'a large plain number stays a number');
  assert.is(back.s, 'x');
});

test('codec - garbage and truncated bytes are BAD_REQUEST, never a crash', () => {
  const good = codec.encode({ a: [1, 2, 3], b: 'hello' });
  for (const bad of [new Uint8Array([0xc1]), good.subarray(0, good.length - 2), new Uint8Array([0xdd, 0xff, 0xff, 0xff, 0xff])]) {
    try {
      codec.decode(bad);
      assert.unreachable('decoded garbage');
    } catch (err) {
      assert.instance(err, TroupeError);
      assert.is((err as TroupeError).code, 'BAD_REQUEST');
    }
  }
});

test('codec - __proto__ keys are refused', () => {
  // map(1) { "__proto__": 1 }
  const bytes = new Uint8Array([0x81, 0xa9, ...Buffer.from('__proto__'), 0x01]);
  try {
    codec.decode(bytes);
    assert.unreachable('accepted __proto__');
  } catch (err) {
    assert.is((err as TroupeError).code, 'BAD_REQUEST');
  }
});

test('codec - nesting deeper than the limit is refused', () => {
  const depth = 5000;
  const bytes = new Uint8Array(depth + 1).fill(0x91); // array(1) of array(1) of ...
  bytes[depth] = 0x01;
  try {
    codec.decode(bytes);
    assert.unreachable('decoded 5000-deep nesting');
  } catch (err) {
    assert.is((err as TroupeError).code, 'BAD_REQUEST');
    assert.match((err as Error).message, /depth/);
  }
  const ok = new Uint8Array(51).fill(0x91);
  ok[50] = 0x01;
  assert.ok(codec.decode(ok), 'nesting within the limit decodes');
});

test('codec - length limits apply', () => {
  const small = new MsgpackCodec({ maxStrLength: 4 });
  try {
    small.decode(small.encode('hello world'));
    assert.unreachable('decoded an over-long string');
  } catch (err) {
    assert.is((err as TroupeError).code, 'BAD_REQUEST');
  }
});

test('codec - undefined map values are dropped and empty bytes decode to undefined', () => {
  assert.equal(codec.decode(codec.encode({ a: 1, b: undefined })), { a: 1 });
  assert.is(codec.decode(new Uint8Array(0)), undefined);
});

test('codec - values it cannot carry are BAD_REQUEST', () => {
  try {
    codec.encode({ f: Symbol('x') });
    assert.unreachable('encoded a symbol');
  } catch (err) {
    assert.is((err as TroupeError).code, 'BAD_REQUEST');
  }
});

test.run();
