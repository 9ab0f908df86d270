/**
 * The OpenAI wire format: request validation (a bad request is a typed 400
 * at once, naming the field), response and chunk shapes, and error objects
 * with the HTTP status each Troupe error code maps to.
 */
import { TroupeError, type ErrorCode } from '@troupe/runtime';
import type { ChatMessage } from './tokenizer';

/** A validated generation request, whichever endpoint it came from. */
export interface ParsedRequest {
  kind: 'chat' | 'completion';
  model: string;
  messages?: ChatMessage[];
  prompt?: string;
  maxTokens: number;
  temperature: number;
  seed: number | undefined;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
  /** vLLM's extension: keep generating past the end-of-text token (fixed-length outputs for tests and benchmarks). */
  ignoreEos: boolean;
}

/** Output tokens when the request names no limit (chat: like vLLM's default of "what fits"; bounded here). */
const DEFAULT_MAX_TOKENS = { chat: 256, completion: 16 } as const;
export const MAX_TOKENS_LIMIT = 4_096;
const ROLES = new Set(['system', 'user', 'assistant', 'developer', 'tool']);

function bad(message: string, param: string): TroupeError {
  return new TroupeError('BAD_REQUEST', message, { data: { param } });
}

/** Validates a `/v1/chat/completions` or `/v1/completions` body. */
export function parseRequest(kind: 'chat' | 'completion', body: unknown): ParsedRequest {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw bad('the request body must be a JSON object', 'body');
  const b = body as Record<string, unknown>;
  if (typeof b['model'] !== 'string' || b['model'] === '') throw bad('`model` is required (a string)', 'model');
  const out: ParsedRequest = {
    kind,
    model: b['model'],
    maxTokens: DEFAULT_MAX_TOKENS[kind],
    temperature: 1,
    seed: undefined,
    stop: [],
    stream: false,
    includeUsage: false,
    ignoreEos: false,
  };
  if (kind === 'chat') {
    const msgs = b['messages'];
    if (!Array.isArray(msgs) || msgs.length === 0) throw bad('`messages` must be a non-empty array', 'messages');
    out.messages = msgs.map((m, i) => parseMessage(m, i));
  } else {
    let p = b['prompt'];
    if (Array.isArray(p) && p.length === 1) p = p[0];
    if (typeof p !== 'string') throw bad('`prompt` must be a string (or an array of one string)', 'prompt');
    out.prompt = p;
  }
  const max = b['max_completion_tokens'] ?? b['max_tokens'];
  if (max !== undefined && max !== null) {
    if (!Number.isInteger(max) || (max as number) < 1 || (max as number) > MAX_TOKENS_LIMIT) {
      throw bad(
        `\`max_tokens\` / \`max_completion_tokens\` must be an integer from 1 to ${MAX_TOKENS_LIMIT}`,
        b['max_completion_tokens'] !== undefined ? 'max_completion_tokens' : 'max_tokens',
      );
    }
    out.maxTokens = max as number;
  }
  const t = b['temperature'];
  if (t !== undefined && t !== null) {
    if (typeof t !== 'number' || !Number.isFinite(t) || t < 0 || t > 2) throw bad('`temperature` must be a number from 0 to 2', 'temperature');
    out.temperature = t;
  }
  const seed = b['seed'];
  if (seed !== undefined && seed !== null) {
    if (!Number.isSafeInteger(seed)) throw bad('`seed` must be an integer', 'seed');
    out.seed = seed as number;
  }
  const n = b['n'];
  if (n !== undefined && n !== null && n !== 1) throw bad('only `n` = 1 is supported', 'n');
  const stop = b['stop'];
  if (stop !== undefined && stop !== null) {
    const list = typeof stop === 'string' ? [stop] : stop;
    if (!Array.isArray(list) || list.length > 4 || !list.every((s) => typeof s === 'string' && s.length > 0)) {
      throw bad('`stop` must be a non-empty string or an array of up to 4 of them', 'stop');
    }
    out.stop = list as string[];
  }
  const ie = b['ignore_eos'];
  if (ie !== undefined && ie !== null) {
    if (typeof ie !== 'boolean') throw bad('`ignore_eos` must be a boolean', 'ignore_eos');
    out.ignoreEos = ie;
  }
  const stream = b['stream'];
  if (stream !== undefined && stream !== null) {
    if (typeof stream !== 'boolean') throw bad('`stream` must be a boolean', 'stream');
    out.stream = stream;
  }
  const so = b['stream_options'];
  if (so !== undefined && so !== null) {
    if (typeof so !== 'object' || Array.isArray(so)) throw bad('`stream_options` must be an object', 'stream_options');
    if (!out.stream) throw bad('`stream_options` is only allowed with `stream: true`', 'stream_options');
    const iu = (so as Record<string, unknown>)['include_usage'];
    if (iu !== undefined && typeof iu !== 'boolean') throw bad('`stream_options.include_usage` must be a boolean', 'stream_options.include_usage');
    out.includeUsage = iu === true;
  }
  return out;
}

function parseMessage(m: unknown, i: number): ChatMessage {
  if (m === null || typeof m !== 'object') throw bad(`messages[${i}] must be an object`, `messages[${i}]`);
  const { role, content } = m as { role?: unknown; content?: unknown };
  if (typeof role !== 'string' || !ROLES.has(role)) throw bad(`messages[${i}].role must be one of ${[...ROLES].join(', ')}`, `messages[${i}].role`);
  let text: string;
  if (typeof content === 'string') text = content;
  else if (
    Array.isArray(content) &&
    content.every((p) => p && typeof p === 'object' && (p as { type?: unknown }).type === 'text' && typeof (p as { text?: unknown }).text === 'string')
  ) {
    text = content.map((p) => (p as { text: string }).text).join('');
  } else if (content === null && role === 'assistant') text = '';
  else throw bad(`messages[${i}].content must be a string or an array of text parts`, `messages[${i}].content`);
  return { role: role as ChatMessage['role'], content: text };
}

/** HTTP status and OpenAI error type of each Troupe error code. */
export function httpStatus(code: ErrorCode): { status: number; type: string } {
  switch (code) {
    case 'BAD_REQUEST':
      return { status: 400, type: 'invalid_request_error' };
    case 'NOT_FOUND':
      return { status: 404, type: 'invalid_request_error' };
    case 'OVERLOADED':
      return { status: 429, type: 'rate_limit_error' };
    case 'NO_INSTANCES':
    case 'UNAVAILABLE':
      return { status: 503, type: 'service_unavailable' };
    case 'TIMEOUT':
      return { status: 504, type: 'timeout' };
    case 'PAYLOAD_TOO_LARGE':
      return { status: 413, type: 'invalid_request_error' };
    case 'CANCELLED':
      return { status: 499, type: 'cancelled' };
    case 'INSTANCE_LOST':
      return { status: 502, type: 'server_error' };
    case 'INTERNAL':
      return { status: 500, type: 'server_error' };
  }
}

/** An OpenAI error object for a Troupe error. */
export function errorBody(err: TroupeError, codeOverride?: string): { error: { message: string; type: string; param: string | null; code: string } } {
  const param = (err.data as { param?: unknown } | undefined)?.param;
  return {
    error: {
      message: err.message,
      type: httpStatus(err.code).type,
      param: typeof param === 'string' ? param : null,
      code: codeOverride ?? err.code.toLowerCase(),
    },
  };
}

export type FinishReason = 'stop' | 'length';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function usage(prompt: number, completion: number): Usage {
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** The body of a non-streaming response. */
export function completionBody(req: ParsedRequest, r: { id: string; created: number; text: string; finish: FinishReason; usage: Usage }): unknown {
  const { id, created, text, finish, usage: u } = r;
  if (req.kind === 'chat') {
    return {
      id,
      object: 'chat.completion',
      created,
      model: req.model,
      choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs: null, finish_reason: finish }],
      usage: u,
    };
  }
  return { id, object: 'text_completion', created, model: req.model, choices: [{ index: 0, text, logprobs: null, finish_reason: finish }], usage: u };
}

/** One streaming chunk: a text delta, a finish, or (choices empty) the usage. */
export function chunkBody(
  req: ParsedRequest,
  id: string,
  created: number,
  part: { text?: string; role?: boolean; finish?: FinishReason; usage?: Usage },
): unknown {
  const base = { id, object: req.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion', created, model: req.model };
  if (part.usage) return { ...base, choices: [], usage: part.usage };
  const finish = part.finish ?? null;
  if (req.kind === 'chat') {
    const delta: Record<string, string> = {};
    if (part.role) delta['role'] = 'assistant';
    if (part.text !== undefined) delta['content'] = part.text;
    return { ...base, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], ...(req.includeUsage ? { usage: null } : {}) };
  }
  return { ...base, choices: [{ index: 0, text: part.text ?? '', logprobs: null, finish_reason: finish }], ...(req.includeUsage ? { usage: null } : {}) };
}
