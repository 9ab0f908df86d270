/**
 * The seam every system under test implements: a worker side (run in its
 * own process, serving the echo and stream endpoints) and a driver (run in
 * the caller process, making the calls). Embedded systems have no worker
 * process; their driver hosts both sides in-process.
 */
import type { EventPayload, Item, Payload, PublishReport, PublishSpec } from '../payload';
import type { LlmResult, Measure, MeshResult, ScaleResult } from '../plan';

/** A running worker: closing it releases its connection. */
export interface Worker {
  close(): Promise<void>;
  /** An address the caller should load instead of the NATS URL (an HTTP frontend). */
  endpoint?: string;
}

/** Starts the worker side of a system, connected to `url`, with the job's worker-specific arguments. */
export type StartWorker = (url: string, args: readonly string[]) => Promise<Worker>;

/**
 * The caller side of a system. A method is absent when the system has no
 * such call; the harness only asks for what the case plan pairs it with.
 */
export interface Driver {
  /** One echo call of `payload` (default PAYLOAD); resolves with the decoded reply. */
  unary?(payload?: Payload): Promise<unknown>;
  /** One stream of `n` items; `onItem` sees each, the promise resolves at the end marker. */
  stream?(n: number, onItem: (item: Item) => void): Promise<void>;
  /** One call answered by a single item: resolves, once the call is over, with µs from call to that item. */
  firstItem?(): Promise<number>;
  /**
   * Subscribes to the worker's broadcast events (resolves once the
   * subscription is live); `onEvent` gets each event's payload and the gap
   * the system reported before it (0 when it has no gap detection).
   */
  events?(onEvent: (e: EventPayload, gap: number) => void): Promise<EventChannel>;
  /**
   * Has the worker spawn one instance, waits until this process's watch of
   * the instance list shows it, and returns ms from the spawn resolving (on
   * the worker) to the listing (here); then stops it and waits until it is
   * gone from the list.
   */
  spawnVisible?(): Promise<number>;
  /**
   * Spawns `replicas` instances in one process with one `spawn`, waits until a
   * second runtime lists them all, stops them with one `handle.stop()` and
   * closes the runtime; reports each phase.
   */
  lifecycle?(replicas: number): Promise<LifecycleTimes>;
  /**
   * Spawns `replicas` instances of a one-endpoint component in one process
   * (on NATS a process of its own), waits until a watching client lists them
   * all, lets them idle for `restMs`, and reports what they cost.
   */
  scale?(replicas: number, restMs: number): Promise<Omit<ScaleResult, 'kind'>>;
  /**
   * Forks the mesh case's hosting processes, watches their instances from
   * this process, and measures discovery traffic and this process's CPU at
   * rest and while the hosts churn.
   */
  mesh?(m: Extract<Measure, { kind: 'mesh' }>): Promise<Omit<MeshResult, 'kind'>>;
  /** Runs an LLM load against the pipeline's HTTP frontend. */
  llm?(m: Extract<Measure, { kind: 'llm' }>): Promise<LlmResult>;
  /** One small request that must succeed before anything is timed (LLM pipeline). */
  llmProbe?(): Promise<void>;
  close(): Promise<void>;
}

/** What {@link Driver.lifecycle} measured. */
export interface LifecycleTimes {
  /** `spawn` called to resolved, s. */
  spawn_s: number;
  /** `spawn` called to every instance listed by the watching runtime, s. */
  routable_s: number;
  /** `handle.stop()`, s. */
  stop_s: number;
  /** `runtime.close()` after that, s. */
  close_s: number;
  stop_close_s: number;
  /** Warnings of failed deregistrations the stopping runtime logged. */
  dereg_failures: number;
}

/** A live event subscription: ask the worker for a run of events; `close` unsubscribes. */
export interface EventChannel {
  /** Resolves once the worker has published (and flushed) the whole run. */
  publish(spec: PublishSpec): Promise<PublishReport>;
  close(): void;
}

/** Bound on the worker publishing a run: the run's own length plus slack. */
export function publishBound(spec: PublishSpec): number {
  return 30_000 + (spec.mode === 'paced' ? spec.n * (spec.intervalMs + 5) : spec.durationMs * 2);
}

/** Connects a driver; `url` is empty for embedded systems. */
export type ConnectDriver = (url: string) => Promise<Driver>;

/** Microseconds since `t0` (a `process.hrtime.bigint()` reading). */
export function usSince(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1000;
}
