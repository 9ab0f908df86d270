import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { StreamSink } from './caller-stream';
import { TroupeError } from '../errors';
import { packTokens, unpackTokens } from '../plane/reply-inbox';
import { StreamIterator, streamObservable } from './stream-iterator';

/** A fake stream: records what the iterator reports, exposes the sink it was given. */
function fake(): {
  sink: () => StreamSink<number>;
  consumed: number[];
  teardowns: number;
  opens: number;
  open: (s: StreamSink<number>) => { consumed(n: number): void; teardown(): void };
} {
  let sink: StreamSink<number> | undefined;
  const f = {
    consumed: [] as number[],
    teardowns: 0,
    opens: 0,
    sink: () => sink as StreamSink<number>,
    open: (s: StreamSink<number>) => {
      sink = s;
      f.opens++;
      return { consumed: (n: number) => f.consumed.push(n), teardown: () => void f.teardowns++ };
    },
  };
  return f;
}

test('stream iterator - sends nothing until the first next(), then pulls in order and reports each item consumed', async () => {
  const f = fake();
  const it = new StreamIterator<number>(f.open);
  assert.is(f.opens, 0, 'cold until next()');
  const first = it.next();
  assert.is(f.opens, 1);
  assert.ok(f.sink().pull, 'a pull sink: credit follows consumption');
  f.sink().next(1); // a waiter was pending: handed over at once
  f.sink().next(2);
  f.sink().next(3); // buffered
  assert.equal(await first, { value: 1, done: false });
  assert.equal(f.consumed, [1], 'only what the consumer took counts');
  assert.equal(await it.next(), { value: 2, done: false });
  assert.equal(await it.next(), { value: 3, done: false });
  assert.equal(f.consumed, [1, 1, 1]);
  f.sink().complete();
  assert.equal(await it.next(), { value: undefined, done: true });
});

test('stream iterator - an error comes after the items buffered before it', async () => {
  const f = fake();
  const it = new StreamIterator<number>(f.open);
  void it.next().then((r) => assert.equal(r, { value: 1, done: false }));
  f.sink().next(1);
  f.sink().next(2);
  f.sink().error(new TroupeError('INSTANCE_LOST', 'gone', { data: { delivered: 2 } }));
  assert.equal(await it.next(), { value: 2, done: false });
  try {
    await it.next();
    assert.unreachable('expected the error');
  } catch (e) {
    assert.is((e as TroupeError).code, 'INSTANCE_LOST');
  }
  assert.equal(await it.next(), { value: undefined, done: true }, 'done after the error');
});

test('stream iterator - return() (a break out of for-await) tears the stream down once and ends pending reads', async () => {
  const f = fake();
  const it = new StreamIterator<number>(f.open);
  const pending = it.next();
  await it.return();
  assert.equal(await pending, { value: undefined, done: true });
  assert.is(f.teardowns, 1);
  await it.return();
  assert.is(f.teardowns, 1, 'idempotent');
  assert.ok(f.sink().closed, 'the stream sees the sink closed');
});

test('stream observable - subscribing pushes; for-await pulls; each starts its own stream', async () => {
  const f = fake();
  const obs = streamObservable<number>(f.open);
  const got: number[] = [];
  const sub = obs.subscribe((v) => got.push(v));
  assert.is(f.opens, 1);
  assert.not.ok(f.sink().pull, 'a subscriber is a push sink');
  f.sink().next(7);
  sub.unsubscribe();
  assert.equal(got, [7]);
  assert.is(f.teardowns, 1, 'unsubscribing tears down');
  const it = obs[Symbol.asyncIterator]();
  const r = it.next();
  assert.is(f.opens, 2);
  f.sink().next(8);
  assert.equal(await r, { value: 8, done: false });
});

test('stream tokens - keys and subjects round-trip through the space-separated wire form', () => {
  assert.equal(unpackTokens(packTokens(['1', 'a2', '_INBOX.x.3'])), ['1', 'a2', '_INBOX.x.3']);
  assert.equal(unpackTokens(packTokens([])), []);
});

test('stream iterator - takes a frame handed whole in order, a pending read first, and keeps no taken item alive', async () => {
  const f = fake();
  const it = new StreamIterator<{ i: number }>(f.open as never);
  const first = it.next();
  const sink = f.sink() as unknown as StreamSink<{ i: number }>;
  assert.ok(sink.nextAll, 'the pull sink takes whole frames');
  const frame = [{ i: 1 }, { i: 2 }, { i: 3 }];
  sink.nextAll?.(frame);
  sink.nextAll?.([]);
  sink.nextAll?.([{ i: 4 }]);
  assert.equal(await first, { value: { i: 1 }, done: false });
  assert.equal(await it.next(), { value: { i: 2 }, done: false });
  assert.is(frame[0], undefined, 'the frame lets go of the item a pending read took');
  assert.is(frame[1], undefined, 'the frame lets go of a taken item');
  assert.equal((await it.next()).value, { i: 3 });
  assert.equal((await it.next()).value, { i: 4 }, 'an empty frame is skipped');
  assert.equal(f.consumed, [1, 1, 1, 1], 'each taken item is reported once');
  sink.error(new TroupeError('INSTANCE_LOST', 'gone'));
  await it.next().then(
    () => assert.unreachable('expected the error'),
    (e: unknown) => assert.is((e as TroupeError).code, 'INSTANCE_LOST'),
  );
});

test('stream iterator - an error after whole frames comes after all their items; several pending reads take one item each', async () => {
  const f = fake();
  const it = new StreamIterator<number>(f.open);
  const reads = [it.next(), it.next()];
  const sink = f.sink();
  sink.nextAll?.([1, 2, 3]);
  sink.nextAll?.([4]);
  sink.error(new TroupeError('INSTANCE_LOST', 'gone'));
  assert.equal(await Promise.all(reads), [
    { value: 1, done: false },
    { value: 2, done: false },
  ]);
  assert.equal((await it.next()).value, 3);
  assert.equal((await it.next()).value, 4);
  await it.next().then(
    () => assert.unreachable('expected the error after the items'),
    (e: unknown) => assert.is((e as TroupeError).code, 'INSTANCE_LOST'),
  );
  assert.equal(await it.next(), { value: undefined, done: true });
});

test('stream iterator - keeps item order across many frames queued behind a busy consumer', async () => {
  const f = fake();
  const it = new StreamIterator<number>(f.open);
  const first = it.next();
  const sink = f.sink();
  let n = 0;
  const frame = (k: number): number[] => Array.from({ length: k }, () => n++);
  sink.nextAll?.(frame(3));
  const got: number[] = [(await first).value as number];
  for (let round = 0; round < 50; round++) {
    for (let q = 0; q < 5; q++) sink.nextAll?.(frame(q)); // frames of 0–4 items queue up behind the current one
    for (let k = 0; k < 8; k++) got.push((await it.next()).value as number);
  }
  sink.complete();
  for (let r = await it.next(); !r.done; r = await it.next()) got.push(r.value);
  assert.equal(
    got,
    Array.from({ length: n }, (_, i) => i),
  );
  assert.is(f.consumed.length, n, 'each item reported consumed once');
});

test.run();
