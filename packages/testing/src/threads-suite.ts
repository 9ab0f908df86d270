import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { component, type Context, endpoint, type RuntimeOptions, threadFunction, TroupeError } from '@troupe/runtime/internal';
import type { RuntimeFactory, RuntimePair } from './runtime-suite';
import {
  burn,
  type Burned,
  countUntilStopped,
  type Counted,
  fail,
  failure,
  type Produced,
  steps,
  type ThreadReport,
  tokensUntilStopped,
  unclonable,
  untilAborted,
  whichThread,
} from './thread-work';
import { sleep, within } from './wait';

let nsCounter = 0;
const freshNamespace = (): string => `th${process.pid}x${Date.now().toString(36)}x${(nsCounter++).toString(36)}`;

@component('crunch')
class Crunch {
  @endpoint() burn(req: { ms: number; cooperative: boolean }, ctx: Context): Promise<Burned> {
    return ctx.runInThread(burn, req);
  }
  @endpoint() whichThread(_req: null, ctx: Context): Promise<ThreadReport> {
    return ctx.runInThread(whichThread, undefined);
  }
  @endpoint() untilAborted(_req: null, ctx: Context): Promise<number> {
    return ctx.runInThread(untilAborted, null);
  }
  @endpoint() fail(req: { troupe: boolean }, ctx: Context): Promise<never> {
    return ctx.runInThread(fail, req);
  }
  /** The same throw on the main thread, to compare what the caller gets. */
  @endpoint() failHere(req: { troupe: boolean }): never {
    throw failure(req.troupe);
  }
  @endpoint() unclonable(_req: null, ctx: Context): Promise<unknown> {
    return ctx.runInThread(unclonable, undefined);
  }
  @endpoint() notThreaded(_req: null, ctx: Context): Promise<unknown> {
    return ctx.runInThread((() => 1) as never, undefined);
  }
  @endpoint({ stream: true }) steps(req: { n: number; stepMs: number }, ctx: Context): AsyncIterable<Produced> {
    return ctx.streamInThread(steps, req);
  }
  @endpoint() countUntilStopped(req: { maxMs: number }, ctx: Context): Promise<Counted> {
    return ctx.runInThread(countUntilStopped, req);
  }
  @endpoint({ stream: true }) tokens(req: { stepMs: number }, ctx: Context): AsyncIterable<string> {
    return ctx.streamInThread(tokensUntilStopped, req);
  }
  @endpoint() ping(): number {
    return Date.now();
  }
}

/** Times `fn` (ms, fractional). */
async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/**
 * Endpoints that run CPU-bound work in the runtime's worker threads
 * (`ctx.runInThread`, `ctx.streamInThread`): results, errors, deadlines,
 * cancellation, streaming with credits. Transport-independent: every
 * transport must pass it unchanged.
 *
 * @example
 * threadsSuite('memory', { open: openMemoryPair });
 */
export function threadsSuite(name: string, factory: RuntimeFactory): void {
  const s = suite<{ pair?: RuntimePair }>(`threads[${name}]`);
  s.after.each(async (ctx) => {
    await ctx.pair?.close();
    ctx.pair = undefined;
  });
  const open = async (ctx: { pair?: RuntimePair }, options?: RuntimeOptions): Promise<{ caller: RuntimePair['caller']; ns: string }> => {
    ctx.pair = await factory.open({ threadPoolSize: 1, threadAbortGraceMs: 300, ...options });
    const ns = freshNamespace();
    await ctx.pair.worker.spawn(Crunch, { namespace: ns, concurrency: 4 });
    return { caller: ctx.pair.caller, ns };
  };

  s('threads - a 2 s CPU-bound call runs in a thread while the same instance answers pings', async (ctx) => {
    const { caller, ns } = await open(ctx);
    const client = caller.namespace(ns).client(Crunch);
    await client.whichThread(null); // the thread is started (and the module loaded) before timing
    await client.ping(null); // and the ping endpoint is discovered: its first call may wait for discovery
    const burning = client.burn({ ms: 2_000, cooperative: false });
    const pings: number[] = [];
    for (let i = 0; i < 9; i++) pings.push(await timed(() => client.ping(null)));
    const result = await within(burning, 10_000, 'the 2 s burn');
    assert.is(result.aborted, false);
    assert.ok(result.threadId > 0, `ran in a worker thread (threadId ${result.threadId})`);
    console.log(`threads[${name}]: pings during a 2 s burn: ${pings.map((p) => p.toFixed(1)).join(', ')} ms`);
    // A blocked event loop would hold a ping until the burn ends (~2 s); the bounds leave room for a loaded 2-core machine.
    const sorted = [...pings].sort((a, b) => a - b);
    assert.ok((sorted[4] as number) < 50, `median ping ${(sorted[4] as number).toFixed(1)} ms while a thread burned`);
    for (const p of pings) assert.ok(p < 1_000, `a ping took ${p.toFixed(1)} ms while a thread burned (the event loop was blocked?)`);
  });

  s('threads - a throw in the thread reaches the caller as the same TroupeError as a main-thread throw', async (ctx) => {
    const { caller, ns } = await open(ctx);
    const client = caller.namespace(ns).client(Crunch);
    for (const troupe of [true, false]) {
      const inThread = await client.fail({ troupe }).then(
        () => undefined,
        (e: unknown) => e,
      );
      const onMain = await client.failHere({ troupe }).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.instance(inThread, TroupeError);
      assert.instance(onMain, TroupeError);
      const a = inThread as TroupeError;
      const b = onMain as TroupeError;
      assert.equal({ code: a.code, message: a.message, data: a.data }, { code: b.code, message: b.message, data: b.data }, `troupe: ${troupe}`);
    }
  });

  s('threads - a deadline answers TIMEOUT and the thread sees the abort (ctx.aborted and ctx.signal), then serves the next call at once', async (ctx) => {
    const { caller, ns } = await open(ctx);
    const client = caller.namespace(ns).client(Crunch);
    const first = (await client.whichThread(null)).threadId;
    const err = await client.burn({ ms: 20_000, cooperative: true }, { timeout: 1_000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.instance(err, TroupeError);
    assert.is((err as TroupeError).code, 'TIMEOUT');
    let report: ThreadReport | undefined;
    const took = await timed(async () => (report = await client.whichThread(null)));
    assert.equal(report, { threadId: first, started: ['burn'] }, 'the same thread ran the burn and stopped on ctx.aborted: it was not replaced');
    assert.ok(took < 1_000, `the next call took ${took.toFixed(0)} ms`);
    const err2 = await client.untilAborted(null, { timeout: 1_000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.is((err2 as TroupeError).code, 'TIMEOUT');
    assert.equal(
      await client.whichThread(null),
      { threadId: first, started: ['burn', 'untilAborted'] },
      'the same thread: its signal fired and the async function returned',
    );
  });

  s('threads - cancelling a stream frees its thread: the next call starts at once', async (ctx) => {
    // A unary caller's cancel does not reach its worker today (only its deadline does); a stream's cancel does.
    const { caller, ns } = await open(ctx);
    const client = caller.namespace(ns).client(Crunch);
    const first = (await client.whichThread(null)).threadId;
    const stream = caller.namespace(ns).component('crunch').endpoint('steps').client<{ n: number; stepMs: number }, Produced>();
    let got = 0;
    for await (const item of stream.iterate({ n: 100, stepMs: 200 })) {
      assert.is(item.i, 0);
      got++;
      break; // cancels the stream: the thread is mid-step (200 ms of CPU each)
    }
    assert.is(got, 1);
    let report: ThreadReport | undefined;
    const took = await timed(async () => (report = await client.whichThread(null)));
    assert.equal(report, { threadId: first, started: ['steps'] }, 'the same thread: it stopped on ctx.aborted');
    assert.ok(took < 1_000, `the next call took ${took.toFixed(0)} ms after the cancel (100 steps of 200 ms were left)`);
  });

  s('threads - a thread that ignores its abort is terminated and replaced after threadAbortGraceMs', async (ctx) => {
    const { caller, ns } = await open(ctx);
    const client = caller.namespace(ns).client(Crunch);
    const first = (await client.whichThread(null)).threadId;
    const err = await client.burn({ ms: 20_000, cooperative: false }, { timeout: 1_000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.is((err as TroupeError).code, 'TIMEOUT');
    let next: ThreadReport | undefined;
    const took = await timed(async () => (next = await client.whichThread(null)));
    assert.is.not(next?.threadId, first, 'a new thread');
    assert.equal(next?.started, [], 'a fresh thread: the one that ran the burn is gone');
    assert.ok(took < 5_000, `the replacement answered after ${took.toFixed(0)} ms (grace 300 ms)`);
  });

  s('threads - streamInThread delivers N items in order; with a small window and a slow consumer the thread pauses', async (ctx) => {
    const { caller, ns } = await open(ctx);
    const client = caller.namespace(ns).component('crunch').endpoint('steps').client<{ n: number; stepMs: number }, Produced>();
    const n = 80;
    const window = 2;
    const consumedAt: number[] = [];
    const producedAt: number[] = [];
    for await (const item of client.iterate({ n, stepMs: 0 }, { window })) {
      assert.is(item.i, consumedAt.length, 'in order');
      producedAt.push(item.at);
      await sleep(10); // a slow consumer
      consumedAt.push(Date.now());
    }
    assert.is(consumedAt.length, n);
    // Item k can only be produced once the consumer took item k - lead: the thread's own buffer (16), the credit window, slack.
    const lead = 16 + window + 4;
    for (let k = lead; k < n; k++) {
      assert.ok(
        (producedAt[k] as number) >= (consumedAt[k - lead] as number) - 1,
        `item ${k} was produced before item ${k - lead} was consumed: the thread ran ahead`,
      );
    }
    console.log(
      `threads[${name}]: ${n} items, window ${window}, 10 ms consumer: produced over ${(producedAt[n - 1] as number) - (producedAt[0] as number)} ms`,
    );
  });

  s('threads - a stop reaches the thread (ctx.stopped in a synchronous loop): the call resolves with what it returns, not CANCELLED', async (ctx) => {
    const { caller, ns } = await open(ctx);
    const client = caller.namespace(ns).client(Crunch);
    const first = (await client.whichThread(null)).threadId;
    const stop = new AbortController();
    const call = client.countUntilStopped({ maxMs: 20_000 }, { stopSignal: stop.signal, timeout: 30_000 });
    await sleep(300);
    const stoppedAt = performance.now();
    stop.abort();
    const counted = await within(call, 5_000, 'the stopped call');
    const took = performance.now() - stoppedAt;
    assert.is(counted.stopped, true, 'the thread saw the stop');
    assert.is(counted.aborted, false, 'a stop is not a kill');
    assert.ok(counted.n > 0);
    assert.ok(took < 1_000, `resolved ${took.toFixed(0)} ms after the stop (20 s of work were left)`);
    assert.equal(await client.whichThread(null), { threadId: first, started: ['countUntilStopped'] }, 'the same thread serves the next call');
  });

  s('threads - a stopped stream in a thread yields its final item and completes normally', async (ctx) => {
    const { caller, ns } = await open(ctx);
    const client = caller.namespace(ns).component('crunch').endpoint('tokens').client<{ stepMs: number }, string>();
    const stop = new AbortController();
    const items: string[] = [];
    const done = (async () => {
      for await (const item of client.iterate({ stepMs: 20 }, { stopSignal: stop.signal, timeout: 30_000 })) {
        items.push(item);
        if (items.length === 5) stop.abort();
      }
    })();
    await within(done, 5_000, 'the stopped stream to complete');
    assert.is(items[items.length - 1], 'final', `the final item arrived last: ${items.join(',')}`);
    assert.equal(
      items.slice(0, -1),
      items.slice(0, -1).map((_, i) => `t${i}`),
      'in order, then the final item',
    );
  });

  s('threads - misuse answers a clear error: a plain function, a result that cannot cross, a relative module path', async (ctx) => {
    const { caller, ns } = await open(ctx);
    const client = caller.namespace(ns).client(Crunch);
    const a = (await client.notThreaded(null).then(
      () => undefined,
      (e: unknown) => e,
    )) as TroupeError;
    assert.is(a.code, 'BAD_REQUEST');
    assert.match(a.message, /threadFunction/);
    const b = (await client.unclonable(null).then(
      () => undefined,
      (e: unknown) => e,
    )) as TroupeError;
    assert.is(b.code, 'INTERNAL');
    assert.match(b.message, /structured-cloneable/);
    assert.throws(
      () => threadFunction('./work.js', 'work', () => 1),
      (e: unknown) => e instanceof TroupeError && e.code === 'BAD_REQUEST' && /absolute path/.test(e.message),
    );
  });

  s.run();
}
