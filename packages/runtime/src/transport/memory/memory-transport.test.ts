import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TroupeError } from '../../errors';
import type { TransportMessage } from '../transport';
import { subjectError, subjectMatches } from '../../wire/subject-grammar';
import { MemoryNetwork } from './memory-network';

const EMPTY = new Uint8Array(0);

test('subject matching - a literal matches only itself', () => {
  assert.ok(subjectMatches('a.b.c', 'a.b.c'));
  assert.not.ok(subjectMatches('a.b.c', 'a.b'));
  assert.not.ok(subjectMatches('a.b', 'a.b.c'));
  assert.not.ok(subjectMatches('a.b.c', 'a.b.d'));
  assert.not.ok(subjectMatches('abc', 'ab'));
});

test('subject matching - * matches exactly one token', () => {
  assert.ok(subjectMatches('a.*', 'a.b'));
  assert.ok(subjectMatches('a.*.c', 'a.xyz.c'));
  assert.ok(subjectMatches('*', 'a'));
  assert.ok(subjectMatches('*.*', 'a.b'));
  assert.not.ok(subjectMatches('a.*', 'a'));
  assert.not.ok(subjectMatches('a.*', 'a.b.c'));
  assert.not.ok(subjectMatches('*', 'a.b'));
  assert.not.ok(subjectMatches('a.*.c', 'a.b.d'));
});

test('subject matching - > matches one or more trailing tokens, never zero', () => {
  assert.ok(subjectMatches('a.>', 'a.b'));
  assert.ok(subjectMatches('a.>', 'a.b.c.d'));
  assert.ok(subjectMatches('>', 'a'));
  assert.ok(subjectMatches('>', 'a.b.c'));
  assert.ok(subjectMatches('*.>', 'a.b'));
  assert.not.ok(subjectMatches('a.>', 'a'));
  assert.not.ok(subjectMatches('a.>', 'b.c'));
  assert.not.ok(subjectMatches('*.>', 'a'));
});

test('subject matching - a wildcard character inside a longer token is literal, as in NATS', () => {
  assert.ok(subjectMatches('a*b', 'a*b'));
  assert.not.ok(subjectMatches('a*b', 'axb'));
  assert.not.ok(subjectMatches('a.b>', 'a.bc'));
  assert.is(subjectError('a*b.c>', false), undefined);
});

test('subject validation - refuses empty subjects, empty tokens and whitespace everywhere', () => {
  for (const wildcards of [true, false]) {
    assert.is(subjectError('', wildcards), 'empty subject');
    assert.is(subjectError('a..b', wildcards), 'empty token');
    assert.is(subjectError('.a', wildcards), 'empty token');
    assert.is(subjectError('a.', wildcards), 'empty token');
    assert.is(subjectError('.', wildcards), 'empty token');
    for (const ws of ['a b', 'a\tb', 'a\r\nb', ' a', 'a.b ']) assert.is(subjectError(ws, wildcards), 'whitespace', JSON.stringify(ws));
  }
});

test('subject validation - publish subjects are literal; subscriptions take * anywhere and > last', () => {
  for (const s of ['*', '>', 'a.*', 'a.>', '*.b', 'a.*.c']) {
    assert.is(subjectError(s, true), undefined, s);
    assert.is(subjectError(s, false), 'wildcards are not allowed when publishing', s);
  }
  assert.is(subjectError('a.>.b', true), '">" must be the last token');
  assert.is(subjectError('>.a', true), '">" must be the last token');
  assert.is(subjectError('_INBOX.abc.12', false), undefined);
  assert.is(subjectError('ns.comp-1.ep_2.q', false), undefined);
});

// The route cache is the one clever part: these prove it is invalidated.
test('route cache - a wildcard subscription added after a subject was routed receives', async () => {
  const net = new MemoryNetwork();
  const t = net.connect();
  const got: string[] = [];
  t.subscribe('a.b', (m) => got.push(`literal ${m.subject}`));
  t.publish('a.b', new Uint8Array(0)); // caches the route of a.b
  const wild = t.subscribe('a.*', (m) => got.push(`wild ${m.subject}`));
  t.publish('a.b', new Uint8Array(0));
  await t.flush();
  wild.unsubscribe();
  t.publish('a.b', new Uint8Array(0));
  await t.flush();
  assert.equal(got, ['literal a.b', 'literal a.b', 'wild a.b', 'literal a.b']);
  await t.close();
});

test('route cache - a literal subscription added after a subject was routed receives', async () => {
  const net = new MemoryNetwork();
  const t = net.connect();
  const got: string[] = [];
  t.publish('x.y', new Uint8Array(0)); // caches an empty route
  t.subscribe('x.y', (m) => got.push(m.subject));
  t.publish('x.y', new Uint8Array(0));
  await t.flush();
  assert.equal(got, ['x.y']);
  await t.close();
});

test('queue groups - one group spans literal and wildcard subscriptions, as in NATS', async () => {
  const net = new MemoryNetwork();
  const t = net.connect();
  let n = 0;
  t.subscribe('q.a', () => n++, { queue: 'g' });
  t.subscribe('q.*', () => n++, { queue: 'g' });
  t.subscribe('q.>', () => n++, { queue: 'g' });
  for (let i = 0; i < 100; i++) t.publish('q.a', new Uint8Array(0));
  await t.flush();
  assert.is(n, 100);
  await t.close();
});

test('no responders - the status goes only to the publishing connection', async () => {
  const net = new MemoryNetwork();
  const a = net.connect('a');
  const b = net.connect('b');
  const seen: string[] = [];
  const record =
    (who: string) =>
    (m: TransportMessage): void => {
      seen.push(`${who} ${String(m.noResponders)}`);
    };
  a.subscribe('inbox.1', record('a'));
  a.subscribe('inbox.*', record('a-wild'));
  b.subscribe('inbox.1', record('b'));
  a.publish('nobody.home', new Uint8Array(1), { reply: 'inbox.1' });
  await a.flush();
  assert.equal(seen, ['a true']);
  await a.close();
  await b.close();
});

test('payload limit - counts encoded headers and refuses bad header names', () => {
  const net = new MemoryNetwork({ maxPayload: 100 });
  const t = net.connect();
  t.publish('p', new Uint8Array(100));
  // NATS/1.0\r\n (10) + "k: v\r\n" (6) + \r\n (2) = 18 bytes of headers
  t.publish('p', new Uint8Array(82), { headers: { k: 'v' } });
  try {
    t.publish('p', new Uint8Array(83), { headers: { k: 'v' } });
    assert.unreachable('should have thrown');
  } catch (e) {
    assert.instance(e, TroupeError);
    assert.is((e as TroupeError).code, 'PAYLOAD_TOO_LARGE');
    assert.equal((e as TroupeError).data, { size: 101, max: 100 });
  }
  assert.throws(
    () => t.publish('p', new Uint8Array(0), { headers: { 'bad key': 'v' } }),
    (e: unknown) => (e as TroupeError).code === 'BAD_REQUEST',
  );
  assert.throws(
    () => t.publish('p', new Uint8Array(0), { headers: { k: 'a\r\nb' } }),
    (e: unknown) => (e as TroupeError).code === 'BAD_REQUEST',
  );
  void t.close();
});

test('header lookup - misses are undefined, even for Object.prototype names', async () => {
  const net = new MemoryNetwork();
  const t = net.connect();
  let msg: TransportMessage | undefined;
  t.subscribe('h', (m) => (msg = m));
  t.publish('h', new Uint8Array(0), { headers: { 'X-A': '1' } });
  await t.flush();
  assert.is(msg?.header('X-A'), '1');
  assert.is(msg?.header('x-a'), undefined); // exact match, as nats.js's default
  assert.is(msg?.header('toString'), undefined);
  assert.is(msg?.header('__proto__'), undefined);
  await t.close();
});

test('stats - subscriptions and connections return to zero after close', async () => {
  const net = new MemoryNetwork();
  const a = net.connect();
  const b = net.connect();
  a.subscribe('s.*', () => undefined);
  b.subscribe('s.x', () => undefined, { queue: 'g' });
  const pending = a.request('nobody', new Uint8Array(0), { timeoutMs: 1000 });
  assert.equal(net.stats(), { connections: 2, subscriptions: 3, queued: 1 }); // the request's inbox, its 503 queued
  await pending.then(
    () => assert.unreachable('resolved without responders'),
    (e: unknown) => assert.is((e as TroupeError).code, 'NO_INSTANCES'),
  );
  assert.equal(net.stats(), { connections: 2, subscriptions: 2, queued: 0 });
  await a.close();
  await b.close();
  assert.equal(net.stats(), { connections: 0, subscriptions: 0, queued: 0 });
});

test('delivery - a chatty pair of handlers does not starve timers', async () => {
  const net = new MemoryNetwork();
  const t = net.connect();
  // The chat ends by itself after LIMIT volleys, so a delivery that starved timers makes this test fail, not hang:
  // no timer (not even a test timeout) could fire while it chats.
  const LIMIT = 200_000;
  let volleys = 0;
  let firedAt: number | undefined;
  t.subscribe('ping', () => firedAt === undefined && volleys < LIMIT && (volleys++, t.publish('pong', EMPTY)));
  t.subscribe('pong', () => firedAt === undefined && t.publish('ping', EMPTY));
  t.publish('ping', EMPTY);
  await new Promise<void>((resolve) =>
    setTimeout(() => {
      firedAt = volleys;
      resolve();
    }, 0),
  );
  assert.ok(firedAt !== undefined && firedAt > 0 && firedAt < LIMIT, `the timer fired after ${firedAt} of ${LIMIT} volleys`);
  await t.close();
});

test("targetOf - the object target of this connection's own literal subscription, while it is routed", async () => {
  const net = new MemoryNetwork();
  const a = net.connect();
  const b = net.connect();
  const target = { deliver: (_m: TransportMessage): void => undefined };
  const sub = a.subscribe('svc.ep.mailbox1', target);
  b.subscribe('svc.ep.mailbox2', { deliver: () => undefined });
  a.subscribe('svc.ep.fn', () => undefined);
  a.subscribe('svc.ep.queued', { deliver: () => undefined }, { queue: 'q' });
  assert.is(a.targetOf('svc.ep.mailbox1'), target);
  assert.is(b.targetOf('svc.ep.mailbox1'), undefined, "another connection's subscription");
  assert.is(a.targetOf('svc.ep.mailbox2'), undefined, "another connection's subscription");
  assert.is(a.targetOf('svc.ep.fn'), undefined, 'a function handler');
  assert.is(a.targetOf('svc.ep.queued'), undefined, 'a queue subscription');
  assert.is(a.targetOf('svc.ep.none'), undefined);
  sub.unsubscribe();
  assert.is(a.targetOf('svc.ep.mailbox1'), undefined, 'after unsubscribe');
  await a.close();
  await b.close();
});

test.run();
