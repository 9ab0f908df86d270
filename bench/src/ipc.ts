/**
 * The orchestrator <-> child protocol. A child gets its job as JSON in
 * argv[2] and answers over the fork IPC channel; it exits on `stop` and when
 * the channel closes (the orchestrator died), so no child outlives a run.
 */
import type { DriverKind, Measure, MeasureResult, WorkerKind } from './plan';
import type { HostFigures } from './scale';

export interface WorkerJob {
  worker: Exclude<WorkerKind, 'none'>;
  url: string;
  /** Worker-specific arguments (the LLM pipeline: its role and router). */
  args?: string[];
}

export interface CallerJob {
  driver: DriverKind;
  /** Empty for embedded drivers. */
  url: string;
  measures: Measure[];
  /** Where the caller sends its load when a worker serves HTTP (the LLM pipeline's frontend). */
  endpoint?: string;
}

export type ToParent =
  | { type: 'ready'; endpoint?: string }
  | { type: 'result'; results: MeasureResult[] }
  | { type: 'error'; message: string }
  /** The scale case's hosting process: about to spawn (epoch ms), then what it measured. */
  | { type: 'scale-start'; at: number }
  | { type: 'scale'; figures: HostFigures & { subs_per_instance: number } }
  /** A mesh host (mesh-host.ts): its instances are spawned; then, after `calm`, the churn operations it made. */
  | { type: 'mesh-ready' }
  | { type: 'mesh-calm'; ops: number };

/** The job of the scale case's hosting process (scale-host.ts). */
export interface ScaleHostJob {
  url: string;
  name: string;
  replicas: number;
  restMs: number;
}

/** The job of one hosting process of the mesh case (mesh-host.ts). */
export interface MeshHostJob {
  url: string;
  name: string;
  namespace: string;
  instances: number;
}

/** `stop` to any child; `churn` (one spawn or stop every `everyMs`, alternating) and `calm` to a mesh host. */
export type ToChild = { type: 'stop' } | { type: 'churn'; everyMs: number } | { type: 'calm' };

export function readJob<T>(): T {
  const raw = process.argv[2];
  if (!raw || typeof process.send !== 'function') {
    console.error('this is a bench child process: the orchestrator (bench/dist/run.js) forks it with a job');
    process.exit(2);
  }
  return JSON.parse(raw) as T;
}

/** Sends to the orchestrator; resolves once the message is handed to the channel. */
export function send(msg: ToParent): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected || !process.send) return resolve();
    process.send(msg, undefined, {}, () => resolve());
  });
}

/** Calls `fn(0)` on a stop request and `fn(1)` when the orchestrator is gone. */
export function onStop(fn: (code: number) => void): void {
  process.on('message', (m: ToChild) => {
    if (m?.type === 'stop') fn(0);
  });
  process.on('disconnect', () => fn(1));
}

export function errorText(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? `\ncaused by: ${err.cause.stack ?? err.cause.message}` : '';
    return `${err.stack ?? err.message}${cause}`;
  }
  return String(err);
}
