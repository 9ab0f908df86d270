/**
 * The closed set of error codes that cross the wire. `retryable` derives from
 * the code: a retry may go to another instance without changing the outcome
 * of a call that already ran.
 */
export const ErrorCode = {
  BAD_REQUEST: 'BAD_REQUEST',
  NOT_FOUND: 'NOT_FOUND',
  NO_INSTANCES: 'NO_INSTANCES',
  INSTANCE_LOST: 'INSTANCE_LOST',
  TIMEOUT: 'TIMEOUT',
  CANCELLED: 'CANCELLED',
  OVERLOADED: 'OVERLOADED',
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  UNAVAILABLE: 'UNAVAILABLE',
  INTERNAL: 'INTERNAL',
} as const;

/** One of {@link ErrorCode}'s values. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const RETRYABLE: Readonly<Record<ErrorCode, boolean>> = {
  BAD_REQUEST: false,
  NOT_FOUND: false,
  NO_INSTANCES: true,
  INSTANCE_LOST: true,
  TIMEOUT: false,
  CANCELLED: false,
  OVERLOADED: true,
  PAYLOAD_TOO_LARGE: false,
  UNAVAILABLE: true,
  INTERNAL: false,
};

/** True when `code` is one of the closed set of {@link ErrorCode}s. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(RETRYABLE, code);
}

/**
 * The one error Troupe throws and sends. Whatever a handler throws is turned
 * into a TroupeError at the boundary ({@link toTroupeError}); local misuse
 * (bad names, bad arguments) throws one before anything is sent.
 *
 * @example
 * throw new TroupeError('NOT_FOUND', 'no endpoint generate on decode');
 */
export class TroupeError extends Error {
  override readonly name = 'TroupeError';
  readonly code: ErrorCode;
  readonly data: unknown;

  constructor(code: ErrorCode, message: string, options?: { data?: unknown; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.data = options?.data;
  }

  /** Whether a retry (to another instance) may succeed. */
  get retryable(): boolean {
    return RETRYABLE[this.code];
  }

  /** The wire shape: `{ code, message, data? }`. */
  toJSON(): WireError {
    const out: WireError = { code: this.code, message: this.message };
    if (this.data !== undefined) out.data = this.data;
    return out;
  }
}

/** What crosses the wire for an error. */
export interface WireError {
  code: ErrorCode;
  message: string;
  data?: unknown;
  stack?: string;
}

/**
 * Normalises anything thrown into a TroupeError: TroupeErrors pass through,
 * anything else becomes `INTERNAL` with the original as `cause`.
 *
 * @example
 * try { await work(); } catch (e) { reply(toTroupeError(e)); }
 */
export function toTroupeError(err: unknown, fallback: ErrorCode = 'INTERNAL'): TroupeError {
  if (err instanceof TroupeError) return err;
  if (err instanceof Error) {
    const abortLike = err.name === 'AbortError';
    return new TroupeError(abortLike ? 'CANCELLED' : fallback, err.message || err.name, { cause: err });
  }
  return new TroupeError(fallback, typeof err === 'string' ? err : `non-error thrown: ${safeString(err)}`, {
    cause: err,
  });
}

/** Rebuilds a TroupeError from its wire shape; unknown codes become INTERNAL. */
/** Marks an error decoded from the wire (non-enumerable: it never travels, never shows in JSON). */
const REMOTE = Symbol('troupe.remote');

/**
 * Whether `err` came from another instance (decoded from a reply), not
 * raised here. A downstream instance's `data: { fatal: true }` breaks that
 * instance only: a handler that lets it propagate does not break its own.
 *
 * @example
 * catch (err) { if (err instanceof TroupeError && isRemoteError(err)) console.log('raised downstream'); }
 */
export function isRemoteError(err: TroupeError): boolean {
  return (err as unknown as Record<symbol, unknown>)[REMOTE] === true;
}

export function fromWire(value: unknown): TroupeError {
  if (value !== null && typeof value === 'object') {
    const v = value as Partial<WireError>;
    const code = isErrorCode(v.code) ? v.code : 'INTERNAL';
    const message = typeof v.message === 'string' ? v.message : 'remote error without a message';
    const err = new TroupeError(code, message, v.data === undefined ? undefined : { data: v.data });
    if (typeof v.stack === 'string') err.stack = `${err.name}: ${message}\n    --- remote ---\n${v.stack}`;
    Object.defineProperty(err, REMOTE, { value: true });
    return err;
  }
  return new TroupeError('INTERNAL', `malformed remote error: ${safeString(value)}`);
}

function safeString(v: unknown): string {
  try {
    return String(v);
  } catch {
    return typeof v;
  }
}
