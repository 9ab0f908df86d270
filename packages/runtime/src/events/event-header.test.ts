import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TroupeError } from '../errors';
import { EventHeader } from './event-header';

const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

test('event header - one Troupe-Event line with the numbers of each stamp', () => {
  const h = new EventHeader('9f3c0a7e12b4d8e1');
  const first = h.stamp(1, 1_700_000_000_123).block();
  const second = h.stamp(Number.MAX_SAFE_INTEGER, 0).block();
  assert.is(text(first), 'NATS/1.0\r\nTroupe-Event: 9f3c0a7e12b4d8e1 1 1700000000123\r\n\r\n', 'kept as it was: each block is its own bytes');
  assert.is(text(second), `NATS/1.0\r\nTroupe-Event: 9f3c0a7e12b4d8e1 ${Number.MAX_SAFE_INTEGER} 0\r\n\r\n`);
  assert.equal(h.record(), { 'Troupe-Event': `9f3c0a7e12b4d8e1 ${Number.MAX_SAFE_INTEGER} 0` });
});

test('event header - blocks stay intact across slabs, for ids of any length', () => {
  const long = new EventHeader('p'.repeat(10_000));
  const short = new EventHeader('rt é');
  const blocks: Array<[Uint8Array, string]> = [];
  for (let i = 1; i <= 500; i++) {
    const h = i % 7 === 0 ? long : short;
    blocks.push([h.stamp(i, 1_000 + i).block(), `NATS/1.0\r\nTroupe-Event: ${h.publisher} ${i} ${1_000 + i}\r\n\r\n`]);
  }
  for (const [b, want] of blocks) assert.is(text(b), want);
});

test('event header - a publisher id that would break the line is refused', () => {
  try {
    new EventHeader('a\r\nX-Injected: 1');
    assert.unreachable('accepted a CR LF');
  } catch (err) {
    assert.instance(err, TroupeError);
    assert.is((err as TroupeError).code, 'BAD_REQUEST');
  }
});

test.run();
