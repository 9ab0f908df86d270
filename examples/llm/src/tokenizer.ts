/**
 * The preprocessor's tokenizer: OpenAI's cl100k_base BPE from `gpt-tokenizer`
 * (the package ships its vocabulary, so nothing is downloaded at run time),
 * the ChatML chat template gpt-4 uses, and an incremental detokenizer that
 * never splits a multi-byte character across two text deltas.
 *
 * We read token bytes ourselves instead of calling the package's `decode`:
 * gpt-tokenizer 4.0.0 decodes through one module-wide `TextDecoder` in
 * streaming mode and never flushes it, so the trailing bytes of an
 * incomplete character from one `decode()` call leak into the next call —
 * another stream's text, in a server detokenizing many at once.
 */
import * as cl100k from 'gpt-tokenizer/cjs/encoding/cl100k_base';

/** One chat message after validation. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'developer' | 'tool';
  content: string;
}

interface BpeCore {
  tryDecodeToken(token: number): Uint8Array | string | undefined;
}
const core = (cl100k.default as unknown as { bytePairEncodingCoreProcessor?: BpeCore }).bytePairEncodingCoreProcessor;
if (typeof core?.tryDecodeToken !== 'function') {
  throw new Error('gpt-tokenizer changed its internals: bytePairEncodingCoreProcessor.tryDecodeToken is gone (pin gpt-tokenizer 4.0.x)');
}
const bpe: BpeCore = core;

// ChatML control tokens of cl100k as gpt-tokenizer's own `encodeChat(…, 'gpt-4')` emits them.
const [IM_START, , IM_SEP, IM_END] = cl100k.encodeChat([{ role: 'user', content: '' }], 'gpt-4') as [number, number, number, number];

/** The end-of-text token: the model emits it to finish (finish_reason `stop`). */
export const EOS = cl100k.encode('<|endoftext|>', { allowedSpecial: new Set(['<|endoftext|>']) })[0] as number;

/** Token ids of a plain text; special-token text in user input is encoded as ordinary text, never as control tokens. */
export function encode(text: string): number[] {
  return cl100k.encode(text, { disallowedSpecial: new Set() });
}

/** The bytes (or, for a special token, the text) of one token. */
function tokenBytes(token: number): Uint8Array | string {
  const b = bpe.tryDecodeToken(token);
  if (b === undefined) throw new RangeError(`token ${token} is not in the cl100k_base vocabulary`);
  return b;
}

/** Text of token ids (an incomplete trailing character becomes U+FFFD). */
export function decode(tokens: readonly number[]): string {
  const d = new Detokenizer();
  let out = '';
  for (const t of tokens) out += d.push(t);
  return out + d.flush();
}

/**
 * The gpt-4 ChatML template: each message as
 * `<|im_start|>{role}<|im_sep|>{content}<|im_end|>`, then
 * `<|im_start|>assistant<|im_sep|>` so the model continues as the assistant.
 * Control tokens are inserted as ids; message content never becomes one.
 */
export function applyChatTemplate(messages: readonly ChatMessage[]): number[] {
  const out: number[] = [];
  for (const m of messages) out.push(IM_START, ...encode(m.role), IM_SEP, ...encode(m.content), IM_END);
  out.push(IM_START, ...encode('assistant'), IM_SEP);
  return out;
}

/**
 * Incremental detokenization: feed token ids one at a time, get the text they
 * complete. A token that ends inside a multi-byte UTF-8 character (an emoji is
 * often two or three tokens) produces nothing until the character completes,
 * so no delta ever carries a broken character. Each instance has its own
 * streaming `TextDecoder`.
 *
 * @example
 * const d = new Detokenizer();
 * for (const t of ids) process.stdout.write(d.push(t));
 * process.stdout.write(d.flush());
 */
export class Detokenizer {
  private readonly utf8 = new TextDecoder('utf-8');

  /** The text completed by `token` ('' while a character is still incomplete). */
  push(token: number): string {
    const b = tokenBytes(token);
    if (typeof b === 'string') return this.utf8.decode() + b; // a special token ends any pending character
    return this.utf8.decode(b, { stream: true });
  }

  /** Whatever is still held back (an incomplete character at the very end: U+FFFD). */
  flush(): string {
    return this.utf8.decode();
  }
}
