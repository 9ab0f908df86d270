import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TroupeError } from '../errors';
import { decodeMetadata, encodeMetadata, formatTraceparent, METADATA_LIMITS, mergeMetadata, parseTraceparent } from './trace-context';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';

test('traceparent - parses a valid version-00 header and formats it back', () => {
  const tp = parseTraceparent(`00-${TRACE}-${SPAN}-01`);
  assert.equal(tp, { traceId: TRACE, spanId: SPAN, flags: 1 });
  assert.is(formatTraceparent(TRACE, SPAN, 1), `00-${TRACE}-${SPAN}-01`);
  assert.is(formatTraceparent(TRACE, SPAN, 0), `00-${TRACE}-${SPAN}-00`);
});

test('traceparent - invalid headers are ignored, never an error (W3C)', () => {
  for (const bad of [
    undefined,
    '',
    'garbage',
    `ff-${TRACE}-${SPAN}-01`, // version ff is invalid
    `00-${'0'.repeat(32)}-${SPAN}-01`, // all-zero trace id
    `00-${TRACE}-${'0'.repeat(16)}-01`, // all-zero span id
    `00-${TRACE.toUpperCase()}-${SPAN}-01`, // uppercase hex
    `00-${TRACE}-${SPAN}-01-extra`, // version 00 has no extra fields
    `00-${TRACE}-${SPAN}`,
  ]) {
    assert.is(parseTraceparent(bad), undefined, String(bad));
  }
  // A later version may append fields: the known prefix still counts.
  assert.equal(parseTraceparent(`01-${TRACE}-${SPAN}-01-future`), { traceId: TRACE, spanId: SPAN, flags: 1 });
});

test('metadata - round-trips through the header, escaping what needs it', () => {
  const meta = { tenant: 'a', route: 'gpu=h100&zone=eu/1', note: 'café ☕', empty: '' };
  const header = encodeMetadata(meta);
  assert.type(header, 'string');
  assert.not.match(header as string, /[\r\n]/);
  assert.equal({ ...decodeMetadata(header) }, meta);
  assert.is(encodeMetadata({}), undefined, 'empty metadata sends no header');
  assert.equal({ ...decodeMetadata(undefined) }, {});
});

test('metadata - a decoded map is frozen and forwarded as it came, without re-encoding', () => {
  const header = 'tenant=a&x=%20y';
  const m = decodeMetadata(header);
  assert.ok(Object.isFrozen(m));
  assert.is(encodeMetadata(m), header);
});

test('metadata - past the bounds: BAD_REQUEST', () => {
  const cases: [string, unknown][] = [
    ['too many entries', Object.fromEntries(Array.from({ length: METADATA_LIMITS.maxEntries + 1 }, (_, i) => [`k${i}`, 'v']))],
    ['too many bytes', { big: 'x'.repeat(METADATA_LIMITS.maxBytes) }],
    ['a bad key', { 'a b': 'v' }],
    ['a long key', { ['k'.repeat(65)]: 'v' }],
    ['a non-string value', { n: 1 }],
    ['not an object', 'tenant=a'],
  ];
  for (const [what, meta] of cases) {
    try {
      encodeMetadata(meta as Record<string, string>);
      assert.unreachable(`${what} was accepted`);
    } catch (err) {
      assert.instance(err, TroupeError, what);
      assert.is((err as TroupeError).code, 'BAD_REQUEST', what);
    }
  }
  // Exactly at the bounds is fine.
  const full = Object.fromEntries(Array.from({ length: METADATA_LIMITS.maxEntries }, (_, i) => [`k${i}`, 'v']));
  assert.type(encodeMetadata(full), 'string');
});

test('metadata - a malformed header from the wire is read leniently', () => {
  assert.equal({ ...decodeMetadata('a=1&novalue&=x&b=%E0%A4%A&c=3&bad key=4') }, { a: '1', c: '3' });
});

test("metadata - a call's own keys win over its parent's", () => {
  assert.equal(mergeMetadata({ tenant: 'a', p: '1' }, { p: '2' }), { tenant: 'a', p: '2' });
  const parent = { tenant: 'a' };
  assert.is(mergeMetadata(parent, undefined), parent);
  assert.is(mergeMetadata(undefined, undefined), undefined);
});

test.run();
