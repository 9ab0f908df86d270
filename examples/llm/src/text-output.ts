/**
 * Turns generated token ids into the text a client sees: incremental
 * detokenization (never a broken multi-byte character), the end-of-text
 * token, and stop sequences — text that could still become a stop sequence
 * is held back until it cannot, and a matched stop sequence is never sent.
 */
import { Detokenizer, EOS } from './tokenizer';
import type { FinishReason } from './openai';

/**
 * @example
 * const out = new TextOutput(['\n\n']);
 * for await (const t of tokens) { const { text, done } = out.push(t); send(text); if (done) break; }
 * send(out.finish().text);
 */
export class TextOutput {
  private readonly detok = new Detokenizer();
  private full = '';
  private sent = 0;
  private readonly holdBack: number;
  /** Tokens consumed (the EOS token counts: it was generated). */
  tokens = 0;
  finishReason: FinishReason | undefined;

  constructor(private readonly stop: readonly string[]) {
    this.holdBack = stop.reduce((m, s) => Math.max(m, s.length - 1), 0);
  }

  /** Feeds one token; returns the text now safe to send and whether generation is finished. */
  push(token: number): { text: string; done: boolean } {
    this.tokens++;
    if (token === EOS) {
      this.finishReason = 'stop';
      return { text: this.release(true), done: true };
    }
    this.full += this.detok.push(token);
    const hit = this.findStop();
    if (hit !== undefined) {
      this.full = this.full.slice(0, hit);
      this.finishReason = 'stop';
      return { text: this.release(true), done: true };
    }
    return { text: this.release(false), done: false };
  }

  /** The stream ended (length limit): whatever was held back. */
  finish(): { text: string; reason: FinishReason } {
    if (this.finishReason === undefined) {
      this.full += this.detok.flush();
      const hit = this.findStop();
      if (hit !== undefined) {
        this.full = this.full.slice(0, hit);
        this.finishReason = 'stop';
      } else this.finishReason = 'length';
    }
    return { text: this.release(true), reason: this.finishReason };
  }

  /** All text so far (what a non-streaming response returns). */
  get text(): string {
    return this.full;
  }

  private findStop(): number | undefined {
    let best: number | undefined;
    const from = Math.max(0, this.sent - this.holdBack);
    for (const s of this.stop) {
      const i = this.full.indexOf(s, from);
      if (i >= 0 && (best === undefined || i < best)) best = i;
    }
    return best;
  }

  private release(all: boolean): string {
    let end = all ? this.full.length : Math.max(this.sent, this.full.length - this.holdBack);
    // Never end a delta between the two halves of a UTF-16 surrogate pair.
    const last = this.full.charCodeAt(end - 1);
    if (!all && end > this.sent && last >= 0xd800 && last <= 0xdbff) end--;
    const text = this.full.slice(this.sent, end);
    this.sent = end;
    return text;
  }
}
