import { setMaxListeners } from 'node:events';
import type { Context } from '../component/context';
import type { InstanceInfo } from '../component/decorators';
import type { EventPublisher, EventRef, PublishEventOptions } from '../events/events';
import { TroupeError } from '../errors';
import type { Logger } from '../logger';
import { endSpan, type ServerSpan } from '../plane/telemetry';
import { MAX_TIMER_MS } from '../plane/deadline-wheel';
import { decodeMetadata, type Metadata, newSpanId, parseTraceparent, type TraceContext } from '../wire/trace-context';
import { isThreadFunction, type ThreadFunction } from '../threads/thread-function';
import type { ThreadPool } from '../threads/thread-pool';

/** What a request context needs of its instance. */
export interface ContextOwner {
  readonly info: InstanceInfo;
  readonly logger: Logger;
  readonly publisher: EventPublisher;
  setProperty(key: string, value: unknown): void;
  /** Marks the instance broken (see {@link Context.fail}). */
  broken(reason: TroupeError): void;
  readonly threads: ThreadPool;
  /** A fresh request id, for a request that arrived without one (made when first read). */
  nextRequestId(): string;
}

/**
 * What a request rarely needs: abort and stop state, its timers, the child
 * logger, parsed trace context and metadata. Made at first use, so a
 * synchronous handler that reads none of it allocates one small context
 * instead of one with all these slots (an in-process call makes one per
 * call; issue #13).
 */
class RareState {
  controller: AbortController | undefined = undefined;
  timer: NodeJS.Timeout | undefined = undefined;
  abortReason: TroupeError | undefined = undefined;
  listeners: Array<() => void> | undefined = undefined;
  stopController: AbortController | undefined = undefined;
  stopTimer: NodeJS.Timeout | undefined = undefined;
  stopListeners: Array<() => void> | undefined = undefined;
  stopDeadline: number | undefined = undefined;
  log: Logger | undefined = undefined;
  /** `null`: the request is not traced (computed once, on first use). */
  traceCache: TraceContext | null | undefined = undefined;
  meta: Metadata | undefined = undefined;
  tracestate: string | undefined = undefined;
  spanEnded = false;
  overdueWarned = false;
}

/**
 * The {@link Context} of one request. The AbortController and the deadline
 * timer are created only when needed (a synchronous unary handler that never
 * reads `signal` costs neither); so is the rest of its rarely used state
 * ({@link RareState}).
 */
export class RequestContext implements Context {
  private rareState: RareState | undefined = undefined;
  /** The request's `traceparent` and `Troupe-Meta` headers as they arrived (parsed on first use). */
  traceparent: string | undefined = undefined;
  metaHeader: string | undefined = undefined;
  /** The server span, when a tracer provider is registered. */
  server: ServerSpan | undefined = undefined;
  /** The request's budget (deadline minus arrival), ms; set by the instance. */
  budgetMs = 0;

  /**
   * `id`: the request's id, or undefined for an in-process request that
   * carried none: one is made from the owner at the first read (most
   * handlers never log or trace, and the string costs per call).
   */
  constructor(
    private readonly owner: ContextOwner,
    readonly endpoint: string,
    private id: string | undefined,
    readonly deadline: number,
  ) {}

  private get rare(): RareState {
    return (this.rareState ??= new RareState());
  }

  /** The request's `tracestate` header as it arrived. */
  get tracestate(): string | undefined {
    return this.rareState?.tracestate;
  }
  set tracestate(v: string | undefined) {
    if (v !== undefined || this.rareState !== undefined) this.rare.tracestate = v;
  }

  /** When a stop turns into a kill (epoch ms); undefined until the caller asks the handler to stop. */
  get stopDeadline(): number | undefined {
    return this.rareState?.stopDeadline;
  }

  /** Warned once as overdue (running well past its deadline); set by the instance's watchdog. */
  get overdueWarned(): boolean {
    return this.rareState?.overdueWarned === true;
  }
  set overdueWarned(v: boolean) {
    this.rare.overdueWarned = v;
  }

  get requestId(): string {
    return (this.id ??= this.owner.nextRequestId());
  }

  get instanceId(): string {
    return this.owner.info.instanceId;
  }
  get namespace(): string {
    return this.owner.info.namespace;
  }
  get component(): string {
    return this.owner.info.component;
  }
  /** Created on first use: a handler that never logs pays nothing for its child logger. */
  get logger(): Logger {
    const r = this.rare;
    if (!r.log) {
      const t = this.trace;
      r.log = this.owner.logger.child(
        t
          ? { endpoint: this.endpoint, requestId: this.requestId, traceId: t.traceId, spanId: t.spanId }
          : { endpoint: this.endpoint, requestId: this.requestId },
      );
    }
    return r.log;
  }
  get trace(): TraceContext | undefined {
    const r = this.rare;
    if (r.traceCache === undefined) r.traceCache = this.traceContext() ?? null;
    return r.traceCache ?? undefined;
  }
  get metadata(): Metadata {
    const r = this.rare;
    r.meta ??= decodeMetadata(this.metaHeader);
    return r.meta;
  }

  private traceContext(): TraceContext | undefined {
    const incoming = parseTraceparent(this.traceparent);
    const tracestate = incoming ? this.tracestate : undefined;
    const span = this.server?.span.spanContext();
    if (span) {
      return {
        traceId: span.traceId,
        spanId: span.spanId,
        parentSpanId: incoming?.spanId,
        flags: span.traceFlags,
        tracestate: span.traceState?.serialize() ?? tracestate,
      };
    }
    if (!incoming) return undefined;
    // No tracer provider: this hop still gets its own span id, so nested calls name it as their parent.
    return { traceId: incoming.traceId, spanId: newSpanId(), parentSpanId: incoming.spanId, flags: incoming.flags, tracestate };
  }

  /** Ends the server span (if any), failed with `err` when given. */
  endSpan(err?: TroupeError): void {
    const s = this.server;
    if (!s) return;
    const r = this.rare;
    if (r.spanEnded) return;
    r.spanEnded = true;
    endSpan(s.span, err);
  }
  get signal(): AbortSignal {
    const r = this.rare;
    if (!r.controller) {
      r.controller = new AbortController();
      // Every nested call made with `parent: ctx` listens to it: a handler fanning out to 11 calls is no leak.
      setMaxListeners(0, r.controller.signal);
      if (r.abortReason) r.controller.abort(r.abortReason);
    }
    return r.controller.signal;
  }
  get aborted(): boolean {
    return this.rareState?.abortReason !== undefined;
  }
  get stopSignal(): AbortSignal {
    const r = this.rare;
    if (!r.stopController) {
      r.stopController = new AbortController();
      setMaxListeners(0, r.stopController.signal);
      if (r.stopDeadline !== undefined) r.stopController.abort(stopReason());
    }
    return r.stopController.signal;
  }
  /** The caller asked the handler to stop (see {@link Context.stopSignal}). */
  get stopped(): boolean {
    return this.rareState?.stopDeadline !== undefined;
  }

  /** Runs `fn` when the caller asks the handler to stop. */
  onStop(fn: () => void): void {
    (this.rare.stopListeners ??= []).push(fn);
  }

  /**
   * The caller asks the handler to finish within `graceMs`: `stopSignal`
   * aborts now, `signal` (a kill, `CANCELLED`) when the grace has passed and
   * the handler still runs. A second stop, or a stop after a kill, changes nothing.
   */
  stop(graceMs: number): void {
    const r = this.rare;
    if (r.stopDeadline !== undefined || r.abortReason) return;
    r.stopDeadline = Date.now() + graceMs;
    r.stopController?.abort(stopReason());
    r.stopTimer = setTimeout(() => {
      r.stopTimer = undefined;
      this.abort(
        new TroupeError('CANCELLED', `the handler of ${this.endpoint} did not stop within ${graceMs} ms of the caller's stop`, {
          data: { stopGraceMs: graceMs },
        }),
      );
    }, graceMs);
    for (const fn of r.stopListeners ?? []) fn();
  }
  get reason(): TroupeError {
    return this.rareState?.abortReason ?? new TroupeError('INTERNAL', 'not aborted');
  }

  setProperty(key: string, value: unknown): void {
    this.owner.setProperty(key, value);
  }

  publish(event: EventRef<unknown>, data: unknown, options?: PublishEventOptions): void {
    this.owner.publisher.publish(event as string, data, options);
  }

  fail(reason: string): never {
    const err = new TroupeError('INTERNAL', `instance ${this.instanceId} declared itself broken: ${String(reason)}`, { data: { fatal: true } });
    // Marked now, not when the throw reaches the mailbox: a handler that catches its own throw is still broken.
    this.owner.broken(err);
    throw err;
  }

  runInThread<Req, Res>(fn: ThreadFunction<Req, Res>, request: Req): Promise<Awaited<Res>> {
    if (!isThreadFunction(fn)) return Promise.reject(notThreadFunction('runInThread', fn));
    return this.owner.threads.run<Req, Res>(fn, request, { signal: this.signal, deadline: this.deadline, stopSignal: this.stopSignal });
  }

  streamInThread<Req, T>(fn: ThreadFunction<Req, Iterable<T> | AsyncIterable<T>>, request: Req): AsyncIterable<T> {
    if (!isThreadFunction(fn)) throw notThreadFunction('streamInThread', fn);
    return this.owner.threads.stream<Req, T>(fn, request, { signal: this.signal, deadline: this.deadline, stopSignal: this.stopSignal });
  }

  remainingMs(): number {
    return Math.max(0, this.deadline - Date.now());
  }

  onAbort(fn: () => void): void {
    (this.rare.listeners ??= []).push(fn);
  }

  abort(reason: TroupeError): void {
    const r = this.rare;
    if (r.abortReason) return;
    r.abortReason = reason;
    r.controller?.abort(reason);
    for (const fn of r.listeners ?? []) fn();
  }

  armDeadline(): void {
    const ms = this.deadline - Date.now();
    const r = this.rare;
    // Node fires a timer longer than MAX_TIMER_MS after 1 ms: a later deadline (or none, `Infinity`) waits in steps.
    if (ms > MAX_TIMER_MS) r.timer = setTimeout(() => this.armDeadline(), MAX_TIMER_MS);
    else r.timer = setTimeout(() => this.abort(new TroupeError('TIMEOUT', `deadline of ${this.endpoint} passed`)), Math.max(0, ms));
  }

  dispose(): void {
    const r = this.rareState;
    if (r === undefined) return;
    if (r.timer) clearTimeout(r.timer);
    r.timer = undefined;
    if (r.stopTimer) clearTimeout(r.stopTimer);
    r.stopTimer = undefined;
  }
}

/** The reason of an aborted `stopSignal`: not an error, the caller's wish. */
function stopReason(): TroupeError {
  return new TroupeError('CANCELLED', 'the caller asked the handler to stop generating', { data: { stop: true } });
}

function notThreadFunction(method: string, fn: unknown): TroupeError {
  return new TroupeError(
    'BAD_REQUEST',
    `ctx.${method} needs a function made by threadFunction(module, name, fn) and exported from that module, got ${typeof fn}`,
  );
}
