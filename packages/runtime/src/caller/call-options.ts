import type { ParentContext } from '../component/context';
import type { RouterSpec } from '../discovery/routers';
import { fromWire, TroupeError } from '../errors';
import type { Plane } from '../plane/plane';
import type { ClientSpan } from '../plane/telemetry';
import { Ctl, H } from '../wire/protocol';
import { encodeMetadata, formatTraceparent, type Metadata, mergeMetadata } from '../wire/trace-context';
import type { HeaderBlock, Headers, TransportMessage } from '../transport/transport';

/** Options of a unary call. */
export interface CallOptions {
  /** Deadline in ms from now (default: the runtime's `requestTimeoutMs`, or `streamTimeoutMs` for streams). */
  timeout?: number;
  /** Aborting it kills the call: the remote handler's `ctx.signal` aborts and the call fails with `CANCELLED` at once. */
  signal?: AbortSignal;
  /**
   * Aborting it stops the call gracefully: the remote handler's
   * `ctx.stopSignal` aborts, it finishes on its own, and a stream completes
   * normally with every item produced (final ones included); a unary call
   * resolves with what the handler returns. A handler still running
   * `stopGraceMs` later is killed (a stream then completes with what
   * arrived; a unary call fails with `CANCELLED`). The stop reaches the
   * handler when the caller knows its instance (streams always; unary
   * calls with client-side routers or pinned clients).
   */
  stopSignal?: AbortSignal;
  /** How long a stopped handler may take to finish before it is killed, ms (default 2 000; 0..600 000). */
  stopGraceMs?: number;
  /** The handler context this call is made on behalf of: its cancellation and remaining deadline apply. */
  parent?: ParentContext;
  /** The router for this call (default: the client's). */
  router?: RouterSpec;
  /** Retry an idempotent call on NO_INSTANCES / INSTANCE_LOST / OVERLOADED, to another instance (default: the client's). */
  retry?: RetryOptions | false;
  /**
   * Request metadata (tenant, priority, routing hints): string values, at
   * most 16 entries and 1024 bytes encoded (`BAD_REQUEST` past that). The
   * handler reads it as `ctx.metadata`; calls it makes with `parent: ctx`
   * carry it on, merged with their own (theirs win).
   */
  metadata?: Metadata;
}

/** Retries of idempotent unary calls: to another instance, with exponential backoff, within the call's deadline. */
export interface RetryOptions {
  /** Retries after the first attempt. */
  attempts: number;
  /** First backoff, ms (doubles per retry; default 10). */
  backoffMs?: number;
}

/** Options of a stream call. */
export interface StreamOptions<Req = unknown, Res = unknown> extends CallOptions {
  /** Byte window: encoded item bytes the worker may send ahead of the consumer (default: runtime `streamWindowBytes`). */
  windowBytes?: number;
  /** Credit window: how many items the worker may send ahead of the consumer (default: runtime `streamWindow`). */
  window?: number;
  /** Re-issue the stream to another instance when its instance is lost (default: off; INSTANCE_LOST reaches the consumer). */
  migrate?: MigrateOptions<Req, Res>;
}

/**
 * Stream migration: when the instance serving a stream is lost (killed,
 * frozen, its frames lost) or drains (a graceful stop, `runtime.close()`,
 * SIGTERM), the client asks `resume` for a request that continues where the
 * consumer is, and sends it through the client's router to another instance.
 * The consumer sees one gap-free, duplicate-free stream. The items delivered
 * so far are kept while the stream runs (for `resume`).
 *
 * @example
 * client.stream({ prompt, max: 100 }, {
 *   migrate: { attempts: 2, resume: (req, got) => ({ ...req, prompt: req.prompt + got.join(''), max: req.max - got.length }) },
 * });
 */
export interface MigrateOptions<Req = unknown, Res = unknown> {
  /** Re-issues at most (default 1). */
  attempts?: number;
  /**
   * The request for the next instance, from the original request and every
   * item delivered so far (across attempts); `undefined` gives up (the
   * consumer gets the INSTANCE_LOST, or the `UNAVAILABLE` of a drained
   * instance). Nothing already delivered is delivered again.
   */
  resume(request: Req, received: readonly Res[]): Req | undefined;
  /**
   * When the serving instance drains: `'handoff'` (default) — it hands the
   * stream off at once and the stream continues elsewhere; `'finish'` — the
   * stream runs on there through the instance's grace period and moves only
   * if it is still running when that ends (for streams that are costly to
   * resume, such as a long prompt to prefill again).
   */
  onDrain?: 'handoff' | 'finish';
}

export const MAX_WINDOW = 65_536;

export function remainingBudget(options: CallOptions | undefined, fallback: number): number {
  let budget = options?.timeout ?? fallback;
  if (!(budget > 0) && budget !== 0) budget = fallback; // NaN and negatives fall back
  const parent = options?.parent;
  if (parent) budget = Math.min(budget, parent.deadline - Date.now());
  return Math.floor(budget);
}

export function precheck(options: CallOptions | undefined, budget: number, subject: string): TroupeError | undefined {
  if (options?.timeout !== undefined && (typeof options.timeout !== 'number' || Number.isNaN(options.timeout) || options.timeout <= 0)) {
    return new TroupeError('BAD_REQUEST', `timeout must be a positive number of ms, got ${String(options.timeout)}`);
  }
  const grace = options?.stopGraceMs;
  if (grace !== undefined && !(Number.isInteger(grace) && grace >= 0 && grace <= MAX_STOP_GRACE_MS)) {
    return new TroupeError('BAD_REQUEST', `stopGraceMs must be an integer in 0..${MAX_STOP_GRACE_MS}, got ${String(grace)}`);
  }
  if (options?.signal?.aborted || options?.parent?.signal.aborted) {
    return abortError(options, `call to ${subject} ${abortCode(options) === 'TIMEOUT' ? 'timed out' : 'cancelled'} before it was sent`);
  }
  if (budget <= 0) return new TroupeError('TIMEOUT', `deadline already passed before calling ${subject}`);
  return undefined;
}

/**
 * Why the caller's or the parent's signal aborted: `TIMEOUT` when the parent
 * context's deadline passed (its reason is a TIMEOUT TroupeError) or the
 * caller's signal is an `AbortSignal.timeout()`, else `CANCELLED`. A
 * deadline two hops down must not read as a cancel (#18).
 */
export function abortCode(options: CallOptions | undefined): 'TIMEOUT' | 'CANCELLED' {
  const own = options?.signal;
  const reason: unknown = own?.aborted ? own.reason : options?.parent?.signal.reason;
  if (reason instanceof TroupeError) return reason.code === 'TIMEOUT' ? 'TIMEOUT' : 'CANCELLED';
  return (reason as { name?: unknown } | undefined)?.name === 'TimeoutError' ? 'TIMEOUT' : 'CANCELLED';
}

/** The error a call ends with when its caller's or parent's signal aborts. */
export function abortError(options: CallOptions | undefined, message: string, data?: unknown): TroupeError {
  return new TroupeError(abortCode(options), message, data === undefined ? undefined : { data });
}

/** Listens to the caller's and the parent's abort signals; returns the remover. */
export function onAbort(options: CallOptions | undefined, fn: () => void): (() => void) | undefined {
  return onEither(options?.signal, options?.parent?.signal, fn);
}

/** Runs `fn` once when either signal aborts; returns the remover (undefined when there is no signal). */
function onEither(a: AbortSignal | undefined, b: AbortSignal | undefined, fn: () => void): (() => void) | undefined {
  if (!a && !b) return undefined;
  a?.addEventListener('abort', fn, { once: true });
  b?.addEventListener('abort', fn, { once: true });
  return () => {
    a?.removeEventListener('abort', fn);
    b?.removeEventListener('abort', fn);
  };
}

/** The default of `stopGraceMs`. */
export const DEFAULT_STOP_GRACE_MS = 2_000;
/** The largest `stopGraceMs`. */
export const MAX_STOP_GRACE_MS = 600_000;

/** Listens to the caller's and the parent's stop signals; returns the remover (undefined when there is none). */
export function onStop(options: CallOptions | undefined, fn: () => void): (() => void) | undefined {
  return onEither(options?.stopSignal, options?.parent?.stopSignal, fn);
}

/**
 * The grace a stop gives the handler, ms: the call's `stopGraceMs` (default
 * 2 000), no more than what is left of a stopped parent's grace, so a stop
 * turns into a kill at every hop by the time it does at the first.
 */
export function stopGraceOf(options: CallOptions | undefined): number {
  const own = options?.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
  const until = options?.parent?.stopSignal?.aborted ? options.parent.stopDeadline : undefined;
  return until === undefined ? own : Math.max(0, Math.min(own, Math.floor(until - Date.now())));
}

/** The headers of a stop control message for the call or stream replying to `reply`. */
export function stopHeaders(reply: string, graceMs: number): Headers {
  return { [H.CTL]: Ctl.STOP, [H.STREAM]: reply, [H.GRACE]: String(graceMs) };
}

/**
 * The `Troupe-Meta` header of a call: its own metadata merged over the
 * parent's; undefined when there is none. Throws `BAD_REQUEST` past the bounds.
 */
export function metadataHeader(options: CallOptions | undefined): string | undefined {
  if (options === undefined) return undefined;
  const parent = options.parent;
  if (options.metadata === undefined && parent === undefined) return undefined;
  const meta = mergeMetadata(parent?.metadata, options.metadata);
  return meta === undefined ? undefined : encodeMetadata(meta);
}

/**
 * The headers a call carries besides its budget: the parent's request id,
 * the trace context (the client span's, else the parent's), the metadata.
 * Undefined when there are none, which keeps the plain call on cached headers.
 */
export function carriedHeaders(options: CallOptions | undefined, meta: string | undefined, span: ClientSpan | undefined): Record<string, string> | undefined {
  const parent = options?.parent;
  if (parent === undefined && meta === undefined && span === undefined) return undefined;
  const out: Record<string, string> = span ? { ...span.headers } : {};
  if (parent) {
    out[H.ID] = parent.requestId;
    const t = span ? undefined : parent.trace;
    if (t) {
      // No tracer provider: the parent handler's own span id is the parent of the next hop.
      out[H.TRACEPARENT] = formatTraceparent(t.traceId, t.spanId, t.flags);
      if (t.tracestate) out[H.TRACESTATE] = t.tracestate;
    }
  }
  if (meta !== undefined) out[H.META] = meta;
  return out;
}

/** Headers of a stream request (the caller fills in the stream's own): a request id, the budget, and what the call carries. */
export function requestHeaders(plane: Plane, budget: number, carried: Record<string, string> | undefined): Record<string, string> {
  if (carried === undefined) return { [H.ID]: plane.nextRequestId(), [H.TIMEOUT]: String(budget) };
  return { [H.ID]: plane.nextRequestId(), ...carried, [H.TIMEOUT]: String(budget) };
}

const cachedUnaryHeaders = new Map<number, PlainHeaders>();
/** Budgets whose header record is kept: a process sees few distinct ones, a pathological one clears the cache instead of growing it. */
const HEADER_CACHE_MAX = 512;

/** Header records cached now (at most 512), for leak tests. */
export function cachedHeaderRecords(): number {
  return cachedUnaryHeaders.size;
}

/**
 * The headers of a plain call with one budget: the frozen record, and its
 * `NATS/1.0` block encoded at the first send over NATS, so a publish hands
 * the transport the bytes (no lookup of the record's encoding per call).
 */
class PlainHeaders implements HeaderBlock {
  readonly record_: Headers;
  private bytes: Uint8Array | undefined;
  constructor(budget: number) {
    this.record_ = Object.freeze({ [H.TIMEOUT]: String(budget) });
  }
  block(): Uint8Array {
    // The budget is ASCII digits and the name a constant: nothing to check.
    return (this.bytes ??= Buffer.from(`NATS/1.0\r\n${H.TIMEOUT}: ${this.record_[H.TIMEOUT]}\r\n\r\n`, 'latin1'));
  }
  record(): Headers {
    return this.record_;
  }
}

function plainHeaders(budget: number): PlainHeaders {
  let h = cachedUnaryHeaders.get(budget);
  if (!h) {
    if (cachedUnaryHeaders.size >= HEADER_CACHE_MAX) cachedUnaryHeaders.clear();
    h = new PlainHeaders(budget);
    cachedUnaryHeaders.set(budget, h);
  }
  return h;
}

/**
 * Headers of a unary request: the remaining budget, and what the call
 * carries (request id, trace context, metadata) when it carries anything
 * (otherwise the worker names the request by its unique reply subject).
 * Records of a plain call are cached per budget and frozen.
 */
export function unaryHeaders(budget: number, carried: Record<string, string> | undefined): Headers {
  if (carried !== undefined) return { ...carried, [H.TIMEOUT]: String(budget) };
  return plainHeaders(budget).record_;
}

/** {@link unaryHeaders} of a plain call (it carries nothing but its budget) as a pre-encoded block, cached per budget. */
export function plainUnaryBlock(budget: number): HeaderBlock {
  return plainHeaders(budget);
}

export function decodeError(plane: Plane, msg: TransportMessage): TroupeError {
  try {
    return fromWire(plane.codec.decode(msg.data));
  } catch {
    return fromWire({ code: msg.header(H.ERROR), message: 'remote error with a malformed body' });
  }
}
