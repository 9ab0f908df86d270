import type { KV, KvEntry as NatsKvEntry, NatsConnection } from 'nats';
import { TroupeError } from '../../errors';
import type { KvBucket, KvEntry, KvOptions, LogOptions, MessageLog, Persistence } from '../transport';
import { openNatsLog } from './nats-log';

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
    if (this.nc.info && this.nc.info.jetstream !== true) {
      throw new TroupeError(
        'UNAVAILABLE',
        `the NATS server at ${this.nc.getServer()} has no JetStream: Troupe's registry is a JetStream KV bucket. Start nats-server with -js (or "jetstream {}" in its config), or use the embedded runtime`,
      );
    }
    try {
      const js = this.nc.jetstream();
      const kv = await js.views.kv(bucket, { ttl: options.ttlMs > 0 ? options.ttlMs : 0, history: 1, replicas: options.replicas ?? 1 });
      return new NatsBucket(kv, this.nc);
    } catch (err) {
      throw new TroupeError('UNAVAILABLE', `cannot open the JetStream KV bucket ${bucket}: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** Pause between attempts to resume a watch that nats.js ended. */
const WATCH_RETRY_MS = 250;

/** One live watch of a {@link NatsBucket}. */
interface WatchState {
  /** Last revision delivered. */
  last: number;
  /** The current nats.js iterator; stopping it makes the watch resume after `last`. */
  iter: { stop(err?: Error): void };
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
  ) {}

  async put(key: string, value: Uint8Array): Promise<number> {
    try {
      return await this.kv.put(key, value);
    } catch (err) {
      throw new TroupeError('UNAVAILABLE', `KV put ${key} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  async get(key: string): Promise<KvEntry | undefined> {
    const e = await this.kv.get(key);
    return e && e.operation === 'PUT' ? toEntry(e) : undefined;
  }

  async delete(key: string): Promise<void> {
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

  async watch(filter: string, handler: (entry: KvEntry) => void, onSynced?: () => void): Promise<() => void> {
    let iter = await this.kv.watch({ key: filter, initializedFn: () => onSynced?.() });
    let stopped = false;
    const state: WatchState = { last: 0, iter };
    this.watches.add(state);
    void (async () => {
      for (;;) {
        try {
          for await (const e of iter) {
            state.last = e.revision;
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
            iter = await this.kv.watch({ key: filter, resumeFromRevision: state.last + 1 });
          } catch {
            continue;
          }
          if (stopped) return iter.stop();
          state.iter = iter;
          break;
        }
      }
    })();
    return () => {
      stopped = true;
      this.watches.delete(state);
      iter.stop();
    };
  }

  async verifyWatches(revision: number): Promise<number> {
    let resumed = 0;
    await Promise.all(
      [...this.watches].map(async (w) => {
        if (w.last >= revision) return;
        const sub = subscriptionOf(w.iter);
        if (!sub) return;
        try {
          await sub.consumerInfo();
        } catch (err) {
          // Only a definite "consumer not found" ends the iterator (the watch loop resumes after
          // the last revision it delivered). A timeout says nothing: during a meta-leader
          // election the consumer may be fine while no new one could be created, so a
          // healthy watch is left to nats.js.
          if (!consumerGone(err) || !this.watches.has(w)) return;
          resumed++;
          w.iter.stop();
        }
      }),
    );
    return resumed;
  }
}

function toEntry(e: NatsKvEntry): KvEntry {
  return { key: e.key, value: e.value, revision: e.revision, operation: e.operation === 'PUT' ? 'PUT' : 'DEL' };
}
