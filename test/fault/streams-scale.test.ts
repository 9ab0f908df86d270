import * as assert from 'uvu/assert';
import { type NatsServer, serverSuite } from '@troupe/testing';
import { envNumber } from './fixtures/stream-common';
import { Cleanup, command } from './fixtures/stream-harness';

// Many concurrent streams from one client process: every stream completes,
// no item reaches the wrong stream (each item is tagged with its stream), and
// the liveness machinery (one heartbeat per caller per interval, one monitor
// timer per runtime) does not turn load into false INSTANCE_LOSTs.

const STREAMS = envNumber('TROUPE_STREAM_SCALE_STREAMS', 10_000);
const ITEMS = envNumber('TROUPE_STREAM_SCALE_ITEMS', 100);
const WORKERS = 2;

const s = serverSuite('streams - scale', new Cleanup());

interface ScaleDone {
  streams: number;
  completed: number;
  items: number;
  crossTalk: number;
  errors: Record<string, number>;
  ms: number;
  mb: number;
  stats: { streamsLost: number; probesSent: number };
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

s(`${fmt(STREAMS)} concurrent streams of ${ITEMS} items from one client process: all complete, no cross-talk`, async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const ns = 'scale';
  // Every stream runs at once: concurrency and mailbox sized for them.
  const env = { TROUPE_CONCURRENCY: String(STREAMS), TROUPE_CAPACITY: String(STREAMS) };
  const workers = await Promise.all(Array.from({ length: WORKERS }, () => ctx.cleanup.worker(url, ns, env)));
  const caller = await ctx.cleanup.caller(url);
  const done = (await command(caller, { type: 'scale', ns, streams: STREAMS, items: ITEMS }, 'scale-done', 55_000)) as unknown as ScaleDone;
  const rss = (await Promise.all(workers.map((w) => command(w, { type: 'rss' }, 'rss')))) as unknown as { mb: number; produced: number }[];
  console.log(
    `streams: ${fmt(done.streams)} concurrent streams x ${ITEMS} items: ${fmt(done.completed)} completed, ${fmt(done.items)} items in ${(done.ms / 1000).toFixed(2)} s = ${fmt(done.items / (done.ms / 1000))} items/s; ` +
      `peak RSS caller ${done.mb.toFixed(0)} MB, workers ${rss.map((r) => r.mb.toFixed(0)).join(' / ')} MB (${rss.map((r) => fmt(r.produced)).join(' / ')} items); ` +
      `cross-talk ${done.crossTalk}, errors ${JSON.stringify(done.errors)}, probes ${done.stats.probesSent}`,
  );
  assert.equal(done.errors, {}, `no stream failed: ${JSON.stringify((done as unknown as { samples: string[] }).samples)}`);
  assert.is(done.completed, STREAMS, 'every stream completed');
  assert.is(done.items, STREAMS * ITEMS, 'every item arrived once');
  assert.is(done.crossTalk, 0, 'no item reached another stream or arrived out of order');
  assert.is(done.stats.streamsLost, 0, 'no false INSTANCE_LOST under load');
});

s.run();
