import { BehaviorSubject, Observable, type Subscription } from 'rxjs';
import type { Codec } from './codec/codec';
import { TroupeError, toTroupeError } from './errors';
import type { Logger } from './logger';
import {
  type DiscoverySettings,
  type InstanceRecord,
  LEASES_BUCKET,
  type LeaseValue,
  markerKey,
  RECORDS_BUCKET,
} from './registry';
import type { RouterContext } from './routers';
import { type EndpointAddress, queueSubject, registryFilter, registryScopeFilter } from './subjects';
import { type KvBucket, type KvEntry, type Persistence, TransportStatus } from './transport/transport';

/** Something in flight to one instance that can be failed when the instance is lost. */
export interface InFlight {
  lose(err: TroupeError): void;
}

interface LeaseState {
  value: LeaseValue;
  timer: NodeJS.Timeout;
  /** KV revision of `value`: tells a silent watch from a silent process. */
  revision: number;
}

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
  /** Called whenever a lease appears, changes or is dropped (listings recompute). */
  private readonly leaseListeners = new Set<() => void>();

  constructor(
    private readonly persistence: Persistence,
    readonly codec: Codec,
    readonly settings: DiscoverySettings & { inhibitMs: number },
    private readonly logger: Logger,
    status$: Observable<TransportStatus>,
    /** Asks an instance mailbox whether anyone is there (answered outside the mailbox queue). */
    readonly probe: (mailbox: string, timeoutMs: number) => Promise<ProbeResult>,
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

  /** @internal */
  async buckets(): Promise<{ records: KvBucket }> {
    this.leasesReady ??= this.watchLeases();
    await this.leasesReady;
    return { records: this.records as KvBucket };
  }

  private async watchLeases(): Promise<void> {
    this.records = await this.persistence.kv(RECORDS_BUCKET, { ttlMs: 0, replicas: this.settings.replicas });
    this.leasesBucket = await this.persistence.kv(LEASES_BUCKET, { ttlMs: this.settings.leaseTtlMs, replicas: this.settings.replicas });
    await new Promise<void>((resolve, reject) => {
      this.leasesBucket!.watch('>', (e) => this.onLease(e), resolve).then((stop) => (this.stopLeases = stop), reject);
    });
  }

  private onLease(e: KvEntry): void {
    this.lastLeaseEvent = Date.now();
    const old = this.leases.get(e.key);
    if (e.operation === 'DEL') {
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
    if (old) clearTimeout(old.timer);
    if (!old && this.dropped.delete(e.key)) {
      // A lease declared dead is alive: the watch path was broken (a lost cluster node, an
      // election). Records watches may have been on the same path and miss spawns silently
      // until nats.js re-creates them (two missed 5 s heartbeats): re-open them now.
      this.scheduleViewRestart();
    }
    const ttl = typeof value.ttlMs === 'number' && value.ttlMs > 0 ? value.ttlMs : this.settings.leaseTtlMs;
    const timer = setTimeout(() => this.expire(e.key), ttl);
    timer.unref();
    this.leases.set(e.key, { value, timer, revision: e.revision });
    for (const v of this.views.values()) v.leaseChanged(e.key, !old);
    for (const l of this.leaseListeners) l();
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
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      bucket.get(lease),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new TroupeError('TIMEOUT', `lease ${lease} not read within ${this.settings.heartbeatMs} ms`)), this.settings.heartbeatMs);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  /** A live lease the watch did not deliver: take it, and re-open the watches unless others still flow. */
  private missed(e: KvEntry): void {
    // Other leases still flowing: this write merely raced the timer. Else the watch is dead.
    const silent = Date.now() - this.lastLeaseEvent > this.settings.heartbeatMs;
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
    for (const v of this.views.values()) v.leaseChanged(lease, true);
    for (const l of this.leaseListeners) l();
    // Janitor: records of a lease dead for another TTL are deleted by whoever notices.
    const t = setTimeout(() => void this.sweep(lease), this.settings.leaseTtlMs);
    t.unref();
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
    if (!this.closed && this.knows(lease)) setTimeout(() => void this.sweep(lease, true), this.settings.leaseTtlMs).unref();
  }

  private knows(lease: string): boolean {
    for (const v of this.views.values()) if (v.keysOfLease(lease).length > 0) return true;
    return false;
  }

  /** @internal */
  leaseOf(lease: string): LeaseValue | undefined {
    return this.leases.get(lease)?.value;
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
      const emit = (): void => {
        if (!synced || done) return;
        const out: InstanceRecord[] = [];
        for (const r of records.values()) {
          const lease = this.leaseOf(r.lease);
          if (!lease) continue;
          const dyn = lease.dyn?.[r.instanceId];
          out.push(dyn ? { ...r, properties: { ...r.properties, ...dyn } } : r);
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
        this.leaseListeners.delete(emit);
        stop?.();
      };
    });
  }

  close(): void {
    this.closed = true;
    this.leaseListeners.clear();
    this.statusSub?.unsubscribe();
    this.stopLeases?.();
    for (const l of this.leases.values()) clearTimeout(l.timer);
    this.leases.clear();
    for (const v of this.views.values()) v.close();
    this.views.clear();
  }
}

/**
 * One endpoint as this process sees it: the routable instances, their
 * in-flight counts, and which are inhibited (answered "no responders", timed
 * out or were lost) for a while, independent of the registry.
 */
export class EndpointView implements RouterContext {
  private readonly records = new Map<string, InstanceRecord>();
  private readonly keys = new Map<string, string>();
  private listed: InstanceRecord[] = [];
  private readonly subject: BehaviorSubject<InstanceRecord[]>;
  private readonly inhibited = new Map<string, number>();
  private readonly strikes = new Map<string, number>();
  private readonly inflightCount = new Map<string, number>();
  private readonly inflightSets = new Map<string, Set<InFlight>>();
  private readonly mailboxes = new Map<string, string>();
  private counter = 0;
  private stopWatch: (() => void) | undefined;
  private readyPromise: Promise<void> | undefined;
  private resolveReady: (() => void) | undefined;
  private rejectReady: ((e: unknown) => void) | undefined;
  synced = false;
  private syncing: Set<string> | undefined;

  constructor(
    private readonly discovery: Discovery,
    readonly address: EndpointAddress,
  ) {
    this.subject = new BehaviorSubject<InstanceRecord[]>([]);
    this.readyPromise = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.readyPromise.catch(() => undefined);
  }

  /** Resolves once the first full list is known. */
  get ready(): Promise<void> {
    return this.readyPromise as Promise<void>;
  }

  /** The list as it changes. */
  get list$(): Observable<InstanceRecord[]> {
    return this.subject.asObservable();
  }

  /** The routable instances now (registered, lease alive). */
  get instances(): readonly InstanceRecord[] {
    return this.listed;
  }

  /** @internal */
  async start(): Promise<void> {
    try {
      const { records } = await this.discovery.buckets();
      await new Promise<void>((resolve, reject) => {
        records.watch(registryFilter(this.address), (e) => this.onRecord(e), resolve).then((stop) => (this.stopWatch = stop), reject);
      });
      this.synced = true;
      this.recompute();
      this.resolveReady?.();
    } catch (err) {
      this.rejectReady?.(toTroupeError(err, 'UNAVAILABLE'));
    }
  }

  /** @internal Re-opens the watch after a reconnect; entries not replayed are dropped after the sync. */
  async restart(): Promise<void> {
    this.stopWatch?.();
    const { records } = await this.discovery.buckets();
    this.syncing = new Set();
    await new Promise<void>((resolve, reject) => {
      records.watch(registryFilter(this.address), (e) => this.onRecord(e), resolve).then((stop) => (this.stopWatch = stop), reject);
    });
    const seen = this.syncing;
    this.syncing = undefined;
    for (const id of [...this.records.keys()]) if (!seen.has(id)) this.records.delete(id);
    this.recompute();
  }

  private onRecord(e: KvEntry): void {
    const id = e.key.slice(e.key.lastIndexOf('.') + 1);
    if (e.operation === 'DEL') {
      // Graceful deregistration: in-flight work still finishes, so nothing is failed here.
      if (this.records.delete(id)) {
        this.keys.delete(id);
        this.recompute();
      }
      return;
    }
    let r: InstanceRecord;
    try {
      r = this.discovery.codec.decode(e.value) as InstanceRecord;
    } catch {
      return;
    }
    if (!r || typeof r !== 'object' || r.instanceId !== id || typeof r.lease !== 'string') return;
    this.syncing?.add(id);
    this.records.set(id, r);
    this.keys.set(id, e.key);
    this.recompute();
  }

  /** @internal */
  leaseChanged(_lease: string, membership: boolean): void {
    // A lease's dynamic properties or liveness changed: recompute (cheap; lists are small).
    if (membership || this.listed.length > 0) this.recompute();
  }

  /** @internal Registry keys of this endpoint's records under `lease` (for the janitor). */
  keysOfLease(lease: string): string[] {
    const out: string[] = [];
    for (const [id, r] of this.records) if (r.lease === lease) out.push(this.keys.get(id) as string);
    return out;
  }

  private recompute(): void {
    if (!this.synced) return;
    const before = new Set(this.listed.map((r) => r.instanceId));
    const next: InstanceRecord[] = [];
    for (const r of this.records.values()) {
      const lease = this.discovery.leaseOf(r.lease);
      if (!lease) continue;
      const dyn = lease.dyn?.[r.instanceId];
      next.push(dyn ? { ...r, properties: { ...r.properties, ...dyn } } : r);
    }
    next.sort((a, b) => (a.instanceId < b.instanceId ? -1 : 1));
    this.listed = next;
    const now = new Set(next.map((r) => r.instanceId));
    // Instances whose lease died: ask their mailbox before failing what is in flight to them
    // (a lease can lapse while the instance lives: a blip, a busy watcher).
    for (const id of before) {
      if (now.has(id) || !this.records.has(id)) continue; // still listed, or gracefully deregistered
      if (this.inflightSets.get(id)?.size) void this.checkLost(id);
    }
    this.subject.next(next);
  }

  private async checkLost(id: string): Promise<void> {
    const timeout = Math.max(200, this.discovery.settings.heartbeatMs);
    const found = await this.discovery.probe(this.mailbox(id), timeout);
    if (found === 'alive') return;
    this.inhibit(id);
    const why = found === 'gone' ? 'its mailbox has no responders' : `its mailbox did not answer a probe in ${timeout} ms`;
    this.loseAll(id, new TroupeError('INSTANCE_LOST', `instance ${id} of ${queueSubject(this.address)} lost its lease and ${why}`));
  }

  private loseAll(id: string, err: TroupeError): void {
    const set = this.inflightSets.get(id);
    if (!set) return;
    this.inflightSets.delete(id);
    for (const f of set) f.lose(err);
  }

  /** The mailbox subject of one listed instance (cached: no string building per request). */
  mailbox(id: string): string {
    let s = this.mailboxes.get(id);
    if (s === undefined) {
      s = `${queueSubject(this.address)}.${id}`;
      this.mailboxes.set(id, s);
    }
    return s;
  }

  /** Routable instances minus inhibited ones (all of them when every one is inhibited). */
  candidates(filter?: (r: InstanceRecord) => boolean, exclude?: ReadonlySet<string>): readonly InstanceRecord[] {
    // Hot path: nothing to filter out, hand the routers the list itself.
    if (!filter && (!exclude || exclude.size === 0) && this.inhibited.size === 0) return this.listed;
    const now = Date.now();
    this.pruneInhibited(now);
    const all = this.listed.filter((r) => (!filter || filter(r)) && !exclude?.has(r.instanceId));
    const ok = all.filter((r) => {
      const until = this.inhibited.get(r.instanceId);
      return until === undefined || until <= now;
    });
    return ok.length > 0 ? ok : all;
  }

  /** Skips `id` for a while: doubling for repeat offenders, reset by a success. */
  inhibit(id: string): void {
    const now = Date.now();
    // Requests sent before the inhibition began fail one after another (a frozen
    // instance times out every one in flight): one offence, not a strike each.
    if ((this.inhibited.get(id) ?? 0) > now) return;
    const strikes = Math.min((this.strikes.get(id) ?? 0) + 1, 5);
    this.strikes.set(id, strikes);
    this.inhibited.set(id, now + this.discovery.settings.inhibitMs * 2 ** (strikes - 1));
  }

  /** A success clears inhibition and past strikes. */
  succeeded(id: string): void {
    if (this.strikes.size > 0) {
      this.strikes.delete(id);
      this.inhibited.delete(id);
    }
  }

  /** Drops expired inhibitions so the hot path sees an empty map again. */
  private pruneInhibited(now: number): void {
    for (const [id, until] of this.inhibited) if (until <= now) this.inhibited.delete(id);
  }

  /** Whether `id` is inhibited now. */
  isInhibited(id: string): boolean {
    const until = this.inhibited.get(id);
    return until !== undefined && until > Date.now();
  }

  inflight(instanceId: string): number {
    return this.inflightCount.get(instanceId) ?? 0;
  }

  next(): number {
    return this.counter++;
  }

  /** Tracks work in flight to `id` (for least-loaded and for failing it fast if the instance is lost). */
  track(id: string, f: InFlight): () => void {
    this.inflightCount.set(id, (this.inflightCount.get(id) ?? 0) + 1);
    let set = this.inflightSets.get(id);
    if (!set) {
      set = new Set();
      this.inflightSets.set(id, set);
    }
    set.add(f);
    return () => {
      const n = (this.inflightCount.get(id) ?? 1) - 1;
      if (n <= 0) this.inflightCount.delete(id);
      else this.inflightCount.set(id, n);
      this.inflightSets.get(id)?.delete(f);
    };
  }

  close(): void {
    this.stopWatch?.();
    this.subject.complete();
  }
}

function listingKey(r: InstanceRecord): string {
  return `${r.namespace}.${r.component}.${r.endpoint}.${r.instanceId}`;
}
