import { Observable, type Subscriber } from 'rxjs';
import type { ParentContext } from './context';
import { type Class, componentMeta } from './decorators';
import { fromWire, TroupeError, toTroupeError } from './errors';
import type { ReplyHandler } from './inbox';
import { validateInstanceId } from './names';
import type { RequestPlane } from './plane';
import { Ctl, Frame, H, MODE_STREAM, PROTOCOL_VERSION } from './protocol';
import { endpointAddress, type EndpointAddress, mailboxSubject, ownMailboxSubject, queueSubject } from './subjects';
import type { Headers, TransportMessage } from './transport/transport';

/** Options of a unary call. */
export interface CallOptions {
  /** Deadline in ms from now (default: the runtime's `requestTimeoutMs`, or `streamTimeoutMs` for streams). */
  timeout?: number;
  /** Aborting it cancels the call (and the remote handler). */
  signal?: AbortSignal;
  /** The handler context this call is made on behalf of: its cancellation and remaining deadline apply. */
  parent?: ParentContext;
}

/** Options of a stream call. */
export interface StreamOptions extends CallOptions {
  /** Credit window: how many items the worker may send ahead of the consumer (default: runtime `streamWindow`). */
  window?: number;
}

const MAX_WINDOW = 65_536;

/**
 * A client of one endpoint: `call` for unary requests, `stream` for
 * streaming ones. Until discovery lands, requests go to the endpoint's queue
 * group (the NATS server balances) or, through {@link direct}, to one
 * instance's mailbox.
 *
 * @example
 * const gen = runtime.namespace('llama_8b').component('decode').endpoint('generate').client();
 * gen.stream({ prompt: 'hi' }).subscribe((token) => process.stdout.write(token));
 */
export class EndpointClient<Req = unknown, Res = unknown> {
  /** The subject requests are published to. */
  readonly subject: string;

  constructor(
    private readonly plane: RequestPlane,
    readonly address: EndpointAddress,
    /** The instance this client is pinned to, if any. */
    readonly instanceId?: string,
  ) {
    this.subject = instanceId === undefined ? queueSubject(address) : mailboxSubject(address, instanceId);
  }

  /**
   * A client of the same endpoint that sends every request to one instance's
   * mailbox. An id that is not 16 hex characters throws `BAD_REQUEST`.
   *
   * @example
   * await gen.direct(handle.instanceIds[0]).call({ prompt: 'hi' });
   */
  direct(instanceId: string): EndpointClient<Req, Res> {
    return new EndpointClient<Req, Res>(this.plane, this.address, validateInstanceId(instanceId));
  }

  /**
   * Sends one request and resolves with the one reply. Rejects with a
   * TroupeError: `NO_INSTANCES` at once when nothing listens, `TIMEOUT` at
   * the deadline, `CANCELLED` on abort, `PAYLOAD_TOO_LARGE` at once for an
   * oversized request, or whatever the handler threw (normalised).
   *
   * @example
   * const metrics = await client.call(undefined, { timeout: 500 });
   */
  call(request: Req, options?: CallOptions): Promise<Res> {
    const budget = remainingBudget(options, this.plane.settings.requestTimeoutMs);
    const refusal = precheck(options, budget, this.subject);
    if (refusal) return Promise.reject(refusal);
    let data: Uint8Array;
    try {
      data = this.plane.codec.encode(request);
    } catch (err) {
      return Promise.reject(toTroupeError(err, 'BAD_REQUEST'));
    }
    return new Promise<Res>((resolve, reject) => {
      new UnaryCall<Res>(this.plane, resolve, reject).send(this.subject, data, budget, options);
    });
  }

  /**
   * A cold Observable of the endpoint's items: subscribing sends the
   * request; unsubscribing cancels the remote handler. Items carry sequence
   * numbers and arrive in order; the worker never runs more than the credit
   * window ahead of the consumer. Errors are TroupeErrors.
   *
   * @example
   * client.stream({ prompt }).pipe(take(10)).subscribe(console.log);
   */
  stream(request: Req, options?: StreamOptions): Observable<Res> {
    return new Observable<Res>((subscriber) => {
      const s = new CallerStream<Res>(this.plane, this.address, subscriber);
      s.start(this.subject, request, options);
      return () => s.teardown();
    });
  }
}

function remainingBudget(options: CallOptions | undefined, fallback: number): number {
  let budget = options?.timeout ?? fallback;
  if (!(budget > 0) && budget !== 0) budget = fallback; // NaN and negatives fall back
  const parent = options?.parent;
  if (parent) budget = Math.min(budget, parent.deadline - Date.now());
  return Math.floor(budget);
}

function precheck(options: CallOptions | undefined, budget: number, subject: string): TroupeError | undefined {
  if (options?.timeout !== undefined && (typeof options.timeout !== 'number' || Number.isNaN(options.timeout) || options.timeout <= 0)) {
    return new TroupeError('BAD_REQUEST', `timeout must be a positive number of ms, got ${String(options.timeout)}`);
  }
  if (options?.signal?.aborted || options?.parent?.signal.aborted) {
    return new TroupeError('CANCELLED', `call to ${subject} cancelled before it was sent`);
  }
  if (budget <= 0) return new TroupeError('TIMEOUT', `deadline already passed before calling ${subject}`);
  return undefined;
}

/** Listens to the caller's and the parent's abort signals; returns the remover. */
function onAbort(options: CallOptions | undefined, fn: () => void): (() => void) | undefined {
  const a = options?.signal;
  const b = options?.parent?.signal;
  if (!a && !b) return undefined;
  a?.addEventListener('abort', fn, { once: true });
  b?.addEventListener('abort', fn, { once: true });
  return () => {
    a?.removeEventListener('abort', fn);
    b?.removeEventListener('abort', fn);
  };
}

function requestHeaders(plane: RequestPlane, budget: number, options: CallOptions | undefined): Record<string, string> {
  return {
    [H.ID]: options?.parent?.requestId ?? plane.nextRequestId(),
    [H.TIMEOUT]: String(budget),
  };
}

/** One unary call in flight: a reply handler on the muxed inbox. */
class UnaryCall<Res> implements ReplyHandler {
  private key = '';
  private timer: NodeJS.Timeout | undefined;
  private unlisten: (() => void) | undefined;
  private subject = '';
  private budget = 0;

  constructor(
    private readonly plane: RequestPlane,
    private readonly resolve: (v: Res) => void,
    private readonly reject: (e: TroupeError) => void,
  ) {}

  send(subject: string, data: Uint8Array, budget: number, options: CallOptions | undefined): void {
    this.subject = subject;
    this.budget = budget;
    const [key, reply] = this.plane.inbox.open(this);
    this.key = key;
    try {
      this.plane.transport.publish(subject, data, { reply, headers: requestHeaders(this.plane, budget, options) });
    } catch (err) {
      this.fail(toTroupeError(err, 'UNAVAILABLE'));
      return;
    }
    this.timer = setTimeout(this.onTimeout, budget);
    this.unlisten = onAbort(options, this.onCancel);
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
      this.fail(new TroupeError('INTERNAL', `malformed reply from ${this.subject}: ${(err as Error).message}`, { cause: err }));
      return;
    }
    this.cleanup();
    this.resolve(value as Res);
  }

  private readonly onTimeout = (): void => {
    this.timer = undefined;
    this.fail(new TroupeError('TIMEOUT', `no reply from ${this.subject} within ${this.budget} ms`));
  };

  private readonly onCancel = (): void => {
    this.fail(new TroupeError('CANCELLED', `call to ${this.subject} cancelled`));
  };

  private fail(err: TroupeError): void {
    this.cleanup();
    this.reject(err);
  }

  private cleanup(): void {
    this.plane.inbox.close(this.key);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.unlisten?.();
    this.unlisten = undefined;
  }
}

function decodeError(plane: RequestPlane, msg: TransportMessage): TroupeError {
  try {
    return fromWire(plane.codec.decode(msg.data));
  } catch {
    return fromWire({ code: msg.header(H.ERROR), message: 'remote error with a malformed body' });
  }
}

/** Caller side of one stream: request, frames, credit, cancel. */
class CallerStream<Res> implements ReplyHandler {
  private key = '';
  private subject = '';
  private timer: NodeJS.Timeout | undefined;
  private unlisten: (() => void) | undefined;
  private window = 0;
  private budget = 0;
  /** Next expected sequence number = items received so far. */
  private received = 0;
  private consumedSinceGrant = 0;
  private instanceId: string | undefined;
  private ctlSubject: string | undefined;
  private done = false;
  private cancelled = false;

  constructor(
    private readonly plane: RequestPlane,
    private readonly address: EndpointAddress,
    private readonly subscriber: Subscriber<Res>,
  ) {}

  start(subject: string, request: unknown, options: StreamOptions | undefined): void {
    this.subject = subject;
    const settings = this.plane.settings;
    this.budget = remainingBudget(options, settings.streamTimeoutMs);
    const window = options?.window ?? settings.streamWindow;
    const refusal =
      precheck(options, this.budget, subject) ??
      (Number.isInteger(window) && window >= 1 && window <= MAX_WINDOW
        ? undefined
        : new TroupeError('BAD_REQUEST', `window must be an integer in 1..${MAX_WINDOW}, got ${String(window)}`));
    if (refusal) return this.finish(refusal);
    this.window = window;
    let data: Uint8Array;
    try {
      data = this.plane.codec.encode(request);
    } catch (err) {
      return this.finish(toTroupeError(err, 'BAD_REQUEST'));
    }
    const [key, reply] = this.plane.inbox.open(this);
    this.key = key;
    const headers = requestHeaders(this.plane, this.budget, options);
    headers[H.MODE] = MODE_STREAM;
    headers[H.WINDOW] = String(window);
    headers[H.PROTO] = PROTOCOL_VERSION;
    try {
      this.plane.transport.publish(subject, data, { reply, headers });
    } catch (err) {
      return this.finish(toTroupeError(err, 'UNAVAILABLE'));
    }
    this.timer = setTimeout(this.onTimeout, this.budget);
    this.unlisten = onAbort(options, this.onAbortSignal);
  }

  onReply(msg: TransportMessage): void {
    if (this.done) return;
    if (msg.noResponders) {
      return this.finish(new TroupeError('NO_INSTANCES', `no instance is serving ${this.subject}`));
    }
    if (msg.header(H.ERROR) !== undefined) return this.finish(decodeError(this.plane, msg));
    const frame = msg.header(H.FRAME);
    switch (frame) {
      case Frame.START:
        return this.onStart(msg);
      case Frame.DATA:
        return this.onData(msg);
      case Frame.END:
        return this.onEnd(msg);
      case Frame.HEARTBEAT:
        return;
      case Frame.ERROR:
        return this.finish(decodeError(this.plane, msg));
      default:
        return this.finish(new TroupeError('INTERNAL', `unknown stream frame ${JSON.stringify(frame)} from ${this.subject}`));
    }
  }

  private onStart(msg: TransportMessage): void {
    const id = msg.header(H.INSTANCE);
    try {
      this.instanceId = validateInstanceId(id);
    } catch {
      return this.finish(new TroupeError('INTERNAL', `stream start frame from ${this.subject} names no valid instance`));
    }
    this.ctlSubject = ownMailboxSubject(this.address, this.instanceId);
    if (this.cancelled) {
      this.sendCtl(Ctl.CANCEL);
      this.release();
    }
  }

  private onData(msg: TransportMessage): void {
    const seq = Number(msg.header(H.SEQ));
    if (seq !== this.received) {
      return this.finish(
        new TroupeError('INSTANCE_LOST', `stream from ${this.instanceId ?? this.subject} lost frames: expected item ${this.received}, got ${seq}`, {
          data: { delivered: this.received },
        }),
      );
    }
    let items: unknown;
    try {
      items = this.plane.codec.decode(msg.data);
    } catch (err) {
      return this.finish(toTroupeError(err, 'INTERNAL'));
    }
    if (!Array.isArray(items)) {
      return this.finish(new TroupeError('INTERNAL', `malformed data frame from ${this.subject}: not an array`));
    }
    for (const item of items) {
      this.received++;
      this.subscriber.next(item as Res);
      if (this.done) return; // unsubscribed (or errored) inside next()
    }
    this.consumedSinceGrant += items.length;
    // Grant in halves of the window: one control message per window/2 items.
    if (this.consumedSinceGrant * 2 >= this.window && this.ctlSubject) {
      const n = this.consumedSinceGrant;
      this.consumedSinceGrant = 0;
      this.sendCtl(Ctl.CREDIT, n);
    }
  }

  private onEnd(msg: TransportMessage): void {
    const total = Number(msg.header(H.SEQ));
    if (total !== this.received) {
      return this.finish(
        new TroupeError('INSTANCE_LOST', `stream from ${this.instanceId ?? this.subject} ended after ${total} items but ${this.received} arrived`, {
          data: { delivered: this.received },
        }),
      );
    }
    this.finish();
  }

  private readonly onTimeout = (): void => {
    this.timer = undefined;
    this.cancelRemote();
    this.finish(new TroupeError('TIMEOUT', `stream from ${this.subject} did not finish within ${this.budget} ms`, { data: { delivered: this.received } }));
  };

  private readonly onAbortSignal = (): void => {
    this.cancelRemote();
    this.finish(new TroupeError('CANCELLED', `stream from ${this.subject} cancelled`, { data: { delivered: this.received } }));
  };

  /** Unsubscribed by the consumer. */
  teardown(): void {
    if (this.done) return;
    this.done = true;
    this.cancelRemote();
    this.clearTimers();
    // Without a start frame we do not know whom to cancel yet: keep listening
    // until it arrives (or the deadline passes), then cancel.
    if (this.ctlSubject || !this.key) this.release();
    else this.timer = setTimeout(() => this.release(), Math.max(1, this.budget));
  }

  private cancelRemote(): void {
    this.cancelled = true;
    if (this.ctlSubject) this.sendCtl(Ctl.CANCEL);
  }

  private sendCtl(kind: Ctl, credit?: number): void {
    if (!this.ctlSubject) return;
    const headers: Headers =
      credit === undefined ? { [H.CTL]: kind, [H.STREAM]: `${this.plane.inbox.root}.${this.key}` } : { [H.CTL]: kind, [H.STREAM]: `${this.plane.inbox.root}.${this.key}`, [H.CREDIT]: String(credit) };
    try {
      this.plane.transport.publish(this.ctlSubject, EMPTY, { headers });
    } catch (err) {
      // A lost credit stalls the worker until its own liveness check; a lost cancel is bounded by the deadline.
      this.plane.logger.warn('stream control message not sent', { subject: this.ctlSubject, kind, error: (err as Error).message });
    }
  }

  private finish(err?: TroupeError): void {
    if (this.done) return;
    this.done = true;
    this.clearTimers();
    this.release();
    if (err) this.subscriber.error(err);
    else this.subscriber.complete();
  }

  private clearTimers(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.unlisten?.();
    this.unlisten = undefined;
  }

  private release(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.key) this.plane.inbox.close(this.key);
  }
}

const EMPTY = new Uint8Array(0);

// ---- typed clients --------------------------------------------------------

type AnyFn = (...args: never[]) => unknown;
type RequestOf<F> = F extends (req: infer R, ...rest: never[]) => unknown ? R : never;
type ItemOf<R> = R extends AsyncIterable<infer T> ? T : R extends Observable<infer T> ? T : never;

/** The client-side signature of one endpoint method. */
export type ClientMethod<F> = F extends AnyFn
  ? [ItemOf<ReturnType<F>>] extends [never]
    ? (request: RequestOf<F>, options?: CallOptions) => Promise<Awaited<ReturnType<F>>>
    : (request: RequestOf<F>, options?: StreamOptions) => Observable<ItemOf<ReturnType<F>>>
  : never;

type Lifecycle = 'onStart' | 'onStop';

/**
 * A client derived from a component class: one method per endpoint, typed
 * from the endpoint's signature (streaming endpoints return an Observable,
 * unary ones a Promise). Only methods decorated with `@endpoint` exist at
 * run time.
 *
 * @example
 * const decode = runtime.namespace('llama_8b').client(Decode);
 * decode.generate({ prompt: 'hi' }).subscribe(console.log); // type-checked
 */
export type TypedClient<C> = {
  readonly [K in keyof C as K extends Lifecycle ? never : C[K] extends AnyFn ? K : never]: ClientMethod<C[K]>;
};

/** Options of a typed client. */
export interface TypedClientOptions {
  /** Pin every call to one instance (its mailbox). */
  instance?: string;
}

/** Builds a {@link TypedClient} of `target` in `namespace`. */
export function typedClient<C>(plane: RequestPlane, namespace: string, target: Class<C>, options: TypedClientOptions = {}): TypedClient<C> {
  const meta = componentMeta(target);
  const out: Record<string, unknown> = {};
  for (const ep of meta.endpoints.values()) {
    let client = new EndpointClient(plane, endpointAddress(namespace, meta.name, ep.name));
    if (options.instance !== undefined) client = client.direct(options.instance);
    out[ep.method] = ep.stream
      ? (req: unknown, o?: StreamOptions) => client.stream(req, o)
      : (req: unknown, o?: CallOptions) => client.call(req, o);
  }
  return Object.freeze(out) as TypedClient<C>;
}
