import type { CallerMonitor, Monitored } from './caller-monitor';
import type { TroupeError } from '../errors';

/** What an attempt reports to the stream that owns it. */
export interface AttemptOwner {
  /** The attempt's instance was silent past the idle bound. */
  silent(silenceMs: number): void;
  /** The attempt's instance is gone, or no longer knows the stream. */
  lost(err: TroupeError): void;
}

/** Where an attempt went, fixed when it is sent. */
export interface AttemptInit<Req> {
  /** The inbox key of its reply subject. */
  readonly key: string;
  readonly replySubject: string;
  /** The subject its request was published to. */
  readonly subject: string;
  /** The instance a router picked (undefined for the queue group). */
  readonly picked: string | undefined;
  /** Its request: the original, or what `migrate.resume` made of it. */
  readonly request: Req;
  /** The picked instance's mailbox (cancel and credit need not wait for the start frame). */
  readonly ctlSubject: string | undefined;
}

/**
 * One attempt of a caller stream (the first request, a re-send or a
 * migration): its reply key, where it went, its sequence numbers and credit
 * accounting. The stream drops it when the attempt ends and builds a new one
 * for the next, so no per-attempt field outlives its attempt or has to be
 * reset by hand. It is what the caller monitor watches; once dropped, late
 * news about it (a probe answered after a migration) reaches nobody.
 */
export class StreamAttempt<Req> implements Monitored {
  readonly key: string;
  readonly replySubject: string;
  readonly subject: string;
  readonly picked: string | undefined;
  readonly request: Req;
  /** The instance serving it, once its first frame named it. */
  instanceId: string | undefined;
  ctlSubject: string | undefined;
  /** Next expected sequence number = items received in this attempt. */
  received = 0;
  /** Frame bytes received, for the per-item average in pull mode. */
  receivedBytes = 0;
  consumedSinceGrant = 0;
  /** Encoded bytes consumed since the last grant (frame bytes; per item on average in pull mode). */
  bytesSinceGrant = 0;
  /** Removes it from its instance's in-flight count (routed attempts). */
  untrack: (() => void) | undefined;
  lastHeard: number;
  lastProbe: number;
  private dropped = false;

  constructor(
    private readonly owner: AttemptOwner,
    private readonly monitor: CallerMonitor,
    init: AttemptInit<Req>,
  ) {
    this.key = init.key;
    this.replySubject = init.replySubject;
    this.subject = init.subject;
    this.picked = init.picked;
    this.request = init.request;
    this.ctlSubject = init.ctlSubject;
    this.lastHeard = monitor.now();
    this.lastProbe = this.lastHeard;
  }

  /** The instance serving this attempt, as far as known. */
  get target(): string | undefined {
    return this.instanceId ?? this.picked;
  }

  /** A frame, heartbeat or probe answer showed its instance alive. */
  heard(): void {
    if (this.dropped) return;
    const now = this.monitor.now();
    this.lastHeard = now;
    const target = this.target;
    if (target !== undefined) this.monitor.heardFrom(target, now);
  }

  silent(silenceMs: number): void {
    if (!this.dropped) this.owner.silent(silenceMs);
  }

  lost(err: TroupeError): void {
    if (!this.dropped) this.owner.lost(err);
  }

  /** Stops watching it and counting it in flight; the stream forgets it next. */
  drop(): void {
    this.dropped = true;
    this.monitor.delete(this);
    this.untrack?.();
    this.untrack = undefined;
  }
}
