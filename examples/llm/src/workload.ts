/**
 * A prefix-sharing load for the pipeline's HTTP API, as LLM serving
 * benchmarks use it: many streaming chat requests, each with one of a few
 * long system prompts and a short unique question, `concurrency` in flight.
 * Measures time to first token, inter-token latency, output tokens per
 * second and the decode workers' KV-cache hit rate over the measured
 * requests. Used by `pnpm bench` (the `llm_*` cases).
 */
import { readFileSync } from 'node:fs';
import type { DecodeStats } from './protocol';
import { CORPUS_PATH } from './model';

export interface Workload {
  /** Measured requests, after `warmup` unmeasured ones (which fill the caches). */
  requests: number;
  warmup: number;
  concurrency: number;
  /** Distinct system prompts the requests share. */
  prefixes: number;
  /** Characters of each system prompt (~4.5 characters a token). */
  systemChars: number;
  maxTokens: number;
  model: string;
}

export interface WorkloadReport {
  /** Per request, ms from sending to the first content chunk. */
  ttftMs: number[];
  /** Every gap between two content chunks of a request, ms. */
  itlMs: number[];
  outputTokens: number;
  /** Wall time of the measured requests, ms. */
  durationMs: number;
  /** Prompt blocks found in a decode worker's cache ÷ looked up, over the measured requests. */
  kvHitRate: number;
  errors: number;
  firstError?: string;
}

/** The i-th system prompt: the corpus rotated to a different start, so prompts differ from their first block on. */
export function systemPrompt(i: number, chars: number): string {
  const text = readFileSync(CORPUS_PATH, 'utf8').replace(/\s+/g, ' ');
  const start = (i * 977) % text.length;
  let s = `You are assistant number ${i}. Answer in the voice of this story. ${text.slice(start)}${text.slice(0, start)}`;
  while (s.length < chars) s += ` ${text}`;
  return s.slice(0, chars);
}

async function decodeStats(url: string): Promise<{ hit: number; looked: number }> {
  const res = await fetch(`${url}/troupe/stats`);
  if (!res.ok) throw new Error(`GET /troupe/stats: ${res.status}`);
  const { decode } = (await res.json()) as { decode: DecodeStats[] };
  return decode.reduce((a, d) => ({ hit: a.hit + d.blocksHit, looked: a.looked + d.blocksLookedUp }), { hit: 0, looked: 0 });
}

/** One streaming request: TTFT, ITLs, output tokens. Throws on an HTTP or SSE error. */
async function oneRequest(url: string, body: unknown): Promise<{ ttft: number; itl: number[]; tokens: number }> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const reader = res.body.getReader();
  const utf8 = new TextDecoder();
  let buf = '';
  let ttft = -1;
  let last = 0;
  const itl: number[] = [];
  let tokens = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += utf8.decode(value, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
      const ev = JSON.parse(line.slice(6)) as {
        error?: { message: string };
        choices?: Array<{ delta?: { content?: string } }>;
        usage?: { completion_tokens: number };
      };
      if (ev.error) throw new Error(`SSE error: ${ev.error.message}`);
      if (ev.usage) tokens = ev.usage.completion_tokens;
      if (ev.choices?.[0]?.delta?.content) {
        const now = performance.now();
        if (ttft < 0) ttft = now - t0;
        else itl.push(now - last);
        last = now;
      }
    }
  }
  if (ttft < 0) throw new Error('the stream ended without content');
  return { ttft, itl, tokens };
}

/**
 * Runs the load against a frontend at `url`.
 *
 * @example
 * const r = await runWorkload('http://127.0.0.1:8080', { requests: 200, warmup: 16, concurrency: 16, prefixes: 8, systemChars: 4000, maxTokens: 32, model: 'troupe-ngram' });
 */
export async function runWorkload(url: string, w: Workload): Promise<WorkloadReport> {
  const prompts = Array.from({ length: w.prefixes }, (_, i) => systemPrompt(i, w.systemChars));
  // A fixed, well-mixed order of prefixes (the same for every system measured).
  const prefixOf = (n: number): number => (Math.imul(n + 1, 0x9e3779b1) >>> 20) % w.prefixes; // high bits: the low ones follow n's parity
  const bodyOf = (n: number): unknown => ({
    model: w.model,
    stream: true,
    stream_options: { include_usage: true },
    max_tokens: w.maxTokens,
    ignore_eos: true,
    seed: n,
    messages: [
      { role: 'system', content: prompts[prefixOf(n)] },
      { role: 'user', content: `Question ${n}: what happened next in the harbour?` },
    ],
  });
  const report: WorkloadReport = { ttftMs: [], itlMs: [], outputTokens: 0, durationMs: 0, kvHitRate: 0, errors: 0 };
  const run = async (from: number, count: number, record: boolean): Promise<void> => {
    let next = from;
    const worker = async (): Promise<void> => {
      while (next < from + count) {
        const n = next++;
        try {
          const r = await oneRequest(url, bodyOf(n));
          if (!record) continue;
          report.ttftMs.push(r.ttft);
          report.itlMs.push(...r.itl);
          report.outputTokens += r.tokens;
        } catch (err) {
          report.errors++;
          report.firstError ??= err instanceof Error ? err.message : String(err);
        }
      }
    };
    await Promise.all(Array.from({ length: w.concurrency }, worker));
  };
  await run(0, w.warmup, false);
  const before = await decodeStats(url);
  const t0 = performance.now();
  await run(w.warmup, w.requests, true);
  report.durationMs = performance.now() - t0;
  const after = await decodeStats(url);
  const looked = after.looked - before.looked;
  report.kvHitRate = looked > 0 ? (after.hit - before.hit) / looked : 0;
  return report;
}
