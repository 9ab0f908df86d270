import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type EndpointClient, Runtime } from '@troupe/runtime/internal';
import { NatsServer, type WorkerProcess } from '@troupe/testing';
import { clock, ms, type WorkReply } from './fixtures/discovery-common';
import { consumerHosts, type Ctx, freshListed, jetStreamReady, metaLeader, streamLeadersOff, TIMING } from './fixtures/discovery-cluster';
import { Cleanup, ListWatch } from './fixtures/discovery-harness';

// The JetStream meta leader is lost while it holds no stream leader (R3 buckets): the
// registry still takes writes, but no consumer can be created until the meta election
// ends — 4-9 s on nats-server 2.9.10. A client whose records watch ran on the lost node
// must still list a new instance promptly: it reads what its watch missed from the
// stream's replicas (a direct get needs no meta leader) while the watch cannot be resumed.

const s = suite<Ctx>('discovery - cluster, meta leader lost', { cleanup: new Cleanup() });

s.after.each(async (ctx) => {
  await ctx.cleanup.run();
  await ctx.cluster?.stop();
  ctx.cluster = undefined;
});

/** Client runtimes tried until one's records consumer runs on the meta leader (each lands there with p ≈ 1/3 per consumer). */
const PLACEMENT_TRIES = 15;
/**
 * The bound on listing a new instance while the meta election runs: a beat (300 ms), the
 * check's grace (250 ms), the consumer check's timeout (500 ms), a direct get. Without the
 * read it waits for the election: 3-4 s after this spawn, measured.
 */
const LISTED_WITHIN_MS = 1_500;

s('R3 buckets: with the meta leader lost, a client whose records watch ran on it lists a new instance within 1.5 s', async (ctx) => {
  ctx.cluster = await NatsServer.cluster(3, { jetstream: true });
  const cluster = ctx.cluster;
  await jetStreamReady(cluster);
  const discovery = { ...TIMING, replicas: 3 as const };
  const boot = await Runtime.connect({ servers: cluster.urls, discovery });
  const meta = await metaLeader(cluster.servers);
  assert.ok(meta, 'a meta leader');
  await streamLeadersOff(boot, cluster, meta);
  await boot.close();
  const killed = cluster.servers.find((sv) => sv.serverName === meta) as NatsServer;
  const [w, c] = cluster.servers.filter((sv) => sv !== killed) as [NatsServer, NatsServer];
  const env = {
    NATS_URL: w.url,
    TROUPE_NS: 'clustermeta',
    TROUPE_HB: String(TIMING.heartbeatMs),
    TROUPE_TTL: String(TIMING.leaseTtlMs),
    TROUPE_WORK_MS: '2',
    TROUPE_KV_REPLICAS: '3',
  };
  const worker = await ctx.cleanup.worker(env);

  // A client on C whose own records consumer JetStream placed on the meta leader.
  let client: EndpointClient<undefined, WorkReply> | undefined;
  let tries = 0;
  for (; tries < PLACEMENT_TRIES && !client; tries++) {
    const before = await consumerHosts(cluster, 'KV_troupe_instances');
    const rt = await Runtime.connect({ servers: c.url, discovery, requestTimeoutMs: 2_000 });
    const candidate = rt.namespace('clustermeta').component('svc').endpoint('work').client<undefined, WorkReply>();
    await candidate.waitForInstances(1, { timeout: 5_000 });
    const mine = [...(await consumerHosts(cluster, 'KV_troupe_instances'))].filter(([name]) => !before.has(name));
    if (mine.some(([, host]) => host === meta)) {
      ctx.cleanup.runtime(rt);
      client = candidate;
    } else await rt.close();
  }
  assert.ok(client, `no client's records consumer landed on the meta leader ${meta} in ${PLACEMENT_TRIES} tries`);
  const watch = new ListWatch(client.instances$);
  ctx.cleanup.add(async () => watch.stop());

  const killedAt = clock();
  await killed.kill('SIGKILL');
  // A lease TTL: the watch's consumer is gone, and the election is still running.
  await new Promise((r) => setTimeout(r, TIMING.leaseTtlMs));
  const fresh = await freshListed(worker as WorkerProcess, watch, 10_000);
  const leaderThen = await metaLeader([w, c]);
  console.log(
    `discovery: 3-node cluster, R3 buckets, meta leader ${meta} killed (no stream leader; the client's records consumer on it, placed in ${tries} tries): ` +
      `an instance spawned ${ms(TIMING.leaseTtlMs)} ms after the kill was listed in ${ms(fresh)} ms; meta leader then: ${leaderThen === meta ? 'still the lost node' : (leaderThen ?? 'none (election running)')}; ${ms(clock() - killedAt)} ms after the kill`,
  );
  assert.ok(fresh <= LISTED_WITHIN_MS, `a new instance took ${ms(fresh)} ms to be listed while the meta leader was lost (bound ${LISTED_WITHIN_MS} ms)`);
});

s.run();
