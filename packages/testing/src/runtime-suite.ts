import { lastValueFrom, Observable, range, take, toArray } from 'rxjs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  component,
  type Context,
  endpoint,
  injectClient,
  injectConfig,
  injectInstance,
  type InstanceInfo,
  type OnStart,
  type OnStop,
  Runtime,
  type RuntimeOptions,
  TroupeError,
  type TypedClient,
} from '@troupe/runtime/internal';
import { addStreamCases } from './stream-cases';
import { addDrainCases } from './drain-cases';
import { addRoutingCases } from './routing-cases';
import { addSupervisionCases } from './supervision-cases';
import { addContextCases } from './context-cases';
import { addStopCases } from './stop-cases';
import { addLocalCases } from './local-cases';
import { addLocalStreamCases } from './local-stream-cases';
import { sleep, waitFor, within } from './wait';
import { captureLogger, type LogLine } from './capture-logger';

/** Two runtimes on one bus: `worker` hosts instances, `caller` calls them over the wire. */
export interface RuntimePair {
  worker: Runtime;
  caller: Runtime;
  /** Closes both runtimes (and whatever the factory opened). */
  close(): Promise<void>;
}

/** Opens a {@link RuntimePair} on one transport; `options` apply to both runtimes. */
export interface RuntimeFactory {
  open(options?: RuntimeOptions): Promise<RuntimePair>;
}

let nsCounter = 0;
const freshNamespace = (): string => `t${process.pid}x${Date.now().toString(36)}x${(nsCounter++).toString(36)}`;

@component('worker')
class Worker implements OnStop {
  calls = 0;
  running = 0;
  peakRunning = 0;
  slowCalls = 0;
  produced = 0;
  aborts: string[] = [];
  stopped = false;

  constructor(@injectInstance() readonly me: InstanceInfo) {}

  onStop(): void {
    this.stopped = true;
  }

  @endpoint() whoami(): string {
    this.calls++;
    return this.me.instanceId;
  }

  @endpoint() echo<T>(x: T): T {
    return x;
  }

  @endpoint() async slow(ms: number, ctx: Context): Promise<number> {
    this.slowCalls++;
    this.running++;
    this.peakRunning = Math.max(this.peakRunning, this.running);
    try {
      await sleep(ms, ctx.signal);
      return ms;
    } catch (err) {
      this.aborts.push((err as TroupeError).code ?? 'unknown');
      throw err;
    } finally {
      this.running--;
    }
  }

  @endpoint() remaining(_req: undefined, ctx: Context): number {
    return ctx.remainingMs();
  }

  @endpoint() async *count(req: { n: number; delayMs?: number }, ctx: Context): AsyncGenerator<number> {
    for (let i = 0; i < req.n; i++) {
      if (ctx.signal.aborted) return;
      if (req.delayMs) await sleep(req.delayMs);
      this.produced++;
      yield i;
    }
  }

  @endpoint() async *forever(_req: undefined, ctx: Context): AsyncGenerator<number> {
    ctx.signal.addEventListener('abort', () => this.aborts.push((ctx.signal.reason as TroupeError).code));
    let i = 0;
    while (!ctx.signal.aborted) {
      yield i++;
      await sleep(1);
    }
  }

  @endpoint() tokens(n: number): Observable<number> {
    return range(0, n);
  }

  @endpoint() boomSync(): never {
    throw new TroupeError('NOT_FOUND', 'sync boom', { data: { why: 'test' } });
  }

  @endpoint() async boomAsync(): Promise<never> {
    await sleep(1);
    throw new Error('async boom');
  }

  @endpoint() async *boomMid(): AsyncGenerator<number> {
    yield 1;
    yield 2;
    throw new Error('mid boom');
  }

  @endpoint() bigReply(n: number): Uint8Array {
    return new Uint8Array(n);
  }
}

@component('frontend')
class Frontend {
  constructor(
    @injectClient(Worker) private readonly worker: TypedClient<Worker>,
    @injectConfig() private readonly config: { prefix: string },
    readonly runtime: Runtime,
  ) {}

  @endpoint() async ask(x: string, ctx: Context): Promise<string> {
    return `${this.config.prefix}${await this.worker.echo(x, { parent: ctx })}`;
  }

  @endpoint() async nestedRemaining(_req: undefined, ctx: Context): Promise<[number, number]> {
    return [ctx.remainingMs(), await this.worker.remaining(undefined, { parent: ctx })];
  }
}

@component('broken')
class Broken implements OnStart {
  onStart(): void {
    throw new TroupeError('UNAVAILABLE', 'model weights missing');
  }
  @endpoint() ping(): string {
    return 'pong';
  }
}

async function expectError(p: Promise<unknown>, code: string, what: string): Promise<TroupeError> {
  try {
    await within(p, 10_000, what);
  } catch (err) {
    assert.instance(err, TroupeError, `${what}: expected a TroupeError, got ${String(err)}`);
    assert.is((err as TroupeError).code, code, `${what}: ${(err as Error).message}`);
    return err as TroupeError;
  }
  assert.unreachable(`${what}: expected ${code}, but it succeeded`);
  throw new Error('unreachable');
}

/**
 * The runtime conformance suite: spawn, unary, streams, cancellation,
 * deadlines, errors, direct addressing, mailbox bounds, lifecycle, DI.
 * Every transport must pass it unchanged.
 *
 * @example
 * runtimeSuite('nats', { open: async () => { ... } });
 */
export function runtimeSuite(name: string, factory: RuntimeFactory): void {
  const s = suite<{ pair?: RuntimePair }>(`runtime[${name}]`);

  s.after.each(async (ctx) => {
    await ctx.pair?.close();
    ctx.pair = undefined;
  });

  const open = async (ctx: { pair?: RuntimePair }, options?: RuntimeOptions): Promise<RuntimePair> => {
    ctx.pair = await factory.open(options);
    return ctx.pair;
  };

  s('spawn - each replica has a 16-hex instance id and answers on its mailbox', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const h = await worker.spawn(Worker, { namespace: ns, replicas: 3 });
    assert.is(h.instanceIds.length, 3);
    assert.is(new Set(h.instanceIds).size, 3);
    for (const id of h.instanceIds) {
      assert.match(id, /^[0-9a-f]{16}$/);
      const c = caller.namespace(ns).component('worker').endpoint('whoami').client<undefined, string>();
      assert.is(await c.direct(id).call(undefined), id, 'direct addressing reaches the named instance');
    }
  });

  s('unary - delivers each request to exactly one of N replicas', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const h = await worker.spawn(Worker, { namespace: ns, replicas: 3 });
    const client = caller.namespace(ns).client(Worker);
    const replies = await Promise.all(Array.from({ length: 90 }, () => client.whoami(undefined)));
    const handled = h.instanceIds.map((id) => h.instance(id).calls);
    assert.is(
      handled.reduce((a, b) => a + b, 0),
      90,
      `each request handled once: ${handled.join('+')}`,
    );
    for (const r of replies) assert.ok(h.instanceIds.includes(r));
    assert.ok(handled.filter((n) => n > 0).length >= 2, `the queue group spread load: ${handled.join(',')}`);
    assert.is(caller.pendingReplies, 0, 'no reply handler left behind');
  });

  s('stream - 10,000 items arrive complete and in order', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    await worker.spawn(Worker, { namespace: ns });
    const items = await within(lastValueFrom(caller.namespace(ns).client(Worker).count({ n: 10_000 }).pipe(toArray())), 15_000, 'the stream');
    assert.is(items.length, 10_000);
    for (let i = 0; i < items.length; i++) if (items[i] !== i) assert.unreachable(`item ${i} is ${items[i]}`);
    assert.is(caller.pendingReplies, 0);
  });

  s('stream - the worker never runs more than the credit window ahead', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const h = await worker.spawn(Worker, { namespace: ns });
    const w = h.instance(h.instanceIds[0]!);
    const window = 32;
    let received = 0;
    let worstLead = 0;
    await within(
      lastValueFrom(caller.namespace(ns).client(Worker).count({ n: 5_000 }, { window }), { defaultValue: -1 }).then(() => undefined),
      15_000,
      'the windowed stream',
    ).catch((e: unknown) => {
      throw e;
    });
    // Second pass observing the lead at every item.
    w.produced = 0;
    await within(
      new Promise<void>((resolve, reject) => {
        caller
          .namespace(ns)
          .client(Worker)
          .count({ n: 5_000 }, { window })
          .subscribe({
            next: () => {
              received++;
              worstLead = Math.max(worstLead, w.produced - received);
            },
            error: reject,
            complete: resolve,
          });
      }),
      15_000,
      'the observed stream',
    );
    assert.is(received, 5_000);
    assert.ok(worstLead <= window * 2, `the worker led the consumer by ${worstLead} items with a window of ${window}`);
  });

  s('stream - unsubscribing after k items aborts the worker handler', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const h = await worker.spawn(Worker, { namespace: ns });
    const w = h.instance(h.instanceIds[0]!);
    const got = await within(lastValueFrom(caller.namespace(ns).client(Worker).forever(undefined).pipe(take(5), toArray())), 5_000, '5 items');
    assert.equal(got, [0, 1, 2, 3, 4]);
    const t0 = Date.now();
    await waitFor(() => w.aborts.length > 0, 2_000, 'the worker handler to be aborted');
    assert.is(w.aborts[0], 'CANCELLED');
    assert.ok(Date.now() - t0 < 500, 'aborted within 500 ms');
    await waitFor(() => caller.pendingReplies === 0, 2_000, 'the caller to release the stream');
  });

  s('stream - an Observable endpoint streams; stream() of a unary endpoint yields one item', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    await worker.spawn(Worker, { namespace: ns });
    const client = caller.namespace(ns).client(Worker);
    assert.equal(
      await lastValueFrom(client.tokens(100).pipe(toArray())),
      Array.from({ length: 100 }, (_, i) => i),
    );
    const raw = caller.namespace(ns).component('worker').endpoint('echo').client<string, string>();
    assert.equal(await lastValueFrom(raw.stream('one').pipe(toArray())), ['one']);
    const streaming = caller.namespace(ns).component('worker').endpoint('count').client<{ n: number }, number>();
    const e = await expectError(streaming.call({ n: 3 }), 'BAD_REQUEST', 'call() of a streaming endpoint');
    assert.match(e.message, /stream\(\)/);
  });

  s('deadline - a call past its deadline fails with TIMEOUT at the deadline, not before, and the handler is aborted', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const h = await worker.spawn(Worker, { namespace: ns });
    const w = h.instance(h.instanceIds[0]!);
    const client = caller.namespace(ns).client(Worker);
    await client.echo('warm'); // discovery of the fresh namespace is not part of the budget measured below
    const t0 = performance.now();
    await expectError(client.slow(5_000, { timeout: 300 }), 'TIMEOUT', 'slow call');
    const elapsed = performance.now() - t0;
    // Never early (the deadline wheel rounds up to its tick, Date.now() has ms steps: 5 ms of slack). Late only by
    // how long this process was kept from running (a loaded shared machine); the deadline wheel's own precision
    // is proven on an injected clock (plane/deadline-wheel.test.ts). 4x the deadline still tells "at the deadline"
    // from "never" (the handler would answer after 5 s).
    assert.ok(elapsed >= 295 && elapsed < 1_200, `TIMEOUT after ${elapsed.toFixed(1)} ms for a 300 ms deadline`);
    await waitFor(() => w.aborts.includes('TIMEOUT'), 5_000, 'the handler to see its deadline');
  });

  s('deadline - the remaining budget travels with the request and to nested calls', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    await worker.spawn(Worker, { namespace: ns });
    await worker.spawn(Frontend, { namespace: ns, config: { prefix: '>' } });
    // The worker sees the budget minus what the trip spent, so at least the budget minus the whole call's time
    // (discovery of the fresh namespace included): a bound that holds however loaded the machine is (1 ms: rounding).
    let t0 = Date.now();
    const left = await caller.namespace(ns).client(Worker).remaining(undefined, { timeout: 2_000 });
    let spent = Date.now() - t0;
    assert.ok(left <= 2_000 && left >= 2_000 - spent - 1, `worker saw ${left} ms of a 2000 ms budget after a ${spent} ms call`);
    t0 = Date.now();
    const [outer, inner] = await caller.namespace(ns).client(Frontend).nestedRemaining(undefined, { timeout: 1_000 });
    spent = Date.now() - t0;
    assert.ok(outer <= 1_000 && outer >= 1_000 - spent - 1, `frontend saw ${outer} ms of 1000 after a ${spent} ms call`);
    assert.ok(inner <= outer, `the nested call got ${inner} ms, at most the parent's ${outer} ms`);
  });

  s('errors - NO_INSTANCES comes back at once when nothing listens', async (ctx) => {
    const { caller } = await open(ctx);
    const ns = freshNamespace();
    const t0 = Date.now();
    await expectError(caller.namespace(ns).component('nobody').endpoint('home').client().call({}, { timeout: 5_000 }), 'NO_INSTANCES', 'call');
    await expectError(lastValueFrom(caller.namespace(ns).component('nobody').endpoint('home').client().stream({})), 'NO_INSTANCES', 'stream');
    const elapsed = Date.now() - t0;
    // "At once" = far from the 5 s deadline (it includes the first discovery of a fresh namespace; on a loaded
    // 2-core machine that alone took ~500 ms): a timeout would take the whole 5 s.
    assert.ok(elapsed < 2_000, `NO_INSTANCES after ${elapsed} ms (deadline 5000)`);
  });

  s('errors - a handler that throws (sync, async, mid-stream) gives a typed error and the instance keeps serving', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    await worker.spawn(Worker, { namespace: ns });
    const client = caller.namespace(ns).client(Worker);
    const sync = await expectError(client.boomSync(undefined as never), 'NOT_FOUND', 'sync throw');
    assert.is(sync.message, 'sync boom');
    assert.equal(sync.data, { why: 'test' });
    const asyncErr = await expectError(client.boomAsync(undefined as never), 'INTERNAL', 'async throw');
    assert.is(asyncErr.message, 'async boom');
    const seen: number[] = [];
    const mid = await expectError(
      new Promise((resolve, reject) =>
        client.boomMid(undefined as never).subscribe({ next: (v) => seen.push(v), error: reject, complete: () => resolve(undefined) }),
      ),
      'INTERNAL',
      'mid-stream throw',
    );
    assert.is(mid.message, 'mid boom');
    assert.equal(seen, [1, 2], 'items before the error were delivered');
    assert.is(await client.echo('still serving'), 'still serving');
  });

  s('errors - a typo in an endpoint name is NOT_FOUND naming the endpoints that exist, not an outage (#18)', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const h = await worker.spawn(Worker, { namespace: ns });
    const comp = caller.namespace(ns).component('worker');
    await comp.endpoint('echo').client().waitForInstances(1, { timeout: 5_000 });
    const t0 = Date.now();
    const routed = await expectError(comp.endpoint('nope').client().call({}, { timeout: 10_000 }), 'NOT_FOUND', 'routed call');
    assert.is(routed.retryable, false);
    assert.match(routed.message, /has no endpoint "nope"/);
    assert.match(routed.message, /boomAsync.*echo.*whoami/, `names the endpoints: ${routed.message}`);
    assert.ok((routed.data as { endpoints: string[] }).endpoints.includes('slow'));
    await expectError(comp.endpoint('nope').client({ router: 'queue' }).call({}, { timeout: 10_000 }), 'NOT_FOUND', 'queue-group call');
    await expectError(comp.endpoint('nope').client().direct(h.instanceIds[0]!).call({}, { timeout: 10_000 }), 'NOT_FOUND', 'direct call');
    await expectError(lastValueFrom(comp.endpoint('nope').client().stream({}, { timeout: 10_000 })), 'NOT_FOUND', 'routed stream');
    await expectError(lastValueFrom(comp.endpoint('nope').client({ router: 'queue' }).stream({}, { timeout: 10_000 })), 'NOT_FOUND', 'queue-group stream');
    assert.ok(Date.now() - t0 < 5_000, `five NOT_FOUNDs took ${Date.now() - t0} ms (deadlines 10 s): at once`);
    const filtered = await expectError(
      comp
        .endpoint('echo')
        .client()
        .where(() => false)
        .call(1),
      'NO_INSTANCES',
      'an endpoint that exists, filtered out',
    );
    assert.ok(filtered.retryable, 'an endpoint that exists but has nobody to route to stays a retryable NO_INSTANCES');
    await h.stop();
    await expectError(comp.endpoint('echo').client().call(1), 'NO_INSTANCES', 'a component with no live instance is an outage');
  });

  s('close - calls and streams after runtime.close() fail UNAVAILABLE at once, naming the runtime (#18)', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    await worker.spawn(Worker, { namespace: ns });
    const client = caller.namespace(ns).client(Worker);
    assert.is(await client.echo(1), 1);
    await caller.close();
    const t0 = Date.now();
    const unary = await expectError(client.echo(2), 'UNAVAILABLE', 'call after close');
    assert.ok(unary.message.includes(`runtime ${caller.id} is closed`), unary.message);
    const stream = await expectError(lastValueFrom(client.count({ n: 1 })), 'UNAVAILABLE', 'stream after close');
    assert.ok(stream.message.includes(`runtime ${caller.id} is closed`), stream.message);
    const fresh = await expectError(caller.namespace(ns).component('worker').endpoint('echo').client().call(3), 'UNAVAILABLE', 'a client made after close');
    assert.match(fresh.message, /is closed: cannot call/);
    assert.ok(Date.now() - t0 < 200, `refused after ${Date.now() - t0} ms`);
    assert.throws(() => caller.watchInstances(ns), /is closed/);
    await expectError(caller.spawn(Worker, { namespace: ns }), 'UNAVAILABLE', 'spawn after close');
  });

  s('errors - a handler bug is logged on the worker with its request id, endpoint and own stack; a meant TroupeError only at debug (#18)', async (ctx) => {
    const lines: LogLine[] = [];
    const { worker, caller } = await open(ctx, { logger: captureLogger(lines), dev: true });
    const ns = freshNamespace();
    await worker.spawn(Worker, { namespace: ns });
    const client = caller.namespace(ns).client(Worker);
    const err = await expectError(client.boomAsync('secret-body' as never), 'INTERNAL', 'async throw');
    assert.match(err.stack ?? '', /--- remote ---[\s\S]*boomAsync/, `dev-mode remote stack is the handler's: ${err.stack}`);
    const bug = lines.find((l) => l.level === 'error' && l.endpoint === 'boomAsync');
    assert.ok(bug, `an error line for boomAsync: ${JSON.stringify(lines)}`);
    assert.is(bug.msg, 'handler threw');
    assert.is(bug.error, 'async boom');
    assert.ok(typeof bug.requestId === 'string' && bug.requestId.length > 0, 'names the request');
    assert.ok(typeof bug.instance === 'string', 'names the instance');
    assert.match(String(bug.stack), /boomAsync/, 'the handler frame is in the stack');
    await expectError(lastValueFrom(client.boomMid(undefined as never)), 'INTERNAL', 'mid-stream throw');
    assert.ok(
      lines.some((l) => l.level === 'error' && l.endpoint === 'boomMid' && /boomMid/.test(String(l.stack))),
      'a stream handler bug is logged too',
    );
    await expectError(client.boomSync(undefined as never), 'NOT_FOUND', 'a meant TroupeError');
    assert.ok(!lines.some((l) => l.level !== 'debug' && l.endpoint === 'boomSync'), 'a meant TroupeError is not an error line');
    assert.ok(
      lines.some((l) => l.level === 'debug' && l.endpoint === 'boomSync' && l.code === 'NOT_FOUND'),
      'it is a debug line',
    );
    assert.ok(!JSON.stringify(lines).includes('secret-body'), 'the request body is never logged');
  });

  s('errors - oversized request and reply fail at once with PAYLOAD_TOO_LARGE', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    await worker.spawn(Worker, { namespace: ns });
    const max = caller.bus.maxPayload;
    const client = caller.namespace(ns).client(Worker);
    await client.echo('warm'); // discovery of the fresh namespace is not part of what is measured
    const t0 = Date.now();
    await expectError(client.echo(new Uint8Array(max + 10), { timeout: 10_000 }), 'PAYLOAD_TOO_LARGE', 'oversized request');
    await expectError(client.bigReply(max + 10, { timeout: 10_000 }), 'PAYLOAD_TOO_LARGE', 'oversized reply');
    const elapsed = Date.now() - t0;
    assert.ok(elapsed < 3_000, `both failed after ${elapsed} ms: at once, not as a timeout (deadlines 10 s)`);
    assert.is(((await client.echo(new Uint8Array(1000))) as Uint8Array).length, 1000);
  });

  s('errors - garbage bytes on an endpoint subject get BAD_REQUEST and the instance keeps serving', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    await worker.spawn(Worker, { namespace: ns });
    for (const garbage of [new Uint8Array([0xc1]), new Uint8Array([0x92, 0x01]), new Uint8Array([0xdd, 0xff, 0xff, 0xff, 0xff])]) {
      const reply = await caller.bus.request(`${ns}.worker.echo`, garbage, { timeoutMs: 2_000 });
      assert.is(reply.header('Troupe-Error'), 'BAD_REQUEST');
    }
    caller.bus.publish(`${ns}.worker.echo`, new Uint8Array([0xc1])); // no reply subject: dropped, logged
    assert.is(await caller.namespace(ns).client(Worker).echo(7), 7);
  });

  s('errors - invalid names and options are refused before anything is sent', async (ctx) => {
    const { worker, caller } = await open(ctx);
    assert.throws(() => caller.namespace('a.b'), /invalid namespace name/);
    assert.throws(() => caller.namespace('ok').component('*'), /invalid component name/);
    assert.throws(() => caller.namespace('ok').component('c').endpoint('>'), /invalid endpoint name/);
    assert.throws(() => caller.namespace('ok').component('c').endpoint('e').client().direct('nothex'), /instance id/);
    await expectError(worker.spawn(Worker, { namespace: 'bad name' }), 'BAD_REQUEST', 'spawn in a bad namespace');
    await expectError(worker.spawn(Worker, { namespace: 'ok', replicas: 0 }), 'BAD_REQUEST', 'spawn 0 replicas');
    class NotAComponent {}
    const e = await expectError(worker.spawn(NotAComponent, { namespace: 'ok' }), 'BAD_REQUEST', 'spawn a plain class');
    assert.match(e.message, /not a component/);
    await expectError(caller.namespace('ok').client(Worker).echo(1, { timeout: -5 }), 'BAD_REQUEST', 'negative timeout');
  });

  s('mailbox - past its bound an instance answers OVERLOADED at once', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const h = await worker.spawn(Worker, { namespace: ns, concurrency: 1, mailboxCapacity: 2 });
    const client = caller.namespace(ns).client(Worker);
    const t0 = Date.now();
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => client.slow(300)));
    const overloaded = results.filter((r) => r.status === 'rejected' && (r.reason as TroupeError).code === 'OVERLOADED');
    const ok = results.filter((r) => r.status === 'fulfilled');
    assert.is(ok.length, 3, '1 running + 2 waiting succeed');
    assert.is(overloaded.length, 3, 'the rest are refused');
    assert.ok(Date.now() - t0 < 2_000);
    assert.is(h.instance(h.instanceIds[0]!).peakRunning, 1, 'concurrency 1 runs one message at a time');
  });

  s('mailbox - a request whose deadline passed while it waited is answered TIMEOUT and never run', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const h = await worker.spawn(Worker, { namespace: ns, concurrency: 1 });
    const w = h.instance(h.instanceIds[0]!);
    const client = caller.namespace(ns).client(Worker);
    const first = client.slow(400, { timeout: 5_000 });
    await waitFor(() => w.running === 1, 2_000, 'the first request to run');
    await expectError(client.slow(10, { timeout: 150 }), 'TIMEOUT', 'the queued request');
    // Queued behind the expired one in the same FIFO mailbox: once it is answered, the expired one was dequeued.
    const behind = client.whoami(undefined, { timeout: 5_000 });
    assert.is(await within(first, 5_000, 'the first request'), 400);
    await within(behind, 5_000, 'the request queued behind the expired one');
    assert.is(w.slowCalls, 1, 'the expired request was not run');
  });

  s('mailbox - concurrency N runs N at once', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const h = await worker.spawn(Worker, { namespace: ns, concurrency: 4 });
    const client = caller.namespace(ns).client(Worker);
    await Promise.all(Array.from({ length: 8 }, () => client.slow(100)));
    assert.is(h.instance(h.instanceIds[0]!).peakRunning, 4);
  });

  s('lifecycle - a start hook that throws fails the spawn with its code, naming each replica and the error', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const e = await expectError(worker.spawn(Broken, { namespace: ns, replicas: 2 }), 'UNAVAILABLE', 'spawn');
    assert.is(e.message, 'spawn of broken failed: 2 of 2 replicas did not start (replica 0: model weights missing; replica 1: model weights missing)');
    assert.equal(
      (e.data as { failed: Array<{ replica: number }> }).failed.map((f) => f.replica),
      [0, 1],
    );
    await expectError(
      caller
        .namespace(ns)
        .client(Broken)
        .ping(undefined as never),
      'NO_INSTANCES',
      'nothing serves after a failed spawn',
    );
  });

  s('lifecycle - stop() runs the stop hook and the instance stops serving', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const h = await worker.spawn(Worker, { namespace: ns });
    const w = h.instance(h.instanceIds[0]!);
    assert.is(await caller.namespace(ns).client(Worker).echo(1), 1);
    await h.stop();
    assert.ok(w.stopped, 'onStop ran');
    await expectError(caller.namespace(ns).client(Worker).echo(1), 'NO_INSTANCES', 'after stop');
  });

  s('close - runtime.close() waits for an in-flight stream to finish', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    await worker.spawn(Worker, { namespace: ns });
    const items: number[] = [];
    let completed = false;
    const done = new Promise<void>((resolve, reject) =>
      caller
        .namespace(ns)
        .client(Worker)
        .count({ n: 20, delayMs: 10 })
        .subscribe({
          next: (v) => items.push(v),
          error: reject,
          complete: () => {
            completed = true;
            resolve();
          },
        }),
    );
    await waitFor(() => items.length > 0, 2_000, 'the first item');
    await within(worker.close(), 5_000, 'worker runtime close');
    await within(done, 2_000, 'the stream to complete');
    assert.ok(completed);
    assert.is(items.length, 20, 'every item arrived');
  });

  s('close - calls still waiting when the caller runtime closes fail UNAVAILABLE at once', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    await worker.spawn(Worker, { namespace: ns, concurrency: 4 });
    const client = caller.namespace(ns).client(Worker);
    const unary = client.slow(5_000, { timeout: 20_000 }).then(
      () => undefined,
      (e: unknown) => e as TroupeError,
    );
    const got: number[] = [];
    const stream = new Promise<TroupeError | undefined>((resolve) =>
      client
        .forever(undefined, { timeout: 20_000 })
        .subscribe({ next: (v) => got.push(v), error: (e) => resolve(e as TroupeError), complete: () => resolve(undefined) }),
    );
    await waitFor(() => got.length > 0, 2_000, 'the stream to start');
    const t0 = Date.now();
    await within(caller.close(), 5_000, 'the caller runtime to close');
    const [u, st] = await within(Promise.all([unary, stream]), 2_000, 'the waiting calls to end');
    assert.is(u?.code, 'UNAVAILABLE', `unary: ${u?.message}`);
    assert.is(st?.code, 'UNAVAILABLE', `stream: ${st?.message}`);
    assert.ok(Date.now() - t0 < 3_000, 'at once, not at their 20 s deadlines');
  });

  s('di - the constructor receives config, the runtime and a client of another component', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    await worker.spawn(Worker, { namespace: ns });
    const h = await worker.spawn(Frontend, { namespace: ns, config: { prefix: '>>' } });
    assert.is(h.instance(h.instanceIds[0]!).runtime, worker);
    assert.is(await caller.namespace(ns).client(Frontend).ask('hi'), '>>hi');
  });

  s('discovery - instances() lists a namespace, a component and an endpoint; watchInstances() follows a stop', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const w = await worker.spawn(Worker, { namespace: ns, replicas: 2, properties: { model: 'm1' } });
    const f = await worker.spawn(Frontend, { namespace: ns, config: { prefix: '' } });
    const all = await within(caller.instances(ns), 5_000, 'the namespace listing');
    const endpointsOfWorker = all.filter((r) => r.component === 'worker');
    assert.is(new Set(endpointsOfWorker.map((r) => r.instanceId)).size, 2, 'both worker instances listed');
    assert.ok(endpointsOfWorker.every((r) => r.properties.model === 'm1' && r.namespace === ns && typeof r.pid === 'number'));
    assert.equal([...new Set(all.filter((r) => r.component === 'frontend').map((r) => r.instanceId))], f.instanceIds);
    const echoes = await caller.instances(`${ns}.worker.echo`);
    assert.equal(echoes.map((r) => r.instanceId).sort(), [...w.instanceIds].sort());
    assert.ok((await caller.instances(`${ns}.frontend`)).every((r) => r.component === 'frontend'));
    assert.equal(await caller.instances(`${ns}x`), [], 'an unknown namespace lists nothing');
    assert.ok(
      (await caller.instances()).some((r) => r.namespace === ns),
      'the unscoped listing sees every namespace',
    );
    assert.match((await expectError(caller.instances('a.b.c.d'), 'BAD_REQUEST', 'a 4-token scope')).message, /listing scope/);
    assert.match((await expectError(caller.instances('a.*'), 'BAD_REQUEST', 'a wildcard scope')).message, /invalid component name/);
    const lists: number[] = [];
    const sub = caller.watchInstances(`${ns}.worker.echo`).subscribe((l) => lists.push(l.length));
    try {
      await waitFor(() => lists.at(-1) === 2, 5_000, 'the watch to list 2');
      await w.stop();
      await waitFor(() => lists.at(-1) === 0, 5_000, 'the watch to drop the stopped instances');
    } finally {
      sub.unsubscribe();
    }
  });

  s('cancel - an AbortSignal cancels a call and aborts the remote handler', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const h = await worker.spawn(Worker, { namespace: ns });
    const w = h.instance(h.instanceIds[0]!);
    const ac = new AbortController();
    const p = caller.namespace(ns).client(Worker).forever(undefined, { signal: ac.signal });
    const got: number[] = [];
    const done = new Promise<unknown>((resolve) => p.subscribe({ next: (v) => got.push(v), error: resolve, complete: () => resolve('completed') }));
    await waitFor(() => got.length >= 3, 2_000, '3 items');
    ac.abort();
    const err = (await within(done, 2_000, 'the stream to end')) as TroupeError;
    assert.is(err.code, 'CANCELLED');
    await waitFor(() => w.aborts.length > 0, 1_000, 'the worker to see the cancel');
    await expectError(caller.namespace(ns).client(Worker).echo(1, { signal: AbortSignal.abort() }), 'CANCELLED', 'pre-aborted call');
  });

  addStreamCases(s, open);
  addDrainCases(s, open);
  addRoutingCases(s, open);
  addSupervisionCases(s, open);
  addContextCases(s, open);
  addStopCases(s, open);
  addLocalCases(s, open);
  addLocalStreamCases(s, open);

  s.run();
}
