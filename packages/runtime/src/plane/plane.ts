import type { Codec } from '../codec/codec';
import type { CallerMonitor } from '../caller/caller-monitor';
import { TroupeError } from '../errors';
import type { EventStreams } from '../events/event-subscription';
import type { RuntimeEvents } from '../events/events';
import { newToken } from '../ids';
import type { Heartbeats } from '../worker/heartbeats';
import { DeadlineWheel } from './deadline-wheel';
import { newRuntimeStats, type RuntimeStats } from './stats';
import { Meter } from './meter';
import type { Discovery } from '../discovery/discovery';
import type { RouterSpec } from '../discovery/routers';
import { ReplyInbox } from './reply-inbox';
import { LocalTargets } from './local-calls';
import { settlesWithin } from '../settle';
import type { Logger } from '../logger';
import type { Transport } from '../transport/transport';
import { ThreadPool } from '../threads/thread-pool';

/** Resolved runtime settings that clients and instances read. */
export interface PlaneSettings {
  /** Default deadline of a unary call, ms. */
  readonly requestTimeoutMs: number;
  /** Default deadline of a whole stream, ms. */
  readonly streamTimeoutMs: number;
  /** Default stream credit window, items. */
  readonly streamWindow: number;
  /** Default stream byte window (encoded item bytes in flight), bytes. */
  readonly streamWindowBytes: number;
  /** How often a worker shows an open stream's caller that it is alive (the caller asks for this interval), ms. */
  readonly streamHeartbeatMs: number;
  /** A stream whose worker was silent this long (no frame, heartbeat or probe answer) fails with INSTANCE_LOST, ms. */
  readonly streamIdleMs: number;
  /**
   * How long a stream may wait on a worker that is alive but busy (its beat
   * thread reports a blocked event loop) before INSTANCE_LOST, ms; 0 (the
   * default): the call's own deadline bounds it.
   */
  readonly busyLimitMs: number;
  /** How long `stop()` / `close()` wait for in-flight work, ms. */
  readonly gracePeriodMs: number;
  /** Send remote stacks with errors (development only). */
  readonly dev: boolean;
  /** Default instance concurrency (1 = classic actor: one message at a time, awaits included; see `SpawnOptions.concurrency`). */
  readonly concurrency: number;
  /** Default mailbox capacity (waiting messages per instance). */
  readonly mailboxCapacity: number;
  /** Default router of clients. */
  readonly router: RouterSpec;
  /**
   * Default bound after which an instance whose mailbox makes no progress
   * (every slot held by a handler past its deadline, nothing started or
   * finished) is withdrawn from discovery and replaced per its restart
   * policy, ms; 0 turns the check off. Default 2 × `requestTimeoutMs`.
   */
  readonly stuckAfterMs: number;
  /** Worker threads at most for `ctx.runInThread` / `ctx.streamInThread` (started on demand); default `os.availableParallelism() - 1`, at least 1. */
  readonly threadPoolSize: number;
  /** How long a thread may ignore its task's abort (cancel, deadline) before it is terminated and replaced, ms. */
  readonly threadAbortGraceMs: number;
  /**
   * Unary calls to an instance of this runtime go straight into its mailbox
   * instead of over the transport (same mailbox bound, deadline, cancel,
   * errors, metrics, trace context; arguments and results copied as msgpack
   * would). Default true; false sends every call over the transport (NATS or
   * the embedded memory network). See docs/design-departures.md.
   */
  readonly localCalls: boolean;
}

/** The services of a plane that live above it (caller, worker, events), built by the runtime. */
export interface PlaneServices {
  readonly monitor: CallerMonitor;
  readonly heartbeats: Heartbeats;
  readonly events: RuntimeEvents;
  readonly eventStreams: EventStreams;
}

/** What a plane is built from. */
export interface PlaneParts {
  readonly transport: Transport;
  readonly codec: Codec;
  readonly settings: PlaneSettings;
  readonly logger: Logger;
  /** The discovery watches; undefined when discovery is off. */
  readonly discovery: Discovery | undefined;
  /** Reply inbox prefix (validated). */
  readonly inboxPrefix: string;
  /** Who owns this plane, for messages ("runtime 3f2a… (name)"). */
  readonly owner: string;
}

/**
 * The request plane of one runtime: everything its clients, instances and
 * event streams share, as fields — the transport, the codec, the muxed
 * reply inbox, the deadline wheel, the stream monitor and heartbeats, the
 * event publishers and streams, the counters. One object per runtime, built
 * by it and released by {@link close} (nats.js's `ProtocolHandler` holds its
 * mux subscription and heartbeats the same way); nothing per runtime lives in
 * module-level state. Internal.
 */
export class Plane {
  readonly transport: Transport;
  readonly codec: Codec;
  readonly settings: PlaneSettings;
  readonly logger: Logger;
  readonly discovery: Discovery | undefined;
  readonly inbox: ReplyInbox;
  readonly wheel: DeadlineWheel;
  /** This runtime's instance mailboxes reachable in-process (see {@link PlaneSettings.localCalls}). */
  readonly local: LocalTargets;
  readonly stats: RuntimeStats = newRuntimeStats();
  /** Plain counters read by `$SRV.STATS` and the Prometheus exporter at scrape time. */
  readonly meter = new Meter();
  readonly monitor: CallerMonitor;
  readonly heartbeats: Heartbeats;
  readonly events: RuntimeEvents;
  readonly eventStreams: EventStreams;
  /** Worker threads for CPU-bound handler work; none start until a handler asks. */
  readonly threads: ThreadPool;
  private requestSeq = 0;
  private readonly requestPrefix = newToken();
  private readonly owner: string;
  /** Set once the owning runtime has stopped its instances: new calls and streams are refused at once. */
  private shut = false;

  constructor(parts: PlaneParts, services: (plane: Plane) => PlaneServices) {
    this.transport = parts.transport;
    this.codec = parts.codec;
    this.settings = parts.settings;
    this.logger = parts.logger;
    this.discovery = parts.discovery;
    this.owner = parts.owner;
    this.inbox = new ReplyInbox(parts.transport, parts.inboxPrefix);
    this.wheel = new DeadlineWheel();
    this.local = new LocalTargets(parts.settings.localCalls, parts.transport.targetOf?.bind(parts.transport));
    this.threads = new ThreadPool({ size: parts.settings.threadPoolSize, abortGraceMs: parts.settings.threadAbortGraceMs }, parts.logger);
    const s = services(this);
    this.monitor = s.monitor;
    this.heartbeats = s.heartbeats;
    this.events = s.events;
    this.eventStreams = s.eventStreams;
  }

  /**
   * Refuses new calls and streams from now on ({@link refusal}). The runtime
   * calls it once its instances have stopped: until then, handlers finishing
   * their work in the grace period may still call other components.
   */
  shutOff(): void {
    this.shut = true;
  }

  /** Whether new calls and streams are refused (checked per call; the message is built only then). */
  get closed(): boolean {
    return this.shut;
  }

  /**
   * The error a new call or stream gets once the runtime is closed:
   * `UNAVAILABLE` naming the runtime, at once (not `NO_INSTANCES`, which
   * would read as an outage of the callee). Ask {@link closed} first.
   */
  refusal(what: string): TroupeError {
    return new TroupeError('UNAVAILABLE', `${this.owner} is closed: cannot ${what}`);
  }

  /** A fresh request id. */
  nextRequestId(): string {
    return `${this.requestPrefix}-${(++this.requestSeq).toString(36)}`;
  }

  /**
   * Releases every service: discovery watches, event streams (durable
   * consumers give back what they hold), monitor and heartbeat timers, the
   * deadline wheel; whatever still awaits a reply fails with `reason` now.
   * The transport is the runtime's to close. Resolves with false when the
   * event streams did not stop within `withinMs` (a dead or frozen server):
   * everything else is released anyway. Never rejects.
   */
  async close(reason: TroupeError, withinMs = Infinity): Promise<boolean> {
    this.shut = true;
    this.discovery?.close();
    const stopped = await settlesWithin(this.eventStreams.close(), withinMs);
    this.monitor.close();
    this.heartbeats.close();
    this.inbox.stop(reason);
    this.wheel.close();
    await this.threads.close(reason);
    return stopped;
  }
}
