/**
 * Wire protocol constants: header names and frame kinds. Protocol metadata
 * travels in NATS headers so generic NATS tools can read it; bodies are
 * msgpack. Version 1.
 */
import { ErrorCode, TroupeError } from '../errors';

export const PROTOCOL_VERSION = '1';

/** Header names (case as sent; NATS header lookup in nats.js is case-sensitive by default). */
export const H = {
  /** Request id, propagated for logs and traces. */
  ID: 'Troupe-Id',
  /** Remaining time budget in ms at the moment of sending (relative: robust to clock skew). */
  TIMEOUT: 'Troupe-Timeout',
  /** `s` when the caller wants a stream; absent for unary. */
  MODE: 'Troupe-Mode',
  /** Stream credit window granted with the request (items). */
  WINDOW: 'Troupe-Window',
  /** Stream byte window: encoded item bytes the worker may have sent ahead of the consumer. */
  WINDOW_BYTES: 'Troupe-Window-Bytes',
  /** Protocol version of the request. */
  PROTO: 'Troupe-Proto',
  /** Error code on an error reply (body: `{ message, data? }`). */
  ERROR: 'Troupe-Error',
  /** Frame kind of a stream frame (see {@link Frame}). */
  FRAME: 'Troupe-Frame',
  /** Sequence number of the first item of a data frame; item count on an end frame. */
  SEQ: 'Troupe-Seq',
  /** The instance that accepted a stream (on its first frame). */
  INSTANCE: 'Troupe-Instance',
  /** A control message to a running stream (see {@link Ctl}). */
  CTL: 'Troupe-Ctl',
  /** The stream a control message is for: the caller's reply subject. */
  STREAM: 'Troupe-Stream',
  /**
   * Why a cancel control message was sent: `TIMEOUT` when the caller's
   * (propagated) deadline passed, absent or `CANCELLED` when the caller
   * cancelled; the handler's `ctx.signal.reason` carries that code.
   */
  REASON: 'Troupe-Reason',
  /**
   * On a stop control message: how long (ms) the handler may take to finish
   * after it is asked to stop; past it the worker aborts it (a kill).
   */
  GRACE: 'Troupe-Grace',
  /** Credit granted by a control message (items). */
  CREDIT: 'Troupe-Credit',
  /** On a stream request: how often (ms) the worker must show it is alive while the stream is open. */
  HEARTBEAT: 'Troupe-Heartbeat',
  /**
   * An event's metadata in one header: `{publisher} {seq} {time}` — who
   * published it, its sequence number per event subject from 1, and when
   * (epoch ms on the publisher's clock), space-separated (see `packEventHeader`).
   * What Troupe publishers send; subscribers also accept the three headers below.
   */
  EVENT: 'Troupe-Event',
  /**
   * On a stream request (`1`): the caller migrates this stream, so a draining
   * instance hands it off at once instead of running it through its grace period.
   */
  MIGRATE: 'Troupe-Migrate',
  /** Who published an event: an instance id, or a runtime id for runtime-level publishes. */
  PUBLISHER: 'Troupe-Publisher',
  /** The publisher's sequence number of an event, per event subject, from 1 (gaps are detectable). */
  EVENT_SEQ: 'Troupe-Event-Seq',
  /** When an event was published, epoch ms on the publisher's clock. */
  TIME: 'Troupe-Time',
  /** W3C Trace Context `traceparent` (lowercase, as W3C and OpenTelemetry's NATS conventions write it). */
  TRACEPARENT: 'traceparent',
  /** W3C Trace Context `tracestate`. */
  TRACESTATE: 'tracestate',
  /** Request metadata: `key=value` pairs joined by `&`, values percent-encoded (see `encodeMetadata`). */
  META: 'Troupe-Meta',
} as const;

/** Stream frame kinds. */
export const Frame = {
  START: 's',
  DATA: 'd',
  END: 'e',
  ERROR: 'x',
  HEARTBEAT: 'h',
} as const;
export type Frame = (typeof Frame)[keyof typeof Frame];

/** Control message kinds (caller to worker, on the instance mailbox). */
export const Ctl = {
  CREDIT: 'credit',
  /** Abort now (a kill): the handler's `ctx.signal` aborts; nothing more reaches the caller. */
  CANCEL: 'cancel',
  /**
   * Finish cleanly (a graceful stop): the handler's `ctx.stopSignal` aborts, it
   * ends on its own and the stream ends with an end frame (a unary call with
   * its reply); past `Troupe-Grace` ms the worker aborts it.
   */
  STOP: 'stop',
  /** "Are these streams alive?": body = the streams' reply subjects; the answer lists the unknown ones. */
  PROBE: 'probe',
  /** The caller's answer to a heartbeat naming streams it no longer has (body = their keys). */
  GONE: 'gone',
} as const;
export type Ctl = (typeof Ctl)[keyof typeof Ctl];

/** Request mode value for streams. */
export const MODE_STREAM = 's';

/**
 * The reply of an instance that refuses a request without running it (it is
 * stopping): `UNAVAILABLE` marked `data.refused`, so the caller knows the
 * request is safe to send to another instance, idempotent or not.
 *
 * @example
 * sendError(reply, refusal(`instance ${id} is stopping`));
 */
export function refusal(message: string): TroupeError {
  return new TroupeError(ErrorCode.UNAVAILABLE, message, { data: { refused: true } });
}

/**
 * The error frame that ends a stream on a draining instance: `UNAVAILABLE`
 * marked `data.handoff` (its `Troupe-Seq` says how many items were sent). A
 * caller that migrates the stream continues it on another instance from the
 * items it received; any other caller gets the `UNAVAILABLE`.
 *
 * @example
 * handOff(stream, handoff(`instance ${id} is draining: stream handed off`));
 */
export function handoff(message: string): TroupeError {
  return new TroupeError(ErrorCode.UNAVAILABLE, message, { data: { handoff: true } });
}

/**
 * Whether `err` is a {@link handoff}: the instance drained, the stream may continue elsewhere.
 *
 * @example
 * if (isHandoff(err) && migrating) return migrate();
 */
export function isHandoff(err: TroupeError): boolean {
  return err.code === ErrorCode.UNAVAILABLE && (err.data as { handoff?: unknown } | undefined)?.handoff === true;
}

/**
 * Whether `err` is a {@link refusal}: the request never ran, so re-routing it is safe.
 *
 * @example
 * if (isRefusal(err)) return sendElsewhere();
 */
export function isRefusal(err: TroupeError): boolean {
  return err.code === ErrorCode.UNAVAILABLE && (err.data as { refused?: unknown } | undefined)?.refused === true;
}
