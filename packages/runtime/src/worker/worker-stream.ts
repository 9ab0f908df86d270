import type { Expirable } from '../plane/deadline-wheel';
import { type EndpointMeter, now } from '../plane/meter';
import { isObservable, type Observable } from 'rxjs';
import { TroupeError, toTroupeError } from '../errors';
import { packTokens, type ReplyInbox, replyKeyOf, unpackTokens } from '../plane/reply-inbox';
import { FrameBuilder } from './frame-builder';
import { CopiedItems, type LocalBody, LocalFrame, localControlFrame } from '../plane/local-streams';
import type { Job } from './mailbox';
import type { Plane } from '../plane/plane';
import { Ctl, Frame, H } from '../wire/protocol';
import type { RequestContext } from './request-context';
import type { Headers, TransportMessage } from '../transport/transport';

/**
 * Items per data frame at most; frames also stay under max_payload. Each frame costs a
 * socket write, a message through the server and a dispatch at the caller: 4 096 small
 * items (with the 8 192 window) cost the worker ≈ 15% less CPU per item than 1 024; on the
 * bus {@link FRAME_FILL_BYTES} ends a frame of small items first (≈ 1 900 of 32 bytes).
 */
const MAX_BATCH_ITEMS = 4096;
/** Bytes of items per data frame at most (well under the 1 MiB default max_payload): also the largest item a stream sends. */
const MAX_BATCH_BYTES = 256 * 1024;
/**
 * Bytes of items after which a frame to another runtime is sent and the next begins: a frame's
 * message (items, headers, command line) stays under 64 KiB, nats-server's largest read buffer
 * (`maxBufSize` in its client.go; that this is why it helps was not isolated). An item past this
 * still travels, in a frame of its own, up to {@link MAX_BATCH_BYTES}.
 * Measured on the bench's stream (32-byte items, window 8 192; bench/ANALYSIS.md, "strfl"): frames
 * of ≈ 1,900 items instead of up to 4,096 (≈ 128 KiB) cost the worker, the server and the caller
 * less CPU per item and raised items/s; 96 KiB frames did not, 16 and 32 KiB ones cost more frames.
 * Frames to this runtime's own inbox (in-process, {@link WorkerStream.local}) keep the larger bound.
 */
const FRAME_FILL_BYTES = 60 * 1024;
/** Room left in a frame for headers. */
export const HEADER_ROOM = 512;

const NIL = new Uint8Array([0xc0]);
const EMPTY = new Uint8Array(0);
/** Bounds on the heartbeat interval a caller may ask for. */
const MIN_HEARTBEAT_MS = 10;
const MAX_HEARTBEAT_MS = 60_000;

/**
 * Frozen header records of the frames every short stream sends: the transport
 * encodes a frozen record once and reuses its header block, so a stream's
 * first data frame and its end frame cost no header encoding per stream.
 */
const END_CACHED = 64;
const END_HEADERS: Headers[] = [];
/** The first data frame's headers (naming the instance) of the last instance that sent one. */
let firstData: { instanceId: string; headers: Headers } | undefined;

function firstDataHeaders(instanceId: string): Headers {
  if (firstData?.instanceId !== instanceId) {
    firstData = { instanceId, headers: Object.freeze({ [H.FRAME]: Frame.DATA, [H.SEQ]: '0', [H.INSTANCE]: instanceId }) };
  }
  return firstData.headers;
}

/**
 * Worker-side state of one stream, from the moment the instance accepts the
 * request (before it waits in the mailbox) until its last frame: credit and
 * its waiter, the request context once the handler runs, and its place in
 * the instance's stream table and in the heartbeats to its caller.
 */
export class WorkerStream implements Expirable {
  credit: number;
  /** The endpoint's counters, set when the handler starts (items, frames, first-item time, stalls). */
  meter: EndpointMeter | undefined;
  /** When the handler started (from `now()`), for the time to the first item. */
  startedAt = 0;
  /** The caller's inbox key: the last token of the reply subject. */
  readonly key: string;
  /** The caller migrates this stream (`Troupe-Migrate`): a draining instance hands it off at once. */
  migrate = false;
  /** Items sent to the caller in data frames so far (what an end frame counts; a handoff frame names this count too). */
  sent = 0;
  /** Ended by a handoff frame (the instance drains): nothing more goes to the caller. */
  handedOff = false;
  /**
   * The caller is this runtime (its reply subject is this runtime's inbox, local calls on): frames go
   * straight to that inbox, data frames with copied items instead of encoded ones (plane/local-streams.ts).
   */
  local: ReplyInbox | undefined;
  /** The endpoint declares its values immutable: in-process items pass by reference ({@link local}). */
  immutable = false;
  private ctx: RequestContext | undefined;
  /** Why the stream was aborted before its handler ran (cancelled, or the caller left, while queued). */
  private early: TroupeError | undefined;
  /** The grace of a stop that arrived while the stream was queued (applied when the handler starts). */
  private earlyStop: number | undefined;
  private wake: (() => void) | undefined;
  private forgotten = false;
  /** In the heartbeats toward its caller (from the end of the tick it was accepted in, {@link checkStart}). */
  private beating = false;
  /** The start-frame check of {@link announce} has not run yet (it ends the tick the stream was accepted in). */
  private checkPending = false;
  /** What the pump asked to run at the end of that tick ({@link atTickEnd}). */
  private tickEnd: (() => void) | undefined;
  /** The deadline wheel's links ({@link armDeadline}); initialised here so the shape never changes. */
  wheelSlot = 0;
  wheelPrev: Expirable | undefined = undefined;
  wheelNext: Expirable | undefined = undefined;

  constructor(
    private readonly plane: Plane,
    private readonly table: Map<string, WorkerStream>,
    /** The caller's reply subject: where frames go, and the stream's id in control messages. */
    readonly reply: string,
    window: number,
    /** How often the caller wants proof of life, ms. */
    readonly heartbeatMs: number,
  ) {
    this.credit = window;
    this.key = replyKeyOf(reply);
  }

  /** Whether its handler started (its request context is attached): `serveStream` then forgets it whichever way it ends. */
  get started(): boolean {
    return this.ctx !== undefined;
  }

  get aborted(): boolean {
    return this.ctx ? this.ctx.aborted : this.early !== undefined;
  }

  /**
   * Aborts the handler with `TIMEOUT` at the request's deadline: on the plane's deadline wheel
   * (one timer for all), not a `setTimeout` per stream; {@link forget} takes it off.
   */
  armDeadline(ctx: RequestContext): void {
    this.plane.wheel.add(this, ctx.deadline);
  }

  /** The deadline passed (the wheel's call). */
  expire(): void {
    const ctx = this.ctx;
    ctx?.abort(new TroupeError('TIMEOUT', `deadline of ${ctx.endpoint} passed`));
  }

  /** Binds the request context once the handler is about to run; an earlier abort applies at once. */
  attach(ctx: RequestContext): void {
    this.ctx = ctx;
    ctx.onAbort(() => this.release());
    if (this.early) ctx.abort(this.early);
    else if (this.earlyStop !== undefined) ctx.stop(this.earlyStop);
  }

  /** Asks the handler to stop within `graceMs` (or, while queued, as soon as it starts). */
  stop(graceMs: number): void {
    if (this.ctx) this.ctx.stop(graceMs);
    else this.earlyStop ??= graceMs;
  }

  /** Runs `fn` when the stream is aborted (its context must be attached). */
  onAbort(fn: () => void): void {
    this.ctx?.onAbort(fn);
  }

  /** Aborts the handler (or, while queued, makes it abort as soon as it starts). */
  abort(reason: TroupeError): void {
    if (this.ctx) this.ctx.abort(reason);
    else this.early ??= reason;
    this.release();
  }

  /** Encoded bytes sent and not yet consumed (granted back) by the caller. */
  bytesInFlight = 0;
  /** Sizes of sent items not yet granted back, oldest first (a ring of numbers). */
  private sizes: number[] = [];
  private sizesHead = 0;
  private windowBytes = Infinity;

  /** Bounds encoded bytes in flight as well as items (the caller's `Troupe-Window-Bytes`). */
  limitBytes(windowBytes: number): void {
    this.windowBytes = windowBytes;
  }

  /** Whether the worker may send another item now. */
  get open(): boolean {
    return this.credit > 0 && this.bytesInFlight < this.windowBytes;
  }

  /** Records an item sent (its encoded size). */
  sentItem(bytes: number): void {
    this.credit--;
    this.bytesInFlight += bytes;
    this.sizes.push(bytes);
  }

  grant(n: number): void {
    this.credit += n;
    // The caller consumed the n oldest items in flight: their bytes are free again.
    const end = Math.min(this.sizesHead + n, this.sizes.length);
    for (let i = this.sizesHead; i < end; i++) this.bytesInFlight -= this.sizes[i] as number;
    this.sizesHead = end;
    if (this.sizesHead > 4096 && this.sizesHead * 2 > this.sizes.length) {
      this.sizes = this.sizes.slice(this.sizesHead);
      this.sizesHead = 0;
    }
    this.release();
  }

  waitForCredit(): Promise<void> {
    if (this.open || this.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      this.wake = resolve;
    });
  }

  /** Publishes one frame to the caller; throws what the transport throws. */
  send(headers: Headers, data: Uint8Array = EMPTY): void {
    if (this.instanceId !== undefined) {
      // The first frame names the instance: a first item ready in the same tick carries it (no separate start frame).
      headers = { ...headers, [H.INSTANCE]: this.instanceId };
      this.instanceId = undefined;
    }
    if (this.local) this.local.deliver(localControlFrame(this.reply, headers, data));
    else this.plane.transport.publish(this.reply, data, { headers });
  }

  /** Hands one data frame of copied items to the in-process caller ({@link local}). */
  sendCopied(headers: Record<string, string>, body: LocalBody): void {
    if (this.instanceId !== undefined) {
      headers[H.INSTANCE] = this.instanceId;
      this.instanceId = undefined;
    }
    (this.local as ReplyInbox).deliver(new LocalFrame(this.reply, headers, body));
  }

  /** Publishes a data frame whose first item has sequence number `first`. */
  sendData(first: number, frame: Uint8Array): void {
    if (first === 0 && this.instanceId !== undefined && this.local === undefined) {
      const headers = firstDataHeaders(this.instanceId);
      this.instanceId = undefined;
      this.plane.transport.publish(this.reply, frame, { headers });
    } else {
      this.send({ [H.FRAME]: Frame.DATA, [H.SEQ]: String(first) }, frame);
    }
  }

  /** Publishes the end frame after `sent` items. */
  sendEnd(sent: number): void {
    this.send(
      sent < END_CACHED
        ? (END_HEADERS[sent] ??= Object.freeze({ [H.FRAME]: Frame.END, [H.SEQ]: String(sent) }))
        : { [H.FRAME]: Frame.END, [H.SEQ]: String(sent) },
    );
  }

  /** The instance id still to announce on the first frame. */
  private instanceId: string | undefined;

  /**
   * Announces the accepting instance: on the first frame if one leaves in
   * this tick, else (the handler waits in the mailbox or has not produced
   * yet) with a start frame at the end of the tick.
   */
  announce(instanceId: string): void {
    this.instanceId = instanceId;
    this.checkPending = true;
    setImmediate(startCheck, this);
  }

  /** The end of the accepting tick: the start frame unless a frame named the instance already, then the pump's {@link atTickEnd}. */
  checkStart(): void {
    this.checkPending = false;
    if (!this.forgotten) {
      // Named in the heartbeats from here, after its first frame's write: a stream that ended within the tick it
      // arrived in (a single item) never joins, and a beat before now would tell its caller nothing (the caller
      // counts a stream's silence from its start, and probes only after 1.25 intervals).
      this.beating = true;
      this.plane.heartbeats.add(this);
    }
    if (this.instanceId !== undefined && !this.forgotten) {
      try {
        this.send({ [H.FRAME]: Frame.START });
      } catch (err) {
        // Not connected: the caller hears nothing and reports the stream lost; the handler's first frame fails too.
        this.plane.logger.warn('stream start frame not sent', { error: (err as Error).message });
      }
    }
    const fn = this.tickEnd;
    this.tickEnd = undefined;
    fn?.();
  }

  /**
   * Runs `fn` at the end of this tick: with the start-frame check when that is still to run
   * (a handler that produces in the tick its request arrived — one immediate per stream, not two),
   * else on an immediate of its own.
   */
  atTickEnd(fn: () => void): void {
    if (this.checkPending && this.tickEnd === undefined) this.tickEnd = fn;
    else setImmediate(fn);
  }

  /** Removes the stream from the table and the heartbeats; later control messages and probes find nothing. */
  forget(): void {
    if (this.forgotten) return;
    this.forgotten = true;
    if (this.table.get(this.reply) === this) this.table.delete(this.reply);
    if (this.wheelSlot) this.plane.wheel.remove(this);
    if (this.beating) this.plane.heartbeats.remove(this);
    this.release();
  }

  /** Wraps the mailbox job of this stream so the stream is forgotten whichever way the job ends. */
  guard(job: Job): Job {
    return () => {
      let r: void | Promise<void>;
      try {
        r = job();
      } catch (err) {
        this.forget();
        throw err;
      }
      if (r && typeof (r as Promise<void>).then === 'function') return (r as Promise<void>).finally(() => this.forget());
      this.forget();
      return r;
    };
  }

  private release(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}

/** The immediate of {@link WorkerStream.announce} (a function, not a closure per stream). */
function startCheck(stream: WorkerStream): void {
  stream.checkStart();
}

/**
 * Accepts a stream request as it arrives, before it waits in the mailbox:
 * registers it (so credit, cancel and probes find it), sends the start frame
 * naming this instance (so the caller can cancel and probe it even while it
 * waits), and adds it to the heartbeats toward its caller at the end of the tick.
 */
export function acceptStream(plane: Plane, table: Map<string, WorkerStream>, instanceId: string, msg: TransportMessage, reply: string): WorkerStream {
  const settings = plane.settings;
  const asked = Number(msg.header(H.WINDOW));
  const window = Number.isInteger(asked) && asked > 0 ? asked : settings.streamWindow;
  const hb = Number(msg.header(H.HEARTBEAT));
  const heartbeatMs = Number.isFinite(hb) && hb >= MIN_HEARTBEAT_MS ? Math.min(hb, MAX_HEARTBEAT_MS) : settings.streamHeartbeatMs;
  const stream = new WorkerStream(plane, table, reply, window, heartbeatMs);
  const askedBytes = Number(msg.header(H.WINDOW_BYTES));
  if (Number.isInteger(askedBytes) && askedBytes >= 1024) stream.limitBytes(askedBytes);
  stream.migrate = msg.header(H.MIGRATE) !== undefined;
  // A caller of this runtime: frames skip the transport, items are copied, not encoded (plane/local-streams.ts).
  if (plane.local.enabled && plane.inbox.owns(reply)) stream.local = plane.inbox;
  table.set(reply, stream);
  // Joins the heartbeats at the end of this tick, after the first frame's write (`checkStart`).
  stream.announce(instanceId);
  return stream;
}

/**
 * A control message on an instance mailbox (handled outside the mailbox
 * queue, so a busy instance still answers): credit, cancel, or a liveness
 * probe. Unknown kinds are ignored (a newer caller).
 */
export function streamControl(plane: Plane, table: Map<string, WorkerStream>, kind: string, msg: TransportMessage): void {
  if (kind === Ctl.PROBE) return answerProbe(plane, table, msg);
  const stream = table.get(msg.header(H.STREAM) ?? '');
  if (!stream) return; // finished already: a late credit or cancel is harmless
  if (kind === Ctl.CREDIT) {
    const n = Number(msg.header(H.CREDIT));
    if (Number.isInteger(n) && n > 0) stream.grant(n);
  } else if (kind === Ctl.CANCEL) {
    stream.abort(cancelReason(msg, 'stream'));
  } else if (kind === Ctl.STOP) {
    stream.stop(stopGrace(msg));
  }
}

/** Bounds on the grace of a stop (`Troupe-Grace`), ms; the caller's default is 2 000. */
const MAX_STOP_GRACE_MS = 600_000;
const DEFAULT_STOP_GRACE_MS = 2_000;

/** The grace a stop control message gives the handler: its `Troupe-Grace` when valid, else 2 s. */
export function stopGrace(msg: TransportMessage): number {
  const g = Number(msg.header(H.GRACE));
  return Number.isInteger(g) && g >= 0 && g <= MAX_STOP_GRACE_MS ? g : DEFAULT_STOP_GRACE_MS;
}

/**
 * The abort reason a cancel control message carries: `TIMEOUT` when the
 * caller's (propagated) deadline passed, else `CANCELLED` — so a handler can
 * tell a deadline from a cancel however many hops up it happened.
 */
export function cancelReason(msg: TransportMessage, what: 'stream' | 'call'): TroupeError {
  return cancelError(msg.header(H.REASON), what);
}

/** The abort reason of a cancel whose reason (`TIMEOUT`, else a cancel) the caller gave. */
export function cancelError(reason: string | undefined, what: 'stream' | 'call'): TroupeError {
  return reason === 'TIMEOUT'
    ? new TroupeError('TIMEOUT', `the caller's deadline passed (the ${what} timed out upstream)`)
    : new TroupeError('CANCELLED', `the caller cancelled the ${what}`);
}

/** Answers a probe with the streams (of those named) this instance does not know; an empty answer means "all alive". */
function answerProbe(plane: Plane, table: Map<string, WorkerStream>, msg: TransportMessage): void {
  if (!msg.reply) return;
  const unknown = unpackTokens(msg.data).filter((reply) => !table.has(reply));
  try {
    plane.transport.publish(msg.reply, packTokens(unknown), { headers: { [H.FRAME]: Frame.HEARTBEAT } });
  } catch {
    // the caller probes again, or gives up at its idle bound
  }
}

/**
 * A step this long between two items (read on the pump's clock checks) means
 * the generator computes synchronously between yields: the item goes out at
 * once, with what waited, even if the event loop never turned; ms. Items a
 * generator yields faster share their tick's frame.
 */
const TICK_MS = 4;

/**
 * Whether the pump reads the clock for the item that made the batch this long:
 * every item while the batch is short (a generator with slow steps never
 * builds a long one, so each of its items is checked), every 16th once it is
 * long (a fast generator pays one clock read per 16 items, not one per item).
 */
function clockDue(batchLength: number): boolean {
  return batchLength < 16 || (batchLength & 15) === 0;
}

/**
 * Moves items from the handler's iterable to the caller: never more than
 * the credit window ahead, the first item of a tick at once (no added
 * latency to the first token), the rest of the tick coalesced into one
 * frame; an item that comes more than `TICK_MS` after the previous clock
 * check goes out at once, before the generator's next step runs. Returns the number of items sent.
 */
export async function pump(plane: Plane, iterable: AsyncIterable<unknown>, stream: WorkerStream): Promise<number> {
  const maxBytes = Math.min(MAX_BATCH_BYTES, plane.transport.maxPayload - HEADER_ROOM);
  const fillBytes = stream.local ? maxBytes : Math.min(FRAME_FILL_BYTES, maxBytes);
  const batch: Batch = stream.local ? new CopiedBatch(plane, stream.immutable) : new EncodedBatch(plane);
  let sent = 0;
  let tickOpen = false;
  /** When the pump last read the clock (tick open, or a {@link clockDue} item). */
  let checkedAt = 0;
  /** Whether the last step measured was slow (assumed at the start: nothing is known yet). */
  let slowSteps = true;
  /** The pump waited for credit since its last item. */
  let stalled = false;
  const flush = (): void => {
    const n = batch.count;
    if (n === 0) return;
    const first = sent;
    sent += n;
    const frameBytes = batch.send(stream, first);
    stream.sent = sent;
    const m = stream.meter;
    if (m) {
      if (first === 0 && m.timed) m.firstItem.observeMs(now() - stream.startedAt);
      m.streamItems += n;
      m.streamFrames++;
      m.bytesOut += frameBytes;
    }
  };
  const closeTick = (): void => {
    tickOpen = false;
    if (!stream.aborted) {
      try {
        flush();
      } catch (err) {
        stream.abort(toTroupeError(err));
      }
    }
  };
  const it = iterable[Symbol.asyncIterator]();
  let finished = false;
  try {
    for (;;) {
      if (stream.aborted) break;
      if (!stream.open) {
        if (stream.meter) stream.meter.creditStalls++;
        flush();
        do {
          await stream.waitForCredit();
        } while (!stream.open && !stream.aborted);
        stalled = true;
      }
      if (stream.aborted) break;
      const r = await it.next();
      if (stream.aborted) break;
      if (r.done) {
        finished = true;
        break;
      }
      const size = batch.prepare(r.value);
      if (size > maxBytes) {
        throw new TroupeError('PAYLOAD_TOO_LARGE', `stream item ${sent + batch.count} is ${size} bytes; a frame holds at most ${maxBytes}`, {
          data: { size, max: maxBytes },
        });
      }
      if (batch.count > 0 && batch.bytes + size > fillBytes) {
        // flush() may run other code that encodes (a metric, a nested frame): keep this item's bytes
        batch.hold();
        flush();
      }
      batch.add(size);
      stream.sentItem(size);
      const afterStall = stalled;
      stalled = false;
      if (!tickOpen) {
        tickOpen = true;
        checkedAt = performance.now();
        stream.atTickEnd(closeTick);
        // After a credit stall this item is no first token: the stream was bound by the consumer,
        // and the rest of this tick follows within the same turn of the event loop. A frame of its
        // own would be one more write, server message and caller dispatch for one item (#19's cost:
        // 350 of 840 frames of a fast stream held a single item). It shares its tick's frame; a
        // generator whose steps measured slow still sends it at once.
        if (afterStall && !slowSteps) continue;
        flush();
        // nats.js writes what was published from a microtask: let it run before the handler's next
        // step, which may be synchronous work that would hold this item back until it ends (a
        // generator whose steps measured fast gets there through its own awaits).
        if (slowSteps) await undefined;
      } else if (batch.count >= MAX_BATCH_ITEMS) {
        flush();
      } else if (clockDue(batch.count)) {
        const t = performance.now();
        const slow = t - checkedAt > TICK_MS;
        checkedAt = t;
        slowSteps = slow;
        if (slow) {
          // A generator whose steps are synchronous never lets the tick close: the step just
          // measured says the next one may be as long, so this item goes out now (and is
          // written before the next step runs, as above). Fast generators never get here.
          flush();
          await undefined;
        }
      }
    }
    if (!stream.aborted) flush();
  } catch (err) {
    // Items produced before the failure still reach the caller, then the error frame.
    if (!stream.aborted) {
      try {
        flush();
      } catch {
        // the error frame that follows says what went wrong
      }
    }
    throw err;
  } finally {
    if (!finished) void Promise.resolve(it.return?.()).catch(() => undefined);
  }
  return sent;
}

/**
 * The pump's data frame in the making: items encoded into one msgpack frame
 * (a caller elsewhere), or copied into an array (a caller in this runtime,
 * plane/local-streams.ts) — with the same sizes, so windows, limits and
 * counters do not depend on the path.
 */
interface Batch {
  readonly count: number;
  /** Encoded bytes pending (without the array header). */
  readonly bytes: number;
  /** Encodes (or copies) `value` for the next {@link add}; returns its msgpack size. Throws the codec's error. */
  prepare(value: unknown): number;
  /** Makes the prepared item survive a flush that comes before its {@link add}. */
  hold(): void;
  /** Adds the prepared item, of `size` bytes. */
  add(size: number): void;
  /** Sends the pending items as the data frame numbered from `first`; returns the frame's size in bytes. Throws what sending throws. */
  send(stream: WorkerStream, first: number): number;
}

class EncodedBatch implements Batch {
  private readonly frame = new FrameBuilder();
  private readonly encode: (value: unknown) => Uint8Array;
  private pending: Uint8Array = NIL;

  constructor(plane: Plane) {
    const codec = plane.codec;
    this.encode = codec.encodeShared ? codec.encodeShared.bind(codec) : codec.encode.bind(codec);
  }

  get count(): number {
    return this.frame.count;
  }

  get bytes(): number {
    return this.frame.bytes;
  }

  prepare(value: unknown): number {
    this.pending = value === undefined ? NIL : this.encode(value);
    return this.pending.length;
  }

  hold(): void {
    // The shared encoder's buffer is overwritten by the next encode.
    this.pending = this.pending.slice();
  }

  add(): void {
    this.frame.add(this.pending);
    this.pending = NIL;
  }

  send(stream: WorkerStream, first: number): number {
    const frame = this.frame.take();
    stream.sendData(first, frame);
    return frame.length;
  }
}

class CopiedBatch implements Batch {
  private readonly items: CopiedItems;

  constructor(plane: Plane, immutable: boolean) {
    this.items = new CopiedItems(plane.codec, immutable);
  }

  get count(): number {
    return this.items.count;
  }

  get bytes(): number {
    return this.items.bytes;
  }

  prepare(value: unknown): number {
    return this.items.prepare(value);
  }

  hold(): void {
    // a copy is the caller's already
  }

  add(size: number): void {
    this.items.add(size);
  }

  send(stream: WorkerStream, first: number): number {
    const body = this.items.take();
    stream.sendCopied({ [H.FRAME]: Frame.DATA, [H.SEQ]: String(first) }, body);
    return body.size;
  }
}

/**
 * A handler's result as an async iterable: async iterables as they are,
 * Observables through a buffer (an Observable cannot be paused; prefer async
 * generators when the producer must feel backpressure), anything else as a
 * single item.
 */
export function toAsyncIterable(result: unknown, stream: WorkerStream): AsyncIterable<unknown> {
  if (isAsyncIterable(result)) return result;
  if (isObservable(result)) return observableToIterable(result, stream);
  return {
    async *[Symbol.asyncIterator]() {
      yield result;
    },
  };
}

function observableToIterable(source: Observable<unknown>, stream: WorkerStream): AsyncIterable<unknown> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<unknown> {
      const buffer: unknown[] = [];
      let head = 0;
      let done = false;
      let failure: unknown;
      let wake: (() => void) | undefined;
      const poke = (): void => {
        const w = wake;
        wake = undefined;
        w?.();
      };
      const sub = source.subscribe({
        next: (v) => {
          buffer.push(v);
          poke();
        },
        error: (e: unknown) => {
          failure = e ?? new Error('observable failed');
          done = true;
          poke();
        },
        complete: () => {
          done = true;
          poke();
        },
      });
      stream.onAbort(() => {
        sub.unsubscribe();
        done = true;
        poke();
      });
      return {
        async next(): Promise<IteratorResult<unknown>> {
          for (;;) {
            if (head < buffer.length) {
              const value = buffer[head];
              buffer[head++] = undefined;
              if (head > 4096 && head * 2 > buffer.length) {
                buffer.splice(0, head);
                head = 0;
              }
              return { value, done: false };
            }
            if (failure !== undefined) throw failure;
            if (done) return { value: undefined, done: true };
            await new Promise<void>((r) => (wake = r));
          }
        },
        async return(): Promise<IteratorResult<unknown>> {
          sub.unsubscribe();
          done = true;
          return { value: undefined, done: true };
        },
      };
    },
  };
}

export function isAsyncIterable(v: unknown): v is AsyncIterable<unknown> {
  return v !== null && typeof v === 'object' && typeof (v as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function';
}
