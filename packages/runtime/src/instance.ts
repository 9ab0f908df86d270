import { isObservable, type Observable } from 'rxjs';
import type { Context } from './context';
import type { ComponentMeta, EndpointMeta, InstanceInfo } from './decorators';
import { TroupeError, toTroupeError, type WireError } from './errors';
import type { Logger } from './logger';
import { Mailbox } from './mailbox';
import type { RequestPlane } from './plane';
import { Ctl, Frame, H, MODE_STREAM } from './protocol';
import { endpointAddress, ownMailboxSubject, queueGroup, queueSubject } from './subjects';
import type { Headers, TransportMessage, TransportSubscription } from './transport/transport';

/** Lifecycle hook run before an instance serves; a throw fails the spawn. */
export interface OnStart {
  onStart(): void | Promise<void>;
}

/** Lifecycle hook run after an instance stopped serving. */
export interface OnStop {
  onStop(): void | Promise<void>;
}

/** Per-instance settings resolved at spawn. */
export interface InstanceSettings {
  concurrency: number;
  mailboxCapacity: number;
}

type Handler = (req: unknown, ctx: Context) => unknown;

const enum State {
  Starting,
  Serving,
  Stopping,
  Stopped,
}

/** Items per data frame at most; frames also stay under max_payload. */
const MAX_BATCH_ITEMS = 1024;
/** Bytes of items per data frame at most (well under the 1 MiB default max_payload). */
const MAX_BATCH_BYTES = 256 * 1024;
/** Room left in a frame for headers. */
const HEADER_ROOM = 512;

/**
 * One running actor: its endpoints' subscriptions (queue group and mailbox),
 * its bounded mailbox, and the streams it is serving. Internal; users see it
 * through the spawn handle.
 */
export class ActorInstance {
  readonly info: InstanceInfo;
  private readonly mailbox: Mailbox;
  private readonly subs: TransportSubscription[] = [];
  private readonly mailboxSubs: TransportSubscription[] = [];
  private readonly active = new Set<RequestContext>();
  private readonly streams = new Map<string, WorkerStream>();
  private state = State.Starting;
  /** Set once the grace period ran out: queued requests are refused with it. */
  private refusal: TroupeError | undefined;

  constructor(
    private readonly plane: RequestPlane,
    private readonly meta: ComponentMeta,
    readonly actor: object,
    info: InstanceInfo,
    settings: InstanceSettings,
    readonly logger: Logger,
  ) {
    this.info = info;
    this.mailbox = new Mailbox(settings.concurrency, settings.mailboxCapacity);
  }

  /** Runs `onStart`, then subscribes every endpoint and waits until the server has the interest. */
  async start(): Promise<void> {
    const hook = (this.actor as Partial<OnStart>).onStart;
    if (typeof hook === 'function') await hook.call(this.actor);
    const t = this.plane.transport;
    try {
      for (const ep of this.meta.endpoints.values()) {
        const addr = endpointAddress(this.info.namespace, this.meta.name, ep.name);
        const handler = (this.actor as Record<string, unknown>)[ep.method];
        if (typeof handler !== 'function') {
          throw new TroupeError('INTERNAL', `${this.meta.name}.${ep.method} is not a function on the instance`);
        }
        const onMsg = (msg: TransportMessage): void => this.onMessage(ep, handler as Handler, msg);
        this.subs.push(t.subscribe(queueSubject(addr), onMsg, { queue: queueGroup(addr) }));
        this.mailboxSubs.push(t.subscribe(ownMailboxSubject(addr, this.info.instanceId), onMsg));
      }
      await t.flush();
    } catch (err) {
      for (const s of [...this.subs, ...this.mailboxSubs]) s.unsubscribe();
      throw err;
    }
    this.state = State.Serving;
  }

  /**
   * Stops serving: leaves the queue groups at once (the server routes new
   * requests elsewhere), refuses new direct requests, lets in-flight work
   * finish within `graceMs` (stream control keeps flowing on the mailbox),
   * then aborts what is left, and runs `onStop`.
   */
  async stop(graceMs: number): Promise<void> {
    if (this.state === State.Stopped || this.state === State.Stopping) return;
    this.state = State.Stopping;
    // Messages the server already delivered to the queue subscription are still handled.
    await Promise.all(this.subs.map((s) => s.drain()));
    const finished = await withTimeout(this.mailbox.idle(), graceMs);
    if (!finished) {
      const lost = new TroupeError('UNAVAILABLE', `instance ${this.info.instanceId} stopped before the request finished (grace period ${graceMs} ms)`);
      this.refusal = lost;
      for (const job of this.mailbox.takeQueued()) job();
      for (const ctx of this.active) ctx.abort(lost);
      await withTimeout(this.mailbox.idle(), Math.min(1000, graceMs));
    }
    for (const s of this.mailboxSubs) s.unsubscribe();
    this.state = State.Stopped;
    const hook = (this.actor as Partial<OnStop>).onStop;
    if (typeof hook === 'function') {
      try {
        await hook.call(this.actor);
      } catch (err) {
        this.logger.error('onStop hook threw', { error: (err as Error)?.message ?? String(err) });
      }
    }
  }

  /** Requests waiting in the mailbox plus requests running. */
  get load(): { running: number; queued: number } {
    return { running: this.mailbox.running, queued: this.mailbox.queued };
  }

  private onMessage(ep: EndpointMeta, handler: Handler, msg: TransportMessage): void {
    const ctl = msg.header(H.CTL);
    if (ctl !== undefined) return this.onControl(ctl, msg);
    const reply = msg.reply;
    if (this.state === State.Stopping && !msg.subject.endsWith(this.info.instanceId)) {
      // drained from the queue subscription: already ours, handle it
    } else if (this.state !== State.Serving) {
      if (reply) this.sendError(reply, new TroupeError('UNAVAILABLE', `instance ${this.info.instanceId} is stopping`));
      return;
    }
    const accepted = this.mailbox.offer(() => this.handle(ep, handler, msg));
    if (!accepted && reply) {
      this.sendError(
        reply,
        new TroupeError('OVERLOADED', `instance ${this.info.instanceId} of ${this.meta.name} has ${this.mailbox.capacity} requests waiting`, {
          data: { instanceId: this.info.instanceId, capacity: this.mailbox.capacity },
        }),
      );
    }
  }

  private onControl(kind: string, msg: TransportMessage): void {
    const stream = this.streams.get(msg.header(H.STREAM) ?? '');
    if (!stream) return; // finished already: a late credit or cancel is harmless
    if (kind === Ctl.CREDIT) {
      const n = Number(msg.header(H.CREDIT));
      if (Number.isInteger(n) && n > 0) stream.grant(n);
    } else if (kind === Ctl.CANCEL) {
      stream.ctx.abort(new TroupeError('CANCELLED', 'the caller cancelled the stream'));
    }
  }

  private handle(ep: EndpointMeta, handler: Handler, msg: TransportMessage): void | Promise<void> {
    const reply = msg.reply;
    if (this.refusal) {
      if (reply) this.sendError(reply, this.refusal);
      return;
    }
    let request: unknown;
    try {
      request = this.plane.codec.decode(msg.data);
    } catch (err) {
      if (reply) this.sendError(reply, toTroupeError(err, 'BAD_REQUEST'));
      else this.logger.warn('malformed request without a reply subject dropped', { endpoint: ep.name });
      return;
    }
    const budgetHeader = msg.header(H.TIMEOUT);
    const budget = budgetHeader === undefined ? this.plane.settings.requestTimeoutMs : Number(budgetHeader);
    if (!(budget > 0)) {
      if (reply) this.sendError(reply, new TroupeError('TIMEOUT', `deadline passed before ${ep.name} started`));
      return;
    }
    const ctx = new RequestContext(this, ep.name, msg.header(H.ID) ?? '', Date.now() + budget);
    if (msg.header(H.MODE) === MODE_STREAM && reply) return this.serveStream(handler, request, ctx, reply, msg);
    return this.serveUnary(handler, request, ctx, reply);
  }

  private serveUnary(handler: Handler, request: unknown, ctx: RequestContext, reply: string | undefined): void | Promise<void> {
    let result: unknown;
    try {
      result = handler.call(this.actor, request, ctx);
    } catch (err) {
      if (reply) this.sendError(reply, toTroupeError(err));
      return;
    }
    if (!isPromiseLike(result)) {
      if (reply) this.sendValue(reply, result);
      return;
    }
    this.active.add(ctx);
    ctx.armDeadline();
    return Promise.resolve(result).then(
      (value) => {
        this.active.delete(ctx);
        ctx.dispose();
        if (reply) this.sendValue(reply, value);
      },
      (err: unknown) => {
        this.active.delete(ctx);
        ctx.dispose();
        if (reply) this.sendError(reply, toTroupeError(err));
      },
    );
  }

  private sendValue(reply: string, value: unknown): void {
    if (isObservable(value) || isAsyncIterable(value)) {
      closeQuietly(value);
      return this.sendError(reply, new TroupeError('BAD_REQUEST', `endpoint streams: call it with stream(), not call()`));
    }
    let data: Uint8Array;
    try {
      data = value === undefined ? EMPTY : this.plane.codec.encode(value);
    } catch (err) {
      return this.sendError(reply, new TroupeError('INTERNAL', `cannot encode the reply: ${(err as Error).message}`));
    }
    try {
      this.plane.transport.publish(reply, data);
    } catch (err) {
      this.sendError(reply, toTroupeError(err));
    }
  }

  /** Sends an error to a caller; never throws. */
  sendError(reply: string, err: TroupeError, frame?: boolean): void {
    const wire: WireError = err.toJSON();
    if (this.plane.settings.dev && err.stack) wire.stack = err.stack;
    const headers: Headers = frame ? { [H.ERROR]: err.code, [H.FRAME]: Frame.ERROR } : { [H.ERROR]: err.code };
    try {
      let body: Uint8Array;
      try {
        body = this.plane.codec.encode(wire);
      } catch {
        body = this.plane.codec.encode({ code: err.code, message: err.message });
      }
      if (body.length > this.plane.transport.maxPayload - HEADER_ROOM) {
        body = this.plane.codec.encode({ code: err.code, message: err.message.slice(0, 1024) });
      }
      this.plane.transport.publish(reply, body, { headers });
    } catch (e) {
      this.logger.warn('error reply not sent', { code: err.code, error: (e as Error).message });
    }
  }

  /** Publishes one stream frame; returns false when it could not be sent. */
  sendFrame(reply: string, headers: Headers, data: Uint8Array = EMPTY): void {
    this.plane.transport.publish(reply, data, { headers });
  }

  private async serveStream(handler: Handler, request: unknown, ctx: RequestContext, reply: string, msg: TransportMessage): Promise<void> {
    const settings = this.plane.settings;
    const asked = Number(msg.header(H.WINDOW));
    const window = Number.isInteger(asked) && asked > 0 ? asked : settings.streamWindow;
    const stream = new WorkerStream(ctx, window);
    this.streams.set(reply, stream);
    this.active.add(ctx);
    ctx.armDeadline();
    try {
      this.sendFrame(reply, { [H.FRAME]: Frame.START, [H.INSTANCE]: this.info.instanceId });
      let result = handler.call(this.actor, request, ctx);
      if (isPromiseLike(result)) result = await result;
      const sent = await this.pump(toAsyncIterable(result, stream), stream, reply);
      if (ctx.aborted) {
        if (ctx.reason.code !== 'CANCELLED') this.sendError(reply, ctx.reason, true);
      } else {
        this.sendFrame(reply, { [H.FRAME]: Frame.END, [H.SEQ]: String(sent) });
      }
    } catch (err) {
      const e = ctx.aborted ? ctx.reason : toTroupeError(err);
      if (e.code !== 'CANCELLED') this.sendError(reply, e, true);
    } finally {
      this.streams.delete(reply);
      this.active.delete(ctx);
      ctx.dispose();
    }
  }

  /**
   * Moves items from the handler's iterable to the caller: never more than
   * the credit window ahead, the first item of a tick at once (no added
   * latency to the first token), the rest of the tick coalesced into one
   * frame. Returns the number of items sent.
   */
  private async pump(iterable: AsyncIterable<unknown>, stream: WorkerStream, reply: string): Promise<number> {
    const codec = this.plane.codec;
    const maxBytes = Math.min(MAX_BATCH_BYTES, this.plane.transport.maxPayload - HEADER_ROOM);
    let batch: Uint8Array[] = [];
    let batchBytes = 0;
    let sent = 0;
    let tickOpen = false;
    const flush = (): void => {
      if (batch.length === 0) return;
      const frame = packArray(batch, batchBytes);
      const first = sent;
      sent += batch.length;
      batch = [];
      batchBytes = 0;
      this.sendFrame(reply, { [H.FRAME]: Frame.DATA, [H.SEQ]: String(first) }, frame);
    };
    const closeTick = (): void => {
      tickOpen = false;
      if (!stream.ctx.aborted) {
        try {
          flush();
        } catch (err) {
          stream.ctx.abort(toTroupeError(err));
        }
      }
    };
    const it = iterable[Symbol.asyncIterator]();
    let finished = false;
    try {
      for (;;) {
        if (stream.credit <= 0) {
          flush();
          await stream.waitForCredit();
          if (stream.ctx.aborted) break;
        }
        const r = await it.next();
        if (stream.ctx.aborted) break;
        if (r.done) {
          finished = true;
          break;
        }
        const bytes = r.value === undefined ? NIL : codec.encode(r.value);
        if (bytes.length > maxBytes) {
          throw new TroupeError('PAYLOAD_TOO_LARGE', `stream item ${sent + batch.length} is ${bytes.length} bytes; a frame holds at most ${maxBytes}`, {
            data: { size: bytes.length, max: maxBytes },
          });
        }
        if (batchBytes + bytes.length > maxBytes) flush();
        batch.push(bytes);
        batchBytes += bytes.length;
        stream.credit--;
        if (!tickOpen) {
          flush();
          tickOpen = true;
          setImmediate(closeTick);
        } else if (batch.length >= MAX_BATCH_ITEMS) {
          flush();
        }
      }
      if (!stream.ctx.aborted) flush();
    } catch (err) {
      // Items produced before the failure still reach the caller, then the error frame.
      if (!stream.ctx.aborted) {
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
}

const EMPTY = new Uint8Array(0);
const NIL = new Uint8Array([0xc0]);

/** Concatenates msgpack-encoded items into one msgpack array. */
function packArray(items: Uint8Array[], bytes: number): Uint8Array {
  const n = items.length;
  const head = n < 16 ? 1 : n < 65536 ? 3 : 5;
  const out = new Uint8Array(head + bytes);
  if (n < 16) out[0] = 0x90 | n;
  else if (n < 65536) {
    out[0] = 0xdc;
    out[1] = n >>> 8;
    out[2] = n & 0xff;
  } else {
    out[0] = 0xdd;
    new DataView(out.buffer).setUint32(1, n);
  }
  let o = head;
  for (const b of items) {
    out.set(b, o);
    o += b.length;
  }
  return out;
}

/** Worker-side state of one stream: credit and its waiter. */
class WorkerStream {
  credit: number;
  private wake: (() => void) | undefined;

  constructor(
    readonly ctx: RequestContext,
    window: number,
  ) {
    this.credit = window;
    ctx.onAbort(() => this.release());
  }

  grant(n: number): void {
    this.credit += n;
    this.release();
  }

  waitForCredit(): Promise<void> {
    if (this.credit > 0 || this.ctx.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      this.wake = resolve;
    });
  }

  private release(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}

/**
 * The {@link Context} of one request. The AbortController and the deadline
 * timer are created only when needed (a synchronous unary handler that never
 * reads `signal` costs neither).
 */
class RequestContext implements Context {
  private controller: AbortController | undefined;
  private timer: NodeJS.Timeout | undefined;
  private abortReason: TroupeError | undefined;
  private listeners: Array<() => void> | undefined;
  private log: Logger | undefined;

  constructor(
    private readonly owner: ActorInstance,
    readonly endpoint: string,
    readonly requestId: string,
    readonly deadline: number,
  ) {}

  get instanceId(): string {
    return this.owner.info.instanceId;
  }
  get namespace(): string {
    return this.owner.info.namespace;
  }
  get component(): string {
    return this.owner.info.component;
  }
  get logger(): Logger {
    this.log ??= this.owner.logger.child({ endpoint: this.endpoint, requestId: this.requestId });
    return this.log;
  }
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.abortReason) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }
  get aborted(): boolean {
    return this.abortReason !== undefined;
  }
  get reason(): TroupeError {
    return this.abortReason ?? new TroupeError('INTERNAL', 'not aborted');
  }

  remainingMs(): number {
    return Math.max(0, this.deadline - Date.now());
  }

  onAbort(fn: () => void): void {
    (this.listeners ??= []).push(fn);
  }

  abort(reason: TroupeError): void {
    if (this.abortReason) return;
    this.abortReason = reason;
    this.controller?.abort(reason);
    for (const fn of this.listeners ?? []) fn();
  }

  armDeadline(): void {
    const ms = this.deadline - Date.now();
    this.timer = setTimeout(() => this.abort(new TroupeError('TIMEOUT', `deadline of ${this.endpoint} passed`)), Math.max(0, ms));
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

function isPromiseLike(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as PromiseLike<unknown>).then === 'function';
}

function isAsyncIterable(v: unknown): v is AsyncIterable<unknown> {
  return v !== null && typeof v === 'object' && typeof (v as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function';
}

function closeQuietly(v: unknown): void {
  if (isAsyncIterable(v)) {
    const it = v[Symbol.asyncIterator]();
    void Promise.resolve(it.return?.()).catch(() => undefined);
  }
}

/**
 * A handler's result as an async iterable: async iterables as they are,
 * Observables through a buffer (an Observable cannot be paused; prefer async
 * generators when the producer must feel backpressure), anything else as a
 * single item.
 */
function toAsyncIterable(result: unknown, stream: WorkerStream): AsyncIterable<unknown> {
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
      stream.ctx.onAbort(() => {
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

function withTimeout(p: Promise<void>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    void p.then(() => {
      clearTimeout(t);
      resolve(true);
    });
  });
}
