import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Runtime } from '@troupe/runtime';
import { Cleanup, NatsServer, waitFor, WorkerProcess } from '@troupe/testing';

// Issue #17.9: shutdown is bounded whatever the server does. A worker process
// (two instances under discovery, `closeOnSignals`) gets SIGTERM while its
// server is dead or frozen: it must exit within the grace period plus 2 s and
// log what it could not do, instead of waiting forever on the registry and the
// drain (before the fix: still alive after 60 s, nothing logged).

const SCRIPT = join(__dirname, 'fixtures', 'shutdown-worker.js');
const GRACE_MS = 1_000;
const BOUND_MS = GRACE_MS + 2_000;

const s = suite<{ cleanup: Cleanup }>('shutdown - bounded whatever the server does', { cleanup: new Cleanup() });
s.after.each(async (ctx) => {
  await ctx.cleanup.run();
});

async function startPair(ctx: { cleanup: Cleanup }, ns: string, graceMs = GRACE_MS): Promise<{ server: NatsServer; worker: WorkerProcess }> {
  const server = await NatsServer.start({ jetstream: true });
  // stop() resumes a frozen server before it terminates it.
  ctx.cleanup.add(() => server.stop());
  const worker = await WorkerProcess.start(SCRIPT, {
    env: { NATS_URL: server.url, TROUPE_NS: ns, TROUPE_GRACE: String(graceMs), TROUPE_LOG: 'info' },
    readyTimeoutMs: 15_000,
  });
  ctx.cleanup.add(() => worker.kill('SIGKILL'));
  return { server, worker };
}

/** SIGTERM, then the time until the process is gone (bounded: a hang fails with the worker's log). */
async function sigtermExit(worker: WorkerProcess): Promise<number> {
  const t0 = performance.now();
  try {
    await worker.kill('SIGTERM', BOUND_MS + 5_000);
  } catch (err) {
    throw new Error(`${(err as Error).message} after SIGTERM; output:\n${worker.log}`);
  }
  return performance.now() - t0;
}

s('SIGTERM with the server up: exits fast and deregisters cleanly', async (ctx) => {
  const { worker } = await startPair(ctx, 'shutdown_up');
  const took = await sigtermExit(worker);
  console.log(`shutdown: SIGTERM with the server up: exited in ${Math.round(took)} ms`);
  assert.ok(took < BOUND_MS, `took ${Math.round(took)} ms; output:\n${worker.log}`);
  assert.is(worker.child.exitCode, 0, `exit code; output:\n${worker.log}`);
  assert.not.match(worker.log, /could not/, 'nothing reported as not done');
});

s('SIGTERM as the server dies: exits within the grace period + 2 s, logs what it could not deregister', async (ctx) => {
  const { server, worker } = await startPair(ctx, 'shutdown_dead');
  await server.kill('SIGKILL');
  const took = await sigtermExit(worker);
  console.log(`shutdown: SIGTERM with the server killed: exited in ${Math.round(took)} ms (bound ${BOUND_MS} ms)`);
  assert.ok(took < BOUND_MS, `took ${Math.round(took)} ms; output:\n${worker.log}`);
  assert.is(worker.child.exitCode, 0, `exit code; output:\n${worker.log}`);
  assert.match(worker.log, /could not deregister 2 instances/, `no deregistration warning; output:\n${worker.log}`);
});

s('SIGTERM while the server is frozen (SIGSTOP): exits within the grace period + 2 s, logs what it could not deregister or drain', async (ctx) => {
  const { server, worker } = await startPair(ctx, 'shutdown_frozen');
  await server.signal('SIGSTOP');
  const took = await sigtermExit(worker);
  console.log(`shutdown: SIGTERM with the server frozen: exited in ${Math.round(took)} ms (bound ${BOUND_MS} ms)`);
  assert.ok(took < BOUND_MS, `took ${Math.round(took)} ms; output:\n${worker.log}`);
  assert.is(worker.child.exitCode, 0, `exit code; output:\n${worker.log}`);
  assert.match(worker.log, /could not deregister 2 instances/, `no deregistration warning; output:\n${worker.log}`);
  assert.match(worker.log, /did not drain within/, `no drain warning; output:\n${worker.log}`);
});

s('a second signal exits at once, while the first is still waiting for in-flight work', async (ctx) => {
  const { server, worker } = await startPair(ctx, 'shutdown_twice', 20_000);
  const rt = ctx.cleanup.runtime(await Runtime.connect({ servers: server.url, discovery: false }));
  const held = rt.namespace('shutdown_twice').component('svc').endpoint('hold').client<number, number>({ router: 'queue' }).call(60_000, { timeout: 60_000 });
  held.catch(() => undefined);
  await worker.waitFor('holding', 5_000);
  worker.signal('SIGTERM');
  await waitFor(
    () => worker.log.includes('closing on SIGTERM: draining 1 in-flight request'),
    5_000,
    `the worker to log that it is closing on SIGTERM; output:\n${worker.log}`,
  );
  const t0 = performance.now();
  try {
    await worker.kill('SIGINT', 2_000);
  } catch (err) {
    throw new Error(`${(err as Error).message} after a second signal (SIGINT after SIGTERM); output:\n${worker.log}`);
  }
  const took = performance.now() - t0;
  console.log(`shutdown: a second signal during a 20 s grace period: exited in ${Math.round(took)} ms`);
  assert.is(worker.child.exitCode, 130, `exit code 128 + SIGINT; output:\n${worker.log}`);
  assert.match(worker.log, /second signal \(SIGINT after SIGTERM\)/, `the forced exit is logged; output:\n${worker.log}`);
});

s.run();
