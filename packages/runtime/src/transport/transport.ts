import type { Observable } from 'rxjs';
import type { TroupeError } from '../errors';

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
  subscribe(subject: string, handler: MessageHandler | MessageTarget, options?: SubscribeOptions): TransportSubscription;

  /**
   * Optional: the target (not a function) this connection subscribed to the
   * literal `subject` with, found in the transport's own index of its
   * subscriptions. The memory network has that index (its routing table);
   * in-process calls then keep no index of their own beside it (a hash-table
   * entry per instance mailbox, 100,000 of them in one process). nats.js
   * keeps its subscriptions by sid, not subject: the NATS transport has none.
   */
  targetOf?(subject: string): MessageTarget | undefined;

  /**
   * Request/reply with one answer: resolves with the reply, rejects with a
   * TroupeError `NO_INSTANCES` at once when nothing listens, `TIMEOUT` after
   * `timeoutMs`. Used for probes; the hot paths use a muxed inbox.
   */
  request(subject: string, data: Uint8Array, options: RequestOptions): Promise<TransportMessage>;

  /**
   * Optional: starts a process heartbeat that survives a blocked event loop —
   * on NATS, a `worker_threads` thread with its own connection publishes it
   * and measures how late the main loop is. Without it (the memory network)
   * the runtime beats from the main thread with {@link publish}.
   */
  pulse?(options: PulseOptions): Pulse;

  /** Resolves when everything published so far has reached the bus. */
  flush(): Promise<void>;

  /**
   * Drains subscriptions and closes; resolves when closed, with true when it
   * drained and false when the drain did not finish within `drainWithinMs`
   * (default: no bound) or the bus was unreachable, and the connection was
   * closed without it. Never rejects.
   */
  close(drainWithinMs?: number): Promise<boolean>;

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

  /**
   * Opens (creating if needed) a durable log: a JetStream stream on NATS,
   * an in-process log on the memory network. From the moment it exists it
   * stores every message published to `subjects` (plain publishes: the
   * publisher needs no change). `update` applies `subjects` and the limits
   * to a log that already exists; without it an existing log is used as it
   * is. A bus without storage rejects with `UNAVAILABLE` naming the fix.
   */
  log(name: string, options: LogOptions): Promise<MessageLog>;
}

/** Options of {@link Persistence.log}. */
export interface LogOptions {
  /** Subjects stored (wildcards allowed); must not overlap another log's. */
  subjects: readonly string[];
  /** Messages older than this are discarded, ms (default: kept until `maxBytes`). */
  maxAgeMs?: number;
  /** The oldest messages are discarded past this size, bytes (default: unlimited). */
  maxBytes?: number;
  /** Apply subjects and limits to an existing log (default false: use it as it is). */
  update?: boolean;
}

/** A durable log of messages, read by consumers. */
export interface MessageLog {
  readonly name: string;
  /**
   * Starts delivering stored and new messages to `handler`, in log order,
   * once the consumer exists on the bus. A durable consumer keeps its
   * position across `stop()` (and processes): the next consumer of that
   * name resumes after the last acked message, and consumers sharing the
   * name share the messages (each to one of them). Unacked messages go back
   * to the log on `stop()`. A durable name that exists with another filter
   * rejects with `BAD_REQUEST`.
   */
  consume(options: LogConsumeOptions, handler: (msg: LogMessage) => void): Promise<LogConsumer>;
  /** Deletes the log, its messages and its consumers. */
  destroy(): Promise<void>;
}

/** Options of {@link MessageLog.consume}. */
export interface LogConsumeOptions {
  /** One subject filter (wildcards allowed) inside the log's subjects; undefined: the whole log. */
  filter: string | undefined;
  /** Durable name: the position survives; undefined: an ephemeral consumer (no acks needed). */
  durable: string | undefined;
  /** Where a new consumer starts: everything stored, only what comes next, or the first message at or after a time. An existing durable resumes and ignores it. */
  start: 'all' | 'new' | Date;
  /** Most messages delivered and not yet acked (durable consumers); default 256. */
  maxInFlight?: number;
  /**
   * How long a delivered message may stay unacked before the log delivers it
   * again (durable consumers), ms; default 30 000 (JetStream's). Applies when
   * the durable is created: an existing one keeps its own, which each
   * message reports as {@link LogMessage.ackWaitMs}.
   */
  ackWaitMs?: number;
  /** Called once if delivery ends by itself (the log or the consumer was deleted). */
  onError?: (err: TroupeError) => void;
}

/** One message read from a {@link MessageLog}. */
export interface LogMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  header(name: string): string | undefined;
  /** Position in the log, from 1, increasing. */
  readonly seq: number;
  /** When the log stored it, epoch ms. */
  readonly timestamp: number;
  /** Delivered before and not acked then. */
  readonly redelivered: boolean;
  /** Done with it: a durable consumer never gets it again. A no-op for ephemeral consumers. */
  ack(): void;
  /** Give it back: redelivered (to this consumer or another of its name) after `delayMs`. */
  nak(delayMs?: number): void;
  /**
   * Still working on it: restarts the ack wait (JetStream's `+WPI`), so a
   * handler that runs longer than the ack wait is not delivered again
   * meanwhile. Call it well within every {@link ackWaitMs}. A no-op for
   * ephemeral consumers and where there is no ack wait.
   */
  inProgress(): void;
  /**
   * How long this message may stay unacked before it is delivered again, ms
   * (the consumer's actual setting); undefined when it never is by timeout
   * (ephemeral consumers, the memory network).
   */
  readonly ackWaitMs: number | undefined;
}

/** A running log consumer. */
export interface LogConsumer {
  /** Stops delivery; messages delivered and not acked go back to the log. Never rejects. */
  stop(): Promise<void>;
}

/** Options of {@link Persistence.kv}. */
export interface KvOptions {
  /** Max age of an entry, ms; 0 keeps entries until deleted. */
  ttlMs: number;
  /**
   * Copies of the bucket in a JetStream cluster (1, 3 or 5; default 1). With 1 the bucket
   * lives on one node and is lost with it. Applies when the bucket is created; an
   * existing bucket keeps its own.
   */
  replicas?: number;
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
   * Removes the delete markers of keys deleted more than `olderThanMs` ago
   * and returns how many it removed. JetStream keeps one marker per deleted
   * key for good (a bucket without max age; 2.9 has no per-key TTL), so a
   * registry of random instance ids grows without bound and slows every new
   * watch; a bus whose deletes leave nothing returns 0.
   */
  purgeDeletes(olderThanMs: number): Promise<number>;
  /**
   * Watches keys matching `filter` (NATS wildcards `*`/`>`): first every
   * current entry, then `onSynced`, then changes as they happen. Stop with
   * the returned function.
   */
  watch(filter: string, handler: (entry: KvEntry) => void, onSynced?: () => void): Promise<() => void>;
  /**
   * Optional: a write at `revision` happened (another process said so): checks
   * on the bus every watch of this object that has not delivered that revision
   * yet and resumes those whose consumer is gone or does not answer (a
   * JetStream consumer can die with its node or be deleted; nats.js notices
   * only after two missed 5 s idle heartbeats). `all`: check every watch.
   * Resolves with how many it resumed; never rejects.
   */
  verifyWatches?(revision: number, all?: boolean): Promise<number>;
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

/**
 * Headers a sender encodes itself, for metadata rewritten per message (an
 * event's `Troupe-Event` line, where only the numbers change): `block()` is
 * the whole `NATS/1.0` header block, names and values already checked;
 * `record()` the same headers as a record, for transports that do not speak
 * the NATS wire. A transport calls one of them during `publish` and keeps
 * nothing of the object.
 */
export interface HeaderBlock {
  block(): Uint8Array;
  record(): Headers;
}

/** Options of {@link Transport.publish}. The transport reads them during the call and keeps nothing of them (a caller may reuse them). */
export interface PublishOptions {
  reply?: string;
  headers?: Headers;
  /** Pre-encoded headers, in place of `headers` (ignored when `headers` is given). */
  headerBlock?: HeaderBlock;
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

/** A range of bytes, `bytes[from..to)`, filled in by {@link TransportMessage.headerBytes}. */
export interface ByteSpan {
  bytes: Uint8Array;
  from: number;
  to: number;
}

/** One received message. Header lookup is lazy so the hot path pays only for what it reads. */
export interface TransportMessage {
  readonly subject: string;
  readonly reply: string | undefined;
  readonly data: Uint8Array;
  /** One header's value, or undefined. */
  header(name: string): string | undefined;
  /**
   * Where one header's value (trimmed) lies in the message's own bytes,
   * into `out`, without decoding it to a string: false when the header is
   * absent or the transport keeps no header bytes (read {@link header}
   * then). `out.bytes` is valid only until the handler returns.
   */
  headerBytes?(name: string, out: ByteSpan): boolean;
  /** True for the bus's "no responders" status reply (NATS 503). */
  readonly noResponders: boolean;
}

/** Called for each delivered message; must not throw (a throw is logged and dropped). */
export type MessageHandler = (msg: TransportMessage) => void;

/**
 * An object whose `deliver` is called for each delivered message, as a
 * {@link MessageHandler} would be: what an instance's endpoint subscribes with,
 * so 100,000 mailboxes hold no bound function each (48 B).
 */
export interface MessageTarget {
  deliver(msg: TransportMessage): void;
}

/** Hands `msg` to a subscription's handler or target. */
export function deliverTo(to: MessageHandler | MessageTarget, msg: TransportMessage): void {
  if (typeof to === 'function') to(msg);
  else to.deliver(msg);
}

/** A live subscription. */
export interface TransportSubscription {
  /** Stops delivery at once; messages not yet delivered are dropped. */
  unsubscribe(): void;
  /** Stops interest, delivers what already arrived, then resolves. */
  drain(): Promise<void>;
  /** Whether the subscription is closed. */
  readonly closed: boolean;
}

/**
 * Options of {@link Transport.pulse}.
 *
 * @example
 * const options: PulseOptions = { subject: '_TROUPE.lease.9f3c0a7e12b4d8e1', intervalMs: 1000, fields: { lease: '9f3c0a7e12b4d8e1' }, busyAfterMs: 250 };
 */
export interface PulseOptions {
  /** Where each beat goes (a plain subject, no JetStream). */
  readonly subject: string;
  /** Period of beats, ms. */
  readonly intervalMs: number;
  /** Fields every beat carries (JSON-serialisable), merged with `seq` and `lagMs`. */
  readonly fields: Readonly<Record<string, unknown>>;
  /** A main loop late by more than this is "busy": a beat goes out at once to say so, ms. */
  readonly busyAfterMs: number;
}

/**
 * A running process heartbeat. Each beat is a JSON object: the given fields,
 * `seq` (from 1) and `lagMs` (how long the main event loop has not run, ms;
 * 0 when the beat comes from the main loop itself).
 *
 * @example
 * const pulse = transport.pulse?.({ subject: '_TROUPE.lease.9f3c0a7e12b4d8e1', intervalMs: 1000, fields: {}, busyAfterMs: 250 });
 * pulse?.set({ rrev: 42 }, true);
 * await pulse?.stop();
 */
export interface Pulse {
  /** Merges `fields` into every later beat; with `beatNow`, one beat goes out at once (news watchers should not wait a period for). */
  set(fields: Readonly<Record<string, unknown>>, beatNow?: boolean): void;
  /** Stops beating and releases the thread and connection, if any. Never rejects. */
  stop(): Promise<void>;
}
