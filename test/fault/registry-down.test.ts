import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type EndpointClient, type KvBucket, Routers, Runtime } from '@troupe/runtime/internal';
import { Cleanup, NatsServer, type NatsCluster, type NatsServer as Server, waitFor, within, WorkerProcess } from '@troupe/testing';
import type { WorkReply } from './fixtures/discovery-common';
import { command } from './fixtures/discovery-harness';
import { jetStreamReady } from './fixtures/discovery-cluster';

// Issue #17.3: an instance serves while the registry is down. A 3-node JetStream cluster with
// replicated (R3) registry buckets loses two nodes: no quorum, so every KV request times out
// while the surviving node still routes core NATS. A worker process connects and spawns there:
// spawn returns within registerWaitMs, the queue group and the mailbox serve at once, a warning
// and `troupe_unregistered_instances 1` say it is unregistered. The nodes come back: the
// instance registers by itself, discovery-routed callers list and reach it, the gauge is 0.
// And a close during the outage is bounded and leaves nothing in the registry.

const SCRIPT = join(__dirname, 'fixtures', 'registry-down-worker.js');
const TIMING = { heartbeatMs: 300, leaseTtlMs: 1_500, registerWaitMs: 300 } as const;
/** Spawn during the outage: registerWaitMs plus slack for a loaded 2-core machine. */
const SPAWN_BOUND_MS = 1_000;
/** From the nodes' restart to the instance listed: the election (4–8 s on 2.9.10) plus the registration backoff. */
const REGISTER_BOUND_MS = 20_000;
/** close() while the registry does not answer: grace period (1 s, nothing in flight) and a few short steps. */
const CLOSE_BOUND_MS = 3_000;

interface Ctx {
  cleanup: Cleanup;
  cluster?: NatsCluster;
}

const s = suite<Ctx>('registry down - instances serve unregistered and register when it answers', { cleanup: new Cleanup() });

s.after.each(async (ctx) => {
  await ctx.cleanup.run();
  await ctx.cluster?.stop();
  ctx.cluster = undefined;
});

/** A cluster whose registry buckets exist (R3), and a caller runtime on node `a` whose discovery view of svc.work is synced (empty). */
async function setup(ctx: Ctx, ns: string): Promise<{ a: Server; others: Server[]; rt: Runtime; rr: EndpointClient<undefined, WorkReply>; buckets: Buckets }> {
  ctx.cluster = await NatsServer.cluster(3, { jetstream: true });
  await jetStreamReady(ctx.cluster);
  const [a, ...others] = ctx.cluster.servers as [Server, Server, Server];
  const rt = ctx.cleanup.runtime(
    await Runtime.connect({
      servers: a.url,
      discovery: { heartbeatMs: TIMING.heartbeatMs, leaseTtlMs: TIMING.leaseTtlMs, replicas: 3 },
      requestTimeoutMs: 2_000,
    }),
  );
  const rr = rt.namespace(ns).component('svc').endpoint('work').client<undefined, WorkReply>({ router: 'round-robin' });
  assert.equal(await within(rr.instances(), 10_000, 'the discovery view to sync'), []);
  // Opened now: opening a bucket is a JetStream request too, and times out during the outage.
  const buckets = {
    records: await rt.bus.persistence.kv('troupe_instances', { ttlMs: 0, replicas: 3 }),
    leases: await rt.bus.persistence.kv('troupe_leases', { ttlMs: TIMING.leaseTtlMs, replicas: 3 }),
  };
  return { a, others, rt, rr, buckets };
}

interface Buckets {
  records: KvBucket;
  leases: KvBucket;
}

/** Kills every node but `a`: JetStream has no quorum, KV requests time out; `a` still routes core NATS. */
async function loseQuorum(others: Server[], buckets: Buckets): Promise<void> {
  for (const sv of others) await sv.kill('SIGKILL');
  const answered = await buckets.leases.put('probe', new Uint8Array([1])).then(
    () => true,
    () => false,
  );
  assert.not.ok(answered, 'the registry still answered with two of three nodes down');
}

async function restore(cluster: NatsCluster, others: Server[]): Promise<void> {
  for (const sv of others) await sv.restart();
  await jetStreamReady(cluster);
}

async function startWorker(ctx: Ctx, url: string, ns: string): Promise<WorkerProcess> {
  const w = await WorkerProcess.start(SCRIPT, {
    env: {
      NATS_URL: url,
      TROUPE_NS: ns,
      TROUPE_HB: String(TIMING.heartbeatMs),
      TROUPE_TTL: String(TIMING.leaseTtlMs),
      TROUPE_REGISTER_WAIT: String(TIMING.registerWaitMs),
      TROUPE_LOG: 'warn',
    },
    readyTimeoutMs: 15_000,
  });
  ctx.cleanup.add(() => w.kill('SIGKILL'));
  return w;
}

async function gauge(w: WorkerProcess, name: string): Promise<number> {
  const text = String((await command(w, { type: 'metrics' }, 'metrics'))['text']);
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  assert.ok(line, `no ${name} in the worker's metrics`);
  return Number(line.split(' ')[1]);
}

s('serves its queue group and mailbox at once while the registry is down, and registers when it answers', async (ctx) => {
  const ns = 'regdown';
  const { a, others, rt, rr, buckets } = await setup(ctx, ns);
  await loseQuorum(others, buckets);
  const w = await startWorker(ctx, a.url, ns);
  const id = w.ready.instanceIds[0] as string;
  const spawnMs = Number(w.ready['spawnMs']);
  const connectMs = Number(w.ready['connectMs']);
  assert.ok(spawnMs < SPAWN_BOUND_MS, `spawn took ${Math.round(spawnMs)} ms with the registry down (bound ${SPAWN_BOUND_MS} ms)`);
  assert.ok(connectMs < SPAWN_BOUND_MS + 1_000, `connect took ${Math.round(connectMs)} ms with the registry down`);

  // Queue-routed and direct calls need no registry.
  const queue = rt.namespace(ns).component('svc').endpoint('work').client<undefined, WorkReply>({ router: 'queue' });
  assert.is((await queue.call(undefined)).id, id, 'served through the queue group');
  assert.is((await queue.direct(id).call(undefined)).id, id, 'served through its mailbox');
  assert.match(w.log, /registry not answering/, `no warning; output:\n${w.log}`);
  assert.is(await gauge(w, 'troupe_unregistered_instances'), 1);
  assert.ok((await gauge(w, 'troupe_registration_failures_total')) >= 1);
  assert.equal(await rr.instances(), [], 'listed while the registry is down');

  const t0 = Date.now();
  await restore(ctx.cluster as NatsCluster, others);
  let registeredMs = NaN;
  void waitFor(() => /registry answers again/.test(w.log), REGISTER_BOUND_MS, 'the recovery line').then(
    () => (registeredMs = Date.now() - t0),
    () => undefined,
  );
  const listed = await rr.waitForInstances(1, { timeout: REGISTER_BOUND_MS });
  const listedMs = Date.now() - t0;
  assert.equal(
    listed.map((r) => r.instanceId),
    [id],
  );
  assert.is((await rr.call(undefined)).id, id, 'a discovery-routed call reaches it');
  assert.is((await rr.call(undefined, { router: Routers.direct(id) })).id, id);
  assert.is(await gauge(w, 'troupe_unregistered_instances'), 0);
  await waitFor(() => /registry answers again/.test(w.log), 5_000, 'the recovery line');
  assert.is(w.log.match(/registry not answering/g)?.length, 1, `one outage warning; output:\n${w.log}`);
  console.log(
    `registry down: connect ${Math.round(connectMs)} ms, spawn ${Math.round(spawnMs)} ms (registerWaitMs ${TIMING.registerWaitMs}); after the two nodes were restarted: registered in ${registeredMs} ms, listed by the caller in ${listedMs} ms`,
  );
});

s('close while the registry is down is bounded and leaves nothing registered', async (ctx) => {
  const ns = 'regdown_close';
  const { a, others, buckets } = await setup(ctx, ns);
  await loseQuorum(others, buckets);
  const w = await startWorker(ctx, a.url, ns);
  const id = w.ready.instanceIds[0] as string;
  const lease = String(w.ready['lease']);
  const t0 = Date.now();
  await w.stop(CLOSE_BOUND_MS + 5_000);
  const closeMs = Date.now() - t0;
  assert.ok(closeMs < CLOSE_BOUND_MS, `close took ${closeMs} ms with the registry down (bound ${CLOSE_BOUND_MS} ms); output:\n${w.log}`);
  assert.is(w.child.exitCode, 0, `exit code; output:\n${w.log}`);

  await restore(ctx.cluster as NatsCluster, others);
  const { records, leases } = buckets;
  // A registry read answering proves the registry is back (reads go to the stream leader).
  const read = async (what: string, p: () => Promise<unknown>): Promise<unknown> => {
    for (const until = Date.now() + REGISTER_BOUND_MS; ;) {
      try {
        return await within(p(), 1_000, what);
      } catch (err) {
        if (Date.now() > until) throw err;
      }
    }
  };
  assert.is(await read('the record', () => records.get(`${ns}.svc.work.${id}`)), undefined, 'a record of the closed instance is in the registry');
  assert.is(await read('the marker', () => records.get(`_proc.${lease}`)), undefined, 'the process marker is in the registry');
  assert.is(await read('the lease', () => leases.get(lease)), undefined, 'the lease is in the registry');
  console.log(`registry down: close() took ${closeMs} ms (bound ${CLOSE_BOUND_MS} ms); nothing registered after the registry came back`);
});

s('no registry bucket yet and no quorum: connect and spawn return, the buckets are created and the instance registered when JetStream answers', async (ctx) => {
  const ns = 'regdown_fresh';
  ctx.cluster = await NatsServer.cluster(3, { jetstream: true });
  await jetStreamReady(ctx.cluster);
  const [a, ...others] = ctx.cluster.servers as [Server, Server, Server];
  for (const sv of others) await sv.kill('SIGKILL');
  const w = await startWorker(ctx, a.url, ns);
  const id = w.ready.instanceIds[0] as string;
  const { connectMs, spawnMs } = w.ready as unknown as { connectMs: number; spawnMs: number };
  assert.ok(spawnMs < SPAWN_BOUND_MS, `spawn took ${Math.round(spawnMs)} ms with no bucket and no quorum (bound ${SPAWN_BOUND_MS} ms)`);
  assert.ok(connectMs < SPAWN_BOUND_MS + 1_000, `connect took ${Math.round(connectMs)} ms with no bucket and no quorum`);
  const took = connectMs + spawnMs;
  const rt = ctx.cleanup.runtime(await Runtime.connect({ servers: a.url, discovery: false }));
  const queue = rt.namespace(ns).component('svc').endpoint('work').client<undefined, WorkReply>();
  assert.is((await queue.call(undefined)).id, id, 'served through the queue group');
  assert.is(await gauge(w, 'troupe_unregistered_instances'), 1);

  const t0 = Date.now();
  await restore(ctx.cluster, others);
  await waitFor(() => /registry answers again/.test(w.log), REGISTER_BOUND_MS, `the recovery line; output:\n${w.log}`);
  const registeredMs = Date.now() - t0;
  const caller = ctx.cleanup.runtime(
    await Runtime.connect({ servers: a.url, discovery: { heartbeatMs: TIMING.heartbeatMs, leaseTtlMs: TIMING.leaseTtlMs, replicas: 3 } }),
  );
  const listed = await caller.namespace(ns).component('svc').endpoint('work').client().waitForInstances(1, { timeout: 5_000 });
  assert.equal(
    listed.map((r) => r.instanceId),
    [id],
  );
  assert.is(await gauge(w, 'troupe_unregistered_instances'), 0);
  console.log(`registry down, no bucket yet: connect + spawn ${Math.round(took)} ms; registered ${registeredMs} ms after the nodes were restarted`);
});

s.run();
