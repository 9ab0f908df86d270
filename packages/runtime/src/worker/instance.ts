import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { isObservable } from 'rxjs';
import type { Context } from '../component/context';
import type { ComponentMeta, EndpointMeta, InstanceInfo } from '../component/decorators';
import { isRemoteError, TroupeError, toTroupeError, type WireError } from '../errors';
import { lazyChild, type Logger } from '../logger';
import { settlesWithin } from '../settle';
import { clockMs, clockWall } from '../clock';
import { PropertyBoard } from './instance-properties';
import { Mailbox } from './mailbox';
import type { QueueHubs, QueueMember, QueueMembership } from './queue-hub';
import type { Plane } from '../plane/plane';
import { Ctl, Frame, H, handoff, MODE_STREAM, refusal } from '../wire/protocol';
import { endpointAddress, type EndpointAddress, ownMailboxSubject, queueGroup, queueSubject } from '../wire/subjects';
import type { Headers, TransportMessage, TransportSubscription } from '../transport/transport';
import { RequestContext } from './request-context';
import { callAttributes, runInContext, startServerSpan, tracingActive } from '../plane/telemetry';
import { METADATA_LIMITS, parseTraceparent } from '../wire/trace-context';
import type { ThreadPool } from '../threads/thread-pool';
import { eventHandlers, type EventHandlers, startEventHandlers } from '../events/event-handlers';
import type { EventPublisher } from '../events/events';
import type { EndpointMeter } from '../plane/meter';
import { copyValue, localWireError, LocalRequest, type LocalTarget, type LocalTargets, sizeValue, tooLarge } from '../plane/local-calls';
import {
  acceptStream,
  cancelError,
  cancelReason,
  HEADER_ROOM,
  isAsyncIterable,
  pump,
  stopGrace,
  streamControl,
  toAsyncIterable,
  type WorkerStream,
} from './worker-stream';

/** Lifecycle hook run before an instance serves; a throw fails the spawn. */
export interface OnStart {
  onStart(): void | Promise<void>;
}

/** Lifecycle hook run after an instance stopped serving. */
export interface OnStop {
  onStop(): void | Promise<void>;
}

/** Per-instance settings resolved at spawn: one object shared by the instances of a spawn, with the runtime's plane and the component's metadata. */
export interface InstanceSettings {
  /** The runtime's services (transport, codec, meters, in-process targets). */
  plane: Plane;
  /** The component's metadata (name, endpoints). */
  meta: ComponentMeta;
  concurrency: number;
  mailboxCapacity: number;
  /** Unexpected handler throws that make the instance broken (undefined: only a declared break does). */
  failures?: FailureThreshold;
  /** No mailbox progress this long, every slot held past its deadline: the instance is stuck (0: never). */
  stuckAfterMs?: number;
  /** The process's queue subscriptions, one per endpoint shared by its instances; none: one of its own per endpoint. */
  queues?: QueueHubs;
  /** The addresses of the component's endpoints in this namespace (the same for every instance of a spawn); computed when absent. */
  addresses?: readonly EndpointAddress[];
  /** The spawn's logger: an instance logs through a child of it naming the instance, made at its first use. */
  logger: Logger;
  /**
   * What an instance's {@link PropertyBoard} is made of, at its first use (most instances never
   * set a property): the spawn's static properties and where a change goes (the registry's
   * dynamic properties; undefined with discovery off). Absent: not spawned by a runtime, no properties.
   */
  properties?: { readonly statics: Readonly<Record<string, unknown>>; readonly sink: PropertySink | undefined };
}

/** Where an instance's changed property goes: the registry's dynamic properties of `instanceId` (one function per spawn). */
export type PropertySink = (instanceId: string, key: string, value: unknown) => void;

/**
 * `failures` of a spawn: this many unexpected handler throws (not a
 * TroupeError) within `withinMs` make the instance broken.
 *
 * @example
 * await runtime.spawn(Decode, { namespace: 'llm', failures: { count: 5, withinMs: 10_000 }, restart: { attempts: 3, backoffMs: 100 } });
 */
export interface FailureThreshold {
  count: number;
  withinMs: number;
}

/** Why an instance was declared broken: a handler said so, its handlers kept failing, or its mailbox stopped moving. */
export type BrokenKind = 'fatal' | 'failures' | 'stuck';

/** A handler running this long past its deadline (capped) is logged as overdue: 2× its budget, at most deadline + 5 s. */
export const OVERDUE_MAX_MS = 5_000;

type Handler = (req: unknown, ctx: Context) => unknown;

/** Where a unary answer goes: a reply subject on the transport, or an in-process caller (plane/local-calls.ts). */
type Reply = string | LocalRequest;

/**
 * One endpoint of one instance as served: its metadata, the method and its
 * counters (looked up once at start, not per message), and everything that
 * reaches the instance through it — its place in the process's queue
 * subscription ({@link QueueMember}), its in-process target (plane/local-calls.ts)
 * and its subscriptions. The methods live on the prototype, so 100,000 idle
 * instances hold one small object per endpoint, not a closure per role.
 */
class Served implements QueueMember, LocalTarget {
  /** Its counters, made at the first message (see {@link meter}). */
  private counters: EndpointMeter | undefined;
  /** `ns.comp.ep.<instance_id>`: its mailbox subject (also its key among the in-process targets). */
  mailbox = '';
  /** Its mailbox subscription, while subscribed. */
  sub: TransportSubscription | undefined;
  /** Its own queue subscription (only without shared {@link InstanceSettings.queues}), or its place in the shared one. */
  queue: TransportSubscription | QueueMembership | undefined;
  hubSlot = -1;

  constructor(
    readonly instance: ActorInstance,
    readonly ep: EndpointMeta,
    readonly handler: Handler,
  ) {}

  /** `@endpoint({ immutable: true })`: in-process requests and replies pass by reference ({@link LocalTarget.immutable}). Read from its metadata, not kept. */
  get immutable(): boolean {
    return this.ep.immutable === true;
  }

  /** Its runtime's in-process targets ({@link LocalTarget.listedIn}), read through its instance, not kept. */
  get listedIn(): LocalTargets {
    return this.instance.localTargets;
  }

  /** Its endpoint's counters (the instance's meters are made when the first of its endpoints counts something). */
  get meter(): EndpointMeter {
    return (this.counters ??= this.instance.ownMeterOf(this.ep.name));
  }

  get accepting(): boolean {
    return this.instance.accepting;
  }

  deliver(msg: TransportMessage): void {
    this.instance.onMessage(this, msg);
  }

  dispatch(req: LocalRequest): void {
    this.instance.onLocal(this, req);
  }

  cancel(req: LocalRequest, code: 'TIMEOUT' | 'CANCELLED'): void {
    this.instance.cancelLocal(req, code);
  }

  stop(req: LocalRequest, graceMs: number): void {
    this.instance.stopLocal(req, graceMs);
  }
}

/** {@link ActorInstance.handle} of a message that runs as it arrives (a free mailbox slot): a plain function, no closure per instance. */
function handleNow(served: Served, msg: TransportMessage): void | Promise<void> {
  return served.instance.handle(served, msg);
}

/**
 * What an instance holds only once it works, is stopped or is watched (its
 * mailbox, logger, in-flight maps, watchdogs, meters, publisher): one object
 * made at the first of them. An idle instance (most of 100,000) holds one
 * empty field instead of eighteen (8 B each). Read and written through the
 * accessors of {@link ActorInstance}, which read the defaults here without
 * making it.
 */
class Busy {
  /** Its mailbox, made at the first message (see `mailbox`). */
  box: Mailbox | undefined;
  /** Its child logger, made at first use. */
  log: Logger | undefined;
  activeSet: Set<RequestContext> | undefined;
  streamMap: Map<string, WorkerStream> | undefined;
  callMap: Map<Reply, RequestContext> | undefined;
  checkMap: Map<string, { ok: boolean; lastError?: string; at: number }> | undefined;
  /**
   * Unary requests waiting in the mailbox, by reply, with the cancel or stop
   * that reached them before they started (null: none yet). Made at the first
   * queued request: a free mailbox slot runs a request at once and never
   * needs it.
   */
  queuedCalls: Map<Reply, QueuedControl | null> | undefined;
  /** Set once the grace period ran out: queued requests are refused with it. */
  refusal: TroupeError | undefined;
  /** Watches a mailbox queue that is not draining (see `watchQueue`); undefined while idle or once warned. */
  queueWatch: NodeJS.Timeout | undefined;
  queueWarned = false;
  /** Watches running handlers for overdue ones and the mailbox for progress (see `watchProgress`); armed only while something runs. */
  progressWatch: NodeJS.Timeout | undefined;
  /** The mailbox's progress count at the last check, and when it last changed. */
  lastProgress = -1;
  lastProgressAt = 0;
  /** Times of recent unexpected handler throws (only with a `failures` threshold). */
  recentFailures: number[] | undefined;
  /** Its own counters, made when it first counts anything. */
  ownMeters: EndpointMeter[] | undefined;
  /** Its event publisher, made at first use. */
  pub: EventPublisher | undefined;
  /** The subscriptions of the class's `@on` handlers while the instance runs. */
  eventHandlers: EventHandlers | undefined;
  /** Its stop, once asked for (a second caller waits for the same). */
  stopping: Promise<void> | undefined;
  /** Set once the instance is declared broken (see {@link ActorInstance.brokenReason}). */
  brokenReason: TroupeError | undefined;
  /** Its properties, made at first use (see {@link ActorInstance.properties}). */
  board: PropertyBoard | undefined;
  /** Its records are leaving the registry: a board made from now on no longer publishes. */
  left = false;
}

const enum State {
  Starting,
  Serving,
  Stopping,
  Stopped,
}

/**
 * One running actor: its endpoints' subscriptions (queue group and mailbox),
 * its bounded mailbox, and the streams it is serving. Internal; users see it
 * through the spawn handle.
 */
export class ActorInstance {
  readonly info: InstanceInfo;
  /** See {@link Busy}; undefined while the instance never worked. */
  private more: Busy | undefined;
  private get busy(): Busy {
    return (this.more ??= new Busy());
  }
  private get box(): Mailbox | undefined {
    return this.more?.box;
  }
  private set box(v: Mailbox | undefined) {
    this.busy.box = v;
  }
  private get log(): Logger | undefined {
    return this.more?.log;
  }
  private set log(v: Logger | undefined) {
    this.busy.log = v;
  }
  private get activeSet(): Set<RequestContext> | undefined {
    return this.more?.activeSet;
  }
  private set activeSet(v: Set<RequestContext> | undefined) {
    this.busy.activeSet = v;
  }
  private get streamMap(): Map<string, WorkerStream> | undefined {
    return this.more?.streamMap;
  }
  private set streamMap(v: Map<string, WorkerStream> | undefined) {
    this.busy.streamMap = v;
  }
  private get callMap(): Map<Reply, RequestContext> | undefined {
    return this.more?.callMap;
  }
  private set callMap(v: Map<Reply, RequestContext> | undefined) {
    this.busy.callMap = v;
  }
  private get checkMap(): Map<string, { ok: boolean; lastError?: string; at: number }> | undefined {
    return this.more?.checkMap;
  }
  private set checkMap(v: Map<string, { ok: boolean; lastError?: string; at: number }> | undefined) {
    this.busy.checkMap = v;
  }
  private get queuedCalls(): Map<Reply, QueuedControl | null> | undefined {
    return this.more?.queuedCalls;
  }
  private set queuedCalls(v: Map<Reply, QueuedControl | null> | undefined) {
    this.busy.queuedCalls = v;
  }
  private get refusal(): TroupeError | undefined {
    return this.more?.refusal;
  }
  private set refusal(v: TroupeError | undefined) {
    this.busy.refusal = v;
  }
  private get queueWatch(): NodeJS.Timeout | undefined {
    return this.more?.queueWatch;
  }
  private set queueWatch(v: NodeJS.Timeout | undefined) {
    this.busy.queueWatch = v;
  }
  private get queueWarned(): boolean {
    return this.more?.queueWarned ?? false;
  }
  private set queueWarned(v: boolean) {
    this.busy.queueWarned = v;
  }
  private get progressWatch(): NodeJS.Timeout | undefined {
    return this.more?.progressWatch;
  }
  private set progressWatch(v: NodeJS.Timeout | undefined) {
    this.busy.progressWatch = v;
  }
  private get lastProgress(): number {
    return this.more?.lastProgress ?? -1;
  }
  private set lastProgress(v: number) {
    this.busy.lastProgress = v;
  }
  private get lastProgressAt(): number {
    return this.more?.lastProgressAt ?? 0;
  }
  private set lastProgressAt(v: number) {
    this.busy.lastProgressAt = v;
  }
  private get recentFailures(): number[] | undefined {
    return this.more?.recentFailures;
  }
  private set recentFailures(v: number[] | undefined) {
    this.busy.recentFailures = v;
  }
  private get ownMeters(): EndpointMeter[] | undefined {
    return this.more?.ownMeters;
  }
  private set ownMeters(v: EndpointMeter[] | undefined) {
    this.busy.ownMeters = v;
  }
  private get pub(): EventPublisher | undefined {
    return this.more?.pub;
  }
  private set pub(v: EventPublisher | undefined) {
    this.busy.pub = v;
  }
  private get eventHandlers(): EventHandlers | undefined {
    return this.more?.eventHandlers;
  }
  private set eventHandlers(v: EventHandlers | undefined) {
    this.busy.eventHandlers = v;
  }
  private get stopping(): Promise<void> | undefined {
    return this.more?.stopping;
  }
  private set stopping(v: Promise<void> | undefined) {
    this.busy.stopping = v;
  }
  /** Its mailbox, made at the first message (see {@link mailbox}). */
  /** Its bounded mailbox; an idle instance (most of 100,000) has none yet. */
  private get mailbox(): Mailbox {
    return (this.box ??= new Mailbox(this.settings.concurrency, this.settings.mailboxCapacity));
  }
  /** Its logger (fields namespace, component, instance), made at first use. */
  get logger(): Logger {
    const { namespace, component, instanceId } = this.info;
    return (this.log ??= lazyChild(this.settings.logger, { namespace, component, instance: instanceId }));
  }
  /** Its endpoints as served (each with its subscriptions), once {@link start} subscribed them: the one itself for a component of one endpoint, not an array of one. */
  private servedRef: Served | readonly Served[] = NO_SERVED;
  private get served(): readonly Served[] {
    const s = this.servedRef;
    return s instanceof Served ? [s] : s;
  }

  // What an instance holds while it works is created at first use: 100,000 idle instances hold none of it.
  /** When it started serving ({@link clockMs}: a small integer, not a boxed double); 0 before. */
  private startedAt = 0;
  private get active(): Set<RequestContext> {
    return (this.activeSet ??= new Set());
  }
  private get streams(): Map<string, WorkerStream> {
    return (this.streamMap ??= new Map());
  }
  /** Unary requests whose handler is still running, by reply subject: what a cancel control message names. */
  private get calls(): Map<Reply, RequestContext> {
    return (this.callMap ??= new Map());
  }
  private state = State.Starting;
  /** Set once the instance is declared broken (see {@link broken}). */
  get brokenReason(): TroupeError | undefined {
    return this.more?.brokenReason;
  }
  set brokenReason(v: TroupeError | undefined) {
    this.busy.brokenReason = v;
  }
  /** Told once when the instance is declared broken; set by its supervisor. */
  supervisor: { broke(instance: ActorInstance, reason: TroupeError, kind: BrokenKind): void } | undefined;
  // Read from the spawn's settings (one object for all its instances), not copied into each.
  private get failures(): FailureThreshold | undefined {
    return this.settings.failures;
  }
  private get stuckAfterMs(): number {
    return this.settings.stuckAfterMs ?? 0;
  }
  private get queues(): QueueHubs | undefined {
    return this.settings.queues;
  }

  constructor(
    readonly actor: object,
    info: InstanceInfo,
    private readonly settings: InstanceSettings,
  ) {
    this.info = info;
  }

  // The spawn's, read from its settings (one object for all its instances), not kept in each.
  private get plane(): Plane {
    return this.settings.plane;
  }
  /** Its runtime's in-process targets. */
  get localTargets(): LocalTargets {
    return this.settings.plane.local;
  }
  private get meta(): ComponentMeta {
    return this.settings.meta;
  }

  /** Per-endpoint counters of this instance (`$SRV.STATS`, Prometheus), in the component's endpoint order; shared zeros before it counted anything. */
  get meters(): readonly EndpointMeter[] {
    return this.ownMeters ?? this.plane.meter.zeros(this.info.namespace, this.meta.name, this.meta.endpoints.keys());
  }

  /** The counters of one endpoint of this instance; undefined for an endpoint it does not have, or before it counted anything (all zero). */
  meterOf(endpoint: string): EndpointMeter | undefined {
    if (this.ownMeters) for (const m of this.ownMeters) if (m.endpoint === endpoint) return m;
    return undefined;
  }

  /** The counters of one of its endpoints, to count into (its meters are made now if they were not). Internal ({@link Served}). */
  ownMeterOf(endpoint: string): EndpointMeter {
    this.ownMeters ??= this.plane.meter.endpointMeters(this.info.namespace, this.meta.name, this.meta.endpoints.keys());
    return this.meterOf(endpoint) as EndpointMeter;
  }
  /** This instance's dynamic properties as last set (`$SRV.STATS` `data`); empty before any. */
  get dynamic(): Readonly<Record<string, unknown>> {
    return this.more?.board?.dynamic ?? NO_PROPERTIES;
  }
  /** When the instance started serving (ISO 8601; '' before), for `$SRV.STATS` `started`. */
  get started(): string {
    return this.startedAt === 0 ? '' : new Date(clockWall(this.startedAt)).toISOString();
  }

  /** When the instance started serving ({@link clockMs}); 0 before. */
  get startedMs(): number {
    return this.startedAt;
  }

  /** The component's metadata (name, endpoints). */
  get component(): ComponentMeta {
    return this.meta;
  }

  /** Canary health-check results by endpoint (endpoints that declare `healthCheck`). */
  get checks(): Map<string, { ok: boolean; lastError?: string; at: number }> {
    return (this.checkMap ??= new Map());
  }

  /** Requests waiting in the mailbox now. */
  get queued(): number {
    return this.box?.queued ?? 0;
  }

  /** Whether the instance has stopped (its counts are then in its endpoints' totals: {@link Meter.retire}). */
  get stopped(): boolean {
    return this.state === State.Stopped;
  }

  /** Whether the instance is serving (started, not stopping). */
  get serving(): boolean {
    return this.state === State.Serving;
  }

  /** Publishes this instance's events (`ctx.publish`, `@injectPublisher()`); made at first use (most idle instances never publish). */
  get publisher(): EventPublisher {
    return (this.pub ??= this.plane.events.publisherOf(this.info));
  }
  /**
   * The instance's properties (and the registry behind them): the board `@injectProperties()`
   * gave its actor, else one made now from the spawn's settings; undefined for an instance not
   * spawned by a runtime.
   */
  get properties(): PropertyBoard | undefined {
    const made = this.more?.board;
    if (made !== undefined) return made;
    const p = this.settings.properties;
    if (p === undefined) return undefined;
    const board = new PropertyBoard(this.info.instanceId, p.statics, p.sink);
    if (this.more?.left === true) board.leave();
    return (this.busy.board = board);
  }
  /** The board its actor was given (`@injectProperties()`); set by the runtime before `start()`. */
  set properties(board: PropertyBoard | undefined) {
    this.busy.board = board;
  }

  /** Its records are leaving the registry: later property changes are kept locally only (see {@link PropertyBoard.leave}). */
  leaveRegistry(): void {
    const busy = this.busy;
    busy.left = true;
    busy.board?.leave();
  }

  /** The addresses of this instance's endpoints (the spawn's, shared by its instances). */
  get addresses(): readonly EndpointAddress[] {
    return this.settings.addresses ?? [...this.meta.endpoints.values()].map((ep) => endpointAddress(this.info.namespace, this.meta.name, ep.name));
  }

  /** Its mailbox subjects, in endpoint order (empty before {@link start}); the same text as its registry keys. */
  get mailboxSubjects(): string[] {
    return this.served.map((s) => s.mailbox);
  }

  /** The runtime's worker threads (`ctx.runInThread`). */
  get threads(): ThreadPool {
    return this.plane.threads;
  }

  /** A fresh request id (a request context's, made when first read). Internal ({@link RequestContext}). */
  nextRequestId(): string {
    return this.plane.nextRequestId();
  }

  /** Sets a dynamic property (published with the process heartbeat, throttled); see {@link PropertyBoard.set}. */
  setProperty(key: string, value: unknown): void {
    const board = this.properties;
    if (!board) throw new TroupeError('BAD_REQUEST', `instance ${this.info.instanceId} has no properties (it was not spawned by a runtime)`);
    board.set(key, value);
  }

  /** Requests being handled and streams open here now (leak tests). */
  retained(): { active: number; streams: number } {
    return { active: this.activeSet?.size ?? 0, streams: this.streamMap?.size ?? 0 };
  }

  /**
   * Runs `onStart`, then subscribes every endpoint and waits until the server
   * has the interest — unless `flush` is false: a spawn of many instances
   * flushes once for all of them (one round trip instead of one each).
   */
  async start(flush = true): Promise<void> {
    const hook = (this.actor as Partial<OnStart>).onStart;
    if (typeof hook === 'function') await hook.call(this.actor);
    const t = this.plane.transport;
    const served: Served[] = [];
    this.servedRef = served;
    try {
      for (const ep of this.meta.endpoints.values()) {
        const addr = endpointAddress(this.info.namespace, this.meta.name, ep.name);
        const handler = (this.actor as Record<string, unknown>)[ep.method];
        if (typeof handler !== 'function') {
          throw new TroupeError('INTERNAL', `${this.meta.name}.${ep.method} is not a function on the instance`);
        }
        const s = new Served(this, ep, handler as Handler);
        served.push(s);
        if (this.queues) s.queue = this.queues.join(addr, s);
        else s.queue = t.subscribe(queueSubject(addr), s, { queue: queueGroup(addr) });
        s.mailbox = ownMailboxSubject(addr, this.info.instanceId);
        s.sub = t.subscribe(s.mailbox, s);
        // Reachable in-process for exactly as long as its mailbox subscription (callers of this runtime skip the transport).
        this.plane.local.add(s.mailbox, s);
      }
      // `@on` handlers subscribe before the instance counts as started, and run in its mailbox.
      if (eventHandlers(this.actor.constructor).length > 0) {
        this.eventHandlers = await startEventHandlers({
          plane: this.plane,
          actor: this.actor,
          info: this.info,
          logger: this.logger,
          mailbox: this.mailbox,
          refused: () => this.refusal !== undefined,
        });
      }
      if (flush) await t.flush();
    } catch (err) {
      this.unlistLocal();
      for (const s of served) s.sub?.unsubscribe();
      this.unsubscribeQueues();
      void this.leaveQueues(false);
      await this.eventHandlers?.stop();
      throw err;
    }
    // Exactly as long as needed (an array that was pushed to keeps room for 16), and no array for one.
    this.servedRef = served.length === 1 ? (served[0] as Served) : [...served];
    this.state = State.Serving;
    this.startedAt = clockMs();
  }

  /**
   * Stops serving: leaves the queue groups at once (the server routes new
   * requests elsewhere), refuses new direct requests, hands off the streams
   * whose callers migrate them (they continue on another instance), lets
   * in-flight work finish within `graceMs` (stream control keeps flowing on
   * the mailbox), then hands off the streams still open and aborts what is
   * left, and runs `onStop`. Leaving the queue groups waits at most
   * `drainWithinMs` for the server (less when the server is known not to
   * answer).
   */
  stop(graceMs: number, drainWithinMs = graceMs): Promise<void> {
    // A second caller (a handle's stop, then close) waits for the same stop, not for nothing.
    this.stopping ??= this.stopNow(graceMs, drainWithinMs);
    return this.stopping;
  }

  private async stopNow(graceMs: number, drainWithinMs: number): Promise<void> {
    this.state = State.Stopping;
    clearTimeout(this.queueWatch);
    this.queueWatch = undefined;
    clearTimeout(this.progressWatch);
    this.progressWatch = undefined;
    const deadline = Date.now() + graceMs;
    // Messages the server already delivered to the queue subscription are still handled. A
    // drain waits for the server's answer: a dead or frozen server must not hold the stop
    // past `drainWithinMs` (within the grace period; the connection is closed after it anyway).
    const leaving = Promise.all([...this.ownQueueSubs().map((s) => s.drain()), this.leaveQueues(true)])
      .then(() => this.eventHandlers?.stop())
      .catch(() => undefined);
    const drainMs = Math.min(graceMs, drainWithinMs);
    if (!(await settlesWithin(leaving, drainMs))) {
      this.unsubscribeQueues();
      void this.leaveQueues(false);
      this.logger.warn(`queue subscriptions did not drain within ${drainMs} ms (server not answering); stopped without`);
    }
    // Only now: a migrated stream re-sent to the queue group must not land here again.
    const moving = this.streamMap ? [...this.streamMap.values()].filter((st) => st.migrate) : [];
    if (moving.length > 0) {
      const reason = handoff(`instance ${this.info.instanceId} is draining: the stream continues on another instance`);
      for (const st of moving) this.handOff(st, reason);
      this.logger.info('streams handed off', { streams: moving.length });
    }
    // An instance that never got a message has no mailbox to wait for.
    const finished = await settlesWithin(this.box?.idle() ?? Promise.resolve(), deadline - Date.now());
    if (!finished) {
      const lost = new TroupeError('UNAVAILABLE', `instance ${this.info.instanceId} stopped before the request finished (grace period ${graceMs} ms)`);
      this.refusal = lost;
      // Streams still open (running or queued) end with a handoff: `UNAVAILABLE` as ever, unless their caller migrates them.
      const late = handoff(`instance ${this.info.instanceId} stopped before the stream finished (grace period ${graceMs} ms)`);
      for (const st of [...this.streams.values()]) this.handOff(st, late);
      for (const job of this.mailbox.takeQueued()) void job();
      for (const ctx of this.active) ctx.abort(lost);
      await settlesWithin(this.mailbox.idle(), Math.min(1000, graceMs));
    }
    this.unlistLocal();
    for (const s of this.served) s.sub?.unsubscribe();
    this.state = State.Stopped;
    this.plane.meter.retire(this);
    // Kept here before the runtime forgets it: a handler still running publishes on with the same sequence.
    this.pub ??= this.plane.events.publisherOf(this.info);
    this.plane.events.release(this.info.instanceId);
    const hook = (this.actor as Partial<OnStop>).onStop;
    if (typeof hook === 'function') {
      try {
        await hook.call(this.actor);
      } catch (err) {
        this.logger.error('onStop hook threw', { error: (err as Error)?.message ?? String(err) });
      }
    }
  }

  /** Whether the shared queue subscription may hand it a new message: serving, not withdrawn. Internal ({@link Served}). */
  get accepting(): boolean {
    return this.state === State.Serving && this.brokenReason === undefined;
  }

  /** Leaves the shared queue subscriptions (see {@link QueueHubs.leave}); settles when they drained. */
  private leaveQueues(drain: boolean): Promise<void> {
    if (!this.queues) return Promise.resolve();
    const hubs = this.queues;
    return Promise.all(this.served.map((s) => (s.queue ? hubs.leave(s.queue as QueueMembership, s, drain) : undefined))).then(() => undefined);
  }

  /** Queue subscriptions of its own (only without shared {@link InstanceSettings.queues}). */
  private ownQueueSubs(): TransportSubscription[] {
    if (this.queues) return [];
    const out: TransportSubscription[] = [];
    for (const s of this.served) if (s.queue) out.push(s.queue as TransportSubscription);
    return out;
  }

  /** Unsubscribes its own queue subscriptions at once, and forgets them (a later stop does not drain them). */
  private unsubscribeQueues(): void {
    for (const sub of this.ownQueueSubs()) sub.unsubscribe();
    if (!this.queues) for (const s of this.served) s.queue = undefined;
  }

  /** A message on one of its subscriptions. Internal ({@link Served}). */
  onMessage(served: Served, msg: TransportMessage): void {
    const ctl = msg.header(H.CTL);
    if (ctl !== undefined) return this.onControl(ctl, msg);
    const reply = msg.reply;
    served.meter.bytesIn += msg.data.length;
    if (this.brokenReason && this.refusal) {
      // Withdrawn: never run here, so the caller's router sends it elsewhere at once.
      if (reply) this.sendError(reply, this.refusal);
      return;
    }
    if (this.state === State.Stopping && !msg.subject.endsWith(this.info.instanceId)) {
      // drained from the queue subscription: already ours, handle it
    } else if (this.state === State.Starting) {
      // Subscribed (onStart ran) but still flushing: the queue group already delivers here, and a
      // queue-group caller cannot re-route a refusal (a replacement joining under load, #17).
    } else if (this.state !== State.Serving) {
      // `refused`: never ran, so the caller's router sends it elsewhere.
      if (reply) this.sendError(reply, refusal(`instance ${this.info.instanceId} is stopping`));
      return;
    }
    // A stream is accepted before it waits in the mailbox: its start frame and heartbeats keep the caller informed meanwhile.
    const box = this.mailbox;
    const stream =
      reply && msg.header(H.MODE) === MODE_STREAM && (box.running < box.concurrency || box.queued < box.capacity)
        ? acceptStream(this.plane, this.streams, this.info.instanceId, msg, reply)
        : undefined;
    let accepted: boolean;
    if (box.running < box.concurrency) {
      // A free slot: run now, without a job closure (the unary hot path, and a stream's first item).
      box.runNow(handleNow, served, msg);
      // Never handed to its handler (refused, killed, malformed, out of time): what `guard` does for a queued stream.
      // A stream that started is forgotten by `serveStream` whichever way it ends.
      if (stream !== undefined && !stream.started) stream.forget();
      accepted = true;
    } else {
      // The budget counts from arrival: time spent waiting in the mailbox is spent.
      const arrived = Date.now();
      const job = (): void | Promise<void> => this.handle(served, msg, arrived);
      accepted = box.offer(stream ? stream.guard(job) : job);
      // A unary request waits: a cancel or stop that reaches it before it starts is kept for it.
      if (accepted && reply && !stream) (this.queuedCalls ??= new Map()).set(reply, null);
    }
    if (!accepted) stream?.forget();
    this.offered(served, accepted, reply);
  }

  /** An in-process request (plane/local-calls.ts): the same admission as {@link onMessage} for a mailbox message. Internal ({@link Served}). */
  onLocal(served: Served, req: LocalRequest): void {
    served.meter.bytesIn += req.size;
    if (this.brokenReason && this.refusal) return this.sendError(req, this.refusal);
    if (this.state !== State.Serving) return this.sendError(req, refusal(`instance ${this.info.instanceId} is stopping`));
    const box = this.mailbox;
    if (box.running < box.concurrency) {
      // A free slot: run now, without a job closure, as onMessage does.
      box.runNow(handleNow, served, req);
      return this.offered(served, true, req);
    }
    const arrived = Date.now();
    const accepted = box.offer(() => this.handle(served, req, arrived));
    // Queued behind running handlers: a cancel or stop before it starts is kept for it (as for a mailbox message).
    if (accepted) (this.queuedCalls ??= new Map()).set(req, null);
    this.offered(served, accepted, req);
  }

  /** A cancel of an in-process call: as a cancel control message naming it. Internal ({@link Served}). */
  cancelLocal(req: LocalRequest, code: 'TIMEOUT' | 'CANCELLED'): void {
    const call = this.calls.get(req);
    if (call) call.abort(cancelError(code, 'call'));
    else this.controlQueued(req, { kill: cancelError(code, 'call') });
  }

  /** A stop of an in-process call. Internal ({@link Served}). */
  stopLocal(req: LocalRequest, graceMs: number): void {
    const call = this.calls.get(req);
    if (call) this.stopCall(call, req, graceMs);
    else this.controlQueued(req, { stopAt: Date.now(), graceMs });
  }

  /** A cancel or stop of a request still waiting in the mailbox: kept until it starts (the first of each wins). */
  private controlQueued(reply: Reply, control: QueuedControl): void {
    const queued = this.queuedCalls;
    if (!queued?.has(reply)) return;
    const had = queued.get(reply);
    // A kill after a stop is still a kill; a stop after a kill changes nothing.
    if (had?.kill) return;
    queued.set(reply, had?.stopAt !== undefined && control.stopAt !== undefined ? had : control);
  }

  private unlistLocal(): void {
    for (const s of this.served) if (s.mailbox !== '') this.plane.local.delete(s.mailbox, s);
  }

  /** After a message was offered to the mailbox: the queue and progress watches, and OVERLOADED when it was not accepted. */
  private offered(served: Served, accepted: boolean, reply: Reply | undefined): void {
    const box = this.mailbox;
    if (box.queued > 0 && this.queueWatch === undefined && !this.queueWarned) this.watchQueue(performance.eventLoopUtilization());
    if (box.running > 0 && this.progressWatch === undefined && this.stuckAfterMs > 0) {
      this.lastProgress = box.progress;
      this.lastProgressAt = Date.now();
      this.watchProgress();
    }
    if (accepted) return;
    served.meter.overloaded++;
    if (reply) {
      this.sendError(
        reply,
        new TroupeError('OVERLOADED', `instance ${this.info.instanceId} of ${this.meta.name} has ${this.mailbox.capacity} requests waiting`, {
          data: { instanceId: this.info.instanceId, capacity: this.mailbox.capacity },
        }),
      );
    }
  }

  /** Requests served or waiting now (running handlers, streams included, and queued messages). */
  get inFlight(): number {
    const box = this.box;
    return box === undefined ? 0 : box.running + box.queued;
  }

  /**
   * The default concurrency 1 serialises an instance whose handlers mostly
   * await I/O (a streaming gateway): callers queue while the process idles.
   * Cheap, honest heuristic, checked only while something waits: requests
   * have waited in this mailbox without a break for {@link QUEUE_WARN_MS}
   * while the process's event loop was under half busy over that time (its
   * running handlers were awaiting, not computing) — then warn once per
   * instance. A CPU-bound handler keeps the loop busy and is not flagged:
   * more concurrency would not help it.
   */
  private watchQueue(since: EventLoopUtilization): void {
    this.queueWatch = setTimeout(() => {
      this.queueWatch = undefined;
      const box = this.mailbox;
      if (box.waitingSince === 0 || this.state !== State.Serving) return;
      const waited = Date.now() - box.waitingSince;
      const busy = performance.eventLoopUtilization(since).utilization;
      if (waited >= QUEUE_WARN_MS && busy < 0.5) {
        this.queueWarned = true;
        this.logger.warn(
          `requests have waited over ${QUEUE_WARN_MS / 1000} s behind concurrency ${box.concurrency} while the process was idle (its handlers are awaiting I/O one batch at a time); ` +
            'if they may run together (a streaming gateway, an I/O-bound proxy), spawn it with a higher concurrency, e.g. { concurrency: 16 }',
          { queued: box.queued, running: box.running, concurrency: box.concurrency, eventLoopBusy: Math.round(busy * 100) / 100 },
        );
        return;
      }
      this.watchQueue(performance.eventLoopUtilization());
    }, QUEUE_WARN_MS);
    this.queueWatch.unref();
  }

  /**
   * While anything runs, every {@link progressCheckMs}: a handler running
   * past its deadline by its budget (at most {@link OVERDUE_MAX_MS}) is
   * logged once (warn, request id, endpoint) and counted — it ignored its
   * abort signal; and when no message started or finished for
   * `stuckAfterMs` while every slot is held and no running handler is still
   * within its deadline, the instance is stuck: declared broken, so its
   * supervisor withdraws it from discovery and replaces it. Armed only while
   * the mailbox runs something, so an idle instance costs no timer.
   */
  private watchProgress(): void {
    const every = progressCheckMs(this.stuckAfterMs);
    this.progressWatch = setTimeout(() => {
      this.progressWatch = undefined;
      const box = this.mailbox;
      if (this.state !== State.Serving || this.brokenReason) return;
      const now = Date.now();
      if (box.progress !== this.lastProgress) {
        this.lastProgress = box.progress;
        this.lastProgressAt = now;
      }
      let withinDeadline = false;
      for (const ctx of this.active) {
        if (now <= ctx.deadline) withinDeadline = true;
        else if (!ctx.overdueWarned && now > ctx.deadline + Math.min(ctx.budgetMs, OVERDUE_MAX_MS)) {
          ctx.overdueWarned = true;
          this.plane.stats.handlersOverdue++;
          ctx.logger.warn(
            `handler still running ${now - ctx.deadline} ms past its deadline: it ignores ctx.signal (it holds a mailbox slot until it settles)`,
            {
              overdueMs: now - ctx.deadline,
              budgetMs: ctx.budgetMs,
            },
          );
        }
      }
      const stalled = now - this.lastProgressAt;
      if (box.running >= box.concurrency && !withinDeadline && stalled >= this.stuckAfterMs) {
        this.plane.stats.instancesStuck++;
        this.broken(
          new TroupeError(
            'UNAVAILABLE',
            `instance ${this.info.instanceId} of ${this.meta.name} is stuck: no message started or finished for ${stalled} ms with all ${box.concurrency} slots held past their deadlines`,
            {
              data: { stuck: true },
            },
          ),
          'stuck',
        );
        return;
      }
      if (box.running > 0) this.watchProgress();
    }, every);
    this.progressWatch.unref();
  }

  /**
   * Declares the instance broken, once: it leaves its queue groups at once,
   * refuses what waits in its mailbox and every later message with
   * `UNAVAILABLE` `refused` (callers' routers send them elsewhere), and its
   * supervisor is told (it deregisters, stops and maybe replaces it).
   */
  broken(reason: TroupeError, kind: BrokenKind = 'fatal'): void {
    if (this.brokenReason || this.state !== State.Serving) return;
    this.brokenReason = reason;
    clearTimeout(this.progressWatch);
    this.progressWatch = undefined;
    this.refusal = refusal(`instance ${this.info.instanceId} of ${this.meta.name} was withdrawn: ${reason.message}`);
    // Unsubscribed, not drained: nothing more should reach a broken instance through its groups.
    this.unsubscribeQueues();
    void this.leaveQueues(false);
    for (const job of this.mailbox.takeQueued()) void job();
    if (this.supervisor) this.supervisor.broke(this, reason, kind);
    else this.logger.error('instance broken with no supervisor', { kind, error: reason.message });
  }

  private onControl(kind: string, msg: TransportMessage): void {
    if (kind === Ctl.CANCEL || kind === Ctl.STOP) {
      const call = this.calls.get(msg.header(H.STREAM) ?? '');
      if (call && kind === Ctl.CANCEL) return call.abort(cancelReason(msg, 'call'));
      if (call) return this.stopCall(call, msg.header(H.STREAM) as string, stopGrace(msg));
      const reply = msg.header(H.STREAM);
      if (reply !== undefined && this.queuedCalls?.has(reply)) {
        return this.controlQueued(reply, kind === Ctl.CANCEL ? { kill: cancelReason(msg, 'call') } : { stopAt: Date.now(), graceMs: stopGrace(msg) });
      }
    }
    streamControl(this.plane, this.streams, kind, msg);
  }

  /**
   * Asks a unary handler to finish within `graceMs`. The caller keeps
   * waiting for the reply, so a handler killed at the end of the grace
   * answers `CANCELLED` at once, even if it hangs and never settles.
   */
  private stopCall(ctx: RequestContext, reply: Reply, graceMs: number): void {
    if (ctx.stopped) return;
    ctx.onAbort(() => {
      if (ctx.reason.code === 'CANCELLED') this.sendError(reply, ctx.reason);
    });
    ctx.stop(graceMs);
  }

  /**
   * A stopped stream whose handler was killed (at the end of its grace, or
   * cancelled after the stop): the caller asked for the end, so it gets one,
   * with the items that reached it.
   */
  private endStopped(stream: WorkerStream, ctx: RequestContext): void {
    ctx.logger.warn('stopped handler killed before it finished', { reason: ctx.reason.message, items: stream.sent });
    try {
      stream.sendEnd(stream.sent);
    } catch {
      // not connected: the caller's liveness check reports the stream lost
    }
  }

  /**
   * Runs one request that left the mailbox. `arrived`: when a message that
   * waited in the mailbox arrived (ms epoch); undefined when it runs as it
   * arrives (one clock read instead of two). Internal ({@link handleNow}).
   */
  handle(served: Served, msg: TransportMessage, arrived?: number): void | Promise<void> {
    const { ep, meter } = served;
    const local = msg instanceof LocalRequest ? msg : undefined;
    const reply: Reply | undefined = local ?? msg.reply;
    let control: QueuedControl | null | undefined;
    if (reply !== undefined && this.queuedCalls !== undefined && this.queuedCalls.size > 0) {
      control = this.queuedCalls.get(reply);
      this.queuedCalls.delete(reply);
    }
    // A stream handed off while it waited in the mailbox: its caller went elsewhere.
    if (this.state !== State.Serving && typeof reply === 'string' && this.streams.get(reply)?.handedOff) return;
    if (this.refusal) {
      if (reply) this.sendError(reply, this.refusal);
      return;
    }
    // An in-process request run as it arrives may start at the reading its drain handed it (plane/local-calls.ts): one clock read fewer.
    const at = local !== undefined && arrived === undefined ? local.at : Number.NaN;
    const t0 = at === at && meter.timed ? at : meter.start();
    // Killed while it waited (the caller's cancel or deadline, or a stop whose grace ran out there): never started.
    const killed = control ? queuedKill(control, ep.name) : undefined;
    if (killed) {
      meter.finish(t0, killed.code, killed.message);
      if (reply) this.sendError(reply, killed);
      return;
    }
    let request: unknown;
    try {
      request = local ? local.request : this.plane.codec.decode(msg.data);
    } catch (err) {
      const e = toTroupeError(err, 'BAD_REQUEST');
      meter.finish(t0, e.code, e.message);
      if (reply) this.sendError(reply, e);
      else this.logger.warn('malformed request without a reply subject dropped', { endpoint: ep.name });
      return;
    }
    let budget: number;
    let deadline: number;
    if (local !== undefined && arrived === undefined) {
      // In-process, run as it arrives: the caller's own deadline (what the bus's arrival + budget stands for, without a
      // clock read or the budget header's parse); its budget is at least 1 ms, as in the header, so it has not passed here.
      budget = local.budget;
      deadline = local.deadline;
    } else {
      const budgetHeader = msg.header(H.TIMEOUT);
      budget = budgetHeader === undefined ? this.plane.settings.requestTimeoutMs : budgetOf(budgetHeader);
      const nowMs = Date.now();
      deadline = (arrived ?? nowMs) + budget;
      if (deadline <= nowMs) budget = 0;
    }
    if (!(budget > 0)) {
      // The caller has given up: running the handler would be wasted work.
      const e = new TroupeError('TIMEOUT', `deadline passed before ${ep.name} started (it waited in the mailbox)`);
      meter.finish(t0, e.code, e.message);
      if (reply) this.sendError(reply, e);
      return;
    }
    const meta = msg.header(H.META);
    if (meta !== undefined && meta.length > METADATA_LIMITS.maxBytes) {
      const e = new TroupeError('BAD_REQUEST', `request metadata of ${meta.length} bytes exceeds ${METADATA_LIMITS.maxBytes}`);
      meter.finish(t0, e.code, e.message);
      if (reply) this.sendError(reply, e);
      return;
    }
    // Without a propagated id the unique reply subject names the request.
    // In-process without one: made when first read (RequestContext.requestId).
    const ctx = new RequestContext(this, ep.name, msg.header(H.ID) ?? (local ? undefined : (msg.reply ?? '')), deadline);
    ctx.budgetMs = budget;
    ctx.metaHeader = meta;
    const traceparent = msg.header(H.TRACEPARENT);
    if (traceparent !== undefined) {
      ctx.traceparent = traceparent;
      ctx.tracestate = msg.header(H.TRACESTATE);
    }
    // Stopped while it waited: the handler starts stopped, with what is left of the grace.
    if (control?.stopAt !== undefined && reply !== undefined) this.stopCall(ctx, reply, (control.graceMs as number) - (Date.now() - control.stopAt));
    meter.inFlight++;
    const stream = typeof reply === 'string' && msg.header(H.MODE) === MODE_STREAM;
    if (tracingActive()) {
      // Nothing of this runs unless the application registered a tracer provider.
      const addr = endpointAddress(this.info.namespace, this.meta.name, ep.name);
      const attrs = callAttributes(addr, msg.subject, stream);
      attrs['troupe.instance_id'] = this.info.instanceId;
      attrs['troupe.request_id'] = ctx.requestId;
      ctx.server = startServerSpan(queueSubject(addr), parseTraceparent(traceparent), msg, attrs);
      return runInContext(ctx.server.context, () =>
        stream ? this.serveStream(served, request, ctx, reply, msg, t0) : this.serveUnary(served, request, ctx, reply, t0),
      );
    }
    return stream ? this.serveStream(served, request, ctx, reply, msg, t0) : this.serveUnary(served, request, ctx, reply, t0);
  }

  private serveUnary(served: Served, request: unknown, ctx: RequestContext, reply: Reply | undefined, t0: number): void | Promise<void> {
    const meter = served.meter;
    let result: unknown;
    if (typeof reply === 'object') reply.started = true;
    try {
      result = served.handler.call(this.actor, request, ctx);
    } catch (err) {
      const e = this.handlerFailed(ctx, err);
      meter.inFlight--;
      meter.finish(t0, e.code, e.message);
      if (reply) this.sendError(reply, e);
      if (ctx.server) ctx.endSpan(e);
      return;
    }
    if (!isPromiseLike(result)) {
      meter.inFlight--;
      this.answer(served, t0, reply, result);
      if (ctx.server) ctx.endSpan();
      return;
    }
    this.active.add(ctx);
    if (reply) this.calls.set(reply, ctx);
    ctx.armDeadline();
    return Promise.resolve(result).then(
      (value) => {
        this.settled(ctx, reply);
        meter.inFlight--;
        this.answer(served, t0, reply, value);
        ctx.endSpan();
      },
      (err: unknown) => {
        this.settled(ctx, reply);
        // A handler that rethrows its signal's abort as something else still reads as the abort.
        const e = ctx.aborted && !(err instanceof TroupeError) ? ctx.reason : this.handlerFailed(ctx, err);
        meter.inFlight--;
        meter.finish(t0, e.code, e.message);
        if (reply) this.sendError(reply, e);
        ctx.endSpan(e);
      },
    );
  }

  private settled(ctx: RequestContext, reply: Reply | undefined): void {
    this.active.delete(ctx);
    if (reply) this.calls.delete(reply);
    ctx.dispose();
  }

  /** Sends a handler's value (when there is a reply subject) and counts the request. */
  private answer(served: Served, t0: number, reply: Reply | undefined, value: unknown): void {
    const meter = served.meter;
    const failed = reply ? this.sendValue(reply, value, served) : undefined;
    if (failed) meter.finish(t0, failed.code, failed.message);
    // In-process: the caller read the clock as it took the reply, just now (NaN when it did not).
    else if (typeof reply === 'object') meter.finishAt(t0, reply.endedAt);
    else meter.finish(t0);
  }

  /** Sends a unary reply; returns the error sent instead when the value could not go. */
  private sendValue(reply: Reply, value: unknown, served: Served): TroupeError | undefined {
    let failed: TroupeError | undefined;
    if (isObservable(value) || isAsyncIterable(value)) {
      closeQuietly(value);
      failed = new TroupeError('BAD_REQUEST', `endpoint streams: call it with stream(), not call()`);
      this.sendError(reply, failed);
      return failed;
    }
    if (typeof reply !== 'string') return this.sendLocalValue(reply, value, served);
    let data: Uint8Array;
    try {
      data = value === undefined ? EMPTY : this.plane.codec.encode(value);
    } catch (err) {
      failed = new TroupeError('INTERNAL', `cannot encode the reply: ${(err as Error).message}`);
      this.sendError(reply, failed);
      return failed;
    }
    try {
      this.plane.transport.publish(reply, data);
      served.meter.bytesOut += data.length;
    } catch (err) {
      failed = toTroupeError(err);
      this.sendError(reply, failed);
    }
    return failed;
  }

  /**
   * {@link sendValue} to an in-process caller: a copy of the value (as msgpack
   * would carry it), or the value itself for an immutable endpoint, within the
   * same payload limit.
   */
  private sendLocalValue(req: LocalRequest, value: unknown, served: Served): TroupeError | undefined {
    const meter = served.meter;
    let copied: unknown;
    if (value !== undefined) {
      let failed: TroupeError | undefined;
      try {
        const c = served.immutable ? sizeValue(this.plane.codec, value) : copyValue(this.plane.codec, value);
        const max = this.plane.transport.maxPayload;
        if (c.size > max) failed = tooLarge(c.size, max, 'the caller');
        else meter.bytesOut += c.size;
        copied = c.value;
      } catch (err) {
        failed = new TroupeError('INTERNAL', `cannot encode the reply: ${(err as Error).message}`);
      }
      if (failed) {
        this.sendError(req, failed);
        return failed;
      }
    }
    req.answer(copied);
    return undefined;
  }

  /**
   * Normalises what a handler threw and says so on the worker, where the bug
   * is: an unexpected throw (anything but a TroupeError) at error level with
   * the request id, the endpoint and the handler's own stack; a TroupeError
   * the handler meant (NOT_FOUND, BAD_REQUEST, a downstream TIMEOUT) at debug
   * only. The request body is never logged (it may hold user data).
   */
  private handlerFailed(ctx: RequestContext, err: unknown): TroupeError {
    const e = toTroupeError(err);
    if (err instanceof TroupeError) {
      // A fatal error raised downstream (and let through) broke that instance, not this one.
      if ((e.data as { fatal?: unknown } | undefined)?.fatal === true && !isRemoteError(e)) {
        ctx.logger.error('handler declared the instance broken', { code: e.code, error: e.message });
        this.broken(e, 'fatal');
      } else {
        ctx.logger.debug('handler answered an error', { code: e.code, error: e.message });
      }
    } else {
      ctx.logger.error('handler threw', { code: e.code, error: e.message, stack: err instanceof Error ? err.stack : undefined });
      if (this.failures) this.countFailure(this.failures);
    }
    return e;
  }

  /** Past `failures.count` unexpected throws within `failures.withinMs`, the instance is broken. */
  private countFailure(f: FailureThreshold): void {
    const now = Date.now();
    const recent = (this.recentFailures ??= []);
    recent.push(now);
    while (recent.length > 0 && (recent[0] as number) <= now - f.withinMs) recent.shift();
    if (recent.length >= f.count) {
      this.broken(
        new TroupeError('INTERNAL', `${recent.length} handler failures within ${f.withinMs} ms (threshold ${f.count})`, { data: { fatal: true } }),
        'failures',
      );
    }
  }

  /** Sends an error to a caller; never throws. */
  sendError(reply: Reply, err: TroupeError, frame?: boolean): void {
    if (typeof reply !== 'string') {
      reply.fail(localWireError(this.plane.codec, this.wireOf(err), this.plane.transport.maxPayload - HEADER_ROOM));
      return;
    }
    const headers: Headers = frame ? { [H.ERROR]: err.code, [H.FRAME]: Frame.ERROR } : { [H.ERROR]: err.code };
    try {
      this.plane.transport.publish(reply, this.errorBody(err), { headers });
    } catch (e) {
      this.logger.warn('error reply not sent', { code: err.code, error: (e as Error).message });
    }
  }

  /** An error as the caller sees it (`{ code, message, data?, stack? }`; the stack in dev mode). */
  private wireOf(err: TroupeError): WireError {
    const wire: WireError = err.toJSON();
    if (this.plane.settings.dev) {
      // A normalised throw: the stack that helps is the handler's, not the normaliser's.
      const origin = err.cause instanceof Error && !(err.cause instanceof TroupeError) ? err.cause : err;
      if (origin.stack) wire.stack = origin.stack;
    }
    return wire;
  }

  /** The wire body of an error, cut to fit a frame. */
  private errorBody(err: TroupeError): Uint8Array {
    const wire = this.wireOf(err);
    let body: Uint8Array;
    try {
      body = this.plane.codec.encode(wire);
    } catch {
      body = this.plane.codec.encode({ code: err.code, message: err.message });
    }
    if (body.length > this.plane.transport.maxPayload - HEADER_ROOM) {
      body = this.plane.codec.encode({ code: err.code, message: err.message.slice(0, 1024) });
    }
    return body;
  }

  /**
   * Ends a stream here because the instance drains: aborts its handler (the
   * pump sends no frame after this), then sends the handoff error frame with
   * the count of items sent (`Troupe-Seq`), so a migrating caller continues
   * on another instance from exactly there. Never throws.
   */
  private handOff(stream: WorkerStream, reason: TroupeError): void {
    if (stream.handedOff) return;
    stream.handedOff = true;
    stream.abort(reason);
    try {
      stream.send({ [H.FRAME]: Frame.ERROR, [H.ERROR]: reason.code, [H.SEQ]: String(stream.sent) }, this.errorBody(reason));
    } catch (e) {
      // The caller hears nothing more: its probe finds the stream gone (INSTANCE_LOST), which migrates too.
      this.logger.warn('stream handoff not sent', { error: (e as Error).message });
    }
  }

  private async serveStream(served: Served, request: unknown, ctx: RequestContext, reply: string, msg: TransportMessage, t0: number): Promise<void> {
    const meter = served.meter;
    const stream = this.streams.get(reply) ?? acceptStream(this.plane, this.streams, this.info.instanceId, msg, reply);
    stream.attach(ctx); // a cancel (or a vanished caller) while it waited in the mailbox aborts it here
    stream.meter = meter;
    stream.immutable = served.immutable;
    stream.startedAt = t0;
    this.active.add(ctx);
    stream.armDeadline(ctx);
    // A stopped handler killed at the end of its grace may hang in an await: the caller asked for the end, so it gets it now.
    ctx.onAbort(() => {
      if (ctx.stopped && ctx.reason.code === 'CANCELLED') this.endStopped(stream, ctx);
    });
    // `failed` ends the span; `counted` is what the metrics see: a caller's cancel is no failure of the handler.
    let failed: TroupeError | undefined;
    let counted: TroupeError | undefined;
    try {
      if (ctx.aborted) throw ctx.reason;
      let result = served.handler.call(this.actor, request, ctx);
      if (isPromiseLike(result)) result = await result;
      const sent = await pump(this.plane, toAsyncIterable(result, stream), stream);
      if (ctx.aborted) {
        failed = ctx.reason;
        if (ctx.reason.code !== 'CANCELLED') {
          counted = ctx.reason;
          // A handed-off stream got its last frame already (the handoff).
          if (!stream.handedOff) this.sendError(reply, counted, true);
        }
      } else {
        stream.sendEnd(sent);
      }
    } catch (err) {
      const e = ctx.aborted ? ctx.reason : this.handlerFailed(ctx, err);
      failed = e;
      if (e.code !== 'CANCELLED') {
        counted = e;
        if (!stream.handedOff) this.sendError(reply, e, true);
      }
    } finally {
      stream.forget();
      this.active.delete(ctx);
      ctx.dispose();
      meter.inFlight--;
      meter.finish(t0, counted?.code, counted?.message);
      ctx.endSpan(failed);
    }
  }
}

const EMPTY = new Uint8Array(0);
const NO_SERVED: readonly Served[] = [];
/** A `Troupe-Timeout` value: plain decimal digits, read without a string-to-number conversion; anything else as `Number()` reads it. */
function budgetOf(s: string): number {
  const n = s.length;
  if (n === 0 || n > 15) return Number(s);
  let v = 0;
  for (let i = 0; i < n; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return Number(s);
    v = v * 10 + d;
  }
  return v;
}
const NO_PROPERTIES: Readonly<Record<string, unknown>> = Object.freeze({});
/** How often the progress watch looks while something runs: a quarter of the stuck bound, within 20 ms..1 s. */
function progressCheckMs(stuckAfterMs: number): number {
  return Math.max(20, Math.min(1_000, Math.floor(stuckAfterMs / 4)));
}
/** How long requests must wait without a break before the idle-queue warning. */
const QUEUE_WARN_MS = 1_000;
function isPromiseLike(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as PromiseLike<unknown>).then === 'function';
}

function closeQuietly(v: unknown): void {
  if (isAsyncIterable(v)) {
    const it = v[Symbol.asyncIterator]();
    void Promise.resolve(it.return?.()).catch(() => undefined);
  }
}

/** A cancel (`kill`) or a stop that reached a unary request while it waited in the mailbox. */
interface QueuedControl {
  readonly kill?: TroupeError;
  readonly stopAt?: number;
  readonly graceMs?: number;
}

/** The error a request killed while it waited answers: its cancel, or a stop whose grace ran out before it started. */
function queuedKill(control: QueuedControl, endpoint: string): TroupeError | undefined {
  if (control.kill) return control.kill;
  if (control.stopAt === undefined) return undefined;
  const graceMs = control.graceMs as number;
  if (Date.now() - control.stopAt < graceMs) return undefined;
  return new TroupeError(
    'CANCELLED',
    `the handler of ${endpoint} did not stop within ${graceMs} ms of the caller's stop (it was still waiting in the mailbox)`,
    {
      data: { stopGraceMs: graceMs },
    },
  );
}
