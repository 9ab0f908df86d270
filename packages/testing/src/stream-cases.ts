import { lastValueFrom, take } from 'rxjs';
import type { Test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  component,
  type Context,
  endpoint,
  injectClient,
  injectInstance,
  type InstanceInfo,
  Runtime,
  type RuntimeOptions,
  TroupeError,
  type TypedClient,
} from '@troupe/runtime/internal';
import { SeverableTransport } from './severable-transport';
import { sleep, waitFor, within } from './wait';

/**
 * Stream cases of the runtime conformance suite: coalescing latency, pull
 * consumption, liveness both ways (heartbeats, probes, severed transports),
 * cancellation across hops, migration. Transport-independent, so every
 * transport proves them; fault tests with real processes repeat the timing
 * ones with kill -9 and SIGSTOP.
 */

/** Fast liveness so the cases stay short: heartbeat 50 ms, a killed worker found in ~75 ms, a frozen one in 400 ms. */
export const FAST_LIVENESS = { streamHeartbeatMs: 50, streamIdleMs: 400 } as const;

/** What every stream handler here records about its aborts. */
interface AbortLog {
  aborts: { code: string; at: number }[];
}

function recordAborts(log: AbortLog, ctx: Context): void {
  ctx.signal.addEventListener('abort', () => log.aborts.push({ code: (ctx.signal.reason as TroupeError)?.code ?? 'unknown', at: Date.now() }), { once: true });
}

/** A count request: items `from..n-1`; `stallAt` makes the handler go quiet (but alive) before that item. */
interface CountReq {
  n: number;
  from?: number;
  delayMs?: number;
  stallAt?: number;
}

@component('source')
class Source implements AbortLog {
  produced = 0;
  aborts: { code: string; at: number }[] = [];
  constructor(@injectInstance() readonly me: InstanceInfo) {}

  @endpoint() async *count(req: CountReq, ctx: Context): AsyncGenerator<number> {
    recordAborts(this, ctx);
    for (let i = req.from ?? 0; i < req.n; i++) {
      if (req.stallAt === i) await sleep(3_600_000, ctx.signal);
      if (req.delayMs) await sleep(req.delayMs, ctx.signal);
      this.produced++;
      yield i;
    }
  }

  @endpoint() async *forever(_req: undefined, ctx: Context): AsyncGenerator<number> {
    recordAborts(this, ctx);
    for (let i = 0; ; i++) {
      this.produced++;
      yield i;
      await sleep(2, ctx.signal);
    }
  }

  /** `n` items of `size` bytes each. */
  @endpoint() async *blobs(req: { n: number; size: number }, ctx: Context): AsyncGenerator<Uint8Array> {
    recordAborts(this, ctx);
    for (let i = 0; i < req.n; i++) {
      this.produced++;
      yield new Uint8Array(req.size).fill(i & 0xff);
    }
  }

  @endpoint() async *quietThenOne(req: { quietMs: number }, ctx: Context): AsyncGenerator<string> {
    yield 'first';
    await sleep(req.quietMs, ctx.signal);
    yield 'second';
  }
}

@component('relay')
class Relay implements AbortLog {
  aborts: { code: string; at: number }[] = [];
  /** Codes of the nested stream's errors. */
  failures: string[] = [];
  constructor(@injectClient(Source) private readonly source: TypedClient<Source>) {}

  @endpoint() async *relay(_req: undefined, ctx: Context): AsyncGenerator<number> {
    recordAborts(this, ctx);
    try {
      yield* this.source.forever(undefined, { parent: ctx });
    } catch (err) {
      this.failures.push((err as TroupeError).code);
      throw err;
    }
  }
}

@component('edge')
class Edge implements AbortLog {
  aborts: { code: string; at: number }[] = [];
  /** Codes of the nested stream's errors. */
  failures: string[] = [];
  constructor(@injectClient(Relay) private readonly relay: TypedClient<Relay>) {}

  @endpoint() async *edge(_req: undefined, ctx: Context): AsyncGenerator<number> {
    recordAborts(this, ctx);
    try {
      yield* this.relay.relay(undefined, { parent: ctx });
    } catch (err) {
      this.failures.push((err as TroupeError).code);
      throw err;
    }
  }
}

interface Pair {
  worker: Runtime;
  caller: Runtime;
}

let nsCounter = 0;
const freshNamespace = (): string => `st${process.pid}x${Date.now().toString(36)}x${(nsCounter++).toString(36)}`;

/** A runtime on a severable view of `base`'s connection, closed by the returned function. */
async function severable(base: Runtime, options: RuntimeOptions = {}): Promise<{ runtime: Runtime; cut: SeverableTransport }> {
  const cut = new SeverableTransport(base.bus);
  const runtime = await Runtime.connect({ ...FAST_LIVENESS, gracePeriodMs: 200, ...options, transport: cut });
  return { runtime, cut };
}

/** Collects a stream into an array; resolves with the items and the error (if any). */
function collect<T>(source: { subscribe(o: { next(v: T): void; error(e: unknown): void; complete(): void }): unknown }): {
  items: T[];
  done: Promise<TroupeError | undefined>;
  at: () => number;
} {
  const items: T[] = [];
  let endedAt = 0;
  const done = new Promise<TroupeError | undefined>((resolve) =>
    source.subscribe({
      next: (v) => items.push(v),
      error: (e) => {
        endedAt = Date.now();
        resolve(e as TroupeError);
      },
      complete: () => {
        endedAt = Date.now();
        resolve(undefined);
      },
    }),
  );
  return { items, done, at: () => endedAt };
}

/** Adds the stream cases to a runtime suite. */
export function addStreamCases<C extends object>(s: Test<C>, open: (ctx: C, options?: RuntimeOptions) => Promise<Pair>): void {
  s('stream - a lone item leaves at once: coalescing adds no latency', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    await worker.spawn(Source, { namespace: ns });
    const t0 = Date.now();
    const times: number[] = [];
    await within(
      new Promise<void>((resolve, reject) =>
        caller
          .namespace(ns)
          .client(Source)
          .quietThenOne({ quietMs: 300 })
          .subscribe({ next: () => times.push(Date.now() - t0), error: reject, complete: resolve }),
      ),
      5_000,
      'the stream',
    );
    assert.is(times.length, 2);
    // Measured between the two items, not from subscribe: discovery of the fresh namespace and a loaded machine
    // delay both alike. Held back for coalescing, the first would arrive with the second.
    const gap = (times[1] as number) - (times[0] as number);
    assert.ok(gap >= 250, `the first item came only ${gap} ms before the second, which the handler sent 300 ms later`);
    assert.ok((times[1] as number) >= 290, `the second item at ${times[1]} ms`);
  });

  s('stream - iterate() pulls: a slow async consumer holds the worker within the window', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const h = await worker.spawn(Source, { namespace: ns });
    const w = h.instance(h.instanceIds[0] as string);
    const window = 16;
    const client = caller.namespace(ns).component('source').endpoint('count').client<CountReq, number>();
    let consumed = 0;
    let worstLead = 0;
    for await (const v of client.iterate({ n: 120 }, { window })) {
      assert.is(v, consumed, 'in order');
      consumed++;
      await sleep(2); // an async consumer: an Observable would have been handed everything at once
      worstLead = Math.max(worstLead, w.produced - consumed);
    }
    assert.is(consumed, 120);
    assert.ok(worstLead <= window + 1, `the worker led the consumer by ${worstLead} items with a window of ${window}`);
    // The Observable a typed client returns is async-iterable too, with the same pull credit.
    w.produced = 0;
    consumed = 0;
    worstLead = 0;
    for await (const _ of caller.namespace(ns).client(Source).count({ n: 60 }, { window })) {
      consumed++;
      await sleep(2);
      worstLead = Math.max(worstLead, w.produced - consumed);
    }
    assert.is(consumed, 60);
    assert.ok(worstLead <= window + 1, `typed client: the worker led by ${worstLead}`);
    assert.is(caller.pendingReplies, 0, 'nothing left behind');
  });

  s('stream - the byte window bounds large items in flight, and never stalls a stream', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const h = await worker.spawn(Source, { namespace: ns });
    const w = h.instance(h.instanceIds[0] as string);
    const size = 64 * 1024;
    const windowBytes = 256 * 1024; // 4 items, while the item window allows 2048
    let consumed = 0;
    let worstLead = 0;
    for await (const b of caller.namespace(ns).client(Source).blobs({ n: 40, size }, { windowBytes })) {
      assert.is(b.length, size);
      assert.is(b[0], consumed & 0xff, 'in order');
      consumed++;
      await sleep(2);
      worstLead = Math.max(worstLead, w.produced - consumed);
    }
    assert.is(consumed, 40, 'every large item arrived: no stall when the byte window binds first');
    assert.ok(worstLead <= windowBytes / size + 1, `the worker led by ${worstLead} items of ${size} bytes with a ${windowBytes}-byte window`);
  });

  s('stream - small items travel in frames of at most 60 KiB of items (issue #13)', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    await worker.spawn(Source, { namespace: ns });
    const read = async (): Promise<{ bytes: number; frames: number }> => {
      const text = await worker.metrics.registry.metrics();
      const sum = (name: string): number => {
        const re = new RegExp(`^${name}\\{[^}]*namespace="${ns}"[^}]*endpoint="blobs"[^}]*\\} (\\d+)`, 'gm');
        let n = 0;
        for (const m of text.matchAll(re)) n += Number(m[1]);
        return n;
      };
      return { bytes: sum('troupe_response_bytes_total'), frames: sum('troupe_stream_frames_total') };
    };
    const before = await read();
    // 200 items of 1,003 msgpack bytes, produced without a pause: they used to share one 199-item frame.
    const r = collect(caller.namespace(ns).client(Source).blobs({ n: 200, size: 1000 }));
    assert.is(await within(r.done, 10_000, 'the stream'), undefined, 'completed');
    assert.is(r.items.length, 200, 'every item');
    r.items.forEach((b, i) => assert.is((b as Uint8Array)[0], i & 0xff, 'in order'));
    const after = await read();
    const frames = after.frames - before.frames;
    const bytes = after.bytes - before.bytes;
    assert.ok(bytes >= 200 * 1003, `bytes counted (${bytes})`);
    // worker-stream.ts FRAME_FILL_BYTES: a frame's message stays under 64 KiB (each frame adds a ≤ 5-byte array header).
    const least = Math.ceil(bytes / (60 * 1024 + 5));
    assert.ok(frames >= least, `${frames} frames carried ${bytes} bytes: more than 60 KiB of items in a frame`);
  });

  s('stream - leaving a for-await loop early cancels the remote handler', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const h = await worker.spawn(Source, { namespace: ns });
    const w = h.instance(h.instanceIds[0] as string);
    let n = 0;
    for await (const _ of caller.namespace(ns).client(Source).forever(undefined)) if (++n === 5) break;
    await waitFor(() => w.aborts.length > 0, 1_000, 'the handler to be aborted');
    assert.is(w.aborts[0]?.code, 'CANCELLED');
    await waitFor(() => caller.pendingReplies === 0, 1_000, 'the caller to release the stream');
  });

  s('liveness - heartbeats keep a quiet handler alive, also while it waits in a busy mailbox', async (ctx) => {
    const { worker, caller } = await open(ctx, FAST_LIVENESS);
    const ns = freshNamespace();
    await worker.spawn(Source, { namespace: ns, concurrency: 1 });
    const client = caller.namespace(ns).client(Source);
    // Silent for 1.5 idle bounds between items; the second stream waits in the mailbox for the first.
    const a = collect(client.count({ n: 2, delayMs: 600 }));
    const b = collect(client.count({ n: 2, delayMs: 100 }));
    assert.is(await within(a.done, 5_000, 'the first stream'), undefined, 'the quiet stream completed');
    assert.is(await within(b.done, 5_000, 'the queued stream'), undefined, 'the queued stream completed');
    assert.equal(a.items, [0, 1]);
    assert.equal(b.items, [0, 1]);
    assert.is(caller.stats().streamsLost, 0);
    assert.ok(worker.stats().heartbeatsSent > 0, 'the worker sent heartbeats');
  });

  s('liveness - a worker that dies mid-stream becomes INSTANCE_LOST with the count delivered, in ~1.5 heartbeats', async (ctx) => {
    const { caller, worker } = await open(ctx, FAST_LIVENESS);
    const { runtime, cut } = await severable(worker);
    try {
      const ns = freshNamespace();
      await runtime.spawn(Source, { namespace: ns });
      const s1 = collect(caller.namespace(ns).client(Source).count({ n: 1_000, stallAt: 20 }));
      await waitFor(() => s1.items.length === 20, 3_000, '20 items');
      const t0 = Date.now();
      cut.kill();
      const err = await within(s1.done, 3_000, 'INSTANCE_LOST');
      const ms = s1.at() - t0;
      assert.instance(err, TroupeError);
      assert.is(err?.code, 'INSTANCE_LOST', err?.message);
      assert.is((err?.data as { delivered: number }).delivered, 20);
      assert.ok(ms < 300, `INSTANCE_LOST ${ms} ms after the kill (heartbeat 50 ms: a probe at ~75 ms of silence gets "no responders")`);
      assert.is(caller.stats().streamsLost, 1);
      assert.ok(caller.stats().probesSent >= 1);
      assert.is(caller.pendingReplies, 0);
    } finally {
      await runtime.close();
    }
  });

  s('liveness - a frozen worker becomes INSTANCE_LOST at the idle bound', async (ctx) => {
    const { caller, worker } = await open(ctx, FAST_LIVENESS);
    const { runtime, cut } = await severable(worker);
    try {
      const ns = freshNamespace();
      await runtime.spawn(Source, { namespace: ns });
      const s1 = collect(caller.namespace(ns).client(Source).count({ n: 1_000, stallAt: 7 }));
      await waitFor(() => s1.items.length === 7, 3_000, '7 items');
      const t0 = Date.now();
      cut.freeze();
      const err = await within(s1.done, 3_000, 'INSTANCE_LOST');
      const ms = s1.at() - t0;
      assert.is(err?.code, 'INSTANCE_LOST', err?.message);
      assert.is((err?.data as { delivered: number }).delivered, 7);
      assert.ok(ms >= 250 && ms < 800, `INSTANCE_LOST ${ms} ms after the freeze (idle bound 400 ms)`);
    } finally {
      await runtime.close();
    }
  });

  s('liveness - the handler is aborted when the caller process goes away', async (ctx) => {
    const { worker, caller } = await open(ctx, FAST_LIVENESS);
    const { runtime: gone, cut } = await severable(caller);
    try {
      const ns = freshNamespace();
      const h = await worker.spawn(Source, { namespace: ns });
      const w = h.instance(h.instanceIds[0] as string);
      const s1 = collect(gone.namespace(ns).client(Source).count({ n: 1_000, stallAt: 10 }));
      await waitFor(() => s1.items.length === 10, 3_000, '10 items');
      const t0 = Date.now();
      cut.kill();
      await waitFor(() => w.aborts.length > 0, 1_000, 'the handler to be aborted');
      const ms = (w.aborts[0]?.at as number) - t0;
      assert.is(w.aborts[0]?.code, 'CANCELLED');
      assert.ok(ms < 500, `aborted ${ms} ms after the caller vanished`);
      assert.ok(worker.stats().callersLost >= 1);
    } finally {
      await gone.close();
    }
  });

  s('liveness - a cancel that never arrives still stops the handler: the caller inbox answers "gone"', async (ctx) => {
    const { worker, caller } = await open(ctx, FAST_LIVENESS);
    const { runtime: lossy, cut } = await severable(caller);
    try {
      const ns = freshNamespace();
      const h = await worker.spawn(Source, { namespace: ns });
      const w = h.instance(h.instanceIds[0] as string);
      cut.dropOutgoing((_subject, o) => o?.headers?.['Troupe-Ctl'] === 'cancel');
      const sub = lossy.namespace(ns).client(Source).forever(undefined).subscribe();
      await waitFor(() => w.produced >= 10, 2_000, '10 items');
      const t0 = Date.now();
      sub.unsubscribe();
      await waitFor(() => w.aborts.length > 0, 1_000, 'the handler to be aborted');
      assert.ok(cut.dropped >= 1, 'the cancel was dropped');
      assert.ok((w.aborts[0]?.at as number) - t0 < 500, `aborted ${(w.aborts[0]?.at as number) - t0} ms after the unsubscribe`);
    } finally {
      await lossy.close();
    }
  });

  s('cancel - cancelling the outer stream cancels the nested streams across three hops', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const hs = await worker.spawn(Source, { namespace: ns });
    const hr = await worker.spawn(Relay, { namespace: ns });
    const he = await worker.spawn(Edge, { namespace: ns });
    const logs = [he.instance(he.instanceIds[0] as string), hr.instance(hr.instanceIds[0] as string), hs.instance(hs.instanceIds[0] as string)];
    const got: number[] = [];
    const sub = caller
      .namespace(ns)
      .client(Edge)
      .edge(undefined)
      .subscribe((v) => got.push(v));
    await waitFor(() => got.length >= 5, 3_000, '5 items through three hops');
    assert.equal(got.slice(0, 5), [0, 1, 2, 3, 4]);
    const t0 = Date.now();
    sub.unsubscribe();
    await waitFor(() => logs.every((l) => l.aborts.length > 0), 1_000, 'all three handlers to be aborted');
    for (const [i, l] of logs.entries()) {
      const ms = (l.aborts[0]?.at as number) - t0;
      assert.ok(ms < 500, `hop ${i + 1} aborted ${ms} ms after the cancel`);
      assert.is(l.aborts[0]?.code, 'CANCELLED', `hop ${i + 1} reads the cancel as a cancel`);
    }
    await waitFor(() => caller.pendingReplies === 0 && worker.pendingReplies === 0, 1_000, 'every stream released');
  });

  s('deadline - a deadline on the outer stream reads as TIMEOUT, not a cancel, at every hop (issue #18)', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const hs = await worker.spawn(Source, { namespace: ns });
    const hr = await worker.spawn(Relay, { namespace: ns });
    const he = await worker.spawn(Edge, { namespace: ns });
    const logs = [he.instance(he.instanceIds[0] as string), hr.instance(hr.instanceIds[0] as string), hs.instance(hs.instanceIds[0] as string)];
    // Warm up: every hop's discovery view is synced before the 300 ms budget starts counting.
    await within(lastValueFrom(caller.namespace(ns).client(Edge).edge(undefined).pipe(take(1))), 10_000, 'the warm-up stream');
    await waitFor(() => logs.every((l) => l.aborts.length > 0), 3_000, 'the warm-up stream to be cancelled at every hop');
    for (const l of logs) l.aborts.length = 0;
    for (const l of [logs[0], logs[1]] as [Edge, Relay]) l.failures.length = 0;
    const t0 = Date.now();
    const s1 = collect(caller.namespace(ns).client(Edge).edge(undefined, { timeout: 300 }));
    const err = await within(s1.done, 3_000, 'the outer stream to time out');
    assert.is(err?.code, 'TIMEOUT', `the outer stream: ${err?.message}`);
    // Every hop's deadline passes at about the same moment; whichever fires first, the generator
    // two hops down is aborted with TIMEOUT, and a hop above it is either aborted with TIMEOUT
    // or (when the hop below timed out first) ends with its nested stream's TIMEOUT. Never CANCELLED.
    const [edge, relay, source] = logs as [Edge, Relay, Source];
    await waitFor(() => source.aborts.length > 0, 3_000, 'the generator two hops down to be aborted');
    assert.is(source.aborts[0]?.code, 'TIMEOUT', "the generator's ctx.signal.reason reads the deadline as a deadline");
    const sourceMs = (source.aborts[0]?.at as number) - t0;
    assert.ok(sourceMs >= 250 && sourceMs < 2_300, `the generator aborted ${sourceMs} ms after a 300 ms call began`);
    for (const [name, hop] of [
      ['hop 1', edge],
      ['hop 2', relay],
    ] as const) {
      await waitFor(() => hop.aborts.length > 0 || hop.failures.length > 0, 3_000, `${name} to be aborted or to see its nested stream fail`);
      const seen = hop.aborts[0]?.code ?? hop.failures[0];
      assert.is(
        seen,
        'TIMEOUT',
        `${name} reads the deadline as a deadline (aborts ${JSON.stringify(hop.aborts)}, nested failures ${JSON.stringify(hop.failures)})`,
      );
    }
    await waitFor(() => caller.pendingReplies === 0 && worker.pendingReplies === 0, 3_000, 'every stream released');
  });

  for (const router of ['round-robin', 'queue'] as const) {
    s(`migrate - a stream whose instance dies completes from another instance, gap-free (${router})`, async (ctx) => {
      const { caller, worker } = await open(ctx, FAST_LIVENESS);
      const { runtime: doomed, cut } = await severable(worker);
      try {
        const ns = freshNamespace();
        const first = await doomed.spawn(Source, { namespace: ns });
        const client = caller.namespace(ns).client(Source, router === 'queue' ? { router: 'queue' } : {});
        // Only the doomed instance exists when the stream starts; the survivor joins before the kill.
        const s1 = collect(
          client.count({ n: 300, stallAt: 20 }, { migrate: { attempts: 2, resume: (req, got) => ({ n: req.n, from: (req.from ?? 0) + got.length }) } }),
        );
        await waitFor(() => s1.items.length === 20, 3_000, '20 items');
        await worker.spawn(Source, { namespace: ns });
        if (router !== 'queue') await caller.namespace(ns).component('source').endpoint('count').client().waitForInstances(2, { timeout: 3_000 });
        cut.kill();
        const err = await within(s1.done, 5_000, 'the migrated stream to complete');
        assert.is(err, undefined, `completed: ${err?.message}`);
        assert.is(s1.items.length, 300);
        for (let i = 0; i < 300; i++) if (s1.items[i] !== i) assert.unreachable(`item ${i} is ${s1.items[i]}: a gap or a duplicate`);
        assert.is(caller.stats().streamsMigrated, 1);
        assert.is(first.instance(first.instanceIds[0] as string).produced, 20, 'the lost instance produced exactly what was delivered');
      } finally {
        await doomed.close();
      }
    });
  }

  s('migrate - when resume gives up, the consumer gets INSTANCE_LOST with the count delivered', async (ctx) => {
    const { caller, worker } = await open(ctx, FAST_LIVENESS);
    const { runtime: doomed, cut } = await severable(worker);
    try {
      const ns = freshNamespace();
      await doomed.spawn(Source, { namespace: ns });
      let asked = 0;
      const s1 = collect(
        caller
          .namespace(ns)
          .client(Source)
          .count({ n: 100, stallAt: 5 }, { migrate: { resume: () => void asked++ } }),
      );
      await waitFor(() => s1.items.length === 5, 3_000, '5 items');
      cut.kill();
      const err = await within(s1.done, 3_000, 'INSTANCE_LOST');
      assert.is(err?.code, 'INSTANCE_LOST');
      assert.is((err?.data as { delivered: number }).delivered, 5);
      assert.is(asked, 1, 'resume was asked once');
      assert.is(caller.stats().streamsMigrated, 0);
    } finally {
      await doomed.close();
    }
  });
}
