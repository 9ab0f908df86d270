import type { Subscriber } from 'rxjs';
import { decodeError, MAX_WINDOW, onAbort, precheck, remainingBudget, requestHeaders, type StreamOptions } from './call-options';
import { TroupeError, toTroupeError } from './errors';
import type { ReplyHandler } from './inbox';
import { validateInstanceId } from './names';
import type { RequestPlane } from './plane';
import { Ctl, Frame, H, MODE_STREAM, PROTOCOL_VERSION } from './protocol';
import { type EndpointAddress, ownMailboxSubject } from './subjects';
import type { Headers, TransportMessage } from './transport/transport';

const EMPTY = new Uint8Array(0);

/** Caller side of one stream: request, frames, credit, cancel. */
export class CallerStream<Res> implements ReplyHandler {
  private key = '';
  private subject = '';
  private timer: NodeJS.Timeout | undefined;
  private unlisten: (() => void) | undefined;
  private window = 0;
  private budget = 0;
  /** Next expected sequence number = items received so far. */
  private received = 0;
  private consumedSinceGrant = 0;
  private instanceId: string | undefined;
  private ctlSubject: string | undefined;
  private done = false;
  private cancelled = false;

  constructor(
    private readonly plane: RequestPlane,
    private readonly address: EndpointAddress,
    private readonly subscriber: Subscriber<Res>,
  ) {}

  start(subject: string, request: unknown, options: StreamOptions | undefined): void {
    this.subject = subject;
    const settings = this.plane.settings;
    this.budget = remainingBudget(options, settings.streamTimeoutMs);
    const window = options?.window ?? settings.streamWindow;
    const refusal =
      precheck(options, this.budget, subject) ??
      (Number.isInteger(window) && window >= 1 && window <= MAX_WINDOW
        ? undefined
        : new TroupeError('BAD_REQUEST', `window must be an integer in 1..${MAX_WINDOW}, got ${String(window)}`));
    if (refusal) return this.finish(refusal);
    this.window = window;
    let data: Uint8Array;
    try {
      data = this.plane.codec.encode(request);
    } catch (err) {
      return this.finish(toTroupeError(err, 'BAD_REQUEST'));
    }
    const [key, reply] = this.plane.inbox.open(this);
    this.key = key;
    const headers = requestHeaders(this.plane, this.budget, options);
    headers[H.MODE] = MODE_STREAM;
    headers[H.WINDOW] = String(window);
    headers[H.PROTO] = PROTOCOL_VERSION;
    try {
      this.plane.transport.publish(subject, data, { reply, headers });
    } catch (err) {
      return this.finish(toTroupeError(err, 'UNAVAILABLE'));
    }
    this.timer = setTimeout(this.onTimeout, this.budget);
    this.unlisten = onAbort(options, this.onAbortSignal);
  }

  onReply(msg: TransportMessage): void {
    if (this.done) return;
    if (msg.noResponders) {
      return this.finish(new TroupeError('NO_INSTANCES', `no instance is serving ${this.subject}`));
    }
    if (msg.header(H.ERROR) !== undefined) return this.finish(decodeError(this.plane, msg));
    const frame = msg.header(H.FRAME);
    switch (frame) {
      case Frame.START:
        return this.onStart(msg);
      case Frame.DATA:
        return this.onData(msg);
      case Frame.END:
        return this.onEnd(msg);
      case Frame.HEARTBEAT:
        return;
      case Frame.ERROR:
        return this.finish(decodeError(this.plane, msg));
      default:
        return this.finish(new TroupeError('INTERNAL', `unknown stream frame ${JSON.stringify(frame)} from ${this.subject}`));
    }
  }

  private onStart(msg: TransportMessage): void {
    const id = msg.header(H.INSTANCE);
    try {
      this.instanceId = validateInstanceId(id);
    } catch {
      return this.finish(new TroupeError('INTERNAL', `stream start frame from ${this.subject} names no valid instance`));
    }
    this.ctlSubject = ownMailboxSubject(this.address, this.instanceId);
    if (this.cancelled) {
      this.sendCtl(Ctl.CANCEL);
      this.release();
    }
  }

  private onData(msg: TransportMessage): void {
    const seq = Number(msg.header(H.SEQ));
    if (seq !== this.received) {
      return this.finish(
        new TroupeError('INSTANCE_LOST', `stream from ${this.instanceId ?? this.subject} lost frames: expected item ${this.received}, got ${seq}`, {
          data: { delivered: this.received },
        }),
      );
    }
    let items: unknown;
    try {
      items = this.plane.codec.decode(msg.data);
    } catch (err) {
      return this.finish(toTroupeError(err, 'INTERNAL'));
    }
    if (!Array.isArray(items)) {
      return this.finish(new TroupeError('INTERNAL', `malformed data frame from ${this.subject}: not an array`));
    }
    for (const item of items) {
      this.received++;
      this.subscriber.next(item as Res);
      if (this.done) return; // unsubscribed (or errored) inside next()
    }
    this.consumedSinceGrant += items.length;
    // Grant in halves of the window: one control message per window/2 items.
    if (this.consumedSinceGrant * 2 >= this.window && this.ctlSubject) {
      const n = this.consumedSinceGrant;
      this.consumedSinceGrant = 0;
      this.sendCtl(Ctl.CREDIT, n);
    }
  }

  private onEnd(msg: TransportMessage): void {
    const total = Number(msg.header(H.SEQ));
    if (total !== this.received) {
      return this.finish(
        new TroupeError('INSTANCE_LOST', `stream from ${this.instanceId ?? this.subject} ended after ${total} items but ${this.received} arrived`, {
          data: { delivered: this.received },
        }),
      );
    }
    this.finish();
  }

  private readonly onTimeout = (): void => {
    this.timer = undefined;
    this.cancelRemote();
    this.finish(new TroupeError('TIMEOUT', `stream from ${this.subject} did not finish within ${this.budget} ms`, { data: { delivered: this.received } }));
  };

  private readonly onAbortSignal = (): void => {
    this.cancelRemote();
    this.finish(new TroupeError('CANCELLED', `stream from ${this.subject} cancelled`, { data: { delivered: this.received } }));
  };

  /** Unsubscribed by the consumer. */
  teardown(): void {
    if (this.done) return;
    this.done = true;
    this.cancelRemote();
    this.clearTimers();
    // Without a start frame we do not know whom to cancel yet: keep listening
    // until it arrives (or the deadline passes), then cancel.
    if (this.ctlSubject || !this.key) this.release();
    else this.timer = setTimeout(() => this.release(), Math.max(1, this.budget));
  }

  private cancelRemote(): void {
    this.cancelled = true;
    if (this.ctlSubject) this.sendCtl(Ctl.CANCEL);
  }

  private sendCtl(kind: Ctl, credit?: number): void {
    if (!this.ctlSubject) return;
    const headers: Headers =
      credit === undefined ? { [H.CTL]: kind, [H.STREAM]: `${this.plane.inbox.root}.${this.key}` } : { [H.CTL]: kind, [H.STREAM]: `${this.plane.inbox.root}.${this.key}`, [H.CREDIT]: String(credit) };
    try {
      this.plane.transport.publish(this.ctlSubject, EMPTY, { headers });
    } catch (err) {
      // A lost credit stalls the worker until its own liveness check; a lost cancel is bounded by the deadline.
      this.plane.logger.warn('stream control message not sent', { subject: this.ctlSubject, kind, error: (err as Error).message });
    }
  }

  private finish(err?: TroupeError): void {
    if (this.done) return;
    this.done = true;
    this.clearTimers();
    this.release();
    if (err) this.subscriber.error(err);
    else this.subscriber.complete();
  }

  private clearTimers(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.unlisten?.();
    this.unlisten = undefined;
  }

  private release(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.key) this.plane.inbox.close(this.key);
  }
}

