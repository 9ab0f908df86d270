import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Runtime, type TroupeError } from '@troupe/runtime/internal';
import { NatsServer, waitFor, type WorkerProcess } from '@troupe/testing';
import { clock, type CountReq, envNumber } from './fixtures/stream-common';
import { Cleanup, ms } from './fixtures/stream-harness';
import { describeFailures, ListWatch, Load } from './fixtures/discovery-harness';
import type { WorkReply } from './fixtures/discovery-common';

// Issue #17 item 6: drains that lose no stream. Three worker processes are restarted one by
// one with SIGTERM (start the replacement, wait until it is routable, SIGTERM the old one)
// under 8 concurrent migrating streams and 100 req/s of unary calls: 0 failed, 0 lost,
// 0 duplicated. A stream opened with `migrate` is handed off by the draining instance at
// once and continues on another instance from the next item.

/** Items per stream, one every {@link ITEM_MS}: long enough that every stream spans the three restarts. */
const ITEMS = envNumber('TROUPE_ROLLING_ITEMS', 2_400);
const ITEM_MS = 5;
const STREAMS = 8;
const RPS = 100;
/** The workers' grace period: streams handed off at once must not hold a stop anywhere near it. */
const GRACE_MS = 5_000;

const s = suite<{ cleanup: Cleanup; server?: NatsServer; caller?: Runtime }>('streams - rolling restart', { cleanup: new Cleanup() });

s.before(async (ctx) => {
  ctx.server = await NatsServer.start({ jetstream: true });
  ctx.caller = await Runtime.connect({ servers: ctx.server.url, name: 'rolling-restart-caller', requestTimeoutMs: 5_000 });
});
s.after(async (ctx) => {
  await ctx.caller?.close();
  await ctx.server?.stop();
});
s.after.each(async (ctx) => {
  await ctx.cleanup.run();
});

interface Run {
  items: number[];
  error: TroupeError | undefined;
  done: boolean;
  endedAt: number;
}

s(`SIGTERM rolling restart of 3 workers under ${STREAMS} migrating streams and ${RPS} req/s: 0 failed, 0 lost, 0 duplicated`, async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const caller = ctx.caller as Runtime;
  const ns = 'rolling';
  const env = { TROUPE_ROLE: 'tokens,svc', TROUPE_GRACE: String(GRACE_MS), TROUPE_WORK_MS: '5' };
  const workers: WorkerProcess[] = await Promise.all([0, 1, 2].map(() => ctx.cleanup.worker(url, ns, env)));
  const tokens = caller.namespace(ns).component('tokens').endpoint('count').client<CountReq, number>();
  const svc = caller.namespace(ns).component('svc').endpoint('work');
  const routed = svc.client<undefined, WorkReply>();
  const queued = svc.client<undefined, WorkReply>({ router: 'queue' });
  await tokens.waitForInstances(3, { timeout: 10_000 });
  await routed.waitForInstances(3, { timeout: 10_000 });
  const lists = [new ListWatch(tokens.instances$), new ListWatch(routed.instances$)] as const;
  ctx.cleanup.add(async () => lists.forEach((l) => l.stop()));

  // Half the unary load picks instances from discovery, half leaves it to the NATS queue group.
  const loads = [new Load(() => routed.call(undefined), RPS / 2).start(), new Load(() => queued.call(undefined), RPS / 2).start()];
  ctx.cleanup.add(() => Promise.all(loads.map((l) => l.stop())));

  const runs: Run[] = [];
  for (let k = 0; k < STREAMS; k++) {
    const run: Run = { items: [], error: undefined, done: false, endedAt: 0 };
    runs.push(run);
    const sub = tokens
      .stream(
        { n: ITEMS, delayMs: ITEM_MS },
        // Every attempt continues after the last item the consumer has, from the original request.
        { migrate: { attempts: 10, resume: (req, got) => ({ ...req, from: got.length }) } },
      )
      .subscribe({
        next: (v) => void run.items.push(v as number),
        error: (e) => Object.assign(run, { error: e as TroupeError, done: true, endedAt: clock() }),
        complete: () => Object.assign(run, { done: true, endedAt: clock() }),
      });
    ctx.cleanup.add(async () => sub.unsubscribe());
  }
  await waitFor(() => runs.every((r) => r.items.length >= 50), 10_000, 'every stream to deliver 50 items');
  const migratedBefore = caller.stats().streamsMigrated;

  const restarts: Array<{ pid: number; handedOff: number; routableMs: number; stopMs: number }> = [];
  for (const old of workers) {
    const t0 = clock();
    const next = await ctx.cleanup.worker(url, ns, env);
    const [tokensId, svcId] = next.ready.instanceIds as [string, string];
    // Routable: the caller's routers list the replacement's instances.
    await waitFor(() => lists[0].has(tokensId) && lists[1].has(svcId), 10_000, `the replacement ${next.pid} to be routable`);
    const routableAt = clock();
    const since = old.messages.length;
    await old.kill('SIGTERM', GRACE_MS + 5_000);
    const stopMs = clock() - routableAt;
    // The Tokens handler reports its aborts: each handed-off stream's signal says UNAVAILABLE.
    const handedOff = old.messages.slice(since).filter((m) => m.type === 'aborted' && m['code'] === 'UNAVAILABLE').length;
    restarts.push({ pid: old.pid, handedOff, routableMs: routableAt - t0, stopMs });
  }
  const restartedAt = clock();

  await waitFor(() => runs.every((r) => r.done), Math.max(30_000, ITEMS * ITEM_MS * 2), 'every stream to end');
  const outcomes = (await Promise.all(loads.map((l) => l.stop()))).flat();
  const migrated = caller.stats().streamsMigrated - migratedBefore;

  let lost = 0;
  let duplicated = 0;
  let disordered = 0;
  for (const r of runs) {
    const seen = new Set(r.items);
    lost += ITEMS - [...seen].filter((v) => v >= 0 && v < ITEMS).length;
    duplicated += r.items.length - seen.size;
    for (let i = 0; i < r.items.length; i++) if (r.items[i] !== i) disordered++;
  }
  const failedStreams = runs.filter((r) => r.error !== undefined);
  const failedCalls = outcomes.filter((o) => !o.ok);
  for (const r of restarts) {
    console.log(
      `streams: rolling restart: worker ${r.pid} — replacement routable after ${ms(r.routableMs)} ms, SIGTERM to exit ${ms(r.stopMs)} ms, ${r.handedOff} streams handed off`,
    );
  }
  console.log(
    `streams: rolling restart of 3 workers under ${STREAMS} migrating streams (${ITEMS} items each) and ${RPS} req/s: ` +
      `${outcomes.length} unary calls, ${describeFailures(outcomes)} failed; ${failedStreams.length} streams failed, ${migrated} migrations, ` +
      `${lost} items lost, ${duplicated} duplicated, ${disordered} out of order`,
  );

  assert.is(failedCalls.length, 0, `unary failures: ${describeFailures(outcomes)}`);
  assert.is(failedStreams.length, 0, `stream failures: ${failedStreams.map((r) => `${r.error?.code}: ${r.error?.message}`).join('; ')}`);
  assert.is(lost, 0, 'items lost');
  assert.is(duplicated, 0, 'items duplicated');
  assert.is(disordered, 0, 'items out of order');
  assert.ok(outcomes.length >= RPS * 3, `only ${outcomes.length} unary calls were made`);
  // Each stream was still running when the last worker was restarted: every restart had streams to hand off.
  for (const r of runs)
    assert.ok(r.endedAt > restartedAt, `a stream ended ${ms(restartedAt - r.endedAt)} ms before the last restart: raise TROUPE_ROLLING_ITEMS`);
  for (const r of restarts) {
    assert.ok(r.handedOff >= 1, `worker ${r.pid} handed off no stream`);
    assert.ok(r.stopMs < GRACE_MS / 2, `worker ${r.pid} took ${ms(r.stopMs)} ms to exit: its streams held the stop (grace period ${GRACE_MS} ms)`);
  }
  assert.ok(migrated >= restarts.reduce((n, r) => n + r.handedOff, 0), `${migrated} migrations counted by the caller`);
});

s.run();
