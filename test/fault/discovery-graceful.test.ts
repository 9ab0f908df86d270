import * as assert from 'uvu/assert';
import { Runtime } from '@troupe/runtime/internal';
import { type NatsServer, waitFor, type WorkerProcess, serverSuite } from '@troupe/testing';
import { clock, FAST, ms, type WorkReply } from './fixtures/discovery-common';
import { Cleanup, describeFailures, ListWatch } from './fixtures/discovery-harness';

// DESIGN §4.2: graceful stop removes the instance *before* it stops serving, then drains.

const s = serverSuite('discovery - graceful stop', new Cleanup());

s('replicas stopped one by one under 100 req/s: every instance leaves the list before it stops serving, 0 failed requests', async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const env = { NATS_URL: url, TROUPE_NS: 'graceful', TROUPE_HB: String(FAST.heartbeatMs), TROUPE_TTL: String(FAST.leaseTtlMs), TROUPE_WORK_MS: '20' };
  const workers: WorkerProcess[] = [];
  for (let i = 0; i < 3; i++) workers.push(await ctx.cleanup.worker(env));
  const rt = ctx.cleanup.runtime(await Runtime.connect({ servers: url, discovery: { ...FAST }, requestTimeoutMs: 5_000 }));
  const ep = rt.namespace('graceful').component('svc').endpoint('work');
  const routed = ep.client<undefined, WorkReply>();
  const queued = ep.client<undefined, WorkReply>({ router: 'queue' });
  await routed.waitForInstances(3, { timeout: 5_000 });
  const watch = new ListWatch(routed.instances$);
  ctx.cleanup.add(async () => watch.stop());

  // Half the load picks instances from discovery, half leaves it to the NATS queue group.
  const loads = [ctx.cleanup.load(() => routed.call(undefined), 50), ctx.cleanup.load(() => queued.call(undefined), 50)];
  const stops: Array<{ id: string; dropped: number; stopped: number; lastServed: number; exitedAt: number }> = [];
  await underLoad(1_000);
  for (const w of workers.slice(0, 2)) {
    const id = w.ready.instanceIds[0] as string;
    await w.stop(10_000);
    const exitedAt = clock();
    const onStop = w.messages.find((m) => m.type === 'onStop');
    assert.ok(onStop, `worker ${w.pid} reported no onStop before exiting; output:\n${w.log}`);
    await waitFor(() => watch.dropped.has(id), 2_000, `instance ${id} to leave the client's list`);
    stops.push({ id, dropped: watch.dropped.get(id) as number, stopped: onStop['t'] as number, lastServed: onStop['lastServed'] as number, exitedAt });
    await underLoad(1_000);
  }
  const [r, q] = await Promise.all(loads.map((l) => l.stop()));
  watch.stop();

  const last = workers[2]?.ready.instanceIds[0] as string;
  const tail = [...(r ?? []), ...(q ?? [])].filter((o) => o.sentAt > (stops[1]?.exitedAt ?? Infinity) + 100);
  for (const st of stops) {
    console.log(
      `discovery: graceful stop of ${st.id}: left the list ${ms(st.stopped - st.dropped)} ms before it stopped serving (last request started ${ms(st.lastServed - st.dropped)} ms after it left)`,
    );
  }
  console.log(
    `discovery: graceful stop under load: round-robin ${r?.length} requests, ${describeFailures(r ?? [])} failed; queue ${q?.length} requests, ${describeFailures(q ?? [])} failed`,
  );
  for (const st of stops) assert.ok(st.dropped < st.stopped, `instance ${st.id} left the list ${ms(st.dropped - st.stopped)} ms after it stopped serving`);
  assert.is((r ?? []).filter((o) => !o.ok).length, 0, `round-robin failures: ${describeFailures(r ?? [])}`);
  assert.is((q ?? []).filter((o) => !o.ok).length, 0, `queue failures: ${describeFailures(q ?? [])}`);
  assert.ok(tail.length > 50, `only ${tail.length} requests after the last stop`);
  assert.ok(
    tail.every((o) => o.id === last),
    'after two stops, the remaining instance serves everything',
  );
});

/** Lets the load run for a while: the load itself is the point, there is no event to await. */
function underLoad(msToRun: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, msToRun));
}

s.run();
