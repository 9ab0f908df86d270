/**
 * The starter's components: a `tokenizer` (unary) and a `gateway` (streaming)
 * that calls it. Copy this file into your project and rename things.
 */
import { type Context, component, endpoint, injectClient, TroupeError, type TypedClient } from '@troupe/runtime';

/** Splits text into words. A unary endpoint: one request, one reply. */
@component('tokenizer')
export class Tokenizer {
  @endpoint()
  tokenize(text: string): string[] {
    if (typeof text !== 'string') throw new TroupeError('BAD_REQUEST', 'tokenize takes a string');
    return text.split(/\s+/).filter((w) => w.length > 0);
  }
}

/** Streams the tokens of a prompt, upper-cased. A streaming endpoint (an async generator). */
@component('gateway')
export class Gateway {
  // A client of another component, injected; its calls are type-checked against Tokenizer.
  constructor(@injectClient(Tokenizer) private readonly tokenizer: TypedClient<Tokenizer>) {}

  @endpoint()
  async *generate(req: { prompt: string }, ctx: Context): AsyncGenerator<string> {
    if (typeof req?.prompt !== 'string') throw new TroupeError('BAD_REQUEST', 'generate takes { prompt: string }');
    // `parent: ctx` carries this request's deadline and cancellation to the nested call.
    const words = await this.tokenizer.tokenize(req.prompt, { parent: ctx });
    for (const word of words) {
      if (ctx.signal.aborted) return;
      yield word.toUpperCase();
    }
  }
}
