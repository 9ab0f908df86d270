import { DecodeError, Decoder, Encoder, ExtData, ExtensionCodec } from '@msgpack/msgpack';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TroupeError } from '../errors';
import { DEFAULT_DECODE_LIMITS } from './codec';
import { MsgpackCodec } from './msgpack';
import { OnePassDecoder, portableLatin1Slice } from './one-pass-decoder';

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

test('codec - an extension longer than maxBinLength is refused as the library refuses it', () => {
  const limits = { maxBinLength: 16 };
  const small = new MsgpackCodec(limits);
  const bytes = new Uint8Array([0xc7, 32, 5, ...new Uint8Array(32)]);
  const library = new Decoder({ ...DEFAULT_DECODE_LIMITS, ...limits });
  assert.throws(() => library.decode(bytes), /maxBinLength/);
  try {
    small.decode(bytes);
    assert.unreachable('decoded an extension over maxBinLength');
  } catch (err) {
    assert.is((err as TroupeError).code, 'BAD_REQUEST');
    assert.match((err as Error).message, /maxBinLength/);
  }
  assert.ok(new MsgpackCodec().decode(bytes) instanceof ExtData, 'within the default limits it decodes');
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

/** The library's encoder as the codec configured it before the one-pass encoder: the reference for byte-identical output. */
function libraryEncoder(maxDepth = 100): Encoder {
  const extensionCodec = new ExtensionCodec();
  extensionCodec.register({
    type: 0,
    encode: (v: unknown) => (typeof v === 'bigint' ? Buffer.from(v.toString(), 'utf8') : null),
    decode: () => null,
  });
  return new Encoder({ extensionCodec, ignoreUndefined: true, maxDepth });
}

/** mulberry32: a seeded generator, so a failing value can be rebuilt from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Every integer and float boundary of msgpack's number formats, each side of it. */
const NUMBERS = [
  0,
  -0,
  1,
  -1,
  0x7f,
  0x80,
  0xff,
  0x100,
  0xffff,
  0x10000,
  0xffffffff,
  0x100000000,
  Number.MAX_SAFE_INTEGER,
  Number.MAX_SAFE_INTEGER + 1,
  -0x20,
  -0x21,
  -0x80,
  -0x81,
  -0x8000,
  -0x8001,
  -0x80000000,
  -0x80000001,
  Number.MIN_SAFE_INTEGER,
  Number.MIN_SAFE_INTEGER - 1,
  0.5,
  -2.25,
  1e300,
  -1e-300,
  Number.EPSILON,
  NaN,
  Infinity,
  -Infinity,
  2 ** 53,
  -(2 ** 63),
  2 ** 64,
  3.4028234663852886e38,
];
const STRINGS = [
  '',
  'a',
  'é',
  '€',
  '😀',
  'x'.repeat(31),
  'x'.repeat(32),
  'é'.repeat(16),
  'x'.repeat(50),
  'x'.repeat(51),
  '€'.repeat(51),
  'x'.repeat(255),
  'x'.repeat(256),
  'x'.repeat(65_535),
  'x'.repeat(65_536),
  '\ud800',
  'a\udc00b',
  'x'.repeat(60) + '\ud83d',
  '😀'.repeat(20) + '\ud800',
];

class Point {
  constructor(
    readonly x: number,
    readonly y?: number,
  ) {}
}

function randomValue(rnd: () => number, depth: number): unknown {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rnd() * list.length)] as T;
  const leaf = depth > 4 || rnd() < 0.45;
  const kind = Math.floor(rnd() * (leaf ? 11 : 17));
  switch (kind) {
    case 0:
      return pick(NUMBERS);
    case 1:
      return Math.floor((rnd() - 0.5) * 2 ** Math.floor(rnd() * 60));
    case 2:
      return (rnd() - 0.5) * 10 ** Math.floor(rnd() * 20);
    case 3:
      return pick(STRINGS);
    case 4: {
      let s = '';
      const n = Math.floor(rnd() * 70);
      for (let i = 0; i < n; i++) s += String.fromCharCode(rnd() < 0.7 ? 32 + Math.floor(rnd() * 95) : Math.floor(rnd() * 0x10000));
      return s;
    }
    case 5:
      return pick([true, false, null, undefined]);
    case 6:
      return new Date(Math.floor((rnd() - 0.3) * 2 ** 45) + pick([0, 0.5]));
    case 7:
      return pick([0n, 1n, -1n, 2n ** 64n, -(2n ** 70n), 12345678901234567890n]);
    case 8:
      return Uint8Array.from({ length: pick([0, 1, 255, 256, 70_000]) }, (_, i) => i & 0xff);
    case 9:
      return pick([new Float64Array([1.5, -2]), Buffer.from('buf'), new DataView(new ArrayBuffer(3)), new Uint8Array(8).subarray(2, 5)]);
    case 10:
      return new ExtData(7, new Uint8Array([1, 2, 3]));
    case 11:
    case 12: {
      const n = pick([0, 1, 3, 15, 16, 17]);
      const o: Record<string, unknown> = {};
      for (let i = 0; i < n; i++) o[pick(['a', 'id', 'é', 'key' + i, 'k'.repeat(40) + i, String(i)])] = randomValue(rnd, depth + 1);
      return o;
    }
    case 13: {
      const n = pick([0, 2, 15, 16, 17]);
      return Array.from({ length: n }, () => randomValue(rnd, depth + 1));
    }
    case 14: {
      const o = Object.create(null) as Record<string, unknown>;
      o.x = randomValue(rnd, depth + 1);
      o.u = undefined;
      return o;
    }
    case 15:
      return rnd() < 0.5 ? new Point(1, undefined) : new Map([['a', 1]]);
    default: {
      // Objects whose defined values fall under a header boundary of their key count (17 keys, 2 defined; 65,536 keys, 15 defined).
      const o: Record<string, unknown> = {};
      const keys = rnd() < 0.9 ? 17 : 65_536;
      for (let i = 0; i < keys; i++) o['k' + i] = i % (keys > 17 ? 4_000 : 8) === 0 ? randomValue(rnd, depth + 1) : undefined;
      return o;
    }
  }
}

test('codec - encodes byte for byte as @msgpack/msgpack for random values', () => {
  const reference = libraryEncoder();
  const fresh = new MsgpackCodec();
  for (let seed = 1; seed <= 3_000; seed++) {
    const value = randomValue(prng(seed), 0);
    const want = reference.encode(value);
    const got = fresh.encode(value);
    if (Buffer.compare(Buffer.from(got), Buffer.from(want)) !== 0) {
      assert.unreachable(`seed ${seed}: ${Buffer.from(got).toString('hex').slice(0, 200)} != ${Buffer.from(want).toString('hex').slice(0, 200)}`);
    }
    assert.equal(Buffer.from(fresh.encodeShared(value)), Buffer.from(want), `seed ${seed}, shared`);
  }
});

test('codec - edge values encode as @msgpack/msgpack does', () => {
  const reference = libraryEncoder();
  const sparse = [1, , 3]; // eslint-disable-line no-sparse-arrays
  const withGetter = {
    get g() {
      return 'got';
    },
    n: 1,
  };
  const values: unknown[] = [
    ...NUMBERS,
    ...STRINGS,
    sparse,
    withGetter,
    [undefined, { a: undefined }],
    { a: new Date(0), b: 1n, c: [new Date(-1)] },
    Object.assign(Object.create(null), { a: 1 }),
    new Point(2, 3),
    new Map(),
    new Set([1]),
    { d: new (class extends Date {})(5) },
    'x'.repeat(1 << 20),
    // An extension whose bytes depend on their offset in the output (the library passes it).
    { pad: 'ab', e: [1, new ExtData(-5, (at: number) => new Uint8Array([at & 0xff, 9]))] },
  ];
  values.forEach((v, i) => assert.equal(Buffer.from(codec.encode(v)), Buffer.from(reference.encode(v)), `value ${i}`));
});

test("codec - the depth limit and its error are the library's", () => {
  const small = new MsgpackCodec({ maxDepth: 5 });
  const reference = libraryEncoder(5);
  let ok: unknown = 1;
  for (let i = 0; i < 3; i++) ok = [ok]; // the 1 at depth 5 in { a: ok }
  assert.equal(Buffer.from(small.encode({ a: ok })), Buffer.from(reference.encode({ a: ok })), 'at the limit');
  for (const deep of [[[ok]], { a: { b: ok } }, [[[[[null]]]]]]) {
    let message = '';
    try {
      reference.encode(deep);
    } catch (err) {
      message = (err as Error).message;
    }
    try {
      small.encode(deep);
      assert.unreachable('encoded past the depth limit');
    } catch (err) {
      assert.is((err as TroupeError).code, 'BAD_REQUEST');
      assert.is((err as Error).message, `cannot encode value: ${message}`);
    }
  }
  for (const bad of [{ f: () => 1 }, [Symbol('s')]]) {
    let message = '';
    try {
      reference.encode(bad);
    } catch (err) {
      message = (err as Error).message;
    }
    assert.throws(
      () => codec.encode(bad),
      (err: Error) => err.message === `cannot encode value: ${message}`,
    );
  }
});

test('codec - a getter that encodes while encoding gets its own bytes', () => {
  const inner = { n: 1 };
  const outer = {
    get nested() {
      return codec.decode(codec.encodeShared(inner));
    },
    after: 'x',
  };
  assert.equal(codec.decode(codec.encode(outer)), { nested: { n: 1 }, after: 'x' });
});

/** The library's decoder as the codec configured it before the one-pass decoder (its depth limit aside): the reference for decoded values and errors. */
function libraryDecoder(extensionCodec = bigintExtensions()): Decoder {
  const l = DEFAULT_DECODE_LIMITS;
  return new Decoder({
    extensionCodec,
    maxStrLength: l.maxStrLength,
    maxBinLength: l.maxBinLength,
    maxArrayLength: l.maxArrayLength,
    maxMapLength: l.maxMapLength,
    maxExtLength: l.maxExtLength,
  });
}

function bigintExtensions(): ExtensionCodec {
  const ext = new ExtensionCodec();
  ext.register({
    type: 0,
    encode: () => null,
    decode: (data: Uint8Array) => {
      const text = Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8');
      if (!/^-?\d{1,4096}$/.test(text)) throw new DecodeError(`malformed bigint extension`);
      return BigInt(text);
    },
  });
  return ext;
}

/** A one-pass decoder over the reference, counting the inputs it hands the library. */
function countingDecoder(): { decoder: OnePassDecoder; fallbacks: () => number } {
  const extensionCodec = bigintExtensions();
  const library = libraryDecoder(extensionCodec);
  let fallbacks = 0;
  const counting = {
    decode: (bytes: Uint8Array) => {
      fallbacks++;
      return library.decode(bytes);
    },
  } as unknown as Decoder;
  return { decoder: new OnePassDecoder({ library: counting, extensionCodec, limits: DEFAULT_DECODE_LIMITS }), fallbacks: () => fallbacks };
}

/** Deep equality that tells -0 from 0, NaN from a number, a Uint8Array from an array, and compares key order and prototypes. */
function same(a: unknown, b: unknown, path = '$'): string | undefined {
  if (typeof a !== typeof b) return `${path}: ${typeof a} != ${typeof b}`;
  if (typeof a !== 'object' || a === null || b === null) return Object.is(a, b) ? undefined : `${path}: ${String(a)} != ${String(b)}`;
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return `${path}: prototypes differ`;
  if (a instanceof Date) return Object.is(a.getTime(), (b as Date).getTime()) ? undefined : `${path}: dates differ`;
  if (a instanceof Uint8Array) {
    const c = b as Uint8Array;
    if (a.byteOffset !== c.byteOffset || a.buffer.byteLength !== c.buffer.byteLength) return `${path}: a view and a copy`;
    return a.length === c.length && a.every((x, i) => x === c[i]) ? undefined : `${path}: bytes differ`;
  }
  if (a instanceof ExtData) return a.type === (b as ExtData).type ? same(a.data, (b as ExtData).data, `${path}.data`) : `${path}: ext types differ`;
  const ka = Object.keys(a);
  const kb = Object.keys(b as object);
  if (ka.join('\u0000') !== kb.join('\u0000')) return `${path}: keys ${ka.join(',')} != ${kb.join(',')}`;
  for (const k of ka) {
    const d = same((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${path}.${k}`);
    if (d !== undefined) return d;
  }
  return undefined;
}

/** What decoding `bytes` gives: the value, or the thrown error's class and message. */
function outcome(decode: (bytes: Uint8Array) => unknown, bytes: Uint8Array): { value?: unknown; error?: string } {
  try {
    return { value: decode(bytes) };
  } catch (err) {
    return { error: `${(err as Error).constructor.name}: ${(err as Error).message}` };
  }
}

test('codec - decodes as @msgpack/msgpack for random values, without handing them to it', () => {
  const { decoder, fallbacks } = countingDecoder();
  const reference = libraryDecoder();
  for (let seed = 1; seed <= 3_000; seed++) {
    const bytes = codec.encode(randomValue(prng(seed), 0));
    const diff = same(decoder.decode(bytes), reference.decode(bytes));
    if (diff !== undefined) assert.unreachable(`seed ${seed}: ${diff}`);
  }
  assert.is(fallbacks(), 0, 'plain encodings are decoded by the one-pass decoder itself');
});

test('codec - decodes what its encoder never writes as @msgpack/msgpack does', () => {
  const { decoder } = countingDecoder();
  const reference = libraryDecoder();
  const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/ /g, ''), 'hex'));
  const cases = [
    'ca 3f c0 00 00', // float 32
    'ca ff c0 00 00', // float 32 NaN
    'cf ff ff ff ff ff ff ff ff', // uint 64 above 2^53
    'd3 80 00 00 00 00 00 00 01', // int 64 near its minimum
    'd3 ff ff ff ff ff ff ff fe', // int 64 -2
    'd0 80 d1 80 00 d2 80 00 00 00'.slice(0, 5), // int 8 -128
    'd1 80 00',
    'd2 80 00 00 00',
    '82 01 a1 61 cb 3f f8 00 00 00 00 00 00 a1 62', // map with a number key, then a float key
    '82 a1 62 01 a1 61 02', // key order as written
    '82 a1 61 01 a1 61 02', // a duplicate key: the last wins
    'a3 e2 82 ac', // €
    'a2 c3 28', // invalid continuation
    'a2 80 81', // stray continuation bytes
    'a4 f4 90 80 80', // past U+10FFFF
    'a3 ed a0 80', // an encoded surrogate
    'a4 f8 88 80 80', // 0xf8 lead
    'd9 d2 ef bb bf' + '61'.repeat(207), // a BOM in a long string (TextDecoder)
    'd9 10 ef bb bf' + '61'.repeat(13), // a BOM in a short one
    'c4 03 01 02 03', // bin 8
    'd6 ff 00 00 00 01', // timestamp 32
    'd7 ff 00 00 00 04 00 00 00 01', // timestamp 64
    'c7 0c ff 00 00 00 01 00 00 00 00 00 00 00 02', // timestamp 96
    'd4 05 07', // an unknown extension
    'c7 02 00 31 32', // bigint 12
    'dc 00 01 c0', // array 16
    'de 00 01 a1 61 c2', // map 16
    'df 00 00 00 01 a1 61 c3', // map 32
    'dd 00 00 00 01 90', // array 32
    '80',
    '90',
    // Refused: the library's own errors.
    'c1',
    '81 a9 5f 5f 70 72 6f 74 6f 5f 5f 01', // __proto__
    '81 c0 01', // a nil key
    '81 90 01', // an array key
    '81 c3 01', // a bool key
    '01 02', // trailing bytes
    'a2 e2 82', // a sequence past its string, at the end
    '92 a2 e2 82 ac', // a sequence past its string, into the next value
    'd6 00 00 00 00 01', // a malformed bigint
    'd6 ff 00 00', // a truncated timestamp
    'c7 05 ff 00 00 00 00 00', // a timestamp of a bad size
    'dd ff ff ff ff', // an array past its limit
    'df 00 10 00 01', // a map past its limit
    'dc 00 05 01',
    'cb 00',
    'cf 00 00',
    'd9',
  ];
  for (const c of cases) {
    const bytes = hex(c);
    const got = outcome((b) => decoder.decode(b), bytes);
    const want = outcome((b) => reference.decode(b), bytes);
    assert.is(got.error, want.error, c);
    const diff = same(got.value, want.value);
    if (diff !== undefined) assert.unreachable(`${c}: ${diff}`);
  }
});

test('codec - short strings that share a cache slot decode as themselves', () => {
  const { decoder } = countingDecoder();
  const strings = Array.from({ length: 5_000 }, (_, i) => `k${String(i).padStart(5, '0')}`);
  const bytes = codec.encode([strings, Object.fromEntries(strings.map((k, i) => [k, i]))]);
  for (let round = 0; round < 2; round++) {
    const diff = same(decoder.decode(bytes), libraryDecoder().decode(bytes));
    if (diff !== undefined) assert.unreachable(`round ${round}: ${diff}`);
  }
});

test('codec - truncated and corrupted bytes decode or fail as @msgpack/msgpack does', () => {
  const { decoder } = countingDecoder();
  const reference = libraryDecoder();
  let refused = 0;
  for (let seed = 1; seed <= 3_000; seed++) {
    const rnd = prng(seed * 7919);
    const good = codec.encode(randomValue(prng(seed), 0));
    if (good.length > 4_096) continue;
    const bytes = Uint8Array.from(good);
    let bad: Uint8Array;
    const how = Math.floor(rnd() * 4);
    if (how === 0) bad = bytes.subarray(0, Math.floor(rnd() * bytes.length));
    else if (how === 1) bad = Uint8Array.from([...bytes, Math.floor(rnd() * 256)]);
    else {
      for (let i = 0; i < how; i++) bytes[Math.floor(rnd() * bytes.length)] = Math.floor(rnd() * 256);
      bad = bytes;
    }
    if (bad.length === 0) continue;
    const got = outcome((b) => decoder.decode(b), bad);
    const want = outcome((b) => reference.decode(b), bad);
    if (got.error !== want.error) assert.unreachable(`seed ${seed}: ${String(got.error)} != ${String(want.error)}`);
    const diff = same(got.value, want.value);
    if (diff !== undefined) assert.unreachable(`seed ${seed}: ${diff}`);
    if (want.error !== undefined) refused++;
  }
  assert.ok(refused > 1_000, `most corruptions are refused (${refused})`);
});

test('codec - the decode depth limit is the same at its edge', () => {
  const small = new MsgpackCodec({ maxDepth: 5 });
  const nest = (n: number, leaf: number[]) => Uint8Array.from([...new Array<number>(n).fill(0x91), ...leaf]);
  assert.equal(small.decode(nest(5, [0x01])), [[[[[1]]]]]);
  assert.equal(small.decode(nest(5, [0x90])), [[[[[[]]]]]], 'an empty array adds no depth');
  assert.equal(small.decode(nest(4, [0x81, 0xa1, 0x61, 0x01])), [[[[{ a: 1 }]]]]);
  for (const deep of [nest(6, [0x01]), nest(5, [0x81, 0xa1, 0x61, 0x01]), nest(4, [0x81, 0x91, 0x01, 0x01])]) {
    assert.throws(
      () => small.decode(deep),
      (err: Error) => err.message === 'malformed msgpack body: max depth exceeded: nesting deeper than 5' || err.message.includes('key must be string'),
    );
  }
});

test("codec - the portable Latin-1 slice builds the strings Node's native one does", () => {
  const native = (Buffer.prototype as unknown as { latin1Slice(this: Uint8Array, s: number, e: number): string }).latin1Slice;
  const bytes = new Uint8Array(256).map((_, i) => (i * 7 + 3) & 0x7f);
  for (const [start, end] of [
    [0, 0],
    [0, 33],
    [5, 200],
    [100, 256],
  ] as const) {
    assert.is(portableLatin1Slice.call(bytes, start, end), native.call(bytes, start, end));
  }
});

test.run();
