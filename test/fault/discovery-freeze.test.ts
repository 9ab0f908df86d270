import * as assert from 'uvu/assert';
import { Runtime } from '@troupe/runtime/internal';
import { type NatsServer, waitFor, serverSuite } from '@troupe/testing';
import { clock, FAST, ms, type WorkReply } from './fixtures/discovery-common';
import { Cleanup, describeFailures, ListWatch } from './fixtures/discovery-harness';

// DESIGN §4.4: a frozen instance is inhibited after its first timeout and leaves the
// registry within the lease TTL. NATS-FACTS: a SIGSTOPped queue member keeps its slot
// and is never evicted, so only the client side can route around it.

const INHIBIT_MS = 1_000;
const TIMEOUT_MS = 300;
const FROZEN_MS = 1_500;

const s = serverSuite('discovery - SIGSTOP', new Cleanup());

s('SIGSTOP of 1 of 2 workers under load: ≥ 99% of requests after the first timeout succeed; after SIGCONT it serves again', async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const env = { NATS_URL: url, TROUPE_NS: 'freeze', TROUPE_HB: String(FAST.heartbeatMs), TROUPE_TTL: String(FAST.leaseTtlMs), TROUPE_WORK_MS: '5' };
  const victim = await ctx.cleanup.worker(env);
  const survivor = await ctx.cleanup.worker(env);
  ctx.cleanup.add(async () => victim.signal('SIGCONT'));
  const rt = ctx.cleanup.runtime(await Runtime.connect({ servers: url, discovery: { ...FAST, inhibitMs: INHIBIT_MS }, requestTimeoutMs: TIMEOUT_MS }));
  const client = rt.namespace('freeze').component('svc').endpoint('work').client<undefined, WorkReply>({ router: 'round-robin' });
  await client.waitForInstances(2, { timeout: 5_000 });
  const frozenId = victim.ready.instanceIds[0] as string;
  const watch = new ListWatch(client.instances$);
  ctx.cleanup.add(async () => watch.stop());

  const load = ctx.cleanup.load(() => client.call(undefined), 50);
  await new Promise((r) => setTimeout(r, 1_000));
  const stoppedAt = clock();
  victim.signal('SIGSTOP');
  await waitFor(() => load.failures.some((o) => o.code === 'TIMEOUT'), 2_000, 'the first TIMEOUT');
  const firstTimeout = Math.min(...load.failures.filter((o) => o.code === 'TIMEOUT').map((o) => o.doneAt));
  await waitFor(() => !watch.has(frozenId), FAST.leaseTtlMs + 500, 'the frozen instance to leave the list');
  const leftAfter = (watch.dropped.get(frozenId) as number) - stoppedAt;
  await new Promise((r) => setTimeout(r, Math.max(0, stoppedAt + FROZEN_MS - clock())));
  const resumedAt = clock();
  victim.signal('SIGCONT');
  await waitFor(() => watch.has(frozenId), 3_000, 'the resumed instance to be listed again');
  const relistedAfter = (watch.appeared.get(frozenId) as number) - resumedAt;
  const servesAgain = (): boolean => load.outcomes.some((o) => o.ok && o.id === frozenId && o.sentAt > resumedAt);
  await waitFor(servesAgain, INHIBIT_MS * 2 + 2_000, 'the resumed instance to serve a request');
  const servedAfter = Math.min(...load.outcomes.filter((o) => o.ok && o.id === frozenId && o.sentAt > resumedAt).map((o) => o.sentAt)) - resumedAt;
  await new Promise((r) => setTimeout(r, 500));
  const outcomes = await load.stop();

  const later = outcomes.filter((o) => o.sentAt > firstTimeout);
  const laterOk = later.filter((o) => o.ok).length;
  const before = outcomes.filter((o) => o.sentAt >= stoppedAt && o.sentAt <= firstTimeout);
  console.log(
    `discovery: SIGSTOP of 1 of 2 workers (round-robin, ${TIMEOUT_MS} ms timeout, 50 req/s): first timeout ${ms(firstTimeout - stoppedAt)} ms after SIGSTOP; ` +
      `${before.filter((o) => !o.ok).length} of ${before.length} requests sent before it failed; after it ${laterOk}/${later.length} succeeded (${ms((100 * laterOk) / later.length)}%, ${describeFailures(later)}); ` +
      `left the list ${ms(leftAfter)} ms after SIGSTOP; after SIGCONT listed again in ${ms(relistedAfter)} ms and served again in ${ms(servedAfter)} ms (inhibition ${INHIBIT_MS} ms)`,
  );
  assert.ok(laterOk >= 0.99 * later.length, `only ${laterOk}/${later.length} requests after the first timeout succeeded: ${describeFailures(later)}`);
  assert.ok(leftAfter <= FAST.leaseTtlMs + 100, `the frozen instance left the list ${ms(leftAfter)} ms after SIGSTOP (TTL ${FAST.leaseTtlMs} ms)`);
  assert.ok(
    outcomes.some((o) => o.ok && o.id === survivor.ready.instanceIds[0] && o.sentAt > firstTimeout),
    'the survivor served',
  );
});

s.run();
