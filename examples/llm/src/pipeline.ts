/**
 * Starts the roles a configuration names in this process: the whole pipeline
 * (embedded, one process, no server) or some of its components on NATS, each
 * process joining the same namespace. Configuration alone decides topology.
 */
import { Runtime, type SpawnHandle } from '@troupe/runtime';
import type { PipelineConfig, Role } from './config';
import { Decode } from './decode';
import { Frontend, FrontendComponent } from './frontend';
import { Prefill } from './prefill';
import { KvAwareRouter } from './router';

/** A running part of the pipeline. */
export interface Pipeline {
  readonly runtime: Runtime;
  readonly config: PipelineConfig;
  /** The frontend's URL when this process runs one. */
  readonly url: string | undefined;
  readonly frontend: Frontend | undefined;
  /** Spawned components by role. */
  readonly handles: Partial<Record<Role, SpawnHandle>>;
  /** Graceful stop: HTTP stops accepting and finishes in-flight responses, then every instance leaves and drains. */
  stop(): Promise<void>;
}

/** Grace for in-flight HTTP responses and instances at shutdown. */
const GRACE_MS = 10_000;

/**
 * Starts `cfg.roles` on `runtime` (default: NATS when `cfg.natsUrl` is set, else embedded).
 *
 * @example
 * const p = await startPipeline(parseConfig(['--port', '0']));
 * console.log(p.url); await p.stop();
 */
export async function startPipeline(cfg: PipelineConfig, runtime?: Runtime): Promise<Pipeline> {
  const rt =
    runtime ??
    (await Runtime.connect({
      ...(cfg.natsUrl ? { servers: cfg.natsUrl } : {}),
      name: `llm-${cfg.roles.join('+')}-${process.pid}`,
      gracePeriodMs: GRACE_MS,
    }));
  const handles: Partial<Record<Role, SpawnHandle>> = {};
  let frontend: Frontend | undefined;
  let url: string | undefined;
  try {
    // Workers first, so a frontend in the same process is routable the moment it listens.
    if (cfg.roles.includes('prefill')) {
      handles.prefill = await rt.spawn(Prefill, {
        namespace: cfg.namespace,
        replicas: cfg.replicas.prefill,
        config: cfg,
        concurrency: 1,
        mailboxCapacity: 1024,
      });
    }
    if (cfg.roles.includes('decode')) {
      handles.decode = await rt.spawn(Decode, {
        namespace: cfg.namespace,
        replicas: cfg.replicas.decode,
        config: cfg,
        concurrency: cfg.decodeConcurrency,
        mailboxCapacity: cfg.decodeCapacity,
        properties: { model: cfg.model, block_size: cfg.blockSize, kv_blocks: cfg.kvBlocks },
      });
    }
    if (cfg.roles.includes('router')) {
      handles.router = await rt.spawn(KvAwareRouter, {
        namespace: cfg.namespace,
        replicas: cfg.replicas.router,
        config: cfg,
        concurrency: 1024,
        mailboxCapacity: 4096,
        properties: { mode: cfg.router },
      });
    }
    if (cfg.roles.includes('frontend')) {
      frontend = new Frontend(rt, cfg);
      url = await frontend.start();
      handles.frontend = await rt.spawn(FrontendComponent, { namespace: cfg.namespace, config: { frontend, url }, properties: { url } });
    }
  } catch (err) {
    await frontend?.stop(0);
    if (!runtime) await rt.close();
    throw err;
  }
  let stopping: Promise<void> | undefined;
  return {
    runtime: rt,
    config: cfg,
    url,
    frontend,
    handles,
    stop: () =>
      (stopping ??= (async () => {
        await frontend?.stop(GRACE_MS);
        if (runtime) for (const h of Object.values(handles)) await h.stop();
        else await rt.close();
      })()),
  };
}
