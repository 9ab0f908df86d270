/**
 * The router: the hop between the frontend and the decode workers. It picks a
 * decode worker per request — KV-cache-aware (prefix overlap vs load, from the
 * workers' `kv_events`), round-robin, or the NATS queue group — and relays
 * the token stream, continuing it on another worker (gap-free) when its
 * worker dies mid-generation.
 */
import type { Subscription } from 'rxjs';
import {
  component,
  endpoint,
  injectConfig,
  injectInstance,
  Runtime,
  TroupeError,
  type Context,
  type EndpointClient,
  type InstanceInfo,
  type OnStart,
  type OnStop,
  type RouterSpec,
} from '@troupe/runtime';
import type { BlockRef } from './blocks';
import type { PipelineConfig } from './config';
import { KvIndex, kvRouter } from './kv-index';
import { Components, KvEvents, type GenerateRequest } from './protocol';
import { EOS } from './tokenizer';

/** What the router's `stats` endpoint reports. */
export interface RouterStats {
  mode: string;
  picks: number;
  /** Prompt blocks the chosen workers were predicted to hold, of all prompt blocks routed (KV mode). */
  predictedHitBlocks: number;
  routedBlocks: number;
  resyncs: number;
  indexedWorkers: number;
}

@component('router')
export class KvAwareRouter implements OnStart, OnStop {
  readonly index = new KvIndex();
  private decode!: EndpointClient<GenerateRequest, number>;
  private readonly subs: Subscription[] = [];
  private readonly resyncing = new Set<string>();
  private readonly seen = new Set<string>();
  private readonly counters = { picks: 0, predictedHitBlocks: 0, routedBlocks: 0, resyncs: 0 };

  constructor(
    @injectConfig() private readonly cfg: PipelineConfig,
    @injectInstance() private readonly info: InstanceInfo,
    private readonly runtime: Runtime,
  ) {}

  async onStart(): Promise<void> {
    const decode = this.runtime.namespace(this.info.namespace).component(Components.decode);
    let router: RouterSpec;
    switch (this.cfg.router) {
      case 'kv':
        router = kvRouter(this.index, {
          blockSize: this.cfg.blockSize,
          loadWeight: this.cfg.loadWeight,
          onPick: (hit, total) => {
            this.counters.picks++;
            this.counters.predictedHitBlocks += hit;
            this.counters.routedBlocks += total;
          },
        });
        break;
      case 'round-robin':
      case 'queue':
        router = this.cfg.router;
        break;
    }
    this.decode = decode.endpoint('generate').client<GenerateRequest, number>({ router });
    if (this.cfg.router !== 'kv') return;
    // Live KV events; a gap (or a first event that is not the publisher's first) means we missed some: reload that worker.
    this.subs.push(
      decode.events(KvEvents).subscribe((ev) => {
        const first = !this.seen.has(ev.publisher);
        this.seen.add(ev.publisher);
        if ((ev.gap ?? 0) > 0 || (first && ev.seq > 1)) void this.resync(ev.publisher);
        else this.index.apply(ev.publisher, ev.data);
      }),
    );
    // Workers that were serving before this router started, and workers that leave.
    this.subs.push(
      this.runtime.watchInstances(`${this.info.namespace}.${Components.decode}.blocks`).subscribe((list) => {
        const live = new Set(list.map((x) => x.instanceId));
        for (const id of live)
          if (!this.seen.has(id)) {
            this.seen.add(id);
            void this.resync(id);
          }
        for (const w of this.index.workers) if (!live.has(w)) this.index.forget(w);
      }),
    );
  }

  onStop(): void {
    for (const s of this.subs) s.unsubscribe();
  }

  /** Relays a generation from the chosen decode worker; on its death, continues on another one from where the client is. */
  @endpoint()
  async *generate(req: GenerateRequest, ctx: Context): AsyncGenerator<number> {
    if (!req || !Array.isArray(req.tokens)) throw new TroupeError('BAD_REQUEST', 'generate wants a GenerateRequest');
    const stream = this.decode.stream(req, {
      parent: ctx,
      migrate: this.cfg.migrate
        ? {
            attempts: 3,
            // Re-prefill of prompt + what was generated so far; the position-seeded sampler continues identically.
            resume: resumeGeneration,
          }
        : undefined,
    });
    for await (const token of stream) yield token;
  }

  /** Routing counters. */
  @endpoint()
  stats(): RouterStats {
    return { mode: this.cfg.router, ...this.counters, indexedWorkers: this.index.workers.length };
  }

  private async resync(worker: string): Promise<void> {
    if (this.resyncing.has(worker)) return;
    this.resyncing.add(worker);
    try {
      const client = this.runtime
        .namespace(this.info.namespace)
        .component(Components.decode)
        .endpoint('blocks')
        .client<undefined, { blocks: BlockRef[] }>()
        .direct(worker);
      const { blocks } = await client.call(undefined, { timeout: 5_000 });
      this.index.resync(worker, blocks);
      this.counters.resyncs++;
    } catch (err) {
      // It left or is busy: its entries stay until its next event (or it leaves the instance list).
      if (!(err instanceof TroupeError)) throw err;
    } finally {
      this.resyncing.delete(worker);
    }
  }
}

/**
 * The next request after a migration: prompt + every token delivered so far
 * (the new worker re-prefills them), and what is left of the budget. The
 * position-seeded sampler makes the continuation identical to what the lost
 * worker would have produced.
 */
export function resumeGeneration(r: GenerateRequest, got: readonly number[]): GenerateRequest {
  return { ...r, tokens: [...r.tokens, ...got], maxTokens: got.at(-1) === EOS ? 0 : Math.max(0, r.maxTokens - got.length) };
}
