/**
 * A publish that hands nats.js its `PUB`/`HPUB` command line as bytes.
 *
 * nats.js 2.29's `ProtocolHandler.publish` builds the line as a template
 * string and encodes it with `TextEncoder` on every publish (≈ 1.6% of a
 * caller's and of a worker's CPU on the unary path: a string, a call into
 * the encoder's binding and a new array). Writing the ASCII bytes into an
 * array of the exact size is ≈ 3× cheaper. No library does this, and
 * nats.js offers no way to pass a pre-built line, so this reaches into its
 * internals — only when they are the ones this file was written against
 * (see {@link fastPublisher}); otherwise, and whenever a publish would not
 * be the plain case (closed, draining, too large, headers the server does
 * not take, a non-ASCII subject), the caller uses nats.js's public
 * `publish`, which sends or throws exactly as before.
 */
import type { NatsConnection } from 'nats';

/** What of nats.js 2.29's `ProtocolHandler` its `publish` reads and writes. */
export interface RawProtocol {
  _closed: boolean;
  noMorePublishing: boolean;
  info?: { headers?: boolean; max_payload: number };
  outBytes: number;
  outMsgs: number;
  sendCommand(cmd: Uint8Array, ...payloads: Uint8Array[]): void;
  transport?: { version?: unknown };
}

/** The nats.js releases whose `ProtocolHandler.publish` {@link fastPublish} reproduces (the lockfile pins 2.29.3). */
const KNOWN_VERSION = /^2\.29\.\d+$/;

/**
 * The connection's protocol handler when it is the one {@link fastPublish}
 * was written against (a known nats.js version, and every field and method
 * it uses of the expected type); undefined otherwise, and the caller keeps
 * to nats.js's public `publish`.
 *
 * @example
 * const raw = fastPublisher(nc); // undefined after a nats.js upgrade that changes its internals
 */
export function fastPublisher(nc: NatsConnection): RawProtocol | undefined {
  const p = (nc as unknown as { protocol?: unknown }).protocol as Partial<RawProtocol> & { publish?: unknown };
  if (typeof p !== 'object' || p === null) return undefined;
  const ok =
    typeof p.publish === 'function' &&
    typeof p.sendCommand === 'function' &&
    typeof p._closed === 'boolean' &&
    typeof p.noMorePublishing === 'boolean' &&
    typeof p.outBytes === 'number' &&
    typeof p.outMsgs === 'number' &&
    typeof p.transport?.version === 'string' &&
    KNOWN_VERSION.test(p.transport.version);
  return ok ? (p as RawProtocol) : undefined;
}

const CRLF = new Uint8Array([13, 10]);

/** One message for {@link fastPublish}: read during the call, nothing of it kept (a caller may reuse it). */
export interface OutMessage {
  /** The reply subject; '' or undefined for none. */
  reply: string | undefined;
  /** The encoded `NATS/1.0` header block (HPUB), or undefined (PUB). */
  hdr: Uint8Array | undefined;
  data: Uint8Array;
}

/**
 * What nats.js's `publish(subject, data, { reply, headers })` does once its
 * checks pass — count the message, queue the command line, the header block,
 * the body and CRLF, flushed on a microtask — with the line written as bytes.
 * False, having done nothing, when the publish is not the plain case; the
 * caller then publishes through nats.js, which sends it or throws its error.
 *
 * @example
 * if (!fastPublish(raw, 'a.b', { reply: '_INBOX.x.1', hdr: block, data })) nc.publish('a.b', data, { reply: '_INBOX.x.1', headers });
 */
export function fastPublish(p: RawProtocol, subject: string, m: OutMessage): boolean {
  const info = p.info;
  if (p._closed || p.noMorePublishing || info === undefined) return false;
  const hdr = m.hdr;
  const len = hdr === undefined ? m.data.length : m.data.length + hdr.length;
  if (len > info.max_payload || (hdr !== undefined && !info.headers)) return false;
  const line = commandLine(subject, m);
  if (line === undefined) return false;
  p.outBytes += len;
  p.outMsgs++;
  if (hdr === undefined) p.sendCommand(line, m.data, CRLF);
  else p.sendCommand(line, hdr, m.data, CRLF);
  return true;
}

/**
 * `PUB <subject> [<reply>] <len>\r\n`, or with a header block
 * `HPUB <subject> [<reply>] <hlen> <len>\r\n`, as nats.js writes it;
 * undefined when the subject or the reply is not ASCII (nats.js encodes it
 * as UTF-8).
 *
 * @example
 * commandLine('a.b', { reply: undefined, hdr: undefined, data }) // the bytes of 'PUB a.b 5\r\n' for a 5-byte body
 */
export function commandLine(subject: string, m: OutMessage): Uint8Array | undefined {
  const reply = m.reply ?? '';
  const hlen = m.hdr === undefined ? -1 : m.hdr.length;
  const len = hlen < 0 ? m.data.length : m.data.length + hlen;
  const head = hlen < 0 ? 4 : 5;
  const size = head + subject.length + (reply.length > 0 ? reply.length + 1 : 0) + (hlen < 0 ? 0 : digits(hlen) + 1) + 1 + digits(len) + 2;
  // One exact-size array: nats.js keeps it until the flush, so it cannot be reused. At ≤ 64 bytes
  // V8 allocates it on the heap; TextEncoder's result has an off-heap backing store (slower to make and to collect).
  const b = new Uint8Array(size);
  let at = 0;
  if (hlen >= 0) b[at++] = 72; // H
  b[at++] = 80; // P
  b[at++] = 85; // U
  b[at++] = 66; // B
  b[at++] = 32;
  at = ascii(b, at, subject);
  if (at < 0) return undefined;
  b[at++] = 32;
  if (reply.length > 0) {
    at = ascii(b, at, reply);
    if (at < 0) return undefined;
    b[at++] = 32;
  }
  if (hlen >= 0) {
    at = decimal(b, at, hlen);
    b[at++] = 32;
  }
  at = decimal(b, at, len);
  b[at++] = 13;
  b[at] = 10;
  return b;
}

/** Writes `s` at `at`; the index past it, or -1 at a character outside ASCII. */
function ascii(b: Uint8Array, at: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) return -1;
    b[at + i] = c;
  }
  return at + s.length;
}

/** Decimal digits of a non-negative integer below 2^31 (a payload length). */
function digits(n: number): number {
  let d = 1;
  while (n >= 10) {
    n = (n / 10) | 0;
    d++;
  }
  return d;
}

/** Writes `n`'s decimal digits at `at`; the index past them. */
function decimal(b: Uint8Array, at: number, n: number): number {
  const end = at + digits(n);
  for (let i = end - 1; i >= at; i--) {
    b[i] = 48 + (n % 10);
    n = (n / 10) | 0;
  }
  return end;
}
