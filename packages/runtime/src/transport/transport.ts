import type { Observable } from 'rxjs';

/**
 * The narrow seam between Troupe and a message bus. The core never constructs
 * a transport and never imports `nats`; it receives one of these. Two
 * implementations: NATS (`transport/nats`) and the in-process memory network
 * (`transport/memory`), both held to one conformance suite.
 */
export interface Transport {
  /** Largest message (headers + body) the bus accepts, in bytes. */
  readonly maxPayload: number;
  /** Current connection state. */
  readonly status: TransportStatus;
  /** Connection state changes, for logging and for failing work fast. */
  readonly status$: Observable<TransportStatus>;
  /** A human-readable name of where this transport is connected (for logs and errors). */
  readonly describe: string;

  /**
   * Publishes one message. Throws a TroupeError at once — `PAYLOAD_TOO_LARGE`
   * past {@link maxPayload}, `UNAVAILABLE` while disconnected or closed —
   * never reports a publish as sent when it was dropped. `data` becomes the
   * transport's: the caller must not modify it afterwards (nats.js keeps a
   * reference until the socket write; copying every message would cost the
   * hot path). Subjects with wildcard tokens, empty tokens or whitespace are
   * refused with `BAD_REQUEST`.
   */
  publish(subject: string, data: Uint8Array, options?: PublishOptions): void;

  /**
   * Subscribes `handler` to `subject` (wildcards `*` and `>` allowed), in
   * queue group `queue` when given (each message to exactly one member).
   * Delivery is asynchronous: a handler never runs inside a publisher's call.
   */
  subscribe(subject: string, handler: MessageHandler, options?: SubscribeOptions): TransportSubscription;

  /**
   * Request/reply with one answer: resolves with the reply, rejects with a
   * TroupeError `NO_INSTANCES` at once when nothing listens, `TIMEOUT` after
   * `timeoutMs`. Used for probes; the hot paths use a muxed inbox.
   */
  request(subject: string, data: Uint8Array, options: RequestOptions): Promise<TransportMessage>;

  /** Resolves when everything published so far has reached the bus. */
  flush(): Promise<void>;

  /** Drains subscriptions and closes; resolves when closed. Never rejects. */
  close(): Promise<void>;

  /**
   * Storage services of the bus (JetStream on NATS; in-process on the memory
   * network): key-value buckets for discovery, durable logs for events.
   */
  readonly persistence: Persistence;
}

/** Storage services of a bus. */
export interface Persistence {
  /**
   * Opens (creating if needed) a key-value bucket. Entries older than
   * `ttlMs` expire (bucket-wide max age: nats-server 2.9 has no per-key TTL,
   * and expiry leaves no delete marker, so watchers must age entries
   * themselves). A bus without storage (NATS without JetStream) rejects with
   * `UNAVAILABLE` naming the fix.
   */
  kv(bucket: string, options: KvOptions): Promise<KvBucket>;
}

/** Options of {@link Persistence.kv}. */
export interface KvOptions {
  /** Max age of an entry, ms; 0 keeps entries until deleted. */
  ttlMs: number;
}

/** One key-value bucket. Keys are dot-separated tokens. */
export interface KvBucket {
  /** Writes `value` under `key`; resolves with the new revision. */
  put(key: string, value: Uint8Array): Promise<number>;
  /** The current value of `key`, or undefined. */
  get(key: string): Promise<KvEntry | undefined>;
  /** Deletes `key` (watchers see a delete). */
  delete(key: string): Promise<void>;
  /** Deletes every key (watchers see deletes or nothing; they must tolerate both). */
  purge(): Promise<void>;
  /**
   * Watches keys matching `filter` (NATS wildcards `*`/`>`): first every
   * current entry, then `onSynced`, then changes as they happen. Stop with
   * the returned function.
   */
  watch(filter: string, handler: (entry: KvEntry) => void, onSynced?: () => void): Promise<() => void>;
}

/** One entry as seen by `get` or `watch`. */
export interface KvEntry {
  readonly key: string;
  /** Empty for deletes. */
  readonly value: Uint8Array;
  readonly revision: number;
  readonly operation: 'PUT' | 'DEL';
}

/** Connection state of a transport. */
export const TransportStatus = {
  CONNECTED: 'connected',
  RECONNECTING: 'reconnecting',
  CLOSED: 'closed',
} as const;
export type TransportStatus = (typeof TransportStatus)[keyof typeof TransportStatus];

/** Headers as plain string pairs (NATS headers; the memory network copies them). */
export type Headers = Readonly<Record<string, string>>;

/** Options of {@link Transport.publish}. */
export interface PublishOptions {
  reply?: string;
  headers?: Headers;
}

/** Options of {@link Transport.subscribe}. */
export interface SubscribeOptions {
  queue?: string;
}

/** Options of {@link Transport.request}. */
export interface RequestOptions {
  timeoutMs: number;
  headers?: Headers;
}

/** One received message. Header lookup is lazy so the hot path pays only for what it reads. */
export interface TransportMessage {
  readonly subject: string;
  readonly reply: string | undefined;
  readonly data: Uint8Array;
  /** One header's value, or undefined. */
  header(name: string): string | undefined;
  /** True for the bus's "no responders" status reply (NATS 503). */
  readonly noResponders: boolean;
}

/** Called for each delivered message; must not throw (a throw is logged and dropped). */
export type MessageHandler = (msg: TransportMessage) => void;

/** A live subscription. */
export interface TransportSubscription {
  /** Stops delivery at once; messages not yet delivered are dropped. */
  unsubscribe(): void;
  /** Stops interest, delivers what already arrived, then resolves. */
  drain(): Promise<void>;
  /** Whether the subscription is closed. */
  readonly closed: boolean;
}
