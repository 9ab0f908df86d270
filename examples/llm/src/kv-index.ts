/**
 * The KV-cache-aware router's prefix index, as in Dynamo's KV router: a radix
 * tree of chained block hashes, each node naming the workers that hold that
 * block. A lookup walks the request's hashes from the root and counts, per
 * worker, how many leading blocks it already holds; the router weighs that
 * overlap against each worker's load.
 */
import type { Router, RouterContext, InstanceRecord } from '@troupe/runtime';
import { blockHashes, type BlockHash, type BlockRef } from './blocks';
import type { GenerateRequest } from './protocol';

interface Node {
  readonly hash: BlockHash | undefined;
  readonly parent: Node | undefined;
  readonly children: Map<BlockHash, Node>;
  readonly workers: Set<string>;
}

/**
 * Block hashes → workers, as a tree of prefixes.
 *
 * @example
 * const idx = new KvIndex();
 * idx.apply('w1', { stored: [{ hash: 'a' }, { hash: 'b', parent: 'a' }], removed: [] });
 * idx.overlap(['a', 'b', 'c']); // Map { 'w1' => 2 }
 */
export class KvIndex {
  private readonly root: Node = newNode(undefined, undefined);
  /** Per worker: its blocks' nodes (so removal and resync need no tree walk). */
  private readonly byWorker = new Map<string, Map<BlockHash, Node>>();
  /** Every node by hash (a chained hash names one prefix). */
  private readonly nodes = new Map<BlockHash, Node>();

  /** Workers with at least one block indexed. */
  get workers(): string[] {
    return [...this.byWorker.keys()];
  }

  /** Blocks indexed for `worker`. */
  blocksOf(worker: string): number {
    return this.byWorker.get(worker)?.size ?? 0;
  }

  /** Applies a worker's KV event. A block whose parent is unknown hangs off the root (it still matches when walked to). */
  apply(worker: string, change: { stored: readonly BlockRef[]; removed: readonly BlockHash[] }): void {
    let mine = this.byWorker.get(worker);
    if (!mine) this.byWorker.set(worker, (mine = new Map()));
    for (const b of change.stored) {
      let node = this.nodes.get(b.hash);
      if (!node) {
        const parent = (b.parent !== undefined ? this.nodes.get(b.parent) : undefined) ?? this.root;
        node = newNode(b.hash, parent);
        parent.children.set(b.hash, node);
        this.nodes.set(b.hash, node);
      }
      node.workers.add(worker);
      mine.set(b.hash, node);
    }
    for (const h of change.removed) {
      const node = mine.get(h);
      if (!node) continue;
      mine.delete(h);
      node.workers.delete(worker);
      this.prune(node);
    }
  }

  /** Replaces everything known about `worker` (after a gap in its events). */
  resync(worker: string, blocks: readonly BlockRef[]): void {
    this.forget(worker);
    this.apply(worker, { stored: blocks, removed: [] });
  }

  /** Drops a worker (it left). */
  forget(worker: string): void {
    const mine = this.byWorker.get(worker);
    if (!mine) return;
    this.byWorker.delete(worker);
    for (const node of mine.values()) {
      node.workers.delete(worker);
      this.prune(node);
    }
  }

  /** Per worker, how many leading blocks of `hashes` it holds. */
  overlap(hashes: readonly BlockHash[]): Map<string, number> {
    const scores = new Map<string, number>();
    let node = this.root;
    let alive: Set<string> | undefined;
    for (let depth = 0; depth < hashes.length; depth++) {
      // The chained hash names the whole prefix, so a node found by hash anywhere is the right one.
      const next = node.children.get(hashes[depth] as BlockHash) ?? this.nodes.get(hashes[depth] as BlockHash);
      if (!next || next.workers.size === 0) break;
      const still = new Set<string>();
      for (const w of next.workers) if (alive === undefined || alive.has(w)) still.add(w);
      if (still.size === 0) break;
      for (const w of still) scores.set(w, depth + 1);
      alive = still;
      node = next;
    }
    return scores;
  }

  private prune(node: Node): void {
    let n: Node | undefined = node;
    while (n && n !== this.root && n.workers.size === 0 && n.children.size === 0) {
      n.parent?.children.delete(n.hash as BlockHash);
      this.nodes.delete(n.hash as BlockHash);
      n = n.parent;
    }
  }
}

function newNode(hash: BlockHash | undefined, parent: Node | undefined): Node {
  return { hash, parent, children: new Map(), workers: new Set() };
}

/**
 * The KV-aware routing function: for each routable decode worker, the cost of
 * serving the request there = prompt blocks it would have to prefill + load
 * (active sequences, the larger of its published `active` property and this
 * router's own in-flight count) × `loadWeight`. Lowest cost wins; ties go to
 * the less loaded, then at random. With an empty index every overlap is 0,
 * so it is least-loaded. After a pick the request's blocks are predicted on
 * the chosen worker, so a burst of requests sharing a prefix follows the
 * first one before its KV events arrive.
 *
 * @example
 * decode.client({ router: kvRouter(index, { blockSize: 16, loadWeight: 4 }) });
 */
export function kvRouter(index: KvIndex, opts: { blockSize: number; loadWeight: number; onPick?: (overlapBlocks: number, total: number) => void }): Router {
  return {
    name: 'kv-aware',
    pick(instances: readonly InstanceRecord[], request: unknown, ctx: RouterContext): string | undefined {
      if (instances.length === 0) return undefined;
      const req = request as GenerateRequest;
      const hashes = blockHashes(req.tokens, opts.blockSize);
      const overlaps = index.overlap(hashes);
      let best: string[] = [];
      let bestCost = Infinity;
      let bestLoad = Infinity;
      for (const x of instances) {
        const prop = Number(x.properties['active'] ?? 0);
        const load = Math.max(Number.isFinite(prop) ? prop : 0, ctx.inflight(x.instanceId));
        const cost = hashes.length - (overlaps.get(x.instanceId) ?? 0) + opts.loadWeight * load;
        if (cost < bestCost || (cost === bestCost && load < bestLoad)) {
          best = [x.instanceId];
          bestCost = cost;
          bestLoad = load;
        } else if (cost === bestCost && load === bestLoad) best.push(x.instanceId);
      }
      const chosen = best[Math.floor(Math.random() * best.length)];
      if (chosen !== undefined) {
        opts.onPick?.(overlaps.get(chosen) ?? 0, hashes.length);
        const refs: BlockRef[] = hashes.map((hash, i) => (i === 0 ? { hash } : { hash, parent: hashes[i - 1] as BlockHash }));
        index.apply(chosen, { stored: refs, removed: [] });
      }
      return chosen;
    },
  };
}
