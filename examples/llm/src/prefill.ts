/**
 * The prefill worker: computes the KV blocks of a prompt (simulated: a cost
 * per token, and payload bytes derived from each block's hash) and hands them
 * to the decode worker that asked. One prompt at a time per instance
 * (concurrency 1), as one GPU batch would: queueing under load is real.
 */
import { component, endpoint, injectConfig, TroupeError, type Context } from '@troupe/runtime';
import { blockHashes, chainRefs, kvPayload } from './blocks';
import type { PipelineConfig } from './config';
import type { PrefillReply, PrefillRequest } from './protocol';
import { simulate } from './sleep';

@component('prefill')
export class Prefill {
  private computed = 0;

  constructor(@injectConfig() private readonly cfg: PipelineConfig) {}

  /** KV blocks of `tokens` from block `fromBlock` on (the ones the decode worker does not hold). */
  @endpoint()
  async prefill(req: PrefillRequest, ctx: Context): Promise<PrefillReply> {
    if (!req || !Array.isArray(req.tokens) || !Number.isInteger(req.fromBlock) || req.fromBlock < 0) {
      throw new TroupeError('BAD_REQUEST', 'prefill wants { tokens: number[], fromBlock: integer ≥ 0 }');
    }
    const hashes = blockHashes(req.tokens, this.cfg.blockSize);
    const from = Math.min(req.fromBlock, hashes.length);
    const tokens = req.tokens.length - from * this.cfg.blockSize;
    await simulate((tokens * this.cfg.prefillUsPerToken) / 1000, ctx.signal);
    this.computed += tokens;
    const blocks = chainRefs(hashes, from).map((b) => ({ ...b, kv: kvPayload(b.hash, this.cfg.kvBytesPerBlock) }));
    return { blocks, computed: tokens };
  }

  /** Tokens computed by this instance so far. */
  @endpoint()
  stats(): { computed: number } {
    return { computed: this.computed };
  }
}
