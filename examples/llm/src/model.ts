/**
 * A small deterministic language model: token trigrams counted at start-up
 * from the text shipped in `data/corpus.txt` (original prose written for this
 * example, free to ship), backing off to bigrams and unigrams. Sampling is
 * seeded per *position*: the token at generated index i depends only on the
 * seed, i and the two tokens before it — so a stream that migrates to another
 * worker (which re-prefills what was generated so far) continues exactly as
 * the first worker would have.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { encode, EOS } from './tokenizer';

/** Where the corpus ships (outside `src`, beside `dist`). */
export const CORPUS_PATH = join(__dirname, '..', 'data', 'corpus.txt');

type Counts = Map<number, number>;

/** A seeded generator of uniform numbers in [0, 1) (splitmix32). */
export function rngAt(seed: number, position: number): () => number {
  let s = (Math.imul(seed | 0, 0x9e3779b1) ^ Math.imul(position + 1, 0x85ebca6b)) >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    z ^= z >>> 16;
    return (z >>> 0) / 4294967296;
  };
}

/**
 * The n-gram model.
 *
 * @example
 * const m = NgramModel.fromText(readFileSync(CORPUS_PATH, 'utf8'));
 * const next = m.sample([tokA, tokB], { seed: 42, position: 0, temperature: 0.8 });
 */
export class NgramModel {
  private readonly tri = new Map<string, Counts>();
  private readonly bi = new Map<number, Counts>();
  private readonly uni: Counts = new Map();

  private constructor() {}

  /** Counts the text's paragraphs (each ends with EOS, so the model learns to stop). */
  static fromText(text: string): NgramModel {
    const m = new NgramModel();
    for (const para of text.split(/\n\s*\n/)) {
      const trimmed = para.trim();
      if (trimmed.length === 0) continue;
      const ids = [...encode(trimmed), EOS];
      for (let i = 0; i < ids.length; i++) {
        const t = ids[i] as number;
        bump(m.uni, t);
        if (i >= 1) bump(getOr(m.bi, ids[i - 1] as number), t);
        if (i >= 2) bump(getOr(m.tri, `${ids[i - 2]},${ids[i - 1]}`), t);
      }
    }
    return m;
  }

  /** The model on the shipped corpus. */
  static load(path = CORPUS_PATH): NgramModel {
    return NgramModel.fromText(readFileSync(path, 'utf8'));
  }

  /** Distinct tokens the model can emit. */
  get vocabulary(): number {
    return this.uni.size;
  }

  /**
   * The next token after `context` (its last two tokens matter). Temperature
   * 0 is greedy (ties to the smaller id); otherwise counts are raised to
   * 1/temperature and sampled with the position's seeded generator.
   * `exclude` (the EOS token for `ignore_eos`) is never returned.
   */
  sample(context: readonly number[], opts: { seed: number; position: number; temperature: number; exclude?: number | undefined }): number {
    const a = context.at(-2);
    const b = context.at(-1);
    const dist = (a !== undefined && b !== undefined ? this.tri.get(`${a},${b}`) : undefined) ?? (b !== undefined ? this.bi.get(b) : undefined) ?? this.uni;
    let entries = [...dist.entries()].sort((x, y) => x[0] - y[0]);
    if (opts.exclude !== undefined) {
      entries = entries.filter(([t]) => t !== opts.exclude);
      if (entries.length === 0) entries = [...this.uni.entries()].filter(([t]) => t !== opts.exclude).sort((x, y) => x[0] - y[0]);
    }
    if (opts.temperature <= 0) {
      let best = entries[0] as [number, number];
      for (const e of entries) if (e[1] > best[1]) best = e;
      return best[0];
    }
    const weights = entries.map(([, c]) => Math.pow(c, 1 / opts.temperature));
    const total = weights.reduce((s, w) => s + w, 0);
    let r = rngAt(opts.seed, opts.position)() * total;
    for (let i = 0; i < entries.length; i++) {
      r -= weights[i] as number;
      if (r < 0) return (entries[i] as [number, number])[0];
    }
    return (entries.at(-1) as [number, number])[0];
  }
}

function bump(m: Counts, t: number): void {
  m.set(t, (m.get(t) ?? 0) + 1);
}

function getOr<K>(m: Map<K, Counts>, k: K): Counts {
  let c = m.get(k);
  if (!c) m.set(k, (c = new Map()));
  return c;
}
