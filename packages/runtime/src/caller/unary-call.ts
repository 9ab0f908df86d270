import {
  abortCode,
  type CallOptions,
  decodeError,
  onAbort,
  onStop,
  plainUnaryBlock,
  type RetryOptions,
  stopGraceOf,
  stopHeaders,
  unaryHeaders,
} from './call-options';
import { type DeadlineWheel, type Expirable } from '../plane/deadline-wheel';
import type { InFlight } from '../discovery/discovery';
import type { EndpointView, Tracked } from '../discovery/endpoint-view';
import { ErrorCode, fromWire, TroupeError, toTroupeError, type WireError } from '../errors';
import { type Copied, copyValue, headerBlockSize, LocalRequest, type LocalSink, type LocalTarget, sizeValue, tooLarge } from '../plane/local-calls';
import type { ReplyHandler } from '../plane/reply-inbox';
import type { Plane } from '../plane/plane';
import { type CallMeter, now, wallAt } from '../plane/meter';
import { Ctl, H, isRefusal } from '../wire/protocol';
import type { InstanceRecord } from '../discovery/registry';
import type { Router } from '../discovery/routers';
import type { HeaderBlock, Headers, TransportMessage } from '../transport/transport';
import type { EndpointAddress } from '../wire/subjects';
import { explainNoInstances } from './not-found';

/** How a routed call picks (and re-picks) its instance. */
export interface Route {
  readonly view: EndpointView;
  readonly router: Router;
  readonly filter: ((r: InstanceRecord) => boolean) | undefined;
  readonly retry: RetryOptions | undefined;
  /** For messages. */
  readonly subject: string;
}

/** Settled calls kept for reuse: at 256 in flight a call object lives across a round trip, long enough to be promoted, so fresh ones are old-generation garbage. */
const POOL_MAX = 1024;
const pool: Array<UnaryCall<unknown>> = [];
const noop = (): void => undefined;
const NO_PLANE = undefined as unknown as Plane;

/**
 * One unary call in flight: a reply handler on the muxed inbox, one promise,
 * one slot in the runtime's deadline wheel. A routed call picks an instance through its router and
 * re-picks in place — without a new promise — when the request was never
 * delivered ("no responders" from a mailbox, refused by a stopping
 * instance), and on retryable failures when retries are on.
 *
 * Call objects are pooled ({@link UnaryCall.take}): once settled, a call
 * has left the inbox, the wheel, the instance's in-flight set and its abort
 * signals, drops everything it held, and goes back to the pool.
 */
export class UnaryCall<Res> implements ReplyHandler, InFlight, Expirable, LocalSink {
  /** The inbox ticket of the current attempt; -1 when none is open. */
  private ticket = -1;
  private unlisten: (() => void) | undefined;
  private unlistenStop: (() => void) | undefined;
  private subject = '';
  private budget = 0;
  private deadline = 0;
  private done = false;
  private wheel: DeadlineWheel | undefined;
  /** The encoded request; undefined until an attempt goes over the transport (the caller set {@link request} instead). */
  private data: Uint8Array | undefined = EMPTY;
  /** The caller's request when the client left encoding to the first attempt; cleared once copied or encoded. */
  request: unknown;
  /** The request as copied for an in-process attempt (see plane/local-calls.ts). */
  private copied: Copied | undefined;
  /** The in-process attempt now in flight, and the one that was handed {@link copied}. */
  private local: LocalRequest | undefined;
  private handed: LocalRequest | undefined;
  private localTarget: LocalTarget | undefined;
  private options: CallOptions | undefined;
  private route: Route | undefined;
  /** The request as the router sees it (kept when {@link request} is cleared by encoding). */
  private routed: unknown;
  private id: string | undefined;
  /** The in-flight entry of the current attempt at its instance (see {@link EndpointView.enter}). */
  private tracked: Tracked | undefined;
  private tried: Set<string> | undefined;
  private retries = 0;
  /** The backoff before a retry: cleared when the call settles meanwhile, so it does not hold the call. */
  private backoff: NodeJS.Timeout | undefined;
  private lastErr: TroupeError | undefined;
  /** `subject` is one instance's mailbox (a pinned client): a cancel can reach the handler. */
  private pinned = false;
  /** The reply subject of the current attempt (names the call in a cancel). */
  private reply = '';
  /** What the call carries besides its budget (request id, trace context, metadata); undefined for a plain call. */
  carried: Record<string, string> | undefined;
  /** The client's counters of this endpoint; set by the client before sending. */
  meter: CallMeter | undefined;
  private startedAt = 0;
  /** The endpoint view's in-flight links (see {@link InFlight}). */
  flightIn: object | undefined = undefined;
  flightPrev: InFlight | undefined = undefined;
  flightNext: InFlight | undefined = undefined;
  /** The deadline wheel's links (see {@link Expirable}). */
  wheelSlot = 0;
  wheelPrev: Expirable | undefined = undefined;
  wheelNext: Expirable | undefined = undefined;
  /** The publish options of an attempt, reused (the transport reads them during `publish` only). */
  private readonly pub: { reply: string; headers: Headers | undefined; headerBlock: HeaderBlock | undefined } = {
    reply: '',
    headers: undefined,
    headerBlock: undefined,
  };
  /** The pick options of an attempt, reused. */
  private readonly among: { filter: ((r: InstanceRecord) => boolean) | undefined; exclude: ReadonlySet<string> | undefined } = {
    filter: undefined,
    exclude: undefined,
  };

  private constructor(
    private plane: Plane,
    private resolve: (v: Res) => void,
    private reject: (e: TroupeError) => void,
    /** The endpoint called, so a "nobody serves it" can say whether the endpoint exists at all. */
    private address: EndpointAddress | undefined,
  ) {}

  /** A call, from the pool when one is there. */
  static take<Res>(plane: Plane, resolve: (v: Res) => void, reject: (e: TroupeError) => void, address?: EndpointAddress): UnaryCall<Res> {
    const c = pool.pop() as UnaryCall<Res> | undefined;
    if (c === undefined) return new UnaryCall<Res>(plane, resolve, reject, address);
    c.plane = plane;
    c.resolve = resolve;
    c.reject = reject;
    c.address = address;
    c.done = false;
    return c;
  }

  /** Sends to one subject (queue group or a pinned mailbox). */
  send(subject: string, data: Uint8Array | undefined, budget: number, options: CallOptions | undefined, pinned = false): void {
    this.pinned = pinned;
    this.arm(data, budget, options);
    this.publish(subject, budget);
  }

  /** Picks an instance through `route` and sends to its mailbox. */
  sendRouted(route: Route, data: Uint8Array | undefined, budget: number, options: CallOptions | undefined): void {
    this.route = route;
    this.routed = this.request;
    this.arm(data, budget, options);
    this.next(budget);
  }

  private arm(data: Uint8Array | undefined, budget: number, options: CallOptions | undefined): void {
    // With a meter, the deadline derives from its reading (one clock read per call, not two).
    if (this.meter) this.deadline = wallAt((this.startedAt = now())) + budget;
    else this.deadline = Date.now() + budget;
    this.data = data;
    this.budget = budget;
    this.options = options;
    this.wheel = this.plane.wheel;
    this.wheel.add(this, this.deadline);
    // The listener closure only when there is a signal: most calls have none, and one closure per call is garbage at 30k calls/s.
    if (options?.signal || options?.parent) this.unlisten = onAbort(options, () => this.cancel());
    if (options?.stopSignal || options?.parent?.stopSignal) this.unlistenStop = onStop(options, () => this.stop());
  }

  /** `left`: the budget left, when the caller has just read the clock (the first attempt). */
  private next(left?: number): void {
    const r = this.route as Route;
    // A retry may go back to an instance already tried when no other is left.
    const among = this.among;
    among.filter = r.filter;
    among.exclude = this.tried;
    let id = r.view.pick(r.router, this.routed, among);
    if (id === undefined && this.retries > 0) {
      among.exclude = undefined;
      id = r.view.pick(r.router, this.routed, among);
    }
    among.filter = undefined;
    among.exclude = undefined;
    if (id === undefined) {
      this.finish(this.lastErr ?? new TroupeError('NO_INSTANCES', `no instance of ${r.subject} is registered${r.filter ? ' matching the filter' : ''}`));
      return;
    }
    this.id = id;
    const t = r.view.enter(id, this);
    this.tracked = t;
    this.publish(t.mailbox, left ?? this.deadline - Date.now());
  }

  private publish(subject: string, budget: number): void {
    this.subject = subject;
    const target = this.plane.local.get(subject);
    if (target !== undefined) return this.dispatchLocal(target, subject, budget);
    if (this.data === undefined && !this.encodeRequest()) return;
    const inbox = this.plane.inbox;
    this.ticket = inbox.take(this);
    this.reply = inbox.subjectOf(this.ticket);
    const pub = this.pub;
    pub.reply = this.reply;
    const ms = Math.max(1, Math.floor(budget));
    if (this.carried === undefined) pub.headerBlock = plainUnaryBlock(ms);
    else pub.headers = unaryHeaders(ms, this.carried);
    try {
      this.plane.transport.publish(subject, this.data as Uint8Array, pub);
    } catch (err) {
      this.finish(toTroupeError(err, 'UNAVAILABLE'));
      return;
    }
    if (this.options?.stopSignal?.aborted) this.stop(); // stopped before it was sent: the handler is told at once
  }

  /** Encodes the request for a transport attempt; false (and the call failed) when it cannot be encoded. */
  private encodeRequest(): boolean {
    try {
      this.data = this.plane.codec.encode(this.copied ? this.copied.value : this.request);
    } catch (err) {
      this.refuse(toTroupeError(err, 'BAD_REQUEST'));
      return false;
    }
    this.request = undefined;
    return true;
  }

  /**
   * An attempt to an instance of this runtime: into its mailbox, no
   * transport. The handler gets a copy of the request made as the call
   * started (a retry after a handler got it decodes the encoded request
   * instead); the bus's payload limit applies to the copy's msgpack size.
   */
  private dispatchLocal(target: LocalTarget, subject: string, budget: number): void {
    const codec = this.plane.codec;
    let c = this.copied;
    if (target.immutable && this.data === undefined) {
      // The endpoint declared its values immutable: the handler gets the caller's object, measured, not copied.
      if (c === undefined) {
        try {
          c = sizeValue(codec, this.request);
        } catch (err) {
          this.refuse(toTroupeError(err, 'BAD_REQUEST'));
          return;
        }
        this.request = undefined;
        this.copied = c;
      }
    } else if (c === undefined || this.handed?.started === true) {
      try {
        c = this.data !== undefined ? { value: codec.decode(this.data), size: this.data.length } : copyValue(codec, this.request);
        // A retry may need the request as sent, after a handler has had (and maybe changed) this copy.
        if (this.data === undefined && this.route?.retry) this.data = codec.encode(c.value);
      } catch (err) {
        this.refuse(toTroupeError(err, 'BAD_REQUEST'));
        return;
      }
      this.request = undefined;
      this.copied = c;
    }
    const ms = Math.max(1, Math.floor(budget));
    const headers = unaryHeaders(ms, this.carried);
    const size = c.size + (this.carried === undefined ? plainHeaderSize(headers) : headerBlockSize(headers));
    if (size > this.plane.transport.maxPayload) {
      this.finish(tooLarge(size, this.plane.transport.maxPayload, subject));
      return;
    }
    const req = new LocalRequest(this, c, { subject, headers, plain: this.carried === undefined, budget: ms, deadline: this.deadline });
    this.local = req;
    this.handed = req;
    this.localTarget = target;
    this.plane.local.schedule(target, req);
  }

  waiting(req: LocalRequest): boolean {
    return req === this.local && !this.done;
  }

  localReply(req: LocalRequest, value: unknown): number {
    if (req !== this.local || this.done) return Number.NaN;
    return this.succeed(value);
  }

  localError(req: LocalRequest, wire: WireError): void {
    if (req !== this.local || this.done) return;
    this.fail(fromWire(wire));
  }

  onReply(msg: TransportMessage): void {
    if (msg.noResponders) {
      this.fail(new TroupeError('NO_INSTANCES', `no instance is serving ${this.subject}`));
      return;
    }
    if (msg.header(H.ERROR) !== undefined) {
      this.fail(decodeError(this.plane, msg));
      return;
    }
    let value: unknown;
    try {
      value = this.plane.codec.decode(msg.data);
    } catch (err) {
      this.finish(new TroupeError('INTERNAL', `malformed reply from ${this.subject}: ${(err as Error).message}`, { cause: err }));
      return;
    }
    this.succeed(value);
  }

  /** Returns the clock reading the meter took (NaN without a meter), for an in-process handler's own meter. */
  private succeed(value: unknown): number {
    if (this.id !== undefined) this.route?.view.succeeded(this.id);
    this.done = true;
    const resolve = this.resolve;
    this.cleanup();
    const at = this.meter ? this.meter.finish(this.startedAt, 'OK') : Number.NaN;
    this.recycle();
    resolve(value as Res);
    return at;
  }

  /** The runtime closed: fail now. */
  abandon(err: TroupeError): void {
    this.finish(err);
  }

  /** The instance was lost (its lease expired): fail (or re-route) now instead of at the deadline. */
  lose(err: TroupeError): void {
    this.fail(err);
  }

  /** The deadline passed (called by the runtime's deadline wheel). */
  expire(): void {
    if (this.id !== undefined) this.route?.view.inhibit(this.id);
    this.finish(new TroupeError('TIMEOUT', `no reply from ${this.subject} within ${this.budget} ms`));
  }

  /** The mailbox of the instance handling the call, when known (client-side routing or a pinned client). */
  private mailbox(): string | undefined {
    return this.id !== undefined ? this.route?.view.mailbox(this.id) : this.pinned ? this.subject : undefined;
  }

  /** The stop signal: ask the handler to finish; the call still waits for its reply (the worker kills it past the grace). */
  private stop(): void {
    if (this.local !== undefined) {
      if (!this.done) this.localTarget?.stop(this.local, stopGraceOf(this.options));
      return;
    }
    const mailbox = this.mailbox();
    if (this.done || mailbox === undefined || !this.reply) return;
    try {
      this.plane.transport.publish(mailbox, EMPTY, { headers: stopHeaders(this.reply, stopGraceOf(this.options)) });
    } catch {
      // disconnected: the handler runs on to its end or its deadline
    }
  }

  private cancel(): void {
    const code = abortCode(this.options);
    if (this.local !== undefined) {
      this.localTarget?.cancel(this.local, code);
      this.finish(new TroupeError(code, `call to ${this.subject} ${code === 'TIMEOUT' ? "timed out (its parent's deadline passed)" : 'cancelled'}`));
      return;
    }
    // A handler still running for a cancelled call is told, when we know its instance (client-side routing or a pinned client).
    const mailbox = this.mailbox();
    if (mailbox !== undefined && this.reply) {
      try {
        this.plane.transport.publish(mailbox, EMPTY, { headers: { [H.CTL]: Ctl.CANCEL, [H.STREAM]: this.reply, [H.REASON]: code } });
      } catch {
        // disconnected: the handler runs to its deadline
      }
    }
    this.finish(new TroupeError(code, `call to ${this.subject} ${code === 'TIMEOUT' ? "timed out (its parent's deadline passed)" : 'cancelled'}`));
  }

  /** An attempt failed: re-route when that is safe (or asked for), else finish. */
  private fail(err: TroupeError): void {
    if (this.done) return;
    const r = this.route;
    const id = this.id;
    if (r && id !== undefined) {
      this.release();
      this.id = undefined;
      this.lastErr = err;
      (this.tried ??= new Set()).add(id);
      const left = this.deadline - Date.now();
      if (err.code === ErrorCode.NO_INSTANCES || isRefusal(err)) {
        r.view.inhibit(id); // never delivered: another instance is always safe
        if (left > 0) {
          this.plane.stats.callsRerouted++;
          return this.next();
        }
      } else {
        if (err.code === ErrorCode.INSTANCE_LOST) r.view.inhibit(id);
        const retryable = err.code === ErrorCode.INSTANCE_LOST || err.code === ErrorCode.OVERLOADED;
        if (r.retry && retryable && this.retries < r.retry.attempts && left > 1) {
          const pause = Math.min((r.retry.backoffMs ?? 10) * 2 ** this.retries, left - 1);
          this.retries++;
          this.backoff = setTimeout(() => {
            this.backoff = undefined;
            if (!this.done) this.next();
          }, pause);
          return;
        }
      }
    }
    this.finish(err);
  }

  /** The request could not be encoded: rejected as a client rejects it before sending (not counted as a call). */
  private refuse(err: TroupeError): void {
    this.meter = undefined;
    this.finish(err);
  }

  private finish(err: TroupeError): void {
    if (this.done) return;
    this.done = true;
    const { reject, plane, address } = this;
    this.cleanup();
    this.meter?.finish(this.startedAt, err.code);
    this.recycle();
    if (err.code === ErrorCode.NO_INSTANCES && address) {
      // Failure path only: ask discovery whether the endpoint exists at all (a typo is NOT_FOUND, not an outage).
      void explainNoInstances(plane, address, err).then(reject);
      return;
    }
    reject(err);
  }

  /** Ends the current attempt (inbox key, in-flight tracking). */
  private release(): void {
    if (this.tracked !== undefined) this.route?.view.leave(this.tracked, this);
    this.tracked = undefined;
    if (this.ticket >= 0) this.plane.inbox.release(this.ticket);
    this.ticket = -1;
    this.pub.reply = '';
    this.pub.headers = undefined;
    this.pub.headerBlock = undefined;
    this.local = undefined;
  }

  /** Settled: leave the wheel and drop everything the call held, so a settled call retains nothing. */
  private cleanup(): void {
    this.release();
    this.wheel?.remove(this);
    this.wheel = undefined;
    this.unlisten?.();
    this.unlisten = undefined;
    this.unlistenStop?.();
    this.unlistenStop = undefined;
    if (this.backoff) clearTimeout(this.backoff);
    this.backoff = undefined;
    this.data = EMPTY;
    this.request = undefined;
    this.copied = undefined;
    this.handed = undefined;
    this.localTarget = undefined;
    this.options = undefined;
    this.carried = undefined;
    this.route = undefined;
    this.routed = undefined;
    this.tried = undefined;
    this.lastErr = undefined;
  }

  /** Settled and cleaned up: forget the rest and go back to the pool. */
  private recycle(): void {
    this.plane = NO_PLANE; // a pooled call must not keep a closed runtime reachable
    this.resolve = noop;
    this.reject = noop;
    this.address = undefined;
    this.meter = undefined;
    this.id = undefined;
    this.retries = 0;
    this.pinned = false;
    this.subject = '';
    this.reply = '';
    this.budget = 0;
    this.deadline = 0;
    this.startedAt = 0;
    if (pool.length < POOL_MAX) pool.push(this as UnaryCall<unknown>);
  }
}

const EMPTY = new Uint8Array(0);

/** {@link headerBlockSize} of a plain call's headers (the budget alone, ASCII digits): no per-call byte count. */
function plainHeaderSize(headers: Headers): number {
  return PLAIN_HEADER_BASE + (headers[H.TIMEOUT] as string).length;
}

/** The block's fixed part (`NATS/1.0` line and end) and the budget header's name and separators. */
const PLAIN_HEADER_BASE = 12 + H.TIMEOUT.length + 4;
