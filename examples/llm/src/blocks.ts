/**
 * KV blocks: a prompt's tokens cut into fixed-size blocks, each named by a
 * hash chained over every block before it (as vLLM's prefix caching and
 * Dynamo's router do), so equal hashes mean equal prefixes. Decode workers
 * keep them in a bounded LRU cache; the router indexes the same hashes.
 */

/** A block's identity: 16 hex characters (two 32-bit FNV-1a lanes chained over every token up to the block's end). */
export type BlockHash = string;

/** One stored block: its hash and its parent's (undefined for a first block). */
export interface BlockRef {
  hash: BlockHash;
  parent?: BlockHash;
}

/** A block with its simulated KV payload, as prefill returns it. */
export interface KvBlock extends BlockRef {
  kv: Uint8Array;
}

/** Chained hashes of the full blocks of `tokens` (a trailing partial block has none). */
export function blockHashes(tokens: readonly number[], blockSize: number): BlockHash[] {
  const out: BlockHash[] = [];
  // Two independent 32-bit FNV-1a lanes (different offsets and primes) make a 64-bit name without BigInt.
  let pa = 0x811c9dc5;
  let pb = 0x9747b28c;
  for (let start = 0; start + blockSize <= tokens.length; start += blockSize) {
    let a = pa;
    let b = pb;
    for (let i = start; i < start + blockSize; i++) {
      const t = tokens[i] as number;
      a = Math.imul(a ^ t, 0x01000193);
      b = Math.imul(b ^ t, 0x5bd1e995);
      b ^= b >>> 15;
    }
    out.push((a >>> 0).toString(16).padStart(8, '0') + (b >>> 0).toString(16).padStart(8, '0'));
    pa = a;
    pb = b;
  }
  return out;
}

/** The simulated KV payload of a block: deterministic bytes derived from its hash (so a receiver can check it). */
export function kvPayload(hash: BlockHash, bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  let s = parseInt(hash.slice(0, 8), 16) >>> 0;
  for (let i = 0; i < bytes; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

/**
 * A bounded LRU cache of blocks (Map order is recency). `store` returns the
 * blocks it evicted to make room, so the owner can publish them as removed.
 *
 * @example
 * const cache = new BlockCache(256);
 * const { stored, removed } = cache.store([{ hash, parent }]);
 */
export class BlockCache {
  private readonly blocks = new Map<BlockHash, BlockRef>();

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.blocks.size;
  }

  get free(): number {
    return this.capacity - this.blocks.size;
  }

  /** How many leading hashes are cached (touching them as recently used). */
  matchPrefix(hashes: readonly BlockHash[]): number {
    let n = 0;
    for (const h of hashes) {
      const b = this.blocks.get(h);
      if (!b) break;
      this.blocks.delete(h);
      this.blocks.set(h, b);
      n++;
    }
    return n;
  }

  /** Stores blocks (most recent last); returns which were new and which were evicted. */
  store(blocks: readonly BlockRef[]): { stored: BlockRef[]; removed: BlockHash[] } {
    const stored: BlockRef[] = [];
    const removed: BlockHash[] = [];
    const incoming = new Set(blocks.map((b) => b.hash));
    for (const b of blocks) {
      if (this.blocks.has(b.hash)) {
        this.blocks.delete(b.hash);
        this.blocks.set(b.hash, b);
        continue;
      }
      while (this.blocks.size >= this.capacity) {
        const oldest = this.blocks.keys().next().value as BlockHash;
        if (incoming.has(oldest) && this.blocks.size <= incoming.size) break;
        this.blocks.delete(oldest);
        removed.push(oldest);
      }
      if (this.blocks.size >= this.capacity) break;
      this.blocks.set(b.hash, b);
      stored.push(b);
    }
    return { stored, removed };
  }

  /** Every cached block (for a router's resync). */
  list(): BlockRef[] {
    return [...this.blocks.values()];
  }
}

/** Builds parent-linked refs from a hash chain, from index `from`. */
export function chainRefs(hashes: readonly BlockHash[], from = 0): BlockRef[] {
  const out: BlockRef[] = [];
  for (let i = from; i < hashes.length; i++) {
    const parent = i === 0 ? undefined : hashes[i - 1];
    out.push(parent === undefined ? { hash: hashes[i] as BlockHash } : { hash: hashes[i] as BlockHash, parent });
  }
  return out;
}
