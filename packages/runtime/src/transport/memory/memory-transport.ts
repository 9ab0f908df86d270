import { randomBytes } from 'node:crypto';
import { BehaviorSubject, type Observable } from 'rxjs';
import { TroupeError } from '../../errors';
import type {
  Headers,
  MessageHandler,
  Persistence,
  PublishOptions,
  RequestOptions,
  SubscribeOptions,
  Transport,
  TransportMessage,
  TransportSubscription,
} from '../transport';
import { TransportStatus } from '../transport';
import { MemoryPersistence } from './memory-kv';

/**
 * NATS's default `max_payload` (1 MiB), the memory network's default too; the
 * NATS server can be configured up to 64 MiB.
 *
 * @example
 * new MemoryNetwork({ maxPayload: 8 * MEMORY_DEFAULT_MAX_PAYLOAD });
 */
export const MEMORY_DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/**
 * Options of {@link MemoryNetwork}.
 *
 * @example
 * new MemoryNetwork({ name: 'tests', maxPayload: 64 * 1024 });
 */
export interface MemoryNetworkOptions {
  /** Largest message (payload + encoded headers) accepted, in bytes. Default 1 MiB, as NATS. */
  maxPayload?: number;
  /** A name for logs and `describe`; a random one by default. */
  name?: string;
}

/**
 * Counters of a {@link MemoryNetwork}, for tests that prove nothing leaks.
 *
 * @example
 * await transport.close();
 * assert.equal(network.stats(), { connections: 0, subscriptions: 0, queued: 0 });
 */
export interface MemoryNetworkStats {
  /** Connections not yet closed. */
  connections: number;
  /** Subscriptions still receiving (draining ones and durable-log consumers included). */
  subscriptions: number;
  /** Deliveries queued and not yet made. */
  queued: number;
}

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
const ROUTE_CACHE_MAX = 4096;
// Deliveries per queue chunk: growth never copies, and a drained burst leaves one spare chunk.
const CHUNK = 2048;
// setTimeout fires at once (with a warning) past 2^31 - 1 ms.
const MAX_TIMER_MS = 2 ** 31 - 1;
const EMPTY = new Uint8Array(0);
const WHITESPACE = /\s/;
// nats.js refuses header keys outside printable ASCII or containing ':'.
const HEADER_KEY = /^[!-9;-~]+$/;
const CRLF = /[\r\n]/;

/**
 * An embedded, in-process message bus faithful to core NATS: `*` and `>`
 * wildcards, queue groups, "no responders" replies, headers, a payload limit,
 * per-publisher ordering and asynchronous delivery. Instance-scoped: two
 * networks in one process never see each other. Each {@link connect} is one
 * "connection" that implements the {@link Transport} seam.
 *
 * @example
 * const network = new MemoryNetwork();
 * const a = network.connect('worker');
 * const b = network.connect('client');
 * a.subscribe('echo', (m) => a.publish(m.reply!, m.data));
 * const reply = await b.request('echo', new Uint8Array([1]), { timeoutMs: 1000 });
 */
export class MemoryNetwork {
  readonly name: string;
  readonly maxPayload: number;
  private readonly bus: MemoryBus;
  private connectSeq = 0;

  constructor(options: MemoryNetworkOptions = {}) {
    const max = options.maxPayload ?? MEMORY_DEFAULT_MAX_PAYLOAD;
    if (!Number.isSafeInteger(max) || max <= 0) {
      throw new TroupeError('BAD_REQUEST', `maxPayload must be a positive integer, got ${String(options.maxPayload)}`);
    }
    this.maxPayload = max;
    this.name = options.name ?? randomBytes(4).toString('hex');
    this.bus = new MemoryBus(max);
  }

  /** Opens one connection to this network. */
  connect(name?: string): MemoryTransport {
    this.connectSeq++;
    return new MemoryTransport(this.bus, `${this.name}/${name ?? `c${this.connectSeq}`}`);
  }

  /** How many connections, subscriptions and queued deliveries are live now. */
  stats(): MemoryNetworkStats {
    return { connections: this.bus.openConnections, subscriptions: this.bus.subscriptionCount, queued: this.bus.queued };
  }
}

/**
 * One connection to a {@link MemoryNetwork}; obtain it with
 * `network.connect()`. Differences from NATS are deliberate and few: a
 * publish subject with wildcards, empty tokens or whitespace is refused with
 * `BAD_REQUEST` (nats.js sends those), and all receivers of one message share
 * one copy of its bytes.
 *
 * @example
 * const t = new MemoryNetwork().connect();
 * t.subscribe('jobs.*', (m) => console.log(m.subject), { queue: 'workers' });
 * t.publish('jobs.resize', new Uint8Array([42]));
 */
export class MemoryTransport implements Transport {
  readonly describe: string;
  readonly persistence: Persistence;
  private readonly statusSubject = new BehaviorSubject<TransportStatus>(TransportStatus.CONNECTED);
  readonly status$: Observable<TransportStatus> = this.statusSubject.asObservable();
  /** @internal Subscriptions of this connection still receiving (for close()). */
  readonly subs = new Set<MemorySub>();
  /** Rejecters of requests awaiting a reply (for close()). */
  private readonly requests = new Set<(err: unknown) => void>();
  private readonly inboxRoot = `_INBOX.${randomBytes(9).toString('base64url').replace(/[-_]/g, 'x')}`;
  private requestSeq = 0;
  private closing: Promise<void> | undefined;

  /** Use {@link MemoryNetwork.connect}. */
  constructor(
    private readonly bus: MemoryBus,
    name: string,
  ) {
    this.persistence = bus.persistence;
    this.describe = `memory network ${name}`;
    bus.openConnections++;
  }

  get maxPayload(): number {
    return this.bus.maxPayload;
  }

  get status(): TransportStatus {
    return this.statusSubject.value;
  }

  publish(subject: string, data: Uint8Array, options?: PublishOptions): void {
    if (this.closing !== undefined) throw this.unavailable(`message to ${subject} not sent`);
    this.send(subject, data, options);
  }

  subscribe(subject: string, handler: MessageHandler, options?: SubscribeOptions): TransportSubscription {
    if (this.closing !== undefined) throw this.unavailable(`cannot subscribe to ${subject}`);
    return this.bus.subscribe(new MemorySub(this.bus, { conn: this, subject, queue: options?.queue, handler }));
  }

  request(subject: string, data: Uint8Array, options: RequestOptions): Promise<TransportMessage> {
    if (this.closing !== undefined) return Promise.reject(this.unavailable(`request to ${subject} not sent`));
    const timeoutMs = options.timeoutMs;
    if (!(timeoutMs > 0 && timeoutMs <= MAX_TIMER_MS)) {
      return Promise.reject(new TroupeError('BAD_REQUEST', `request timeoutMs must be in (0, ${MAX_TIMER_MS}], got ${String(timeoutMs)}`));
    }
    return new Promise<TransportMessage>((resolve, reject) => {
      // One literal inbox per request, as nats.js's old-style request; the
      // no-responders status comes back to it from the bus.
      const inbox = `${this.inboxRoot}.${++this.requestSeq}`;
      const handler: MessageHandler = (msg) => {
        finish();
        if (msg.noResponders) reject(new TroupeError('NO_INSTANCES', `no responders on ${subject}`));
        else resolve(msg);
      };
      const sub = this.bus.subscribe(new MemorySub(this.bus, { conn: this, subject: inbox, queue: undefined, handler }));
      const fail = (err: unknown): void => {
        finish();
        reject(err);
      };
      const timer = setTimeout(() => fail(new TroupeError('TIMEOUT', `no reply from ${subject} in ${timeoutMs} ms`)), timeoutMs);
      const finish = (): void => {
        clearTimeout(timer);
        sub.unsubscribe();
        this.requests.delete(fail);
      };
      this.requests.add(fail);
      try {
        this.send(subject, data, { reply: inbox, headers: options.headers });
      } catch (err) {
        fail(err);
      }
    });
  }

  private send(subject: string, data: Uint8Array, options: PublishOptions | undefined): void {
    const bus = this.bus;
    const route = bus.route(subject);
    const reply = options?.reply;
    const headers = options?.headers;
    let copied: Record<string, string> | undefined;
    let size = data.length;
    if (headers !== undefined) {
      copied = Object.create(null) as Record<string, string>;
      size += encodedHeaderSize(headers, copied);
    }
    if (size > bus.maxPayload) {
      throw new TroupeError('PAYLOAD_TOO_LARGE', `message of ${size} bytes to ${subject} exceeds the network's max payload of ${bus.maxPayload} bytes`, {
        data: { size, max: bus.maxPayload },
      });
    }
    if (reply !== undefined) bus.checkReply(reply);
    const logs = bus.persistence.logs;
    if (logs.capturing) logs.capture(subject, data, copied);
    if (route.empty) {
      if (reply !== undefined) bus.noResponders(this, reply);
      return;
    }
    // No copy: the bytes become the transport's at publish (Transport.publish), as on NATS.
    bus.fanOut(route, new MemoryMessage(subject, reply, data.length === 0 ? EMPTY : data, copied));
  }

  flush(): Promise<void> {
    return this.bus.flushed();
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    // As nats.js drain(): no new publishes, deliver what already arrived, then close.
    await Promise.all([...this.subs].map((s) => s.drain()));
    for (const fail of [...this.requests]) fail(this.unavailable('connection closed before the reply arrived'));
    this.bus.openConnections--;
    this.statusSubject.next(TransportStatus.CLOSED);
  }

  private unavailable(what: string): TroupeError {
    return new TroupeError('UNAVAILABLE', `${this.describe} is ${this.statusSubject.value === TransportStatus.CLOSED ? 'closed' : 'closing'}; ${what}`);
  }
}

/** The messages subscribers receive; one instance is shared by all receivers of a publish. */
class MemoryMessage implements TransportMessage {
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
interface MemorySubSpec {
  conn: MemoryTransport;
  subject: string;
  queue: string | undefined;
  handler: MessageHandler;
}

/** @internal One subscription on the bus. */
export class MemorySub implements TransportSubscription {
  closed = false;
  /** Deliveries queued for this subscription and not yet made. */
  pending = 0;
  /** Set while draining: resolves drain() once `pending` reaches 0. */
  drained: (() => void) | undefined;
  private draining: Promise<void> | undefined;
  readonly conn: MemoryTransport;
  readonly subject: string;
  readonly tokens: readonly string[];
  readonly wildcard: boolean;
  readonly queue: string | undefined;
  readonly handler: MessageHandler;

  constructor(
    private readonly bus: MemoryBus,
    spec: MemorySubSpec,
  ) {
    this.conn = spec.conn;
    this.subject = spec.subject;
    this.tokens = spec.subject.split('.');
    this.wildcard = this.tokens.some((t) => t === '*' || t === '>');
    this.queue = spec.queue;
    this.handler = spec.handler;
  }

  unsubscribe(): void {
    if (this.closed) return;
    if (this.draining === undefined) this.bus.unroute(this);
    this.release();
  }

  drain(): Promise<void> {
    if (this.draining !== undefined) return this.draining;
    if (this.closed) return Promise.resolve();
    this.bus.unroute(this);
    if (this.pending === 0) {
      this.release();
      this.draining = Promise.resolve();
    } else {
      this.draining = new Promise<void>((resolve) => {
        this.drained = resolve;
      });
    }
    return this.draining;
  }

  /** Closes for good; queued deliveries to a closed subscription are skipped. */
  release(): void {
    if (this.closed) return;
    this.closed = true;
    this.conn.subs.delete(this);
    this.bus.subscriptionCount--;
    const done = this.drained;
    this.drained = undefined;
    done?.();
  }
}

/** Who receives a message published to one subject: every plain subscriber, one member per queue group. */
interface Route {
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
  private readonly literal = new Map<string, MemorySub[]>();
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
    if (sub.wildcard) {
      // Copy on write: a route being built never sees the list change under it.
      this.wildcards = [...this.wildcards, sub];
      this.invalidateMatching(sub.tokens);
    } else {
      const list = this.literal.get(sub.subject);
      if (list === undefined) this.literal.set(sub.subject, [sub]);
      else list.push(sub);
      this.routes.delete(sub.subject);
    }
    sub.conn.subs.add(sub);
    this.subscriptionCount++;
    return sub;
  }

  /** Removes a subscription from routing; queued deliveries stay queued (drain) or are skipped (closed). */
  unroute(sub: MemorySub): void {
    if (sub.wildcard) {
      this.wildcards = this.wildcards.filter((s) => s !== sub);
      this.invalidateMatching(sub.tokens);
    } else {
      const list = this.literal.get(sub.subject);
      if (list !== undefined) {
        const i = list.indexOf(sub);
        if (i >= 0) list.splice(i, 1);
        if (list.length === 0) this.literal.delete(sub.subject);
      }
      this.routes.delete(sub.subject);
    }
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
    if (literal !== undefined) for (const s of literal) add(s);
    for (const s of this.wildcards) if (tokensMatch(s.tokens, tokens)) add(s);
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
          sub.handler(msg);
        } catch (e) {
          // A handler must not throw; one that does never stops delivery to others.
          process.emitWarning(`troupe: message handler for ${sub.subject} threw: ${(e as Error)?.message ?? String(e)}`);
        }
        if (sub.pending === 0 && sub.drained !== undefined) sub.release();
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

interface Chunk {
  readonly subs: (MemorySub | undefined)[];
  readonly msgs: (MemoryMessage | undefined)[];
  next: Chunk | undefined;
}

function newChunk(): Chunk {
  return { subs: new Array<MemorySub | undefined>(CHUNK).fill(undefined), msgs: new Array<MemoryMessage | undefined>(CHUNK).fill(undefined), next: undefined };
}

/** A FIFO of (subscription, message) pairs in linked fixed-size chunks. */
class DeliveryQueue {
  size = 0;
  private head: Chunk = newChunk();
  private tail: Chunk = this.head;
  private headIdx = 0;
  private tailIdx = 0;
  private spare: Chunk | undefined;

  push(sub: MemorySub, msg: MemoryMessage): void {
    if (this.tailIdx === CHUNK) {
      const c = this.spare ?? newChunk();
      this.spare = undefined;
      this.tail.next = c;
      this.tail = c;
      this.tailIdx = 0;
    }
    this.tail.subs[this.tailIdx] = sub;
    this.tail.msgs[this.tailIdx] = msg;
    this.tailIdx++;
    this.size++;
  }

  /** The subscription of the next pair; call only when size > 0, before shift(). */
  peekSub(): MemorySub {
    if (this.headIdx === CHUNK) {
      const done = this.head;
      this.head = done.next as Chunk;
      done.next = undefined;
      this.spare = done;
      this.headIdx = 0;
    }
    return this.head.subs[this.headIdx] as MemorySub;
  }

  /** Removes the next pair and returns its message; call after peekSub(). */
  shift(): MemoryMessage {
    const i = this.headIdx;
    const msg = this.head.msgs[i] as MemoryMessage;
    this.head.subs[i] = undefined;
    this.head.msgs[i] = undefined;
    this.size--;
    if (this.size === 0) {
      // Empty: start over at the front of the current chunk.
      this.tail = this.head;
      this.head.next = undefined;
      this.headIdx = 0;
      this.tailIdx = 0;
    } else {
      this.headIdx = i + 1;
    }
    return msg;
  }
}

/**
 * Why `subject` is not a valid subject, or undefined when it is. Tokens are
 * separated by `.` and never empty; no whitespace anywhere. With
 * `wildcards`, a whole token `*` matches one token and a last token `>`
 * matches one or more; without, both are refused. As in NATS, `*` or `>`
 * inside a longer token (`a*b`) is a literal character.
 *
 * @example
 * subjectError('a.*.c', true); // undefined
 * subjectError('a..b', false); // 'empty token'
 */
export function subjectError(subject: string, wildcards: boolean): string | undefined {
  if (typeof subject !== 'string' || subject.length === 0) return 'empty subject';
  if (WHITESPACE.test(subject)) return 'whitespace';
  let start = 0;
  for (let i = 0; i <= subject.length; i++) {
    if (i < subject.length && subject.charCodeAt(i) !== 46 /* . */) continue;
    const len = i - start;
    if (len === 0) return 'empty token';
    if (len === 1) {
      const c = subject.charCodeAt(start);
      if (c === 42 /* * */ || c === 62 /* > */) {
        if (!wildcards) return 'wildcards are not allowed when publishing';
        if (c === 62 && i !== subject.length) return '">" must be the last token';
      }
    }
    start = i + 1;
  }
  return undefined;
}

/**
 * Whether subscription subject `pattern` matches the literal `subject`.
 *
 * @example
 * subjectMatches('a.>', 'a.b.c'); // true
 * subjectMatches('a.>', 'a');     // false: ">" needs at least one token
 */
export function subjectMatches(pattern: string, subject: string): boolean {
  return tokensMatch(pattern.split('.'), subject.split('.'));
}

function tokensMatch(pattern: readonly string[], subject: readonly string[]): boolean {
  const n = pattern.length;
  for (let i = 0; i < n; i++) {
    const p = pattern[i];
    if (p === '>') return subject.length > i;
    if (i >= subject.length) return false;
    if (p !== '*' && p !== subject[i]) return false;
  }
  return n === subject.length;
}

/**
 * The size NATS counts for headers (`NATS/1.0\r\n`, `key: value\r\n` each,
 * `\r\n`), validating keys and values as nats.js does and filling `into`
 * with a copy so later mutation by the sender is not seen by receivers.
 */
function encodedHeaderSize(headers: Headers, into: Record<string, string>): number {
  let size = 12;
  for (const key of Object.keys(headers)) {
    const value = headers[key];
    if (typeof value !== 'string') throw new TroupeError('BAD_REQUEST', `header ${JSON.stringify(key)} must be a string`);
    if (!HEADER_KEY.test(key)) throw new TroupeError('BAD_REQUEST', `invalid header name ${JSON.stringify(key)}`);
    if (CRLF.test(value)) throw new TroupeError('BAD_REQUEST', `header ${key} must not contain CR or LF`);
    into[key] = value;
    size += Buffer.byteLength(key) + Buffer.byteLength(value) + 4;
  }
  return size;
}
