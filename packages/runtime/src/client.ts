import { Observable } from 'rxjs';
import { type CallOptions, decodeError, onAbort, precheck, remainingBudget, requestHeaders, type StreamOptions } from './call-options';
import { CallerStream } from './caller-stream';
import { type Class, componentMeta } from './decorators';
import { TroupeError, toTroupeError } from './errors';
import type { ReplyHandler } from './inbox';
import { validateInstanceId } from './names';
import type { RequestPlane } from './plane';
import { H } from './protocol';
import { endpointAddress, type EndpointAddress, mailboxSubject, queueSubject } from './subjects';
import type { TransportMessage } from './transport/transport';

export type { CallOptions, StreamOptions } from './call-options';

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
