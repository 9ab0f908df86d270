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
  /** Instance ids of each lease (a lease that appears or dies touches its own instances only). */
  private readonly byLease = new Map<string, Set<string>>();
  /** The routable instances by id, as listed (dynamic properties merged in). */
  private readonly live = new Map<string, InstanceRecord>();
  /** The listed instances sorted by id: a snapshot, replaced (never mutated) when it changes. */
  private listed: InstanceRecord[] = [];
  /** Ids whose listing changed since the snapshot was built (undefined: rebuild it whole). */
  private changedIds: Set<string> | undefined = new Set();
  private readonly subject: BehaviorSubject<InstanceRecord[]>;
  private readonly inhibited = new Map<string, number>();
  private readonly strikes = new Map<string, number>();
  /** What is in flight per instance: one entry holds the count and the set (one map lookup per enter and per untrack). */
  private readonly inflights = new Map<string, Tracked>();
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
      this.evaluateAll();
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
      this.removeRecord(id);
    }
    this.evaluateAll();
    this.flush();
  }

  private onRecord(e: KvEntry): void {
    const id = e.key.slice(e.key.lastIndexOf('.') + 1);
    if (e.operation === 'DEL') {
      // Graceful deregistration: in-flight work still finishes, so nothing is failed here.
      this.removeRecord(id);
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
    const old = this.records.get(id);
    if (old && old.lease !== r.lease) this.byLease.get(old.lease)?.delete(id);
    this.records.set(id, r);
    this.keys.set(id, e.key);
    let ids = this.byLease.get(r.lease);
    if (!ids) this.byLease.set(r.lease, (ids = new Set()));
    ids.add(id);
    // A new record is a new listed element: what was listed from the old one goes.
    const wasLive = this.live.delete(id);
    this.evaluate(id);
    if (wasLive && !this.live.has(id)) this.changed(id);
  }

  private removeRecord(id: string): void {
    const r = this.records.get(id);
    if (!r) return;
    this.records.delete(id);
    const ids = this.byLease.get(r.lease);
    if (ids?.delete(id) && ids.size === 0) this.byLease.delete(r.lease);
    this.forget(id);
    if (this.live.delete(id)) this.changed(id);
  }

  /**
   * Lists or unlists one instance after its record, its lease or its
   * dynamic properties changed: O(1) here, the sorted snapshot is patched
   * once per burst ({@link flush}).
   */
  private evaluate(id: string): void {
    if (!this.synced) return;
    const r = this.records.get(id);
    const lease = r && this.discovery.liveLeaseOf(r);
    if (!r || !lease) {
      if (!this.live.delete(id)) return;
      this.changed(id);
      // Its lease died (or was never seen) while the record stays: ask its mailbox before failing
      // what is in flight to it (a lease can lapse while the instance lives: a blip, a busy watcher).
      // One the lease names gone left gracefully: its in-flight work finishes.
      if (r && this.inflights.get(id)?.head !== undefined && !this.discovery.isGone(r.lease, id)) void this.checkLost(id);
      return;
    }
    const dyn = this.discovery.dynamicOf(r, lease);
    const prev = this.live.get(id);
    // Listed already from this record (a new record clears it first) with the same properties: nothing to do.
    if (prev && (dyn ? sameProps(prev.dynamic, dyn) : prev === r)) return;
    const next = dyn ? { ...r, properties: { ...r.properties, ...dyn }, dynamic: dyn } : r;
    this.live.set(id, next);
    this.changed(id);
  }

  private evaluateAll(): void {
    for (const id of this.records.keys()) this.evaluate(id);
  }

  private changed(id: string): void {
    if (this.changedIds) {
      // A burst touching a good part of the list rebuilds it whole (one sort) instead of patching it id by id.
      if (this.changedIds.size >= PATCH_LIMIT) this.changedIds = undefined;
      else this.changedIds.add(id);
    }
    this.dirty = true;
    this.flushing ??= setImmediate(this.flush);
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
    let trackedInstances = 0;
    for (const t of this.inflights.values()) {
      for (let f = t.head; f !== undefined; f = f.flightNext) tracked++;
      trackedInstances++;
    }
    return {
      records: this.records.size,
      tracked,
      trackedInstances,
      mailboxes: this.mailboxes.size,
      inhibited: this.inhibited.size,
      strikes: this.strikes.size,
    };
  }

  /**
   * @internal A lease appeared or died (`'all'`: each of its instances is
   * looked at again), or changed the `gone` mark of some instances (those
   * alone). A lease rewritten with nothing new costs nothing.
   */
  leaseChanged(lease: string, ids: readonly string[] | 'all'): void {
    if (!this.synced) return;
    if (ids === 'all') {
      const mine = this.byLease.get(lease);
      if (mine) for (const id of mine) this.evaluate(id);
      return;
    }
    for (const id of ids) if (this.records.get(id)?.lease === lease) this.evaluate(id);
  }

  /** @internal The dynamic properties of these instances changed (a property chunk of their process). */
  instancesChanged(ids: readonly string[]): void {
    if (!this.synced) return;
    for (const id of ids) if (this.records.has(id)) this.evaluate(id);
  }

  /** @internal The lease of a known instance of this endpoint (listed or not). */
  leaseOfInstance(id: string): string | undefined {
    return this.records.get(id)?.lease;
  }

  /** @internal Registry keys of this endpoint's records under `lease` (for the janitor). */
  keysOfLease(lease: string): string[] {
    const out: string[] = [];
    for (const id of this.byLease.get(lease) ?? []) out.push(this.keys.get(id) as string);
    return out;
  }

  /**
   * Brings the sorted snapshot up to date with what changed since it was
   * built — at the next read, or at the end of this turn of the event loop,
   * so a burst (a spawn or a stop of thousands of instances) costs one pass,
   * not one per event. A few changes patch a copy of it (binary search per
   * id, O(k log n) plus one array copy); a burst of more than
   * {@link PATCH_LIMIT} rebuilds it with one sort.
   */
  private readonly flush = (): void => {
    if (this.flushing) clearImmediate(this.flushing);
    this.flushing = undefined;
    if (!this.dirty) return;
    this.dirty = false;
    const changed = this.changedIds;
    this.changedIds = new Set();
    let next: InstanceRecord[];
    if (!changed) {
      next = [...this.live.values()];
      next.sort(byId);
    } else {
      next = this.listed.slice();
      for (const id of changed) {
        const r = this.live.get(id);
        const i = indexOf(next, id);
        const found = i < next.length && (next[i] as InstanceRecord).instanceId === id;
        if (r && found) next[i] = r;
        else if (r) next.splice(i, 0, r);
        else if (found) next.splice(i, 1);
      }
    }
    this.listed = next;
    if (next.length > 0) this.listedOnce = true;
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
    const t = this.inflights.get(id);
    if (!t || t.head === undefined) return;
    // Detached whole before any is failed (a failed call may re-route, even back here). The count stays: it drops as
    // these calls settle (untrack), as before the loss.
    const lost: InFlight[] = [];
    for (let f: InFlight | undefined = t.head; f !== undefined; f = f.flightNext) lost.push(f);
    t.head = undefined;
    for (const f of lost) {
      f.flightIn = undefined;
      f.flightPrev = undefined;
      f.flightNext = undefined;
    }
    for (const f of lost) f.lose(err);
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
    return this.inflights.get(instanceId)?.n ?? 0;
  }

  next(): number {
    return this.counter++;
  }

  /** Tracks work in flight to `id` (for least-loaded and for failing it fast if the instance is lost); returns the remover. */
  track(id: string, f: InFlight): () => void {
    this.enter(id, f);
    return () => this.untrack(id, f);
  }

  /**
   * {@link track} without the remover closure (the unary hot path): returns the
   * instance's entry, which also carries its mailbox subject; the call hands it
   * back to {@link leave}, so neither needs a lookup by id.
   */
  enter(id: string, f: InFlight): Tracked {
    let t = this.inflights.get(id);
    if (t === undefined) {
      t = { id, n: 0, head: undefined, mailbox: this.mailbox(id) };
      this.inflights.set(id, t);
    }
    t.n++;
    if (f.flightIn !== undefined) unlink(f);
    f.flightIn = t;
    f.flightPrev = undefined;
    f.flightNext = t.head;
    if (t.head !== undefined) t.head.flightPrev = f;
    t.head = f;
    return t;
  }

  /** Ends the tracking of `f` at `id`. */
  untrack(id: string, f: InFlight): void {
    const t = this.inflights.get(id);
    if (t !== undefined) this.leave(t, f);
  }

  /** Ends the tracking of `f` in the entry {@link enter} returned. */
  leave(t: Tracked, f: InFlight): void {
    if (f.flightIn === t) unlink(f);
    // An emptied entry goes: one per instance ever called would pile up with instance churn.
    if (--t.n <= 0) this.inflights.delete(t.id);
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

/**
 * In flight to one instance: the count (least-loaded routing) and what to fail if it is lost, linked through the
 * calls' own `flight*` fields (an intrusive list, as the deadline wheel's: no Set entry per call; empty once failed).
 */
export interface Tracked {
  readonly id: string;
  n: number;
  head: InFlight | undefined;
  /** The instance's mailbox subject. */
  readonly mailbox: string;
}

function unlink(f: InFlight): void {
  const t = f.flightIn as Tracked;
  const prev = f.flightPrev;
  const next = f.flightNext;
  if (prev !== undefined) prev.flightNext = next;
  else if (t.head === f) t.head = next;
  if (next !== undefined) next.flightPrev = prev;
  f.flightIn = undefined;
  f.flightPrev = undefined;
  f.flightNext = undefined;
}

/** More changes than this in one burst rebuild the snapshot with one sort instead of patching it. */
const PATCH_LIMIT = 64;

function byId(a: InstanceRecord, b: InstanceRecord): number {
  return a.instanceId < b.instanceId ? -1 : a.instanceId > b.instanceId ? 1 : 0;
}

/** Where `id` is, or would go, in a list sorted by instance id. */
function indexOf(list: readonly InstanceRecord[], id: string): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((list[mid] as InstanceRecord).instanceId < id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Whether two dynamic-property sets hold the same values (shallow: a chunk rewrite decodes every instance's anew). */
function sameProps(a: Readonly<Record<string, unknown>> | undefined, b: Readonly<Record<string, unknown>>): boolean {
  if (!a) return false;
  let n = 0;
  for (const k in b) {
    if (!Object.is(a[k], b[k])) return false;
    n++;
  }
  for (const _ in a) n--;
  return n === 0;
}
