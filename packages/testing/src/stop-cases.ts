import type { Test } from 'uvu';
import * as assert from 'uvu/assert';
import { component, type Context, endpoint, injectClient, type Runtime, type RuntimeOptions, TroupeError, type TypedClient } from '@troupe/runtime/internal';
import type { Observable } from 'rxjs';
import { sleep, waitFor, within } from './wait';
import { rejection } from './rejection';

/**
 * The two kinds of cancel (issue #17, item 7), after Dynamo's
 * `stop_generating()` and `kill()`: a **stop** lets the handler finish (it
 * sees `ctx.stopSignal`, may yield a last item, and the stream ends
 * normally with everything produced), bounded by `stopGraceMs`; a **kill**
 * (`signal`, today's cancel) aborts it at once. Both travel through nested
 * calls made with `parent: ctx`.
 */

/** A token, or the last item a handler yields once stopped. */
type Item = { token: number } | { finish: string };

interface HandlerLog {
  /** Requests started. */
  started: number;
  /** Stops seen (ctx.stopSignal aborted). */
  stops: number;
  /** Kills seen: ctx.signal's reason code, with data. */
  kills: { code: string; data: unknown; at: number }[];
  /** Handlers that returned normally. */
  finished: number;
}

function watch(log: HandlerLog, ctx: Context): void {
  log.started++;
  // A request stopped while it waited in the mailbox starts with its stopSignal already aborted.
  if (ctx.stopSignal.aborted) log.stops++;
  else ctx.stopSignal.addEventListener('abort', () => log.stops++, { once: true });
  ctx.signal.addEventListener(
    'abort',
    () => {
      const r = ctx.signal.reason as TroupeError;
      log.kills.push({ code: r.code, data: r.data, at: Date.now() });
    },
    { once: true },
  );
}

function freshLog(): HandlerLog {
  return { started: 0, stops: 0, kills: [], finished: 0 };
}

/** Resolves when `signal` aborts. */
function aborted(signal: AbortSignal): Promise<void> {
  return signal.aborted ? Promise.resolve() : new Promise((r) => signal.addEventListener('abort', () => r(), { once: true }));
}

@component('stopleaf')
class StopLeaf {
  log = freshLog();

  /** Tokens every 10 ms; once stopped, a finish item and a clean return (unless told to ignore stops). */
  @endpoint() async *gen(req: { ignoreStop?: boolean }, ctx: Context): AsyncGenerator<Item> {
    watch(this.log, ctx);
    for (let i = 0; ; i++) {
      if (!req.ignoreStop && ctx.stopSignal.aborted) {
        yield { finish: 'stopped' };
        this.log.finished++;
        return;
      }
      yield { token: i };
      await sleep(10, ctx.signal);
    }
  }

  /** Waits up to `ms`; a stop ends the wait early with a partial answer (unless told to ignore stops). */
  @endpoint() async hold(req: { ms: number; ignoreStop?: boolean }, ctx: Context): Promise<string> {
    watch(this.log, ctx);
    const stop = req.ignoreStop ? new Promise<never>(() => undefined) : aborted(ctx.stopSignal);
    const done = await Promise.race([sleep(req.ms, ctx.signal).then(() => 'full'), stop.then(() => 'stopped')]);
    this.log.finished++;
    return done;
  }
}

@component('stopmid')
class StopMid {
  log = freshLog();
  constructor(@injectClient(StopLeaf) private readonly leaf: TypedClient<StopLeaf>) {}

  /** Relays the leaf's stream with `parent: ctx`, then adds an item of its own. */
  @endpoint() async *relay(req: { ignoreStop?: boolean }, ctx: Context): AsyncGenerator<Item> {
    watch(this.log, ctx);
    for await (const item of this.leaf.gen(req, { parent: ctx })) yield item;
    yield { finish: 'relayed' };
    this.log.finished++;
  }

  /** A unary relay of the leaf's `hold`. */
  @endpoint() async hold(req: { ms: number }, ctx: Context): Promise<string> {
    watch(this.log, ctx);
    const r = await this.leaf.hold(req, { parent: ctx });
    this.log.finished++;
    return `mid:${r}`;
  }
}

interface Pair {
  worker: Runtime;
  caller: Runtime;
}

let nsCounter = 0;
const freshNamespace = (): string => `st${process.pid}x${Date.now().toString(36)}x${(nsCounter++).toString(36)}`;

/** Collects a stream's items; resolves with them on completion, rejects with its error. */
function collect(o: Observable<Item>, items: Item[]): Promise<Item[]> {
  return new Promise((resolve, reject) => o.subscribe({ next: (v) => items.push(v), error: reject, complete: () => resolve(items) }));
}

/** The tokens are 0, 1, 2, ... with no gap and no duplicate. */
function assertContiguous(items: Item[], what: string): void {
  const tokens = items.filter((i): i is { token: number } => 'token' in i).map((i) => i.token);
  assert.equal(
    tokens,
    tokens.map((_, k) => k),
    `${what}: tokens contiguous from 0`,
  );
}

async function spawnLeaf(worker: Runtime, caller: Runtime, ns: string, concurrency = 8): Promise<StopLeaf> {
  const h = await worker.spawn(StopLeaf, { namespace: ns, concurrency });
  await caller.namespace(ns).component('stopleaf').endpoint('gen').client().waitForInstances(1, { timeout: 5_000 });
  return h.instance(h.instanceIds[0] as string);
}

/** The two-hop chain: a leaf, and a `StopMid` whose `endpoint` calls it, both listed for `caller`. */
async function spawnChain(worker: Runtime, caller: Runtime, ns: string, endpoint: 'relay' | 'hold'): Promise<{ leaf: StopLeaf; mid: StopMid }> {
  const leaf = await spawnLeaf(worker, caller, ns);
  const h = await worker.spawn(StopMid, { namespace: ns, concurrency: 8 });
  await caller.namespace(ns).component('stopmid').endpoint(endpoint).client().waitForInstances(1, { timeout: 5_000 });
  return { leaf, mid: h.instance(h.instanceIds[0] as string) };
}

/** Adds the stop-versus-kill cases to the runtime suite `s`. */
export function addStopCases<C extends { pair?: unknown }>(s: Test<C>, open: (ctx: C, options?: RuntimeOptions) => Promise<Pair>): void {
  s('stop - a stopped stream ends normally with every item, the final one included; the handler is never killed', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const leaf = await spawnLeaf(worker, caller, ns);
    const stop = new AbortController();
    const items: Item[] = [];
    const done = collect(caller.namespace(ns).client(StopLeaf).gen({}, { stopSignal: stop.signal }), items);
    await waitFor(() => items.length >= 3, 3_000, '3 tokens');
    stop.abort();
    const got = await within(done, 3_000, 'the stopped stream to complete');
    assert.equal(got.at(-1), { finish: 'stopped' }, 'the item yielded after the stop arrives');
    assert.ok(got.length >= 4, `${got.length} items`);
    assertContiguous(got, 'stopped stream');
    assert.is(leaf.log.stops, 1, 'the handler saw the stop');
    assert.is(leaf.log.finished, 1, 'the handler returned on its own');
    assert.equal(leaf.log.kills, [], 'the handler was not killed');
    await waitFor(() => caller.pendingReplies === 0 && worker.pendingReplies === 0, 3_000, 'the stream released');
  });

  s('stop - a kill (signal) still aborts at once with CANCELLED and no final item', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const leaf = await spawnLeaf(worker, caller, ns);
    const kill = new AbortController();
    const items: Item[] = [];
    const done = collect(caller.namespace(ns).client(StopLeaf).gen({}, { signal: kill.signal }), items);
    await waitFor(() => items.length >= 3, 3_000, '3 tokens');
    const t0 = Date.now();
    kill.abort();
    const err = await rejection(done, 'the killed stream');
    assert.is(err.code, 'CANCELLED');
    assert.ok(Date.now() - t0 < 100, `the caller's error came at once (${Date.now() - t0} ms)`);
    await waitFor(() => leaf.log.kills.length === 1, 1_000, 'the handler to be killed');
    assert.is(leaf.log.kills[0]?.code, 'CANCELLED');
    assert.is(leaf.log.stops, 0, 'a kill is no stop');
    assert.ok(!items.some((i) => 'finish' in i), 'no final item');
  });

  s('stop - a handler ignoring the stop is killed after stopGraceMs, and the stream still completes with what it produced', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const leaf = await spawnLeaf(worker, caller, ns);
    const stop = new AbortController();
    const items: Item[] = [];
    const done = collect(caller.namespace(ns).client(StopLeaf).gen({ ignoreStop: true }, { stopSignal: stop.signal, stopGraceMs: 200 }), items);
    await waitFor(() => items.length >= 3, 3_000, '3 tokens');
    const t0 = Date.now();
    stop.abort();
    const got = await within(done, 3_000, 'the stream to complete after the grace');
    const took = Date.now() - t0;
    assert.ok(took >= 150 && took < 2_000, `completed ${took} ms after the stop (grace 200 ms)`);
    assertContiguous(got, 'stream killed after its grace');
    assert.ok(!got.some((i) => 'finish' in i), 'the handler never finished');
    await waitFor(() => leaf.log.kills.length === 1, 1_000, 'the handler to be killed');
    assert.is(leaf.log.kills[0]?.code, 'CANCELLED');
    assert.equal(leaf.log.kills[0]?.data, { stopGraceMs: 200 }, 'the kill reason says it was the grace');
    await waitFor(() => caller.pendingReplies === 0 && worker.pendingReplies === 0, 3_000, 'the stream released');
  });

  s('stop - a stop reaches the nested streams of the handler (parent: ctx): both end cleanly with every item', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const { leaf, mid } = await spawnChain(worker, caller, ns, 'relay');
    const stop = new AbortController();
    const items: Item[] = [];
    const done = collect(caller.namespace(ns).client(StopMid).relay({}, { stopSignal: stop.signal }), items);
    await waitFor(() => items.length >= 3, 3_000, '3 tokens through two hops');
    stop.abort();
    const got = await within(done, 3_000, 'the stopped relay to complete');
    assert.equal(got.slice(-2), [{ finish: 'stopped' }, { finish: 'relayed' }], 'the leaf finished, then the relay');
    assertContiguous(got, 'relayed stream');
    for (const [name, log] of [
      ['hop 1', mid.log],
      ['hop 2', leaf.log],
    ] as const) {
      assert.is(log.stops, 1, `${name} saw the stop`);
      assert.is(log.finished, 1, `${name} returned on its own`);
      assert.equal(log.kills, [], `${name} was not killed`);
    }
  });

  s('stop - a kill reaches the nested streams of the handler at once', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const { leaf, mid } = await spawnChain(worker, caller, ns, 'relay');
    const kill = new AbortController();
    const items: Item[] = [];
    const done = collect(caller.namespace(ns).client(StopMid).relay({}, { signal: kill.signal }), items);
    await waitFor(() => items.length >= 3, 3_000, '3 tokens through two hops');
    const t0 = Date.now();
    kill.abort();
    assert.is((await rejection(done, 'the killed relay')).code, 'CANCELLED');
    await waitFor(() => mid.log.kills.length === 1 && leaf.log.kills.length === 1, 1_000, 'both hops to be killed');
    for (const log of [mid.log, leaf.log]) {
      assert.is(log.kills[0]?.code, 'CANCELLED');
      assert.ok((log.kills[0]?.at as number) - t0 < 500, 'killed within 500 ms');
      assert.is(log.stops, 0);
      assert.is(log.finished, 0);
    }
  });

  s('stop - a stopped unary call resolves with what the handler returns, across hops', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const { leaf, mid } = await spawnChain(worker, caller, ns, 'hold');
    const client = caller.namespace(ns).client(StopMid);
    const stop = new AbortController();
    const call = client.hold({ ms: 60_000 }, { stopSignal: stop.signal, timeout: 10_000 });
    await waitFor(() => leaf.log.started === 1, 3_000, 'the call to reach hop 2');
    stop.abort();
    assert.is(await within(call, 3_000, 'the stopped call to resolve'), 'mid:stopped');
    assert.is(leaf.log.stops, 1, 'hop 2 saw the stop');
    assert.is(mid.log.stops, 1, 'hop 1 saw the stop');
    assert.equal([...leaf.log.kills, ...mid.log.kills], [], 'nobody was killed');
  });

  s('stop - a unary handler ignoring the stop is killed after stopGraceMs: the call fails with CANCELLED', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const leaf = await spawnLeaf(worker, caller, ns);
    const stop = new AbortController();
    const call = caller.namespace(ns).client(StopLeaf).hold({ ms: 60_000, ignoreStop: true }, { stopSignal: stop.signal, stopGraceMs: 200, timeout: 10_000 });
    await waitFor(() => leaf.log.started === 1, 3_000, 'the call to start');
    const t0 = Date.now();
    stop.abort();
    const err = await rejection(call, 'the call past its grace');
    const took = Date.now() - t0;
    assert.is(err.code, 'CANCELLED', err.message);
    assert.ok(took >= 150 && took < 2_000, `failed ${took} ms after the stop (grace 200 ms)`);
    assert.is(leaf.log.kills[0]?.code, 'CANCELLED');
  });

  s('stop - a stream sent to the queue group is stopped once its first frame names the instance', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const leaf = await spawnLeaf(worker, caller, ns);
    const client = caller.namespace(ns).component('stopleaf').endpoint('gen').client<{ ignoreStop?: boolean }, Item>({ router: 'queue' });
    // Stopped at once: the stop waits for the start frame (the caller does not know the instance before).
    const got = await within(collect(client.stream({}, { stopSignal: AbortSignal.abort() }), []), 3_000, 'the queued stream');
    assert.equal(got.at(-1), { finish: 'stopped' });
    assert.ok(got.length <= 2, `${got.length} items`);
    const stop = new AbortController();
    const items: Item[] = [];
    const done = collect(client.stream({}, { stopSignal: stop.signal }), items);
    await waitFor(() => items.length >= 3, 3_000, '3 tokens');
    stop.abort();
    assert.equal((await within(done, 3_000, 'the stopped queue-routed stream')).at(-1), { finish: 'stopped' });
    assert.is(leaf.log.stops, 2);
    assert.equal(leaf.log.kills, []);
  });

  s('stop - a stream stopped before it starts runs its handler already stopped', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const leaf = await spawnLeaf(worker, caller, ns);
    const got = await within(collect(caller.namespace(ns).client(StopLeaf).gen({}, { stopSignal: AbortSignal.abort() }), []), 3_000, 'the stream');
    // The stop follows the request to the mailbox: a handler that yields at once may get one token out first.
    assert.equal(got.at(-1), { finish: 'stopped' });
    assert.ok(got.length <= 2, `${got.length} items`);
    assertContiguous(got, 'stream stopped before it started');
    assert.is(leaf.log.stops, 1);
    assert.equal(leaf.log.kills, []);
  });

  s('stop - a unary call stopped or killed while it waits in the mailbox: it starts stopped, or never starts', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const leaf = await spawnLeaf(worker, caller, ns, 1);
    const client = caller.namespace(ns).client(StopLeaf);
    const release = new AbortController();
    const blocker = client.hold({ ms: 60_000 }, { stopSignal: release.signal, timeout: 10_000 });
    await waitFor(() => leaf.log.started === 1, 3_000, 'the blocker to occupy the only slot');
    const stopped = new AbortController();
    const waitsStopped = client.hold({ ms: 60_000 }, { stopSignal: stopped.signal, timeout: 10_000 });
    const killed = new AbortController();
    const waitsKilled = client.hold({ ms: 60_000 }, { signal: killed.signal, timeout: 10_000 });
    const outOfGrace = new AbortController();
    const waitsOutOfGrace = client.hold({ ms: 60_000 }, { stopSignal: outOfGrace.signal, stopGraceMs: 50, timeout: 10_000 });
    await sleep(100); // the three reach the mailbox and wait there
    stopped.abort();
    killed.abort();
    outOfGrace.abort();
    assert.is((await rejection(waitsKilled, 'the killed call')).code, 'CANCELLED');
    await sleep(200); // past the 50 ms grace of the third, still waiting
    release.abort();
    assert.is(await within(blocker, 3_000, 'the blocker'), 'stopped');
    assert.is(await within(waitsStopped, 3_000, 'the call stopped while it waited'), 'stopped', 'it ran already stopped and answered at once');
    const late = await rejection(waitsOutOfGrace, 'the call whose grace ran out while it waited');
    assert.is(late.code, 'CANCELLED', late.message);
    assert.equal((late.data as { stopGraceMs?: number } | undefined)?.stopGraceMs, 50);
    assert.is(await within(client.hold({ ms: 1 }), 3_000, 'a call after them'), 'full');
    assert.is(leaf.log.started, 3, 'the blocker, the stopped call and the last one ran; the killed call and the one out of grace never started');
    assert.is(leaf.log.stops, 2, 'the blocker and the stopped call saw their stops');
    assert.equal(leaf.log.kills, [], 'nothing was killed while running');
  });

  s('stop - stopGraceMs out of range is BAD_REQUEST before anything is sent', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const leaf = await spawnLeaf(worker, caller, ns);
    const client = caller.namespace(ns).client(StopLeaf);
    for (const bad of [-1, 1.5, 600_001, Number.NaN]) {
      assert.is((await rejection(client.hold({ ms: 1 }, { stopGraceMs: bad }), `hold with ${bad}`)).code, 'BAD_REQUEST');
      assert.is((await rejection(collect(client.gen({}, { stopGraceMs: bad }), []), `gen with ${bad}`)).code, 'BAD_REQUEST');
    }
    assert.is(leaf.log.started, 0, 'nothing reached the worker');
  });
}
