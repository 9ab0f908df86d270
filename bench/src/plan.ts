/**
 * What the benchmark runs: settings per mode, the measurements a caller
 * process makes, the systems (which worker process, which driver), the
 * scenarios (one worker topology, several measurements in one caller
 * process) and the cases reported in results.json.
 */
import { meshModel } from './mesh-model';

/** How long and how often; `--quick` is for CI, where figures are not asserted. */
export interface Settings {
  mode: 'full' | 'quick';
  /** Each scenario runs every system once per round, in rotated order. */
  rounds: number;
  /** Throughput: load before the window opens. */
  warmupMs: number;
  /** Throughput: the measured window. */
  durationMs: number;
  /**
   * Sequential latency: calls measured, after `seqWarmup` unmeasured ones. The
   * warm-up takes a fresh caller/worker pair past V8's tier-up (see bench/README.md,
   * "Warm-up"), as the throughput cases' `warmupMs` does.
   */
  seqCount: number;
  seqWarmup: number;
  /** Items of the measured stream, after one unmeasured stream of `streamWarmupItems`. */
  streamItems: number;
  streamWarmupItems: number;
  /** Time-to-first-item: calls measured, after `firstWarmup` unmeasured ones. */
  firstCount: number;
  firstWarmup: number;
  /** Event latency: paced events measured, after `eventWarmup` unmeasured ones, one every `eventIntervalMs`. */
  eventCount: number;
  eventWarmup: number;
  eventIntervalMs: number;
  /** Event throughput: the publisher awaits a flush every this many events (window and warm-up: `durationMs`, `warmupMs`). */
  eventFlushEvery: number;
  /** Discovery: spawns measured, after `discoveryWarmup` unmeasured ones. */
  discoverySpawns: number;
  discoveryWarmup: number;
  /** LLM pipeline: measured streaming chat requests after `llmWarmup` unmeasured ones, `llmConcurrency` in flight. */
  llmRequests: number;
  llmWarmup: number;
  llmConcurrency: number;
}

export const FULL: Settings = {
  mode: 'full',
  rounds: 5,
  warmupMs: 1_000,
  durationMs: 3_000,
  seqCount: 5_000,
  seqWarmup: 5_000,
  streamItems: 1_000_000,
  streamWarmupItems: 100_000,
  firstCount: 2_000,
  firstWarmup: 200,
  eventCount: 5_000,
  eventWarmup: 500,
  eventIntervalMs: 1,
  eventFlushEvery: 1_000,
  discoverySpawns: 20,
  discoveryWarmup: 1,
  llmRequests: 240,
  llmWarmup: 16,
  llmConcurrency: 8,
};

export const QUICK: Settings = {
  mode: 'quick',
  rounds: 2,
  warmupMs: 300,
  durationMs: 1_000,
  seqCount: 1_000,
  seqWarmup: 200,
  streamItems: 200_000,
  streamWarmupItems: 20_000,
  firstCount: 300,
  firstWarmup: 50,
  eventCount: 1_000,
  eventWarmup: 100,
  eventIntervalMs: 1,
  eventFlushEvery: 1_000,
  discoverySpawns: 10,
  discoveryWarmup: 1,
  llmRequests: 48,
  llmWarmup: 16,
  llmConcurrency: 8,
};

/** One measurement a caller process makes; the results below answer them in order. */
export type Measure =
  | { kind: 'latency'; count: number; warmup: number }
  | { kind: 'throughput'; concurrency: number; warmupMs: number; durationMs: number; bodyBytes?: number }
  | { kind: 'stream'; items: number; warmupItems: number }
  | { kind: 'first_item'; count: number; warmup: number }
  | { kind: 'event_latency'; count: number; warmup: number; intervalMs: number }
  | { kind: 'event_rate'; warmupMs: number; durationMs: number; flushEvery: number }
  | { kind: 'discovery'; count: number; warmup: number }
  | { kind: 'lifecycle'; replicas: number }
  | { kind: 'scale'; replicas: number; restMs: number }
  | { kind: 'mesh'; processes: number; instances: number; restMs: number; churnMs: number; churnPerS: number }
  | { kind: 'llm'; requests: number; warmup: number; concurrency: number; prefixes: number; systemChars: number; maxTokens: number };

export interface LatencyResult {
  kind: 'latency';
  p50_us: number;
  p99_us: number;
  mean_us: number;
}
export interface ThroughputResult {
  kind: 'throughput';
  rps: number;
  /** Peak V8 heap in use in the caller process during the run (warm-up and window), MB. */
  peak_heap_mb: number;
  completed: number;
  errors: number;
  firstError?: string;
}
export interface StreamResult {
  kind: 'stream';
  items_per_s: number;
  received: number;
  lost: number;
  duplicated: number;
  error?: string;
}
/** Event delivery of one measured run: what the publisher sent, what arrived, and the gaps the system reported. */
export interface EventDelivery {
  sent: number;
  received: number;
  /** `sent - received` (events the subscriber never got). */
  lost: number;
  /** Events that arrived with a gap reported before them (Troupe's per-publisher `seq`; raw has no detection: 0). */
  gaps: number;
  /** The events those gaps say were missed. */
  gap_missed: number;
  duplicated: number;
}
export interface EventLatencyResult extends EventDelivery {
  kind: 'event_latency';
  /** Publish (publisher's clock) to delivery (subscriber's clock), the same host wall clock. */
  p50_us: number;
  p99_us: number;
  mean_us: number;
}
export interface EventRateResult extends EventDelivery {
  kind: 'event_rate';
  /** Received events over first-to-last receive. */
  events_per_s: number;
  /** Sent events over the publisher's window. */
  published_per_s: number;
}
export interface DiscoveryResult {
  kind: 'discovery';
  /** Spawn resolved (worker's clock) to listed by instances$ (client's clock), ms. */
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  samples_ms: number[];
}
/** One spawn of many instances, listed by a watcher, stopped and closed (see Driver.lifecycle). */
export interface LifecycleResult {
  kind: 'lifecycle';
  spawn_s: number;
  routable_s: number;
  stop_s: number;
  close_s: number;
  stop_close_s: number;
  dereg_failures: number;
}
/**
 * Issue #13, actors by the hundred thousand: `replicas` instances of a
 * one-endpoint component spawned with one call in one process (on NATS a
 * process of its own, so its RSS is the hosting side alone), listed by a
 * watching client, then left idle for `restMs`.
 */
export interface ScaleResult {
  kind: 'scale';
  /** `spawn` called to resolved, s. */
  spawn_s: number;
  /** `spawn` called to every instance listed by a watching client, s. */
  routable_s: number;
  /** RSS growth of the hosting process per idle instance (after a GC), bytes. */
  rss_per_instance_b: number;
  /** V8 heap growth of the hosting process per idle instance (after a GC), bytes. */
  heap_per_instance_b: number;
  /** Server subscriptions the hosting process's connections hold per instance (monitoring port `/connz`; 0 embedded). */
  subs_per_instance: number;
  /** Registry writes per second while every instance idles (JetStream last sequence of both buckets; embedded: the registry's own count). */
  discovery_writes_per_s: number;
  /** Size of the hosting process's lease record at rest, bytes. */
  lease_bytes: number;
}
/**
 * Issue #13, the mesh: `processes` hosting processes with `instances` idle
 * instances each, one watching client; discovery messages through the server
 * (`/varz`) and the client's CPU, at rest and while the hosts spawn and stop
 * `churnPerS` instances a second between them.
 */
export interface MeshResult {
  kind: 'mesh';
  processes: number;
  instances: number;
  /** Messages per second into the server, cluster-wide, at rest. */
  rest_in_msgs_per_s: number;
  /** Messages per second out of the server (deliveries), at rest. */
  rest_out_msgs_per_s: number;
  churn_in_msgs_per_s: number;
  churn_out_msgs_per_s: number;
  /** The watching client's CPU, % of one core. */
  client_cpu_rest_pct: number;
  client_cpu_churn_pct: number;
  /** Lists the client's watch emitted during the rest window (none expected: nothing changed). */
  rest_list_emissions: number;
  /** Spawns and stops the hosts made while churning. */
  churn_ops: number;
}
/** The LLM pipeline under a prefix-sharing load (see examples/llm/src/workload.ts). */
export interface LlmResult {
  kind: 'llm';
  /** Request sent to first content chunk. */
  ttft_p50_ms: number;
  ttft_p99_ms: number;
  /** Between consecutive content chunks of a stream. */
  itl_p50_ms: number;
  itl_p99_ms: number;
  /** Completion tokens of the measured requests over their wall time. */
  output_tokens_per_s: number;
  /** Prompt blocks found in the decode workers' caches, % of those looked up. */
  kv_hit_pct: number;
  requests: number;
  errors: number;
  firstError?: string;
}
export type MeasureResult =
  | LifecycleResult
  | ScaleResult
  | MeshResult
  | LatencyResult
  | ThroughputResult
  | StreamResult
  | EventLatencyResult
  | EventRateResult
  | DiscoveryResult
  | LlmResult;

/** Worker processes; `none` for embedded systems (the driver hosts both sides). */
export type WorkerKind = 'troupe' | 'raw' | 'moleculer' | 'nestjs' | 'llm' | 'none';
/** Caller-side implementations (see caller.ts). */
export type DriverKind =
  | 'troupe'
  | 'troupe_queue'
  | 'troupe_rr'
  | 'raw_mux'
  | 'raw_request'
  | 'raw_pubsub'
  | 'moleculer'
  | 'nestjs'
  | 'troupe_embedded'
  | 'troupe_embedded_immutable'
  | 'moleculer_local'
  | 'llm';

/** A runnable system: what serves and what calls. */
export interface Runner {
  worker: WorkerKind;
  driver: DriverKind;
  /** Extra arguments for every worker process of the runner (the LLM pipeline's `--router`). */
  args?: readonly string[];
}

export const RUNNERS = {
  /** Troupe's typed client as users get it: the runtime's default router (round-robin over discovery since 4136089). */
  troupe: { worker: 'troupe', driver: 'troupe' },
  /** Troupe's typed client with `router: 'queue'`: the NATS queue group balances, no discovery on the path. */
  troupe_queue: { worker: 'troupe', driver: 'troupe_queue' },
  /** Troupe's typed client with `router: 'round-robin'`: picks a discovered instance, sends to its mailbox. */
  troupe_rr: { worker: 'troupe', driver: 'troupe_rr' },
  /** Hand-written nats.js: publish + one wildcard inbox subscription; msgpack; queue-group echo worker. */
  raw_mux: { worker: 'raw', driver: 'raw_mux' },
  /** nats.js `nc.request()` with default options (async traces on: what users write). */
  raw_request: { worker: 'raw', driver: 'raw_request' },
  /** Hand-written nats.js pub/sub of the msgpack event payload: one plain subscription, plain publishes. */
  raw_pubsub: { worker: 'raw', driver: 'raw_pubsub' },
  /** Moleculer ServiceBroker, NATS transporter, default JSON serializer and balancer. */
  moleculer: { worker: 'moleculer', driver: 'moleculer' },
  /** NestJS microservice, NATS transport, `@MessagePattern` echo, ClientProxy caller. */
  nestjs: { worker: 'nestjs', driver: 'nestjs' },
  /** Troupe on the in-process MemoryNetwork: no server, no worker process. */
  troupe_embedded: { worker: 'none', driver: 'troupe_embedded' },
  /** The same, the endpoints declared `immutable: true`: in-process calls pass request and reply by reference (an opt-in; not the default). */
  troupe_embedded_immutable: { worker: 'none', driver: 'troupe_embedded_immutable' },
  /** Moleculer without a transporter: local calls. */
  moleculer_local: { worker: 'none', driver: 'moleculer_local' },
  /** The LLM pipeline (examples/llm) with its KV-cache-aware router; driven over its OpenAI-compatible HTTP API. */
  llm_kv: { worker: 'llm', driver: 'llm', args: ['--router', 'kv'] },
  /** The same pipeline, the router sending round-robin. */
  llm_rr: { worker: 'llm', driver: 'llm', args: ['--router', 'round-robin'] },
} as const satisfies Record<string, Runner>;
export type RunnerKey = keyof typeof RUNNERS;

/** A worker topology and the measurements one caller process makes against it. */
export interface Scenario {
  workers: number;
  /** At most this many rounds per mode (a long scenario whose figures vary little between rounds); absent: every round. */
  maxRounds?: Readonly<Record<Settings['mode'], number>>;
  /** Per worker process, its own arguments (then `workers` is their count): the LLM pipeline's roles. */
  roles?: readonly (readonly string[])[];
  measures: Record<string, (s: Settings) => Measure>;
}

const throughput =
  (concurrency: number, bodyBytes?: number) =>
  (s: Settings): Measure => ({
    kind: 'throughput',
    concurrency,
    warmupMs: s.warmupMs,
    durationMs: s.durationMs,
    ...(bodyBytes === undefined ? {} : { bodyBytes }),
  });
const stream = (s: Settings): Measure => ({ kind: 'stream', items: s.streamItems, warmupItems: s.streamWarmupItems });

/** The mesh case's shape, and what the paper model (docs/discovery.md) predicts for it: one watcher, one endpoint. */
const MESH = { processes: 10, churnPerS: 10 } as const;
const MESH_MODEL = meshModel(MESH.processes, 1, 1, MESH.churnPerS);
/** Printed beside a mesh case: what the model predicts (a reference; the goals of the rest cases allow 20% over it). */
const modelNote = (figure: number, churn: boolean): string =>
  `the paper model (docs/discovery.md) predicts ${figure} msgs/s for ${MESH.processes} processes, 1 watcher, 1 endpoint${churn ? `, ${MESH.churnPerS} spawns/stops per second (a reference, not a goal)` : ' (the goal: at most 20% over it)'}`;

export const SCENARIOS = {
  unary: {
    workers: 1,
    measures: {
      seq: (s) => ({ kind: 'latency', count: s.seqCount, warmup: s.seqWarmup }),
      c16: throughput(16),
      c256: throughput(256),
    },
  },
  unary_queue2: { workers: 2, measures: { c256: throughput(256) } },
  stream: { workers: 1, measures: { items: stream } },
  first_item: { workers: 1, measures: { first: (s) => ({ kind: 'first_item', count: s.firstCount, warmup: s.firstWarmup }) } },
  embedded: { workers: 0, measures: { unary: throughput(256), stream } },
  events: {
    workers: 1,
    measures: {
      latency: (s) => ({ kind: 'event_latency', count: s.eventCount, warmup: s.eventWarmup, intervalMs: s.eventIntervalMs }),
      rate: (s) => ({ kind: 'event_rate', warmupMs: s.warmupMs, durationMs: s.durationMs, flushEvery: s.eventFlushEvery }),
    },
  },
  discovery: { workers: 1, measures: { visible: (s) => ({ kind: 'discovery', count: s.discoverySpawns, warmup: s.discoveryWarmup }) } },
  /** Issue #16: the caller's peak heap at 256 in flight, 100-byte and 10 KB bodies. */
  unary_heap: { workers: 1, measures: { c256_100: throughput(256, 100), c256_10k: throughput(256, 10 * 1024) } },
  /** Issue #14: 10,000 instances in one process; the caller process is the spawning side (no worker process). */
  lifecycle: { workers: 0, measures: { life10k: () => ({ kind: 'lifecycle', replicas: 10_000 }) } },
  /** Issue #13: 100,000 instances in one process (on NATS the driver forks the hosting process; no worker of the harness). */
  scale: { workers: 0, measures: { spawn100k: (s) => ({ kind: 'scale', replicas: 100_000, restMs: s.mode === 'quick' ? 3_000 : 10_000 }) } },
  /**
   * Issue #13: 10 hosting processes x 1,000 instances, one watching client
   * (the caller process); the driver forks the hosts. Quick: 200 instances
   * per process and 3 s windows (the traffic at rest does not depend on the
   * instance count), one round.
   */
  mesh: {
    workers: 0,
    maxRounds: { full: 2, quick: 1 },
    measures: {
      m10x1000: (s) => ({
        kind: 'mesh',
        processes: MESH.processes,
        instances: s.mode === 'quick' ? 200 : 1_000,
        restMs: s.mode === 'quick' ? 3_000 : 10_000,
        churnMs: s.mode === 'quick' ? 3_000 : 10_000,
        churnPerS: MESH.churnPerS,
      }),
    },
  },
  /**
   * The LLM pipeline, one process per component: frontend, router, two
   * prefill and two decode workers. Eight ~900-token system prompts (~56 KV
   * blocks each, 450 in all) against 320 cached blocks per decode worker: one
   * worker cannot hold every prefix, two can between them — if the router
   * sends each prefix to the worker holding it.
   */
  llm: {
    workers: 6,
    roles: [
      ['--role', 'frontend'],
      ['--role', 'router'],
      ['--role', 'prefill', '--replicas', '1'],
      ['--role', 'prefill', '--replicas', '1'],
      ['--role', 'decode', '--replicas', '1', '--kv-blocks', '320'],
      ['--role', 'decode', '--replicas', '1', '--kv-blocks', '320'],
    ],
    measures: {
      load: (s) => ({
        kind: 'llm',
        requests: s.llmRequests,
        warmup: s.llmWarmup,
        concurrency: s.llmConcurrency,
        prefixes: 8,
        systemChars: 4_000,
        maxTokens: 32,
      }),
    },
  },
} as const satisfies Record<string, Scenario>;
export type ScenarioKey = keyof typeof SCENARIOS;

/**
 * A goal the lead set: `troupe / vs` at least `min` (throughput) or at most
 * `max` (latency); without `vs`, the bound is on the Troupe figure itself,
 * in the case's unit.
 */
export interface Goal {
  vs?: string;
  /** Only for this system of the case (its Troupe system or a variant); absent: every one. */
  system?: string;
  min?: number;
  max?: number;
}

/** One reported case: a number per system, `ratio_vs_raw` = troupe / anchor. */
export interface CaseDef {
  key: string;
  title: string;
  unit: 'µs' | 'ms' | 's' | 'MB' | 'B' | 'count' | 'req/s' | 'items/s' | 'events/s' | 'tokens/s' | 'writes/s' | 'msgs/s' | 'subs' | '%';
  better: 'lower' | 'higher';
  scenario: ScenarioKey;
  measure: string;
  field:
    | 'p50_us'
    | 'p99_us'
    | 'p50_ms'
    | 'p99_ms'
    | 'rps'
    | 'items_per_s'
    | 'events_per_s'
    | 'peak_heap_mb'
    | 'spawn_s'
    | 'routable_s'
    | 'stop_s'
    | 'close_s'
    | 'stop_close_s'
    | 'dereg_failures'
    | 'rss_per_instance_b'
    | 'heap_per_instance_b'
    | 'subs_per_instance'
    | 'discovery_writes_per_s'
    | 'lease_bytes'
    | MeshField
    | 'ttft_p50_ms'
    | 'ttft_p99_ms'
    | 'itl_p50_ms'
    | 'itl_p99_ms'
    | 'output_tokens_per_s'
    | 'kv_hit_pct';
  /** Reported system name -> the runner that produces it. */
  systems: Readonly<Record<string, RunnerKey>>;
  /** The Troupe system of this case (numerator of every ratio). */
  troupe: string;
  /** Other Troupe systems of the case; the goals are checked for them too. */
  variants?: readonly string[];
  /** The raw anchor (denominator of `ratio_vs_raw`); none: no ratio, the figure stands alone. */
  anchor?: string;
  goals: readonly Goal[];
  /** A reference figure from elsewhere, printed beside the case (never checked as a goal). */
  note?: string;
}

/**
 * Systems of the concurrent unary cases: one entry per system (another
 * Troupe router is one more line here, plus its driver in caller.ts).
 */
const LOAD_SYSTEMS = {
  troupe_queue: 'troupe_queue',
  troupe_rr: 'troupe_rr',
  raw_mux: 'raw_mux',
  raw_request: 'raw_request',
  moleculer: 'moleculer',
  nestjs: 'nestjs',
} as const satisfies Record<string, RunnerKey>;

/** Systems of the sequential latency cases (the same runners; Troupe's key is plain `troupe` there). */
const SEQ_SYSTEMS = {
  troupe: 'troupe',
  raw_mux: 'raw_mux',
  raw_request: 'raw_request',
  moleculer: 'moleculer',
  nestjs: 'nestjs',
} as const satisfies Record<string, RunnerKey>;

/** Systems of the heap cases (#16): Troupe's default client beside the hand-written mux, in the same run. */
const HEAP_SYSTEMS = { troupe: 'troupe', raw_mux: 'raw_mux' } as const satisfies Record<string, RunnerKey>;
/** Systems of the LLM cases: the KV-aware router against round-robin, same pipeline, same load. */
const LLM_SYSTEMS = { troupe_kv: 'llm_kv', troupe_rr: 'llm_rr' } as const satisfies Record<string, RunnerKey>;
const llmCase = (c: Pick<CaseDef, 'key' | 'title' | 'unit' | 'better' | 'field'> & { goals?: readonly Goal[] }): CaseDef => ({
  ...c,
  scenario: 'llm',
  measure: 'load',
  systems: LLM_SYSTEMS,
  troupe: 'troupe_kv',
  anchor: 'troupe_rr',
  goals: c.goals ?? [],
});

/** Systems of the event cases: Troupe's namespace/component events and plain nats.js pub/sub. */
const EVENT_SYSTEMS = { troupe: 'troupe', raw: 'raw_pubsub' } as const satisfies Record<string, RunnerKey>;

/** Printed beside `event_p50_us`: a figure reported elsewhere, not a goal of this project. */
const DYNAMO_NOTE = 'reference, not a goal: Dynamo reports p50 ≈ 40–47 µs for its NATS event plane on one host';

export const CASES: readonly CaseDef[] = [
  {
    key: 'unary_seq_p50_us',
    title: 'unary, 1 in flight, p50',
    unit: 'µs',
    better: 'lower',
    scenario: 'unary',
    measure: 'seq',
    field: 'p50_us',
    systems: SEQ_SYSTEMS,
    troupe: 'troupe',
    anchor: 'raw_mux',
    goals: [{ vs: 'raw_mux', max: 1.05 }],
  },
  {
    key: 'unary_seq_p99_us',
    title: 'unary, 1 in flight, p99',
    unit: 'µs',
    better: 'lower',
    scenario: 'unary',
    measure: 'seq',
    field: 'p99_us',
    systems: SEQ_SYSTEMS,
    troupe: 'troupe',
    anchor: 'raw_mux',
    goals: [],
  },
  {
    key: 'unary_c16_rps',
    title: 'unary, 16 in flight',
    unit: 'req/s',
    better: 'higher',
    scenario: 'unary',
    measure: 'c16',
    field: 'rps',
    systems: LOAD_SYSTEMS,
    troupe: 'troupe_queue',
    variants: ['troupe_rr'],
    anchor: 'raw_mux',
    goals: [],
  },
  {
    key: 'unary_c256_rps',
    title: 'unary, 256 in flight',
    unit: 'req/s',
    better: 'higher',
    scenario: 'unary',
    measure: 'c256',
    field: 'rps',
    systems: LOAD_SYSTEMS,
    troupe: 'troupe_queue',
    variants: ['troupe_rr'],
    anchor: 'raw_mux',
    goals: [
      { vs: 'raw_mux', min: 1.0 },
      { vs: 'moleculer', min: 1.4 },
    ],
  },
  {
    key: 'unary_queue2_c256_rps',
    title: 'unary, 256 in flight, 2 worker processes',
    unit: 'req/s',
    better: 'higher',
    scenario: 'unary_queue2',
    measure: 'c256',
    field: 'rps',
    systems: { troupe: 'troupe', raw_mux: 'raw_mux' },
    troupe: 'troupe',
    anchor: 'raw_mux',
    goals: [],
  },
  {
    key: 'stream_items_per_s',
    title: 'one stream of ~32-byte items, worker to caller',
    unit: 'items/s',
    better: 'higher',
    scenario: 'stream',
    measure: 'items',
    field: 'items_per_s',
    systems: { troupe: 'troupe', raw: 'raw_mux' },
    troupe: 'troupe',
    anchor: 'raw',
    goals: [{ vs: 'raw', min: 2 }],
  },
  {
    key: 'stream_first_item_us',
    title: 'stream, call to first item, p50',
    unit: 'µs',
    better: 'lower',
    scenario: 'first_item',
    measure: 'first',
    field: 'p50_us',
    systems: { troupe: 'troupe', raw_request: 'raw_request' },
    troupe: 'troupe',
    anchor: 'raw_request',
    goals: [{ vs: 'raw_request', max: 1.1 }],
  },
  {
    key: 'embedded_unary_rps',
    title: 'embedded unary, 256 in flight, in-process',
    unit: 'req/s',
    better: 'higher',
    scenario: 'embedded',
    measure: 'unary',
    field: 'rps',
    systems: { troupe_embedded: 'troupe_embedded', troupe_embedded_immutable: 'troupe_embedded_immutable', moleculer_local: 'moleculer_local' },
    troupe: 'troupe_embedded',
    // The opt-in by-reference endpoint, reported beside the default; the goal is judged on the default (copies).
    variants: ['troupe_embedded_immutable'],
    anchor: 'moleculer_local',
    goals: [{ vs: 'moleculer_local', min: 0.5, system: 'troupe_embedded' }],
  },
  {
    key: 'embedded_stream_items_per_s',
    title: 'embedded stream, in-process',
    unit: 'items/s',
    better: 'higher',
    scenario: 'embedded',
    measure: 'stream',
    field: 'items_per_s',
    systems: { troupe_embedded: 'troupe_embedded', moleculer_local: 'moleculer_local' },
    troupe: 'troupe_embedded',
    anchor: 'moleculer_local',
    // Issue #13: at least Moleculer's local stream.
    goals: [{ vs: 'moleculer_local', min: 1.0 }],
  },
  {
    key: 'event_p50_us',
    title: 'broadcast event, publish to delivery, p50 (paced)',
    unit: 'µs',
    better: 'lower',
    scenario: 'events',
    measure: 'latency',
    field: 'p50_us',
    systems: EVENT_SYSTEMS,
    troupe: 'troupe',
    anchor: 'raw',
    goals: [],
    note: DYNAMO_NOTE,
  },
  {
    key: 'event_p99_us',
    title: 'broadcast event, publish to delivery, p99 (paced)',
    unit: 'µs',
    better: 'lower',
    scenario: 'events',
    measure: 'latency',
    field: 'p99_us',
    systems: EVENT_SYSTEMS,
    troupe: 'troupe',
    anchor: 'raw',
    goals: [],
  },
  {
    key: 'events_per_s',
    title: 'broadcast events, publisher as fast as it can (flush every N), subscriber counting',
    unit: 'events/s',
    better: 'higher',
    scenario: 'events',
    measure: 'rate',
    field: 'events_per_s',
    systems: EVENT_SYSTEMS,
    troupe: 'troupe',
    anchor: 'raw',
    goals: [],
  },
  {
    key: 'discovery_visible_p50_ms',
    title: 'spawn resolved to listed by a watching client, p50',
    unit: 'ms',
    better: 'lower',
    scenario: 'discovery',
    measure: 'visible',
    field: 'p50_ms',
    systems: { troupe: 'troupe' },
    troupe: 'troupe',
    goals: [],
  },
  {
    key: 'discovery_visible_p99_ms',
    title: 'spawn resolved to listed by a watching client, p99',
    unit: 'ms',
    better: 'lower',
    scenario: 'discovery',
    measure: 'visible',
    field: 'p99_ms',
    systems: { troupe: 'troupe' },
    troupe: 'troupe',
    goals: [{ max: 100 }],
  },
  {
    key: 'unary_c256_heap_mb',
    title: 'unary, 256 in flight, 100-byte bodies: peak caller heap',
    unit: 'MB',
    better: 'lower',
    scenario: 'unary_heap',
    measure: 'c256_100',
    field: 'peak_heap_mb',
    systems: HEAP_SYSTEMS,
    troupe: 'troupe',
    anchor: 'raw_mux',
    goals: [{ vs: 'raw_mux', max: 1.5 }],
  },
  {
    key: 'unary_c256_10k_heap_mb',
    title: 'unary, 256 in flight, 10 KB bodies: peak caller heap',
    unit: 'MB',
    better: 'lower',
    scenario: 'unary_heap',
    measure: 'c256_10k',
    field: 'peak_heap_mb',
    systems: HEAP_SYSTEMS,
    troupe: 'troupe',
    anchor: 'raw_mux',
    goals: [{ vs: 'raw_mux', max: 1.5 }],
  },
  {
    key: 'unary_c256_10k_rps',
    title: 'unary, 256 in flight, 10 KB bodies',
    unit: 'req/s',
    better: 'higher',
    scenario: 'unary_heap',
    measure: 'c256_10k',
    field: 'rps',
    systems: HEAP_SYSTEMS,
    troupe: 'troupe',
    anchor: 'raw_mux',
    goals: [],
  },
  lifecycleCase('spawn_s', 'spawn of 10,000 instances in one process (one spawn call)', [{ max: 2 }]),
  lifecycleCase('routable_s', 'spawn called to all 10,000 listed by a second runtime', []),
  lifecycleCase('stop_s', 'one handle.stop() of 10,000 instances', []),
  lifecycleCase('close_s', 'runtime.close() after that stop', []),
  lifecycleCase('stop_close_s', 'stop + close of 10,000 instances', [{ max: 5 }]),
  {
    ...lifecycleCase('stop_close_s', 'stop + close of 10,000 instances, embedded', [{ max: 2 }]),
    key: 'lifecycle_10k_embedded_stop_close_s',
    systems: { troupe_embedded: 'troupe_embedded' },
    troupe: 'troupe_embedded',
    variants: [],
  },
  scaleCase('spawn_s', 's', 'spawn of 100,000 one-endpoint instances in one process (one spawn call)', { nats: [], embedded: [{ max: 5 }] }),
  scaleCase('routable_s', 's', 'spawn called to all 100,000 listed by a watching client', { nats: [{ max: 15 }], embedded: [{ max: 15 }] }),
  scaleCase('rss_per_instance_b', 'B', 'RSS of the hosting process per idle instance (100,000)', { nats: [{ max: 4096 }], embedded: [{ max: 1024 }] }),
  scaleCase('heap_per_instance_b', 'B', 'V8 heap of the hosting process per idle instance (100,000)', { nats: [], embedded: [] }),
  {
    ...scaleCase('subs_per_instance', 'subs', 'server subscriptions of the hosting process per instance (100,000, /connz)', {
      nats: [{ max: 1.01 }],
      embedded: [],
    }),
    systems: { troupe: 'troupe' },
    variants: [],
  },
  scaleCase('discovery_writes_per_s', 'writes/s', 'registry writes per second with 100,000 idle instances', { nats: [{ max: 1 }], embedded: [] }),
  scaleCase('lease_bytes', 'B', 'lease record of the hosting process at rest (100,000 instances)', { nats: [{ max: 1024 }], embedded: [{ max: 1024 }] }),
  meshCase('rest_in_msgs_per_s', 'msgs/s', 'messages into the server per second at rest, cluster-wide', {
    // Per process independent of its instances: within the model's 2.5 per process, +20%.
    goals: [{ max: round2(MESH_MODEL.restIn * 1.2) }],
    note: modelNote(MESH_MODEL.restIn, false),
  }),
  meshCase('rest_out_msgs_per_s', 'msgs/s', 'messages out of the server per second at rest, cluster-wide', {
    goals: [{ max: round2(MESH_MODEL.restOut * 1.2) }],
    note: modelNote(MESH_MODEL.restOut, false),
  }),
  meshCase('churn_in_msgs_per_s', 'msgs/s', 'messages into the server per second, 10 spawns/stops per second', { note: modelNote(MESH_MODEL.churnIn, true) }),
  meshCase('churn_out_msgs_per_s', 'msgs/s', 'messages out of the server per second, 10 spawns/stops per second', {
    note: modelNote(MESH_MODEL.churnOut, true),
  }),
  meshCase('client_cpu_rest_pct', '%', "the watching client's CPU at rest (% of one core)", {}),
  meshCase('client_cpu_churn_pct', '%', "the watching client's CPU, 10 spawns/stops per second (% of one core)", {}),
  { ...lifecycleCase('dereg_failures', 'deregistration failures logged while stopping 10,000 instances', [{ max: 0 }]), unit: 'count' },
  llmCase({
    key: 'llm_ttft_p50_ms',
    title: 'LLM pipeline, prefix-sharing load: time to first token, p50',
    unit: 'ms',
    better: 'lower',
    field: 'ttft_p50_ms',
    goals: [{ vs: 'troupe_rr', max: 0.95 }],
  }),
  llmCase({ key: 'llm_ttft_p99_ms', title: 'LLM pipeline: time to first token, p99', unit: 'ms', better: 'lower', field: 'ttft_p99_ms' }),
  llmCase({ key: 'llm_itl_p50_ms', title: 'LLM pipeline: inter-token latency, p50', unit: 'ms', better: 'lower', field: 'itl_p50_ms' }),
  llmCase({ key: 'llm_itl_p99_ms', title: 'LLM pipeline: inter-token latency, p99', unit: 'ms', better: 'lower', field: 'itl_p99_ms' }),
  llmCase({
    key: 'llm_output_tokens_per_s',
    title: 'LLM pipeline: output tokens per second',
    unit: 'tokens/s',
    better: 'higher',
    field: 'output_tokens_per_s',
  }),
  llmCase({
    key: 'llm_kv_hit_pct',
    title: "LLM pipeline: prompt KV blocks found in the decode worker's cache",
    unit: '%',
    better: 'higher',
    field: 'kv_hit_pct',
    goals: [{ vs: 'troupe_rr', min: 1.05 }],
  }),
];

/** Systems of the lifecycle cases: on NATS (JetStream KV registry) and embedded (memory registry). */
function lifecycleCase(field: 'spawn_s' | 'routable_s' | 'stop_s' | 'close_s' | 'stop_close_s' | 'dereg_failures', title: string, goals: Goal[]): CaseDef {
  return {
    key: `lifecycle_10k_${field}`,
    title,
    unit: 's',
    better: 'lower',
    scenario: 'lifecycle',
    measure: 'life10k',
    field,
    systems: { troupe: 'troupe', troupe_embedded: 'troupe_embedded' },
    troupe: 'troupe',
    variants: ['troupe_embedded'],
    goals,
  };
}

/** A case of the 100,000-instance scenario: NATS (the goals given) and embedded (its own goals, as a variant). */
function scaleCase(field: 'spawn_s' | 'routable_s' | ScaleField, unit: CaseDef['unit'], title: string, goals: { nats: Goal[]; embedded: Goal[] }): CaseDef {
  return {
    key: `spawn_100k_${field}`,
    title,
    unit,
    better: 'lower',
    scenario: 'scale',
    measure: 'spawn100k',
    field,
    systems: { troupe: 'troupe', troupe_embedded: 'troupe_embedded' },
    troupe: 'troupe',
    variants: ['troupe_embedded'],
    goals: [...goals.nats.map((g) => ({ ...g, system: 'troupe' })), ...goals.embedded.map((g) => ({ ...g, system: 'troupe_embedded' }))],
  };
}
type ScaleField = 'rss_per_instance_b' | 'heap_per_instance_b' | 'subs_per_instance' | 'discovery_writes_per_s' | 'lease_bytes';

type MeshField = 'rest_in_msgs_per_s' | 'rest_out_msgs_per_s' | 'churn_in_msgs_per_s' | 'churn_out_msgs_per_s' | 'client_cpu_rest_pct' | 'client_cpu_churn_pct';

/** A case of the mesh scenario (Troupe on NATS only: the figures are the server's). */
function meshCase(field: MeshField, unit: CaseDef['unit'], title: string, extra: { goals?: Goal[]; note?: string }): CaseDef {
  return {
    key: `mesh_10x1000_${field}`,
    title: `10 processes x 1,000 idle instances, one watching client: ${title}`,
    unit,
    better: 'lower',
    scenario: 'mesh',
    measure: 'm10x1000',
    field,
    systems: { troupe: 'troupe' },
    troupe: 'troupe',
    goals: extra.goals ?? [],
    ...(extra.note === undefined ? {} : { note: extra.note }),
  };
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

/** Systems the issue names that cannot be measured yet; reported, never faked. */
export const PENDING_SYSTEMS: ReadonlyArray<{ system: string; cases: readonly string[]; why: string }> = [];

/** Cases of the issue not measured here (none: every case of the issue has a measurement). */
export const PENDING_CASES: ReadonlyArray<{ key: string; why: string }> = [];

/** Runners a scenario needs, in case order (deduplicated). */
export function runnersOf(scenario: ScenarioKey, cases: readonly CaseDef[]): RunnerKey[] {
  const out: RunnerKey[] = [];
  for (const c of cases) {
    if (c.scenario !== scenario) continue;
    for (const r of Object.values(c.systems)) if (!out.includes(r)) out.push(r);
  }
  return out;
}

/** The measures one runner makes in a scenario (those of cases it takes part in), by measure name. */
export function measuresOf(scenario: ScenarioKey, runner: RunnerKey, cases: readonly CaseDef[]): string[] {
  const out: string[] = [];
  for (const c of cases) {
    if (c.scenario !== scenario || !Object.values(c.systems).includes(runner)) continue;
    if (!out.includes(c.measure)) out.push(c.measure);
  }
  return out;
}
