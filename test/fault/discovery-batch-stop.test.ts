import * as assert from 'uvu/assert';
import { Runtime } from '@troupe/runtime/internal';
import { type NatsServer, serverSuite, waitFor, type WorkerMessage } from '@troupe/testing';
import { clock, ms, type WorkReply } from './fixtures/discovery-common';
import { Cleanup, command, describeFailures, ListWatch } from './fixtures/discovery-harness';

// Issue #14: stopping thousands of instances of one process at once is one
// batch for the registry. One lease write names them all gone, so a watcher
// drops them together (not one KV delete each, which flooded the registry
// into ~3,000 failed deletes at 10,000 instances), and callers stop routing
// to them before they stop serving.

const BATCH = Number(process.env['TROUPE_BATCH_STOP'] ?? 5_000);
/** The default heartbeat and TTL: the drop must come through the lease write, well before the TTL could. */
const DISCOVERY = { heartbeatMs: 1_000, leaseTtlMs: 3_000 } as const;

const s = serverSuite('discovery - batch stop', new Cleanup());

s(
  `${BATCH.toLocaleString('en')} instances stopped at once: a watching process lists none of them within one heartbeat, routes nothing to them, 0 failed calls`,
  async (ctx) => {
    const url = (ctx.server as NatsServer).url;
    const w = await ctx.cleanup.worker(
      {
        NATS_URL: url,
        TROUPE_NS: 'batch',
        TROUPE_REPLICAS: '1',
        TROUPE_BATCH: String(BATCH),
        TROUPE_HB: String(DISCOVERY.heartbeatMs),
        TROUPE_TTL: String(DISCOVERY.leaseTtlMs),
      },
      60_000,
    );
    const survivor = w.ready.instanceIds[0] as string;
    const batchIds = new Set(w.ready['batchIds'] as string[]);
    assert.is(batchIds.size, BATCH);

    const rt = ctx.cleanup.runtime(await Runtime.connect({ servers: url, discovery: { ...DISCOVERY }, requestTimeoutMs: 10_000 }));
    const routed = rt.namespace('batch').component('svc').endpoint('work').client<undefined, WorkReply>();
    await routed.waitForInstances(BATCH + 1, { timeout: 30_000 });
    const watch = new ListWatch(routed.instances$);
    ctx.cleanup.add(async () => watch.stop());

    // Round-robin over 5,001 instances: nearly every call goes to a batch instance until they leave.
    const load = ctx.cleanup.load(() => routed.call(undefined), 200);
    await waitFor(() => load.outcomes.filter((o) => o.ok).length >= 50, 10_000, '50 calls answered before the stop');

    const stopped = await command(w, { type: 'stop-batch' }, 'batch-stopped', 30_000);
    const stopReturned = stopped['t'] as number;
    const stopMs = stopReturned - (stopped['t0'] as number);
    await waitFor(() => watch.current.length === 1, DISCOVERY.heartbeatMs * 3, 'the watcher to drop the stopped instances');
    let lastDrop = 0;
    for (const id of batchIds) lastDrop = Math.max(lastDrop, watch.dropped.get(id) ?? Infinity);
    const rerouted0 = rt.stats().callsRerouted;
    const settled = clock();

    // Keep calling for a second once the list is settled: everything goes to the survivor, first time.
    await waitFor(() => load.outcomes.filter((o) => o.sentAt > settled && o.ok).length >= 150, 10_000, '150 calls after the stop');
    const outcomes = await load.stop();
    const rerouted = rt.stats().callsRerouted - rerouted0;

    // Every batch instance left the list before it stopped serving (its onStop report).
    const onStops = w.messages.filter((m: WorkerMessage) => m.type === 'onStop' && batchIds.has(m['id'] as string));
    assert.is(onStops.length, BATCH, `${onStops.length} of ${BATCH} onStop reports`);
    const late = onStops.filter((m) => (watch.dropped.get(m['id'] as string) ?? Infinity) >= (m['t'] as number));
    const after = outcomes.filter((o) => o.sentAt > settled);
    console.log(
      `discovery: batch stop of ${BATCH}: stop returned in ${ms(stopMs)} ms; the watcher dropped the last one ${ms(lastDrop - stopReturned)} ms after it returned; ` +
        `${outcomes.length} calls, failed: ${describeFailures(outcomes)}; rerouted after the drop: ${rerouted}`,
    );
    assert.ok(
      lastDrop - stopReturned <= DISCOVERY.heartbeatMs,
      `the last instance left the list ${ms(lastDrop - stopReturned)} ms after the stop returned (bound: one ${DISCOVERY.heartbeatMs} ms heartbeat)`,
    );
    assert.is(late.length, 0, `${late.length} instances stopped serving before the watcher dropped them`);
    assert.equal(
      watch.current.map((r) => r.instanceId),
      [survivor],
      'only the survivor is listed',
    );
    assert.is(outcomes.filter((o) => !o.ok).length, 0, `failed calls: ${describeFailures(outcomes)}`);
    assert.ok(
      after.every((o) => o.id === survivor),
      `calls after the drop answered by ${[...new Set(after.map((o) => o.id))].join(', ')}`,
    );
    assert.is(rerouted, 0, 'calls sent to a stopped instance (and sent again elsewhere) after the list settled');
    assert.not.match(w.log, /deregistration failed|lease write for a graceful stop failed/, 'the worker logged a failed deregistration');
  },
);

s.run();
