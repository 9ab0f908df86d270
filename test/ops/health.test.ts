import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { Runtime } from '@troupe/runtime/internal';
import { Cleanup, serverSuite, WorkerProcess, type NatsServer } from '@troupe/testing';
import { Flaky, type Sickness } from './fixtures/ops-common';
import { get, until } from './fixtures/ops-harness';

// DESIGN §9: /health follows the connection and the lease; canary health
// checks withdraw an instance that fails them and bring it back when it passes.

const WORKER = join(__dirname, 'fixtures', 'ops-worker.js');
const HEARTBEAT_MS = 300; // the worker fixture's discovery heartbeat
const s = serverSuite('ops - health', new Cleanup());

const status = async (url: string): Promise<number> => (await get(url)).status;

s('/health turns 503 within one heartbeat when NATS goes away and 200 again after it restarts', async (ctx) => {
  const server = ctx.server as NatsServer;
  const w = await WorkerProcess.start(WORKER, {
    env: { NATS_URL: server.url, TROUPE_NS: 'health', TROUPE_SPAWN: 'prep:2', TROUPE_STATUS_PORT: '0' },
    readyTimeoutMs: 15_000,
  });
  ctx.cleanup.add(() => w.kill('SIGKILL'));
  const health = `http://127.0.0.1:${Number(w.ready['statusPort'])}/health`;
  await until(async () => ((await status(health)) === 200 ? true : undefined), 5_000, '/health to be 200 while connected', 20);
  const body = JSON.parse((await get(health)).body) as { runtimes: Array<{ nats: { connected: boolean }; lease: { current: boolean }; instances: unknown[] }> };
  assert.is(body.runtimes[0]?.nats.connected, true);
  assert.is(body.runtimes[0]?.lease.current, true);
  assert.is(body.runtimes[0]?.instances.length, 2);

  const killedAt = Date.now();
  await server.kill('SIGKILL');
  await until(
    async () => ((await status(health)) === 503 ? true : undefined),
    HEARTBEAT_MS,
    `/health to turn 503 within one heartbeat (${HEARTBEAT_MS} ms) of the server's death`,
    10,
  );
  const down = Date.now() - killedAt;
  const during = JSON.parse((await get(health)).body) as { status: string; runtimes: Array<{ nats: { connected: boolean } }> };
  assert.is(during.status, 'unavailable');
  assert.is(during.runtimes[0]?.nats.connected, false);
  assert.is(await status(health.replace('/health', '/live')), 200, '/live stays 200: the process is up');

  const restartAt = Date.now();
  await server.restart();
  await until(async () => ((await status(health)) === 200 ? true : undefined), 15_000, '/health to be 200 again after the server restarted on its port', 20);
  console.log(`health: 503 ${down} ms after the server was killed; 200 again ${Date.now() - restartAt} ms after its restart began`);
});

async function withdrawAndReturn(ctx: { cleanup: Cleanup; server?: NatsServer }, sickness: Sickness): Promise<void> {
  const url = (ctx.server as NatsServer).url;
  const ns = `canary${sickness}`;
  const fast = { heartbeatMs: 300, leaseTtlMs: 1_000 };
  const worker = ctx.cleanup.runtime(await Runtime.connect({ servers: url, discovery: fast, status: { port: 0 } }));
  const caller = ctx.cleanup.runtime(await Runtime.connect({ servers: url, discovery: fast }));
  const h = await worker.spawn(Flaky, { namespace: ns, replicas: 2 });
  const [sick, well] = h.instanceIds as [string, string];
  ctx.cleanup.add(async () => h.instance(sick).heal());
  const client = caller.namespace(ns).component('flaky').endpoint('work').client<{ probe?: boolean }, string>({ router: 'round-robin' });
  await client.waitForInstances(2, { timeout: 5_000 });
  const health = `http://127.0.0.1:${worker.statusAddress?.port}/health`;
  await until(async () => ((await status(health)) === 200 ? true : undefined), 5_000, '/health 200 with both instances passing their checks', 20);

  const t0 = Date.now();
  h.instance(sick).sickness = sickness;
  await until(
    async () => ((await client.instances()).some((r) => r.instanceId === sick) ? undefined : true),
    3_000,
    `the ${sickness} instance to leave the caller's list`,
    10,
  );
  const withdrawnMs = Date.now() - t0;
  const served = await Promise.all(Array.from({ length: 20 }, () => client.call({})));
  assert.ok(
    served.every((id) => id === well),
    `the router sent work to the withdrawn instance: ${served.join(',')}`,
  );
  const report = JSON.parse((await get(health)).body) as {
    status: string;
    runtimes: Array<{
      instances: Array<{ instanceId: string; healthy: boolean; registered: boolean; endpoints: Array<{ status: string; lastError?: string }> }>;
    }>;
  };
  assert.is(report.status, 'unavailable', '/health is 503 while an instance fails its check');
  const bad = report.runtimes[0]?.instances.find((i) => i.instanceId === sick);
  assert.is(bad?.healthy, false);
  assert.is(bad?.registered, false);
  assert.is(bad?.endpoints[0]?.status, 'failing');
  assert.match(bad?.endpoints[0]?.lastError ?? '', sickness === 'error' ? /INTERNAL: the model is wedged/ : /TIMEOUT/);

  const t1 = Date.now();
  h.instance(sick).heal();
  await client.waitForInstances(2, { timeout: 3_000 });
  const backMs = Date.now() - t1;
  const after = await Promise.all(Array.from({ length: 20 }, () => client.call({})));
  assert.ok(after.includes(sick) && after.includes(well), `both instances serve again: ${after.join(',')}`);
  await until(async () => ((await status(health)) === 200 ? true : undefined), 3_000, '/health 200 again', 20);
  console.log(`canary (${sickness}): withdrawn ${withdrawnMs} ms after it turned sick (interval 100 ms, timeout 300 ms), back ${backMs} ms after it healed`);
}

s('a canary check that fails withdraws the instance; the router stops sending it work; it returns when the check passes', async (ctx) => {
  await withdrawAndReturn(ctx, 'error');
});

s('a canary check that times out withdraws the instance too', async (ctx) => {
  await withdrawAndReturn(ctx, 'hang');
});

s.run();
