import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { connect, RequestStrategy, type NatsConnection, type ServiceIdentity, type ServiceInfo, type ServiceStats } from 'nats';
import { Runtime } from '@troupe/runtime/internal';
import { Prep } from './fixtures/ops-common';
import { Cleanup, serverSuite, WorkerProcess, type NatsServer } from '@troupe/testing';

// DESIGN §9: NATS micro compatibility. nats.js's own service client (written by
// the NATS team, not us) lists and reads every instance of a two-component,
// three-instance mesh spread over two worker processes.

const WORKER = join(__dirname, 'fixtures', 'ops-worker.js');
const s = serverSuite('ops - NATS micro (nats.js service client)', new Cleanup());

async function mesh(ctx: { cleanup: Cleanup; server?: NatsServer }, ns: string): Promise<{ url: string; prepIds: string[]; genIds: string[] }> {
  const url = (ctx.server as NatsServer).url;
  const a = await WorkerProcess.start(WORKER, { env: { NATS_URL: url, TROUPE_NS: ns, TROUPE_SPAWN: 'prep:2' }, readyTimeoutMs: 15_000 });
  ctx.cleanup.add(() => a.kill('SIGKILL'));
  const b = await WorkerProcess.start(WORKER, { env: { NATS_URL: url, TROUPE_NS: ns, TROUPE_SPAWN: 'gen:1' }, readyTimeoutMs: 15_000 });
  ctx.cleanup.add(() => b.kill('SIGKILL'));
  return { url, prepIds: a.ready.instanceIds, genIds: b.ready.instanceIds };
}

async function natsClient(ctx: { cleanup: Cleanup }, url: string): Promise<NatsConnection> {
  const nc = await connect({ servers: url });
  ctx.cleanup.add(() => nc.close());
  return nc;
}

async function collect<T>(it: Promise<AsyncIterable<T>>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of await it) out.push(x);
  return out;
}

const byId = <T extends ServiceIdentity>(list: T[]): Map<string, T> => new Map(list.map((x) => [x.id, x]));

s('ping, info and stats list every instance with its endpoints and per-endpoint request counts', async (ctx) => {
  const ns = 'microjs';
  const { url, prepIds, genIds } = await mesh(ctx, ns);
  const rt = ctx.cleanup.runtime(await Runtime.connect({ servers: url, requestTimeoutMs: 5_000 }));
  const prep = rt.namespace(ns).component('prep').endpoint('tokenize').client<{ text: string; fail?: string }, string[]>();
  await prep.waitForInstances(2, { timeout: 5_000 });
  // Direct calls make the expected count per instance exact: 3 to the first, 2 to the second (one fails).
  const [p0, p1] = prepIds as [string, string];
  for (let i = 0; i < 3; i++) await prep.direct(p0).call({ text: 'a b c' });
  await prep.direct(p1).call({ text: 'x y' });
  await prep
    .direct(p1)
    .call({ text: 'x', fail: 'BAD_REQUEST' })
    .then(
      () => assert.unreachable('the call asked to fail'),
      (e: { code: string }) => assert.is(e.code, 'BAD_REQUEST'),
    );
  const gen = rt.namespace(ns).component('gen').endpoint('generate').client<{ n: number }, number>();
  await gen.waitForInstances(1, { timeout: 5_000 });
  for (let i = 0; i < 2; i++) {
    const items: number[] = [];
    for await (const x of gen.stream({ n: 5 })) items.push(x);
    assert.equal(items, [0, 1, 2, 3, 4]);
  }

  const nc = await natsClient(ctx, url);
  const client = nc.services.client({ strategy: RequestStrategy.Timer, maxWait: 1_500 });

  const pings = await collect(client.ping());
  const all = [...prepIds, ...genIds].sort();
  assert.equal(pings.map((p) => p.id).sort(), all, 'PING: one reply per instance');
  for (const p of pings) {
    assert.is(p.type, 'io.nats.micro.v1.ping_response');
    assert.is(p.version, '1.2.3');
    assert.is(p.metadata?.['namespace'], ns);
  }
  const prepPings = await collect(client.ping(`${ns}_prep`));
  assert.equal(prepPings.map((p) => p.id).sort(), [...prepIds].sort(), 'PING.{name}: the prep instances only');
  const one = await collect(client.ping(`${ns}_gen`, genIds[0]));
  assert.equal(
    one.map((p) => p.id),
    genIds,
    'PING.{name}.{id}: that instance',
  );

  const infos = byId(await collect(client.info()));
  assert.is(infos.size, 3, 'INFO: one reply per instance');
  const pi = infos.get(p0) as ServiceInfo;
  assert.is(pi.type, 'io.nats.micro.v1.info_response');
  assert.is(pi.name, `${ns}_prep`);
  assert.equal(pi.metadata?.['component'], 'prep');
  assert.ok(Number(pi.metadata?.['pid']) > 0 && pi.metadata?.['host'], 'metadata names host and pid');
  assert.equal(pi.endpoints.map((e) => [e.name, e.subject, e.queue_group]).sort(), [
    ['health', `${ns}.prep.health`, `${ns}.prep.health`],
    ['tokenize', `${ns}.prep.tokenize`, `${ns}.prep.tokenize`],
  ]);
  assert.equal(
    (infos.get(genIds[0] as string) as ServiceInfo).endpoints.map((e) => e.name),
    ['generate'],
  );

  const stats = byId(await collect(client.stats()));
  assert.is(stats.size, 3, 'STATS: one reply per instance');
  const tokenize = (id: string) => (stats.get(id) as ServiceStats).endpoints?.find((e) => e.name === 'tokenize');
  assert.is(tokenize(p0)?.num_requests, 3);
  assert.is(tokenize(p0)?.num_errors, 0);
  assert.is(tokenize(p1)?.num_requests, 2);
  assert.is(tokenize(p1)?.num_errors, 1);
  assert.is(tokenize(p1)?.last_error, 'asked to fail with BAD_REQUEST');
  const t0 = tokenize(p0);
  assert.ok(Number.isInteger(t0?.processing_time) && (t0?.processing_time ?? 0) > 0, 'processing_time is integer nanoseconds');
  assert.is(t0?.average_processing_time, Math.round((t0?.processing_time ?? 0) / 3));
  assert.equal(tokenize(p1)?.data, { lastLength: 3 }, 'data carries the instance dynamic properties');
  const g = (stats.get(genIds[0] as string) as ServiceStats).endpoints?.[0];
  assert.is(g?.num_requests, 2);
  assert.equal(g?.data, { active: 0 });
  assert.ok(!Number.isNaN(Date.parse((stats.get(p0) as ServiceStats).started)), 'started is a timestamp');
  console.log(`micro: nats.js service client saw ${pings.length} instances; prep ${p0} served ${tokenize(p0)?.num_requests} in ${t0?.processing_time} ns`);
});

s('a stopped runtime stops answering $SRV for its instances', async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const rt = await Runtime.connect({ servers: url });
  ctx.cleanup.runtime(rt);
  const h = await rt.spawn(Prep, { namespace: 'microstop', replicas: 2 });
  const nc = await natsClient(ctx, url);
  const client = nc.services.client({ strategy: RequestStrategy.Timer, maxWait: 1_000 });
  assert.is((await collect(client.ping('microstop_prep'))).length, 2);
  await h.stop();
  // With no instance left the runtime holds no $SRV subscription: the server answers "no responders".
  const after = await collect(client.ping('microstop_prep')).catch((e: { code?: string }) => (e.code === '503' ? [] : Promise.reject(e)));
  assert.is(after.length, 0, 'no reply after stop');
});

s.run();
