import * as assert from 'uvu/assert';
import { Runtime, type TroupeError } from '@troupe/runtime';
import { Cleanup, type NatsServer, serverSuite, WorkerProcess, within } from '@troupe/testing';

// Issue #19 item 2: busy is not dead. A handler that blocks its worker's event loop
// for 5 s used to fail INSTANCE_LOST at the caller (a stream after the 1.5 s idle
// bound, a unary call when the lease lapsed ~2.5 s in), and callers retried or
// migrated, duplicating the work. The worker's beat thread reports the blocked loop
// ("busy for N ms"); callers then wait for the call's deadline. A SIGSTOPped worker
// beats no more (the thread is frozen too) and is still lost within the usual bounds.

const s = serverSuite('streams - busy is not dead', new Cleanup());

const BLOCK_MS = 5_000;

async function startWorker(ctx: { cleanup: Cleanup; server?: NatsServer }, ns: string): Promise<WorkerProcess> {
  const w = await WorkerProcess.start(require.resolve('./fixtures/cpu-worker'), {
    env: { NATS_URL: (ctx.server as NatsServer).url, TROUPE_NS: ns },
  });
  ctx.cleanup.add(() => w.kill('SIGKILL'));
  return w;
}

async function caller(ctx: { cleanup: Cleanup; server?: NatsServer }, ns: string) {
  const rt = ctx.cleanup.runtime(await Runtime.connect({ servers: (ctx.server as NatsServer).url }));
  const cpu = rt.namespace(ns).component('cpu');
  const runs = cpu.endpoint('runs').client<undefined, { steps: number; block: number }>();
  await runs.waitForInstances(1, { timeout: 5_000 });
  return { rt, cpu, runs };
}

s(`a unary call whose handler blocks the worker's loop for ${BLOCK_MS} ms completes: no INSTANCE_LOST, no retry`, async (ctx) => {
  await startWorker(ctx, 'busyunary');
  const { cpu, runs } = await caller(ctx, 'busyunary');
  const block = cpu.endpoint('block').client<number, number>();
  const t0 = Date.now();
  const got = await within(block.call(BLOCK_MS, { timeout: 20_000, retry: { attempts: 3 } }), 25_000, 'the blocking call');
  const took = Date.now() - t0;
  console.log(`streams: a unary handler blocking its loop ${BLOCK_MS} ms answered after ${took} ms`);
  assert.is(got, BLOCK_MS);
  assert.equal(await runs.call(undefined), { steps: 0, block: 1 }, 'the handler ran once (no retry)');
});

s(`a stream whose handler blocks the worker's loop for ${BLOCK_MS} ms per item completes: no INSTANCE_LOST, no migration`, async (ctx) => {
  await startWorker(ctx, 'busystream');
  const { rt, cpu, runs } = await caller(ctx, 'busystream');
  const steps = cpu.endpoint('steps').client<{ n: number; stepMs: number }, { i: number; t: number }>();
  const items: number[] = [];
  const t0 = Date.now();
  await within(
    new Promise<void>((resolve, reject) =>
      steps
        .stream({ n: 2, stepMs: BLOCK_MS }, { timeout: 30_000, migrate: { attempts: 2, resume: (req) => req } })
        .subscribe({ next: (x) => items.push(x.i), error: reject, complete: resolve }),
    ),
    35_000,
    'the blocking stream',
  );
  const stats = rt.stats();
  console.log(
    `streams: 2 items each after ${BLOCK_MS} ms of blocked loop arrived in ${Date.now() - t0} ms; caller waited on a busy worker ${stats.busyWaits} time(s)`,
  );
  assert.equal(items, [0, 1]);
  assert.is(stats.streamsLost, 0, 'no attempt ended in INSTANCE_LOST');
  assert.is(stats.streamsMigrated, 0, 'no migration');
  assert.ok(stats.busyWaits >= 1, 'the caller saw the worker busy (else the test did not exercise the busy path)');
  assert.equal(await runs.call(undefined), { steps: 1, block: 0 }, 'the handler ran once');
});

s('a SIGSTOPped worker is still lost within the idle bound (stream) and the lease TTL (unary)', async (ctx) => {
  const w = await startWorker(ctx, 'busyfrozen');
  const { rt, cpu } = await caller(ctx, 'busyfrozen');
  const steps = cpu.endpoint('steps').client<{ n: number; stepMs: number }, { i: number; t: number }>();
  const block = cpu.endpoint('block').client<number, number>();
  let first!: () => void;
  const gotFirst = new Promise<void>((r) => (first = r));
  const streamEnd = new Promise<TroupeError>((resolve, reject) =>
    steps
      .stream({ n: 1_000_000, stepMs: 20 }, { timeout: 60_000 })
      .subscribe({ next: () => first(), error: resolve, complete: () => reject(new Error('the stream completed')) }),
  );
  await within(gotFirst, 5_000, 'the first item');
  process.kill(w.pid, 'SIGSTOP');
  ctx.cleanup.add(async () => void process.kill(w.pid, 'SIGCONT'));
  const frozenAt = Date.now();
  const unary = block.call(1, { timeout: 30_000 }).then(
    () => new Error('the call to a frozen worker succeeded'),
    (e: TroupeError) => e,
  );
  const streamErr = await within(streamEnd, 10_000, 'the stream to fail');
  const streamMs = Date.now() - frozenAt;
  const unaryErr = await within(unary, 15_000, 'the unary call to fail');
  const unaryMs = Date.now() - frozenAt;
  console.log(`streams: SIGSTOPped worker: stream lost after ${streamMs} ms, unary call after ${unaryMs} ms (${(unaryErr as TroupeError).code})`);
  assert.is(streamErr.code, 'INSTANCE_LOST');
  assert.ok(streamMs <= rt.settings.streamIdleMs + 1_000, `stream lost after ${streamMs} ms (idle bound ${rt.settings.streamIdleMs} ms)`);
  assert.is((unaryErr as TroupeError).code, 'INSTANCE_LOST');
  assert.ok(unaryMs <= 3_000 + 2_500, `unary lost after ${unaryMs} ms (lease TTL 3000 ms + a probe)`);
  assert.is(rt.stats().busyWaits, 0, 'a frozen worker is never taken for busy');
});

s.run();
