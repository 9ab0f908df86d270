import { randomBytes } from 'node:crypto';
import { TroupeError } from '../errors';

/**
 * W3C Trace Context as a handler sees it on `ctx.trace`: the trace id the
 * request belongs to, this hop's own span id (the server span's when an
 * OpenTelemetry tracer provider is registered), the caller's span id, the
 * trace flags and the vendor `tracestate`. Nested calls made with
 * `parent: ctx` carry the same trace id with `spanId` as their parent.
 *
 * @example
 * \@endpoint() generate(req: Req, ctx: Context) {
 *   ctx.logger.info('serving', { traceId: ctx.trace?.traceId });
 * }
 */
export interface TraceContext {
  /** 32 lowercase hex characters. */
  readonly traceId: string;
  /** This hop's span id: 16 lowercase hex characters. */
  readonly spanId: string;
  /** The caller's span id (the `parent-id` of the incoming `traceparent`); undefined when this hop began the trace. */
  readonly parentSpanId?: string;
  /** Trace flags (bit 0: sampled). */
  readonly flags: number;
  /** The incoming W3C `tracestate`, when any. */
  readonly tracestate?: string;
}

/**
 * A parsed W3C `traceparent` header.
 *
 * @example
 * const tp: Traceparent | undefined = parseTraceparent(msg.header('traceparent'));
 */
export interface Traceparent {
  readonly traceId: string;
  readonly spanId: string;
  readonly flags: number;
}

// version 00 layout; a higher version may append fields after the flags (W3C trace-context §3.2.4).
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE = '00000000000000000000000000000000';
const ZERO_SPAN = '0000000000000000';

/**
 * Parses a W3C `traceparent`; undefined for anything invalid (the W3C rule:
 * an invalid header is ignored, never an error).
 *
 * @example
 * parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'); // { traceId, spanId, flags: 1 }
 */
export function parseTraceparent(value: string | undefined): Traceparent | undefined {
  if (value === undefined || value.length < 55 || value.length > 512) return undefined;
  const m = TRACEPARENT.exec(value.trim());
  if (!m) return undefined;
  const [, version, traceId, spanId, flags, rest] = m as unknown as [string, string, string, string, string, string | undefined];
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined;
  return { traceId, spanId, flags: parseInt(flags, 16) };
}

/**
 * Formats a version-00 W3C `traceparent`.
 *
 * @example
 * formatTraceparent(traceId, spanId, 1); // '00-<traceId>-<spanId>-01'
 */
export function formatTraceparent(traceId: string, spanId: string, flags: number): string {
  return `00-${traceId}-${spanId}-${(flags & 0xff).toString(16).padStart(2, '0')}`;
}

/**
 * A random span id (64 bits, 16 hex characters).
 *
 * @example
 * formatTraceparent(ctx.trace.traceId, newSpanId(), 1);
 */
export function newSpanId(): string {
  return randomBytes(8).toString('hex');
}

/**
 * Request metadata: small string key/values (tenant, priority, routing
 * hints) set by the first caller and carried by every call made with
 * `parent: ctx`. Bounded so a header stays small: see {@link METADATA_LIMITS}.
 *
 * @example
 * await client.call(req, { metadata: { tenant: 'acme', priority: 'high' } });
 */
export type Metadata = Readonly<Record<string, string>>;

/**
 * Bounds of request metadata: at most 16 entries, keys of 1–64 characters
 * from `[A-Za-z0-9_.-]`, string values, and at most 1024 bytes once encoded
 * in the `Troupe-Meta` header. Past them a call fails with `BAD_REQUEST`
 * before anything is sent (and a request arriving with a larger header is
 * answered `BAD_REQUEST`).
 *
 * @example
 * if (Object.keys(meta).length > METADATA_LIMITS.maxEntries) meta = pick(meta);
 */
export const METADATA_LIMITS = { maxEntries: 16, maxKeyLength: 64, maxBytes: 1024 } as const;

const META_KEY = /^[A-Za-z0-9_.-]{1,64}$/;
const EMPTY_METADATA: Metadata = Object.freeze({});
/** Encodings of metadata objects decoded from the wire (forwarded as they came, not re-encoded). */
const encodings = new WeakMap<object, string>([[EMPTY_METADATA, '']]);

/**
 * Encodes metadata for the `Troupe-Meta` header: `key=value` pairs joined by
 * `&`, values percent-encoded (`encodeURIComponent`), so the header is ASCII
 * without CR/LF and generic NATS tools can read it. Throws `BAD_REQUEST` past
 * {@link METADATA_LIMITS} or for a non-string value; an empty map encodes as
 * `undefined` (no header).
 *
 * @example
 * encodeMetadata({ tenant: 'acme', route: 'a&b' }); // 'tenant=acme&route=a%26b'
 */
export function encodeMetadata(meta: Metadata): string | undefined {
  const known = encodings.get(meta);
  if (known !== undefined) return known || undefined;
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) {
    throw new TroupeError('BAD_REQUEST', `metadata must be an object of string values, got ${meta === null ? 'null' : typeof meta}`);
  }
  const keys = Object.keys(meta);
  if (keys.length === 0) return undefined;
  if (keys.length > METADATA_LIMITS.maxEntries) {
    throw new TroupeError('BAD_REQUEST', `metadata has ${keys.length} entries; at most ${METADATA_LIMITS.maxEntries} are allowed`);
  }
  let out = '';
  for (const k of keys) {
    if (!META_KEY.test(k)) throw new TroupeError('BAD_REQUEST', `metadata key ${JSON.stringify(k.slice(0, 80))} is not 1-64 characters of [A-Za-z0-9_.-]`);
    const v: unknown = meta[k];
    if (typeof v !== 'string') throw new TroupeError('BAD_REQUEST', `metadata value of ${k} must be a string, got ${typeof v}`);
    out += `${out ? '&' : ''}${k}=${encodeURIComponent(v)}`;
    if (out.length > METADATA_LIMITS.maxBytes) {
      throw new TroupeError('BAD_REQUEST', `metadata exceeds ${METADATA_LIMITS.maxBytes} bytes once encoded`, { data: { maxBytes: METADATA_LIMITS.maxBytes } });
    }
  }
  return out;
}

/**
 * Decodes a `Troupe-Meta` header into a frozen map. Lenient with what
 * arrives (a pair without `=` or with bad escapes is skipped, as tools may
 * write it by hand); the size bound is checked on arrival.
 *
 * @example
 * decodeMetadata('tenant=acme&route=a%26b'); // { tenant: 'acme', route: 'a&b' }
 */
export function decodeMetadata(header: string | undefined): Metadata {
  if (!header) return EMPTY_METADATA;
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  let n = 0;
  for (const pair of header.split('&')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    const k = pair.slice(0, eq);
    if (!META_KEY.test(k) || n >= METADATA_LIMITS.maxEntries) continue;
    try {
      out[k] = decodeURIComponent(pair.slice(eq + 1));
      n++;
    } catch {
      // a malformed escape: skip the pair
    }
  }
  const frozen = Object.freeze(out);
  encodings.set(frozen, header);
  return frozen;
}

/**
 * Merges a parent's metadata with a call's own (the call's keys win).
 *
 * @example
 * mergeMetadata({ tenant: 'a', p: '1' }, { p: '2' }); // { tenant: 'a', p: '2' }
 */
export function mergeMetadata(parent: Metadata | undefined, own: Metadata | undefined): Metadata | undefined {
  if (!own) return parent;
  if (!parent || Object.keys(parent).length === 0) return own;
  return { ...parent, ...own };
}
