import type { KV, KvEntry as NatsKvEntry, NatsConnection } from 'nats';
import { TroupeError } from '../../errors';
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
      );
    }
    try {
      const js = this.nc.jetstream();
      const kv = await js.views.kv(bucket, { ttl: options.ttlMs > 0 ? options.ttlMs : 0, history: 1, replicas: options.replicas ?? 1 });
      return new NatsBucket(kv, this.nc, bucket);
    } catch (err) {
      throw new TroupeError('UNAVAILABLE', `cannot open the JetStream KV bucket ${bucket}: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** Delete markers removed per `purgeDeletes` call at most (the rest waits for the next call). */
const PURGE_BATCH = 10_000;
/** Longest read of a bucket's markers, ms. */
const PURGE_READ_MS = 30_000;
/** Stream purge requests in flight at once. */
const PURGE_IN_FLIGHT = 64;

/** Pause between attempts to resume a watch that nats.js ended. */
const WATCH_RETRY_MS = 250;

class NatsBucket implements KvBucket {
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
      // Read every entry once: the last one replayed has nothing pending after it (delta 0).
      if ((await this.kv.status()).values === 0) return 0;
      const iter = await this.kv.watch({ key: '>' });
      const guard = setTimeout(() => iter.stop(), PURGE_READ_MS);
      try {
        for await (const e of iter) {
          if (e.operation !== 'PUT' && e.created.getTime() < before && old.length < PURGE_BATCH) old.push(e.key);
          if (e.delta === 0) break;
        }
      } finally {
        clearTimeout(guard);
        iter.stop();
      }
      const jsm = await this.nc.jetstreamManager();
      const stream = `KV_${this.name}`;
      let purged = 0;
      for (let i = 0; i < old.length; i += PURGE_IN_FLIGHT) {
        const results = await Promise.all(old.slice(i, i + PURGE_IN_FLIGHT).map((k) => jsm.streams.purge(stream, { filter: `$KV.${this.name}.${k}`, keep: 0 })));
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
    let synced = false;
    let iter = await this.kv.watch({
      key: filter,
      initializedFn: () => {
        synced = true;
        onSynced?.();
      },
    });
    let stopped = false;
    let last = 0;
    void (async () => {
      for (;;) {
        try {
          for await (const e of iter) {
            last = e.revision;
            if (!synced && e.operation !== 'PUT') continue;
            handler(toEntry(e));
          }
        } catch {
          // ended with an error: resumed below like a plain end
        }
        // nats.js ends a watch whose ordered consumer it could not re-create (the stream had
        // no leader: a JetStream election after a cluster node died). Resume after the last
        // revision seen until stopped or the connection is closed.
        for (;;) {
          if (stopped || this.nc.isClosed()) return;
          await new Promise((r) => setTimeout(r, WATCH_RETRY_MS));
          if (stopped || this.nc.isClosed()) return;
          try {
            iter = await this.kv.watch({ key: filter, resumeFromRevision: last + 1 });
          } catch {
            continue;
          }
          if (stopped) return iter.stop();
          break;
        }
      }
    })();
    return () => {
      stopped = true;
      iter.stop();
    };
  }
}

function toEntry(e: NatsKvEntry): KvEntry {
  return { key: e.key, value: e.value, revision: e.revision, operation: e.operation === 'PUT' ? 'PUT' : 'DEL' };
}
