import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { NatsCluster, NatsServer, WorkerProcess } from '@troupe/testing';
import { waitFor, within } from '@troupe/testing';
import type { Runtime } from '@troupe/runtime/internal';
import { clock, ms } from './fixtures/discovery-common';
import { type Ctx, freshListed, jetStreamReady, placement, setup, TIMING } from './fixtures/discovery-cluster';
import { Cleanup, describeFailures, ListWatch } from './fixtures/discovery-harness';

// The registry streams' leader node dies (R3 buckets): JetStream elects a new leader,
// which on nats-server 2.9.10 takes several seconds — longer than the lease TTL. Process
// beats travel on a plain core-NATS subject (`_TROUPE.lease.{lease}`), so liveness does
// not wait for the election: no live instance may leave any list for longer than one
// heartbeat, and no request to an instance on a surviving node may fail.

const s = suite<Ctx>('discovery - cluster, registry leaders lost', { cleanup: new Cleanup() });

s.after.each(async (ctx) => {
  await ctx.cleanup.run();
  await ctx.cluster?.stop();
  ctx.cluster = undefined;
});

const STEPDOWN_TRIES = 20;

/** Whether `target` holds a current copy of `stream` (a restarted node catches up first; elections skip it until then). */
async function current(cluster: NatsCluster, stream: string, target: NatsServer): Promise<boolean> {
  type Jsz = {
    account_details?: Array<{ stream_detail?: Array<{ name: string; cluster?: { leader?: string; replicas?: Array<{ name: string; current?: boolean }> } }> }>;
  };
  for (const server of cluster.servers) {
    const jsz = await server.monitor<Jsz>('/jsz?streams=true').catch(() => undefined);
    for (const a of jsz?.account_details ?? []) {
      for (const d of a.stream_detail ?? []) {
        if (d.name !== stream || !d.cluster?.leader) continue;
        if (d.cluster.leader === target.serverName) return true;
        if (d.cluster.replicas?.some((r) => r.name === target.serverName && r.current)) return true;
      }
    }
  }
  return false;
}

/** Steps `stream`'s leader down until JetStream elects it on `target` (elections pick at random among current replicas). */
async function leadOn(rt: Runtime, cluster: NatsCluster, stream: string, target: NatsServer): Promise<void> {
  const until = Date.now() + 15_000;
  while (!(await current(cluster, stream, target))) {
    if (Date.now() > until) throw new Error(`${target.serverName} held no current copy of ${stream} within 15 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  for (let i = 0; i < STEPDOWN_TRIES; i++) {
    const { leaders } = await placement(cluster);
    const leader = leaders.get(stream);
    if (leader === target.serverName) return;
    if (leader) await rt.bus.request(`$JS.API.STREAM.LEADER.STEPDOWN.${stream}`, new Uint8Array(0), { timeoutMs: 2_000 }).catch(() => undefined);
    const until = Date.now() + 10_000;
    while (!(await placement(cluster)).leaders.get(stream)) {
      if (Date.now() > until) throw new Error(`${stream} elected no leader within 10 s of a step-down`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`${stream}'s leader did not land on ${target.serverName} in ${STEPDOWN_TRIES} step-downs`);
}

s('R3 buckets: killing each registry stream leader in turn under 100 req/s drops no live instance and fails no request', async (ctx) => {
  const { rt, workers, ids, client, watch, killed, cluster, describe } = await setup(ctx, 'clusterlead', 3, 'lease-stream-leader');
  // A second list: the runtime-wide listing (its own records watch).
  const listing = new ListWatch(rt.watchInstances('clusterlead') as never);
  ctx.cleanup.add(async () => listing.stop());
  await waitFor(() => ids.every((id) => listing.has(id)), 5_000, 'the runtime listing to show both instances');
  // Opened before a kill: the JetStream API may have no meta leader for a while after it.
  const buckets = {
    KV_troupe_instances: await rt.bus.persistence.kv('troupe_instances', { ttlMs: 0, replicas: 3 }),
    KV_troupe_leases: await rt.bus.persistence.kv('troupe_leases', { ttlMs: TIMING.leaseTtlMs, replicas: 3 }),
  };
  const load = ctx.cleanup.load(() => client.call(undefined), 100);
  const lines: string[] = [];
  for (const stream of ['KV_troupe_leases', 'KV_troupe_instances'] as const) {
    await leadOn(rt, cluster, stream, killed);
    const meta = (await killed.monitor<{ meta_cluster?: { leader?: string } }>('/jsz').catch(() => undefined))?.meta_cluster?.leader;
    await new Promise((r) => setTimeout(r, 500)); // load flowing before the kill
    const killedAt = clock();
    await killed.kill('SIGKILL');
    // The election is over when a registry write lands again.
    let writable = 0;
    while (!writable) {
      try {
        await within(buckets[stream].put('probe', new Uint8Array([1])), 500, 'a registry write');
        writable = clock();
      } catch {
        if (clock() - killedAt > 25_000) throw new Error(`${stream} took no write for 25 s after its leader died`);
      }
    }
    // A heartbeat TTL past the election: anything that was going to lapse has lapsed.
    await new Promise((r) => setTimeout(r, TIMING.leaseTtlMs));
    const until = clock();
    const gapClient = watch.longestGap(ids, killedAt, until);
    const gapListing = listing.longestGap(ids, killedAt, until);
    await killed.restart();
    // Requests sent before `until` have settled once their 2 s deadline passed.
    await jetStreamReady(cluster);
    await waitFor(() => load.outcomes.some((o) => o.sentAt > until + 2_000), 10_000, 'requests to settle after the election');
    const during = load.outcomes.filter((o) => o.sentAt > killedAt && o.sentAt < until);
    lines.push(
      `${stream} leader ${killed.serverName} killed (meta leader ${meta === killed.serverName ? 'too' : (meta ?? '?')}): writes failed ${ms(writable - killedAt)} ms; ` +
        `longest absence from the client's list ${ms(gapClient)} ms, from the listing ${ms(gapListing)} ms; ${during.filter((o) => !o.ok).length}/${during.length} requests failed`,
    );
    assert.ok(gapClient <= TIMING.heartbeatMs, `an instance left the client's list for ${ms(gapClient)} ms (bound: one ${TIMING.heartbeatMs} ms heartbeat)`);
    assert.ok(
      gapListing <= TIMING.heartbeatMs,
      `an instance left the runtime listing for ${ms(gapListing)} ms (bound: one ${TIMING.heartbeatMs} ms heartbeat)`,
    );
    assert.is(during.filter((o) => !o.ok).length, 0, `requests failed while ${stream}'s leader was lost: ${describeFailures(during)}`);
  }
  // A watch whose consumer died with a leader is resumed on a fresh one (issue #17.2).
  const fresh = await freshListed(workers[0] as WorkerProcess, watch, 2_000);
  await load.stop();
  console.log(`discovery: 3-node cluster, ${describe}:\n  ${lines.join('\n  ')}\n  a new instance was then listed in ${ms(fresh)} ms`);
});

s.run();
