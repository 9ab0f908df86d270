import { TroupeError } from '../../errors';
import { subjectError, tokensMatch, WHITESPACE } from '../../wire/subject-grammar';
import { deliverTo, type MessageHandler, type MessageTarget, type TransportMessage, type TransportSubscription } from '../transport';
import { DeliveryQueue } from './delivery-queue';
import { MemoryPersistence } from './memory-kv';
import type { MemoryTransport } from './memory-transport';

// Delivery yields to the event loop (setImmediate) after this much work, so
// timers and I/O are not starved by a chatty pair of handlers. A time budget,
// not a count: a count below a producer's rate per turn grows the backlog
// without bound (measured: 1024 per turn let 2 subs x 1000 per turn pile up
// to 400 MB).
const YIELD_AFTER_MS = 5;
// How many deliveries between two looks at the clock.
const CLOCK_EVERY = 256;
// Route cache bound; NATS's sublist caches 1024 subjects and sweeps at random.
// Unique reply subjects would grow it without bound, so the oldest quarter goes.
export const ROUTE_CACHE_MAX = 4096;
export const EMPTY = new Uint8Array(0);

/** The messages subscribers receive; one instance is shared by all receivers of a publish. */
export class MemoryMessage implements TransportMessage {
  // Positional on purpose: one is built per publish on the hot path.
  constructor(
    readonly subject: string,
    readonly reply: string | undefined,
    readonly data: Uint8Array,
    private readonly headers?: Record<string, string>,
  ) {}

  get noResponders(): boolean {
    return false;
  }

  header(name: string): string | undefined {
    // A null-prototype copy, so `header('toString')` is undefined as it should be.
    return this.headers === undefined ? undefined : this.headers[name];
  }
}

/** The 503 status message nats-server sends when a publish with a reply subject found no subscriber. */
class NoRespondersMessage extends MemoryMessage {
  constructor(subject: string) {
    super(subject, undefined, EMPTY);
  }

  override get noResponders(): boolean {
    return true;
  }
}

/** What {@link MemorySub} is made of. */
export interface MemorySubSpec {
  conn: MemoryTransport;
  subject: string;
  queue: string | undefined;
  handler: MessageHandler | MessageTarget;
}

/** A token that is `*` or `>`: the subject is a wildcard. */
const WILDCARD_TOKEN = /(?:^|\.)[*>](?:\.|$)/;

/** A subscription's state: routed, draining (unrouted, deliveries still queued), or closed. */
const OPEN = 0;
const DRAINING = 1;
const CLOSED = 2;

/** @internal One subscription on the bus: 100,000 instance mailboxes hold one each, so it is kept small (5 fields). */
export class MemorySub implements TransportSubscription {
  /**
   * Its state and its pending deliveries in one number, not two fields (−8 B per subscription):
   * `pending × 4 + state`. Arithmetic, not bit operations: no 32-bit overflow however many are queued.
   */
  private packed = OPEN;

  /** {@link OPEN}, {@link DRAINING} (its wait is its connection's, see `MemoryTransport.draining`) or {@link CLOSED}. */
  private get state(): number {
    return this.packed % 4;
  }
  private set state(v: number) {
    this.packed += v - (this.packed % 4);
  }
  /** Deliveries queued for this subscription and not yet made. */
  get pending(): number {
    return (this.packed - (this.packed % 4)) / 4;
  }
  set pending(n: number) {
    this.packed = n * 4 + (this.packed % 4);
  }
  readonly conn: MemoryTransport;
  readonly subject: string;
  /**
   * Its tokens (a wildcard subscription) and queue group, if it has either: one field, not two, on a
   * literal subscription without a queue group (100,000 instance mailboxes: −8 B each).
   */
  private readonly shape: { readonly tokens: readonly string[] | undefined; readonly queue: string | undefined } | undefined;
  readonly handler: MessageHandler | MessageTarget;

  constructor(spec: MemorySubSpec) {
    this.conn = spec.conn;
    this.subject = spec.subject;
    // Only a wildcard matches by tokens: a literal subscription keeps none.
    const tokens = WILDCARD_TOKEN.test(spec.subject) ? spec.subject.split('.') : undefined;
    this.shape = tokens === undefined && spec.queue === undefined ? undefined : { tokens, queue: spec.queue };
    this.handler = spec.handler;
  }

  /** The subject's tokens, for a wildcard subscription; undefined for a literal one (it matches by the whole subject). */
  get tokens(): readonly string[] | undefined {
    return this.shape?.tokens;
  }

  get queue(): string | undefined {
    return this.shape?.queue;
  }

  /** Closed for good: queued deliveries to it are skipped. */
  get closed(): boolean {
    return this.state === CLOSED;
  }

  /** Draining, and the last delivery queued for it was made: it closes now. */
  get drained(): boolean {
    return this.state === DRAINING && this.pending === 0;
  }

  unsubscribe(): void {
    if (this.state === CLOSED) return;
    if (this.state === OPEN) this.conn.bus.unroute(this);
    this.release();
  }

  drain(): Promise<void> {
    if (this.state === DRAINING) return (this.conn.draining.get(this) as DrainWait).promise;
    if (this.state === CLOSED) return Promise.resolve();
    this.conn.bus.unroute(this);
    if (this.pending === 0) {
      this.release();
      return Promise.resolve();
    }
    const wait = new DrainWait();
    this.conn.draining.set(this, wait);
    this.state = DRAINING;
    return wait.promise;
  }

  /** Closes for good; queued deliveries to a closed subscription are skipped. */
  release(): void {
    if (this.state === CLOSED) return;
    const was = this.state;
    this.state = CLOSED;
    this.conn.bus.subscriptionCount--;
    if (was === DRAINING) {
      const wait = this.conn.draining.get(this);
      this.conn.draining.delete(this);
      wait?.resolve();
    }
  }
}

/** @internal A drain waiting for the deliveries already queued (made only for a subscription that drains with some). */
export class DrainWait {
  resolve!: () => void;
  readonly promise = new Promise<void>((resolve) => {
    this.resolve = resolve;
  });
}

/** Who receives a message published to one subject: every plain subscriber, one member per queue group. */
export interface Route {
  readonly tokens: readonly string[];
  readonly plain: readonly MemorySub[];
  readonly groups: readonly (readonly MemorySub[])[];
  readonly empty: boolean;
}

/**
 * @internal The state of one network: the subscription index, the route
 * cache and the delivery queue. Not exported from the package.
 */
export class MemoryBus {
  openConnections = 0;
  subscriptionCount = 0;
  /** Literal subscriptions by subject: the subscription itself when it is the only one (an instance's mailbox), not an array of one. */
  private readonly literal = new Map<string, MemorySub | MemorySub[]>();
  private wildcards: MemorySub[] = [];
  private readonly routes = new Map<string, Route>();

  // Deliveries in publish order, so per-publisher order holds for every receiver.
  private readonly queue = new DeliveryQueue();
  private scheduled = false;
  private enqueued = 0;
  private delivered = 0;
  private flushWaiters: { target: number; resolve: () => void }[] = [];

  /** Key-value buckets (and later logs) of this network. */
  readonly persistence = new MemoryPersistence();

  constructor(readonly maxPayload: number) {
    // A log consumer is a subscription on NATS (its pull inbox): count it so leak tests see it.
    this.persistence.logs.onConsumers = (delta) => {
      this.subscriptionCount += delta;
    };
  }

  get queued(): number {
    return this.queue.size;
  }

  /** Cached routes (bounded by ROUTE_CACHE_MAX; unique reply subjects churn through it). */
  get cachedRoutes(): number {
    return this.routes.size;
  }

  /** Who receives a publish to `subject`; throws BAD_REQUEST for a subject one cannot publish to. */
  route(subject: string): Route {
    return this.routes.get(subject) ?? this.buildRoute(subject);
  }

  /** Throws BAD_REQUEST unless `reply` is a literal subject. */
  checkReply(reply: string): void {
    if (this.routes.has(reply)) return; // cached routes are valid publish subjects
    const why = subjectError(reply, false);
    if (why !== undefined) throw new TroupeError('BAD_REQUEST', `invalid reply subject ${JSON.stringify(reply)}: ${why}`);
  }

  /** Queues `msg` for every plain subscriber of `route` and one member of each queue group. */
  fanOut(route: Route, msg: MemoryMessage): void {
    const plain = route.plain;
    for (let i = 0; i < plain.length; i++) this.enqueue(plain[i] as MemorySub, msg);
    const groups = route.groups;
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i] as readonly MemorySub[];
      // Random pick, as nats-server does.
      this.enqueue(g[(Math.random() * g.length) | 0] as MemorySub, msg);
    }
  }

  /** Validates and indexes a new subscription. */
  subscribe(sub: MemorySub): MemorySub {
    const why = subjectError(sub.subject, true);
    if (why !== undefined) throw new TroupeError('BAD_REQUEST', `invalid subscription subject ${JSON.stringify(sub.subject)}: ${why}`);
    const queue = sub.queue;
    if (queue !== undefined && (queue.length === 0 || WHITESPACE.test(queue))) {
      throw new TroupeError('BAD_REQUEST', `invalid queue group ${JSON.stringify(queue)}: must be non-empty without whitespace`);
    }
    if (sub.tokens !== undefined) {
      // Copy on write: a route being built never sees the list change under it.
      this.wildcards = [...this.wildcards, sub];
      this.invalidateMatching(sub.tokens);
    } else {
      const had = this.literal.get(sub.subject);
      if (had === undefined) this.literal.set(sub.subject, sub);
      else if (Array.isArray(had)) had.push(sub);
      else this.literal.set(sub.subject, [had, sub]);
      this.routes.delete(sub.subject);
    }
    this.subscriptionCount++;
    return sub;
  }

  /** Removes a subscription from routing; queued deliveries stay queued (drain) or are skipped (closed). */
  unroute(sub: MemorySub): void {
    if (sub.tokens !== undefined) {
      this.wildcards = this.wildcards.filter((s) => s !== sub);
      this.invalidateMatching(sub.tokens);
    } else {
      const had = this.literal.get(sub.subject);
      if (had === sub) this.literal.delete(sub.subject);
      else if (Array.isArray(had)) {
        const i = had.indexOf(sub);
        if (i >= 0) had.splice(i, 1);
        if (had.length === 1) this.literal.set(sub.subject, had[0] as MemorySub);
      }
      this.routes.delete(sub.subject);
    }
  }

  /** The target (not a function) a routed subscription of `conn` to the literal `subject` delivers to (see `Transport.targetOf`). */
  targetOf(conn: MemoryTransport, subject: string): MessageTarget | undefined {
    const had = this.literal.get(subject);
    if (had === undefined) return undefined;
    if (!Array.isArray(had)) return had.conn === conn && typeof had.handler === 'object' && had.queue === undefined ? had.handler : undefined;
    for (const s of had) if (s.conn === conn && typeof s.handler === 'object' && s.queue === undefined) return s.handler;
    return undefined;
  }

  /** The subscriptions of `conn` still routed (for its close; draining ones it keeps itself). */
  routedOf(conn: MemoryTransport): MemorySub[] {
    const out: MemorySub[] = [];
    for (const had of this.literal.values()) {
      if (!Array.isArray(had)) {
        if (had.conn === conn) out.push(had);
      } else for (const s of had) if (s.conn === conn) out.push(s);
    }
    for (const s of this.wildcards) if (s.conn === conn) out.push(s);
    return out;
  }

  /** Resolves once every delivery queued so far has been made. */
  flushed(): Promise<void> {
    if (this.delivered >= this.enqueued) return Promise.resolve();
    return new Promise<void>((resolve) => this.flushWaiters.push({ target: this.enqueued, resolve }));
  }

  /**
   * nats-server answers a publish with a reply subject and no interest with a
   * 503 status message, sent only to the publishing connection, to its first
   * subscription matching the reply subject (measured on 2.9.10).
   */
  noResponders(from: MemoryTransport, reply: string): void {
    const route = this.route(reply);
    let target: MemorySub | undefined = route.plain.find((s) => s.conn === from);
    for (let i = 0; target === undefined && i < route.groups.length; i++) target = route.groups[i]?.find((s) => s.conn === from);
    if (target !== undefined) this.enqueue(target, new NoRespondersMessage(reply));
  }

  private buildRoute(subject: string): Route {
    const why = subjectError(subject, false);
    if (why !== undefined) throw new TroupeError('BAD_REQUEST', `invalid publish subject ${JSON.stringify(subject)}: ${why}`);
    const tokens = subject.split('.');
    const plain: MemorySub[] = [];
    const groups = new Map<string, MemorySub[]>();
    const add = (s: MemorySub): void => {
      if (s.queue === undefined) {
        plain.push(s);
        return;
      }
      const g = groups.get(s.queue);
      if (g === undefined) groups.set(s.queue, [s]);
      else g.push(s);
    };
    const literal = this.literal.get(subject);
    if (Array.isArray(literal)) for (const s of literal) add(s);
    else if (literal !== undefined) add(literal);
    for (const s of this.wildcards) if (tokensMatch(s.tokens as readonly string[], tokens)) add(s);
    const route: Route = { tokens, plain, groups: [...groups.values()], empty: plain.length === 0 && groups.size === 0 };
    if (this.routes.size >= ROUTE_CACHE_MAX) {
      // Maps iterate in insertion order: drop the oldest quarter.
      let n = ROUTE_CACHE_MAX >> 2;
      for (const key of this.routes.keys()) {
        this.routes.delete(key);
        if (--n === 0) break;
      }
    }
    this.routes.set(subject, route);
    return route;
  }

  private invalidateMatching(pattern: readonly string[]): void {
    for (const [subject, route] of this.routes) if (tokensMatch(pattern, route.tokens)) this.routes.delete(subject);
  }

  private enqueue(sub: MemorySub, msg: MemoryMessage): void {
    this.queue.push(sub, msg);
    this.enqueued++;
    sub.pending++;
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(this.deliver);
    }
  }

  // An arrow function so it can be handed to queueMicrotask/setImmediate without bind().
  private readonly deliver = (): void => {
    const queue = this.queue;
    const start = performance.now();
    for (let n = 1; queue.size > 0; n++) {
      if (n % CLOCK_EVERY === 0 && performance.now() - start > YIELD_AFTER_MS) {
        setImmediate(this.deliver);
        this.resolveFlushes();
        return;
      }
      const sub = queue.peekSub();
      const msg = queue.shift();
      this.delivered++;
      sub.pending--;
      if (!sub.closed) {
        try {
          deliverTo(sub.handler, msg);
        } catch (e) {
          // A handler must not throw; one that does never stops delivery to others.
          process.emitWarning(`troupe: message handler for ${sub.subject} threw: ${(e as Error)?.message ?? String(e)}`);
        }
        if (sub.drained) sub.release();
      }
    }
    this.scheduled = false;
    this.resolveFlushes();
  };

  private resolveFlushes(): void {
    if (this.flushWaiters.length === 0) return;
    const ready = this.flushWaiters.filter((w) => w.target <= this.delivered);
    if (ready.length === 0) return;
    this.flushWaiters = this.flushWaiters.filter((w) => w.target > this.delivered);
    for (const w of ready) w.resolve();
  }
}
