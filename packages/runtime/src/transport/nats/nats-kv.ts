import type { KV, KvEntry as NatsKvEntry, NatsConnection, StoredMsg } from 'nats';
import { TroupeError } from '../../errors';
import { withTimeout } from '../../timeout';
import type { KvBucket, KvEntry, KvOptions, LogOptions, MessageLog, Persistence } from '../transport';
import { openNatsLog } from './nats-log';
import { checkBucketName, checkKvKey } from '../kv-names';

/**
 * JetStream storage behind the {@link Persistence} seam: KV buckets through
 * nats.js's `views.kv`. A server without JetStream gets an error that names
 * the fix instead of a silent empty registry.
 */
export class NatsPersistence implements Persistence {
  constructor(private readonly nc: NatsConnection) {}

  log(name: string, options: LogOptions): Promise<MessageLog> {
    return openNatsLog(this.nc, name, options);
  }

  async kv(bucket: string, options: KvOptions): Promise<KvBucket> {
    checkBucketName(bucket);
    if (this.nc.info && this.nc.info.jetstream !== true) {
      throw new TroupeError(
        'UNAVAILABLE',
        `the NATS server at ${this.nc.getServer()} has no JetStream: Troupe's registry is a JetStream KV bucket. Start nats-server with -js (or "jetstream {}" in its config), or use the embedded runtime`,
        { data: { noStorage: true } },
      );
    }
    try {
      const js = this.nc.jetstream();
      const kv = await js.views.kv(bucket, { ttl: options.ttlMs > 0 ? options.ttlMs : 0, history: 1, replicas: options.replicas ?? 1 });
      return new NatsBucket(kv, this.nc, bucket);
    } catch (err) {
      // JetStream off for this account: configuration, not an outage (no wait fixes it).
      const off = JETSTREAM_OFF.has((err as { api_error?: { err_code?: number } })?.api_error?.err_code ?? 0);
      throw new TroupeError(
        'UNAVAILABLE',
        `cannot open the JetStream KV bucket ${bucket}: ${(err as Error).message}${off ? '. Enable JetStream for this account, or use the embedded runtime' : ''}`,
        { cause: err, ...(off ? { data: { noStorage: true } } : {}) },
      );
    }
  }
}

/** JetStream API error codes that mean JetStream is off (not enabled, not enabled for the account). */
const JETSTREAM_OFF = new Set([10076, 10039]);

/** Delete markers removed per `purgeDeletes` call at most (the rest waits for the next call). */
const PURGE_BATCH = 10_000;
/** Longest read of a bucket's markers, ms. */
const PURGE_READ_MS = 30_000;
/** Stream purge requests in flight at once. */
const PURGE_IN_FLIGHT = 64;

/** Pause between attempts to resume a watch that nats.js ended. */
const WATCH_RETRY_MS = 250;

/** How long a consumer check may take before the watch is doubled by a fresh consumer, ms. */
const CHECK_TIMEOUT_MS = 500;

/** Entries one catch-up read delivers at most (see `catchUp`). */
const CATCH_UP_MAX = 1_000;

type Iter = { stop(err?: Error): void };

/** nats.js's direct and stream message-get APIs with the `next_by_subj` query both servers take (2.9+). */
type MsgGetter = { getMessage(stream: string, query: { seq: number; next_by_subj: string }): Promise<StoredMsg> };

/** One live watch of a {@link NatsBucket}. */
interface WatchState {
  readonly filter: string;
  readonly handler: (entry: KvEntry) => void;
  /** Last revision delivered (entries at or below it from another iterator are duplicates). */
  last: number;
  /** Highest announced revision a check found this watch's consumer alive for. */
  checked: number;
  checking: boolean;
  stopped: boolean;
  /** The initial listing is over (delete markers before it are skipped). */
  synced: boolean;
  /** Its nats.js iterators, newest last: usually one; two while a suspect consumer is doubled. */
  readonly iters: Iter[];
}

/** The JetStream subscription behind a nats.js KV watch iterator (nats.js v2 keeps it in `_data`; not public API). */
function subscriptionOf(iter: unknown): { consumerInfo(): Promise<unknown> } | undefined {
  const sub = (iter as { _data?: { consumerInfo?: () => Promise<unknown> } })._data;
  return typeof sub?.consumerInfo === 'function' ? (sub as { consumerInfo(): Promise<unknown> }) : undefined;
}

/** JetStream's answer for a consumer that does not exist (API error 10014, status 404). */
function consumerGone(err: unknown): boolean {
  const api = (err as { api_error?: { err_code?: number; code?: number } })?.api_error;
  return api?.err_code === 10014 || (api?.code === 404 && /consumer not found/i.test((err as Error).message ?? ''));
}

class NatsBucket implements KvBucket {
  private readonly watches = new Set<WatchState>();

  constructor(
    private readonly kv: KV,
    private readonly nc: NatsConnection,
    private readonly name: string,
  ) {}

  async put(key: string, value: Uint8Array): Promise<number> {
    checkKvKey(key);
    try {
      return await this.kv.put(key, value);
    } catch (err) {
      throw new TroupeError('UNAVAILABLE', `KV put ${key} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  async get(key: string): Promise<KvEntry | undefined> {
    checkKvKey(key);
    const e = await this.kv.get(key);
    return e && e.operation === 'PUT' ? toEntry(e) : undefined;
  }

  async delete(key: string): Promise<void> {
    checkKvKey(key);
    try {
      await this.kv.delete(key);
    } catch (err) {
      throw new TroupeError('UNAVAILABLE', `KV delete ${key} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  async purge(): Promise<void> {
    // List first: purging while nats.js's keys() iterator runs ends it after the first key.
    const keys: string[] = [];
    for await (const k of await this.kv.keys()) keys.push(k);
    for (const k of keys) await this.kv.purge(k);
  }

  /**
   * nats.js's own `purgeDeletes` sends one stream purge per marker all at
   * once: with tens of thousands of markers every request times out. This
   * reads the markers the same way (a watch until it is initialised) and
   * purges at most {@link PURGE_BATCH} of them per call, {@link PURGE_IN_FLIGHT}
   * at a time; the next call takes the rest.
   */
  async purgeDeletes(olderThanMs: number): Promise<number> {
    const before = Date.now() - olderThanMs;
    const old: string[] = [];
    try {
      // Read every entry up to the stream's last sequence now (later writes are the next call's).
      const status = await this.kv.status();
      if (status.values === 0) return 0;
      const last = status.streamInfo.state.last_seq;
      const iter = await this.kv.watch({ key: '>' });
      const guard = setTimeout(() => iter.stop(), PURGE_READ_MS);
      try {
        for await (const e of iter) {
          if (e.operation !== 'PUT' && e.created.getTime() <= before && old.length < PURGE_BATCH) old.push(e.key);
          if (e.revision >= last) break;
        }
      } finally {
        clearTimeout(guard);
        iter.stop();
      }
      // No API check: it is an account-info request, which waits for the meta leader.
      const jsm = await this.nc.jetstreamManager({ checkAPI: false });
      const stream = `KV_${this.name}`;
      let purged = 0;
      for (let i = 0; i < old.length; i += PURGE_IN_FLIGHT) {
        const results = await Promise.all(
          old.slice(i, i + PURGE_IN_FLIGHT).map((k) => jsm.streams.purge(stream, { filter: `$KV.${this.name}.${k}`, keep: 0 })),
        );
        for (const r of results) purged += r.purged;
      }
      return purged;
    } catch (err) {
      throw new TroupeError('UNAVAILABLE', `KV purge of delete markers failed: ${(err as Error).message}`, { cause: err });
    }
  }

  async watch(filter: string, handler: (entry: KvEntry) => void, onSynced?: () => void): Promise<() => void> {
    // Until synced the watch lists current entries only: JetStream replays delete and purge
    // markers too, which would be deletes of keys this watcher never saw (the memory bus lists none).
    const state: WatchState = { filter, handler, last: 0, checked: 0, checking: false, stopped: false, synced: false, iters: [] };
    const first = await this.kv.watch({
      key: filter,
      initializedFn: () => {
        state.synced = true;
        onSynced?.();
      },
    });
    this.watches.add(state);
    this.pump(state, first);
    return () => {
      state.stopped = true;
      this.watches.delete(state);
      for (const it of state.iters.splice(0)) it.stop();
    };
  }

  /**
   * Delivers one iterator's entries, skipping revisions already delivered (two iterators of
   * one watch, both ordered, may overlap). When the last iterator of a live watch ends,
   * resumes after the last revision delivered: nats.js ends a watch whose ordered consumer
   * it could not re-create (the stream had no leader: a JetStream election).
   */
  private pump(state: WatchState, iter: AsyncIterable<NatsKvEntry> & Iter): void {
    state.iters.push(iter);
    // At most two: a third (the check doubled a watch twice) retires the oldest.
    if (state.iters.length > 2) state.iters.shift()?.stop();
    void (async () => {
      try {
        for await (const e of iter) if (e.revision > state.last) deliver(state, toEntry(e));
      } catch {
        // ended with an error: resumed below like a plain end
      }
      const i = state.iters.indexOf(iter);
      if (i >= 0) state.iters.splice(i, 1);
      if (state.iters.length > 0) return; // another iterator carries the watch
      for (;;) {
        if (state.stopped || this.nc.isClosed()) return;
        await new Promise((r) => setTimeout(r, WATCH_RETRY_MS));
        if (state.stopped || this.nc.isClosed()) return;
        let next: AsyncIterable<NatsKvEntry> & Iter;
        try {
          next = await this.kv.watch({ key: state.filter, resumeFromRevision: state.last + 1 });
        } catch {
          continue;
        }
        if (state.stopped) return next.stop();
        return this.pump(state, next);
      }
    })();
  }

  /**
   * Reads the entries a watch missed (after its last revision, matching its filter) one by
   * one from the stream — a direct get, which any replica answers without the JetStream meta
   * leader — and delivers them. For a watch whose consumer died with the meta leader: no new
   * consumer can be made until the election ends, but the stream's leader and replicas serve
   * reads. At most {@link CATCH_UP_MAX} entries per call (the next announcement reads on).
   * Resolves with whether it delivered anything; never rejects.
   */
  private async catchUp(w: WatchState): Promise<boolean> {
    const stream = `KV_${this.name}`;
    const prefix = `$KV.${this.name}.`;
    const subject = prefix + w.filter;
    let delivered = false;
    try {
      // No API check: it is an account-info request, which waits for the meta leader.
      const jsm = await this.nc.jetstreamManager({ checkAPI: false });
      // nats.js keeps the direct API off its interface; a bucket without direct access (a
      // pre-2.9 server) is read through the stream leader's message-get API instead.
      const direct = (this.kv as { direct?: boolean }).direct === true ? (jsm as unknown as { direct?: MsgGetter }).direct : undefined;
      const api = direct ?? (jsm.streams as unknown as MsgGetter);
      for (let i = 0; i < CATCH_UP_MAX && !w.stopped; i++) {
        const m = await withTimeout(api.getMessage(stream, { seq: w.last + 1, next_by_subj: subject }), CHECK_TIMEOUT_MS, () => {
          throw new Error(`direct get did not answer within ${CHECK_TIMEOUT_MS} ms`);
        });
        const op = m.header?.get('KV-Operation') ?? '';
        const operation = op === 'DEL' || op === 'PURGE' ? 'DEL' : 'PUT';
        const before = w.last;
        deliver(w, { key: m.subject.slice(prefix.length), value: m.data, revision: m.seq, operation });
        if (w.last === before) break; // nothing newer (a replica behind the watch)
        delivered = true;
      }
    } catch {
      // 404 (nothing newer), no replica answering, or direct gets off: what was read stays delivered.
    }
    return delivered;
  }

  /**
   * Checks each watch that has not delivered `revision` (and was not found alive for it
   * already): its consumer must answer a consumer-info request within
   * {@link CHECK_TIMEOUT_MS}. One that is gone is replaced; one that does not answer (its
   * node died, or the JetStream API is in an election) is doubled by a fresh consumer
   * resuming after the last revision delivered — the old one keeps running in case it was
   * merely slow, and duplicates are skipped. `all` checks every watch (a sibling watch was
   * found dead) without recording the revision.
   */
  async verifyWatches(revision: number, all = false): Promise<number> {
    let resumed = 0;
    await Promise.all(
      [...this.watches].map(async (w) => {
        if (w.checking || (!all && (w.last >= revision || w.checked >= revision))) return;
        const current = w.iters.at(-1);
        const sub = subscriptionOf(current);
        if (!sub) return;
        w.checking = true;
        let gone = false;
        try {
          await withTimeout(sub.consumerInfo(), CHECK_TIMEOUT_MS, () => {
            throw new Error(`consumer did not answer within ${CHECK_TIMEOUT_MS} ms`);
          });
          if (!all) w.checked = Math.max(w.checked, revision);
          return;
        } catch (err) {
          gone = consumerGone(err);
        } finally {
          w.checking = false;
        }
        if (w.stopped) return;
        // While a new consumer is made, read what the watch missed from the stream itself: no
        // consumer can be made while JetStream has no meta leader (the lost node held it; the
        // election takes 4-9 s on nats-server 2.9, and a create request waits that long). A
        // merely slow consumer delivers the same revisions later; they are skipped.
        const caught = this.catchUp(w);
        let created = false;
        try {
          const next = await this.kv.watch({ key: w.filter, resumeFromRevision: w.last + 1 });
          if (w.stopped) return next.stop();
          this.pump(w, next);
          created = true;
          if (!all) w.checked = Math.max(w.checked, revision);
          if (gone && current) current.stop();
        } catch {
          // No consumer now: the next announcement checks again; the old iterator's own retry
          // (nats.js ends it after missed heartbeats) resumes it later.
        }
        if ((await caught) || created) resumed++;
      }),
    );
    return resumed;
  }
}

/** Delivers one entry to a watch unless an iterator (or a catch-up) delivered its revision already. */
function deliver(state: WatchState, entry: KvEntry): void {
  if (entry.revision <= state.last || state.stopped) return;
  state.last = entry.revision;
  if (!state.synced && entry.operation !== 'PUT') return;
  state.handler(entry);
}

function toEntry(e: NatsKvEntry): KvEntry {
  return { key: e.key, value: e.value, revision: e.revision, operation: e.operation === 'PUT' ? 'PUT' : 'DEL' };
}
