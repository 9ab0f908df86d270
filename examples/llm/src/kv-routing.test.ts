import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryNetwork, Runtime } from '@troupe/runtime/internal';
import { SeverableTransport, waitFor } from '@troupe/testing';
import type { Decode } from './decode';
import { startPipeline } from './pipeline';
import type { KvAwareRouter } from './router';
import { openaiFor, testConfig } from './test-support';

// The router's prefix index follows the decode workers' kv_events; when it
// misses some (an envelope with `gap`), it reloads that worker's blocks
// through the worker's `blocks` endpoint instead of routing on a stale index.

test("kv router - a gap in a decode worker's kv_events makes the router reload that worker's blocks", async () => {
  const network = new MemoryNetwork();
  // The decode worker's runtime can lose outgoing messages; everything else shares the network untouched.
  const cut = new SeverableTransport(network.connect('decode'));
  const decodeRt = await Runtime.connect({ transport: cut });
  const mainRt = await Runtime.embedded({ network });
  const cfg = testConfig({ replicas: { frontend: 1, router: 1, prefill: 1, decode: 1 } });
  const decode = await startPipeline({ ...cfg, roles: ['decode'] }, decodeRt);
  const front = await startPipeline({ ...cfg, roles: ['frontend', 'router', 'prefill'] }, mainRt);
  try {
    const client = openaiFor(front.url as string);
    const routerH = front.handles.router;
    const decodeH = decode.handles.decode;
    assert.ok(routerH && decodeH);
    const router = routerH.instance(routerH.instanceIds[0] as string) as KvAwareRouter;
    const worker = decodeH.instanceIds[0] as string;
    const cache = () => (decodeH.instance(worker) as Decode).blocks().blocks.length;
    await waitFor(() => router.stats().resyncs === 1, 2_000, 'the router to load the worker it found at start');
    const ask = (topic: string) =>
      client.chat.completions.create({
        model: cfg.model,
        max_tokens: 2,
        seed: 1,
        messages: [
          { role: 'system', content: `${topic} `.repeat(120) },
          { role: 'user', content: 'go' },
        ],
      });

    await ask('lighthouse');
    await waitFor(() => router.index.blocksOf(worker) === cache(), 2_000, 'the index to follow the kv event');
    // Lose the next kv event on the way out: the router's index now misses those blocks (bar its own prediction).
    cut.dropOutgoing((subject) => subject.endsWith('._ev.kv_events'));
    await ask('clockmaker');
    cut.dropOutgoing(undefined);
    assert.is(router.stats().resyncs, 1, 'no resync yet: nothing said events were lost');
    router.index.resync(worker, []); // forget everything, so only a reload can restore it
    await ask('river');
    await waitFor(() => router.stats().resyncs === 2, 2_000, 'a resync after the gap');
    await waitFor(() => router.index.blocksOf(worker) === cache(), 2_000, "the index to match the worker's cache again");
    assert.ok(cache() > 3 * 6, `three prompts' blocks cached: ${cache()}`);
  } finally {
    await front.stop();
    await decode.stop();
    await mainRt.close();
    await decodeRt.close();
  }
});

test.run();
