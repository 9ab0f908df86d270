import { connect, headers as natsHeaders, type ConnectionOptions, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from 'nats';
import { BehaviorSubject, type Observable } from 'rxjs';
import { settlesWithin } from '../../settle';
import { TroupeError } from '../../errors';
import { checkHeader } from '../../wire/header-grammar';
import { deliverTo, type MessageTarget } from '../transport';
import type {
  ByteSpan,
  HeaderBlock,
  Headers,
  MessageHandler,
  PublishOptions,
  RequestOptions,
  SubscribeOptions,
  Transport,
  TransportMessage,
  TransportSubscription,
} from '../transport';
import { TransportStatus, type Persistence } from '../transport';
import { NatsPersistence } from './nats-kv';
import { fastPublish, fastPublisher, type OutMessage, type RawProtocol } from './fast-publish';
import { MainLoopPulse } from '../pulse';
import { ThreadPulse, threadConnectOptions } from './thread-pulse';
import type { Pulse, PulseOptions } from '../transport';

/** Options for {@link NatsTransport.connect}; anything of nats.js's `ConnectionOptions` passes through. */
export interface NatsTransportOptions extends Partial<ConnectionOptions> {
  /** One or more `nats://host:port` URLs. */
  servers: string | string[];
}

/**
 * Client defaults tuned for fast failure detection (NATS-FACTS: a frozen
 * server is noticed after ping x (maxPingOut + 1), and a redial to a frozen
 * kernel hangs for the whole dial timeout), unlimited reconnects, and no
 * async stack traces (they cost ~45% of a requester's CPU in nats.js).
 */
export const NATS_DEFAULTS: Partial<ConnectionOptions> = {
  pingInterval: 2_000,
  maxPingOut: 2,
  timeout: 2_000,
  reconnectTimeWait: 250,
  maxReconnectAttempts: -1,
  noAsyncTraces: true,
  waitOnFirstConnect: false,
};

/**
 * The NATS implementation of the {@link Transport} seam (nats.js v2). The only
 * module of Troupe that imports `nats`.
 *
 * @example
 * const transport = await NatsTransport.connect({ servers: 'nats://127.0.0.1:4222' });
 */
export class NatsTransport implements Transport {
  private readonly statusSubject = new BehaviorSubject<TransportStatus>(TransportStatus.CONNECTED);
  readonly status$: Observable<TransportStatus> = this.statusSubject.asObservable();
  readonly describe: string;
  readonly persistence: Persistence;

  /** What the beat thread connects with (undefined: the options need a function, e.g. an authenticator). */
  private pulseConnect: Partial<ConnectionOptions> | undefined;

  /** nats.js's protocol handler when {@link fastPublish} may write to it; undefined: the public `publish` only. */
  private readonly raw: RawProtocol | undefined;

  private constructor(readonly nc: NatsConnection) {
    this.raw = fastPublisher(nc);
    this.describe = `nats ${nc.getServer()}`;
    this.persistence = new NatsPersistence(nc);
    void this.watchStatus();
    void nc.closed().then(() => this.statusSubject.next(TransportStatus.CLOSED));
  }

  /** Connects to NATS; a server that cannot be reached is a TroupeError `UNAVAILABLE`. */
  static async connect(options: NatsTransportOptions): Promise<NatsTransport> {
    try {
      const all = { ...NATS_DEFAULTS, ...options };
      const nc = await connect(all);
      const t = new NatsTransport(nc);
      t.pulseConnect = threadConnectOptions(all);
      return t;
    } catch (err) {
      const servers = Array.isArray(options.servers) ? options.servers.join(', ') : options.servers;
      throw new TroupeError('UNAVAILABLE', `cannot connect to NATS at ${servers}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /**
   * The process heartbeat from a `worker_threads` thread with its own
   * connection (it survives a blocked main loop and measures its lag); from
   * the main loop when the connection options cannot cross to a thread.
   */
  pulse(options: PulseOptions): Pulse {
    if (!this.pulseConnect) return new MainLoopPulse(this, options);
    return new ThreadPulse(this, this.pulseConnect, options);
  }

  get status(): TransportStatus {
    return this.statusSubject.value;
  }

  get maxPayload(): number {
    return this.nc.info?.max_payload ?? 1024 * 1024;
  }

  private async watchStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === 'disconnect' || s.type === 'reconnecting') {
        if (this.statusSubject.value === TransportStatus.CONNECTED) this.statusSubject.next(TransportStatus.RECONNECTING);
      } else if (s.type === 'reconnect') {
        this.statusSubject.next(TransportStatus.CONNECTED);
      }
    }
  }

  publish(subject: string, data: Uint8Array, options?: PublishOptions): void {
    if (this.statusSubject.value !== TransportStatus.CONNECTED) {
      // nats.js has no reconnect buffer: a publish during an outage is dropped silently.
      throw new TroupeError('UNAVAILABLE', `not connected to NATS (${this.statusSubject.value}); message to ${subject} not sent`);
    }
    // A run of publishes to one subject (an event publisher's) checks it once.
    if (subject !== lastChecked) {
      checkSubject(subject);
      lastChecked = subject;
    }
    if (options?.reply !== undefined) checkSubject(options.reply);
    if (this.raw !== undefined) {
      const m = OUT_MESSAGE;
      m.reply = options?.reply;
      m.hdr = options?.headers ? encodeHeaders(options.headers).encode() : options?.headerBlock?.block();
      m.data = data;
      const sent = fastPublish(this.raw, subject, m);
      m.data = EMPTY_BODY; // keep no reference to the caller's body
      if (sent) return;
    }
    const hdrs = options?.headers ? encodeHeaders(options.headers) : options?.headerBlock ? preEncoded(options.headerBlock) : undefined;
    let opts: { reply: string; headers: MsgHdrs | undefined } | undefined;
    if (hdrs || options?.reply) {
      // One options object for every publish: nats.js reads it synchronously and keeps nothing of it.
      opts = PUBLISH_OPTIONS;
      opts.reply = options?.reply ?? '';
      opts.headers = hdrs as unknown as MsgHdrs | undefined;
    }
    try {
      // The transport takes ownership of `data`: nats.js keeps a reference until the socket write.
      this.nc.publish(subject, data, opts);
    } catch (err) {
      throw mapPublishError(err, subject, data.length + (hdrs ? hdrs.size : 0), this.maxPayload);
    }
  }

  subscribe(subject: string, handler: MessageHandler | MessageTarget, options?: SubscribeOptions): TransportSubscription {
    if (this.nc.isClosed()) throw new TroupeError('UNAVAILABLE', `NATS connection closed; cannot subscribe to ${subject}`);
    const sub = this.nc.subscribe(subject, {
      queue: options?.queue,
      callback: (err, msg) => {
        if (err) return; // permission errors are reported on the connection's status
        try {
          deliverTo(handler, new NatsMessage(msg));
        } catch (e) {
          // A handler must not throw; never let one take the connection down.
          process.emitWarning(`troupe: message handler for ${subject} threw: ${(e as Error)?.message ?? e}`);
        }
      },
    });
    return new NatsSubscription(sub);
  }

  async request(subject: string, data: Uint8Array, options: RequestOptions): Promise<TransportMessage> {
    checkSubject(subject);
    if (!(options.timeoutMs > 0)) throw new TroupeError('BAD_REQUEST', `request timeout must be a positive number of ms, got ${String(options.timeoutMs)}`);
    if (this.statusSubject.value !== TransportStatus.CONNECTED) {
      throw new TroupeError('UNAVAILABLE', `not connected to NATS (${this.statusSubject.value}); request to ${subject} not sent`);
    }
    try {
      const msg = await this.nc.request(subject, data, {
        timeout: options.timeoutMs,
        headers: options.headers ? toNatsHeaders(options.headers) : undefined,
      });
      return new NatsMessage(msg);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === '503') throw new TroupeError('NO_INSTANCES', `no responders on ${subject}`, { cause: err });
      if (code === 'TIMEOUT') throw new TroupeError('TIMEOUT', `no reply from ${subject} in ${options.timeoutMs} ms`, { cause: err });
      throw mapPublishError(err, subject, data.length, this.maxPayload);
    }
  }

  async flush(): Promise<void> {
    if (this.nc.isClosed()) return;
    await this.nc.flush();
  }

  async close(drainWithinMs = Infinity): Promise<boolean> {
    if (this.nc.isClosed()) return true;
    // nats.js's drain() ends with a flush that waits for the server's PONG: with the server
    // dead (reconnecting) or frozen it never resolves, and neither does closed(). Without a
    // connection there is nothing to drain; with a silent one, stop waiting after the bound.
    // drain() rejects when already closing or closed; closed is what we want then.
    const drained =
      this.status === TransportStatus.CONNECTED &&
      (await settlesWithin(
        this.nc.drain().catch(() => undefined),
        drainWithinMs,
      ));
    if (!drained) await this.nc.close().catch(() => undefined);
    await this.nc.closed();
    return drained;
  }
}

/**
 * nats.js sends `a.*`, `a..b` and `a b` (the server reads the last as subject
 * `a`, reply `b`): refuse them here. It runs twice per request on the hot path.
 */
function checkSubject(subject: string): void {
  if (INVALID_SUBJECT.test(subject)) {
    throw new TroupeError('BAD_REQUEST', `invalid publish subject ${JSON.stringify(subject)}: no wildcard tokens, empty tokens or whitespace`);
  }
}

/**
 * What makes a publish subject invalid: whitespace or a control character
 * (anything outside `!`–`~` below U+0080),
 * an empty token (leading, trailing or doubled dot, or no subject at all),
 * or a whole token `*` or `>`. V8's compiled regex scans a 35–45 character
 * subject 20–30% faster than a `charCodeAt` loop (≈ 80 vs 100–135 ns).
 */
const INVALID_SUBJECT = /[^!-~\u0080-\uffff]|\.\.|^\.|\.$|^$|(?:^|\.)[*>](?:\.|$)/;

/** The last publish subject that passed {@link checkSubject}. */
let lastChecked: string | undefined;

/** One message record for every fast publish: {@link fastPublish} reads it synchronously and keeps nothing of it. */
const EMPTY_BODY = new Uint8Array(0);
const OUT_MESSAGE: OutMessage = { reply: undefined, hdr: undefined, data: EMPTY_BODY };

const PUBLISH_OPTIONS: { reply: string; headers: MsgHdrs | undefined } = { reply: '', headers: undefined };

/** What nats.js reads of its headers (`encode()`, once, inside `publish`): one reused wrapper for pre-encoded blocks. */
const PRE_ENCODED = {
  bytes: new Uint8Array(0) as Uint8Array,
  get size(): number {
    return this.bytes.length;
  },
  encode(): Uint8Array {
    return this.bytes;
  },
};

function preEncoded(h: HeaderBlock): typeof PRE_ENCODED {
  PRE_ENCODED.bytes = h.block();
  return PRE_ENCODED;
}

/** Encodings of frozen header records (callers reuse them for identical metadata). */
const encodedCache = new WeakMap<Headers, EncodedHeaders>();

function encodeHeaders(h: Headers): EncodedHeaders {
  let e = encodedCache.get(h);
  if (!e) {
    e = new EncodedHeaders(h);
    if (Object.isFrozen(h)) encodedCache.set(h, e);
  }
  return e;
}

function toNatsHeaders(h: Headers): MsgHdrs {
  const out = natsHeaders();
  for (const k in h) {
    checkHeader(k, h[k]);
    out.set(k, h[k] as string);
  }
  return out;
}

/**
 * Headers encoded once, straight to the NATS/1.0 header block. nats.js's
 * MsgHdrs validates and re-encodes per publish (~8% of a caller's CPU on the
 * unary path); `publish` only ever calls `encode()` on it.
 */
class EncodedHeaders {
  readonly size: number;
  private readonly bytes: Uint8Array;
  constructor(h: Headers) {
    let block = 'NATS/1.0\r\n';
    for (const k in h) {
      const v = h[k] as string;
      checkHeader(k, v);
      block += `${k}: ${v}\r\n`;
    }
    block += '\r\n';
    this.bytes = Buffer.from(block, 'utf8');
    this.size = this.bytes.length;
  }
  encode(): Uint8Array {
    return this.bytes;
  }
}

function mapPublishError(err: unknown, subject: string, size: number, max: number): TroupeError {
  if (err instanceof TroupeError) return err;
  const code = (err as { code?: string }).code;
  if (code === 'MAX_PAYLOAD_EXCEEDED') {
    return new TroupeError('PAYLOAD_TOO_LARGE', `message of ${size} bytes to ${subject} exceeds the server's max_payload of ${max} bytes`, {
      cause: err,
      data: { size, max },
    });
  }
  if (code === 'CONNECTION_CLOSED' || code === 'CONNECTION_DRAINING') {
    return new TroupeError('UNAVAILABLE', `NATS connection is closed; message to ${subject} not sent`, { cause: err });
  }
  if (code === 'BAD_SUBJECT') {
    return new TroupeError('BAD_REQUEST', `invalid subject ${JSON.stringify(subject)}`, { cause: err });
  }
  return new TroupeError('UNAVAILABLE', `publish to ${subject} failed: ${(err as Error)?.message ?? err}`, { cause: err });
}

/** nats.js's MsgImpl internals: the raw header block is read without building a MsgHdrs. */
interface RawMsg {
  _msg?: { hdr: number };
  _rdata?: Uint8Array;
}

const CR = 13;
const LF = 10;
const COLON = 58;
/** The status line of a header block without a status. */
const NO_STATUS = 'NATS/1.0\r\n';
/** Values this short and plain ASCII are built in JS: cheaper than a call into the Buffer binding. */
const SHORT_VALUE = 16;

/** Where the CRLF at or after `from` starts, before `end`; `end` when there is none. */
function lineEnd(d: Uint8Array, from: number, end: number): number {
  for (let i = from; i + 1 < end; i++) if (d[i] === CR && d[i + 1] === LF) return i;
  return end;
}

/** Whether bytes `d[from..from+name.length)` spell `name` (a header name: printable ASCII). */
function spells(d: Uint8Array, from: number, name: string): boolean {
  for (let k = 0; k < name.length; k++) if (d[from + k] !== name.charCodeAt(k)) return false;
  return true;
}

/** The UTF-8 text of `d[from..to)`. */
function textOf(d: Uint8Array, from: number, to: number): string {
  if (to - from <= SHORT_VALUE) {
    let s = '';
    for (let i = from; i < to; i++) {
      const c = d[i] as number;
      if (c >= 0x80) return utf8Of(d, from, to);
      s += String.fromCharCode(c);
    }
    return s;
  }
  return utf8Of(d, from, to);
}

function utf8Of(d: Uint8Array, from: number, to: number): string {
  return Buffer.isBuffer(d) ? d.toString('utf8', from, to) : Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString('utf8', from, to);
}

function isBlank(c: number | undefined): boolean {
  return c === 32 || c === 9;
}

/** Sets `out` to the header value between `from` (after the colon) and `e` (its line's end), blanks trimmed; true. */
function trimmedValue(d: Uint8Array, from: number, e: number, out: ByteSpan): true {
  while (from < e && isBlank(d[from])) from++;
  while (e > from && isBlank(d[e - 1])) e--;
  out.bytes = d;
  out.from = from;
  out.to = e;
  return true;
}

/**
 * A received message. Headers are read straight from the raw header block
 * (`NATS/1.0[ status]\r\n` then `Name: value\r\n` lines): its lines are
 * indexed once, at the first lookup, and a lookup compares the name's
 * length, then its bytes, and decodes only the value it returns — no
 * string of the block, no Map, no MsgHdrs per message. A request carries
 * one to three headers and the worker asks for six or seven names, most
 * of them absent, which one length comparison answers.
 */
class NatsMessage implements TransportMessage {
  /** The raw message bytes (header block, then body); undefined when nats.js internals are not as expected. */
  private bytes: Uint8Array | undefined;
  /** Length of the header block (0: no headers); -1 until indexed. */
  private hdrLen = -1;
  /** The first header line: where its name starts, its colon, where the line ends (-1: no header line). */
  private s0 = -1;
  private c0 = 0;
  private e0 = 0;
  /** Further header lines, as (name start, colon, line end) triples. */
  private more: number[] | undefined;
  /** Headers read through nats.js's public API, if its internals ever change. */
  private hmap: ReadonlyMap<string, string> | undefined;
  private body: Uint8Array | undefined;
  /** The reply subject ('' for none) once read. */
  private replyTo: string | undefined;
  constructor(private readonly m: Msg) {}

  /** Indexes the header block's lines; false when the block must be read through the public API. */
  private index(): boolean {
    const raw = this.m as unknown as RawMsg;
    const d = raw._rdata;
    if (!raw._msg || !(d instanceof Uint8Array)) {
      this.hmap ??= publicHeaders(this.m);
      return false;
    }
    const n = raw._msg.hdr > 0 ? raw._msg.hdr : 0;
    this.bytes = d;
    this.hdrLen = n;
    if (n === 0) return true;
    let at = lineEnd(d, 0, n) + 2; // past the status line
    while (at < n) {
      const end = lineEnd(d, at, n);
      if (end === at) break; // the empty line that ends the block
      let colon = at;
      while (colon < end && d[colon] !== COLON) colon++;
      if (colon < end) {
        if (this.s0 < 0) {
          this.s0 = at;
          this.c0 = colon;
          this.e0 = end;
        } else {
          (this.more ??= []).push(at, colon, end);
        }
      }
      at = end + 2;
    }
    return true;
  }

  get subject(): string {
    return this.m.subject;
  }
  get reply(): string | undefined {
    return (this.replyTo ??= this.m.reply) || undefined;
  }
  get data(): Uint8Array {
    // nats.js makes a new subarray per read; the worker reads it twice.
    return (this.body ??= this.m.data);
  }
  header(name: string): string | undefined {
    if (this.hdrLen < 0 && !this.index()) return this.hmap?.get(name);
    const d = this.bytes as Uint8Array;
    if (name === ':status') return this.hdrLen === 0 ? undefined : statusOf(d, this.hdrLen);
    const len = name.length;
    if (this.s0 >= 0 && this.c0 - this.s0 === len && spells(d, this.s0, name)) return valueOf(d, this.c0 + 1, this.e0);
    const more = this.more;
    if (more === undefined) return undefined;
    for (let i = 0; i < more.length; i += 3) {
      const s = more[i] as number;
      const c = more[i + 1] as number;
      if (c - s === len && spells(d, s, name)) return valueOf(d, c + 1, more[i + 2] as number);
    }
    return undefined;
  }
  headerBytes(name: string, out: ByteSpan): boolean {
    // Not indexed yet and the first line is `name`: read it without indexing the block (an event's one line).
    if (this.hdrLen < 0 && this.firstLine(name, out)) return true;
    if (this.hdrLen < 0 && !this.index()) return false;
    const d = this.bytes as Uint8Array;
    const len = name.length;
    let c = -1;
    let e = 0;
    if (this.s0 >= 0 && this.c0 - this.s0 === len && spells(d, this.s0, name)) {
      c = this.c0;
      e = this.e0;
    } else if (this.more !== undefined) {
      const more = this.more;
      for (let i = 0; i < more.length; i += 3) {
        const s = more[i] as number;
        if ((more[i + 1] as number) - s === len && spells(d, s, name)) {
          c = more[i + 1] as number;
          e = more[i + 2] as number;
          break;
        }
      }
    }
    if (c < 0) return false;
    return trimmedValue(d, c + 1, e, out);
  }
  /**
   * {@link headerBytes} when the block is `NATS/1.0\r\n` (no status) and
   * its first line is `name` — what {@link index} would find first, in one
   * pass over that line only. False otherwise (the index decides then). A
   * header name has no colon (the header grammar), so the colon after it
   * is the line's first, as the index reads it.
   */
  private firstLine(name: string, out: ByteSpan): boolean {
    const raw = this.m as unknown as RawMsg;
    const d = raw._rdata;
    const n = raw._msg?.hdr;
    const from = NO_STATUS.length;
    const len = name.length;
    if (!(d instanceof Uint8Array) || n === undefined || n <= from + len) return false;
    if (d[from + len] !== COLON || !spells(d, from, name) || !spells(d, 0, NO_STATUS)) return false;
    const at = from + len + 1;
    return trimmedValue(d, at, lineEnd(d, at, n), out);
  }
  get noResponders(): boolean {
    return this.header(':status') === '503' && this.m.data.length === 0;
  }
}

/** The trimmed value between a header line's colon and its end. */
function valueOf(d: Uint8Array, from: number, to: number): string {
  while (from < to && isBlank(d[from])) from++;
  while (to > from && isBlank(d[to - 1])) to--;
  return textOf(d, from, to);
}

/** The status code of a `NATS/1.0 [status [description]]` block of `n` bytes; undefined when it has none. */
function statusOf(d: Uint8Array, n: number): string | undefined {
  const end = lineEnd(d, 0, n);
  let from = 8; // after 'NATS/1.0'
  while (from < end && isBlank(d[from])) from++;
  let to = from;
  while (to < end && !isBlank(d[to])) to++;
  return to > from ? textOf(d, from, to) : undefined;
}

/** A message's headers through nats.js's public API (the fallback if its internals change). */
function publicHeaders(m: Msg): ReadonlyMap<string, string> {
  const h = m.headers;
  const map = new Map<string, string>();
  if (h) {
    for (const k of h.keys()) map.set(k, h.get(k));
    if (h.code) map.set(':status', String(h.code));
  }
  return map;
}

class NatsSubscription implements TransportSubscription {
  constructor(private readonly sub: Subscription) {}
  unsubscribe(): void {
    if (!this.sub.isClosed()) this.sub.unsubscribe();
  }
  async drain(): Promise<void> {
    if (this.sub.isClosed()) return;
    try {
      await this.sub.drain();
    } catch {
      // the connection closed underneath: nothing left to drain
    }
  }
  get closed(): boolean {
    return this.sub.isClosed();
  }
}
