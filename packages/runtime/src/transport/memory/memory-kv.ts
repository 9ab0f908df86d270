import type { KvBucket, KvEntry, KvOptions, LogOptions, MessageLog, Persistence } from '../transport';
import { MemoryLogs } from './memory-log';
import { subjectMatches } from '../../wire/subject-grammar';
import { checkBucketName, checkKvKey } from '../kv-names';
import { Slabs } from '../../codec/slab';
import { clockMs } from '../../clock';

const EMPTY = new Uint8Array(0);

/**
 * One stored value: where its bytes sit in a shared slab (or its own copy
 * when large), not a `Uint8Array` view of them (96 B each, 100,000 registry
 * records embedded); a view is made when it is read. No write time in a
 * bucket without a max age (the registry's records: 100,000 of them embedded,
 * −8 B each): see {@link TimedStored}.
 */
class Stored {
  /** The slab it sits in, or its own copy (see {@link Slabs.place}). */
  private readonly bytes: Uint8Array;
  /** Its offset and length in the slab, packed ({@link Slabs.place}); -1: all of `bytes`. */
  private readonly span: number;

  constructor(
    place: { readonly bytes: Uint8Array; readonly span: number },
    readonly revision: number,
  ) {
    this.bytes = place.bytes;
    this.span = place.span;
  }

  get value(): Uint8Array {
    return Slabs.view(this.bytes, this.span);
  }

  /** When written ({@link clockMs}); `untimed` for a value written while its bucket had no max age. */
  writtenAt(untimed: number): number {
    return untimed;
  }
}

/** A value of a bucket with a max age: with its write time. */
class TimedStored extends Stored {
  constructor(
    place: { readonly bytes: Uint8Array; readonly span: number },
    revision: number,
    /** When written ({@link clockMs}: a small integer, not a boxed double per entry). */
    private readonly at: number,
  ) {
    super(place, revision);
  }

  override writtenAt(): number {
    return this.at;
  }
}

interface Watcher {
  filter: string;
  handler: (e: KvEntry) => void;
}

/**
 * One in-process key-value bucket with the behaviour of a JetStream KV bucket
 * on nats-server 2.9: bucket-wide max age, expiry without a delete marker,
 * watch = current entries, then "synced", then changes (asynchronously).
 */
class MemoryBucket implements KvBucket {
  private readonly entries = new Map<string, Stored>();
  private readonly watchers = new Set<Watcher>();
  private revision = 0;
  /** Where the last put copied its value (one object reused, not one per put). */
  private readonly place = { bytes: EMPTY, span: -1 };

  constructor(
    private ttlMs: number,
    /** Where values are copied (the network's: records live long, so they share slabs with nothing transient). */
    private readonly slabs: Slabs,
  ) {}

  setTtl(ttlMs: number): void {
    // Values written without a max age have no write time: they age from now.
    if (this.ttlMs <= 0 && ttlMs > 0) this.ttlSince = clockMs();
    this.ttlMs = ttlMs;
  }

  /** When the bucket got its max age ({@link setTtl}): the age of values written before without one. */
  private ttlSince = 0;

  private live(key: string, now = clockMs()): Stored | undefined {
    const e = this.entries.get(key);
    if (e && this.ttlMs > 0 && now - e.writtenAt(this.ttlSince) > this.ttlMs) {
      this.entries.delete(key); // expired: no delete marker, like JetStream
      return undefined;
    }
    return e;
  }

  async put(key: string, value: Uint8Array): Promise<number> {
    checkKvKey(key);
    const revision = ++this.revision;
    // Its own copy (the caller may reuse its bytes); a registry record of ~100 B in an `ArrayBuffer` of its own costs ~250 B more of native memory.
    const place = this.place;
    this.slabs.place(value, place);
    const stored = this.ttlMs > 0 ? new TimedStored(place, revision, clockMs()) : new Stored(place, revision);
    place.bytes = EMPTY;
    this.entries.set(key, stored);
    if (this.watchers.size > 0) this.notify({ key, value: stored.value, revision, operation: 'PUT' });
    return revision;
  }

  async get(key: string): Promise<KvEntry | undefined> {
    checkKvKey(key);
    const e = this.live(key);
    return e ? { key, value: e.value, revision: e.revision, operation: 'PUT' } : undefined;
  }

  async delete(key: string): Promise<void> {
    checkKvKey(key);
    this.entries.delete(key);
    this.notify({ key, value: new Uint8Array(0), revision: ++this.revision, operation: 'DEL' });
  }

  async purge(): Promise<void> {
    for (const key of [...this.entries.keys()]) await this.delete(key);
  }

  /** Deletes here leave no marker behind: nothing to remove. */
  async purgeDeletes(): Promise<number> {
    return 0;
  }

  async watch(filter: string, handler: (entry: KvEntry) => void, onSynced?: () => void): Promise<() => void> {
    const w: Watcher = { filter, handler };
    const now = clockMs();
    const initial: KvEntry[] = [];
    for (const key of [...this.entries.keys()]) {
      const e = this.live(key, now);
      if (e && subjectMatches(filter, key)) initial.push({ key, value: e.value, revision: e.revision, operation: 'PUT' });
    }
    // In revision order, as JetStream replays its stream: a key written again comes after the keys written since.
    initial.sort((x, y) => x.revision - y.revision);
    this.watchers.add(w);
    setImmediate(() => {
      if (!this.watchers.has(w)) return;
      for (const e of initial) handler(e);
      onSynced?.();
    });
    return () => {
      this.watchers.delete(w);
    };
  }

  private notify(entry: KvEntry): void {
    for (const w of this.watchers) {
      if (!subjectMatches(w.filter, entry.key)) continue;
      // Asynchronous like a JetStream push consumer: never inside put().
      setImmediate(() => {
        if (this.watchers.has(w)) w.handler(entry);
      });
    }
  }
}

/**
 * The memory network's storage: buckets live as long as the network, shared
 * by all its connections, and nothing is global.
 */
export class MemoryPersistence implements Persistence {
  private readonly buckets = new Map<string, MemoryBucket>();
  /** The buckets' values, copied into shared slabs. */
  private readonly slabs = new Slabs();
  /** Durable logs (events); the bus hands them every publish while one exists. */
  readonly logs = new MemoryLogs();

  log(name: string, options: LogOptions): Promise<MessageLog> {
    return this.logs.open(name, options);
  }

  async kv(bucket: string, options: KvOptions): Promise<KvBucket> {
    checkBucketName(bucket);
    let b = this.buckets.get(bucket);
    if (!b) {
      b = new MemoryBucket(options.ttlMs, this.slabs);
      this.buckets.set(bucket, b);
    }
    return b;
  }
}
