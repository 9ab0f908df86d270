/**
 * Instance ids with a value each, where most ids arrive in large batches that
 * share one value (a spawn's instances share their registration: addresses,
 * properties, start time). A batch of {@link RUN_MIN} or more is kept as a
 * sorted array of its ids, a byte per id saying whether it left, and the one
 * value: ≈ 9 B per id, against ≈ 37 B for an entry in a `Map` of 100,000
 * (its hash table). Smaller batches go to a map. A lookup is a binary search
 * in the run the last lookup hit, then in the others (a run per large spawn).
 *
 * @example
 * const ids = new OwnedIds<string>();
 * ids.addMany(['b', 'a'], 'spawn-1');
 * ids.get('a'); // 'spawn-1'
 */
export class OwnedIds<V> {
  private readonly single = new Map<string, V>();
  private runs: Run<V>[] = [];
  private count = 0;
  /** The run the last lookup found its id in. */
  private last: Run<V> | undefined;

  /** Ids held now. */
  get size(): number {
    return this.count;
  }

  has(id: string): boolean {
    return this.single.has(id) || this.find(id) !== undefined;
  }

  get(id: string): V | undefined {
    const v = this.single.get(id);
    if (v !== undefined) return v;
    const at = this.find(id);
    return at === undefined ? undefined : at.run.value;
  }

  /** Sets `value` for every id of `ids` (distinct ids; an id held already takes the new value). */
  addMany(ids: readonly string[], value: V): void {
    for (const id of ids) this.delete(id);
    if (ids.length < RUN_MIN) {
      for (const id of ids) this.single.set(id, value);
    } else {
      // Code-unit order (`<`), as the binary search compares.
      const sorted = [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      this.runs.push({ ids: sorted, gone: new Uint8Array(sorted.length), live: sorted.length, value });
    }
    this.count += ids.length;
  }

  /** Removes `id`; whether it was held. */
  delete(id: string): boolean {
    if (this.single.delete(id)) {
      this.count--;
      return true;
    }
    const at = this.find(id);
    if (at === undefined) return false;
    const run = at.run;
    run.gone[at.index] = 1;
    this.count--;
    // A run whose ids all left goes (its arrays with it).
    if (--run.live === 0) {
      this.runs = this.runs.filter((r) => r !== run);
      if (this.last === run) this.last = undefined;
    }
    return true;
  }

  /** Every id held, with its value. */
  *entries(): IterableIterator<[string, V]> {
    yield* this.single;
    for (const run of [...this.runs]) {
      for (let i = 0; i < run.ids.length; i++) if (run.gone[i] === 0) yield [run.ids[i] as string, run.value];
    }
  }

  clear(): void {
    this.single.clear();
    this.runs = [];
    this.count = 0;
    this.last = undefined;
  }

  /**
   * The run holding `id`, the last run found first: lookups in a spawn's order (a health report, a stop) search
   * one run each, not every run a process with many large spawns holds.
   */
  private find(id: string): { run: Run<V>; index: number } | undefined {
    const last = this.last;
    if (last !== undefined) {
      const index = indexIn(last, id);
      if (index >= 0) return { run: last, index };
    }
    for (const run of this.runs) {
      if (run === last) continue;
      const index = indexIn(run, id);
      if (index >= 0) {
        this.last = run;
        return { run, index };
      }
    }
    return undefined;
  }
}

/** Where `run` holds `id` (not left), or -1. */
function indexIn<V>(run: Run<V>, id: string): number {
  const ids = run.ids;
  let lo = 0;
  let hi = ids.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const m = ids[mid] as string;
    if (m === id) return run.gone[mid] === 0 ? mid : -1; // left this run; it may be held in a later one
    if (m < id) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/** Batches from this size on are kept as a sorted run; smaller ones in the map. */
export const RUN_MIN = 64;

/** One large batch: its ids sorted, which of them left, how many did not, their shared value. */
interface Run<V> {
  readonly ids: readonly string[];
  readonly gone: Uint8Array;
  live: number;
  readonly value: V;
}
