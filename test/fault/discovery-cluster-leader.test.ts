import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { WorkerProcess } from '@troupe/testing';
import { waitFor, within } from '@troupe/testing';
import { clock, ms } from './fixtures/discovery-common';
import { type Ctx, freshListed, setup, TIMING } from './fixtures/discovery-cluster';
import { Cleanup, describeFailures } from './fixtures/discovery-harness';

// The registry streams' leader node dies (R3 buckets): JetStream elects a new leader,
// which on nats-server 2.9 takes several seconds — longer than the lease TTL. This
// file measures what discovery does meanwhile and proves it recovers by itself.

const s = suite<Ctx>('discovery - cluster, registry leader lost', { cleanup: new Cleanup() });

s.after.each(async (ctx) => {
  await ctx.cleanup.run();
  await ctx.cluster?.stop();
  ctx.cluster = undefined;
});

// Opt-in (TROUPE_FAULT_LEADER_LOSS=1): this measures a known limitation, not a guarantee.
// Lease liveness rides on JetStream writes and watches; after the lease stream's leader
// dies, 2.9.10 takes 4-8 s to elect a new one and nats.js re-creates a dead watch consumer
// only after two missed 5 s idle heartbeats, so recovery took 10 s in two runs of three
// and over 30 s in the third. Until heartbeats also travel on a plain subject (filed as its
// own issue) this cannot be a bounded assertion in CI.
const LEADER_LOSS_REASON =
  'skipped unless TROUPE_FAULT_LEADER_LOSS=1: recovery after a lease-stream leader election varies 10-40 s on nats-server 2.9.10 (known limitation, own issue)';
const leaderCase = process.env.TROUPE_FAULT_LEADER_LOSS === '1' ? s : (console.log(`discovery: ${LEADER_LOSS_REASON}`), s.skip);

leaderCase('R3 buckets: killing the lease stream leader node: discovery recovers after the raft election (figures printed)', async (ctx) => {
  const { rt, workers, ids, client, watch, killed, describe } = await setup(ctx, 'clusterlead', 3, 'lease-stream-leader');
  // Opened before the kill: the JetStream API may have no meta leader for a while after it.
  const leases = await rt.bus.persistence.kv('troupe_leases', { ttlMs: TIMING.leaseTtlMs, replicas: 3 });
  const records = await rt.bus.persistence.kv('troupe_instances', { ttlMs: 0, replicas: 3 });
  const load = ctx.cleanup.load(() => client.call(undefined), 50);
  await new Promise((r) => setTimeout(r, 1_000));
  const killedAt = clock();
  await killed.kill('SIGKILL');
  // Election: the first registry writes that land again (probed from the client's node;
  // both streams, which may have lost their leader together).
  let writable = 0;
  while (!writable) {
    try {
      await within(Promise.all([leases.put('probe', new Uint8Array([1])), records.put('probe', new Uint8Array([1]))]), 250, 'registry writes');
      writable = clock();
    } catch {
      if (clock() - killedAt > 30_000) throw new Error('the lease stream took no write for 30 s after its leader died');
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  // A watch whose consumer lived on the dead node is silent until nats.js re-creates it
  // (two missed 5 s idle heartbeats) or Troupe notices (a lease alive in the bucket).
  await waitFor(() => ids.every((id) => watch.has(id)), 20_000, 'both instances to be listed again after the election');
  const recovered = clock();
  await new Promise((r) => setTimeout(r, 1_000));
  const fresh = await freshListed(workers[0] as WorkerProcess, watch, 30_000);
  const outcomes = await load.stop();
  const dropped = ids.filter((id) => (watch.dropped.get(id) ?? 0) > killedAt);
  const missing = dropped.length > 0 ? Math.max(...ids.map((id) => (watch.appeared.get(id) ?? killedAt) - (watch.dropped.get(id) ?? killedAt))) : 0;
  const during = outcomes.filter((o) => o.sentAt > killedAt && o.sentAt < recovered);
  const after = outcomes.filter((o) => o.sentAt > recovered + 100);
  console.log(
    `discovery: 3-node cluster, ${describe} (leader of the lease stream): lease writes failed for ${ms(writable - killedAt)} ms (raft election); ` +
      `${dropped.length} instance(s) left the list for up to ${ms(missing)} ms; ${during.filter((o) => !o.ok).length}/${during.length} requests failed meanwhile (${describeFailures(during)}); ` +
      `listed again ${ms(recovered - writable)} ms after writes resumed; ${after.filter((o) => !o.ok).length}/${after.length} failed after that; a new instance was then listed in ${ms(fresh)} ms`,
  );
  assert.is(after.filter((o) => !o.ok).length, 0, `after recovery: ${describeFailures(after)}`);
});

s.run();
