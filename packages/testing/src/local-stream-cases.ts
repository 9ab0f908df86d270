import type { Test } from 'uvu';
import * as assert from 'uvu/assert';
import { component, type Context, endpoint, isRemoteError, type Runtime, type RuntimeOptions, TroupeError } from '@troupe/runtime/internal';
import { sleep, waitFor, within } from './wait';
import { countPublishes, freshNamespace, type Pair, plainBinary } from './local-cases';

/**
 * In-process stream cases of the runtime conformance suite. The worker
 * runtime streams from its own instance (frames handed to its inbox, items
 * copied instead of encoded: plane/local-streams.ts) and the caller runtime
 * streams from the same instance over the transport; each case runs both and
 * asserts the same outcome — values and copy semantics, credit flow control,
 * errors mid-stream, payload limits and codec errors, cancel, deadline, stop
 * with grace, metrics.
 */

interface Gen {
  n: number;
  /** Throws a typed error after this many items. */
  failAt?: number;
  /** Yields this (once, as item 1) after item 0. */
  odd?: unknown;
  delayMs?: number;
}

@component('localstreams')
class Streams {
  produced = 0;
  aborts: string[] = [];
  kept: unknown[] = [];

  @endpoint() async *gen(req: Gen, ctx: Context): AsyncGenerator<unknown> {
    ctx.signal.addEventListener('abort', () => this.aborts.push((ctx.signal.reason as TroupeError).code), { once: true });
    for (let i = 0; i < req.n; i++) {
      if (req.failAt === i) throw new TroupeError('NOT_FOUND', 'no item here', { data: { at: i, tags: ['x'] } });
      if (req.delayMs) await sleep(req.delayMs, ctx.signal);
      this.produced++;
      yield i === 1 && 'odd' in req ? req.odd : { i, p: 'abcdefghij' };
    }
  }

  /** Yields values the codec carries by its own rules, keeps them and mutates them after yielding. */
  @endpoint() async *values(_: unknown): AsyncGenerator<unknown> {
    const v = {
      s: 'café ✓',
      n: [0, -0, 1.5, 2 ** 40, -(2 ** 33)],
      u: undefined,
      a: [undefined, null, true],
      d: new Date(1_700_000_000_123),
      b: new Uint8Array([1, 2, 3]),
      big: 2n ** 70n,
      m: new Map([['k', 1]]),
      nested: { deep: { deeper: [{ x: 1 }] } },
    };
    this.kept.push(v);
    yield v;
    v.nested.deep.deeper.push({ x: 2 });
    v.s = 'changed';
    yield undefined;
    yield 'last';
  }

  @endpoint({ immutable: true }) async *shared(_: unknown): AsyncGenerator<unknown> {
    const v = { list: [1, 2], when: new Date(5) };
    this.kept.push(v);
    yield v;
    yield undefined;
  }

  /** On a stop, yields one final item and ends; ignores it when asked (killed at the end of the grace). */
  @endpoint() async *stoppable(req: { ignoreStop?: boolean }, ctx: Context): AsyncGenerator<number> {
    for (let i = 0; ; i++) {
      if (!req.ignoreStop && ctx.stopSignal.aborted) {
        yield -1;
        return;
      }
      await sleep(5);
      yield i;
    }
  }
}

interface Ended {
  items: unknown[];
  end: 'completed' | { code: string; message: string; data: unknown; remote: boolean };
}

/** Collects a stream to its end (items, and how it ended), comparable across the two paths. */
function collect(source: { subscribe: (o: { next: (v: unknown) => void; error: (e: unknown) => void; complete: () => void }) => unknown }): Promise<Ended> {
  return new Promise((resolve) => {
    const items: unknown[] = [];
    source.subscribe({
      next: (v) => items.push(v),
      error: (err) => {
        const e = err as TroupeError;
        resolve({ items, end: { code: e.code, message: e.message, data: e.data, remote: e instanceof TroupeError && isRemoteError(e) } });
      },
      complete: () => resolve({ items, end: 'completed' }),
    });
  });
}

export function addLocalStreamCases<C extends { pair?: unknown }>(s: Test<C>, open: (ctx: C, options?: RuntimeOptions) => Promise<Pair>): void {
  /** Spawns Streams on the worker; `local` streams from the worker runtime, `bus` from the caller runtime. */
  const twins = async (ctx: C, options?: RuntimeOptions) => {
    const pair = await open(ctx, options);
    const ns = freshNamespace('ls');
    const h = await pair.worker.spawn(Streams, { namespace: ns, concurrency: 4 });
    const id = h.instanceIds[0] as string;
    const local = pair.worker.namespace(ns).client(Streams);
    const bus = pair.caller.namespace(ns).client(Streams);
    await within(collect(bus.gen({ n: 1 })), 10_000, 'the warm-up stream over the transport');
    await within(collect(local.gen({ n: 1 })), 10_000, 'the warm-up stream in-process');
    return { ...pair, ns, twin: h.instance(id), id, local, bus };
  };

  s('local streams - frames to a caller of the same runtime do not use the transport', async (ctx) => {
    const { worker, caller, local, bus } = await twins(ctx);
    const count = async (rt: Runtime, client: typeof local): Promise<{ published: number; got: Ended }> => {
      const published = countPublishes(rt);
      try {
        const got = await within(collect(client.gen({ n: 20_000, delayMs: 0 }, { window: 256 })), 20_000, 'the stream');
        return { published: published.count, got };
      } finally {
        published.restore();
      }
    };
    // Frames are published by the worker runtime, credits by the caller's: counted on both sides.
    const l = await count(worker, local);
    const workerPublished = countPublishes(worker);
    let viaBus: { published: number; got: Ended };
    try {
      viaBus = await count(caller, bus);
    } finally {
      workerPublished.restore();
    }
    assert.is(l.got.items.length, 20_000);
    assert.equal(l.got, viaBus.got, 'the same items and end either way');
    // In-process: the request and the credits (one per half window) are messages; no frame is.
    assert.ok(l.published <= 1 + Math.ceil(20_000 / 128) + 5, `${l.published} messages for an in-process stream of 20,000 items (window 256)`);
    assert.ok(workerPublished.count > 20_000 / 4096, `over the transport the worker published its frames (${workerPublished.count})`);
  });

  s('local streams - items arrive as over the transport (codec rules), as copies neither side sees the other change', async (ctx) => {
    const { local, bus, twin } = await twins(ctx);
    const a = await within(collect(local.values(undefined)), 5_000, 'in-process');
    const keptLocal = twin.kept.at(-1) as { s: string };
    const b = await within(collect(bus.values(undefined)), 5_000, 'over the transport');
    assert.equal(plainBinary(a), plainBinary(b), 'the same items either way');
    assert.is(a.end, 'completed');
    const first = a.items[0] as { s: string; n: number[]; b: unknown; nested: { deep: { deeper: unknown[] } } };
    assert.is(first.s, 'café ✓', "the handler's change after yielding does not reach the caller");
    assert.is(first.nested.deep.deeper.length, 1);
    assert.ok(!Object.is(first.n[1], -0), '-0 arrives as 0');
    assert.ok(!('u' in first), 'undefined map values are dropped');
    assert.ok(first.b instanceof Uint8Array);
    assert.is(a.items[1], null, 'an undefined item arrives as null, as msgpack carries it');
    assert.is.not(first, keptLocal, 'the caller got a copy');
    // An immutable endpoint passes its items by reference in-process, copies over the transport.
    const shared = await within(collect(local.shared(undefined)), 5_000, 'immutable in-process');
    assert.is(shared.items[0], twin.kept.at(-1), 'in-process the caller got the very object');
    const sharedBus = await within(collect(bus.shared(undefined)), 5_000, 'immutable over the transport');
    assert.is.not(sharedBus.items[0], twin.kept.at(-1));
    assert.equal(shared, sharedBus, 'the same items either way (undefined as null)');
  });

  s('local streams - credit bounds a consumer that does not read: the handler waits within the window', async (ctx) => {
    const { local, bus, twin } = await twins(ctx);
    for (const client of [local, bus]) {
      twin.produced = 0;
      const window = 8;
      const it = client.gen({ n: 1_000 }, { window })[Symbol.asyncIterator]();
      assert.equal((await it.next()).value, { i: 0, p: 'abcdefghij' });
      await sleep(150);
      assert.ok(twin.produced <= window + 1, `the handler produced ${twin.produced} items for a consumer that read 1 (window ${window})`);
      let n = 1;
      for (let r = await it.next(); !r.done; r = await it.next()) n++;
      assert.is(n, 1_000, 'then every item, in order');
    }
  });

  s('local streams - an error mid-stream, an item past the payload limit or one the codec cannot carry end alike', async (ctx) => {
    const { local, bus, worker } = await twins(ctx);
    const max = worker.bus.maxPayload;
    const cases: Array<[string, Gen]> = [
      ['a typed error after 3 items', { n: 10, failAt: 3 }],
      ['an item past the payload limit', { n: 5, odd: 'y'.repeat(max + 10) }],
      ['an item the codec cannot carry', { n: 5, odd: { f: () => 1 } }],
    ];
    for (const [what, req] of cases) {
      const a = await within(collect(local.gen(req)), 5_000, `${what} in-process`);
      const b = await within(collect(bus.gen(req)), 5_000, `${what} over the transport`);
      assert.ok(a.end !== 'completed', `${what} fails`);
      // Messages may name the transport's limit in its own words; code, data, the remote mark and the items are the contract.
      const shape = (e: Ended): unknown => (e.end === 'completed' ? e : { items: e.items, code: e.end.code, data: e.end.data, remote: e.end.remote });
      assert.equal(shape(a), shape(b), `${what}: alike`);
    }
    const typed = await collect(local.gen({ n: 10, failAt: 3 }));
    assert.equal(typed.end, { code: 'NOT_FOUND', message: 'no item here', data: { at: 3, tags: ['x'] }, remote: true });
    assert.is(typed.items.length, 3, 'the items before the error arrive');
  });

  s('local streams - unsubscribe cancels the handler, a deadline times it out, as over the transport', async (ctx) => {
    const { local, bus, twin } = await twins(ctx);
    for (const client of [local, bus]) {
      twin.aborts.length = 0;
      const got: unknown[] = [];
      const sub = client.gen({ n: 100_000, delayMs: 5 }).subscribe({ next: (v) => got.push(v) });
      await waitFor(() => got.length >= 3, 2_000, '3 items');
      sub.unsubscribe();
      await waitFor(() => twin.aborts.length === 1, 2_000, 'the handler to be cancelled');
      assert.equal(twin.aborts, ['CANCELLED']);
      twin.aborts.length = 0;
      const t0 = Date.now();
      const r = await within(collect(client.gen({ n: 100_000, delayMs: 5 }, { timeout: 150 })), 3_000, 'the timed-out stream');
      assert.is((r.end as { code: string }).code, 'TIMEOUT');
      assert.ok(r.items.length > 0, 'items before the deadline arrived');
      assert.ok(Date.now() - t0 < 2_000, 'at the deadline');
      await waitFor(() => twin.aborts.length === 1, 2_000, 'the handler to see its deadline');
      assert.equal(twin.aborts, ['TIMEOUT']);
    }
  });

  s('local streams - a stop lets the handler send its final item; past the grace it is killed and the stream ends', async (ctx) => {
    const { local, bus } = await twins(ctx);
    for (const client of [local, bus]) {
      const stop = new AbortController();
      const p = collect(client.stoppable({}, { stopSignal: stop.signal }));
      await sleep(60);
      stop.abort();
      const r = await within(p, 3_000, 'the stopped stream');
      assert.is(r.end, 'completed');
      assert.is(r.items.at(-1), -1, 'the final item');
      r.items.slice(0, -1).forEach((v, i) => assert.is(v, i, 'contiguous'));
      const killed = new AbortController();
      const q = collect(client.stoppable({ ignoreStop: true }, { stopSignal: killed.signal, stopGraceMs: 150 }));
      await sleep(40);
      const t0 = Date.now();
      killed.abort();
      const k = await within(q, 3_000, 'the stream killed after its grace');
      assert.is(k.end, 'completed', 'the caller asked for the end: it gets one');
      assert.ok(Date.now() - t0 >= 100, 'after the grace');
      k.items.forEach((v, i) => assert.is(v, i, 'contiguous'));
    }
  });

  s('local streams - items, frames and bytes are counted in the metrics alike', async (ctx) => {
    const { worker, local, bus, ns } = await twins(ctx);
    const read = async (): Promise<{ items: number; bytes: number; frames: number }> => {
      const text = await worker.metrics.registry.metrics();
      const sum = (name: string): number => {
        const re = new RegExp(`^${name}\\{[^}]*namespace="${ns}"[^}]*endpoint="gen"[^}]*\\} (\\d+)`, 'gm');
        let n = 0;
        for (const m of text.matchAll(re)) n += Number(m[1]);
        return n;
      };
      return { items: sum('troupe_stream_items_total'), bytes: sum('troupe_response_bytes_total'), frames: sum('troupe_stream_frames_total') };
    };
    const delta = async (client: typeof local): Promise<{ items: number; bytes: number }> => {
      const before = await read();
      await within(collect(client.gen({ n: 20, delayMs: 5 })), 5_000, 'the stream');
      const after = await read();
      // Items bytes: each frame (of fewer than 16 items) adds a 1-byte array header; timing may frame them differently.
      return { items: after.items - before.items, bytes: after.bytes - before.bytes - (after.frames - before.frames) };
    };
    const a = await delta(local);
    const b = await delta(bus);
    assert.is(a.items, 20);
    assert.equal(a, b, 'items and their msgpack bytes counted alike');
    assert.ok(a.bytes > 20 * 10, `bytes counted in-process (${a.bytes})`);
  });
}
