import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type TroupeError } from '../../errors';
import type { LogConsumeOptions, LogMessage, MessageLog } from '../transport';
import { MemoryNetwork } from './memory-network';

const bytes = (n: number): Uint8Array => new Uint8Array([n]);
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Reads until `n` messages arrived (delivery needs only event-loop turns here, no timers). */
async function read(log: MessageLog, options: Partial<LogConsumeOptions>, n: number, ack = true): Promise<{ got: LogMessage[]; stop: () => Promise<void> }> {
  const got: LogMessage[] = [];
  const c = await log.consume({ filter: undefined, durable: undefined, start: 'all', ...options }, (m) => {
    got.push(m);
    if (ack) m.ack();
  });
  for (let i = 0; i < 100 && got.length < n; i++) await turn();
  assert.is(got.length, n, `${n} messages`);
  return { got, stop: () => c.stop() };
}

function setup(): { net: MemoryNetwork; pub: (subject: string, n: number) => void; open: () => Promise<MessageLog> } {
  const net = new MemoryNetwork();
  const t = net.connect();
  return {
    net,
    pub: (subject, n) => t.publish(subject, bytes(n), { headers: { 'X-N': String(n) } }),
    open: () => t.persistence.log('L', { subjects: ['ns._ev.*', 'ns.*._ev.*'] }),
  };
}

test('memory log - stores publishes to its subjects from the moment it exists, nothing else', async () => {
  const { pub, open } = setup();
  pub('ns._ev.a', 1); // before the log: not stored
  const log = await open();
  pub('ns._ev.a', 2);
  pub('ns.c._ev.b', 3);
  pub('ns.c.ep', 4); // a request subject: not stored
  const { got } = await read(log, {}, 2);
  assert.equal(
    got.map((m) => [m.seq, m.subject, m.data[0], m.header('X-N')]),
    [
      [1, 'ns._ev.a', 2, '2'],
      [2, 'ns.c._ev.b', 3, '3'],
    ],
  );
});

test('memory log - a durable resumes after its last ack; a filter selects; start new and start at a time', async () => {
  const { pub, open } = setup();
  const log = await open();
  for (let i = 1; i <= 5; i++) pub(i % 2 ? 'ns.c._ev.x' : 'ns._ev.y', i);
  const first = await read(log, { durable: 'd', filter: 'ns.c._ev.*' }, 3);
  assert.equal(
    first.got.map((m) => m.data[0]),
    [1, 3, 5],
  );
  await first.stop();
  pub('ns.c._ev.x', 7);
  const again = await read(log, { durable: 'd', filter: 'ns.c._ev.*', start: 'all' }, 1);
  assert.equal(
    again.got.map((m) => m.data[0]),
    [7],
    'resumed, start ignored for an existing durable',
  );
  const fresh = await log.consume({ filter: undefined, durable: undefined, start: 'new' }, () => assert.unreachable('nothing new'));
  const at = await read(log, { start: new Date(0) }, 6);
  assert.is(at.got[0]?.seq, 1);
  await Promise.all([again.stop(), fresh.stop(), at.stop()]);
});

test('memory log - a durable name with another filter is refused', async () => {
  const { open } = setup();
  const log = await open();
  const c = await log.consume({ filter: 'ns._ev.a', durable: 'd', start: 'all' }, () => undefined);
  try {
    await log.consume({ filter: 'ns._ev.b', durable: 'd', start: 'all' }, () => undefined);
    assert.unreachable('refused');
  } catch (err) {
    assert.is((err as TroupeError).code, 'BAD_REQUEST');
  }
  await c.stop();
});

test('memory log - unacked messages wait; a nak gives one back first in line; maxInFlight bounds delivery', async () => {
  const { pub, open } = setup();
  const log = await open();
  for (let i = 1; i <= 4; i++) pub('ns._ev.a', i);
  const held = await read(log, { durable: 'd', maxInFlight: 2 }, 2, false);
  assert.equal(
    held.got.map((m) => m.seq),
    [1, 2],
    'no more than 2 unacked',
  );
  held.got[1]?.nak();
  held.got[0]?.ack();
  for (let i = 0; i < 5; i++) await turn();
  assert.equal(
    held.got.map((m) => `${m.seq}${m.redelivered ? 'r' : ''}`),
    ['1', '2', '2r', '3'],
  );
  await held.stop();
});

test('memory log - consumers sharing a durable name share messages; stop and destroy release them', async () => {
  const { net, pub, open } = setup();
  const log = await open();
  const base = net.stats().subscriptions;
  const a: number[] = [];
  const b: number[] = [];
  const ca = await log.consume({ filter: undefined, durable: 's', start: 'all' }, (m) => (a.push(m.seq), m.ack()));
  const cb = await log.consume({ filter: undefined, durable: 's', start: 'all' }, (m) => (b.push(m.seq), m.ack()));
  assert.is(net.stats().subscriptions, base + 2, 'log consumers count as subscriptions');
  await turn();
  for (let i = 1; i <= 10; i++) pub('ns._ev.a', i);
  for (let i = 0; i < 5; i++) await turn();
  assert.equal(
    [...a, ...b].sort((x, y) => x - y),
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
  );
  assert.ok(a.length > 0 && b.length > 0);
  await ca.stop();
  let ended: TroupeError | undefined;
  await log.consume({ filter: undefined, durable: undefined, start: 'new', onError: (e) => (ended = e) }, () => undefined);
  await log.destroy();
  assert.is(ended?.code, 'UNAVAILABLE', 'a consumer hears that its log was deleted');
  await cb.stop();
  assert.is(net.stats().subscriptions, base);
});

test('memory log - messages past max age are gone', async () => {
  const { pub, net } = setup();
  const t = net.connect();
  const log = await t.persistence.log('A', { subjects: ['x.*'], maxAgeMs: 1 });
  pub('x.a', 1);
  const until = Date.now() + 5;
  while (Date.now() < until) await turn();
  pub('x.a', 2);
  const { got } = await read(log, {}, 1);
  assert.equal(
    got.map((m) => m.data[0]),
    [2],
  );
});

test.run();
