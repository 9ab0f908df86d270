import { randomBytes } from 'node:crypto';
import { BehaviorSubject, type Observable } from 'rxjs';
import { TroupeError } from '../../errors';
import { checkHeader } from '../../wire/header-grammar';
import type {
  Headers,
  MessageHandler,
  MessageTarget,
  Persistence,
  PublishOptions,
  RequestOptions,
  SubscribeOptions,
  Transport,
  TransportMessage,
  TransportSubscription,
} from '../transport';
import { TransportStatus } from '../transport';
import { type DrainWait, EMPTY, type MemoryBus, MemoryMessage, MemorySub } from './memory-bus';

// setTimeout fires at once (with a warning) past 2^31 - 1 ms.
const MAX_TIMER_MS = 2 ** 31 - 1;

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
  /** @internal Subscriptions of this connection draining with deliveries queued, and their waits (for close(); the routed ones are the bus's). */
  readonly draining = new Map<MemorySub, DrainWait>();
  /** Rejecters of requests awaiting a reply (for close()). */
  private readonly requests = new Set<(err: unknown) => void>();
  private readonly inboxRoot = `_INBOX.${randomBytes(9).toString('base64url').replace(/[-_]/g, 'x')}`;
  private requestSeq = 0;
  private closing: Promise<void> | undefined;

  /** Use {@link MemoryNetwork.connect}. */
  constructor(
    /** @internal */
    readonly bus: MemoryBus,
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

  subscribe(subject: string, handler: MessageHandler | MessageTarget, options?: SubscribeOptions): TransportSubscription {
    if (this.closing !== undefined) throw this.unavailable(`cannot subscribe to ${subject}`);
    return this.bus.subscribe(new MemorySub({ conn: this, subject, queue: options?.queue, handler }));
  }

  targetOf(subject: string): MessageTarget | undefined {
    return this.bus.targetOf(this, subject);
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
      const sub = this.bus.subscribe(new MemorySub({ conn: this, subject: inbox, queue: undefined, handler }));
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
    const headers = options?.headers ?? options?.headerBlock?.record();
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

  /** In-process: the drain always finishes, so there is nothing to bound. */
  async close(): Promise<boolean> {
    this.closing ??= this.shutdown();
    await this.closing;
    return true;
  }

  private async shutdown(): Promise<void> {
    // As nats.js drain(): no new publishes, deliver what already arrived, then close.
    await Promise.all([...this.bus.routedOf(this), ...this.draining.keys()].map((s) => s.drain()));
    for (const fail of [...this.requests]) fail(this.unavailable('connection closed before the reply arrived'));
    this.bus.openConnections--;
    this.statusSubject.next(TransportStatus.CLOSED);
  }

  private unavailable(what: string): TroupeError {
    return new TroupeError('UNAVAILABLE', `${this.describe} is ${this.statusSubject.value === TransportStatus.CLOSED ? 'closed' : 'closing'}; ${what}`);
  }
}

/**
 * The size NATS counts for headers (`NATS/1.0\r\n`, `key: value\r\n` each,
 * `\r\n`), validating keys and values as nats.js does and filling `into`
 * with a copy so later mutation by the sender is not seen by receivers.
 */
function encodedHeaderSize(headers: Headers, into: Record<string, string>): number {
  let size = 12;
  for (const key of Object.keys(headers)) {
    const value = headers[key] as string;
    checkHeader(key, value);
    into[key] = value;
    size += Buffer.byteLength(key) + Buffer.byteLength(value) + 4;
  }
  return size;
}
