import { TroupeError } from '../errors';
import { packTokens, type ReplyHandler, unpackTokens } from '../plane/reply-inbox';
import type { Plane } from '../plane/plane';
import { Ctl, H } from '../wire/protocol';
import type { TransportMessage } from '../transport/transport';

/** What the monitor needs of an open stream. */
export interface Monitored {
  /** Monitor time ({@link CallerMonitor.now}) of the last sign of life from the worker. */
  lastHeard: number;
  /** Monitor time of the last probe sent for it. */
  lastProbe: number;
  /** The instance serving it: named by its start frame, or picked by the router before that; undefined for a queue-group request not yet accepted. */
  readonly target: string | undefined;
  /** That instance's mailbox subject (where probes go). */
  readonly ctlSubject: string | undefined;
  /** The stream's reply subject: its id at the worker. */
  readonly replySubject: string;
  /** A probe answer or heartbeat showed it alive. */
  heard(): void;
  /** Silent past the idle bound (`silenceMs` of monitor time). */
  silent(silenceMs: number): void;
  /** Its instance is gone, or no longer knows it. */
  lost(err: TroupeError): void;
}

/**
 * "How late may a tick be before we call it a stall of this process": time
 * this process spent blocked (a synchronous consumer, a long GC) is not
 * silence of the worker, whose frames are waiting in our socket meanwhile.
 */
const STALL_TOLERANCE_MS = 100;

/**
 * The caller side of stream liveness for one runtime: one timer for every
 * open stream. A stream whose worker has been silent (no frame, no heartbeat)
 * for 1.25 heartbeat intervals is probed: one message per silent instance, to
 * its mailbox, naming its silent streams. A dead instance's mailbox answers
 * "no responders" within milliseconds, so a killed worker becomes
 * INSTANCE_LOST ~1.25-1.4 intervals after its last heartbeat; a frozen one
 * answers nothing and becomes INSTANCE_LOST at the idle bound.
 *
 * Silence is measured on a clock that advances at most one tick plus
 * {@link STALL_TOLERANCE_MS} per tick, so a caller whose own event loop was
 * blocked does not blame its workers for frames it has not read yet.
 */
export class CallerMonitor {
  readonly idleMs: number;
  readonly probeAfterMs: number;
  private readonly tickMs: number;
  private readonly maxStepMs: number;
  private readonly live = new Set<Monitored>();
  private readonly probes = new Set<Probe>();
  /** Last sign of life per instance, from any of its streams: an instance busy with other streams is alive. */
  private readonly instances = new Map<string, number>();
  /** Streams to probe at the next tick whatever their silence (their instance is suspected). */
  private readonly suspects = new Set<Monitored>();
  /** Instances found busy since last heard from (counted once per busy spell). */
  private readonly busyNoted = new Set<string>();
  private ticks = 0;
  private timer: NodeJS.Timeout | undefined;
  private clock = 0;
  private wall = 0;

  constructor(private readonly plane: Plane) {
    const hb = plane.settings.streamHeartbeatMs;
    this.idleMs = plane.settings.streamIdleMs;
    // 1.25 intervals: a heartbeat late by a quarter interval costs one answered probe; a dead
    // instance is found ~1.25-1.4 intervals after its last heartbeat (≤ 140 ms at the default 100).
    this.probeAfterMs = Math.ceil(hb * 1.25);
    this.tickMs = Math.max(5, Math.min(25, Math.floor(hb / 8)));
    this.maxStepMs = this.tickMs + STALL_TOLERANCE_MS;
  }

  /** Monitor time now: wall time, except that stalls of this process count for at most one step. */
  now(): number {
    return this.clock + Math.min(Date.now() - this.wall, this.maxStepMs);
  }

  add(s: Monitored): void {
    if (!this.timer) {
      // Idle time while nothing was watched is nobody's silence: resume the clock from here.
      this.clock = this.now();
      this.wall = Date.now();
      this.timer = setInterval(this.tick, this.tickMs);
      this.timer.unref();
    }
    this.live.add(s);
  }

  /**
   * Probes `s`'s instance at the next tick even if it is not silent (discovery
   * says its lease lapsed). A lease can lapse on a busy caller whose lease
   * updates wait in its socket; the probe, not the lease, decides.
   */
  suspect(s: Monitored): void {
    if (this.live.has(s)) this.suspects.add(s);
  }

  delete(s: Monitored): void {
    this.live.delete(s);
    this.suspects.delete(s);
    if (this.live.size === 0 && this.probes.size === 0 && this.timer) this.idle();
  }

  /**
   * Nothing is watched: the timer stops, and so does the memory of which
   * instances were heard lately (it is pruned only while ticking, and a new
   * stream counts its silence from its own start anyway).
   */
  private idle(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.instances.clear();
  }

  /** Stops the tick timer and forgets every stream and probe (the runtime closes). */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.live.clear();
    this.suspects.clear();
    this.probes.clear();
    this.instances.clear();
    this.busyNoted.clear();
  }

  /** Streams watched now (for tests). */
  get size(): number {
    return this.live.size;
  }

  /** Whether `instanceId`'s process is busy (a fresh beat says its loop is blocked) and within the busy bound. */
  private busy(instanceId: string, silenceMs: number): boolean {
    const lag = this.plane.discovery?.busyFor(instanceId);
    if (lag === undefined) return false;
    const limit = this.plane.settings.busyLimitMs;
    if (limit > 0 && silenceMs >= limit) return false;
    if (!this.busyNoted.has(instanceId)) {
      this.busyNoted.add(instanceId);
      this.plane.stats.busyWaits++;
    }
    return true;
  }

  /** Probes awaiting an answer, and instances whose last sign of life is remembered (leak tests). */
  retained(): { probes: number; instances: number } {
    return { probes: this.probes.size, instances: this.instances.size };
  }

  /** Something arrived from `instanceId` (a frame of any stream, a heartbeat naming one): it is alive. */
  heardFrom(instanceId: string, at: number): void {
    this.instances.set(instanceId, at);
    if (this.busyNoted.size > 0) this.busyNoted.delete(instanceId);
  }

  private readonly tick = (): void => {
    const wall = Date.now();
    this.clock += Math.min(wall - this.wall, this.maxStepMs);
    this.wall = wall;
    const now = this.clock;
    let batches: Map<string, Monitored[]> | undefined;
    for (const s of this.live) {
      const silence = now - s.lastHeard;
      if (silence < this.probeAfterMs) continue;
      const target = s.target;
      // Lost only when its instance as a whole went quiet: under load one stream's frames may wait behind others'.
      const instanceSilence = target === undefined ? silence : now - Math.max(s.lastHeard, this.instances.get(target) ?? 0);
      if (instanceSilence >= this.idleMs) {
        // Alive but busy (its beat thread reports a blocked event loop): not lost. The
        // call's deadline bounds it, or `busyLimitMs` when set; a frozen or dead process
        // has no fresh beat and is lost at the idle bound as before.
        if (target !== undefined && this.busy(target, instanceSilence)) continue;
        s.silent(instanceSilence);
        continue;
      }
      if (target === undefined || s.ctlSubject === undefined || now - s.lastProbe < this.probeAfterMs) continue;
      this.suspects.delete(s);
      s.lastProbe = now;
      batches ??= new Map();
      const b = batches.get(target);
      if (b) b.push(s);
      else batches.set(target, [s]);
    }
    for (const s of this.suspects) {
      const target = s.target;
      if (target === undefined || s.ctlSubject === undefined) continue;
      s.lastProbe = now;
      batches ??= new Map();
      const b = batches.get(target);
      if (b) b.push(s);
      else batches.set(target, [s]);
    }
    this.suspects.clear();
    if (++this.ticks % 256 === 0) {
      for (const [id, at] of this.instances) if (now - at > 4 * this.idleMs) this.instances.delete(id);
    }
    for (const p of this.probes) if (now - p.sentAt >= this.idleMs) this.settled(p);
    if (batches) for (const [id, streams] of batches) this.probe(id, streams, now);
    if (this.live.size === 0 && this.probes.size === 0 && this.timer) this.idle();
  };

  /**
   * Probes one instance about its silent streams. A probe goes to the same
   * mailbox as the stream requests, so it arrives after them: a live instance
   * has accepted (or refused) every one it names, even before their start frames.
   */
  private probe(instanceId: string, streams: Monitored[], now: number): void {
    const p = new Probe(this, instanceId, streams, now);
    const [key, reply] = this.plane.inbox.open(p);
    p.key = key;
    this.probes.add(p);
    try {
      this.plane.transport.publish(streams[0]?.ctlSubject as string, packTokens(p.subjects), { reply, headers: { [H.CTL]: Ctl.PROBE } });
      this.plane.stats.probesSent++;
    } catch {
      this.settled(p); // not connected: the idle bound decides
    }
  }

  /** @internal A probe was answered or expired. */
  settled(p: Probe): void {
    this.probes.delete(p);
    this.plane.inbox.close(p.key);
  }

  /** @internal The instance's mailbox has no subscriber: every stream of it here is lost. */
  instanceGone(instanceId: string): void {
    for (const s of this.live) {
      if (s.target !== instanceId) continue;
      s.lost(new TroupeError('INSTANCE_LOST', `instance ${instanceId} is gone: a probe of its mailbox found no responders`));
    }
  }
}

/** One probe in flight: the streams it named, as they were when it was sent. */
class Probe implements ReplyHandler {
  key = '';
  readonly subjects: string[];

  constructor(
    private readonly monitor: CallerMonitor,
    private readonly instanceId: string,
    private readonly streams: Monitored[],
    readonly sentAt: number,
  ) {
    this.subjects = streams.map((s) => s.replySubject);
  }

  onReply(msg: TransportMessage): void {
    this.monitor.settled(this);
    if (msg.noResponders) return this.monitor.instanceGone(this.instanceId);
    const unknown = new Set(unpackTokens(msg.data));
    this.streams.forEach((s, i) => {
      const subject = this.subjects[i] as string;
      // Migrated meanwhile: the answer is about an attempt that no longer exists.
      if (s.replySubject !== subject || s.target !== this.instanceId) return;
      if (unknown.has(subject)) {
        s.lost(new TroupeError('INSTANCE_LOST', `instance ${this.instanceId} no longer knows the stream (its end was lost)`));
      } else {
        s.heard();
      }
    });
  }
}
