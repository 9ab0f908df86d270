import type { Test } from 'uvu';
import * as assert from 'uvu/assert';
import { component, type Context, endpoint, isRemoteError, type Runtime, type RuntimeOptions, TroupeError } from '@troupe/runtime/internal';
import { context as otelContext, trace as otelTrace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { sleep, waitFor, within } from './wait';

/**
 * In-process call cases of the runtime conformance suite. The worker runtime
 * calls its own instances (the in-process path: straight into the mailbox,
 * no transport) and the caller runtime calls the same instances over the
 * transport; each case runs both and asserts the same outcome — copy
 * semantics, errors (code, message, data), deadlines, cancel, mailbox
 * bounds, payload limits, metadata, trace context, metrics.
 */

interface Seen {
  requestId: string;
  metadata: Record<string, string>;
  traceId: string | undefined;
  parentSpanId: string | undefined;
}

@component('localtwin')
class Twin {
  aborts: string[] = [];
  kept: unknown[] = [];
  started = 0;

  @endpoint() echo(x: unknown): unknown {
    return x;
  }

  /** Mutates what it got, then returns it: the caller's object must not change. */
  @endpoint() mutate(x: { list: number[]; inner: { n: number } }): unknown {
    x.list.push(99);
    x.inner.n = -1;
    this.kept.push(x);
    return x;
  }

  /** Keeps its reply and mutates it after answering: the caller's copy must not change. */
  @endpoint() async later(_: unknown): Promise<{ n: number }> {
    const out = { n: 1 };
    setTimeout(() => {
      out.n = 2;
    }, 5);
    return Promise.resolve(out);
  }

  /** Declares its values immutable: in-process calls pass request and reply by reference. */
  @endpoint({ immutable: true }) shared(x: unknown): unknown {
    this.kept.push(x);
    return x;
  }

  @endpoint({ immutable: true }) sharedBig(bytes: number): string {
    return 'x'.repeat(bytes);
  }

  @endpoint({ immutable: true }) sharedFail(_: unknown): never {
    throw new TroupeError('NOT_FOUND', 'no such thing', { data: { id: 7 } });
  }

  @endpoint() fail(kind: string): never {
    if (kind === 'typed') throw new TroupeError('NOT_FOUND', 'no such thing', { data: { id: 7, tags: ['a'] } });
    throw new Error('plain boom');
  }

  @endpoint() async hold(ms: number, ctx: Context): Promise<number> {
    this.started++;
    ctx.signal.addEventListener('abort', () => this.aborts.push((ctx.signal.reason as TroupeError).code), { once: true });
    await sleep(ms, ctx.signal);
    return ms;
  }

  @endpoint() big(bytes: number): string {
    return 'x'.repeat(bytes);
  }

  @endpoint() seen(_: unknown, ctx: Context): Seen {
    return { requestId: ctx.requestId, metadata: { ...ctx.metadata }, traceId: ctx.trace?.traceId, parentSpanId: ctx.trace?.parentSpanId };
  }
}

let counter = 0;
/** A namespace no other test uses: `prefix`, the pid, the time and a counter. */
export const freshNamespace = (prefix = 'l'): string => `${prefix}${process.pid}x${Date.now().toString(36)}x${(counter++).toString(36)}`;

export type Pair = { worker: Runtime; caller: Runtime };

/** Counts what `rt` publishes on its transport until `restore()`. */
export function countPublishes(rt: Runtime): { readonly count: number; restore(): void } {
  const bus = rt.bus as { publish: (...args: unknown[]) => void };
  const publish = bus.publish.bind(bus);
  const counter = {
    count: 0,
    restore: (): void => {
      bus.publish = publish;
    },
  };
  bus.publish = (...args: unknown[]) => {
    counter.count++;
    publish(...args);
  };
  return counter;
}

/** `value` with every Uint8Array (or Buffer) as a plain array of its bytes, for comparing across transports. */
export function plainBinary(value: unknown): unknown {
  if (value instanceof Uint8Array) return { bytes: [...value] };
  if (Array.isArray(value)) return value.map(plainBinary);
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plainBinary(v)]));
  }
  return value;
}

/** What a call ended with, comparable across the two paths. */
async function outcome(p: Promise<unknown>): Promise<{ ok: unknown } | { code: string; message: string; data: unknown; remote: boolean }> {
  try {
    return { ok: await p };
  } catch (err) {
    const e = err as TroupeError;
    return { code: e.code, message: e.message, data: e.data, remote: e instanceof TroupeError && isRemoteError(e) };
  }
}

export function addLocalCases<C extends { pair?: unknown }>(s: Test<C>, open: (ctx: C, options?: RuntimeOptions) => Promise<Pair>): void {
  /** Spawns Twin on the worker; `local` calls it from the worker runtime, `bus` from the caller runtime. */
  const twins = async (ctx: C, options?: RuntimeOptions & { concurrency?: number; mailboxCapacity?: number }) => {
    const pair = await open(ctx, options);
    const ns = freshNamespace();
    const h = await pair.worker.spawn(Twin, { namespace: ns, concurrency: options?.concurrency, mailboxCapacity: options?.mailboxCapacity });
    const id = h.instanceIds[0] as string;
    const local = pair.worker.namespace(ns).client(Twin);
    const bus = pair.caller.namespace(ns).client(Twin);
    await within(bus.echo(1), 10_000, 'the warm-up call over the transport');
    await within(local.echo(1), 10_000, 'the warm-up call in-process');
    return { ...pair, ns, twin: h.instance(id), id, local, bus };
  };

  s('local - a call to an instance of the same runtime does not use the transport', async (ctx) => {
    const { worker, local } = await twins(ctx);
    const published = countPublishes(worker);
    try {
      for (let i = 0; i < 20; i++) assert.is(await local.echo(i), i);
    } finally {
      published.restore();
    }
    assert.is(published.count, 0, 'no message published for 20 in-process calls');
  });

  s('local - values arrive as over the transport (codec rules), and neither side sees the other mutate', async (ctx) => {
    const { local, bus, twin } = await twins(ctx);
    const value = {
      s: 'café ✓',
      n: [0, -0, 1.5, 2 ** 40, -(2 ** 33), Number.MAX_SAFE_INTEGER + 2],
      u: undefined,
      a: [undefined, null, true],
      d: new Date(1_700_000_000_123),
      b: new Uint8Array([1, 2, 3]),
      big: 2n ** 70n,
      m: new Map([['k', 1]]),
      nested: { deep: { deeper: [{ x: 1 }] } },
    };
    const viaBus = await bus.echo(value);
    const viaLocal = await local.echo(value);
    // Binary is a Uint8Array on both paths; over NATS the decoder hands out a Buffer (its subclass) viewing the message.
    assert.equal(plainBinary(viaLocal), plainBinary(viaBus), 'the same value as over the transport');
    assert.ok(!Object.is((viaLocal as { n: number[] }).n[1], -0), '-0 arrives as 0, as msgpack carries it');
    assert.ok(!('u' in (viaLocal as object)), 'undefined map values are dropped, as msgpack drops them');
    assert.ok((viaLocal as { b: unknown }).b instanceof Uint8Array);
    assert.is.not((viaLocal as { b: unknown }).b, value.b, 'binary is copied');
    assert.is(await local.echo(undefined), await bus.echo(undefined), 'an undefined request arrives as over the transport');
    for (const client of [local, bus]) {
      const arg = { list: [1], inner: { n: 1 } };
      const p = client.mutate(arg);
      arg.list.push(2); // the caller mutates after call() returned: the handler got the value as it was
      const got = (await p) as { list: number[]; inner: { n: number } };
      assert.equal(got, { list: [1, 99], inner: { n: -1 } }, 'the handler saw the value as of call()');
      assert.equal(arg, { list: [1, 2], inner: { n: 1 } }, "the handler's mutations do not reach the caller's object");
      assert.is.not(got, twin.kept.at(-1), 'the reply is a copy of what the handler kept');
      const r = await client.later(undefined);
      await sleep(20);
      assert.equal(r, { n: 1 }, "the handler's mutation after answering does not reach the reply");
    }
    const bad = { f: () => 1 };
    assert.equal(await outcome(local.echo(bad)), await outcome(bus.echo(bad)), 'a value the codec cannot carry fails alike');
  });

  s("local - an immutable endpoint gets the caller's object in-process and copies over the transport; errors, limits and bytes alike", async (ctx) => {
    const { local, bus, twin, worker, ns } = await twins(ctx);
    // A call made before this endpoint's first listing is read encodes its request at call() (it may go anywhere).
    await local.shared(0);
    const arg = { list: [1, 2], inner: { n: 1 }, when: new Date(5) };
    const got = await local.shared(arg);
    assert.is(twin.kept.at(-1), arg, 'in-process the handler got the very object');
    assert.is(got, arg, 'in-process the caller got the very object the handler returned');
    const viaBus = await bus.shared(arg);
    assert.is.not(twin.kept.at(-1), arg, 'over the transport the handler got a decoded copy');
    assert.is.not(viaBus, arg);
    assert.equal(viaBus, arg, 'the same value either way');
    const bytes = async (client: typeof local): Promise<number> => {
      const read = async (): Promise<number> => {
        const text = await worker.metrics.registry.metrics();
        const re = new RegExp(`^troupe_request_bytes_total\\{[^}]*namespace="${ns}"[^}]*endpoint="shared"[^}]*\\} (\\d+)`, 'gm');
        let sum = 0;
        for (const m of text.matchAll(re)) sum += Number(m[1]);
        return sum;
      };
      const before = await read();
      await client.shared({ a: 'café', b: [1.5, -3], c: null });
      return (await read()) - before;
    };
    const localBytes = await bytes(local);
    assert.ok(localBytes > 0, 'request bytes counted in-process');
    assert.is(localBytes, await bytes(bus), 'the msgpack size, counted alike');
    const max = worker.bus.maxPayload;
    const cases: Array<[string, (c: typeof local) => Promise<unknown>]> = [
      ['a request the codec cannot carry', (c) => c.shared({ f: () => 1 })],
      ['a request past the payload limit', (c) => c.shared('y'.repeat(max + 10))],
      ['a reply past the payload limit', (c) => c.sharedBig(max + 10)],
      ['a handler error', (c) => c.sharedFail(undefined)],
    ];
    for (const [what, call] of cases) {
      const a = await outcome(call(local));
      const b = await outcome(call(bus));
      assert.ok('code' in a && 'code' in b, `${what} fails either way`);
      // Messages name the transport's limit in its own words; code, data and the remote mark are the contract.
      assert.equal({ code: a.code, data: a.data, remote: a.remote }, { code: b.code, data: b.data, remote: b.remote }, `${what}: alike`);
    }
  });

  s('local - handler errors arrive with the same code, message, data and remote mark', async (ctx) => {
    const { local, bus } = await twins(ctx);
    for (const kind of ['typed', 'plain']) {
      const a = await outcome(local.fail(kind));
      const b = await outcome(bus.fail(kind));
      assert.equal(a, b, `${kind} error alike`);
      assert.ok('code' in a && a.remote, 'marked as raised downstream');
    }
  });

  s('local - a deadline ends the call with TIMEOUT and aborts the handler, as over the transport', async (ctx) => {
    const { local, bus, twin } = await twins(ctx, { concurrency: 4 });
    for (const client of [local, bus]) {
      twin.aborts.length = 0;
      const t0 = Date.now();
      const r = await outcome(within(client.hold(5_000, { timeout: 150 }), 3_000, 'the timed-out call'));
      assert.is((r as { code: string }).code, 'TIMEOUT');
      assert.ok(Date.now() - t0 < 2_000, 'at the deadline, not later');
      await waitFor(() => twin.aborts.length === 1, 2_000, 'the handler to see its deadline');
      assert.equal(twin.aborts, ['TIMEOUT']);
    }
  });

  s('local - an abort signal cancels the call and the running handler, as over the transport', async (ctx) => {
    const { local, bus, twin } = await twins(ctx, { concurrency: 4 });
    for (const client of [local, bus]) {
      twin.aborts.length = 0;
      twin.started = 0;
      const ac = new AbortController();
      const p = outcome(client.hold(5_000, { signal: ac.signal }));
      await waitFor(() => twin.started === 1, 2_000, 'the handler to start');
      ac.abort();
      const r = await within(p, 1_000, 'the cancelled call');
      assert.is((r as { code: string }).code, 'CANCELLED');
      await waitFor(() => twin.aborts.length === 1, 1_000, 'the handler to be cancelled');
      assert.equal(twin.aborts, ['CANCELLED']);
    }
  });

  s('local - past the mailbox bound the call gets OVERLOADED with the same data', async (ctx) => {
    const { worker, caller, ns, twin, id } = await twins(ctx, { concurrency: 1, mailboxCapacity: 1 });
    for (const rt of [worker, caller]) {
      twin.started = 0;
      const pinned = rt.namespace(ns).component('localtwin').endpoint('hold').client<number, number>().direct(id);
      const running = pinned.call(300);
      await waitFor(() => twin.started === 1, 2_000, 'the first call to run');
      const queued = pinned.call(1);
      const r = await outcome(pinned.call(1, { retry: false }));
      assert.equal(r, {
        code: 'OVERLOADED',
        message: (r as { message: string }).message,
        data: { instanceId: id, capacity: 1 },
        remote: true,
      });
      assert.match((r as { message: string }).message, /1 requests waiting/);
      assert.is(await running, 300);
      assert.is(await queued, 1);
    }
  });

  s('local - a request or reply past the payload limit is PAYLOAD_TOO_LARGE at once', async (ctx) => {
    const { local, bus, worker } = await twins(ctx);
    const max = worker.bus.maxPayload;
    for (const client of [local, bus]) {
      const t0 = Date.now();
      const req = await outcome(client.echo('y'.repeat(max + 10)));
      assert.is((req as { code: string }).code, 'PAYLOAD_TOO_LARGE', 'request too large');
      assert.is((req as { data: { max: number } }).data.max, max);
      const rep = await outcome(client.big(max + 10));
      assert.is((rep as { code: string }).code, 'PAYLOAD_TOO_LARGE', 'reply too large');
      assert.ok(Date.now() - t0 < 2_000, 'at once, not at a deadline');
    }
  });

  s('local - metadata, request id and trace context reach the handler as over the transport', async (ctx) => {
    const { local, bus } = await twins(ctx);
    const traceparent = `00-${'ab'.repeat(16)}-${'cd'.repeat(8)}-01`;
    const parent = {
      requestId: 'req-1',
      deadline: Date.now() + 5_000,
      signal: new AbortController().signal,
      metadata: { tenant: 'a' },
      trace: { traceId: 'ab'.repeat(16), spanId: 'cd'.repeat(8), flags: 1 },
    };
    const a = (await local.seen(undefined, { parent, metadata: { hop: 'x=1&y' } })) as Seen;
    const b = (await bus.seen(undefined, { parent, metadata: { hop: 'x=1&y' } })) as Seen;
    assert.equal(a, b);
    assert.equal(a, { requestId: 'req-1', metadata: { tenant: 'a', hop: 'x=1&y' }, traceId: 'ab'.repeat(16), parentSpanId: 'cd'.repeat(8) });
    assert.ok(traceparent.includes(a.traceId as string));
    const plain = (await local.seen(undefined)) as Seen;
    assert.ok(plain.requestId.length > 0, 'a plain call still has a request id');
    assert.is(plain.traceId, undefined, 'a plain call is not traced');
    const big = await outcome(local.seen(undefined, { metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) }));
    assert.equal(big, await outcome(bus.seen(undefined, { metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) })));
    assert.is((big as { code: string }).code, 'BAD_REQUEST', 'the metadata bound holds in-process too');
  });

  s('local - with a tracer provider the in-process call has a client and a server span, parent and child', async (ctx) => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const manager = new AsyncLocalStorageContextManager().enable();
    otelContext.setGlobalContextManager(manager);
    otelTrace.setGlobalTracerProvider(provider);
    try {
      const { local } = await twins(ctx);
      exporter.reset();
      const seen = (await local.seen(undefined)) as Seen;
      const spans = exporter.getFinishedSpans();
      const server = spans.find((x) => x.kind === 1);
      const client = spans.find((x) => x.kind === 2);
      assert.ok(server && client, `a server and a client span (got ${spans.length})`);
      assert.is(server.spanContext().traceId, client.spanContext().traceId, 'one trace');
      assert.is(server.parentSpanContext?.spanId, client.spanContext().spanId, 'the server span is the child of the client span');
      assert.is(seen.traceId, client.spanContext().traceId, 'the handler sees the trace');
    } finally {
      otelTrace.disable();
      otelContext.disable();
      await provider.shutdown();
    }
  });

  s('local - in-process calls are counted in the metrics like calls over the transport', async (ctx) => {
    const { worker, local, ns } = await twins(ctx);
    for (let i = 0; i < 5; i++) await local.echo(i);
    await outcome(local.fail('typed'));
    const text = await worker.metrics.registry.metrics();
    const line = (name: string, extra = ''): number => {
      const re = new RegExp(`^${name}\\{[^}]*namespace="${ns}"[^}]*endpoint="(echo|fail)"[^}]*${extra}[^}]*\\} (\\d+)`, 'gm');
      let sum = 0;
      for (const m of text.matchAll(re)) sum += Number(m[2]);
      return sum;
    };
    // 1 warm-up over the transport + 1 warm-up in-process + 5 + 1 failed, served by the instance.
    assert.is(line('troupe_requests_total'), 8, 'every request counted by the instance');
    assert.is(line('troupe_request_errors_total', 'code="NOT_FOUND"'), 1, 'the error counted by code');
    assert.ok(line('troupe_request_bytes_total') > 0, 'request bytes counted');
  });

  s('local - localCalls: false sends every call over the transport', async (ctx) => {
    const { worker, local } = await twins(ctx, { localCalls: false });
    const bus = worker.bus as { publish: (...args: unknown[]) => void };
    const publish = bus.publish.bind(bus);
    let published = 0;
    bus.publish = (...args: unknown[]) => {
      published++;
      publish(...args);
    };
    try {
      assert.is(await local.echo(5), 5);
    } finally {
      bus.publish = publish;
    }
    assert.ok(published >= 2, `request and reply published (${published})`);
  });
}
