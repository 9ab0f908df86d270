import { hostname } from 'node:os';
import type { Codec } from '../codec/codec';
import { TroupeError, toTroupeError } from '../errors';
import { settlesWithin } from '../settle';
import type { Logger } from '../logger';
import { withTimeout } from '../timeout';
import { PROTOCOL_VERSION } from '../wire/protocol';
import { type EndpointAddress, leaseBeatSubject, registryKey } from '../wire/subjects';
import { Slabs } from '../codec/slab';
import { OwnedIds } from './owned-ids';
import type { KvBucket, Persistence, Pulse, PulseOptions } from '../transport/transport';

/** Bucket of instance records, keyed `{ns}.{comp}.{ep}.{instance_id}`; no max age (leases carry liveness). */
export const RECORDS_BUCKET = 'troupe_instances';
/** Bucket of process leases, keyed `{lease}`; max age = the lease TTL. */
export const LEASES_BUCKET = 'troupe_leases';
/** Marker record of a process in the records bucket; its absence means "register again". */
export const markerKey = (lease: string): string => `_proc.${lease}`;

/**
 * Dynamic properties travel in chunks of this many instances, one KV record
 * each (`_dyn.{lease}.{chunk}` in the records bucket), rewritten only when a
 * property of one of its instances changed (throttled): the lease stays the
 * same size at any instance count, and a property change costs one chunk
 * write (at most ~256 small entries), not a rewrite of every instance's.
 */
export const DYN_CHUNK_SIZE = 256;
/** Key of one dynamic-property chunk of a process. */
export const dynKey = (lease: string, chunk: number): string => `${DYN_PREFIX}${lease}.${chunk}`;
/** Prefix of the dynamic-property chunk keys (the records watch of an endpoint never sees them: its filter starts with a namespace). */
export const DYN_PREFIX = '_dyn.';
/** What a dynamic-property chunk holds: the latest dynamic properties of up to {@link DYN_CHUNK_SIZE} instances of one process. */
export interface DynChunk {
  lease: string;
  chunk: number;
  dyn: Record<string, Record<string, unknown>>;
}

/**
 * At most this many instance ids ride on a lease as `gone` (~18 bytes each,
 * ~74 KB): a stop of more instances at once deletes the records of the rest
 * first (watchers drop them on those deletes), so the lease stays far below
 * `max_payload` whatever the batch.
 */
export const GONE_ON_LEASE = 4_096;

/** How often (on average) a process removes old delete markers from the records bucket, ms. */
const COMPACT_EVERY_MS = 10 * 60_000;
/** Delete markers younger than this stay: a watcher that starts now may still need to see the delete, ms. */
const COMPACT_AFTER_MS = 10 * 60_000;
/**
 * Record writes of a registration whose lease write answered wait this many
 * times `registerWaitMs` (with the default, past nats.js's own 5 s timeout):
 * the lease write is what tells a registry that does not answer.
 */
const RECORD_WAIT_FACTOR = 5;
/** Registration retries back off to at most this many heartbeat periods apart. */
const RETRY_MAX_PERIODS = 4;

/**
 * What discovery publishes about one endpoint of one instance. Static after
 * registration; dynamic properties travel in property chunks (records `_dyn.{lease}.{chunk}`, see docs/discovery.md).
 */
export interface InstanceRecord {
  readonly namespace: string;
  readonly component: string;
  readonly endpoint: string;
  readonly instanceId: string;
  /** The process lease the instance lives under. */
  readonly lease: string;
  readonly host: string;
  readonly pid: number;
  /** Epoch ms. */
  readonly startedAt: number;
  readonly proto: string;
  /** Static properties given at spawn, merged with the latest dynamic ones. */
  readonly properties: Readonly<Record<string, unknown>>;
  /** The latest dynamic properties alone (load, free slots…), as set with `ctx.setProperty`; absent when none were set. */
  readonly dynamic?: Readonly<Record<string, unknown>>;
}

/**
 * What a process beats on `_TROUPE.lease.{lease}` every heartbeat (JSON, plain
 * core NATS: no JetStream write, so a stream-leader election does not silence
 * it). On NATS it comes from a `worker_threads` thread with its own connection,
 * so a blocked main loop still beats and says how late it is (`lagMs`).
 *
 * @example
 * const beat = JSON.parse(new TextDecoder().decode(msg.data)) as LeaseBeat;
 * if (beat.lagMs > 250) console.log(`process ${beat.pid} on ${beat.host} is busy for ${beat.lagMs} ms`);
 */
export interface LeaseBeat {
  lease: string;
  /** Beat period and lease TTL of the sender, ms. */
  hb: number;
  ttl: number;
  pid: number;
  host: string;
  /** From 1, per pulse. */
  seq: number;
  /** How long the sender's main event loop has not run, ms (0 from the main loop itself). */
  lagMs: number;
  /** Revision of the sender's last lease-record write: a watcher whose lease watch has not delivered it checks that watch. */
  lrev?: number;
  /** Revision of the sender's last instance-record write (sent at once after a registration): a watcher whose records watches have not delivered it checks them. */
  rrev?: number;
}

/**
 * A main loop late by more than this is busy (a synchronous handler), not
 * idle: its thread beats at once to say so. 250 ms is far past a healthy
 * loop's jitter (timers run within a few ms) and well under the idle bounds.
 */
export const BUSY_AFTER_MS = 250;

/** The lease record a process writes to KV (one small write per process every half TTL, whatever its instance count). */
export interface LeaseValue {
  lease: string;
  host: string;
  pid: number;
  startedAt: number;
  heartbeatMs: number;
  ttlMs: number;
  /** Incremented on every write. */
  seq: number;
  /**
   * Dynamic properties by instance, as processes of protocol 1 wrote them
   * (every instance's on every lease write). This version writes them in
   * chunk records (`_dyn.{lease}.{chunk}`) and leaves this out; watchers still read
   * it from an older process.
   */
  dyn?: Record<string, Record<string, unknown>>;
  /**
   * Instances of this process that left (graceful stop) while their records
   * may still be in the bucket: watchers drop them on this one write, however
   * many there are, instead of waiting for one record delete each. An id
   * stays listed until its record's delete is confirmed and one more
   * heartbeat passed (so no watcher sees the lease forget it before the delete).
   */
  gone?: string[];
}

/** One instance to register: its endpoints and static properties. */
export interface Registration {
  readonly addresses: readonly EndpointAddress[];
  readonly instanceId: string;
  readonly properties: Record<string, unknown>;
  /**
   * The instance's mailbox subjects, in the order of `addresses`, when the caller holds them: its
   * records' keys are the same text ({@link registryKey}), and a bucket that keeps its keys in this
   * process (the memory network's) then keeps these strings, not a second copy of each.
   */
  readonly keys?: readonly string[];
}

/**
 * An instance waiting for the registry: its id and what its records are made of (encoded as
 * they are written, not all at spawn: 100,000 encoded records held until written and then
 * dropped leave that much native memory behind in glibc's heap).
 */
interface Waiting {
  readonly id: string;
  /** One object for the instances of a batch with the same addresses and properties (a spawn's). */
  readonly mine: Mine;
  /** Its records' keys when the caller held them ({@link Registration.keys}). */
  readonly keys: readonly string[] | undefined;
}

/**
 * An instance this process registered: what its records were encoded from,
 * so a repair writes them again. Not their bytes nor their keys, and not an
 * object each: the instances of one spawn registered in one batch share
 * their addresses, properties and start time, so 100,000 of them hold one
 * `Mine` (and a map entry each) instead of a copy of every record.
 */
interface Mine {
  readonly addresses: readonly EndpointAddress[];
  readonly startedAt: number;
  readonly properties: Record<string, unknown>;
}

/** One instance to deregister. */
export interface Deregistration {
  readonly addresses: readonly EndpointAddress[];
  readonly instanceId: string;
}

/**
 * Registry requests in flight at once for a batch (record puts and deletes):
 * enough to pipeline over one round trip, few enough that a JetStream leader
 * is never flooded into timeouts (10,000 concurrent deletes timed out ~3,000
 * of them, issue #14).
 */
export const REGISTRY_CONCURRENCY = 128;

/** Discovery timing. */
export interface DiscoverySettings {
  /** Lease heartbeat period, ms. */
  heartbeatMs: number;
  /** Lease TTL: an instance whose process has not heartbeated for this long is dropped, ms. */
  leaseTtlMs: number;
  /** At most one lease write per this period for dynamic property changes, ms. */
  propertyThrottleMs: number;
  /**
   * After an instance leaves the registry it keeps serving this long, so
   * watchers drop it before it starts refusing (a pre-stop delay), ms.
   */
  leaveDelayMs: number;
  /** Copies of the registry buckets in a JetStream cluster (1, 3 or 5; default 1: lost with the node that holds them). */
  replicas?: number;
  /**
   * How long a spawn waits for the registry to take its instances before it
   * returns with them serving unregistered (they register in the background
   * when the registry answers), ms: the bound of opening the buckets and of
   * the lease write that starts a registration (its record writes get
   * five times it). Default 2,000.
   */
  registerWaitMs?: number;
}

/**
 * Default of {@link DiscoverySettings.registerWaitMs}: a healthy registry
 * answers in milliseconds, but a loaded shared one took over a second to open
 * the buckets in our test runs (1 s made spawns there return unregistered
 * now and then); an unreachable one leaves a KV request waiting for nats.js's
 * 5 s JetStream timeout.
 */
export const REGISTER_WAIT_MS = 2_000;

/**
 * Whether `err` says the bus has no storage at all (NATS without JetStream):
 * a configuration error that no wait fixes, unlike a registry that does not
 * answer (an election, a lost quorum), which instances outlive unregistered.
 *
 * @example
 * if (noStorage(err)) throw err; // else: serve, and register when the registry answers
 */
export function noStorage(err: unknown): boolean {
  return err instanceof TroupeError && (err.data as { noStorage?: unknown } | undefined)?.noStorage === true;
}

/**
 * The process side of discovery: one lease per runtime kept alive by
 * heartbeat (the same small write whatever the instance count), instance
 * records written once at registration, dynamic properties in chunks of
 * {@link DYN_CHUNK_SIZE} instances rewritten only when one of them changed,
 * and self-repair: a process whose marker
 * record vanished (bucket purged, JetStream restarted) registers again.
 */
export class Registry {
  private records: KvBucket | undefined;
  private leases: KvBucket | undefined;
  private opening: Promise<void> | undefined;
  /** This process's instance records by registry key (kept as objects: encoded again only by a repair). */
  /** Registered instances by id (a spawn's as one sorted run: no hash-table entry each). */
  private readonly mine = new OwnedIds<Mine>();
  /** Where records are encoded to as they are written (dropped once written: slabs of their own, not a long-lived store's). */
  private readonly slabs = new Slabs();
  private readonly dyn = new Map<string, Record<string, unknown>>();
  /** The dynamic-property chunk of each instance that set a property, the ids of each chunk, and the chunks to write. */
  private readonly chunkOf = new Map<string, number>();
  private readonly chunks = new Map<number, Set<string>>();
  private readonly dirtyChunks = new Set<number>();
  private lastChunkWrite = 0;
  private writingChunks: Promise<void> | undefined;
  /** Instances that left, with their records still to delete (keys) or deleted at (ms, for the lease's grace). */
  private readonly gone = new Map<string, { keys: string[]; deletedAt: number | undefined }>();
  /** The record deletes under way (one batch at a time; a later batch waits its turn). */
  private deleting: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private throttle: NodeJS.Timeout | undefined;
  private lastWrite = 0;
  private seq = 0;
  /** Highest revision of this process's record writes (what its beats announce). */
  private recordsRev = 0;
  private closed = false;
  private beating: Promise<void> | undefined;
  /** When this process next removes old delete markers from the records bucket (jittered so processes spread it). */
  private nextCompaction = Date.now() + COMPACT_EVERY_MS * (0.5 + Math.random());
  private readonly startedAt = Date.now();
  private readonly host = hostname();
  /** Registry writes so far (records + leases), for the scale figures. */
  writes = 0;
  /** Lease heartbeats that failed (metrics). */
  failures = 0;
  /** When the lease was last written successfully (epoch ms; 0 before the first). */
  lastLeaseWrite = 0;
  /** Registration attempts that failed: the registry did not take waiting instances (metrics). */
  registrationFailures = 0;
  /** Instances that serve but wait for the registry to take them, by id (accepted by a spawn, not written yet), with their records. */
  private readonly pending = new Map<string, Waiting>();
  /** Record writes under way per instance (settled promises): a stop that races them deletes after they land. */
  private readonly writing = new Map<string, Promise<void>>();
  /** The registration attempt under way (one at a time; it takes instances added meanwhile too). */
  private attempting: Promise<boolean> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Failed attempts in a row (the backoff's exponent). */
  private retries = 0;
  /** Set while the registry does not answer registrations: since when, and the first error (logged once). */
  private outage: { since: number; error: string } | undefined;

  constructor(
    private readonly persistence: Persistence,
    private readonly codec: Codec,
    readonly lease: string,
    readonly settings: DiscoverySettings,
    private readonly logger: Logger,
    /** Starts the process beat (the runtime gives the transport's threaded pulse); none: KV writes alone. */
    private readonly startPulse?: (options: PulseOptions) => Pulse,
  ) {}

  private pulse: Pulse | undefined;

  /** Every how many ms the KV lease record is rewritten when nothing changed: half the TTL (the beats carry liveness). */
  private get leaseWriteMs(): number {
    return Math.max(this.settings.heartbeatMs, Math.floor(this.settings.leaseTtlMs / 2));
  }

  /**
   * Opens both buckets (fails with the bus's clear error when it has no
   * storage). A failed open is tried again at the next call, and so is one
   * unanswered for {@link registerWaitMs}: a JetStream request sent during an
   * outage waits nats.js's 5 s timeout, and the next registration attempt
   * must not wait for it once the registry answers again.
   */
  open(): Promise<void> {
    if (this.records && this.leases) return Promise.resolve();
    const stale = this.opening && Date.now() - this.openStarted > this.registerWaitMs ? this.opening : undefined;
    if (!this.opening || stale) {
      const fresh = (async () => {
        const records = await this.persistence.kv(RECORDS_BUCKET, { ttlMs: 0, replicas: this.settings.replicas });
        const leases = await this.persistence.kv(LEASES_BUCKET, { ttlMs: this.settings.leaseTtlMs, replicas: this.settings.replicas });
        this.records ??= records;
        this.leases ??= leases;
      })();
      // A slow open (a loaded server) may still be the first to finish: whichever lands first opens the buckets.
      const run = stale ? Promise.any([stale, fresh]).catch(() => fresh) : fresh;
      this.opening = run;
      this.openStarted = Date.now();
      run.catch(() => {
        if (this.opening === run) this.opening = undefined;
      });
    }
    return this.opening as Promise<void>;
  }

  private openStarted = 0;

  /** How long a registration waits for the registry before the instances serve unregistered, ms. */
  get registerWaitMs(): number {
    return this.settings.registerWaitMs ?? REGISTER_WAIT_MS;
  }

  /**
   * Opens the buckets at connect, waiting at most {@link registerWaitMs}.
   * Rejects only when the bus has no storage at all ({@link noStorage}: a
   * configuration error). A registry that fails otherwise is down (warned,
   * and spawns meanwhile do not wait for it); one that is merely slow is left
   * to open in the background — the first spawn waits for it once more.
   * Resolves whether the buckets are open.
   */
  async start(): Promise<boolean> {
    try {
      await this.within(this.open(), 'opening the registry buckets');
      return true;
    } catch (err) {
      if (noStorage(err)) throw err;
      if (err instanceof TroupeError && err.code === 'TIMEOUT' && (err.data as { slow?: unknown } | undefined)?.slow === true) {
        this.logger.info('registry buckets not open yet at connect; opening them in the background', { error: err.message });
      } else this.failed(err);
      return false;
    }
  }

  /** Starts the heartbeat (after the first registration). */
  private ensureHeartbeat(): void {
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => void this.heartbeat(), this.settings.heartbeatMs);
    this.timer.unref();
    this.pulse ??= this.startPulse?.({
      subject: leaseBeatSubject(this.lease),
      intervalMs: this.settings.heartbeatMs,
      fields: { lease: this.lease, hb: this.settings.heartbeatMs, ttl: this.settings.leaseTtlMs, pid: process.pid, host: this.host, rrev: this.recordsRev },
      busyAfterMs: BUSY_AFTER_MS,
    });
  }

  /**
   * Registers the endpoints of one instance (see {@link registerMany}).
   */
  register(addresses: readonly EndpointAddress[], instanceId: string, properties: Record<string, unknown>): Promise<boolean> {
    return this.registerMany([{ addresses, instanceId, properties }]);
  }

  /**
   * Registers instances that already serve, as one batch: one lease write
   * (so watchers see a live lease with the records), the records pipelined
   * ({@link REGISTRY_CONCURRENCY} in flight), one marker write. Never
   * rejects: resolves true once the registry took them, false when it did
   * not answer within {@link registerWaitMs} (the lease write; each record
   * write gets {@link RECORD_WAIT_FACTOR} times it, so a long batch that
   * progresses is not cut) or failed — then they keep serving
   * unregistered (their queue groups and mailboxes need no registry) and are
   * registered in the background, retried with backoff until the registry
   * answers (a warning when it stops answering, one when it answers again;
   * the metric `troupe_unregistered_instances` counts them meanwhile). While
   * the registry is known not to answer, it resolves false at once.
   */
  async registerMany(batch: readonly Registration[]): Promise<boolean> {
    if (this.closed || batch.length === 0) return !this.closed;
    const startedAt = Date.now();
    let mine: Mine | undefined;
    for (const r of batch) {
      this.gone.delete(r.instanceId);
      if (mine?.addresses !== r.addresses || mine.properties !== r.properties) {
        mine = { addresses: r.addresses, startedAt, properties: r.properties };
        // Encoded now once, so properties that cannot be encoded fail the spawn (the records are encoded as they are written).
        for (const a of mine.addresses) this.recordBytes(a, r.instanceId, mine);
      }
      this.pending.set(r.instanceId, { id: r.instanceId, mine, keys: r.keys });
    }
    if (this.outage) {
      // Known down: no spawn waits for it; the next retry takes these too.
      this.scheduleRetry();
      return false;
    }
    for (;;) {
      if (!(await this.attempt()) || this.closed) return false;
      // An attempt that was finishing as these arrived did not take them: one more.
      if (batch.every((r) => !this.pending.has(r.instanceId))) return true;
    }
  }

  /** Instances serving unregistered now, waiting for the registry (metrics). */
  get unregistered(): number {
    return this.pending.size;
  }

  /** One registration attempt at a time; a caller while one runs joins it (it takes what was added meanwhile). */
  private attempt(): Promise<boolean> {
    if (!this.attempting) {
      const run = this.attemptNow();
      this.attempting = run;
      // Cleared asynchronously (see deleteGone): a `finally` inside could run before the assignment.
      void run.finally(() => {
        if (this.attempting === run) this.attempting = undefined;
      });
    }
    return this.attempting;
  }

  private async attemptNow(): Promise<boolean> {
    try {
      await this.within(this.open(), 'opening the registry buckets');
      let registered = 0;
      while (!this.closed && this.pending.size > 0) {
        const batch = [...this.pending.values()];
        await this.writeRegistrations(batch);
        // The ids of each registration (a spawn's share one), added together.
        const taken = new Map<Mine, string[]>();
        for (const w of batch) {
          // Stopped meanwhile: its deregistration deletes what was just written (see deregisterMany).
          if (this.pending.get(w.id) !== w) continue;
          this.pending.delete(w.id);
          const ids = taken.get(w.mine);
          if (ids === undefined) taken.set(w.mine, [w.id]);
          else ids.push(w.id);
          registered++;
        }
        for (const [m, ids] of taken) this.mine.addMany(ids, m);
      }
      if (!this.closed) this.recovered(registered);
      return true;
    } catch (err) {
      if (this.closed) return false;
      this.failed(err);
      return false;
    }
  }

  /** The lease (bounded by {@link registerWaitMs}), then the records and the marker of `batch` (each bounded by {@link RECORD_WAIT_FACTOR} times that); the first failure ends it. */
  private async writeRegistrations(batch: readonly Waiting[]): Promise<void> {
    await this.within(this.writeLease(), 'the lease write');
    this.ensureHeartbeat();
    const entries = batch.flatMap((w) => w.mine.addresses.map((a, i) => ({ a, i, w })));
    const records = this.records;
    // Every put sent, settled: one given up on (bounded) may still land later.
    const sent: Promise<unknown>[] = [];
    const put = (key: string, value: Uint8Array, what: string): Promise<number> => {
      const p = this.put(records, key, value);
      sent.push(p.catch(() => undefined));
      // The lease write answered: the registry is up, merely slow if a record takes long (a raft
      // peer lost); a spawn then waits for it as long as nats.js would, not registerWaitMs.
      return this.within(p, what, RECORD_WAIT_FACTOR);
    };
    const run = (async () => {
      await pool(entries, REGISTRY_CONCURRENCY, async (e) => {
        if (this.closed) throw new TroupeError('UNAVAILABLE', 'the registry closed during a registration');
        // Stopped meanwhile: the rest of its records need not go out (those on their way are deleted once landed).
        const w = e.w;
        if (this.pending.get(w.id) !== w) return;
        const key = sameKey(w.keys?.[e.i], e.a, w.id);
        await put(key, this.recordBytes(e.a, w.id, w.mine), `the record write ${key}`);
      });
      await put(markerKey(this.lease), this.codec.encode({ lease: this.lease, pid: process.pid, host: this.host }), 'the marker write');
    })();
    // A stop that races this deletes the records once every put sent has landed or failed.
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    const landed = settled.then(() => Promise.all(sent)).then(() => undefined);
    for (const w of batch) this.writing.set(w.id, landed);
    void landed.then(() => {
      for (const w of batch) if (this.writing.get(w.id) === landed) this.writing.delete(w.id);
    });
    await run;
    // Watchers whose records watch died learn of this write from the beat, not a 10 s consumer timeout.
    this.pulse?.set({ rrev: this.recordsRev }, true);
  }

  /** The encoded record of one endpoint `a` of instance `instanceId`. */
  private recordBytes(a: EndpointAddress, instanceId: string, m: Mine): Uint8Array {
    const record: InstanceRecord = {
      namespace: a.namespace,
      component: a.component,
      endpoint: a.endpoint,
      instanceId,
      lease: this.lease,
      host: this.host,
      pid: process.pid,
      startedAt: m.startedAt,
      proto: PROTOCOL_VERSION,
      properties: m.properties,
    };
    // One per instance and endpoint (100,000 in one spawn): copied out of the encoder's buffer into a slab of the
    // registry's own (it drops them once written), not an `ArrayBuffer` each.
    return this.codec.encodeShared ? this.slabs.copy(this.codec.encodeShared(record)) : this.codec.encode(record);
  }

  /** A registration attempt failed: say so once per outage, retry with backoff. */
  private failed(err: unknown): void {
    this.registrationFailures++;
    const error = toTroupeError(err).message;
    if (!this.outage) {
      this.outage = { since: Date.now(), error };
      const n = this.pending.size;
      const who = n === 0 ? 'instances spawned meanwhile serve' : n === 1 ? '1 instance serves' : `${n} instances serve`;
      this.logger.warn(
        `registry not answering (${error}): ${who} unregistered (queue groups and mailboxes answer; discovery-routed callers do not list them) and register when it answers`,
        { instances: n, error },
      );
    }
    this.scheduleRetry();
  }

  /** The registry took everything waiting (`registered` instances; undefined: nothing waits any more, they stopped): say so once if it had stopped answering. */
  private recovered(registered?: number): void {
    this.retries = 0;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const o = this.outage;
    if (!o) return;
    this.outage = undefined;
    const ms = Date.now() - o.since;
    if (registered === undefined) return this.logger.debug('no instance waits for the registry any more (they stopped)', { outageMs: ms });
    this.logger.warn(`registry answers again after ${ms} ms${registered > 0 ? `: ${registered} waiting instances registered` : ''}`, {
      outageMs: ms,
      registered,
    });
  }

  /**
   * The next attempt after a backoff: half a heartbeat period, doubling to at
   * most {@link RETRY_MAX_PERIODS} periods, ±20 % jitter so processes that
   * lost the registry together do not come back in step.
   */
  private scheduleRetry(): void {
    if (this.retryTimer || this.closed) return;
    const hb = this.settings.heartbeatMs;
    const base = Math.min((hb / 2) * 2 ** this.retries, RETRY_MAX_PERIODS * hb);
    this.retries++;
    this.retryTimer = setTimeout(
      () => {
        this.retryTimer = undefined;
        // Nothing waits any more (those instances stopped) and the buckets are open: the outage is no one's concern.
        if (this.pending.size === 0 && this.records && this.leases) return this.recovered();
        void this.attempt();
      },
      base * (0.8 + 0.4 * Math.random()),
    );
    this.retryTimer.unref();
  }

  /** `p`, or a TIMEOUT naming `what` once `factor` × {@link registerWaitMs} passed (`p` goes on). */
  private within<T>(p: Promise<T>, what: string, factor = 1): Promise<T> {
    const ms = factor * this.registerWaitMs;
    return withTimeout(p, ms, () => {
      throw new TroupeError('TIMEOUT', `${what}: no answer from the registry within ${ms} ms`, { data: { slow: true } });
    });
  }

  /** Whether an instance's records are registered by this process (health). */
  has(instanceId: string): boolean {
    return this.mine.has(instanceId);
  }

  /** Removes one instance (graceful stop: before it stops serving); false when the registry did not take the leave. */
  deregister(addresses: readonly EndpointAddress[], instanceId: string): Promise<boolean> {
    return this.deregisterMany([{ addresses, instanceId }]);
  }

  /**
   * Graceful stop of many instances as one batch. One lease write names them
   * all `gone`, so every watcher drops the whole batch on that write (bounded
   * by one heartbeat period: a registry that does not answer delays the stop
   * by that much, never more); their records are then deleted pipelined in
   * the background. A delete that fails is retried at every heartbeat until
   * it succeeds, and the lease keeps naming the instance meanwhile: no
   * deregistration is dropped, and none waits for the lease TTL. Resolves
   * false when the lease write failed or got no answer within the period
   * (watchers see the batch leave at the next heartbeat that lands).
   */
  async deregisterMany(batch: readonly Deregistration[]): Promise<boolean> {
    let added = 0;
    /** Instances past what the lease may name ({@link GONE_ON_LEASE}): their records are deleted first. */
    const overflow: { id: string; key: string }[] = [];
    for (const { addresses, instanceId } of batch) {
      this.dropDynamic(instanceId);
      // Waiting to be registered: it never will be.
      this.pending.delete(instanceId);
      const keys = addresses.map((a) => registryKey(a, instanceId));
      // Registered: every record of it is (an instance's records are registered together).
      const owned = this.mine.delete(instanceId) ? keys : [];
      // Its records may be on their way (a registration racing this stop): delete them once they land.
      if (owned.length === 0 && !this.writing.has(instanceId)) continue; // never registered, or left already
      const doomed = owned.length > 0 ? owned : keys;
      if (this.gone.size >= GONE_ON_LEASE) {
        for (const key of doomed) overflow.push({ id: instanceId, key });
        continue;
      }
      this.gone.set(instanceId, { keys: doomed, deletedAt: undefined });
      added++;
    }
    if (overflow.length > 0) await this.deleteOverflow(overflow);
    if (this.dirtyChunks.size > 0) this.scheduleChunks();
    if (added === 0 || !this.records) return true;
    let written = true;
    try {
      await this.bounded(this.writeLease(), 'the lease write naming the instances that left');
    } catch (err) {
      // The heartbeat writes the lease (with these instances gone) again next period.
      written = false;
      this.logger.warn('lease write for a graceful stop failed; the next heartbeat repeats it', { instances: added, error: toTroupeError(err).message });
    }
    void this.deleteGone();
    return written;
  }

  /**
   * The part of a stop batch the lease cannot name: their records are
   * deleted now, pipelined (watchers drop each on its delete, before the
   * leave delay). A delete that fails goes to the `gone` list like the
   * others, so the heartbeat retries it.
   */
  private async deleteOverflow(items: readonly { id: string; key: string }[]): Promise<void> {
    const failed = new Map<string, string[]>();
    await pool(items, REGISTRY_CONCURRENCY, async ({ id, key }) => {
      try {
        await this.records?.delete(key);
        this.writes++;
      } catch {
        failed.set(id, [...(failed.get(id) ?? []), key]);
      }
    });
    for (const [id, keys] of failed) this.gone.set(id, { keys, deletedAt: undefined });
    if (failed.size > 0) this.logger.debug('record deletes of a large stop failed; retrying at the next heartbeat', { instances: failed.size });
  }

  /** Deletes the records of instances that left, pipelined; one pass at a time. */
  private deleteGone(): Promise<void> {
    if (!this.deleting) {
      const run = this.deletePasses();
      this.deleting = run;
      // Cleared once settled (asynchronously: a pass with nothing to do settles at once, and a
      // `finally` inside it would run before the assignment above and leave it set for good).
      void run.finally(() => {
        if (this.deleting === run) this.deleting = undefined;
      });
    }
    return this.deleting;
  }

  private async deletePasses(): Promise<void> {
    for (;;) {
      const todo: { id: string; key: string }[] = [];
      for (const [id, g] of this.gone) if (g.deletedAt === undefined) for (const key of g.keys) todo.push({ id, key });
      if (todo.length === 0 || !this.records) return;
      // A registration's puts still in flight would land after the delete: let them land first.
      const landing = [...new Set(todo.map((t) => this.writing.get(t.id)))].filter((p) => p !== undefined);
      if (landing.length > 0) await Promise.all(landing);
      const failed = new Set<string>();
      let firstError: unknown;
      await pool(todo, REGISTRY_CONCURRENCY, async ({ id, key }) => {
        try {
          await this.records?.delete(key);
          this.writes++;
        } catch (err) {
          failed.add(id);
          firstError ??= err;
        }
      });
      const now = Date.now();
      for (const { id } of todo) {
        const g = this.gone.get(id);
        if (g && !failed.has(id)) g.deletedAt = now;
      }
      if (failed.size > 0) {
        // The lease names them gone meanwhile; the heartbeat tries again.
        this.logger.debug('record deletes failed; retrying at the next heartbeat', { instances: failed.size, error: toTroupeError(firstError).message });
        return;
      }
    }
  }

  /** Instances named gone on the lease, and those whose records are not deleted yet (for tests and the scale figures). */
  get leaving(): { gone: number; undeleted: number } {
    let undeleted = 0;
    for (const g of this.gone.values()) if (g.deletedAt === undefined) undeleted++;
    return { gone: this.gone.size, undeleted };
  }

  private bounded<T>(p: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new TroupeError('TIMEOUT', `${what}: no answer within the ${this.settings.heartbeatMs} ms heartbeat period`)),
          this.settings.heartbeatMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
  }

  /**
   * Records a dynamic property change; its chunk ({@link DYN_CHUNK_SIZE}
   * instances) is rewritten within the throttle period, with every other
   * chunk that changed meanwhile.
   */
  setDynamic(instanceId: string, key: string, value: unknown): void {
    const props = this.dyn.get(instanceId) ?? {};
    props[key] = value;
    this.dyn.set(instanceId, props);
    let chunk = this.chunkOf.get(instanceId);
    if (chunk === undefined) {
      chunk = this.freeChunk();
      this.chunkOf.set(instanceId, chunk);
      let ids = this.chunks.get(chunk);
      if (!ids) this.chunks.set(chunk, (ids = new Set()));
      ids.add(instanceId);
    }
    this.dirtyChunks.add(chunk);
    this.scheduleChunks();
  }

  /** The lowest chunk with room (chunks of stopped instances are reused). */
  private freeChunk(): number {
    for (let c = 0; ; c++) if ((this.chunks.get(c)?.size ?? 0) < DYN_CHUNK_SIZE) return c;
  }

  /** An instance left: its properties leave its chunk (rewritten, or deleted when empty). */
  private dropDynamic(instanceId: string): void {
    this.dyn.delete(instanceId);
    const chunk = this.chunkOf.get(instanceId);
    if (chunk === undefined) return;
    this.chunkOf.delete(instanceId);
    this.chunks.get(chunk)?.delete(instanceId);
    this.dirtyChunks.add(chunk);
  }

  private scheduleChunks(): void {
    if (this.throttle || this.closed || !this.records) return;
    const wait = Math.max(0, this.lastChunkWrite + this.settings.propertyThrottleMs - Date.now());
    this.throttle = setTimeout(() => {
      this.throttle = undefined;
      void this.writeChunks().catch(() => undefined);
    }, wait);
    this.throttle.unref();
  }

  /** Writes every chunk that changed (an emptied one is deleted); one pass at a time, a failed chunk stays dirty for the heartbeat. */
  private writeChunks(): Promise<void> {
    if (!this.writingChunks) {
      const run = this.chunkPasses();
      this.writingChunks = run;
      // Cleared once settled, asynchronously (a pass with nothing to do settles at once: a
      // `finally` inside it would run before the assignment above and leave it set for good).
      void run.then(
        () => this.chunkPassDone(run),
        () => this.chunkPassDone(run),
      );
    }
    return this.writingChunks;
  }

  private chunkPassDone(run: Promise<void>): void {
    if (this.writingChunks === run) this.writingChunks = undefined;
  }

  private async chunkPasses(): Promise<void> {
    while (this.dirtyChunks.size > 0 && !this.closed && this.records) {
      const todo = [...this.dirtyChunks];
      this.dirtyChunks.clear();
      this.lastChunkWrite = Date.now();
      await pool(todo, REGISTRY_CONCURRENCY, async (chunk) => {
        const ids = this.chunks.get(chunk);
        try {
          if (!ids || ids.size === 0) {
            this.chunks.delete(chunk);
            await this.records?.delete(dynKey(this.lease, chunk));
            this.writes++;
            return;
          }
          const dyn: Record<string, Record<string, unknown>> = {};
          for (const id of ids) dyn[id] = this.dyn.get(id) ?? {};
          const value: DynChunk = { lease: this.lease, chunk, dyn };
          await this.put(this.records, dynKey(this.lease, chunk), this.codec.encode(value));
        } catch (err) {
          this.dirtyChunks.add(chunk);
          throw err;
        }
      });
    }
  }

  /**
   * One heartbeat period: rewrite the KV lease record when half a TTL passed
   * since the last write (every period without a pulse), retry record deletes
   * of instances that left, and register again if the marker vanished.
   */
  heartbeat(): Promise<void> {
    this.beating ??= (async () => {
      try {
        const beat = (async () => {
          // With a pulse the beats carry liveness: the lease record is rewritten every half TTL
          // (a quarter period of slack against timer jitter); the marker is still checked every
          // period, so a wiped registry is repaired within one heartbeat.
          if (!this.pulse || Date.now() - this.lastWrite >= this.leaseWriteMs - this.settings.heartbeatMs / 4) await this.writeLease();
          if (this.gone.size > 0) void this.deleteGone();
          if (this.dirtyChunks.size > 0) void this.writeChunks().catch(() => undefined);
          if (Date.now() >= this.nextCompaction) void this.compact();
          if (this.mine.size > 0 && this.records) {
            const marker = await this.records.get(markerKey(this.lease));
            if (!marker) await this.repair();
          }
        })();
        beat.catch(() => undefined);
        // A KV request sent while the connection is down is dropped by nats.js and waits for
        // the JetStream timeout (5 s, past the lease TTL): stop waiting after one period so the
        // next heartbeat writes the lease as soon as the bus is back.
        const ms = this.settings.heartbeatMs;
        await withTimeout(beat, ms, () => {
          throw new TroupeError('TIMEOUT', `no answer within the ${ms} ms heartbeat period`);
        });
      } catch (err) {
        this.failures++;
        this.logger.warn('registry heartbeat failed; retrying next period', { error: toTroupeError(err).message });
      } finally {
        this.beating = undefined;
      }
    })();
    return this.beating;
  }

  /**
   * Removes delete markers of records deleted over {@link COMPACT_AFTER_MS}
   * ago (JetStream keeps one per deleted key for good, and every new watch
   * reads them all). Whichever process's turn comes does it for everyone.
   */
  private async compact(): Promise<void> {
    this.nextCompaction = Date.now() + COMPACT_EVERY_MS * (0.5 + Math.random());
    if (!this.records || this.closed) return;
    try {
      const n = await this.records.purgeDeletes(COMPACT_AFTER_MS);
      if (n > 0) this.logger.debug('registry: removed old delete markers', { markers: n });
    } catch (err) {
      this.logger.debug('registry: removing old delete markers failed; next turn retries', { error: toTroupeError(err).message });
    }
  }

  private async repair(): Promise<void> {
    this.logger.warn('registry records lost (bucket purged or JetStream restarted); registering again', { instances: this.mine.size });
    for (const [id, m] of this.mine.entries()) {
      for (const a of m.addresses) await this.put(this.records, registryKey(a, id), this.recordBytes(a, id, m));
    }
    for (const chunk of this.chunks.keys()) this.dirtyChunks.add(chunk);
    await this.writeChunks();
    await this.put(this.records, markerKey(this.lease), this.codec.encode({ lease: this.lease, pid: process.pid, host: this.host }));
    this.pulse?.set({ rrev: this.recordsRev }, true);
  }

  private async writeLease(): Promise<void> {
    if (this.closed || !this.leases) return;
    const value: LeaseValue = {
      lease: this.lease,
      host: this.host,
      pid: process.pid,
      startedAt: this.startedAt,
      heartbeatMs: this.settings.heartbeatMs,
      ttlMs: this.settings.leaseTtlMs,
      seq: ++this.seq,
    };
    if (this.gone.size > 0) {
      // A deleted record's id leaves the lease one heartbeat after the delete, so no watcher
      // reads a lease without it before the record's delete reached it.
      const cutoff = Date.now() - this.settings.heartbeatMs;
      for (const [id, g] of this.gone) if (g.deletedAt !== undefined && g.deletedAt < cutoff) this.gone.delete(id);
      if (this.gone.size > 0) value.gone = this.goneOnLease();
    }
    this.lastWrite = Date.now();
    const rev = await this.put(this.leases, this.lease, this.codec.encode(value));
    this.lastLeaseWrite = Date.now();
    if (rev > 0) this.pulse?.set({ lrev: rev });
  }

  /** The ids the lease names as gone: at most {@link GONE_ON_LEASE}, those whose records are not deleted yet first. */
  private goneOnLease(): string[] {
    const out: string[] = [];
    for (const [id, g] of this.gone) if (g.deletedAt === undefined && out.length < GONE_ON_LEASE) out.push(id);
    for (const [id, g] of this.gone) if (g.deletedAt !== undefined && out.length < GONE_ON_LEASE) out.push(id);
    return out;
  }

  private async put(bucket: KvBucket | undefined, key: string, value: Uint8Array): Promise<number> {
    if (!bucket) return 0;
    const rev = await bucket.put(key, value);
    this.writes++;
    if (bucket === this.records && rev > this.recordsRev) this.recordsRev = rev;
    return rev;
  }

  /** Stops heartbeating and removes the lease and the marker (after every instance deregistered). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.pending.clear();
    this.outage = undefined;
    await this.pulse?.stop();
    this.pulse = undefined;
    if (this.timer) clearInterval(this.timer);
    if (this.throttle) clearTimeout(this.throttle);
    this.timer = undefined;
    this.throttle = undefined;
    try {
      await this.beating;
      const deleting = this.gone.size > 0 ? this.deleteGone() : undefined;
      // The lease goes first: every watcher drops every instance of this process on that one
      // delete, however many record deletes are still on their way.
      // Nothing to remove when no lease write was ever sent (every instance waited for the registry).
      if (this.seq > 0) {
        await this.leases?.delete(this.lease);
        await this.records?.delete(markerKey(this.lease));
        // Dynamic-property chunks are not kept past the process (the janitors delete those of a killed one).
        await pool([...this.chunks.keys()], REGISTRY_CONCURRENCY, (chunk) => this.records?.delete(dynKey(this.lease, chunk)) ?? Promise.resolve());
      }
      // The record deletes get half a heartbeat more (a close is bounded by a one-second step);
      // what the registry has not taken by then is left to the janitors, which delete the
      // records of a dead lease.
      if (deleting) await settlesWithin(deleting, this.settings.heartbeatMs / 2);
    } catch {
      // the lease TTL removes what could not be deleted
    }
  }
}

/**
 * Runs `fn` over `items` with at most `limit` in flight; resolves when all
 * settled. After a failure no further item starts (a registry that stopped
 * answering is not sent the rest, one timeout each); rejects with the first
 * error once those in flight settled.
 */
export async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  let firstError: unknown;
  let failed = false;
  const lane = async (): Promise<void> => {
    while (next < items.length && !failed) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (err) {
        if (!failed) firstError = err;
        failed = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  if (failed) throw firstError;
}

/** The record key of endpoint `a` of `instanceId`: `held` when it is that text (the caller's string, not a copy), else a new one. */
function sameKey(held: string | undefined, a: EndpointAddress, instanceId: string): string {
  const key = registryKey(a, instanceId);
  return held === key ? held : key;
}
