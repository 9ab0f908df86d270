/**
 * The preprocessor's tokenizer: OpenAI's cl100k_base BPE from `gpt-tokenizer`
 * (the package ships its vocabulary, so nothing is downloaded at run time),
 * a ChatML chat template, and an incremental detokenizer that never splits a
 * multi-byte character across two text deltas.
 */
import * as cl100k from 'gpt-tokenizer/cjs/encoding/cl100k_base';

/** One chat message after validation. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'developer' | 'tool';
  content: string;
}

const IM_START = '<|im_start|>';
const IM_END = '<|im_end|>';
const SPECIAL_IN_TEMPLATE = new Set([IM_START, IM_END]);

/** The end-of-text token: the model emits it to finish (finish_reason `stop`). */
export const EOS = cl100k.encode('<|endoftext|>', { allowedSpecial: new Set(['<|endoftext|>']) })[0] as number;

/** Token ids of a plain text; special-token text in user input is encoded as ordinary text, never as control tokens. */
export function encode(text: string): number[] {
  return cl100k.encode(text, { disallowedSpecial: new Set() });
}

/** Text of token ids (a partial multi-byte character decodes to U+FFFD). */
export function decode(tokens: readonly number[]): string {
  return cl100k.decode(tokens);
}

/**
 * The ChatML template (what gpt-3.5/gpt-4 were trained on): each message as
 * `<|im_start|>{role}\n{content}<|im_end|>\n`, then the assistant's header
 * so the model continues as the assistant. The control tokens are inserted
 * as ids; message content never becomes a control token.
 */
export function applyChatTemplate(messages: readonly ChatMessage[]): number[] {
  const [start, end] = cl100k.encode(IM_START + IM_END, { allowedSpecial: SPECIAL_IN_TEMPLATE }) as [number, number];
  const out: number[] = [];
  for (const m of messages) {
    out.push(start, ...encode(`${m.role}\n`), ...encode(m.content), end, ...encode('\n'));
  }
  out.push(start, ...encode('assistant\n'));
  return out;
}

/**
 * Incremental detokenization: feed token ids one at a time, get the text they
 * complete. A token that ends inside a multi-byte UTF-8 character (an emoji is
 * often two or three tokens) produces nothing until the character completes,
 * so no delta ever carries a broken character (U+FFFD).
 *
 * @example
 * const d = new Detokenizer();
 * for (const t of ids) process.stdout.write(d.push(t));
 * process.stdout.write(d.flush());
 */
export class Detokenizer {
  private pending: number[] = [];
  private readonly out: string[] = [];

  /** The text completed by `token` ('' while a character is still incomplete). */
  push(token: number): string {
    this.pending.push(token);
    const text = decode(this.pending);
    // An incomplete trailing character decodes to U+FFFD: wait for the next token
    // (bounded: a UTF-8 character spans at most 4 bytes, so 4 tokens).
    if (text.endsWith('\uFFFD') && this.pending.length < 4) return '';
    this.pending = [];
    this.out.push(text);
    return text;
  }

  /** Whatever is still held back (an incomplete character at the very end). */
  flush(): string {
    if (this.pending.length === 0) return '';
    const text = decode(this.pending);
    this.pending = [];
    this.out.push(text);
    return text;
  }

  /** All text emitted so far. */
  get text(): string {
    return this.out.join('');
  }
}
