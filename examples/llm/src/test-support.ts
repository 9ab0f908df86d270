/**
 * Helpers shared by this example's tests: an embedded pipeline on an
 * OS-assigned port with fast simulated costs, an OpenAI client for it, and a
 * raw SSE reader for the cases the client hides (disconnects).
 */
import OpenAI from 'openai';
import { DEFAULT_CONFIG, type PipelineConfig } from './config';
import { startPipeline, type Pipeline } from './pipeline';

/** A config for tests: embedded, port 0, costs small enough for quick runs. */
export function testConfig(overrides: Partial<PipelineConfig> = {}): PipelineConfig {
  return {
    ...DEFAULT_CONFIG,
    replicas: { ...DEFAULT_CONFIG.replicas },
    port: 0,
    natsUrl: undefined,
    decodeStepMs: 2,
    prefillUsPerToken: 20,
    ...overrides,
  };
}

export async function startEmbedded(overrides: Partial<PipelineConfig> = {}): Promise<Pipeline> {
  return startPipeline(testConfig(overrides));
}

/** The official client, without its retries (a test sees every status). */
export function openaiFor(url: string): OpenAI {
  return new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 20_000 });
}

/** The chunks of an SSE body as parsed JSON (stops at `[DONE]`). */
export async function* sseEvents(res: Response): AsyncGenerator<unknown> {
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const utf8 = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += utf8.decode(value, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!line.startsWith('data: ')) continue;
      const data = line.slice(6);
      if (data === '[DONE]') return;
      yield JSON.parse(data);
    }
  }
}

export const MODEL = DEFAULT_CONFIG.model;
export const chatBody = (content: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  model: MODEL,
  messages: [{ role: 'user', content }],
  ...extra,
});
