/**
 * What the benchmark runs: settings per mode, the measurements a caller
 * process makes, the systems (which worker process, which driver), the
 * scenarios (one worker topology, several measurements in one caller
 * process) and the cases reported in results.json.
 */

/** How long and how often; `--quick` is for CI, where figures are not asserted. */
export interface Settings {
  mode: 'full' | 'quick';
  /** Each scenario runs every system once per round, in rotated order. */
  rounds: number;
  /** Throughput: load before the window opens. */
  warmupMs: number;
  /** Throughput: the measured window. */
  durationMs: number;
  /** Sequential latency: calls measured, after `seqWarmup` unmeasured ones. */
  seqCount: number;
  seqWarmup: number;
  /** Items of the measured stream, after one unmeasured stream of `streamWarmupItems`. */
  streamItems: number;
  streamWarmupItems: number;
  /** Time-to-first-item: calls measured, after `firstWarmup` unmeasured ones. */
  firstCount: number;
  firstWarmup: number;
}

export const FULL: Settings = {
  mode: 'full',
  rounds: 5,
  warmupMs: 1_000,
  durationMs: 3_000,
  seqCount: 5_000,
  seqWarmup: 500,
  streamItems: 1_000_000,
  streamWarmupItems: 100_000,
  firstCount: 2_000,
  firstWarmup: 200,
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
};

/** One measurement a caller process makes; the results below answer them in order. */
export type Measure =
  | { kind: 'latency'; count: number; warmup: number }
  | { kind: 'throughput'; concurrency: number; warmupMs: number; durationMs: number }
  | { kind: 'stream'; items: number; warmupItems: number }
  | { kind: 'first_item'; count: number; warmup: number };

export interface LatencyResult {
  kind: 'latency';
  p50_us: number;
  p99_us: number;
  mean_us: number;
}
export interface ThroughputResult {
  kind: 'throughput';
  rps: number;
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
export type MeasureResult = LatencyResult | ThroughputResult | StreamResult;

/** Worker processes; `none` for embedded systems (the driver hosts both sides). */
export type WorkerKind = 'troupe' | 'raw' | 'moleculer' | 'nestjs' | 'none';
/** Caller-side implementations (see caller.ts). */
export type DriverKind =
  | 'troupe'
  | 'troupe_queue'
  | 'troupe_rr'
  | 'raw_mux'
  | 'raw_request'
  | 'moleculer'
  | 'nestjs'
  | 'troupe_embedded'
  | 'moleculer_local';

/** A runnable system: what serves and what calls. */
export interface Runner {
  worker: WorkerKind;
  driver: DriverKind;
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
  /** Moleculer ServiceBroker, NATS transporter, default JSON serializer and balancer. */
  moleculer: { worker: 'moleculer', driver: 'moleculer' },
  /** NestJS microservice, NATS transport, `@MessagePattern` echo, ClientProxy caller. */
  nestjs: { worker: 'nestjs', driver: 'nestjs' },
  /** Troupe on the in-process MemoryNetwork: no server, no worker process. */
  troupe_embedded: { worker: 'none', driver: 'troupe_embedded' },
  /** Moleculer without a transporter: local calls. */
  moleculer_local: { worker: 'none', driver: 'moleculer_local' },
} as const satisfies Record<string, Runner>;
export type RunnerKey = keyof typeof RUNNERS;

/** A worker topology and the measurements one caller process makes against it. */
export interface Scenario {
  workers: number;
  measures: Record<string, (s: Settings) => Measure>;
}

const throughput =
  (concurrency: number) =>
  (s: Settings): Measure => ({ kind: 'throughput', concurrency, warmupMs: s.warmupMs, durationMs: s.durationMs });
const stream = (s: Settings): Measure => ({ kind: 'stream', items: s.streamItems, warmupItems: s.streamWarmupItems });

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
} as const satisfies Record<string, Scenario>;
export type ScenarioKey = keyof typeof SCENARIOS;

/** A goal the lead set: `troupe / vs` at least `min` (throughput) or at most `max` (latency). */
export interface Goal {
  vs: string;
  min?: number;
  max?: number;
}

/** One reported case: a number per system, `ratio_vs_raw` = troupe / anchor. */
export interface CaseDef {
  key: string;
  title: string;
  unit: 'µs' | 'req/s' | 'items/s';
  better: 'lower' | 'higher';
  scenario: ScenarioKey;
  measure: string;
  field: 'p50_us' | 'p99_us' | 'rps' | 'items_per_s';
  /** Reported system name -> the runner that produces it. */
  systems: Readonly<Record<string, RunnerKey>>;
  /** The Troupe system of this case (numerator of every ratio). */
  troupe: string;
  /** Other Troupe systems of the case; the goals are checked for them too. */
  variants?: readonly string[];
  /** The raw anchor (denominator of `ratio_vs_raw`). */
  anchor: string;
  goals: readonly Goal[];
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
    systems: { troupe_embedded: 'troupe_embedded', moleculer_local: 'moleculer_local' },
    troupe: 'troupe_embedded',
    anchor: 'moleculer_local',
    goals: [{ vs: 'moleculer_local', min: 0.5 }],
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
    goals: [{ vs: 'moleculer_local', min: 0.5 }],
  },
];

/** Systems the issue names that cannot be measured yet; reported, never faked. */
export const PENDING_SYSTEMS: ReadonlyArray<{ system: string; cases: readonly string[]; why: string }> = [];

/**
 * Cases of the issue not measured here. Events (e2c9be0) and discovery
 * (4136089) landed while this harness was being written; their cases are
 * still to be added.
 */
export const PENDING_CASES: ReadonlyArray<{ key: string; why: string }> = [
  { key: 'event_p50_us', why: 'events landed in e2c9be0 after the harness was specified; the case is not written yet' },
  { key: 'events_per_s', why: 'events landed in e2c9be0 after the harness was specified; the case is not written yet' },
  { key: 'discovery_visible_p99_ms', why: 'discovery landed in 4136089 after the harness was specified; the case is not written yet' },
];

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
