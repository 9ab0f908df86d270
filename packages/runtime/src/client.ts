import { map, Observable } from 'rxjs';
import { type CallOptions, decodeError, onAbort, precheck, remainingBudget, requestHeaders, type RetryOptions, type StreamOptions } from './call-options';
import { CallerStream } from './caller-stream';
import { type Class, componentMeta } from './decorators';
import type { EndpointView, InFlight } from './discovery';
import { ErrorCode, TroupeError, toTroupeError } from './errors';
import type { ReplyHandler } from './inbox';
import { validateInstanceId } from './names';
import type { RequestPlane } from './plane';
import { H } from './protocol';
import type { InstanceRecord } from './registry';
import { resolveRouter, type Router, type RouterSpec } from './routers';
import { endpointAddress, type EndpointAddress, mailboxSubject, ownMailboxSubject, queueSubject } from './subjects';
import type { TransportMessage } from './transport/transport';

export type { CallOptions, RetryOptions, StreamOptions } from './call-options';

/** Options of a client (see `EndpointRef.client`). */
export interface ClientOptions {
  /** How requests pick an instance (default: the runtime's `router`). */
  router?: RouterSpec;
  /** Retries of idempotent unary calls (default: none). */
  retry?: RetryOptions;
  /** Only instances whose record passes this filter (see {@link EndpointClient.where}). */
  filter?: (instance: InstanceRecord) => boolean;
}

/**
 * A client of one endpoint: `call` for unary requests, `stream` for
 * streaming ones. A client-side router picks an instance from discovery
 * (default round-robin) and sends to its mailbox; `queue` leaves balancing to
 * the NATS queue group; {@link direct} pins one instance.
 *
 * @example
 * const gen = runtime.namespace('llama_8b').component('decode').endpoint('generate').client();
 * gen.stream({ prompt: 'hi' }).subscribe((token) => process.stdout.write(token));
 */
export class EndpointClient<Req = unknown, Res = unknown> {
  /** The subject requests are published to when no client-side router picks an instance. */
  readonly subject: string;
  private readonly router: Router | 'queue';
  private viewCache: EndpointView | undefined;

  constructor(
    private readonly plane: RequestPlane,
    readonly address: EndpointAddress,
    /** The instance this client is pinned to, if any. */
    readonly instanceId?: string,
    private readonly options: ClientOptions = {},
  ) {
    this.subject = instanceId === undefined ? queueSubject(address) : mailboxSubject(address, instanceId);
    this.router = resolveRouter(options.router ?? plane.settings.router);
    if (this.router !== 'queue' && !plane.discovery) {
      throw new TroupeError('BAD_REQUEST', `router ${this.router.name} needs discovery, which this runtime has turned off; use router 'queue' or enable discovery`);
    }
  }

  /**
   * A client of the same endpoint that sends every request to one instance's
   * mailbox. An id that is not 16 hex characters throws `BAD_REQUEST`.
   *
   * @example
   * await gen.direct(handle.instanceIds[0]).call({ prompt: 'hi' });
   */
  direct(instanceId: string): EndpointClient<Req, Res> {
    return new EndpointClient<Req, Res>(this.plane, this.address, validateInstanceId(instanceId), { ...this.options, router: 'queue' });
  }

  /**
   * A client that routes only to instances whose properties pass `predicate`.
   *
   * @example
   * const llama = client.where((p) => p.model === 'llama3-8b');
   */
  where(predicate: (properties: Readonly<Record<string, unknown>>, instance: InstanceRecord) => boolean): EndpointClient<Req, Res> {
    const prev = this.options.filter;
    const filter = (r: InstanceRecord): boolean => (!prev || prev(r)) && predicate(r.properties, r);
    return new EndpointClient<Req, Res>(this.plane, this.address, this.instanceId, { ...this.options, filter });
  }

  /** The shared discovery view of this endpoint. */
  private view(): EndpointView {
    if (!this.plane.discovery) throw new TroupeError('UNAVAILABLE', 'discovery is turned off in this runtime');
    this.viewCache ??= this.plane.discovery.view(this.address);
    return this.viewCache;
  }

  /**
   * The instances serving this endpoint now (registered, lease alive,
   * matching this client's filter), once the first list is known.
   *
   * @example
   * for (const i of await client.instances()) console.log(i.instanceId, i.properties);
   */
  async instances(): Promise<InstanceRecord[]> {
    const v = this.view();
    await v.ready;
    return this.filtered(v.instances);
  }

  /**
   * The instance list as it changes (one watch per endpoint per process,
   * shared by every client of it).
   *
   * @example
   * client.instances$.subscribe((xs) => console.log(xs.length, 'instances'));
   */
  get instances$(): Observable<InstanceRecord[]> {
    return this.view().list$.pipe(map((xs) => this.filtered(xs)));
  }

  /**
   * Resolves when at least `n` instances are listed; `TIMEOUT` after `timeout` ms (default 10 s).
   *
   * @example
   * await client.waitForInstances(2, { timeout: 5000 });
   */
  waitForInstances(n: number, options: { timeout?: number } = {}): Promise<InstanceRecord[]> {
    const timeout = options.timeout ?? 10_000;
    return new Promise((resolve, reject) => {
      let last = 0;
      const timer = setTimeout(() => {
        sub.unsubscribe();
        reject(new TroupeError('TIMEOUT', `${last} of ${n} instances of ${queueSubject(this.address)} listed after ${timeout} ms`));
      }, timeout);
      const sub = this.instances$.subscribe((xs) => {
        last = xs.length;
        if (xs.length >= n && this.view().synced) {
          clearTimeout(timer);
          queueMicrotask(() => sub.unsubscribe());
          resolve(xs);
        }
      });
    });
  }

  private filtered(xs: readonly InstanceRecord[]): InstanceRecord[] {
    const f = this.options.filter;
    return f ? xs.filter(f) : [...xs];
  }

  /**
   * Sends one request and resolves with the one reply. Rejects with a
   * TroupeError: `NO_INSTANCES` at once when nothing listens, `TIMEOUT` at
   * the deadline, `CANCELLED` on abort, `PAYLOAD_TOO_LARGE` at once for an
   * oversized request, or whatever the handler threw (normalised). A request
   * an instance never received ("no responders", or refused while it stops)
   * goes to another instance at once.
   *
   * @example
   * const metrics = await client.call(undefined, { timeout: 500 });
   */
  call(request: Req, options?: CallOptions): Promise<Res> {
    const budget = remainingBudget(options, this.plane.settings.requestTimeoutMs);
    const refusal = precheck(options, budget, this.subject);
    if (refusal) return Promise.reject(refusal);
    let router: Router | 'queue';
    try {
      router = options?.router === undefined ? this.router : this.instanceId === undefined ? resolveRouter(options.router) : 'queue';
    } catch (err) {
      return Promise.reject(err);
    }
    let data: Uint8Array;
    try {
      data = this.plane.codec.encode(request);
    } catch (err) {
      return Promise.reject(toTroupeError(err, 'BAD_REQUEST'));
    }
    if (router === 'queue' || this.instanceId !== undefined) return unary<Res>(this.plane, this.subject, data, budget, options);
    return this.callRouted(router, request, data, budget, options);
  }

  private async callRouted(router: Router, request: Req, data: Uint8Array, budget: number, options: CallOptions | undefined): Promise<Res> {
    const view = this.view();
    const deadline = Date.now() + budget;
    if (!view.synced) await untilReady(view, budget, this.subject);
    const retry = options?.retry === false ? undefined : (options?.retry ?? this.options.retry);
    const tried = new Set<string>();
    let retries = 0;
    let lastErr: TroupeError | undefined;
    for (;;) {
      let candidates = view.candidates(this.options.filter, tried);
      if (candidates.length === 0 && retry && retries > 0) candidates = view.candidates(this.options.filter);
      const id = candidates.length > 0 ? router.pick(candidates, request, view) : undefined;
      if (id === undefined) {
        throw lastErr ?? new TroupeError('NO_INSTANCES', `no instance of ${this.subject} is registered${this.options.filter ? ' matching the filter' : ''}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw lastErr ?? new TroupeError('TIMEOUT', `no reply from ${this.subject} within ${budget} ms`);
      try {
        const value = await unary<Res>(this.plane, ownMailboxSubject(this.address, id), data, left, options, view, id);
        view.succeeded(id);
        return value;
      } catch (e) {
        const err = e as TroupeError;
        lastErr = err;
        tried.add(id);
        if (err.code === ErrorCode.NO_INSTANCES || isRefusal(err)) {
          view.inhibit(id); // never delivered: another instance is always safe
          continue;
        }
        if (err.code === ErrorCode.TIMEOUT || err.code === ErrorCode.INSTANCE_LOST) view.inhibit(id);
        const retryable = err.code === ErrorCode.INSTANCE_LOST || err.code === ErrorCode.OVERLOADED;
        if (retry && retryable && retries < retry.attempts) {
          const pause = Math.min((retry.backoffMs ?? 10) * 2 ** retries, Math.max(0, deadline - Date.now() - 1));
          retries++;
          if (pause > 0) await new Promise((r) => setTimeout(r, pause));
          continue;
        }
        throw err;
      }
    }
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
      let router: Router | 'queue';
      try {
        router = this.instanceId !== undefined ? 'queue' : options?.router === undefined ? this.router : resolveRouter(options.router);
      } catch (err) {
        subscriber.error(err);
        return undefined;
      }
      if (router === 'queue') {
        s.start(this.subject, request, options);
        return () => s.teardown();
      }
      const view = this.view();
      const go = (): void => {
        if (subscriber.closed) return;
        const candidates = view.candidates(this.options.filter);
        const id = candidates.length > 0 ? (router as Router).pick(candidates, request, view) : undefined;
        if (id === undefined) subscriber.error(new TroupeError('NO_INSTANCES', `no instance of ${this.subject} is registered`));
        else s.start(ownMailboxSubject(this.address, id), request, options);
      };
      if (view.synced) go();
      else view.ready.then(go, (err: unknown) => subscriber.error(toTroupeError(err, 'UNAVAILABLE')));
      return () => s.teardown();
    });
  }
}

/** Refused without running (an instance that is stopping): safe to send elsewhere. */
function isRefusal(err: TroupeError): boolean {
  return err.code === ErrorCode.UNAVAILABLE && (err.data as { refused?: unknown } | undefined)?.refused === true;
}

async function untilReady(view: EndpointView, budget: number, subject: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      view.ready,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new TroupeError('TIMEOUT', `discovery of ${subject} did not complete within ${budget} ms`)), budget);
      }),
    ]);
  } finally {
    if (timer) clearTimeout(timer);
  }
}

/** Sends one unary request; tracks it against `id` in `view` when given. */
function unary<Res>(
  plane: RequestPlane,
  subject: string,
  data: Uint8Array,
  budget: number,
  options: CallOptions | undefined,
  view?: EndpointView,
  id?: string,
): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    const call = new UnaryCall<Res>(plane, resolve, reject);
    if (view && id !== undefined) call.untrack = view.track(id, call);
    call.send(subject, data, budget, options);
  });
}

/** One unary call in flight: a reply handler on the muxed inbox. */
class UnaryCall<Res> implements ReplyHandler, InFlight {
  /** Set by discovery-routed calls: stops counting this call against its instance. */
  untrack: (() => void) | undefined;
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

  /** The instance was lost (its lease expired): fail now instead of at the deadline. */
  lose(err: TroupeError): void {
    this.fail(err);
  }

  private cleanup(): void {
    this.untrack?.();
    this.untrack = undefined;
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

/** Options of a typed client: a client's options, or one instance. */
export interface TypedClientOptions extends ClientOptions {
  /** Pin every call to one instance (its mailbox). */
  instance?: string;
}

/** Builds a {@link TypedClient} of `target` in `namespace`. */
export function typedClient<C>(plane: RequestPlane, namespace: string, target: Class<C>, options: TypedClientOptions = {}): TypedClient<C> {
  const meta = componentMeta(target);
  const out: Record<string, unknown> = {};
  for (const ep of meta.endpoints.values()) {
    const { instance, ...clientOptions } = options;
    let client = new EndpointClient(plane, endpointAddress(namespace, meta.name, ep.name), undefined, instance === undefined ? clientOptions : { ...clientOptions, router: 'queue' });
    if (instance !== undefined) client = client.direct(instance);
    out[ep.method] = ep.stream
      ? (req: unknown, o?: StreamOptions) => client.stream(req, o)
      : (req: unknown, o?: CallOptions) => client.call(req, o);
  }
  return Object.freeze(out) as TypedClient<C>;
}
