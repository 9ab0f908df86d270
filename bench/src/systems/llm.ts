/**
 * The LLM pipeline of examples/llm as a benchmarked system. Worker side: one
 * process per component (`--role …` from the scenario, `--router …` from the
 * runner), all on the bench's nats-server in a namespace of their own; the
 * frontend's process reports its HTTP URL as the caller's endpoint. Caller
 * side: the prefix-sharing workload over the OpenAI-compatible API.
 */
import { parseConfig } from '@troupe/example-llm/dist/config';
import { startPipeline } from '@troupe/example-llm/dist/pipeline';
import { runWorkload } from '@troupe/example-llm/dist/workload';
import type { LlmResult, Measure } from '../plan';
import { percentile, sortNumbers } from '../stats';
import type { Driver, StartWorker } from './system';

const MODEL = 'troupe-ngram';

export const startWorker: StartWorker = async (url, args) => {
  const cfg = parseConfig([...args, '--port', '0'], { NATS_URL: url });
  const pipeline = await startPipeline(cfg);
  return { close: () => pipeline.stop(), ...(pipeline.url === undefined ? {} : { endpoint: pipeline.url }) };
};

/** `endpoint` is the frontend's URL (the harness passes it instead of the NATS URL). */
export async function connect(endpoint: string): Promise<Driver> {
  if (!/^https?:\/\//.test(endpoint)) throw new Error(`the LLM driver needs the frontend's HTTP URL, got ${JSON.stringify(endpoint)}`);
  return {
    async llmProbe() {
      const res = await fetch(`${endpoint}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: MODEL, max_tokens: 2, messages: [{ role: 'user', content: 'ready?' }] }),
      });
      if (!res.ok) throw new Error(`probe: HTTP ${res.status} ${await res.text()}`);
    },
    async llm(m: Extract<Measure, { kind: 'llm' }>): Promise<LlmResult> {
      const r = await runWorkload(endpoint, { ...m, model: MODEL });
      if (r.errors > 0.01 * m.requests) throw new Error(`${r.errors} of ${m.requests} requests failed; first: ${r.firstError}`);
      const ttft = sortNumbers(r.ttftMs);
      const itl = sortNumbers(r.itlMs);
      return {
        kind: 'llm',
        ttft_p50_ms: percentile(ttft, 50),
        ttft_p99_ms: percentile(ttft, 99),
        itl_p50_ms: percentile(itl, 50),
        itl_p99_ms: percentile(itl, 99),
        output_tokens_per_s: (r.outputTokens / r.durationMs) * 1000,
        kv_hit_pct: r.kvHitRate * 100,
        requests: r.ttftMs.length,
        errors: r.errors,
        ...(r.firstError === undefined ? {} : { firstError: r.firstError }),
      };
    },
    async close() {},
  };
}
