import { spawnSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MsgpackCodec } from '../codec/msgpack';
import { TroupeError } from '../errors';
import { copyValue, headerBlockSize, type LocalTarget, LocalTargets, localWireError, sizeValue } from './local-calls';

const codec = new MsgpackCodec();

/** Values across every size class of msgpack's formats (fix, 8, 16, 32 bits) and the codec's special rules. */
const SAMPLES: Record<string, unknown> = {
  small: { id: 123456, user: 'ada@example.com', op: 'echo', tags: ['alpha', 'beta'], values: [1.5, 2.25], ok: true },
  ints: [0, -0, 1, 127, 128, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, -1, -32, -33, -128, -129, -32_768, -32_769, -(2 ** 31), -(2 ** 31) - 1],
  floats: [0.5, -1.25, Number.MAX_SAFE_INTEGER + 2, Number.NaN, Number.POSITIVE_INFINITY],
  strings: ['', 'a'.repeat(31), 'a'.repeat(32), 'a'.repeat(255), 'a'.repeat(256), 'a'.repeat(65_535), 'a'.repeat(65_536), 'café ✓ 日本', '😀'.repeat(20)],
  // arrays are walked by their first element's type (numbers, else the rest): every kind after either first
  mixed: [
    [1, 'a', -0, undefined, 1.5, true, null, { x: -0 }, [2]],
    ['a', -0, 1.5, undefined, true, null, 'é', [-0]],
    [undefined, -0],
    [null, 'b'],
  ],
  undefinedRules: { a: undefined, b: [undefined, null], c: { d: undefined } },
  arrays: [Array.from({ length: 15 }, (_, i) => i), Array.from({ length: 16 }, (_, i) => i), Array.from({ length: 70_000 }, () => 1)],
  maps: [Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`k${i}`, i])), Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, i]))],
  binary: [new Uint8Array(0), new Uint8Array(255), new Uint8Array(256), new Uint8Array(70_000), Buffer.from('hi')],
  dates: [new Date(0), new Date(1_700_000_000_000), new Date(1_700_000_000_123), new Date(-1), new Date(2 ** 34 * 1000 + 5)],
  nullProto: Object.assign(Object.create(null) as object, { x: 1 }),
  top: undefined,
  nested: { a: { b: { c: { d: [{ e: 'f' }] } } } },
  // not plain: the codec's own round trip
  bigints: [2n ** 70n, -5n],
  classes: [
    new (class Point {
      x = 1;
      y = 2;
    })(),
  ],
  map: new Map([['k', 1]]),
  deep: JSON.parse('{"a":'.repeat(40) + '1' + '}'.repeat(40)) as unknown,
};

test('copyValue - gives what the codec delivers and its exact encoded size', () => {
  for (const [name, value] of Object.entries(SAMPLES)) {
    const bytes = codec.encode(value);
    const c = copyValue(codec, value);
    assert.is(c.size, bytes.length, `${name}: size`);
    assert.equal(c.value, codec.decode(bytes), `${name}: value`);
  }
});

test('sizeValue - gives the value itself and its exact encoded size; what the codec cannot carry fails alike', () => {
  for (const [name, value] of Object.entries(SAMPLES)) {
    const c = sizeValue(codec, value);
    assert.is(c.value, value, `${name}: the same value`);
    assert.is(c.size, codec.encode(value).length, `${name}: size`);
  }
  assert.throws(() => sizeValue(codec, { f: () => 1 }));
  assert.throws(() => codec.encode({ f: () => 1 }));
});

test('copyValue - a string field sized once is sized again when its value changes (repeats, same length, non-ASCII, long)', () => {
  const values = ['echo', 'echo', 'ecHo', 'écho', 'écho', 'x'.repeat(31), 'é'.repeat(31), 'x'.repeat(40), 'é'.repeat(40), '', 'echo', '日本'];
  for (const [i, s] of values.entries()) {
    // One shape (keys k, n) throughout: its compiled copier and measurer see every value at the same field.
    const v = { k: s, n: i };
    const size = codec.encode(v).length;
    const c = copyValue(codec, v);
    assert.is(c.size, size, `copy of ${JSON.stringify(s)}`);
    assert.equal(c.value, v);
    assert.is(sizeValue(codec, v).size, size, `measure of ${JSON.stringify(s)}`);
    assert.is(copyValue(codec, c.value).size, size, `copy of the copy of ${JSON.stringify(s)}`);
  }
});

test('copyValue - a string field whose values keep changing (it stops and resumes remembering) is sized exactly throughout', () => {
  // Distinct values past the misses that stop the field's remembering and the count that resumes it, then repeats.
  const values = [
    ...Array.from({ length: 150 }, (_, i) => (i % 3 === 0 ? `é${i}` : `v${String(i).padStart(3, '0')}`)),
    ...Array.from({ length: 10 }, () => 'same'),
    'samé',
    'same',
  ];
  for (const s of values) {
    const v = { rotating: s, n: 1 };
    const size = codec.encode(v).length;
    assert.is(copyValue(codec, v).size, size, `copy of ${s}`);
    assert.is(sizeValue(codec, v).size, size, `measure of ${s}`);
  }
});

test('copyValue - the copy shares nothing mutable with the original', () => {
  const v = { list: [1, { n: 1 }], at: new Date(5), bin: new Uint8Array([1]) };
  const c = copyValue(codec, v).value as typeof v;
  (c.list[1] as { n: number }).n = 2;
  c.list.push(3);
  c.at.setTime(6);
  (c.bin as Uint8Array)[0] = 9;
  assert.equal(v, { list: [1, { n: 1 }], at: new Date(5), bin: new Uint8Array([1]) });
});

test('copyValue - -0 arrives as 0 and undefined as null at the top, as msgpack carries them', () => {
  assert.ok(Object.is(copyValue(codec, -0).value, 0));
  assert.ok(Object.is((copyValue(codec, [1, -0]).value as number[])[1], 0));
  assert.ok(Object.is((copyValue(codec, { z: -0 }).value as { z: number }).z, 0));
  assert.equal(copyValue(codec, [undefined, 1]).value, [null, 1]);
  assert.is(copyValue(codec, undefined).value, null);
  assert.is(copyValue(codec, { u: undefined }).size, 1);
});

test('copyValue - objects of one shape copy alike whichever values are missing or nested', () => {
  const shapes: unknown[] = [
    { a: 1, b: 'x' },
    { a: 1, b: undefined },
    { a: undefined, b: undefined },
    { a: { a: 1, b: [{ a: 2, b: 3 }] }, b: null },
    Object.freeze({ a: [1.5, 2], b: Object.freeze(['s']) }),
    { 'a"b': 1, '\u2028': 2, constructor: 3, '1': 4, '0': 5 },
  ];
  for (let round = 0; round < 3; round++) {
    for (const v of shapes) {
      const bytes = codec.encode(v);
      const c = copyValue(codec, v);
      assert.is(c.size, bytes.length);
      assert.equal(c.value, codec.decode(bytes));
      assert.is.not(c.value, v);
    }
  }
  // A compiled shape is found by for…in, which lists inherited enumerable keys too: with a polluted prototype the
  // same object still copies and measures its own keys only (the general walk), as before the pollution.
  const own = { a: 1, b: 'x' };
  const before = copyValue(codec, own);
  Object.defineProperty(Object.prototype, 'polluted', { value: 1, enumerable: true, configurable: true });
  try {
    const c = copyValue(codec, own);
    assert.is(c.size, before.size);
    assert.equal(Object.keys(c.value as object), ['a', 'b']);
    assert.is(sizeValue(codec, own).size, before.size);
  } finally {
    delete (Object.prototype as Record<string, unknown>).polluted;
  }
  const proto = JSON.parse('{"__proto__": {"x": 1}, "y": 2}') as object;
  // as over the bus: the decoder refuses the key
  assert.throws(() => codec.decode(codec.encode(proto)));
  assert.throws(() => copyValue(codec, proto));
});

test('copyValue - objects whose keys share a first key (prefixes, longer, diverging, alternating) each copy their own keys', () => {
  // The shape lookup compares keys (names and order) against the newest shape with the same first key as it walks them, and only on a
  // mismatch walks again over the older ones: every variant must find its own shape (or none), never a neighbour's.
  const variants: Array<() => Record<string, unknown>> = [
    () => ({ k: 1 }),
    () => ({ k: 1, m: 'x' }),
    () => ({ k: 1, m: 'x', n: [1, 'y'] }),
    () => ({ k: 1, n: [1, 'y'], m: 'x' }), // the same keys in another order: a copy in the wrong order differs
    () => ({ k: 1, n: 2 }),
    () => ({ k: 1, m: 'x', p: true }),
    () => ({ k: { k: 1, m: 'x' }, m: [{ k: 1 }, { k: 2, n: 3 }] }),
    () => ({}),
    () => Object.assign(Object.create(null) as Record<string, unknown>, { k: 1, m: 2 }),
  ];
  for (let round = 0; round < 4; round++) {
    // forwards then backwards: each shape is met both as the newest and as an older one with its first key
    const order = round % 2 === 0 ? variants : [...variants].reverse();
    for (const make of order) {
      const v = make();
      const bytes = codec.encode(v);
      const c = copyValue(codec, v);
      assert.is(c.size, bytes.length, JSON.stringify(v));
      assert.equal(c.value, codec.decode(bytes));
      assert.equal(Object.keys(c.value as object), Object.keys(v));
      assert.is(sizeValue(codec, v).size, bytes.length);
    }
  }
});

test('copyValue - what the codec cannot carry fails with its error', () => {
  const fails = (v: unknown): TroupeError => {
    try {
      copyValue(codec, v);
    } catch (err) {
      return err as TroupeError;
    }
    throw new Error('did not fail');
  };
  for (const v of [{ f: () => 1 }, Symbol('s'), JSON.parse('{"__proto__": {"x": 1}}') as unknown]) {
    const e = fails(v);
    assert.instance(e, TroupeError);
    assert.is(e.code, 'BAD_REQUEST');
  }
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assert.is(fails(cyclic).code, 'BAD_REQUEST', 'a cycle fails at the depth limit, not with a stack overflow');
});

test('localWireError - keeps code, message and data; drops data the codec cannot carry; truncates past the limit', () => {
  assert.equal(localWireError(codec, { code: 'NOT_FOUND', message: 'm', data: { id: 1 } }, 1_000), { code: 'NOT_FOUND', message: 'm', data: { id: 1 } });
  assert.equal(localWireError(codec, { code: 'INTERNAL', message: 'm', data: { f: () => 1 } }, 1_000), { code: 'INTERNAL', message: 'm' });
  const long = localWireError(codec, { code: 'INTERNAL', message: 'x'.repeat(5_000) }, 1_000);
  assert.is(long.message.length, 1024);
});

test('headerBlockSize - counts the NATS/1.0 block as the transports do', () => {
  assert.is(headerBlockSize({ 'Troupe-Timeout': '30000' }), 12 + 14 + 5 + 4);
});

/** Set in the child of the test below: this file run again with code generation disallowed. */
const NO_CODEGEN_CHILD = process.env.TROUPE_LOCAL_CALLS_NO_CODEGEN === '1';

if (NO_CODEGEN_CHILD) {
  test('(no code generation) - this process really refuses code from strings', () => {
    assert.throws(() => new Function('return 1'), /Code generation from strings disallowed/);
  });
} else {
  test('copyValue - with code generation disallowed, every test of this file passes on the general walk', () => {
    // `node --disallow-code-generation-from-strings` makes the per-shape copier's `new Function` throw; the file's
    // tests run again in such a child and must all pass, the copies taking the general walk.
    const child = spawnSync(process.execPath, ['--disallow-code-generation-from-strings', __filename], {
      env: { ...process.env, TROUPE_LOCAL_CALLS_NO_CODEGEN: '1' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    const out = `${child.stdout}${child.stderr}`;
    assert.is(child.status, 0, out);
    const passed = /Passed:\s+(\d+)/.exec(out);
    assert.ok(passed !== null && Number(passed[1]) >= 10, out);
    assert.match(out, /Skipped:\s+0/);
  });
}

// Last: it fills the process-wide shape cache, so what follows it would take the general walk only.
test('copyValue - past the shape cache bound (ids as keys), objects still copy and measure as the codec does', () => {
  for (let i = 0; i < 600; i++) {
    const v = { [`id${i}`]: { n: i, s: 'é'.repeat(i % 40) }, tail: [i, undefined] };
    const bytes = codec.encode(v);
    const c = copyValue(codec, v);
    assert.is(c.size, bytes.length);
    assert.equal(c.value, codec.decode(bytes));
    assert.is(sizeValue(codec, v).size, bytes.length);
  }
});

test('LocalTargets - on a shared transport, only targets listed in this runtime are in-process', () => {
  const routing = new Map<string, object>();
  const mine = new LocalTargets(true, (subject) => routing.get(subject));
  const theirs = new LocalTargets(true, (subject) => routing.get(subject));
  const target = (listedIn: LocalTargets): LocalTarget => ({ dispatch() {}, cancel() {}, stop() {}, immutable: false, listedIn });
  const a = target(mine);
  const b = target(theirs);
  routing.set('ns.c.ep.a', a).set('ns.c.ep.b', b);
  mine.add('ns.c.ep.a', a);
  theirs.add('ns.c.ep.b', b);
  assert.is(mine.get('ns.c.ep.a'), a, 'its own target');
  assert.is(mine.get('ns.c.ep.b'), undefined, "another runtime's target on the same transport goes over it");
  assert.is(theirs.get('ns.c.ep.a'), undefined);
  mine.delete('ns.c.ep.a', a);
  assert.is(mine.get('ns.c.ep.a'), undefined, 'unlisted');
});

test.run();
