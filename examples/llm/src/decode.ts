/**
 * The decode worker: holds a bounded LRU cache of KV blocks, gets a prompt's
 * missing blocks from a prefill worker (or prefills locally when few are
 * missing), then streams generated token ids with the runtime's credit-based
 * flow control. It publishes every cache change as a `kv_events` event (the
 * router's prefix index feeds on them) and its load as dynamic properties
 * (`active`, `free_blocks`).
 */
import { component, endpoint, injectClient, injectConfig, TroupeError, type Context, type TypedClient } from '@troupe/runtime';
import { BlockCache, blockHashes, chainRefs, kvPayload, type BlockRef } from './blocks';
import type { PipelineConfig } from './config';
import { NgramModel } from './model';
import { Prefill } from './prefill';
import { GenerationEvents, KvEvents, type DecodeStats, type GenerateRequest } from './protocol';
import { simulate } from './sleep';
import { EOS } from './tokenizer';

// One model per process: every decode instance of the process shares the counts (they are read-only).
let sharedModel: NgramModel | undefined;

@component('decode')
export class Decode {
  private readonly cache: BlockCache;
  private readonly model: NgramModel;
  private active = 0;
  private readonly counters = { blocksLookedUp: 0, blocksHit: 0, remotePrefills: 0, localPrefills: 0, generated: 0, aborted: 0 };

  constructor(
    @injectConfig() private readonly cfg: PipelineConfig,
    @injectClient(Prefill) private readonly prefill: TypedClient<Prefill>,
  ) {
    this.cache = new BlockCache(cfg.kvBlocks);
    this.model = sharedModel ??= NgramModel.load();
  }

  /** Streams generated token ids for a prompt (see {@link GenerateRequest}). */
  @endpoint()
  async *generate(req: GenerateRequest, ctx: Context): AsyncGenerator<number> {
    checkRequest(req);
    const report = (phase: 'start' | 'end' | 'aborted', generated: number): void => {
      try {
        ctx.publish(GenerationEvents, { phase, requestId: req.requestId, instanceId: ctx.instanceId, pid: process.pid, generated, at: Date.now() });
      } catch (err) {
        ctx.logger.warn('could not report a generation event', { err: String(err) });
      }
    };
    let generated = 0;
    const onAbort = (): void => {
      this.counters.aborted++;
      ctx.logger.info('generation aborted', { requestId: req.requestId, generated });
      report('aborted', generated);
    };
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    this.active++;
    this.publishLoad(ctx);
    report('start', 0);
    try {
      await this.prefillPrompt(req, ctx);
      const context = req.tokens.slice(-2);
      const offset = req.tokens.length - req.promptTokens; // tokens generated before a migration
      for (let i = 0; i < req.maxTokens; i++) {
        await simulate(this.cfg.decodeStepMs * (1 + this.cfg.batchPenalty * (this.active - 1)), ctx.signal);
        const token = this.model.sample(context, {
          seed: req.seed,
          position: offset + i,
          temperature: req.temperature,
          exclude: req.ignoreEos ? EOS : undefined,
        });
        context.push(token);
        if (context.length > 2) context.shift();
        generated++;
        this.counters.generated++;
        yield token;
        if (token === EOS) break;
        // Asked to stop (the frontend shutting down past its grace): end cleanly with what was generated.
        if (ctx.stopSignal.aborted) break;
      }
      report('end', generated);
    } catch (err) {
      if (ctx.signal.aborted) throw new TroupeError('CANCELLED', 'generation cancelled', { cause: err });
      throw err;
    } finally {
      ctx.signal.removeEventListener('abort', onAbort);
      this.active--;
      this.publishLoad(ctx);
    }
  }

  /** Every block this worker caches: what a router reloads after it missed KV events. */
  @endpoint()
  blocks(): { blocks: BlockRef[] } {
    return { blocks: this.cache.list() };
  }

  /** Counters: cache hits, prefills, tokens, aborts. */
  @endpoint()
  stats(_req: unknown, ctx: Context): DecodeStats {
    return { instanceId: ctx.instanceId, ...this.counters, active: this.active, freeBlocks: this.cache.free };
  }

  /** Finds the cached prefix; fetches or computes the rest; publishes what the cache stored and evicted. */
  private async prefillPrompt(req: GenerateRequest, ctx: Context): Promise<void> {
    const hashes = blockHashes(req.tokens, this.cfg.blockSize);
    const hit = this.cache.matchPrefix(hashes);
    this.counters.blocksLookedUp += hashes.length;
    this.counters.blocksHit += hit;
    const uncached = req.tokens.length - hit * this.cfg.blockSize;
    let blocks: BlockRef[] | undefined;
    if (uncached > this.cfg.prefillThreshold) {
      try {
        const reply = await this.prefill.prefill({ tokens: req.tokens, fromBlock: hit }, { parent: ctx });
        blocks = reply.blocks.map((b) => {
          if (b.kv.length !== this.cfg.kvBytesPerBlock || b.kv[0] !== kvPayload(b.hash, 1)[0])
            throw new TroupeError('INTERNAL', `prefill sent a corrupt KV block ${b.hash}`);
          return b.parent === undefined ? { hash: b.hash } : { hash: b.hash, parent: b.parent };
        });
        this.counters.remotePrefills++;
      } catch (err) {
        const code = err instanceof TroupeError ? err.code : 'INTERNAL';
        // No prefill worker (or all busy): prefill here rather than fail the request.
        if (code !== 'NO_INSTANCES' && code !== 'OVERLOADED' && code !== 'INSTANCE_LOST') throw err;
        ctx.logger.debug('remote prefill unavailable, prefilling locally', { code });
      }
    }
    if (!blocks) {
      await simulate((uncached * this.cfg.prefillUsPerToken) / 1000, ctx.signal);
      blocks = chainRefs(hashes, hit);
      this.counters.localPrefills++;
    }
    const { stored, removed } = this.cache.store(blocks);
    if (stored.length > 0 || removed.length > 0) ctx.publish(KvEvents, { stored, removed });
    this.publishLoad(ctx);
  }

  private publishLoad(ctx: Context): void {
    ctx.setProperty('active', this.active);
    ctx.setProperty('free_blocks', this.cache.free);
  }
}

function checkRequest(req: GenerateRequest): void {
  const ok =
    req !== null &&
    typeof req === 'object' &&
    typeof req.requestId === 'string' &&
    Array.isArray(req.tokens) &&
    req.tokens.every((t) => Number.isInteger(t) && t >= 0) &&
    Number.isInteger(req.promptTokens) &&
    req.promptTokens >= 0 &&
    req.promptTokens <= req.tokens.length &&
    Number.isInteger(req.maxTokens) &&
    req.maxTokens >= 0 &&
    typeof req.temperature === 'number' &&
    req.temperature >= 0 &&
    Number.isInteger(req.seed);
  if (!ok) throw new TroupeError('BAD_REQUEST', 'generate wants { requestId, tokens: int[], promptTokens, maxTokens, temperature ≥ 0, seed: int }');
}
