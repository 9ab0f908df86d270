import { Observable, type Subscription } from 'rxjs';
import type { Codec } from '../codec/codec';
import { TroupeError, toTroupeError } from '../errors';
import type { Logger } from '../logger';
import { withTimeout } from '../timeout';
import {
  BUSY_AFTER_MS,
  type DiscoverySettings,
  DYN_PREFIX,
  type DynChunk,
  dynKey,
  type InstanceRecord,
  type LeaseBeat,
  LEASES_BUCKET,
  type LeaseValue,
  markerKey,
  RECORDS_BUCKET,
} from './registry';
import { EndpointView } from './endpoint-view';
import { type EndpointAddress, queueSubject, registryScopeFilter } from '../wire/subjects';
import { type KvBucket, type KvEntry, type Persistence, TransportStatus } from '../transport/transport';

/** Something in flight to one instance that can be failed when the instance is lost. */
export interface InFlight {
  lose(err: TroupeError): void;
  /**
   * The endpoint view's: the instance entry this is linked into while tracked, and its neighbours there (an intrusive
   * list). A class tracked often should initialise them in its constructor so its shape never changes.
   */
  flightIn?: object | undefined;
  flightPrev?: InFlight | undefined;
  flightNext?: InFlight | undefined;
}

interface LeaseState {
  value: LeaseValue;
  /** Instances the lease names as gone (a graceful stop whose record deletes may still be on the way). */
  gone: ReadonlySet<string>;
  timer: NodeJS.Timeout;
  /** KV revision of `value`: tells a silent watch from a silent process (0: known from beats alone). */
  revision: number;
  /** When its last beat arrived here (epoch ms); undefined: none yet. */
  beatAt: number | undefined;
  /** How late the process's main loop was at that beat, ms. */
  lagMs: number;
}

const beatDecoder = new TextDecoder();

/** How long a write announced by a beat may take to reach a live watch before the watch is checked, ms. */
const WATCH_GRACE_MS = 250;

/** Leases removed gracefully stay ignored this long: a beat sent just before the delete may arrive after it. */
const DEPARTED_MEMORY_MS = 60_000;

/** What a mailbox probe found. */
export type ProbeResult = 'alive' | 'gone' | 'silent';

/**
 * The watching side of discovery, one per runtime: one watch of all leases,
 * and one watch per endpoint shared by every client of it in this process.
 * KV discovery is a cache rebuilt from heartbeats, never the truth for
 * in-flight work: an instance is listed while its record exists and its
 * process lease was refreshed within the TTL (expired KV entries vanish
 * without a delete marker on nats-server 2.9, so liveness is timed here).
 */
export class Discovery {
  private records: KvBucket | undefined;
  private leasesBucket: KvBucket | undefined;
  private readonly leases = new Map<string, LeaseState>();
  private readonly views = new Map<string, EndpointView>();
  private leasesReady: Promise<void> | undefined;
  private stopLeases: (() => void) | undefined;
  private rewatching: Promise<void> | undefined;
  /** Leases declared dead; one that comes back means the watch path was broken. */
  private readonly dropped = new Set<string>();
  private viewRestart: NodeJS.Timeout | undefined;
  /** When the lease watch last delivered anything (any lease). */
  private lastLeaseEvent = 0;
  private statusSub: Subscription | undefined;
  private closed = false;
  /** Janitor timers (sweeps of dead leases' records): cleared by close(), so a closed runtime is not kept for a TTL. */
  private readonly janitors = new Set<NodeJS.Timeout>();
  /** Listing watches of components a failed call asked about (see {@link endpointsOf}), per `ns.comp`. */
  private readonly componentWatches = new Map<string, ComponentWatch>();
  private componentSweep: NodeJS.Timeout | undefined;
  /** Called whenever a lease appears, changes or is dropped (listings recompute). */
  private readonly leaseListeners = new Set<() => void>();
  /** Leases deleted from the bucket (graceful close), until their next write: late beats do not revive them. */
  private readonly departed = new Map<string, number>();
  private stopBeats: (() => void) | undefined;
  private stopChunks: (() => void) | undefined;
  /** Dynamic properties by instance id, from the processes' property chunks; and which instances each chunk named. */
  private readonly dyn = new Map<string, Readonly<Record<string, unknown>>>();
  private readonly chunkIds = new Map<string, Map<number, readonly string[]>>();
  /** Highest record / lease revision a beat announced (the watches are checked against it). */
  private readonly announced = { records: 0, leases: 0 };
  private readonly checks: { records?: NodeJS.Timeout; leases?: NodeJS.Timeout } = {};

  constructor(
    private readonly persistence: Persistence,
    readonly codec: Codec,
    readonly settings: DiscoverySettings & { inhibitMs: number },
    private readonly logger: Logger,
    status$: Observable<TransportStatus>,
    /** Asks an instance mailbox whether anyone is there (answered outside the mailbox queue). */
    readonly probe: (mailbox: string, timeoutMs: number) => Promise<ProbeResult>,
    /**
     * Subscribes to every process's beats (`_TROUPE.lease.*`, plain core NATS): a lease is
     * alive while its beats *or* its KV record arrive, so a JetStream leader election (writes
     * and watches stalled for seconds) drops no live process. Undefined: KV alone.
     */
    private readonly subscribeBeats?: (handler: (data: Uint8Array) => void) => () => void,
  ) {
    let wasDown = false;
    this.statusSub = status$.subscribe((s) => {
      if (s === TransportStatus.RECONNECTING) wasDown = true;
      else if (s === TransportStatus.CONNECTED && wasDown) {
        wasDown = false;
        void this.rewatch();
      }
    });
  }

  /** Each watched endpoint with the number of instances it lists now, and the live leases (metrics). */
  sizes(): { endpoints: Array<{ address: EndpointAddress; instances: number }>; leases: number } {
    return { endpoints: [...this.views.values()].map((v) => ({ address: v.address, instances: v.instances.length })), leases: this.leases.size };
  }

  /** The shared view of one endpoint (created, and its watch started, on first use). */
  view(address: EndpointAddress): EndpointView {
    const key = queueSubject(address);
    let v = this.views.get(key);
    if (!v) {
      v = new EndpointView(this, address);
      this.views.set(key, v);
      void v.start();
    }
    return v;
  }

  /** Whether this process has seen an instance of the endpoint listed (then it exists). */
  everListed(address: EndpointAddress): boolean {
    return this.views.get(queueSubject(address))?.everListed === true;
  }

  /** @internal */
  async buckets(): Promise<{ records: KvBucket }> {
    // Beats are heard only by a process that watches (a worker that calls nobody gets none).
    if (!this.stopBeats && !this.closed) this.stopBeats = this.subscribeBeats?.((data) => this.onBeat(data));
    if (!this.leasesReady) {
      const run = this.watchLeases();
      this.leasesReady = run;
      // A registry that did not answer is asked again by the next use (a view's retry), not failed for good.
      run.catch(() => {
        if (this.leasesReady === run) this.leasesReady = undefined;
      });
    }
    await this.leasesReady;
    return { records: this.records as KvBucket };
  }

  private async watchLeases(): Promise<void> {
    this.records = await this.persistence.kv(RECORDS_BUCKET, { ttlMs: 0, replicas: this.settings.replicas });
    this.leasesBucket = await this.persistence.kv(LEASES_BUCKET, { ttlMs: this.settings.leaseTtlMs, replicas: this.settings.replicas });
    await new Promise<void>((resolve, reject) => {
      this.leasesBucket!.watch('>', (e) => this.onLease(e), resolve).then((stop) => (this.stopLeases = stop), reject);
    });
    this.stopChunks?.();
    await new Promise<void>((resolve, reject) => {
      this.records!.watch(`${DYN_PREFIX}>`, (e) => this.onChunk(e), resolve).then((stop) => (this.stopChunks = stop), reject);
    });
  }

  /**
   * A process's dynamic-property chunk changed: only the instances it names
   * (now or before) are looked at again, whatever the instance count.
   */
  private onChunk(e: KvEntry): void {
    const rest = e.key.slice(DYN_PREFIX.length);
    const dot = rest.lastIndexOf('.');
    const lease = rest.slice(0, dot);
    const chunk = Number(rest.slice(dot + 1));
    if (dot <= 0 || !Number.isInteger(chunk)) return;
    let dyn: DynChunk['dyn'] = {};
    if (e.operation !== 'DEL') {
      try {
        const v = this.codec.decode(e.value) as DynChunk;
        if (v && typeof v === 'object' && v.dyn && typeof v.dyn === 'object') dyn = v.dyn;
      } catch {
        return;
      }
    }
    let chunks = this.chunkIds.get(lease);
    // Chunks of a process never seen alive (killed before this watch began): the janitor looks one TTL later.
    if (!chunks && e.operation !== 'DEL' && !this.leases.has(lease)) this.later(() => void this.sweep(lease), this.settings.leaseTtlMs);
    const before = chunks?.get(chunk) ?? [];
    const now = Object.keys(dyn);
    for (const id of before) if (!(id in dyn)) this.dyn.delete(id);
    for (const id of now) {
      const props = dyn[id];
      if (props && typeof props === 'object') this.dyn.set(id, props);
    }
    if (now.length > 0) {
      if (!chunks) this.chunkIds.set(lease, (chunks = new Map()));
      chunks.set(chunk, now);
    } else if (chunks) {
      chunks.delete(chunk);
      if (chunks.size === 0) this.chunkIds.delete(lease);
    }
    const changed = before.length === 0 ? now : [...new Set([...before, ...now])];
    if (changed.length === 0) return;
    for (const v of this.views.values()) v.instancesChanged(changed);
    for (const l of this.leaseListeners) l();
  }

  /**
   * @internal The latest dynamic properties of an instance (from its
   * process's property chunk; from its lease when an older process wrote
   * them there), undefined when it set none.
   */
  dynamicOf(r: InstanceRecord, lease: LeaseValue): Readonly<Record<string, unknown>> | undefined {
    return this.dyn.get(r.instanceId) ?? lease.dyn?.[r.instanceId];
  }

  private onLease(e: KvEntry): void {
    this.lastLeaseEvent = Date.now();
    const old = this.leases.get(e.key);
    if (e.operation === 'DEL') {
      this.depart(e.key);
      if (old) this.dropLease(e.key);
      return;
    }
    let value: LeaseValue;
    try {
      value = this.codec.decode(e.value) as LeaseValue;
    } catch {
      return;
    }
    if (!value || typeof value !== 'object' || typeof value.lease !== 'string') return;
    this.departed.delete(e.key);
    if (old) clearTimeout(old.timer);
    if (!old && this.dropped.delete(e.key)) {
      // A lease declared dead is alive: the watch path was broken (a lost cluster node, an
      // election). Records watches may have been on the same path and miss spawns silently
      // until nats.js re-creates them (two missed 5 s heartbeats): re-open them now.
      this.scheduleViewRestart();
    }
    const ttl = typeof value.ttlMs === 'number' && value.ttlMs > 0 ? value.ttlMs : this.settings.leaseTtlMs;
    const gone = Array.isArray(value.gone) && value.gone.length > 0 ? new Set(value.gone.filter((x) => typeof x === 'string')) : NONE_GONE;
    this.leases.set(e.key, { value, timer: this.expiry(e.key, ttl), revision: e.revision, gone, beatAt: old?.beatAt, lagMs: old?.lagMs ?? 0 });
    // What the lists must look at again: every instance of a lease that appeared (or of one that
    // carries its properties itself, from an older process); else only those whose `gone` mark
    // changed — a plain rewrite (every half TTL) changes nothing and costs nothing here.
    let changed: readonly string[] | 'all';
    if (!old || hasDyn(value) || hasDyn(old.value)) changed = 'all';
    else if (gone === old.gone || (gone.size === 0 && old.gone.size === 0)) changed = [];
    else {
      const diff: string[] = [];
      for (const id of gone) if (!old.gone.has(id)) diff.push(id);
      for (const id of old.gone) if (!gone.has(id)) diff.push(id);
      changed = diff;
    }
    if (changed !== 'all' && changed.length === 0) return;
    for (const v of this.views.values()) v.leaseChanged(e.key, changed);
    for (const l of this.leaseListeners) l();
  }

  private expiry(lease: string, ttl: number): NodeJS.Timeout {
    const timer = setTimeout(() => this.expire(lease), ttl);
    timer.unref();
    return timer;
  }

  /**
   * Remembers a gracefully deleted lease for a while (late beats must not revive it).
   * Pruned on insert, not by timers: a timer would hold this object (and through its
   * closures the runtime) for a minute after close.
   */
  private depart(lease: string): void {
    const now = Date.now();
    for (const [l, at] of this.departed) {
      if (now - at < DEPARTED_MEMORY_MS) break; // insertion order: the rest are younger
      this.departed.delete(l);
    }
    this.departed.set(lease, now);
  }

  /**
   * A process beat (plain subject): refreshes its lease like a KV write does. A lease known
   * from beats alone (its KV record not seen yet: the watch is dead or lagging) is listed
   * with no dynamic properties until the record arrives.
   */
  private onBeat(data: Uint8Array): void {
    if (this.closed) return;
    let b: LeaseBeat;
    try {
      b = JSON.parse(beatDecoder.decode(data)) as LeaseBeat;
    } catch {
      return;
    }
    if (!b || typeof b !== 'object' || typeof b.lease !== 'string' || this.departed.has(b.lease)) return;
    if (typeof b.rrev === 'number') this.announce('records', b.rrev);
    if (typeof b.lrev === 'number') this.announce('leases', b.lrev);
    const ttl = typeof b.ttl === 'number' && b.ttl > 0 ? b.ttl : this.settings.leaseTtlMs;
    const lagMs = typeof b.lagMs === 'number' && b.lagMs > 0 ? b.lagMs : 0;
    const now = Date.now();
    const old = this.leases.get(b.lease);
    if (old) {
      clearTimeout(old.timer);
      old.timer = this.expiry(b.lease, ttl);
      old.beatAt = now;
      old.lagMs = lagMs;
      return;
    }
    // A lease declared dead that beats again: the KV path was broken; re-open the records watches.
    if (this.dropped.delete(b.lease)) this.scheduleViewRestart();
    const hb = typeof b.hb === 'number' && b.hb > 0 ? b.hb : this.settings.heartbeatMs;
    const value: LeaseValue = {
      lease: b.lease,
      host: String(b.host ?? ''),
      pid: Number(b.pid) || 0,
      startedAt: 0,
      heartbeatMs: hb,
      ttlMs: ttl,
      seq: 0,
    };
    this.leases.set(b.lease, { value, timer: this.expiry(b.lease, ttl), revision: 0, gone: NONE_GONE, beatAt: now, lagMs });
    for (const v of this.views.values()) v.leaseChanged(b.lease, 'all');
    for (const l of this.leaseListeners) l();
  }

  /**
   * A beat announced a registry write at `revision` (beats repeat it). Once it had time to
   * reach our watches ({@link WATCH_GRACE_MS}), every watch that has not delivered it and
   * was not checked for it yet is checked on the bus and resumed if its JetStream consumer
   * is gone or silent — within a second or so, where nats.js notices a dead consumer only
   * after two missed 5 s idle heartbeats. A dead lease watch usually means dead records
   * watches too (the same node held them): those are checked then.
   */
  private announce(kind: 'records' | 'leases', revision: number): void {
    if (this.closed) return;
    if (revision > this.announced[kind]) this.announced[kind] = revision;
    if (this.checks[kind]) return;
    const timer = setTimeout(() => {
      this.checks[kind] = undefined;
      void this.verify(kind).catch(() => undefined);
    }, WATCH_GRACE_MS);
    timer.unref();
    this.checks[kind] = timer;
  }

  private async verify(kind: 'records' | 'leases'): Promise<void> {
    const bucket = kind === 'records' ? this.records : this.leasesBucket;
    const resumed = (await bucket?.verifyWatches?.(this.announced[kind])) ?? 0;
    if (resumed === 0 || this.closed) return;
    this.logger.warn('discovery watch consumer lost or silent; resumed it', { bucket: kind, watches: resumed });
    if (kind === 'leases') await this.records?.verifyWatches?.(0, true);
  }

  /**
   * A lease not refreshed within its TTL. Before declaring the process dead, ask the
   * bucket: a watch whose JetStream consumer died (its cluster node was lost) goes
   * silent, and nats.js re-creates it only after two missed 5 s idle heartbeats —
   * meanwhile every lease would lapse and the janitor would delete live records.
   */
  private expire(lease: string): void {
    const state = this.leases.get(lease);
    if (!state || this.closed) return this.dropLease(lease);
    void this.readLease(lease)
      .catch(() => undefined)
      .then((e) => {
        if (this.leases.get(lease) !== state) return; // refreshed or dropped meanwhile
        if (e && e.revision > state.revision) this.missed(e);
        else this.dropLease(lease);
      });
  }

  /** The lease as the bucket has it (undefined: gone); rejects when the bucket does not answer within a heartbeat period. */
  private readLease(lease: string): Promise<KvEntry | undefined> {
    const bucket = this.leasesBucket;
    if (!bucket) return Promise.resolve(undefined);
    const ms = this.settings.heartbeatMs;
    return withTimeout(bucket.get(lease), ms, () => {
      throw new TroupeError('TIMEOUT', `lease ${lease} not read within ${ms} ms`);
    });
  }

  /** A live lease the watch did not deliver: take it, and re-open the watches unless others still flow. */
  private missed(e: KvEntry): void {
    // Other leases still flowing: this write merely raced the timer. Else the watch is dead.
    // (Records are rewritten every half TTL when beats carry liveness: a TTL of quiet is silence.)
    const silent = Date.now() - this.lastLeaseEvent > this.settings.leaseTtlMs;
    this.onLease(e);
    if (!silent) return;
    if (!this.rewatching) this.logger.warn('discovery watch is silent while leases are refreshed; re-opening it', { lease: e.key });
    void this.rewatch();
  }

  private dropLease(lease: string): void {
    const state = this.leases.get(lease);
    if (!state) return;
    clearTimeout(state.timer);
    this.leases.delete(lease);
    this.dropped.add(lease);
    for (const v of this.views.values()) v.leaseChanged(lease, 'all');
    for (const l of this.leaseListeners) l();
    // Janitor: records of a lease dead for another TTL are deleted by whoever notices.
    this.later(() => void this.sweep(lease), this.settings.leaseTtlMs);
  }

  /** Runs `fn` after `ms` unless closed first; never keeps the process alive. */
  private later(fn: () => void, ms: number): void {
    const t = setTimeout(() => {
      this.janitors.delete(t);
      fn();
    }, ms);
    t.unref();
    this.janitors.add(t);
  }

  private async sweep(lease: string, again = false): Promise<void> {
    if (this.closed || this.leases.has(lease) || !this.records) return;
    if (again && !this.knows(lease)) return;
    let alive: KvEntry | undefined;
    try {
      alive = await this.readLease(lease);
    } catch {
      return this.sweepAgain(lease); // the bucket does not answer (a JetStream election, an outage)
    }
    // Alive after all: our watch missed its heartbeats. Never delete a live process's records.
    if (alive) return this.missed(alive);
    try {
      for (const v of this.views.values()) {
        for (const key of v.keysOfLease(lease)) await this.records.delete(key);
      }
      await this.records.delete(markerKey(lease));
      for (const chunk of [...(this.chunkIds.get(lease)?.keys() ?? [])]) await this.records.delete(dynKey(lease, chunk));
    } catch (err) {
      this.logger.debug('registry sweep failed', { lease, error: toTroupeError(err).message });
    }
    this.sweepAgain(lease);
  }

  /**
   * Looks again one TTL later while records of `lease` are still known here: the deletes
   * did not reach our watch (it died), or the process comes back while our lease watch
   * is dead — the only way to notice that watch when every lease went quiet.
   */
  private sweepAgain(lease: string): void {
    if (!this.closed && this.knows(lease)) this.later(() => void this.sweep(lease, true), this.settings.leaseTtlMs);
  }

  private knows(lease: string): boolean {
    for (const v of this.views.values()) if (v.keysOfLease(lease).length > 0) return true;
    return false;
  }

  /**
   * @internal How long the process hosting `instanceId` has had its main loop
   * blocked, ms, when a beat heard within 1.5 beat periods says it is busy
   * (late by more than {@link BUSY_AFTER_MS}); undefined when it is not known
   * to be busy — idle, frozen (no fresh beat: SIGSTOP stops its beat thread
   * too), gone, or not watched here.
   */
  busyFor(instanceId: string): number | undefined {
    let lease: string | undefined;
    for (const v of this.views.values()) if ((lease = v.leaseOfInstance(instanceId)) !== undefined) break;
    const state = lease === undefined ? undefined : this.leases.get(lease);
    if (!state || state.beatAt === undefined || state.lagMs <= BUSY_AFTER_MS) return undefined;
    const since = Date.now() - state.beatAt;
    if (since > 1.5 * (state.value.heartbeatMs || this.settings.heartbeatMs)) return undefined;
    return state.lagMs + since;
  }

  /** @internal */
  leaseOf(lease: string): LeaseValue | undefined {
    return this.leases.get(lease)?.value;
  }

  /**
   * @internal The lease of a record when it lists the record's instance:
   * alive and not named gone by a graceful stop; undefined otherwise.
   */
  liveLeaseOf(r: InstanceRecord): LeaseValue | undefined {
    const state = this.leases.get(r.lease);
    if (!state || state.gone.has(r.instanceId)) return undefined;
    return state.value;
  }

  /** @internal Whether `lease` names `instanceId` as gone (it left gracefully; its record may linger). */
  isGone(lease: string, instanceId: string): boolean {
    return this.leases.get(lease)?.gone.has(instanceId) === true;
  }

  private scheduleViewRestart(): void {
    if (this.viewRestart || this.closed) return;
    this.viewRestart = setTimeout(() => {
      void (async () => {
        for (const v of this.views.values()) {
          try {
            await v.restart();
          } catch (err) {
            this.logger.warn('discovery records watch could not be re-opened', { error: toTroupeError(err).message });
          }
        }
      })().finally(() => (this.viewRestart = undefined));
    }, 0);
    this.viewRestart.unref();
  }

  private rewatch(): Promise<void> {
    // One at a time: a reconnect and silent leases can ask for it together.
    this.rewatching ??= (async () => {
      if (this.closed) return;
      try {
        this.stopLeases?.();
        this.leasesReady = this.watchLeases();
        await this.leasesReady;
        for (const v of this.views.values()) await v.restart();
      } catch (err) {
        this.logger.warn('discovery watch could not be re-opened', { error: toTroupeError(err).message });
      }
    })().finally(() => (this.rewatching = undefined));
    return this.rewatching;
  }

  /**
   * Every live instance record under a scope (`''`, `ns`, `ns.comp`,
   * `ns.comp.ep`), as it changes: a cold Observable that watches the records
   * bucket while subscribed. Records whose lease is not alive are left out;
   * dynamic properties are merged in. Sorted by namespace, component,
   * endpoint, instance id.
   */
  listing(scope: string): Observable<readonly InstanceRecord[]> {
    const filter = registryScopeFilter(scope);
    return new Observable<readonly InstanceRecord[]>((sub) => {
      const records = new Map<string, InstanceRecord>();
      let synced = false;
      let stop: (() => void) | undefined;
      let done = false;
      let scheduled: NodeJS.Immediate | undefined;
      // Changes come in bursts (a spawn or a stop of thousands of instances is one burst of
      // record events): build and emit the list once per burst, not once per record (O(n²)).
      const emit = (): void => {
        if (!synced || done || scheduled) return;
        scheduled = setImmediate(flush);
      };
      const flush = (): void => {
        scheduled = undefined;
        if (done) return;
        const out: InstanceRecord[] = [];
        for (const r of records.values()) {
          const lease = this.liveLeaseOf(r);
          if (!lease) continue;
          const dyn = this.dynamicOf(r, lease);
          out.push(dyn ? { ...r, properties: { ...r.properties, ...dyn }, dynamic: dyn } : r);
        }
        out.sort((a, b) => listingKey(a).localeCompare(listingKey(b)));
        sub.next(out);
      };
      this.leaseListeners.add(emit);
      void (async () => {
        const { records: bucket } = await this.buckets();
        const onEntry = (e: KvEntry): void => {
          if (e.key.startsWith('_')) return; // process markers
          if (e.operation === 'DEL') {
            if (records.delete(e.key)) emit();
            return;
          }
          try {
            const r = this.codec.decode(e.value) as InstanceRecord;
            if (r && typeof r === 'object' && typeof r.instanceId === 'string' && typeof r.lease === 'string') records.set(e.key, r);
          } catch {
            return;
          }
          emit();
        };
        const s = await bucket.watch(filter, onEntry, () => {
          synced = true;
          emit();
        });
        if (done) s();
        else stop = s;
      })().catch((err: unknown) => sub.error(toTroupeError(err, 'UNAVAILABLE')));
      return () => {
        done = true;
        if (scheduled) clearImmediate(scheduled);
        this.leaseListeners.delete(emit);
        stop?.();
      };
    });
  }

  /** @internal What the endpoint views hold, summed (leak tests). */
  retained(): { views: number; records: number; tracked: number; trackedInstances: number; mailboxes: number; inhibited: number; strikes: number } {
    const out = { views: this.views.size, records: 0, tracked: 0, trackedInstances: 0, mailboxes: 0, inhibited: 0, strikes: 0 };
    for (const v of this.views.values()) {
      const r = v.retained();
      out.records += r.records;
      out.tracked += r.tracked;
      out.trackedInstances += r.trackedInstances;
      out.mailboxes += r.mailboxes;
      out.inhibited += r.inhibited;
      out.strikes += r.strikes;
    }
    return out;
  }

  /**
   * The endpoint names the live instances of `ns.comp` serve; undefined when
   * the registry does not answer within `timeoutMs`. Used only on a failure
   * path (a call that found no instance), never per call. The first lookup
   * of a component opens a listing watch of it, kept for
   * {@link COMPONENT_WATCH_IDLE_MS} after the last lookup: during an outage
   * every failed call is answered from that live list, not by a registry
   * read each.
   */
  endpointsOf(namespace: string, component: string, timeoutMs: number): Promise<string[] | undefined> {
    if (this.closed) return Promise.resolve(undefined);
    const scope = `${namespace}.${component}`;
    let w = this.componentWatches.get(scope);
    if (!w) {
      w = this.watchComponent(scope);
      this.componentWatches.set(scope, w);
    }
    w.used = Date.now();
    if (w.names) return Promise.resolve(w.names);
    const ready = w.ready;
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(undefined), timeoutMs);
      void ready.then((names) => {
        clearTimeout(timer);
        resolve(names);
      });
    });
  }

  private watchComponent(scope: string): ComponentWatch {
    let settle: (names: string[] | undefined) => void = () => undefined;
    const w: ComponentWatch = { names: undefined, used: Date.now(), ready: new Promise((r) => (settle = r)), sub: undefined };
    w.sub = this.listing(scope).subscribe({
      next: (list) => {
        w.names = [...new Set(list.map((r) => r.endpoint))].sort();
        settle(w.names);
      },
      error: () => {
        settle(undefined);
        if (this.componentWatches.get(scope) === w) this.componentWatches.delete(scope);
      },
    });
    this.componentSweep ??= setInterval(() => {
      const now = Date.now();
      for (const [k, cw] of this.componentWatches) {
        if (now - cw.used < COMPONENT_WATCH_IDLE_MS) continue;
        cw.sub?.unsubscribe();
        this.componentWatches.delete(k);
      }
      if (this.componentWatches.size === 0) {
        clearInterval(this.componentSweep);
        this.componentSweep = undefined;
      }
    }, COMPONENT_WATCH_IDLE_MS / 2);
    this.componentSweep.unref();
    return w;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.componentSweep);
    for (const w of this.componentWatches.values()) w.sub?.unsubscribe();
    this.componentWatches.clear();
    this.leaseListeners.clear();
    this.statusSub?.unsubscribe();
    this.stopBeats?.();
    this.departed.clear();
    clearTimeout(this.checks.records);
    clearTimeout(this.checks.leases);
    this.stopLeases?.();
    this.stopChunks?.();
    for (const l of this.leases.values()) clearTimeout(l.timer);
    this.leases.clear();
    for (const t of this.janitors) clearTimeout(t);
    this.janitors.clear();
    if (this.viewRestart) clearTimeout(this.viewRestart);
    this.viewRestart = undefined;
    for (const v of this.views.values()) v.close();
    this.views.clear();
  }
}

const NONE_GONE: ReadonlySet<string> = new Set();

/** Whether a lease carries dynamic properties itself (written by a process of protocol 1). */
function hasDyn(v: LeaseValue): boolean {
  if (!v.dyn || typeof v.dyn !== 'object') return false;
  for (const _ in v.dyn) return true;
  return false;
}

/** A component listing watch opened by a failed call closes this long after the last lookup. */
const COMPONENT_WATCH_IDLE_MS = 30_000;

/** A live listing of one component: the endpoint names its instances serve. */
interface ComponentWatch {
  names: string[] | undefined;
  used: number;
  ready: Promise<string[] | undefined>;
  sub: Subscription | undefined;
}

function listingKey(r: InstanceRecord): string {
  return `${r.namespace}.${r.component}.${r.endpoint}.${r.instanceId}`;
}
