import { TroupeError } from '../errors';
import { heartbeatSubjectOf, packTokens, type ReplyHandler, unpackTokens } from '../plane/reply-inbox';
import type { Plane } from '../plane/plane';
import { Ctl, Frame, H } from '../wire/protocol';
import type { TransportMessage } from '../transport/transport';
import type { WorkerStream } from './worker-stream';

/** Keys per heartbeat message at most (~6 bytes each: well under max_payload). */
const MAX_KEYS_PER_BEAT = 8_192;

/**
 * The worker side of stream liveness for one runtime. Every open stream,
 * from the end of the tick it was accepted in to its last frame, is named
 * in a heartbeat to its caller at
 * the interval the caller asked for: one message per caller runtime per
 * interval (`{callerInbox}._hb`, body = the stream keys), not one per stream,
 * so 10,000 streams to one caller cost one small message per interval.
 *
 * Each heartbeat carries a reply subject and so doubles as a probe of the
 * caller: NATS answers "no responders" when the caller's inbox subscription
 * is gone (its process died or closed), and the caller's inbox answers
 * `gone` with the keys it no longer has (unsubscribed, a cancel that never
 * arrived). Either aborts those handlers, within one interval.
 */
export class Heartbeats {
  private readonly groups = new Map<string, HeartbeatGroup>();
  private closed = false;

  constructor(readonly plane: Plane) {}

  /** Names `stream` in its caller's heartbeats; after {@link close} (the runtime closed in the tick it was accepted in) it is not. */
  add(stream: WorkerStream): void {
    if (this.closed) return;
    const subject = heartbeatSubjectOf(stream.reply);
    let g = this.groups.get(subject);
    if (!g) {
      g = new HeartbeatGroup(this, subject, stream.heartbeatMs);
      this.groups.set(subject, g);
    }
    g.add(stream);
  }

  /** Stops every heartbeat timer (the runtime closes). */
  close(): void {
    this.closed = true;
    for (const g of this.groups.values()) g.close();
    this.groups.clear();
  }

  /** Caller runtimes with open streams here, each with a timer and an inbox key (leak tests). */
  get groupCount(): number {
    return this.groups.size;
  }

  /**
   * Takes a finished stream out of its group. A group left empty stays until
   * its next beat (which closes it if no stream came back meanwhile): a caller
   * that runs its streams one after another reuses one group, its inbox key
   * and its timer instead of opening and closing them per stream.
   */
  remove(stream: WorkerStream): void {
    this.groups.get(heartbeatSubjectOf(stream.reply))?.remove(stream);
  }

  /** Called by an empty group's beat: it closes and leaves the table. */
  retire(subject: string, group: HeartbeatGroup): void {
    if (this.groups.get(subject) !== group) return;
    group.close();
    this.groups.delete(subject);
  }
}

/** The open streams of one caller runtime, and their heartbeat timer. */
class HeartbeatGroup implements ReplyHandler {
  private readonly streams = new Map<string, WorkerStream>();
  private readonly key: string;
  private readonly reply: string;
  private timer: NodeJS.Timeout;
  private intervalMs: number;
  private readonly plane: Plane;

  constructor(
    private readonly owner: Heartbeats,
    private readonly subject: string,
    intervalMs: number,
  ) {
    this.plane = owner.plane;
    [this.key, this.reply] = this.plane.inbox.open(this);
    this.intervalMs = intervalMs;
    this.timer = this.schedule();
  }

  add(stream: WorkerStream): void {
    this.streams.set(stream.key, stream);
    if (stream.heartbeatMs < this.intervalMs) {
      this.intervalMs = stream.heartbeatMs;
      clearInterval(this.timer);
      this.timer = this.schedule();
    }
  }

  remove(stream: WorkerStream): void {
    if (this.streams.get(stream.key) === stream) this.streams.delete(stream.key);
  }

  close(): void {
    clearInterval(this.timer);
    this.plane.inbox.close(this.key);
  }

  private schedule(): NodeJS.Timeout {
    const t = setInterval(this.beat, this.intervalMs);
    t.unref();
    return t;
  }

  private readonly beat = (): void => {
    if (this.streams.size === 0) return this.owner.retire(this.subject, this);
    const keys = [...this.streams.keys()];
    const stats = this.plane.stats;
    for (let i = 0; i < keys.length; i += MAX_KEYS_PER_BEAT) {
      try {
        this.plane.transport.publish(this.subject, packTokens(keys.slice(i, i + MAX_KEYS_PER_BEAT)), {
          reply: this.reply,
          headers: { [H.FRAME]: Frame.HEARTBEAT },
        });
        stats.heartbeatsSent++;
      } catch {
        // Disconnected: the caller's idle bound decides; the next beat tries again.
        return;
      }
    }
  };

  /** "No responders" (the caller's inbox is gone) or `gone` (the caller no longer has these streams). */
  onReply(msg: TransportMessage): void {
    if (msg.noResponders) {
      this.abortAll([...this.streams.values()], 'the caller is gone (its reply inbox has no subscriber)');
    } else if (msg.header(H.CTL) === Ctl.GONE) {
      const out: WorkerStream[] = [];
      for (const key of unpackTokens(msg.data)) {
        const s = this.streams.get(key);
        if (s) out.push(s);
      }
      this.abortAll(out, 'the caller no longer has the stream');
    }
  }

  private abortAll(streams: WorkerStream[], why: string): void {
    const stats = this.plane.stats;
    for (const s of streams) {
      if (s.aborted) continue;
      stats.callersLost++;
      s.abort(new TroupeError('CANCELLED', why));
    }
  }
}
