import { BehaviorSubject, type Observable } from 'rxjs';
import { TroupeError, toTroupeError } from '../errors';
import { type EndpointAddress, queueSubject, registryFilter } from '../wire/subjects';
import type { KvEntry } from '../transport/transport';
import type { Discovery, InFlight } from './discovery';
import type { InstanceRecord } from './registry';
import type { Router, RouterContext } from './routers';

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
  private listedOnce = false;
  private syncing: Set<string> | undefined;
  /** The list is stale: rebuilt at the next read or, at the latest, at the end of this turn. */
  private dirty = false;
  private flushing: NodeJS.Immediate | undefined;

  constructor(
    private readonly discovery: Discovery,
    readonly address: EndpointAddress,
  ) {
    this.subject = new BehaviorSubject<InstanceRecord[]>([]);
    this.armReady();
  }

  private armReady(): void {
    this.readyPromise = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.readyPromise.catch(() => undefined);
  }

  private closed = false;
  private retry: NodeJS.Timeout | undefined;

  /** Resolves once the first full list is known. */
  get ready(): Promise<void> {
    return this.readyPromise as Promise<void>;
  }

  /** The list as it changes. */
  get list$(): Observable<InstanceRecord[]> {
    return this.subject.asObservable();
  }

  /** Whether this endpoint ever listed an instance here: then it exists, and a "nobody serves it" is an outage. */
  get everListed(): boolean {
    if (this.dirty) this.flush();
    return this.listedOnce;
  }

  /** The routable instances now (registered, lease alive). */
  get instances(): readonly InstanceRecord[] {
    if (this.dirty) this.flush();
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
      this.flush();
      this.resolveReady?.();
    } catch (err) {
      // Those waiting now fail (UNAVAILABLE, retryable); later ones wait for the next try: a registry
      // that did not answer (an election, a cluster without quorum) usually answers again.
      const reject = this.rejectReady;
      this.armReady();
      reject?.(toTroupeError(err, 'UNAVAILABLE'));
      if (this.closed) return;
      this.retry = setTimeout(() => {
        this.retry = undefined;
        if (!this.closed) void this.start();
      }, this.discovery.settings.heartbeatMs);
      this.retry.unref();
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
    for (const id of [...this.records.keys()]) {
      if (seen.has(id)) continue;
      this.records.delete(id);
      this.forget(id);
    }
    this.recompute();
    this.flush();
  }

  private onRecord(e: KvEntry): void {
    const id = e.key.slice(e.key.lastIndexOf('.') + 1);
    if (e.operation === 'DEL') {
      // Graceful deregistration: in-flight work still finishes, so nothing is failed here.
      if (this.records.delete(id)) {
        this.forget(id);
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

  /**
   * What this view keeps about an instance besides its record — its key, its
   * cached mailbox subject, inhibition and strikes — goes with the record, so
   * a process that spawns and stops instances for days does not accumulate
   * them. In-flight tracking stays: it empties as those calls settle.
   */
  private forget(id: string): void {
    this.keys.delete(id);
    this.mailboxes.delete(id);
    this.inhibited.delete(id);
    this.strikes.delete(id);
  }

  /** @internal What this view holds per instance and per call now (leak tests). */
  retained(): { records: number; tracked: number; trackedInstances: number; mailboxes: number; inhibited: number; strikes: number } {
    let tracked = 0;
    for (const set of this.inflightSets.values()) tracked += set.size;
    return {
      records: this.records.size,
      tracked,
      trackedInstances: Math.max(this.inflightSets.size, this.inflightCount.size),
      mailboxes: this.mailboxes.size,
      inhibited: this.inhibited.size,
      strikes: this.strikes.size,
    };
  }

  /** @internal */
  leaseChanged(_lease: string, membership: boolean): void {
    // A lease's dynamic properties or liveness changed: recompute (cheap; lists are small).
    if (membership || this.listed.length > 0) this.recompute();
  }

  /** @internal The lease of a known instance of this endpoint (listed or not). */
  leaseOfInstance(id: string): string | undefined {
    return this.records.get(id)?.lease;
  }

  /** @internal Registry keys of this endpoint's records under `lease` (for the janitor). */
  keysOfLease(lease: string): string[] {
    const out: string[] = [];
    for (const [id, r] of this.records) if (r.lease === lease) out.push(this.keys.get(id) as string);
    return out;
  }

  /**
   * Marks the list stale. Registry changes come in bursts (a spawn or a stop
   * of thousands of instances is a burst of record and lease events), so the
   * list is rebuilt once per burst — at the next read, or at the end of this
   * turn of the event loop — not once per event (O(n²) with 10,000 instances).
   */
  private recompute(): void {
    if (!this.synced) return;
    this.dirty = true;
    this.flushing ??= setImmediate(this.flush);
  }

  private readonly flush = (): void => {
    if (this.flushing) clearImmediate(this.flushing);
    this.flushing = undefined;
    if (!this.dirty) return;
    this.dirty = false;
    const before = this.listed;
    const next: InstanceRecord[] = [];
    for (const r of this.records.values()) {
      // A dead lease, or one naming the instance gone (a graceful stop), drops it.
      const lease = this.discovery.liveLeaseOf(r);
      if (!lease) continue;
      const dyn = lease.dyn?.[r.instanceId];
      next.push(dyn ? { ...r, properties: { ...r.properties, ...dyn }, dynamic: dyn } : r);
    }
    next.sort((a, b) => (a.instanceId < b.instanceId ? -1 : 1));
    this.listed = next;
    if (next.length > 0) this.listedOnce = true;
    if (this.inflightSets.size > 0) {
      const now = new Set(next.map((r) => r.instanceId));
      // Instances whose lease died: ask their mailbox before failing what is in flight to them
      // (a lease can lapse while the instance lives: a blip, a busy watcher).
      for (const { instanceId: id } of before) {
        if (now.has(id)) continue; // still listed
        const r = this.records.get(id);
        if (!r || this.discovery.isGone(r.lease, id)) continue; // gracefully deregistered: in-flight work finishes
        if (this.inflightSets.get(id)?.size) void this.checkLost(id);
      }
    }
    this.subject.next(next);
  };

  private async checkLost(id: string): Promise<void> {
    const timeout = Math.max(200, this.discovery.settings.heartbeatMs);
    const found = await this.discovery.probe(this.mailbox(id), timeout);
    if (found === 'alive') return;
    // A blocked event loop answers no probe, but its beat thread says "busy": the calls'
    // own deadlines bound it, not the lease (beats keep a busy process's lease alive, so
    // this is the rare lease lapse of a busy process, e.g. its beat thread fell back).
    if (found === 'silent' && this.discovery.busyFor(id) !== undefined) return;
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
    if (this.dirty) this.flush();
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

  /**
   * The instance `router` picks for `request` among the {@link candidates}
   * (undefined when there is none, or the router declines): the one place a
   * unary call and a stream choose where to go.
   */
  pick(router: Router, request: unknown, among: { filter?: (r: InstanceRecord) => boolean; exclude?: ReadonlySet<string> } = {}): string | undefined {
    const candidates = this.candidates(among.filter, among.exclude);
    return candidates.length > 0 ? router.pick(candidates, request, this) : undefined;
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
      const s = this.inflightSets.get(id);
      // An emptied set goes too: one per instance ever called would pile up with instance churn.
      if (s && s.delete(f) && s.size === 0) this.inflightSets.delete(id);
    };
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retry);
    if (this.flushing) clearImmediate(this.flushing);
    this.flushing = undefined;
    this.stopWatch?.();
    this.subject.complete();
  }
}
