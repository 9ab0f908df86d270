import type { Expirable } from '../plane/deadline-wheel';
import { type CallMeter, now } from '../plane/meter';
import type { CallerMonitor } from './caller-monitor';
import {
  abortCode,
  carriedHeaders,
  decodeError,
  MAX_WINDOW,
  metadataHeader,
  type MigrateOptions,
  onAbort,
  onStop,
  precheck,
  remainingBudget,
  requestHeaders,
  stopGraceOf,
  stopHeaders,
  type StreamOptions,
} from './call-options';
import { callAttributes, type ClientSpan, endSpan, startClientSpan, tracingActive } from '../plane/telemetry';
import type { InFlight } from '../discovery/discovery';
import { ErrorCode, TroupeError, toTroupeError } from '../errors';
import type { ReplyHandler } from '../plane/reply-inbox';
import { validateInstanceId } from '../names';
import type { Plane } from '../plane/plane';
import { Ctl, Frame, H, isHandoff, isRefusal, MODE_STREAM, PROTOCOL_VERSION } from '../wire/protocol';
import { type EndpointAddress, ownMailboxSubject } from '../wire/subjects';
import type { Headers, TransportMessage } from '../transport/transport';
import { type AttemptOwner, StreamAttempt } from './stream-attempt';
import { explainNoInstances } from './not-found';
import { LocalFrame } from '../plane/local-streams';

const EMPTY = new Uint8Array(0);
/** Re-sends of a request that never reached an instance ("no responders", refused while stopping). */
const MAX_REROUTES = 3;
/** Migration attempts at most, whatever the option says. */
const MAX_MIGRATIONS = 100;

/** Where one attempt of a stream goes. */
export interface StreamTarget {
  /** The subject the request is published to: an instance's mailbox, or the endpoint's queue group. */
  readonly subject: string;
  /** The instance a router picked (undefined for the queue group: the start frame names it). */
  readonly instanceId?: string;
  /** Counts the attempt as in flight to its instance (least-loaded routing, and failing fast when its lease dies); returns the remover. */
  track?(flight: InFlight): () => void;
}

/**
 * Picks the target of a re-sent or migrated stream, away from the instance
 * that failed (undefined when none had accepted); undefined when there is
 * nowhere to go. The client supplies it, so migration goes through the
 * client's router and inhibition.
 */
export type StreamRoute = (failedInstanceId: string | undefined) => StreamTarget | undefined;

/** Where a stream's items go: an RxJS subscriber (push) or a pull-based iterator. */
export interface StreamSink<T> {
  next(item: T): void;
  error(err: unknown): void;
  complete(): void;
  readonly closed: boolean;
  /** Pull mode: credit is granted as the consumer reports items consumed ({@link CallerStream.consumed}), not as they are delivered. */
  readonly pull?: boolean;
  /**
   * Optional, for a sink that only buffers (runs no consumer code): a data
   * frame's items at once, in place of `next` per item. The array is the
   * sink's from then on (it may clear taken slots); the stream never reads it again.
   */
  nextAll?(items: T[]): void;
}

/**
 * Caller side of one stream: request, frames, credit, cancel, liveness
 * (through the runtime's {@link CallerMonitor}) and migration. One object
 * lives for the whole stream; each attempt (the first request, a re-send, a
 * migration) is a {@link StreamAttempt} with its own reply key, sequence
 * numbers and credit, dropped when it ends.
 */
export class CallerStream<Req, Res> implements ReplyHandler, InFlight, AttemptOwner, Expirable {
  /** The endpoint view's in-flight links (see {@link InFlight}). */
  flightIn: object | undefined = undefined;
  flightPrev: InFlight | undefined = undefined;
  flightNext: InFlight | undefined = undefined;
  private readonly monitor: CallerMonitor;
  private request!: Req;
  private options: StreamOptions<Req, Res> | undefined;
  /** What every attempt's request carries besides its budget (request id, trace context, metadata). */
  private carried: Record<string, string> | undefined;
  /** The client span of the whole stream (all attempts), when a tracer provider is registered. */
  private span: ClientSpan | undefined;
  private deadline = 0;
  private budget = 0;
  private window = 0;
  private windowBytes = 0;
  private route: StreamRoute | undefined;
  private migrate: MigrateOptions<Req, Res> | undefined;
  private maxMigrations = 0;
  /** Asks a draining instance to hand the stream off at once (`Troupe-Migrate`). */
  private handoffAtOnce = false;
  /** Items delivered so far, kept only for `migrate.resume`. */
  private items: Res[] | undefined;
  private migrations = 0;
  private reroutes = 0;
  /** The deadline wheel's links (the stream's deadline is on the plane's wheel while it runs). */
  wheelSlot = 0;
  wheelPrev: Expirable | undefined = undefined;
  wheelNext: Expirable | undefined = undefined;
  private unlisten: (() => void) | undefined;
  private unlistenStop: (() => void) | undefined;
  /** The caller (or the parent) asked the handler to stop: the grace it gives, ms; no migration after it. */
  private stopGrace: number | undefined;
  /** A stop not sent yet: the current attempt's instance is not known (its start frame sends it). */
  private stopPending = false;
  /** Items handed to the sink, over all attempts. */
  private delivered = 0;
  /** Items the consumer reported consumed (pull mode). */
  private consumedTotal = 0;
  private done = false;
  private cancelled = false;
  /** Unsubscribed before the instance was known: cancel when its start frame arrives. */
  private cancelOnStart = false;
  /** Pull mode: items of earlier attempts still unconsumed (their consumption grants no credit to this attempt). */
  private stale = 0;
  /** The current attempt; undefined before the first is sent and after the last ended. */
  private attempt: StreamAttempt<Req> | undefined;
  /** Where the latest attempt went (for error messages after it ended). */
  private subject = '';

  constructor(
    private readonly plane: Plane,
    private readonly address: EndpointAddress,
    private readonly sink: StreamSink<Res>,
  ) {
    this.monitor = plane.monitor;
    this.meter = plane.meter.callMeter(address.namespace, address.component, address.endpoint);
    this.startedAt = this.meter ? now() : 0;
  }

  private readonly meter: CallMeter | undefined;
  private readonly startedAt: number;

  /**
   * Sends the request to `target`. `route` (when given) picks where a request
   * that reached no instance is re-sent, and where a lost stream migrates.
   */
  start(target: StreamTarget, request: Req, options: StreamOptions<Req, Res> | undefined, route?: StreamRoute): void {
    if (this.done) return; // unsubscribed while the route was being resolved
    const settings = this.plane.settings;
    this.budget = remainingBudget(options, settings.streamTimeoutMs);
    const window = options?.window ?? settings.streamWindow;
    const migrate = options?.migrate;
    const refusal =
      precheck(options, this.budget, target.subject) ??
      (Number.isInteger(window) && window >= 1 && window <= MAX_WINDOW
        ? undefined
        : new TroupeError('BAD_REQUEST', `window must be an integer in 1..${MAX_WINDOW}, got ${String(window)}`)) ??
      checkMigrate(migrate);
    if (refusal) return this.finish(refusal);
    let meta: string | undefined;
    try {
      meta = metadataHeader(options);
    } catch (err) {
      return this.finish(toTroupeError(err, 'BAD_REQUEST'));
    }
    if (tracingActive()) this.span = startClientSpan(target.subject, options?.parent?.trace, callAttributes(this.address, target.subject, true));
    this.carried = carriedHeaders(options, meta, this.span);
    this.request = request;
    this.options = options;
    this.window = window;
    const wb = options?.windowBytes ?? settings.streamWindowBytes;
    this.windowBytes = Number.isInteger(wb) && wb >= 1024 ? wb : settings.streamWindowBytes;
    this.route = route;
    this.deadline = Date.now() + this.budget;
    if (migrate) {
      this.migrate = migrate;
      this.maxMigrations = migrate.attempts ?? 1;
      // A pinned client has nowhere to migrate to: its stream runs through the grace period as before.
      this.handoffAtOnce = this.maxMigrations > 0 && migrate.onDrain !== 'finish' && route !== undefined;
      this.items = [];
    }
    // On the plane's deadline wheel (one timer for all calls) rather than a setTimeout per stream.
    this.plane.wheel.add(this, this.deadline);
    this.unlisten = onAbort(options, this.onAbortSignal);
    this.unlistenStop = onStop(options, this.onStopSignal);
    this.send(target, request);
    if (options?.stopSignal?.aborted) this.onStopSignal(); // stopped before it started: the handler is told at once
  }

  /** Publishes one attempt's request. */
  private send(target: StreamTarget, request: Req): void {
    let data: Uint8Array;
    try {
      data = this.plane.codec.encode(request);
    } catch (err) {
      return this.finish(toTroupeError(err, 'BAD_REQUEST'));
    }
    const [key, reply] = this.plane.inbox.open(this);
    this.subject = target.subject;
    const a = new StreamAttempt<Req>(this, this.monitor, {
      key,
      replySubject: reply,
      subject: target.subject,
      picked: target.instanceId,
      request,
      // A routed request names its instance up front: cancel and credit need not wait for the start frame.
      ctlSubject: target.instanceId === undefined ? undefined : ownMailboxSubject(this.address, target.instanceId),
    });
    this.attempt = a;
    const headers = requestHeaders(this.plane, Math.max(1, this.deadline - Date.now()), this.carried);
    headers[H.MODE] = MODE_STREAM;
    headers[H.WINDOW] = String(this.window);
    headers[H.WINDOW_BYTES] = String(this.windowBytes);
    headers[H.PROTO] = PROTOCOL_VERSION;
    headers[H.HEARTBEAT] = String(this.plane.settings.streamHeartbeatMs);
    if (this.handoffAtOnce) headers[H.MIGRATE] = '1';
    try {
      this.plane.transport.publish(target.subject, data, { reply, headers });
    } catch (err) {
      return this.finish(toTroupeError(err, 'UNAVAILABLE'));
    }
    a.untrack = target.track?.(this);
    this.monitor.add(a);
    if (this.stopGrace !== undefined) this.sendStop(); // a re-sent request that was stopped before it reached anyone
  }

  /** The instance serving the current attempt, as far as known. */
  get instanceId(): string | undefined {
    return this.attempt?.instanceId;
  }

  onReply(msg: TransportMessage): void {
    if (this.done) {
      // Unsubscribed before the start frame: now we know whom to cancel.
      if (this.cancelOnStart && msg.header(H.INSTANCE) !== undefined) this.cancelAfterStart(msg);
      return;
    }
    const a = this.attempt;
    if (!a) return;
    if (msg.noResponders) {
      // The request (or a credit, which carries this stream's reply subject) found no subscriber.
      if (a.instanceId !== undefined) {
        return this.lost(new TroupeError('INSTANCE_LOST', `instance ${a.instanceId} is gone: its mailbox has no responders`));
      }
      return this.unreachable(new TroupeError('NO_INSTANCES', `no instance is serving ${a.subject}`));
    }
    a.heard();
    if (msg.header(H.ERROR) !== undefined) {
      const err = decodeError(this.plane, msg);
      if (a.instanceId === undefined && isRefusal(err)) return this.unreachable(err);
      // A draining instance handed the stream off: a migrating stream continues elsewhere, any other ends UNAVAILABLE.
      if (this.migrate && isHandoff(err)) return this.handedOff(a, msg, err);
      return this.finish(err);
    }
    const frame = msg.header(H.FRAME);
    // The first frame names the instance: a start frame, or the first data (or end) frame.
    if (a.instanceId === undefined && frame !== Frame.START && msg.header(H.INSTANCE) !== undefined) {
      this.onStart(a, msg);
      if (this.done) return;
    }
    switch (frame) {
      case Frame.START:
        return this.onStart(a, msg);
      case Frame.DATA:
        return this.onData(a, msg);
      case Frame.END:
        return this.onEnd(a, msg);
      case Frame.HEARTBEAT:
        return;
      case Frame.ERROR:
        return this.finish(decodeError(this.plane, msg));
      default:
        return this.finish(new TroupeError('INTERNAL', `unknown stream frame ${JSON.stringify(frame)} from ${a.subject}`));
    }
  }

  /** Named in a worker's heartbeat. */
  onHeartbeat(): void {
    this.attempt?.heard();
  }

  private onStart(a: StreamAttempt<Req>, msg: TransportMessage): void {
    try {
      a.instanceId = validateInstanceId(msg.header(H.INSTANCE));
    } catch {
      return this.finish(new TroupeError('INTERNAL', `stream start frame from ${a.subject} names no valid instance`));
    }
    // A routed request named the picked instance's mailbox already: built again only when another instance answered.
    if (a.ctlSubject === undefined || a.instanceId !== a.picked) a.ctlSubject = ownMailboxSubject(this.address, a.instanceId);
    if (this.stopPending) this.sendStop();
  }

  private onData(a: StreamAttempt<Req>, msg: TransportMessage): void {
    const seq = Number(msg.header(H.SEQ));
    if (seq !== a.received) {
      return this.lost(new TroupeError('INSTANCE_LOST', `stream from ${a.instanceId ?? a.subject} lost frames: expected item ${a.received}, got ${seq}`));
    }
    let items: unknown;
    let bytes: number;
    if (msg instanceof LocalFrame) {
      // From an instance of this runtime: the items are copies already (plane/local-streams.ts); the size is msgpack's.
      items = msg.items;
      bytes = msg.size;
    } else {
      try {
        items = this.plane.codec.decode(msg.data);
      } catch (err) {
        return this.finish(toTroupeError(err, 'INTERNAL'));
      }
      bytes = msg.data.length;
    }
    if (!Array.isArray(items)) {
      return this.finish(new TroupeError('INTERNAL', `malformed data frame from ${a.subject}: not an array`));
    }
    const keep = this.items;
    const sink = this.sink;
    if (sink.nextAll !== undefined) {
      // A buffering sink: no consumer code runs inside it, so nothing can end the stream between two items.
      a.received += items.length;
      this.delivered += items.length;
      if (keep) for (const item of items) keep.push(item as Res);
      sink.nextAll(items as Res[]);
      if (this.done || this.attempt !== a) return;
    } else {
      for (const item of items) {
        a.received++;
        this.delivered++;
        keep?.push(item as Res);
        sink.next(item as Res);
        if (this.done || this.attempt !== a) return; // unsubscribed (or errored, or migrated) inside next()
      }
    }
    // After delivery: time a synchronous consumer spent on these items is not the worker's silence.
    a.heard();
    a.receivedBytes += bytes;
    if (!this.sink.pull) {
      a.consumedSinceGrant += items.length;
      a.bytesSinceGrant += bytes;
      this.grant(a);
    }
  }

  /** Pull mode: the consumer took `n` items; grant credit for them. */
  consumed(n: number): void {
    this.consumedTotal += n;
    if (this.stale > 0) {
      const k = Math.min(this.stale, n);
      this.stale -= k;
      n -= k;
    }
    const a = this.attempt;
    if (this.done || n === 0 || !a) return;
    a.consumedSinceGrant += n;
    if (a.received > 0) a.bytesSinceGrant += (a.receivedBytes / a.received) * n;
    this.grant(a);
  }

  /**
   * Grants in halves of the window: one control message per window/2 items
   * (or windowBytes/2 bytes, for large items) consumed.
   */
  private grant(a: StreamAttempt<Req>): void {
    if (!a.ctlSubject || a.consumedSinceGrant === 0) return;
    if (a.consumedSinceGrant * 2 < this.window && a.bytesSinceGrant * 2 < this.windowBytes) return;
    const n = a.consumedSinceGrant;
    a.consumedSinceGrant = 0;
    a.bytesSinceGrant = 0;
    this.sendCtl(Ctl.CREDIT, n);
  }

  private onEnd(a: StreamAttempt<Req>, msg: TransportMessage): void {
    const total = Number(msg.header(H.SEQ));
    if (total !== a.received) {
      return this.lost(new TroupeError('INSTANCE_LOST', `stream from ${a.instanceId ?? a.subject} ended after ${total} items but ${a.received} arrived`));
    }
    this.finish();
  }

  /** Silent past the idle bound (from the monitor, through the current attempt). */
  silent(silenceMs: number): void {
    if (this.done) return this.endAttempt(); // waited for a start frame to cancel; give up
    const target = this.attempt?.target;
    if (target === undefined) {
      return this.lost(new TroupeError('INSTANCE_LOST', `no instance accepted the stream sent to ${this.subject} within ${this.monitor.idleMs} ms`));
    }
    this.lost(
      new TroupeError(
        'INSTANCE_LOST',
        `instance ${target} was silent for ${Math.round(silenceMs)} ms (idle bound ${this.monitor.idleMs} ms): frozen, partitioned or dead`,
      ),
    );
  }

  /**
   * Discovery saw the instance's lease lapse: probe it now rather than fail
   * (a busy caller can read lease updates late; a dead instance answers "no
   * responders" to the probe in milliseconds, a frozen one hits the idle bound).
   */
  lose(_err: TroupeError): void {
    if (this.attempt) this.monitor.suspect(this.attempt);
  }

  /**
   * The instance serving this attempt is lost: migrate when asked to and
   * possible, else fail with INSTANCE_LOST and the count delivered.
   */
  lost(err: TroupeError): void {
    if (this.done) return;
    this.plane.stats.streamsLost++;
    // A frozen worker that wakes up stops at once.
    this.move(err.code === ErrorCode.INSTANCE_LOST ? err : new TroupeError(ErrorCode.INSTANCE_LOST, err.message, { cause: err.cause }), true);
  }

  /**
   * A draining instance ended the attempt with a handoff after `Troupe-Seq`
   * items: when all of them arrived the stream continues elsewhere from
   * there; when some did not, frames were lost (as for any gap).
   */
  private handedOff(a: StreamAttempt<Req>, msg: TransportMessage, err: TroupeError): void {
    const sent = Number(msg.header(H.SEQ));
    if (sent !== a.received) {
      return this.lost(new TroupeError('INSTANCE_LOST', `stream from ${a.target ?? a.subject} was handed off after ${sent} items but ${a.received} arrived`));
    }
    // The instance ended the stream itself: nothing to cancel there.
    this.move(err, false);
  }

  /**
   * The current attempt ended before the stream did (its instance lost or
   * draining): re-issue it through `migrate.resume` when asked to and
   * possible, else fail with `err`'s code and the count delivered.
   */
  private move(err: TroupeError, cancelRemote: boolean): void {
    const stats = this.plane.stats;
    const failed = this.attempt?.target;
    this.endAttempt(cancelRemote);
    const migrate = this.migrate;
    if (migrate && this.route && this.migrations < this.maxMigrations && !this.cancelled && this.stopGrace === undefined && this.deadline - Date.now() > 0) {
      let next: Req | undefined;
      try {
        next = migrate.resume(this.request, this.items as Res[]);
      } catch (e) {
        return this.finish(new TroupeError('INTERNAL', `migrate.resume threw: ${toTroupeError(e).message}`, { cause: e, data: this.progress(failed) }));
      }
      const target = next === undefined ? undefined : this.route(failed);
      if (target) {
        this.migrations++;
        stats.streamsMigrated++;
        this.plane.logger.info('stream migrated', {
          from: failed,
          why: cancelRemote ? 'lost' : 'handoff',
          to: target.instanceId ?? target.subject,
          delivered: this.delivered,
          attempt: this.migrations,
        });
        return this.send(target, next as Req);
      }
    }
    this.finish(new TroupeError(err.code, err.message, { cause: err.cause, data: this.progress(failed) }));
  }

  /** The request never reached an instance: re-send it elsewhere when the client routes, else fail. */
  private unreachable(err: TroupeError): void {
    const a = this.attempt;
    const failed = a?.picked;
    if (a && failed !== undefined && this.route && this.reroutes < MAX_REROUTES && this.deadline - Date.now() > 0) {
      this.endAttempt(false);
      const target = this.route(failed);
      if (target) {
        this.reroutes++;
        // This attempt's request was never received: send the same one again.
        return this.send(target, a.request);
      }
    }
    this.finish(this.delivered > 0 ? new TroupeError(err.code, err.message, { cause: err, data: this.progress(failed) }) : err);
  }

  private progress(instanceId: string | undefined): Record<string, unknown> {
    return { delivered: this.delivered, instanceId, migrations: this.migrations };
  }

  /** The deadline passed (the wheel's call). */
  expire(): void {
    this.sendCtl(Ctl.CANCEL, undefined, 'TIMEOUT');
    this.finish(new TroupeError('TIMEOUT', `stream from ${this.subject} did not finish within ${this.budget} ms`, { data: this.progress(this.instanceId) }));
  }

  private readonly onAbortSignal = (): void => {
    // The parent's deadline passing reads as TIMEOUT downstream, not as a cancel (#18).
    const code = abortCode(this.options);
    this.cancelled = true;
    this.sendCtl(Ctl.CANCEL, undefined, code);
    const why = code === 'TIMEOUT' ? "timed out (its parent's deadline passed)" : 'cancelled';
    this.finish(new TroupeError(code, `stream from ${this.subject} ${why}`, { data: this.progress(this.instanceId) }));
  };

  /**
   * The caller's (or the parent's) stop signal: ask the handler to finish.
   * The stream stays open and ends with the worker's end frame (or error).
   */
  private readonly onStopSignal = (): void => {
    if (this.done || this.stopGrace !== undefined) return;
    this.stopGrace = stopGraceOf(this.options);
    this.sendStop();
  };

  /** Sends the stop to the current attempt's instance, or when its start frame names it. */
  private sendStop(): void {
    const a = this.attempt;
    const ctl = a?.ctlSubject;
    this.stopPending = a !== undefined && ctl === undefined;
    if (!a || !ctl) return;
    try {
      this.plane.transport.publish(ctl, EMPTY, { headers: stopHeaders(a.replySubject, this.stopGrace ?? 0) });
    } catch (err) {
      // Disconnected: the stream ends at the deadline, or as lost.
      this.plane.logger.warn('stream stop not sent', { subject: ctl, error: (err as Error).message });
    }
  }

  /** Unsubscribed (or the iterator returned): cancel the remote handler and release everything. */
  teardown(): void {
    if (this.done) return;
    this.cancelled = true;
    this.done = true;
    this.clearTimers();
    if (this.span) {
      this.span.span.setAttribute('troupe.unsubscribed', true);
      endSpan(this.span.span);
      this.span = undefined;
    }
    if (this.attempt?.ctlSubject !== undefined || !this.attempt) {
      this.sendCtl(Ctl.CANCEL);
      this.endAttempt();
    } else {
      // Without a start frame we do not know whom to cancel yet: keep listening
      // until it arrives (the instance sends it on acceptance) or the idle bound passes.
      this.cancelOnStart = true;
    }
  }

  private cancelAfterStart(msg: TransportMessage): void {
    this.cancelOnStart = false;
    try {
      if (this.attempt) this.attempt.ctlSubject = ownMailboxSubject(this.address, validateInstanceId(msg.header(H.INSTANCE)));
      this.sendCtl(Ctl.CANCEL);
    } catch {
      // no valid instance named: nothing to cancel
    }
    this.endAttempt();
  }

  /** Sends a control message about the current attempt to its instance (nothing when its instance is not known yet). */
  private sendCtl(kind: Ctl, credit?: number, reason?: 'TIMEOUT' | 'CANCELLED'): void {
    const a = this.attempt;
    const ctl = a?.ctlSubject;
    if (!a || !ctl) return;
    const stream = a.replySubject;
    try {
      if (credit === undefined) {
        const headers: Headers = reason === undefined ? { [H.CTL]: kind, [H.STREAM]: stream } : { [H.CTL]: kind, [H.STREAM]: stream, [H.REASON]: reason };
        this.plane.transport.publish(ctl, EMPTY, { headers });
      } else {
        // With a reply subject: a dead instance's mailbox answers "no responders" to this stream at once.
        const headers: Headers = { [H.CTL]: kind, [H.STREAM]: stream, [H.CREDIT]: String(credit) };
        this.plane.transport.publish(ctl, EMPTY, { reply: stream, headers });
      }
    } catch (err) {
      // A lost credit stalls the worker until a heartbeat or probe; a lost cancel is caught by the worker's heartbeat ("gone").
      this.plane.logger.warn('stream control message not sent', { subject: ctl, kind, error: (err as Error).message });
    }
  }

  /** Ends the current attempt: stops watching it, forgets its reply key, optionally cancels it at the worker, and drops it. */
  private endAttempt(cancelRemote = false): void {
    this.cancelOnStart = false;
    this.stopPending = false;
    const a = this.attempt;
    if (!a) return;
    a.drop();
    if (cancelRemote) this.sendCtl(Ctl.CANCEL); // a frozen worker that wakes up stops at once
    this.plane.inbox.close(a.key);
    if (this.sink.pull) this.stale = this.delivered - this.consumedTotal;
    this.attempt = undefined;
  }

  /** The runtime closed: end the stream with `err` now. */
  abandon(err: TroupeError): void {
    this.finish(err);
  }

  private finish(err?: TroupeError): void {
    if (this.done) return;
    this.done = true;
    this.clearTimers();
    this.endAttempt();
    this.items = undefined;
    if (this.span) endSpan(this.span.span, err);
    this.span = undefined;
    this.meter?.finish(this.startedAt, err ? err.code : 'OK');
    if (err?.code === ErrorCode.NO_INSTANCES) {
      // Failure path only: ask discovery whether the endpoint exists at all (a typo is NOT_FOUND, not an outage).
      void explainNoInstances(this.plane, this.address, err).then((e) => this.sink.error(e));
    } else if (err) this.sink.error(err);
    else this.sink.complete();
  }

  private clearTimers(): void {
    if (this.wheelSlot) this.plane.wheel.remove(this);
    this.unlisten?.();
    this.unlisten = undefined;
    this.unlistenStop?.();
    this.unlistenStop = undefined;
  }
}

function checkMigrate(m: MigrateOptions<unknown, unknown> | undefined): TroupeError | undefined {
  if (m === undefined) return undefined;
  if (typeof m !== 'object' || m === null || typeof m.resume !== 'function') {
    return new TroupeError('BAD_REQUEST', 'migrate needs a resume(request, received) function');
  }
  const a = m.attempts ?? 1;
  if (!Number.isInteger(a) || a < 0 || a > MAX_MIGRATIONS) {
    return new TroupeError('BAD_REQUEST', `migrate.attempts must be an integer in 0..${MAX_MIGRATIONS}, got ${String(m.attempts)}`);
  }
  if (m.onDrain !== undefined && m.onDrain !== 'handoff' && m.onDrain !== 'finish') {
    return new TroupeError('BAD_REQUEST', `migrate.onDrain must be 'handoff' or 'finish', got ${JSON.stringify(m.onDrain)}`);
  }
  return undefined;
}
