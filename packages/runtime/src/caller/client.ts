import type { CallMeter } from '../plane/meter';
import { map, type Observable } from 'rxjs';
import { type CallOptions, carriedHeaders, metadataHeader, precheck, remainingBudget, type RetryOptions, type StreamOptions } from './call-options';
import { callAttributes, endSpan, startClientSpan, tracingActive } from '../plane/telemetry';
import { CallerStream, type StreamRoute, type StreamSink, type StreamTarget } from './caller-stream';
import type { EndpointView } from '../discovery/endpoint-view';
import { TroupeError, toTroupeError } from '../errors';
import { validateInstanceId } from '../names';
import { withTimeout } from '../timeout';
import type { Plane } from '../plane/plane';
import type { InstanceRecord } from '../discovery/registry';
import { resolveRouter, type Router, type RouterSpec } from '../discovery/routers';
import { type EndpointAddress, mailboxSubject, ownMailboxSubject, queueSubject } from '../wire/subjects';
import { explainNoInstances } from './not-found';
import { type Route, UnaryCall } from './unary-call';
import { type StreamObservable, StreamIterator, streamObservable } from './stream-iterator';

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
/** The arguments of the next {@link EndpointClient.startRouted}; set just before the promise that runs it is made. */
const nextRouted: {
  client: EndpointClient | undefined;
  route: Route | undefined;
  request: unknown;
  data: Uint8Array | undefined;
  budget: number;
  options: CallOptions | undefined;
  carried: Record<string, string> | undefined;
} = { client: undefined, route: undefined, request: undefined, data: undefined, budget: 0, options: undefined, carried: undefined };

export class EndpointClient<Req = unknown, Res = unknown> {
  /** The subject requests are published to when no client-side router picks an instance. */
  readonly subject: string;
  private readonly router: Router | 'queue';
  private viewCache: EndpointView | undefined;
  /** The route of a call with the client's own router and retry options (see {@link callRouted}). */
  private routeCache: Route | undefined;
  /** Client-side counters of this endpoint (shared by every client of it in this runtime). */
  private readonly meter: CallMeter | undefined;

  constructor(
    private readonly plane: Plane,
    readonly address: EndpointAddress,
    /** The instance this client is pinned to, if any. */
    readonly instanceId?: string,
    private readonly options: ClientOptions = {},
  ) {
    this.subject = instanceId === undefined ? queueSubject(address) : mailboxSubject(address, instanceId);
    this.router = resolveRouter(options.router ?? plane.settings.router);
    this.meter = plane.meter.callMeter(address.namespace, address.component, address.endpoint);
    if (this.router !== 'queue' && !plane.discovery) {
      throw new TroupeError(
        'BAD_REQUEST',
        `router ${this.router.name} needs discovery, which this runtime has turned off; use router 'queue' or enable discovery`,
      );
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
   * TroupeError: `NO_INSTANCES` at once when nothing listens (`NOT_FOUND`
   * when the component runs but has no endpoint of that name; `UNAVAILABLE`
   * once the runtime is closed), `TIMEOUT` at
   * the deadline, `CANCELLED` on abort, `PAYLOAD_TOO_LARGE` at once for an
   * oversized request, or whatever the handler threw (normalised). A request
   * an instance never received ("no responders", or refused while it stops)
   * goes to another instance at once.
   *
   * @example
   * const metrics = await client.call(undefined, { timeout: 500 });
   */
  call(request: Req, options?: CallOptions): Promise<Res> {
    if (this.plane.closed) return Promise.reject(this.plane.refusal(`call ${this.subject}`));
    const budget = remainingBudget(options, this.plane.settings.requestTimeoutMs);
    const refusal = precheck(options, budget, this.subject);
    if (refusal) return Promise.reject(refusal);
    let router: Router | 'queue';
    let data: Uint8Array | undefined;
    let meta: string | undefined;
    try {
      router = this.routerFor(options);
      meta = metadataHeader(options);
    } catch (err) {
      return Promise.reject(err);
    }
    const pinned = router === 'queue' || this.instanceId !== undefined;
    // With instances in this runtime, the first attempt (made before call() returns) copies or encodes the request
    // once it knows where it goes (in-process: no encoding); a call that waits for discovery encodes it now.
    if (this.plane.local.size === 0 || !(pinned || this.view().synced)) {
      try {
        data = this.plane.codec.encode(request);
      } catch (err) {
        return Promise.reject(toTroupeError(err, 'BAD_REQUEST'));
      }
    }
    // Span work only when the application registered a tracer provider.
    const span = tracingActive() ? startClientSpan(this.subject, options?.parent?.trace, callAttributes(this.address, this.subject, false)) : undefined;
    const carried = carriedHeaders(options, meta, span);
    const reply = pinned
      ? new Promise<Res>((resolve, reject) => {
          const c = this.unary(resolve, reject);
          c.carried = carried;
          c.request = request;
          c.send(this.subject, data, budget, options, this.instanceId !== undefined);
        })
      : this.callRouted(router as Router, request, data, budget, options, carried);
    if (!span) return reply;
    return reply.then(
      (v) => {
        endSpan(span.span);
        return v;
      },
      (err: unknown) => {
        endSpan(span.span, toTroupeError(err));
        throw err;
      },
    );
  }

  private unary(resolve: (v: Res) => void, reject: (e: TroupeError) => void): UnaryCall<Res> {
    const c = UnaryCall.take<Res>(this.plane, resolve, reject, this.address);
    c.meter = this.meter;
    return c;
  }

  /**
   * The router of one request: `queue` for a pinned client (its one mailbox is
   * the route), else the call's own `router` option, else the client's.
   * Throws BAD_REQUEST for an unknown router spec.
   */
  private routerFor(options: CallOptions | undefined): Router | 'queue' {
    if (this.instanceId !== undefined) return 'queue';
    return options?.router === undefined ? this.router : resolveRouter(options.router);
  }

  private callRouted(
    router: Router,
    request: Req,
    data: Uint8Array | undefined,
    budget: number,
    options: CallOptions | undefined,
    carried: Record<string, string> | undefined,
  ): Promise<Res> {
    const view = this.view();
    let route: Route;
    if (options?.retry === undefined && router === this.router) {
      // The client's own router and retry: one route for all such calls (no object per call).
      route = this.routeCache ??= { view, router, filter: this.options.filter, retry: this.options.retry, subject: this.subject };
    } else {
      const retry = options?.retry === false ? undefined : (options?.retry ?? this.options.retry);
      route = { view, router, filter: this.options.filter, retry, subject: this.subject };
    }
    if (view.synced) {
      // The hot path: the first list is read; the executor is one shared function (no closure, no context per call).
      const next = nextRouted;
      next.client = this as EndpointClient;
      next.route = route;
      next.request = request;
      next.data = data;
      next.budget = budget;
      next.options = options;
      next.carried = carried;
      return new Promise<Res>(EndpointClient.startRouted as (resolve: (v: Res) => void, reject: (e: TroupeError) => void) => void);
    }
    return this.callRoutedLater(route, request, data, budget, options, carried);
  }

  /** The executor of a {@link callRouted} hot-path promise: runs synchronously inside `new Promise`, taking its arguments from {@link nextRouted}. */
  private static startRouted(this: void, resolve: (v: unknown) => void, reject: (e: TroupeError) => void): void {
    const next = nextRouted;
    const client = next.client as EndpointClient;
    const { route, request, data, budget, options, carried } = next;
    // Cleared before sending: an in-process handler run from here may make calls of its own.
    next.client = undefined;
    next.route = undefined;
    next.request = undefined;
    next.data = undefined;
    next.options = undefined;
    next.carried = undefined;
    const c = client.unary(resolve, reject);
    c.carried = carried;
    c.request = request;
    c.sendRouted(route as Route, data, budget, options);
  }

  /** {@link callRouted} before the first list of instances is read: waits for it within the budget. */
  private callRoutedLater(
    route: Route,
    request: Req,
    data: Uint8Array | undefined,
    budget: number,
    options: CallOptions | undefined,
    carried: Record<string, string> | undefined,
  ): Promise<Res> {
    const view = route.view;
    const go = (left: number) =>
      new Promise<Res>((resolve, reject) => {
        const c = this.unary(resolve, reject);
        c.carried = carried;
        c.request = request;
        c.sendRouted(route, data, left, options);
      });
    const started = Date.now();
    return untilReady(view, budget, this.subject).then(() => {
      const left = budget - (Date.now() - started);
      // Cancelled (or out of time) while the first list was read: the abort event has fired already, nobody would see it later.
      const late = precheck(options, left, this.subject);
      if (late) throw late;
      return go(left);
    });
  }

  /**
   * A cold Observable of the endpoint's items: subscribing sends the
   * request; unsubscribing cancels the remote handler. Items carry sequence
   * numbers and arrive in order; the worker never runs more than the credit
   * window ahead of the consumer; a worker that dies or freezes becomes
   * `INSTANCE_LOST` (with `data.delivered`) within the runtime's
   * `streamIdleMs`, or migrates with `options.migrate`. Errors are
   * TroupeErrors. The Observable is also an AsyncIterable that pulls (see
   * {@link iterate}).
   *
   * @example
   * client.stream({ prompt }).pipe(take(10)).subscribe(console.log);
   */
  stream(request: Req, options?: StreamOptions<Req, Res>): StreamObservable<Res> {
    return streamObservable<Res>((sink) => this.openStream(sink, request, options));
  }

  /**
   * Pull-based consumption: the request goes out on the first `next()`, and
   * credit is granted as the consumer takes items, so a slow *async* consumer
   * pauses the producer (an Observable pushes: its credit follows delivery).
   * Leaving the loop early cancels the remote handler.
   *
   * @example
   * for await (const token of client.iterate({ prompt })) await socket.write(token);
   */
  iterate(request: Req, options?: StreamOptions<Req, Res>): AsyncIterable<Res> {
    return { [Symbol.asyncIterator]: () => new StreamIterator<Res>((sink) => this.openStream(sink, request, options)) };
  }

  /** Starts one stream into `sink`, routed like `call`; re-sends and migrations go through the same router. */
  private openStream(sink: StreamSink<Res>, request: Req, options: StreamOptions<Req, Res> | undefined): CallerStream<Req, Res> {
    const s = new CallerStream<Req, Res>(this.plane, this.address, sink);
    if (this.plane.closed) {
      sink.error(this.plane.refusal(`stream from ${this.subject}`));
      return s;
    }
    let router: Router | 'queue';
    try {
      router = this.routerFor(options);
    } catch (err) {
      sink.error(err);
      return s;
    }
    if (router === 'queue') {
      // The queue group re-routes by itself (a killed member leaves it at once); a pinned client has nowhere else to go.
      const target: StreamTarget = { subject: this.subject };
      s.start(target, request, options, this.instanceId === undefined ? () => target : undefined);
      return s;
    }
    const view = this.view();
    const picker = router;
    const route: StreamRoute = (failed) => {
      if (failed !== undefined) view.inhibit(failed);
      const id = view.pick(picker, request, { filter: this.options.filter, exclude: failed === undefined ? undefined : new Set([failed]) });
      return id === undefined ? undefined : { subject: ownMailboxSubject(this.address, id), instanceId: id, track: (f) => view.track(id, f) };
    };
    const go = (): void => {
      if (sink.closed) return;
      const target = route(undefined);
      if (!target) {
        const err = new TroupeError('NO_INSTANCES', `no instance of ${this.subject} is registered${this.options.filter ? ' matching the filter' : ''}`);
        void explainNoInstances(this.plane, this.address, err).then((e) => sink.error(e));
      } else s.start(target, request, options, route);
    };
    if (view.synced) go();
    else view.ready.then(go, (err: unknown) => sink.error(toTroupeError(err, 'UNAVAILABLE')));
    return s;
  }
}

function untilReady(view: EndpointView, budget: number, subject: string): Promise<void> {
  return withTimeout(view.ready, budget, () => {
    throw new TroupeError('TIMEOUT', `discovery of ${subject} did not complete within ${budget} ms`);
  });
}
