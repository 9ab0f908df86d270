import type { Test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  component,
  type Context,
  endpoint,
  injectClient,
  injectInstance,
  type InstanceInfo,
  type Logger,
  type Metadata,
  MsgpackCodec,
  type Runtime,
  type RuntimeOptions,
  type TraceContext,
  TroupeError,
  type TypedClient,
} from '@troupe/runtime/internal';
import { context as otelContext, trace as otelTrace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { lastValueFrom, toArray } from 'rxjs';
import { sleep, waitFor, within } from './wait';
import { rejection } from './rejection';

/**
 * Request-context cases of the runtime conformance suite: what travels with a
 * request through nested calls made with `parent: ctx` — the deadline and
 * the cancel (told apart at every hop), the W3C trace context (with and
 * without an OpenTelemetry tracer provider), the request metadata, and the
 * request's logger.
 */

interface AbortLog {
  aborts: { code: string; isTroupeError: boolean; at: number }[];
}

function recordAborts(log: AbortLog, ctx: Context): void {
  ctx.signal.addEventListener(
    'abort',
    () => {
      const r: unknown = ctx.signal.reason;
      log.aborts.push({ code: (r as TroupeError)?.code ?? 'unknown', isTroupeError: r instanceof TroupeError, at: Date.now() });
    },
    { once: true },
  );
}

@component('ctxleaf')
class Leaf implements AbortLog {
  aborts: AbortLog['aborts'] = [];
  started = 0;
  constructor(@injectInstance() readonly me: InstanceInfo) {}

  @endpoint() async hold(ms: number, ctx: Context): Promise<number> {
    recordAborts(this, ctx);
    this.started++;
    await sleep(ms, ctx.signal);
    return ms;
  }

  @endpoint() async *holdStream(ms: number, ctx: Context): AsyncGenerator<number> {
    recordAborts(this, ctx);
    await sleep(ms, ctx.signal);
    yield ms;
  }
}

@component('ctxmid')
class Mid implements AbortLog {
  aborts: AbortLog['aborts'] = [];
  /** Codes of the nested call's errors. */
  failures: string[] = [];
  constructor(@injectClient(Leaf) private readonly leaf: TypedClient<Leaf>) {}

  @endpoint() async hold(ms: number, ctx: Context): Promise<number> {
    recordAborts(this, ctx);
    try {
      return await this.leaf.hold(ms, { parent: ctx });
    } catch (err) {
      this.failures.push((err as TroupeError).code);
      throw err;
    }
  }
}

/** What a hop saw of its request. */
interface Seen {
  requestId: string;
  trace: TraceContext | null;
  metadata: Metadata;
}

function seen(ctx: Context): Seen {
  return { requestId: ctx.requestId, trace: ctx.trace ? { ...ctx.trace } : null, metadata: { ...ctx.metadata } };
}

@component('tracehop3')
class Hop3 {
  @endpoint() peek(_req: unknown, ctx: Context): Seen[] {
    return [seen(ctx)];
  }

  @endpoint() async *peekStream(_req: unknown, ctx: Context): AsyncGenerator<Seen> {
    yield seen(ctx);
  }

  @endpoint() log(msg: string, ctx: Context): string {
    ctx.logger.info(msg, { extra: 1 });
    return ctx.requestId;
  }

  @endpoint() quiet(): string {
    return 'ok';
  }
}

@component('tracehop2')
class Hop2 {
  constructor(@injectClient(Hop3) private readonly next: TypedClient<Hop3>) {}

  @endpoint() async chain(_req: unknown, ctx: Context): Promise<Seen[]> {
    // A hop may add metadata of its own; the caller's keys travel on.
    return [seen(ctx), ...(await this.next.peek(undefined, { parent: ctx, metadata: { hop2: 'yes' } }))];
  }

  @endpoint() async *chainStream(_req: unknown, ctx: Context): AsyncGenerator<Seen> {
    yield seen(ctx);
    yield* this.next.peekStream(undefined, { parent: ctx, metadata: { hop2: 'yes' } });
  }
}

@component('tracehop1')
class Hop1 {
  constructor(@injectClient(Hop2) private readonly next: TypedClient<Hop2>) {}

  @endpoint() async chain(_req: unknown, ctx: Context): Promise<Seen[]> {
    return [seen(ctx), ...(await this.next.chain(undefined, { parent: ctx }))];
  }

  @endpoint() async *chainStream(_req: unknown, ctx: Context): AsyncGenerator<Seen> {
    yield seen(ctx);
    yield* this.next.chainStream(undefined, { parent: ctx });
  }
}

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN_ID = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE_ID}-${SPAN_ID}-01`;

/** An in-memory OpenTelemetry SDK registered globally for one test; `stop()` unregisters it. */
function registerTracing(): { exporter: InMemorySpanExporter; stop(): Promise<void> } {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const contextManager = new AsyncLocalStorageContextManager().enable();
  otelContext.setGlobalContextManager(contextManager);
  otelTrace.setGlobalTracerProvider(provider);
  return {
    exporter,
    stop: async () => {
      otelTrace.disable();
      otelContext.disable();
      await provider.shutdown();
    },
  };
}

/** A logger that keeps every line with its fields, and counts the child loggers made for requests. */
function capturingLogger(): Logger & { lines: Record<string, unknown>[]; requestChildren: () => number } {
  const lines: Record<string, unknown>[] = [];
  let requestChildren = 0;
  const make = (fields: Record<string, unknown>): Logger => {
    const write = (level: string) => (msg: string, extra?: Record<string, unknown>) => void lines.push({ level, msg, ...fields, ...extra });
    return {
      debug: write('debug'),
      info: write('info'),
      warn: write('warn'),
      error: write('error'),
      child: (f) => {
        if ('requestId' in f) requestChildren++;
        return make({ ...fields, ...f });
      },
    };
  };
  return Object.assign(make({}), { lines, requestChildren: () => requestChildren });
}

interface Pair {
  worker: Runtime;
  caller: Runtime;
}

let nsCounter = 0;
const freshNamespace = (): string => `cx${process.pid}x${Date.now().toString(36)}x${(nsCounter++).toString(36)}`;

/** Adds the request-context cases to the runtime suite `s`. */
export function addContextCases<C extends { pair?: unknown }>(s: Test<C>, open: (ctx: C, options?: RuntimeOptions) => Promise<Pair>): void {
  s("deadline - a budget beyond a timer's reach (2^31 ms and more, or Infinity) does not fire at once", async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const hl = await worker.spawn(Leaf, { namespace: ns });
    const leaf = hl.instance(hl.instanceIds[0] as string);
    const client = caller.namespace(ns).client(Leaf);
    assert.is(await within(client.hold(1), 10_000, 'the warm-up call'), 1);
    // Node fires a timer of more than 2^31 - 1 ms after 1 ms: each deadline timer must wait in steps instead.
    for (const timeout of [2 ** 31 + 5_000, 1e12, Number.POSITIVE_INFINITY]) {
      assert.is(await within(client.hold(50, { timeout }), 10_000, `a unary call with timeout ${timeout}`), 50);
      const items = await within(lastValueFrom(client.holdStream(50, { timeout }).pipe(toArray())), 10_000, `a stream with timeout ${timeout}`);
      assert.equal(items, [50], `the stream's items with timeout ${timeout}`);
    }
    assert.equal(leaf.aborts, [], 'no handler saw its deadline pass');
  });

  s('deadline - a unary deadline reads as TIMEOUT at every hop, a cancel as CANCELLED (issue #18)', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const hl = await worker.spawn(Leaf, { namespace: ns });
    const hm = await worker.spawn(Mid, { namespace: ns });
    const leaf = hl.instance(hl.instanceIds[0] as string);
    const mid = hm.instance(hm.instanceIds[0] as string);
    const client = caller.namespace(ns).client(Mid);
    // Warm up: every hop's discovery view is synced before the 300 ms budget starts counting.
    assert.is(await within(client.hold(1), 10_000, 'the warm-up call'), 1);
    leaf.started = 0;
    leaf.aborts.length = 0;
    mid.aborts.length = 0;

    const timedOut = await rejection(client.hold(60_000, { timeout: 300 }), 'the timed-out call');
    assert.is(timedOut.code, 'TIMEOUT', timedOut.message);
    // Both deadlines pass at about the same moment: hop 2 is aborted with TIMEOUT; hop 1 is aborted
    // with TIMEOUT or (when hop 2's deadline fired first) sees its nested call fail with TIMEOUT.
    await waitFor(() => leaf.aborts.length === 1, 3_000, 'hop 2 to see the deadline');
    assert.is(leaf.aborts[0]?.code, 'TIMEOUT', 'hop 2: ctx.signal.reason of a deadline');
    assert.ok(leaf.aborts[0]?.isTroupeError, 'hop 2: the reason is a TroupeError');
    await waitFor(() => mid.aborts.length === 1 || mid.failures.length === 1, 3_000, 'hop 1 to see the deadline');
    assert.is(
      mid.aborts[0]?.code ?? mid.failures[0],
      'TIMEOUT',
      `hop 1 reads the deadline as a deadline: ${JSON.stringify({ aborts: mid.aborts, failures: mid.failures })}`,
    );
    mid.aborts.length = 0;
    mid.failures.length = 0;
    leaf.aborts.length = 0;

    const ac = new AbortController();
    const call = client.hold(60_000, { timeout: 10_000, signal: ac.signal });
    await waitFor(() => leaf.started === 2, 5_000, 'the second call to reach hop 2');
    const t0 = Date.now();
    ac.abort();
    const cancelled = await rejection(call, 'the cancelled call');
    assert.is(cancelled.code, 'CANCELLED', cancelled.message);
    await waitFor(() => leaf.aborts.length === 1 && mid.aborts.length === 1, 3_000, 'both handlers to see the cancel');
    for (const [name, log] of [
      ['hop 1', mid],
      ['hop 2', leaf],
    ] as const) {
      assert.is(log.aborts[0]?.code, 'CANCELLED', `${name}: ctx.signal.reason of a cancel`);
      assert.ok(log.aborts[0]?.isTroupeError, `${name}: the reason is a TroupeError`);
      assert.ok((log.aborts[0]?.at as number) - t0 < 500, `${name} aborted within 500 ms of the cancel`);
    }
    await waitFor(() => caller.pendingReplies === 0 && worker.pendingReplies === 0, 3_000, 'every call released');
  });

  const codec = new MsgpackCodec();

  s('trace - a traceparent from a plain NATS request is honoured and travels three hops with new parent span ids', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    await worker.spawn(Hop3, { namespace: ns });
    await worker.spawn(Hop2, { namespace: ns });
    await worker.spawn(Hop1, { namespace: ns });
    await caller.namespace(ns).component('tracehop1').endpoint('chain').client().waitForInstances(1, { timeout: 5_000 });
    const reply = await caller.bus.request(`${ns}.tracehop1.chain`, codec.encode(null), {
      timeoutMs: 5_000,
      headers: { traceparent: TRACEPARENT, tracestate: 'vendor=x', 'Troupe-Meta': 'tenant=a&note=caf%C3%A9' },
    });
    assert.is(reply.header('Troupe-Error'), undefined, 'the chain answered');
    const hops = codec.decode(reply.data) as Seen[];
    assert.is(hops.length, 3);
    let parent = SPAN_ID;
    for (const [i, h] of hops.entries()) {
      assert.ok(h.trace, `hop ${i + 1} sees a trace context`);
      assert.is(h.trace?.traceId, TRACE_ID, `hop ${i + 1} keeps the trace id`);
      assert.is(h.trace?.parentSpanId, parent, `hop ${i + 1}'s parent is the span of the hop before`);
      assert.match(h.trace?.spanId ?? '', /^[0-9a-f]{16}$/);
      assert.is.not(h.trace?.spanId, parent, `hop ${i + 1} has a span id of its own`);
      assert.is(h.trace?.flags, 1);
      assert.is(h.trace?.tracestate, 'vendor=x');
      parent = h.trace?.spanId as string;
    }
    assert.equal(hops[2]?.metadata, { tenant: 'a', note: 'café', hop2: 'yes' }, 'the metadata (and what hop 2 added) reaches hop 3 intact');
    assert.is(hops[1]?.requestId, hops[0]?.requestId, 'the request id travels too');
    assert.is(hops[2]?.requestId, hops[0]?.requestId);
  });

  s('metadata - set by the first caller, it reaches the third hop intact (unary and stream); without it nothing is traced', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    await worker.spawn(Hop3, { namespace: ns });
    await worker.spawn(Hop2, { namespace: ns });
    await worker.spawn(Hop1, { namespace: ns });
    const client = caller.namespace(ns).client(Hop1);
    const metadata = { tenant: 'a', priority: 'high', route: 'gpu=h100&zone=eu/1' };
    const unary = await within(client.chain(undefined, { metadata }), 5_000, 'the unary chain');
    const stream = await within(lastValueFrom(client.chainStream(undefined, { metadata }).pipe(toArray())), 5_000, 'the stream chain');
    for (const [kind, hops] of [
      ['unary', unary],
      ['stream', stream],
    ] as const) {
      assert.is(hops.length, 3, kind);
      assert.equal(hops[0]?.metadata, metadata, `${kind}: hop 1`);
      assert.equal(hops[1]?.metadata, metadata, `${kind}: hop 2`);
      assert.equal(hops[2]?.metadata, { ...metadata, hop2: 'yes' }, `${kind}: hop 3`);
      for (const h of hops) assert.is(h.trace, null, `${kind}: no tracer and no traceparent: not traced`);
    }
    const plain = await client.chain(undefined);
    assert.equal(plain[0]?.metadata, {}, 'no metadata: an empty map');
  });

  s('metadata - past its bounds a call fails with BAD_REQUEST before anything is sent', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const h = await worker.spawn(Hop3, { namespace: ns });
    const client = caller.namespace(ns).client(Hop3);
    const many = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v']));
    const cases: [string, unknown][] = [
      ['17 entries', many],
      ['a 2 KB value', { big: 'x'.repeat(2048) }],
      ['a bad key', { 'no spaces': 'v' }],
      ['a number value', { n: 1 }],
    ];
    for (const [what, metadata] of cases) {
      const e = await rejection(client.peek(undefined, { metadata: metadata as Metadata }), what);
      assert.is(e.code, 'BAD_REQUEST', `${what}: ${e.message}`);
      const st = await rejection(lastValueFrom(client.peekStream(undefined, { metadata: metadata as Metadata })), `${what} (stream)`);
      assert.is(st.code, 'BAD_REQUEST', `${what} (stream): ${st.message}`);
    }
    const raw = await caller.bus.request(`${ns}.tracehop3.peek`, codec.encode(null), { timeoutMs: 5_000, headers: { 'Troupe-Meta': `a=${'x'.repeat(2000)}` } });
    assert.is(raw.header('Troupe-Error'), 'BAD_REQUEST', 'an oversized metadata header from a plain NATS client');
    assert.ok(h.instanceIds.length === 1);
  });

  s('trace - with a tracer provider, a three-hop chain is one trace of linked client and server spans (unary and stream)', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    await worker.spawn(Hop3, { namespace: ns });
    await worker.spawn(Hop2, { namespace: ns });
    await worker.spawn(Hop1, { namespace: ns });
    const client = caller.namespace(ns).client(Hop1);
    await client.chain(undefined); // discovery settled before spans are counted
    const otel = registerTracing();
    try {
      for (const kind of ['unary', 'stream'] as const) {
        otel.exporter.reset();
        const tracer = otelTrace.getTracer('test');
        const { rootTraceId, rootSpanId, hops } = await tracer.startActiveSpan('root', async (root) => {
          const hops =
            kind === 'unary'
              ? await within(client.chain(undefined, { metadata: { tenant: 'a' } }), 5_000, 'the traced unary chain')
              : await within(lastValueFrom(client.chainStream(undefined, { metadata: { tenant: 'a' } }).pipe(toArray())), 5_000, 'the traced stream chain');
          root.end();
          return { rootTraceId: root.spanContext().traceId, rootSpanId: root.spanContext().spanId, hops };
        });
        await waitFor(
          () => otel.exporter.getFinishedSpans().filter((x) => x.spanContext().traceId === rootTraceId).length >= 7,
          2_000,
          `7 finished spans of the ${kind} trace`,
        );
        const spans = otel.exporter.getFinishedSpans();
        const byId = new Map<string, ReadableSpan>(spans.map((x) => [x.spanContext().spanId, x]));
        assert.ok(
          spans.every((x) => x.spanContext().traceId === rootTraceId),
          `${kind}: every span is in the caller's trace`,
        );
        const clients = spans.filter((x) => x.kind === 2 /* CLIENT */);
        const servers = spans.filter((x) => x.kind === 1 /* SERVER */);
        assert.is(clients.length, 3, `${kind}: one client span per call`);
        assert.is(servers.length, 3, `${kind}: one server span per handled request`);
        // Walk down from the root: root → client(hop1) → server(hop1) → client(hop2) → server(hop2) → client(hop3) → server(hop3).
        let parent = rootSpanId;
        for (const [i, comp] of ['tracehop1', 'tracehop2', 'tracehop3'].entries()) {
          const c = clients.find((x) => x.parentSpanContext?.spanId === parent);
          assert.ok(c, `${kind}: the client span of hop ${i + 1} is the child of ${byId.get(parent)?.name ?? 'the root'}`);
          assert.match(c?.name ?? '', new RegExp(`\\.${comp}\\.`));
          const sv = servers.find((x) => x.parentSpanContext?.spanId === c?.spanContext().spanId);
          assert.ok(sv, `${kind}: the server span of hop ${i + 1} is the child of its client span`);
          assert.is(hops[i]?.trace?.spanId, sv?.spanContext().spanId, `${kind}: hop ${i + 1}'s ctx.trace names its server span`);
          assert.is(hops[i]?.trace?.traceId, rootTraceId);
          parent = sv?.spanContext().spanId as string;
        }
        assert.equal(hops[2]?.metadata, { tenant: 'a', hop2: 'yes' }, `${kind}: metadata at hop 3`);
      }

      // A plain NATS request with a traceparent: the server span continues the sent trace.
      otel.exporter.reset();
      const reply = await caller.bus.request(`${ns}.tracehop3.peek`, codec.encode(null), { timeoutMs: 5_000, headers: { traceparent: TRACEPARENT } });
      const [hop] = codec.decode(reply.data) as Seen[];
      await waitFor(() => otel.exporter.getFinishedSpans().length >= 1, 2_000, 'the server span of the plain request');
      const server = otel.exporter.getFinishedSpans().find((x) => x.kind === 1);
      assert.is(server?.spanContext().traceId, TRACE_ID, "the server span's trace id is the sent one");
      assert.is(server?.parentSpanContext?.spanId, SPAN_ID, "the server span's parent is the sent span");
      assert.is(hop?.trace?.traceId, TRACE_ID, "the handler's ctx shows the sent trace");
      assert.is(hop?.trace?.parentSpanId, SPAN_ID);
      assert.is(hop?.trace?.spanId, server?.spanContext().spanId);

      // A failed call's span is marked failed with the code.
      otel.exporter.reset();
      const nobody = await rejection(caller.namespace(ns).component('tracehop3').endpoint('nothere').client().call(undefined), 'a call nobody serves');
      assert.ok(['NO_INSTANCES', 'NOT_FOUND'].includes(nobody.code), nobody.message);
      await waitFor(() => otel.exporter.getFinishedSpans().some((x) => x.kind === 2), 2_000, 'the failed client span');
      const failedSpan = otel.exporter.getFinishedSpans().find((x) => x.kind === 2);
      assert.is(failedSpan?.status.code, 2 /* ERROR */, 'the client span is marked failed');
      assert.is(failedSpan?.attributes['troupe.error.code'], nobody.code, 'with the code the caller got');
    } finally {
      await otel.stop();
    }
  });

  s('logs - ctx.logger lines carry the request id and the trace id; a handler that never logs makes no child logger', async (ctx) => {
    const logger = capturingLogger();
    const { worker, caller } = await open(ctx, { logger });
    const ns = freshNamespace();
    await worker.spawn(Hop3, { namespace: ns });
    await caller.namespace(ns).component('tracehop3').endpoint('log').client().waitForInstances(1, { timeout: 5_000 });
    const reply = await caller.bus.request(`${ns}.tracehop3.log`, codec.encode('hello from the handler'), {
      timeoutMs: 5_000,
      headers: { traceparent: TRACEPARENT },
    });
    const requestId = codec.decode(reply.data) as string;
    const line = logger.lines.find((l) => l.msg === 'hello from the handler');
    assert.ok(line, 'the handler logged through ctx.logger');
    assert.is(line?.requestId, requestId, 'the line carries the request id');
    assert.is(line?.traceId, TRACE_ID, 'the line carries the trace id');
    assert.is(line?.endpoint, 'log');
    assert.is(line?.namespace, ns);
    assert.is(line?.extra, 1);
    const before = logger.requestChildren();
    const client = caller.namespace(ns).client(Hop3);
    for (let i = 0; i < 20; i++) await client.quiet(undefined);
    assert.is(logger.requestChildren(), before, 'no child logger for requests whose handler never touched ctx.logger');
    await client.log('untraced');
    const untraced = logger.lines.find((l) => l.msg === 'untraced');
    assert.ok(typeof untraced?.requestId === 'string' && (untraced.requestId as string).length > 0, 'an untraced line still has its request id');
    assert.is(untraced?.traceId, undefined);
  });
}
