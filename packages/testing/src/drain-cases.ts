import type { Test } from 'uvu';
import * as assert from 'uvu/assert';
import { component, type Context, endpoint, Runtime, type RuntimeOptions, type StreamOptions, type TroupeError } from '@troupe/runtime/internal';
import { SeverableTransport } from './severable-transport';
import { sleep, waitFor, within } from './wait';

/**
 * Drain cases of the runtime conformance suite (issue #17, item 6): a
 * graceful stop (`handle.stop()`, `runtime.close()`) hands a migrating
 * stream off to another instance, gap-free — at once, or when the grace
 * period runs out (`migrate.onDrain: 'finish'`) — and ends any other stream
 * with `UNAVAILABLE` when the grace period runs out, as before. The fault
 * test `streams-rolling-restart` repeats this with real processes and SIGTERM.
 */

/** Heartbeat 50 ms and a 400 ms idle bound, as in the stream cases: a lost stream would show quickly. */
const FAST_LIVENESS = { streamHeartbeatMs: 50, streamIdleMs: 400 } as const;

/** Items `from..n-1`, one every `delayMs`. */
interface CountReq {
  n: number;
  from?: number;
  delayMs: number;
}

@component('drained')
class Drained {
  produced = 0;
  /** Why each handler of this instance was aborted (its signal's reason code). */
  aborts: string[] = [];

  @endpoint() hello(): string {
    return 'hi';
  }

  @endpoint() async *count(req: CountReq, ctx: Context): AsyncGenerator<number> {
    ctx.signal.addEventListener('abort', () => this.aborts.push((ctx.signal.reason as TroupeError)?.code ?? 'unknown'), { once: true });
    for (let i = req.from ?? 0; i < req.n; i++) {
      await sleep(req.delayMs, ctx.signal);
      this.produced++;
      yield i;
    }
  }
}

interface Pair {
  worker: Runtime;
  caller: Runtime;
}

let nsCounter = 0;
const freshNamespace = (): string => `dr${process.pid}x${Date.now().toString(36)}x${(nsCounter++).toString(36)}`;

/** Continues a count after the items received (across attempts). */
const resume = (req: CountReq, got: readonly number[]): CountReq => ({ ...req, from: (req.from ?? 0) + got.length });

/** Collects a stream; resolves with the error (if any) once it ends. */
function collect(source: { subscribe(o: { next(v: number): void; error(e: unknown): void; complete(): void }): unknown }): {
  items: number[];
  done: Promise<TroupeError | undefined>;
} {
  const items: number[] = [];
  const done = new Promise<TroupeError | undefined>((resolve) =>
    source.subscribe({ next: (v) => items.push(v), error: (e) => resolve(e as TroupeError), complete: () => resolve(undefined) }),
  );
  return { items, done };
}

function assertContiguous(items: readonly number[], n: number): void {
  assert.is(items.length, n, `${items.length} items of ${n}`);
  for (let i = 0; i < n; i++) if (items[i] !== i) assert.unreachable(`item ${i} is ${items[i]}: a gap or a duplicate`);
}

/** Adds the drain cases to a runtime suite. */
export function addDrainCases<C extends object>(s: Test<C>, open: (ctx: C, options?: RuntimeOptions) => Promise<Pair>): void {
  /**
   * One instance serves a 300-item stream; once 20 items arrived a second
   * instance joins, and `drain` stops the first. Returns the outcome and how
   * long the stop took.
   */
  async function drainMidStream(
    caller: Runtime,
    ns: string,
    opts: { options: StreamOptions<CountReq, number>; router?: 'queue'; join: () => Promise<unknown>; drain: () => Promise<void> },
  ): Promise<{ err: TroupeError | undefined; items: number[]; stopMs: number; during: number }> {
    const client = caller.namespace(ns).client(Drained, opts.router ? { router: opts.router } : {});
    const st = collect(client.count({ n: 300, delayMs: 5 }, opts.options));
    await waitFor(() => st.items.length >= 20, 5_000, '20 items');
    await opts.join();
    if (opts.router !== 'queue') await caller.namespace(ns).component('drained').endpoint('count').client().waitForInstances(2, { timeout: 5_000 });
    const t0 = Date.now();
    const before = st.items.length;
    await opts.drain();
    const stopMs = Date.now() - t0;
    const during = st.items.length - before;
    const err = await within(st.done, 10_000, 'the stream to end');
    return { err, items: st.items, stopMs, during };
  }

  for (const router of [undefined, 'queue'] as const) {
    s(`drain - handle.stop() hands a migrating stream off at once: it continues on another instance, gap-free (${router ?? 'round-robin'})`, async (ctx) => {
      const grace = 10_000;
      const { worker, caller } = await open(ctx, { ...FAST_LIVENESS, gracePeriodMs: grace });
      const ns = freshNamespace();
      const first = await worker.spawn(Drained, { namespace: ns });
      const a = first.instance(first.instanceIds[0] as string);
      let b: Drained | undefined;
      const out = await drainMidStream(caller, ns, {
        router,
        options: { migrate: { attempts: 2, resume } },
        join: async () => {
          const h = await worker.spawn(Drained, { namespace: ns });
          b = h.instance(h.instanceIds[0] as string);
        },
        drain: () => first.stop(),
      });
      assert.is(out.err, undefined, `completed: ${out.err?.message}`);
      assertContiguous(out.items, 300);
      assert.is(caller.stats().streamsMigrated, 1, 'migrated once');
      assert.is(caller.stats().streamsLost, 0, 'a handoff is no lost instance');
      assert.ok(out.stopMs < grace / 2, `the stop took ${out.stopMs} ms: the stream held it (grace period ${grace} ms)`);
      assert.equal(a.aborts, ['UNAVAILABLE'], "the drained handler's signal says why");
      assert.ok((b?.produced ?? 0) <= 300 - 20, `the second instance produced ${b?.produced} items: it continued, it did not start over`);
      assert.is(a.produced + (b?.produced ?? 0) - 300 <= 1, true, `produced ${a.produced} + ${b?.produced}: at most one item made twice`);
    });
  }

  s('drain - runtime.close() hands a migrating stream off at once: it continues on another runtime, gap-free', async (ctx) => {
    const grace = 10_000;
    const { worker, caller } = await open(ctx, FAST_LIVENESS);
    // The doomed worker shares the base worker's connection (memory network or NATS) but is a runtime of its own.
    const doomed = await Runtime.connect({ ...FAST_LIVENESS, gracePeriodMs: grace, transport: new SeverableTransport(worker.bus) });
    try {
      const ns = freshNamespace();
      await doomed.spawn(Drained, { namespace: ns });
      const out = await drainMidStream(caller, ns, {
        options: { migrate: { attempts: 2, resume } },
        join: () => worker.spawn(Drained, { namespace: ns }),
        drain: () => doomed.close(),
      });
      assert.is(out.err, undefined, `completed: ${out.err?.message}`);
      assertContiguous(out.items, 300);
      assert.is(caller.stats().streamsMigrated, 1, 'migrated once');
      assert.ok(out.stopMs < grace / 2, `close() took ${out.stopMs} ms: the stream held it (grace period ${grace} ms)`);
    } finally {
      await doomed.close();
    }
  });

  s("drain - onDrain 'finish': a migrating stream runs on through the grace period, then continues on another instance, gap-free", async (ctx) => {
    const grace = 400;
    const { worker, caller } = await open(ctx, { ...FAST_LIVENESS, gracePeriodMs: grace });
    const ns = freshNamespace();
    const first = await worker.spawn(Drained, { namespace: ns });
    const out = await drainMidStream(caller, ns, {
      options: { migrate: { attempts: 2, resume, onDrain: 'finish' } },
      join: () => worker.spawn(Drained, { namespace: ns }),
      drain: () => first.stop(),
    });
    assert.is(out.err, undefined, `completed: ${out.err?.message}`);
    assertContiguous(out.items, 300);
    assert.is(caller.stats().streamsMigrated, 1, 'migrated once, when the grace period ran out');
    assert.ok(out.stopMs >= grace - 50, `the stop took ${out.stopMs} ms: the stream was handed off before the grace period (${grace} ms) ran out`);
    assert.ok(out.during > 0, 'items kept coming from the draining instance during the grace period');
  });

  s('drain - without migrate, a stream on a stopping instance runs through the grace period, then ends UNAVAILABLE', async (ctx) => {
    const grace = 400;
    const { worker, caller } = await open(ctx, { ...FAST_LIVENESS, gracePeriodMs: grace });
    const ns = freshNamespace();
    const first = await worker.spawn(Drained, { namespace: ns });
    const out = await drainMidStream(caller, ns, {
      options: {},
      join: () => worker.spawn(Drained, { namespace: ns }),
      drain: () => first.stop(),
    });
    assert.is(out.err?.code, 'UNAVAILABLE', `the stream ended with ${out.err?.code}: ${out.err?.message}`);
    assert.match(out.err?.message ?? '', /grace period/);
    assert.ok(out.stopMs >= grace - 50, `the stop took ${out.stopMs} ms: the stream was cut before the grace period (${grace} ms) ran out`);
    assert.ok(out.during > 0, 'items kept coming during the grace period');
    assert.ok(out.items.length < 300, 'cut short');
    for (let i = 0; i < out.items.length; i++) if (out.items[i] !== i) assert.unreachable(`item ${i} is ${out.items[i]}`);
    assert.is(caller.stats().streamsMigrated, 0, 'not migrated');
  });

  s('drain - a pinned client has nowhere to migrate to: its stream runs through the grace period, then ends UNAVAILABLE', async (ctx) => {
    const grace = 400;
    const { worker, caller } = await open(ctx, { ...FAST_LIVENESS, gracePeriodMs: grace });
    const ns = freshNamespace();
    const first = await worker.spawn(Drained, { namespace: ns });
    const pinned = caller.namespace(ns).client(Drained, { instance: first.instanceIds[0] as string });
    const st = collect(pinned.count({ n: 300, delayMs: 5 }, { migrate: { attempts: 2, resume } }));
    await waitFor(() => st.items.length >= 20, 5_000, '20 items');
    const t0 = Date.now();
    await first.stop();
    const stopMs = Date.now() - t0;
    const err = await within(st.done, 5_000, 'the stream to end');
    assert.is(err?.code, 'UNAVAILABLE', `the stream ended with ${err?.code}: ${err?.message}`);
    assert.ok(stopMs >= grace - 50, `the stop took ${stopMs} ms: the stream was handed off with nowhere to go`);
    assert.is((err?.data as { delivered?: number } | undefined)?.delivered, st.items.length, 'data.delivered');
  });

  s("drain - migrate.onDrain other than 'handoff' or 'finish' is a BAD_REQUEST at once", async (ctx) => {
    const { worker, caller } = await open(ctx, FAST_LIVENESS);
    const ns = freshNamespace();
    await worker.spawn(Drained, { namespace: ns });
    const bad = { attempts: 1, resume, onDrain: 'later' } as unknown as NonNullable<StreamOptions<CountReq, number>['migrate']>;
    const err = await within(collect(caller.namespace(ns).client(Drained).count({ n: 3, delayMs: 1 }, { migrate: bad })).done, 2_000, 'the refusal');
    assert.is(err?.code, 'BAD_REQUEST');
    assert.match(err?.message ?? '', /onDrain/);
  });

  s('drain - a starting instance serves the queue-group requests that reach it before its spawn returns (rolling restart)', async (ctx) => {
    const { worker, caller } = await open(ctx, FAST_LIVENESS);
    const ns = freshNamespace();
    await worker.spawn(Drained, { namespace: ns });
    const queued = caller.namespace(ns).component('drained').endpoint('hello').client<undefined, string>({ router: 'queue' });
    const failures: string[] = [];
    let calls = 0;
    let running = true;
    // Queue-group calls back to back while instances join: some reach each newcomer while it subscribes and flushes.
    const pending = new Set<Promise<void>>();
    const call = (): void => {
      calls++;
      const p = queued.call(undefined, { timeout: 5_000 }).then(
        () => undefined,
        (e: unknown) => void failures.push(`${(e as TroupeError).code}: ${(e as TroupeError).message}`),
      );
      pending.add(p);
      void p.finally(() => pending.delete(p));
    };
    const loop = (): void => {
      if (!running) return;
      call();
      setImmediate(loop);
    };
    loop();
    try {
      for (let i = 0; i < 5; i++) {
        const spawned = worker.spawn(Drained, { namespace: ns, replicas: 2 });
        // A burst as the spawn begins, and more on every turn of the event loop until it returned.
        for (let k = 0; k < 20; k++) call();
        await spawned;
      }
    } finally {
      running = false;
    }
    await within(Promise.all([...pending]), 6_000, 'the calls to end');
    assert.ok(calls > 50, `only ${calls} calls`);
    assert.equal(failures, [], `${failures.length} of ${calls} calls failed`);
  });

  s('drain - runtime.close() without migrate ends an open stream UNAVAILABLE when the grace period runs out', async (ctx) => {
    const grace = 400;
    const { worker, caller } = await open(ctx, FAST_LIVENESS);
    const doomed = await Runtime.connect({ ...FAST_LIVENESS, gracePeriodMs: grace, transport: new SeverableTransport(worker.bus) });
    try {
      const ns = freshNamespace();
      await doomed.spawn(Drained, { namespace: ns });
      const out = await drainMidStream(caller, ns, {
        options: {},
        join: () => worker.spawn(Drained, { namespace: ns }),
        drain: () => doomed.close(),
      });
      assert.is(out.err?.code, 'UNAVAILABLE', `the stream ended with ${out.err?.code}: ${out.err?.message}`);
      assert.ok(out.stopMs >= grace - 50, `close() took ${out.stopMs} ms`);
      assert.is(caller.stats().streamsMigrated, 0, 'not migrated');
    } finally {
      await doomed.close();
    }
  });
}
