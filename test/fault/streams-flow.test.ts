import * as assert from 'uvu/assert';
import { type NatsServer, serverSuite } from '@troupe/testing';
import { envNumber } from './fixtures/stream-common';
import { Cleanup, command, nextOf } from './fixtures/stream-harness';

// DESIGN §3 flow control: the worker sends at most the granted window ahead of
// the consumer; a slow consumer pauses the producer instead of growing memory
// (nats.js has no client-side limit). Caller and worker are separate processes,
// so each peak RSS is its own.

const ITEMS = envNumber('TROUPE_STREAM_FLOW_ITEMS', 1_000_000);
const SLOW_ITEMS = envNumber('TROUPE_STREAM_SLOW_ITEMS', 200);
const SLOW_WINDOW = 32;

const s = serverSuite('streams - flow control', new Cleanup());

interface FlowDone {
  count: number;
  outOfOrder: number;
  ms: number;
  mb: number;
  error?: string;
}

const fmt = (n: number): string => n.toLocaleString('en-US');

for (const pull of [true, false]) {
  const how = pull ? 'pull (for await, async pauses)' : 'push (Observable, synchronous pauses)';
  s(`${fmt(ITEMS)} small items through one stream, consumer ${how} pausing every ${fmt(ITEMS / 5)}: all in order, none lost or duplicated`, async (ctx) => {
    const url = (ctx.server as NatsServer).url;
    const ns = pull ? 'flowpull' : 'flowpush';
    const worker = await ctx.cleanup.worker(url, ns);
    const caller = await ctx.cleanup.caller(url);
    const done = (await command(caller, { type: 'flow', ns, n: ITEMS, pull, pauseEvery: ITEMS / 5, pauseMs: 100 }, 'flow-done', 55_000)) as unknown as FlowDone;
    const w = (await command(worker, { type: 'rss' }, 'rss')) as unknown as { mb: number; produced: number };
    console.log(
      `streams: ${fmt(done.count)} items ${pull ? 'pull' : 'push'} with 5 pauses of 100 ms: ${fmt(Math.round(done.count / (done.ms / 1000)))} items/s (pauses included); peak RSS caller ${done.mb.toFixed(0)} MB, worker ${w.mb.toFixed(0)} MB (window 512)`,
    );
    assert.is(done.error, undefined, done.error);
    assert.is(done.count, ITEMS, 'every item arrived');
    assert.is(done.outOfOrder, 0, 'in order, no duplicates');
    assert.is(w.produced, ITEMS, 'produced exactly once each');
  });
}

for (const pull of [true, false]) {
  s(`a 10 ms-per-item ${pull ? 'async (pull)' : 'synchronous (push)'} consumer holds the worker to the window; memory stays flat`, async (ctx) => {
    const url = (ctx.server as NatsServer).url;
    const ns = pull ? 'slowpull' : 'slowpush';
    const worker = await ctx.cleanup.worker(url, ns);
    const caller = await ctx.cleanup.caller(url);
    const half = Math.floor(SLOW_ITEMS / 2);
    const since = caller.messages.length;
    caller.send({ type: 'flow', ns, n: SLOW_ITEMS, pull, perItemMs: 10, window: SLOW_WINDOW, progressAt: half });
    let lead = NaN;
    if (pull) {
      // Mid-stream: how far ahead of the consumer is the worker? (A blocked synchronous consumer cannot report; its bound is the same credit.)
      await nextOf(caller, 'progress', since, 10_000);
      const marked = (await command(worker, { type: 'mark' }, 'marked')) as unknown as { produced: number };
      lead = marked.produced - half;
    }
    const done = (await nextOf(caller, 'flow-done', since, 30_000)) as unknown as FlowDone;
    const w = (await command(worker, { type: 'rss' }, 'rss')) as unknown as { mb: number; produced: number };
    console.log(
      `streams: ${SLOW_ITEMS} items at 10 ms each (${pull ? 'pull' : 'push'}, window ${SLOW_WINDOW}) in ${(done.ms / 1000).toFixed(1)} s; ` +
        `${pull ? `worker ${lead} items ahead at mid-stream; ` : ''}peak RSS caller ${done.mb.toFixed(0)} MB, worker ${w.mb.toFixed(0)} MB`,
    );
    assert.is(done.error, undefined, done.error);
    assert.is(done.count, SLOW_ITEMS);
    assert.is(done.outOfOrder, 0);
    // The window plus the item the pump pulled before it noticed credit ran out, plus IPC skew (~1 item per 10 ms).
    if (pull) assert.ok(lead <= SLOW_WINDOW + 3, `the worker ran ${lead} items ahead with a window of ${SLOW_WINDOW}`);
    assert.ok(done.ms >= SLOW_ITEMS * 10, 'the consumer set the pace');
  });
}

s.run();
