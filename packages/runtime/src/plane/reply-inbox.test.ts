import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TroupeError } from '../errors';
import type { MessageHandler, Transport, TransportMessage } from '../transport/transport';
import { type ReplyHandler, ReplyInbox, replyKeyOf } from './reply-inbox';

/** A bus of one subscription (the inbox's wildcard), delivering synchronously: enough to drive dispatch. */
function fakeTransport(): Transport & { send(subject: string, byte: number): void } {
  let handler: MessageHandler | undefined;
  const message = (subject: string, data: Uint8Array): TransportMessage => ({
    subject,
    data,
    reply: undefined,
    noResponders: false,
    header: () => undefined,
  });
  const t = {
    subscribe(_subject: string, h: MessageHandler) {
      handler = h;
      return { unsubscribe: () => (handler = undefined), drain: () => Promise.resolve(), closed: false };
    },
    publish: () => undefined,
    send(subject: string, byte: number) {
      handler?.(message(subject, new Uint8Array([byte])));
    },
  };
  return t as unknown as Transport & { send(subject: string, byte: number): void };
}

function recorder(): ReplyHandler & { got: number[] } {
  const got: number[] = [];
  return { got, onReply: (m: TransportMessage) => got.push(m.data[0] ?? -1) };
}

test('reply inbox - a reused slot gets a new key: a late reply to the closed key reaches nobody', () => {
  const t = fakeTransport();
  const inbox = new ReplyInbox(t, '_INBOX');
  const first = recorder();
  const a = inbox.take(first);
  const replyA = inbox.subjectOf(a);
  inbox.release(a);
  const second = recorder();
  const b = inbox.take(second); // the freed slot, next generation
  const replyB = inbox.subjectOf(b);
  assert.is.not(replyA, replyB, 'a reused slot must not reuse its reply subject');
  assert.is(inbox.pending, 1);
  t.send(replyA, 1); // the answer to the call that gave up
  t.send(replyB, 2);
  assert.equal(first.got, [], 'a closed key is dropped');
  assert.equal(second.got, [2], 'only the live key is delivered');
  inbox.release(a); // a stale release must not free the live slot
  assert.is(inbox.pending, 1);
  inbox.release(b);
  inbox.release(b); // twice is harmless
  assert.is(inbox.pending, 0);
  inbox.stop(new TroupeError('UNAVAILABLE', 'test over'));
});

test('reply inbox - string keys (streams) and tickets share the slots; keys never collide with the heartbeat key', () => {
  const t = fakeTransport();
  const inbox = new ReplyInbox(t, '_INBOX');
  const h = recorder();
  const opened = Array.from({ length: 40 }, () => inbox.open(h));
  const keys = new Set(opened.map(([key]) => key));
  assert.is(keys.size, 40, 'keys are unique');
  for (const [key, reply] of opened) {
    assert.is(replyKeyOf(reply), key);
    assert.ok(/^[0-9]+$/.test(key), `key ${key} is a decimal token (never "_hb")`);
  }
  for (const [key] of opened.slice(0, 20)) inbox.close(key);
  assert.is(inbox.pending, 20);
  inbox.close('not-a-key');
  inbox.close('99999999999999999999');
  assert.is(inbox.pending, 20, 'a malformed key closes nothing');
  const abandoned: string[] = [];
  const last = { onReply: () => undefined, abandon: (e: TroupeError) => abandoned.push(e.code) };
  inbox.open(last);
  inbox.stop(new TroupeError('UNAVAILABLE', 'closing'));
  assert.equal(abandoned, ['UNAVAILABLE'], 'stop fails what still waits');
});

test('reply inbox - a slot reused past 2^30 still gets its ticket as decimal text, and replies reach it', () => {
  const t = fakeTransport();
  const inbox = new ReplyInbox(t, '_INBOX');
  const h = recorder();
  let ticket = -1;
  // One slot, reused: its generation grows by one each time, and past 63 the ticket is no small integer.
  for (let i = 0; i < 200; i++) {
    if (ticket >= 0) inbox.release(ticket);
    ticket = inbox.take(h);
    const subject = inbox.subjectOf(ticket);
    assert.is(replyKeyOf(subject), String(ticket), `ticket ${ticket}`);
  }
  assert.ok(ticket > 2 ** 30, 'the last ticket is past the small-integer range');
  t.send(inbox.subjectOf(ticket), 7);
  assert.equal(h.got, [7]);
  const [key, reply] = inbox.open(h);
  assert.is(reply, `${inbox.root}.${key}`);
  assert.ok(/^[0-9]+$/.test(key), `key ${key} is decimal`);
  inbox.release(ticket);
  inbox.close(key);
  assert.is(inbox.pending, 0);
});

test.run();
