import type { EventToken, PublishEventOptions } from '../events/events';
import type { Logger } from '../logger';
import type { Metadata, TraceContext } from '../wire/trace-context';
import type { ThreadFunction } from '../threads/thread-function';

/**
 * What every handler receives beside its request. Pass it as `parent` in the
 * options of calls the handler makes so cancellation and the remaining
 * deadline travel downstream.
 *
 * @example
 * \@endpoint() async *generate(req: Req, ctx: Context) {
 *   const kv = await this.prefill.prefill(req, { parent: ctx });
 *   while (!ctx.signal.aborted) yield next(kv);
 * }
 * // CPU-bound work in a worker thread (see threadFunction):
 * \@endpoint() primes(req: { upTo: number }, ctx: Context) { return ctx.runInThread(primes, req); }
 */
export interface Context {
  /** The request id (propagated to nested calls for logs). */
  readonly requestId: string;
  /** When the caller stops waiting, in epoch milliseconds (this host's clock). */
  readonly deadline: number;
  /**
   * Aborted when the request is killed: the caller cancels, unsubscribes, or
   * the deadline passes, or the instance stops past its grace period, or the
   * handler ignored a stop past its grace. Stop now; nothing more reaches the
   * caller.
   */
  readonly signal: AbortSignal;
  /**
   * Aborted when the caller asks the handler to stop generating (a graceful
   * stop, `stopSignal` in the caller's options, or a stop of the request this
   * one serves): finish soon — a last item such as a finish reason is
   * welcome — and return; the stream ends normally with everything produced
   * (a unary call answers with what the handler returns). A handler still
   * running `Troupe-Grace` ms later (the caller's `stopGraceMs`, default
   * 2 000) is killed: `signal` aborts with `CANCELLED`. Calls made with
   * `{ parent: ctx }` and in flight when the stop arrives are stopped too.
   *
   * @example
   * \@endpoint() async *generate(req: { prompt: string }, ctx: Context) {
   *   for (const token of model.tokens(req.prompt)) {
   *     if (ctx.stopSignal.aborted) {
   *       yield { finish: 'stopped' };
   *       return;
   *     }
   *     yield { token };
   *   }
   * }
   */
  readonly stopSignal: AbortSignal;
  /** The instance handling the request. */
  readonly instanceId: string;
  readonly namespace: string;
  readonly component: string;
  readonly endpoint: string;
  /**
   * A logger labelled with the instance, the endpoint, the request id and
   * (when the request is traced) the trace id; created on first use.
   */
  readonly logger: Logger;
  /**
   * The W3C trace context of the request (from its `traceparent` header, or
   * the server span when an OpenTelemetry tracer provider is registered);
   * undefined when the request is not traced.
   */
  readonly trace: TraceContext | undefined;
  /** The request metadata set by the first caller (`call(req, { metadata })`); empty when none. */
  readonly metadata: Metadata;
  /** Milliseconds left until the deadline (never negative). */
  remainingMs(): number;
  /**
   * Publishes an event from this instance, to its component
   * (`{ns}.{comp}._ev.{event}`) or with `{ scope: 'namespace' }` to its
   * namespace. Fails at once with `PAYLOAD_TOO_LARGE` or `UNAVAILABLE`.
   */
  publish<T>(event: EventToken<T>, data: NoInfer<T>, options?: PublishEventOptions): void;
  publish(event: string, data: unknown, options?: PublishEventOptions): void;
  /**
   * Sets a dynamic property of the instance (e.g. `active_slots`): published
   * in the registry with the process heartbeat (throttled), visible in
   * `instances()` and to routers. Throws `BAD_REQUEST` when the runtime
   * runs with `{ discovery: false }` (there is no registry to publish to).
   * Outside handlers use `@injectProperties()`.
   */
  setProperty(key: string, value: unknown): void;
  /**
   * Declares this instance broken (its state can no longer be trusted: a
   * lost model, a corrupt cache) and throws a `TroupeError` `INTERNAL` with
   * `data: { fatal: true }`, which the caller receives. The instance is
   * withdrawn from discovery at once (queued requests are refused so routers
   * send them elsewhere) and, when spawned with a `restart` policy, replaced
   * by a fresh actor with a new instance id. Throwing such a TroupeError
   * yourself does the same. See docs/operations.md, "Supervision".
   *
   * @example
   * \@endpoint() async generate(req: Req, ctx: Context) {
   *   if (!this.model.healthy) ctx.fail('model weights lost');
   * }
   */
  fail(reason: string): never;
  /**
   * Runs a {@link ThreadFunction} in the runtime's worker-thread pool and
   * resolves with its result, so CPU-bound work never blocks this process's
   * actors, heartbeats and I/O. The request's cancel or deadline aborts it
   * (the function sees `ctx.aborted` / `ctx.signal`; one ignoring it past
   * `threadAbortGraceMs` loses its thread) and rejects at once with the
   * reason. What the function throws rejects as a handler's throw would.
   */
  runInThread<Req, Res>(fn: ThreadFunction<Req, Res>, request: NoInfer<Req>): Promise<Awaited<Res>>;
  /**
   * Runs a generator {@link ThreadFunction} in the pool and yields its items
   * in order; return it (or `yield*` it) from a streaming endpoint. The
   * thread pauses when it runs a few items ahead of the stream's consumer,
   * so the stream's credit window governs it.
   */
  streamInThread<Req, T>(fn: ThreadFunction<Req, Iterable<T> | AsyncIterable<T>>, request: NoInfer<Req>): AsyncIterable<T>;
}

/** The part of a {@link Context} that nested calls inherit. */
export interface ParentContext {
  readonly requestId: string;
  readonly deadline: number;
  readonly signal: AbortSignal;
  /** A stop of the parent request stops nested calls in flight (see {@link Context.stopSignal}). */
  readonly stopSignal?: AbortSignal;
  /** When the parent's stop turns into a kill (epoch ms): nested calls stopped with it get the grace that is left. */
  readonly stopDeadline?: number;
  /** Nested calls continue this trace, with `spanId` as their parent. */
  readonly trace?: TraceContext | undefined;
  /** Nested calls carry this metadata on. */
  readonly metadata?: Metadata;
}
