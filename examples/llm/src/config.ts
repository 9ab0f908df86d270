/**
 * The pipeline's configuration: which roles this process runs (all of them
 * embedded, or one per process on NATS), replica counts, the model's
 * simulated costs and the routing mode. Parsed from the command line, with
 * `PORT` and `NATS_URL` from the environment.
 */
import { TroupeError } from '@troupe/runtime';

/** Roles a process can run. `all` is the whole pipeline. */
export const Roles = ['frontend', 'router', 'prefill', 'decode'] as const;
export type Role = (typeof Roles)[number];

/** How the router picks a decode worker. */
export const RouterModes = ['kv', 'round-robin', 'queue'] as const;
export type RouterMode = (typeof RouterModes)[number];

export interface PipelineConfig {
  /** The namespace (pipeline) every component joins. */
  namespace: string;
  /** The model name served (what `/v1/models` lists and requests must name). */
  model: string;
  /** Tokens per KV block. */
  blockSize: number;
  /** Simulated prefill cost per prompt token not found in the cache, µs. */
  prefillUsPerToken: number;
  /** Simulated cost of one decode step, ms. */
  decodeStepMs: number;
  /** Each further active sequence on a decode worker slows its steps by this fraction (batching cost). */
  batchPenalty: number;
  /** Uncached prompt tokens above which decode asks a prefill worker instead of prefilling locally. */
  prefillThreshold: number;
  /** KV blocks one decode worker caches (LRU). */
  kvBlocks: number;
  /** Simulated KV payload per block, bytes. */
  kvBytesPerBlock: number;
  /** Decode worker routing. */
  router: RouterMode;
  /** Load weight of the KV router: how many uncached blocks one active sequence is worth. */
  loadWeight: number;
  /** Deadline of one generation, end to end (TIMEOUT → HTTP 504). */
  timeoutMs: number;
  /** Continue a stream on another decode worker when its worker dies. */
  migrate: boolean;
  /** Sequences one decode worker runs at once, and how many may wait before it answers OVERLOADED. */
  decodeConcurrency: number;
  decodeCapacity: number;
  /** Replicas per role in this process. */
  replicas: Record<Role, number>;
  /** Roles this process runs. */
  roles: Role[];
  /** HTTP port of the frontend (0: OS-assigned). */
  port: number;
  host: string;
  /** NATS server; undefined: embedded (everything in this process). */
  natsUrl: string | undefined;
}

export const DEFAULT_CONFIG: PipelineConfig = {
  namespace: 'llm',
  model: 'troupe-ngram',
  blockSize: 16,
  prefillUsPerToken: 200,
  decodeStepMs: 10,
  batchPenalty: 0.02,
  prefillThreshold: 64,
  kvBlocks: 1024,
  kvBytesPerBlock: 256,
  router: 'kv',
  loadWeight: 4,
  migrate: true,
  timeoutMs: 300_000,
  decodeConcurrency: 32,
  decodeCapacity: 256,
  replicas: { frontend: 1, router: 1, prefill: 1, decode: 2 },
  roles: [...Roles],
  port: 8080,
  host: '127.0.0.1',
  natsUrl: undefined,
};

const USAGE = `usage: node examples/llm/dist/main.js [--role all|frontend|router|prefill|decode[,…]] [--replicas N]
  [--port N] [--host H] [--namespace NS] [--model NAME] [--router kv|round-robin|queue] [--no-migrate] [--timeout-ms N]
  [--decode-step-ms N] [--prefill-us-per-token N] [--prefill-threshold N] [--block-size N] [--kv-blocks N]
  [--decode-concurrency N] [--decode-capacity N]
  [--decode-replicas N] [--prefill-replicas N] [--router-replicas N]
environment: PORT (default 8080), NATS_URL (unset: everything embedded in this process)`;

/** Parses argv (without node and the script) and the environment into a config. Bad input throws BAD_REQUEST naming it. */
export function parseConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): PipelineConfig {
  const cfg: PipelineConfig = { ...DEFAULT_CONFIG, replicas: { ...DEFAULT_CONFIG.replicas }, roles: [...DEFAULT_CONFIG.roles] };
  if (env['PORT'] !== undefined && env['PORT'] !== '') cfg.port = int('PORT', env['PORT'], 0);
  cfg.natsUrl = env['NATS_URL'] || undefined;
  let replicas: number | undefined;
  const args = [...argv];
  while (args.length > 0) {
    const flag = args.shift() as string;
    const value = (): string => {
      const v = args.shift();
      if (v === undefined) throw new TroupeError('BAD_REQUEST', `${flag} needs a value\n${USAGE}`);
      return v;
    };
    switch (flag) {
      case '--role': {
        const v = value();
        cfg.roles = v === 'all' ? [...Roles] : v.split(',').map((r) => oneOf('--role', r, Roles));
        break;
      }
      case '--replicas':
        replicas = int(flag, value(), 1);
        break;
      case '--decode-replicas':
        cfg.replicas.decode = int(flag, value(), 1);
        break;
      case '--prefill-replicas':
        cfg.replicas.prefill = int(flag, value(), 1);
        break;
      case '--router-replicas':
        cfg.replicas.router = int(flag, value(), 1);
        break;
      case '--port':
        cfg.port = int(flag, value(), 0);
        break;
      case '--host':
        cfg.host = value();
        break;
      case '--namespace':
        cfg.namespace = value();
        break;
      case '--model':
        cfg.model = value();
        break;
      case '--router':
        cfg.router = oneOf(flag, value(), RouterModes);
        break;
      case '--no-migrate':
        cfg.migrate = false;
        break;
      case '--timeout-ms':
        cfg.timeoutMs = int(flag, value(), 1);
        break;
      case '--decode-step-ms':
        cfg.decodeStepMs = num(flag, value());
        break;
      case '--prefill-us-per-token':
        cfg.prefillUsPerToken = num(flag, value());
        break;
      case '--prefill-threshold':
        cfg.prefillThreshold = int(flag, value(), 0);
        break;
      case '--block-size':
        cfg.blockSize = int(flag, value(), 1);
        break;
      case '--decode-concurrency':
        cfg.decodeConcurrency = int(flag, value(), 1);
        break;
      case '--decode-capacity':
        cfg.decodeCapacity = int(flag, value(), 0);
        break;
      case '--kv-blocks':
        cfg.kvBlocks = int(flag, value(), 1);
        break;
      case '--help':
      case '-h':
        throw new TroupeError('BAD_REQUEST', USAGE);
      default:
        throw new TroupeError('BAD_REQUEST', `unknown option ${flag}\n${USAGE}`);
    }
  }
  if (replicas !== undefined) for (const r of cfg.roles) if (r !== 'frontend') cfg.replicas[r] = replicas;
  return cfg;
}

function int(name: string, v: string, min: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new TroupeError('BAD_REQUEST', `${name} must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
  return n;
}

function num(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new TroupeError('BAD_REQUEST', `${name} must be a number ≥ 0, got ${JSON.stringify(v)}`);
  return n;
}

function oneOf<T extends string>(name: string, v: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(v))
    throw new TroupeError('BAD_REQUEST', `${name} must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
  return v as T;
}
