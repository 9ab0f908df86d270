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
 * The {@link Context} of one request. The AbortController and the deadline
 * timer are created only when needed (a synchronous unary handler that never
 * reads `signal` costs neither).
 */
export class RequestContext implements Context {
  private controller: AbortController | undefined;
  private timer: NodeJS.Timeout | undefined;
  private abortReason: TroupeError | undefined;
  private listeners: Array<() => void> | undefined;
  /** Created on first use, like `controller`: most handlers never read `stopSignal`. */
  private stopController: AbortController | undefined;
  private stopTimer: NodeJS.Timeout | undefined;
  private stopListeners: Array<() => void> | undefined;
  /** When a stop turns into a kill (epoch ms); undefined until the caller asks the handler to stop. */
  stopDeadline: number | undefined;
  private log: Logger | undefined;
  /** `null`: the request is not traced (computed once, on first use). */
  private traceCache: TraceContext | null | undefined;
  private meta: Metadata | undefined;
  /** The request's `traceparent`, `tracestate` and `Troupe-Meta` headers as they arrived (parsed on first use). */
  traceparent: string | undefined;
  tracestate: string | undefined;
  metaHeader: string | undefined;
  /** The server span, when a tracer provider is registered. */
  server: ServerSpan | undefined;
  private spanEnded = false;

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
    if (!this.log) {
      const t = this.trace;
      this.log = this.owner.logger.child(
        t
          ? { endpoint: this.endpoint, requestId: this.requestId, traceId: t.traceId, spanId: t.spanId }
          : { endpoint: this.endpoint, requestId: this.requestId },
      );
    }
    return this.log;
  }
  get trace(): TraceContext | undefined {
    if (this.traceCache === undefined) this.traceCache = this.traceContext() ?? null;
    return this.traceCache ?? undefined;
  }
  get metadata(): Metadata {
    this.meta ??= decodeMetadata(this.metaHeader);
    return this.meta;
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
    if (!s || this.spanEnded) return;
    this.spanEnded = true;
    endSpan(s.span, err);
  }
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      // Every nested call made with `parent: ctx` listens to it: a handler fanning out to 11 calls is no leak.
      setMaxListeners(0, this.controller.signal);
      if (this.abortReason) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }
  get aborted(): boolean {
    return this.abortReason !== undefined;
  }
  get stopSignal(): AbortSignal {
    if (!this.stopController) {
      this.stopController = new AbortController();
      setMaxListeners(0, this.stopController.signal);
      if (this.stopDeadline !== undefined) this.stopController.abort(stopReason());
    }
    return this.stopController.signal;
  }
  /** The caller asked the handler to stop (see {@link Context.stopSignal}). */
  get stopped(): boolean {
    return this.stopDeadline !== undefined;
  }

  /** Runs `fn` when the caller asks the handler to stop. */
  onStop(fn: () => void): void {
    (this.stopListeners ??= []).push(fn);
  }

  /**
   * The caller asks the handler to finish within `graceMs`: `stopSignal`
   * aborts now, `signal` (a kill, `CANCELLED`) when the grace has passed and
   * the handler still runs. A second stop, or a stop after a kill, changes nothing.
   */
  stop(graceMs: number): void {
    if (this.stopDeadline !== undefined || this.abortReason) return;
    this.stopDeadline = Date.now() + graceMs;
    this.stopController?.abort(stopReason());
    this.stopTimer = setTimeout(() => {
      this.stopTimer = undefined;
      this.abort(
        new TroupeError('CANCELLED', `the handler of ${this.endpoint} did not stop within ${graceMs} ms of the caller's stop`, {
          data: { stopGraceMs: graceMs },
        }),
      );
    }, graceMs);
    for (const fn of this.stopListeners ?? []) fn();
  }
  get reason(): TroupeError {
    return this.abortReason ?? new TroupeError('INTERNAL', 'not aborted');
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

  /** The request's budget (deadline minus arrival), ms; set by the instance. */
  budgetMs = 0;

  /** Warned once as overdue (running well past its deadline); set by the instance's watchdog. */
  overdueWarned = false;
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
    (this.listeners ??= []).push(fn);
  }

  abort(reason: TroupeError): void {
    if (this.abortReason) return;
    this.abortReason = reason;
    this.controller?.abort(reason);
    for (const fn of this.listeners ?? []) fn();
  }

  armDeadline(): void {
    const ms = this.deadline - Date.now();
    // Node fires a timer longer than MAX_TIMER_MS after 1 ms: a later deadline (or none, `Infinity`) waits in steps.
    if (ms > MAX_TIMER_MS) this.timer = setTimeout(() => this.armDeadline(), MAX_TIMER_MS);
    else this.timer = setTimeout(() => this.abort(new TroupeError('TIMEOUT', `deadline of ${this.endpoint} passed`)), Math.max(0, ms));
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.stopTimer) clearTimeout(this.stopTimer);
    this.stopTimer = undefined;
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
