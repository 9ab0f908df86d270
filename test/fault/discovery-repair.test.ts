import * as fs from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type EndpointClient, Runtime } from '@troupe/runtime/internal';
import { NatsServer, waitFor, within, type WorkerProcess } from '@troupe/testing';
import { clock, FAST, ms, type WorkReply } from './fixtures/discovery-common';
import { Cleanup, command, ListWatch } from './fixtures/discovery-harness';

// DESIGN §4.5: a process whose lease or registry entry is lost (network blip, KV
// wipe) re-registers by itself — it does not stay invisible or kill itself.

const WORKERS = 3;
// Timer and scheduling jitter of 5 processes on 2 cores.
const SLACK_MS = 200;

interface Ctx {
  cleanup: Cleanup;
  server?: NatsServer;
}

const s = suite<Ctx>('discovery - self-repair', { cleanup: new Cleanup() });

s.after.each(async (ctx) => {
  await ctx.cleanup.run();
  await ctx.server?.stop();
  ctx.server = undefined;
});

/** A private server, 3 workers, and a client that lists all of them. */
async function setup(ctx: Ctx, ns: string) {
  ctx.server = await NatsServer.start({ jetstream: true });
  const url = ctx.server.url;
  const env = { NATS_URL: url, TROUPE_NS: ns, TROUPE_HB: String(FAST.heartbeatMs), TROUPE_TTL: String(FAST.leaseTtlMs) };
  const workers: WorkerProcess[] = [];
  for (let i = 0; i < WORKERS; i++) workers.push(await ctx.cleanup.worker(env));
  const rt = ctx.cleanup.runtime(await Runtime.connect({ servers: url, discovery: { ...FAST }, requestTimeoutMs: 2_000 }));
  const client = rt.namespace(ns).component('svc').endpoint('work').client<undefined, WorkReply>();
  await client.waitForInstances(WORKERS, { timeout: 5_000 });
  const watch = new ListWatch(client.instances$);
  ctx.cleanup.add(async () => watch.stop());
  const ids = workers.map((w) => w.ready.instanceIds[0] as string);
  return { server: ctx.server, rt, client, watch, ids, workers };
}

/** Every id answers a call to its mailbox. */
async function allAnswer(client: EndpointClient<undefined, WorkReply>, ids: string[]): Promise<void> {
  for (const id of ids) {
    // The instance's own mailbox, not a router: a router skips an instance that answered
    // "no responders" while it was reconnecting (inhibited for inhibitMs).
    const r = await client.direct(id).call(undefined, { timeout: 2_000 });
    assert.is(r.id, id);
  }
}

s('purging the records bucket: every worker is listed again within one heartbeat', async (ctx) => {
  const { rt, client, watch, ids } = await setup(ctx, 'purge');
  const bucket = await rt.bus.persistence.kv('troupe_instances', { ttlMs: 0 });
  const purgeStart = clock();
  await bucket.purge();
  const purgeEnd = clock();
  await waitFor(() => ids.every((id) => (watch.dropped.get(id) ?? 0) >= purgeStart), 2_000, 'the purge to empty the list');
  await waitFor(() => ids.every((id) => watch.has(id)), 3_000, 'every worker to be listed again');
  const back = Math.max(...ids.map((id) => (watch.appeared.get(id) as number) - purgeEnd));
  console.log(
    `discovery: purge of troupe_instances (${ms(purgeEnd - purgeStart)} ms): all ${WORKERS} workers listed again ${ms(back)} ms after the purge (heartbeat ${FAST.heartbeatMs} ms)`,
  );
  assert.ok(
    back <= FAST.heartbeatMs + SLACK_MS,
    `listed again ${ms(back)} ms after the purge, more than a heartbeat (${FAST.heartbeatMs} ms) + ${SLACK_MS} ms`,
  );
  await allAnswer(client, ids);
});

s('purging both buckets (records and leases): every worker is listed again within one heartbeat', async (ctx) => {
  const { rt, client, watch, ids } = await setup(ctx, 'purgeboth');
  const records = await rt.bus.persistence.kv('troupe_instances', { ttlMs: 0 });
  const leases = await rt.bus.persistence.kv('troupe_leases', { ttlMs: FAST.leaseTtlMs });
  const purgeStart = clock();
  await Promise.all([records.purge(), leases.purge()]);
  const purgeEnd = clock();
  await waitFor(() => ids.every((id) => (watch.dropped.get(id) ?? 0) >= purgeStart), 2_000, 'the purge to empty the list');
  await waitFor(() => ids.every((id) => watch.has(id)), 3_000, 'every worker to be listed again');
  const back = Math.max(...ids.map((id) => (watch.appeared.get(id) as number) - purgeEnd));
  console.log(`discovery: purge of both buckets: all ${WORKERS} workers listed again ${ms(back)} ms after the purge (heartbeat ${FAST.heartbeatMs} ms)`);
  assert.ok(back <= FAST.heartbeatMs + SLACK_MS, `listed again ${ms(back)} ms after the purge`);
  await allAnswer(client, ids);
});

/**
 * Calls every id through the router until all answer (the client reconnects too);
 * resolves with the time that took, bounded.
 */
async function untilAllAnswer(client: EndpointClient<undefined, WorkReply>, ids: string[], timeoutMs: number): Promise<number> {
  const t0 = clock();
  for (;;) {
    try {
      await allAnswer(client, ids);
      return clock() - t0;
    } catch (err) {
      if (clock() - t0 > timeoutMs) throw new Error(`not every worker answered within ${timeoutMs} ms: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** After recovery the watches must be live, not just the cached list: a new instance is listed within 100 ms. */
async function newInstanceListed(w: WorkerProcess, watch: ListWatch): Promise<number> {
  const m = await command(w, { type: 'spawn' }, 'spawned');
  const id = m['id'] as string;
  await waitFor(() => watch.has(id), 2_000, `the instance ${id} spawned after recovery to be listed`);
  return (watch.appeared.get(id) as number) - (m['t1'] as number);
}

// A reconnect takes the client's reconnect wait (250 ms) plus jitter, then a heartbeat re-registers.
const RECOVERY_BOUND_MS = 1_000;

s('restarting the JetStream server: every worker stays or is listed again within a reconnect and a heartbeat, and answers', async (ctx) => {
  const { server, client, watch, ids, workers } = await setup(ctx, 'restart');
  const t0 = clock();
  await server.restart();
  const up = clock();
  const answerIn = await untilAllAnswer(client, ids, 10_000);
  await waitFor(() => ids.every((id) => watch.has(id)), 5_000, 'every worker to be listed');
  const dropped = ids.filter((id) => (watch.dropped.get(id) ?? 0) > t0);
  const back = Math.max(0, ...ids.map((id) => Math.max(0, (watch.appeared.get(id) ?? 0) - up)));
  const fresh = await newInstanceListed(workers[0] as WorkerProcess, watch);
  console.log(
    `discovery: JetStream server restart (down ${ms(up - t0)} ms): ${dropped.length} of ${WORKERS} workers left the list; all listed ${ms(back)} ms and answering ${ms(answerIn)} ms after the server was back; a new instance was listed ${ms(fresh)} ms after its spawn`,
  );
  assert.ok(back <= RECOVERY_BOUND_MS, `listed again ${ms(back)} ms after the restart`);
  assert.ok(answerIn <= RECOVERY_BOUND_MS, `answering again ${ms(answerIn)} ms after the restart`);
  assert.ok(fresh <= 100, `a new instance took ${ms(fresh)} ms to be listed after the restart`);
});

s('a JetStream store wiped by a crash: the buckets are re-created and every worker registers again', async (ctx) => {
  const { server, rt, client, watch, ids, workers } = await setup(ctx, 'wipe');
  const t0 = clock();
  await server.kill('SIGKILL');
  fs.rmSync(server.storeDir as string, { recursive: true, force: true });
  await server.restart();
  const up = clock();
  // The client's list may never have dropped them (a worker can re-register before the
  // client's watch is re-opened), so ask the registry itself.
  const registered = await untilRegistered(
    rt,
    ids.map((id) => `wipe.svc.work.${id}`),
    10_000,
  );
  await waitFor(() => ids.every((id) => watch.has(id)), 5_000, 'every worker to be listed after the wipe');
  const answerIn = await untilAllAnswer(client, ids, 5_000);
  const fresh = await newInstanceListed(workers[0] as WorkerProcess, watch);
  console.log(
    `discovery: JetStream store wiped (kill -9 + empty store, down ${ms(up - t0)} ms): all ${WORKERS} workers registered again ${ms(registered - up)} ms after the server was back; a new instance was listed ${ms(fresh)} ms after its spawn`,
  );
  assert.ok(registered - up <= RECOVERY_BOUND_MS, `registered again ${ms(registered - up)} ms after the server was back`);
  assert.ok(answerIn <= RECOVERY_BOUND_MS, `answering again ${ms(answerIn)} ms later`);
  assert.ok(fresh <= 100, `a new instance took ${ms(fresh)} ms to be listed after the wipe`);
});

/** Polls the records bucket until every key is there; resolves with the time (shared clock). */
async function untilRegistered(rt: Runtime, keys: string[], timeoutMs: number): Promise<number> {
  const until = clock() + timeoutMs;
  let missing = keys;
  for (;;) {
    try {
      // Each attempt bounded: a KV request sent while reconnecting waits for nats.js's 5 s JetStream timeout.
      const bucket = await within(rt.bus.persistence.kv('troupe_instances', { ttlMs: 0 }), 250, 'the records bucket');
      const got = await within(Promise.all(keys.map((k) => bucket.get(k))), 250, 'the records');
      missing = keys.filter((_, i) => got[i] === undefined);
      if (missing.length === 0) return clock();
    } catch {
      // reconnecting, or JetStream not ready yet
    }
    if (clock() > until) throw new Error(`records ${missing.join(', ')} not in the registry ${timeoutMs} ms after the wipe`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

s('registry watch consumers deleted (as when the node holding them dies): live instances stay listed and new ones are seen again', async (ctx) => {
  const { rt, client, watch, ids, workers } = await setup(ctx, 'consumers');
  // Through the bus, as any NATS client could: list and delete every consumer of both buckets.
  const api = async (subject: string): Promise<Record<string, unknown>> => {
    const reply = await rt.bus.request(subject, new TextEncoder().encode('{}'), { timeoutMs: 2_000 });
    return JSON.parse(new TextDecoder().decode(reply.data)) as Record<string, unknown>;
  };
  const t0 = clock();
  let deleted = 0;
  for (const stream of ['KV_troupe_leases', 'KV_troupe_instances']) {
    const names = ((await api(`$JS.API.CONSUMER.NAMES.${stream}`))['consumers'] as string[] | null) ?? [];
    for (const name of names) {
      await api(`$JS.API.CONSUMER.DELETE.${stream}.${name}`);
      deleted++;
    }
  }
  assert.ok(deleted >= 2, `deleted ${deleted} consumers (the client's lease and records watches at least)`);
  // Past the lease TTL: a dead lease watch would let every lease lapse.
  await new Promise((r) => setTimeout(r, FAST.leaseTtlMs * 2));
  const dropped = ids.filter((id) => (watch.dropped.get(id) ?? 0) > t0);
  const fresh = await newInstanceListed(workers[0] as WorkerProcess, watch).catch((err: unknown) => {
    throw new Error(`after the consumers were deleted: ${(err as Error).message}`);
  });
  await allAnswer(client, ids);
  console.log(
    `discovery: ${deleted} registry watch consumers deleted: ${dropped.length} of ${WORKERS} live workers left the list within ${FAST.leaseTtlMs * 2} ms; a new instance spawned then was listed in ${ms(fresh)} ms`,
  );
  assert.equal(dropped, [], 'live instances left the list because the watch went quiet');
  assert.ok(fresh <= 100, `a new instance took ${ms(fresh)} ms to be listed`);
});

s('a records watch whose consumer was deleted sees a spawn made right after within 2 s (issue #17.2)', async (ctx) => {
  const { rt, watch, ids, workers } = await setup(ctx, 'rconsumer');
  const api = async (subject: string): Promise<Record<string, unknown>> => {
    const reply = await rt.bus.request(subject, new TextEncoder().encode('{}'), { timeoutMs: 2_000 });
    return JSON.parse(new TextDecoder().decode(reply.data)) as Record<string, unknown>;
  };
  // Only the records watches: the lease watch lives, so nothing else tells the client.
  const names = ((await api('$JS.API.CONSUMER.NAMES.KV_troupe_instances'))['consumers'] as string[] | null) ?? [];
  for (const name of names) await api(`$JS.API.CONSUMER.DELETE.KV_troupe_instances.${name}`);
  assert.ok(names.length >= 1, `deleted ${names.length} records consumers (the client's watch at least)`);
  // Measured before the fix: nats.js re-creates the consumer after two missed 5 s idle
  // heartbeats, so the spawn was seen ~11 s later. The spawner's beat announces its write.
  const fresh = await newInstanceListed(workers[0] as WorkerProcess, watch);
  console.log(`discovery: ${names.length} records watch consumer(s) deleted; a spawn made at once was listed ${ms(fresh)} ms later`);
  assert.ok(
    ids.every((id) => watch.has(id)),
    'the live instances stayed listed',
  );
});

s.run();
