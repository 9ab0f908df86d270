/**
 * `pnpm bench`: the orchestrator. Starts its own nats-server on an
 * OS-assigned port, then for each round and scenario runs every system in
 * its own processes (worker(s) forked from worker.js, the caller forked from
 * caller.js), in an order rotated per round so Troupe and its anchors
 * alternate; this process only coordinates. A full run of every case
 * writes bench/results.json and bench/RESULTS.md; `--quick`, `--only` and
 * `--rounds` runs write results.tmp-<mode>.* instead, so CI and local smoke
 * runs never overwrite the committed figures.
 *
 *   pnpm bench                     full run (~8 min on 2 cores)
 *   pnpm bench --quick             CI smoke run (< 2 min); figures not asserted
 *   pnpm bench --only unary_c256_rps,stream_items_per_s
 *   pnpm bench --rounds 3
 *   pnpm bench --profile [system] [--only case]   CPU profiles of caller and worker (default: troupe, unary_c256_rps)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NatsServer } from '@troupe/testing';
import type { CallerJob, WorkerJob } from './ipc';
import {
  CASES,
  type CaseDef,
  FULL,
  type MeasureResult,
  measuresOf,
  QUICK,
  RUNNERS,
  type RunnerKey,
  runnersOf,
  type Scenario,
  SCENARIOS,
  type ScenarioKey,
  type Settings,
} from './plan';
import { cpuMark, foreignCores } from './cpu';
import { MONITOR_ENV } from './scale';
import { Child, killAllChildren, liveChildren } from './procs';
import { profileMarkdown, summarizeProfile } from './profile';
import { buildResults, type Collected, goalLine, markdown, table, writeAtomic } from './report';

const BENCH_DIR = path.resolve(__dirname, '..');
const REPO_ROOT = path.resolve(BENCH_DIR, '..');
const WORKER_JS = path.join(__dirname, 'worker.js');
const CALLER_JS = path.join(__dirname, 'caller.js');
const READY_TIMEOUT_MS = 30_000;
/** Whole-run bound, so a hang nobody anticipated still ends with an error. */
const RUN_LIMIT_MS = { full: 45 * 60_000, quick: 8 * 60_000 } as const; // full: ~25 min with every case (a 25 min bound stopped one on 2026-12-01); quick: ~2 min, ~3.5 on a busy machine with the LLM cases

interface Options {
  settings: Settings;
  /** The full run as committed: every case, the default rounds. */
  standard: boolean;
  only: string[] | undefined;
  profile: RunnerKey | undefined;
  args: string[];
}

function parseArgs(argv: string[]): Options {
  let quick = false;
  let rounds: number | undefined;
  let only: string[] | undefined;
  let profile: RunnerKey | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const [flag, inline] = a.includes('=') ? (a.split('=', 2) as [string, string]) : [a, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) usage(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--quick':
        quick = true;
        break;
      case '--rounds':
        rounds = Number(value());
        if (!Number.isInteger(rounds) || rounds < 1) usage('--rounds needs an integer >= 1');
        break;
      case '--only':
        only = value().split(',').filter(Boolean);
        for (const k of only) if (!CASES.some((c) => c.key === k)) usage(`unknown case ${k}`);
        break;
      case '--profile': {
        const next = inline ?? (argv[i + 1]?.startsWith('--') === false ? argv[++i] : undefined);
        const key = next ?? 'troupe';
        if (!(key in RUNNERS)) usage(`--profile takes one of: ${Object.keys(RUNNERS).join(', ')}`);
        profile = key as RunnerKey;
        break;
      }
      case '--help':
      case '-h':
        usage();
        break;
      default:
        usage(`unknown argument ${a}`);
    }
  }
  const settings = { ...(quick ? QUICK : FULL) };
  if (rounds !== undefined) settings.rounds = rounds;
  return { settings, standard: !quick && only === undefined && rounds === undefined, only, profile, args: argv };
}

function usage(error?: string): never {
  if (error) console.error(`bench: ${error}`);
  console.error(
    ['usage: pnpm bench [--quick] [--rounds N] [--only case,case] [--profile [system]]', `cases: ${CASES.map((c) => c.key).join(', ')}`].join('\n'),
  );
  process.exit(error ? 2 : 0);
}

function commandLine(args: string[]): string {
  const base = process.env['npm_lifecycle_event'] === 'bench' ? 'pnpm bench' : 'node bench/dist/run.js';
  return [base, ...args].join(' ');
}

async function main(): Promise<number> {
  const opts = parseArgs(process.argv.slice(2));
  const s = opts.settings;
  const limit = setTimeout(() => {
    console.error(`bench: the whole run exceeded ${RUN_LIMIT_MS[s.mode] / 60_000} min; something hangs. Killing every child.`);
    killAllChildren();
    process.exit(1);
  }, RUN_LIMIT_MS[s.mode]);
  limit.unref();

  const startedAt = new Date();
  // JetStream on: Troupe's discovery registry is a JetStream KV bucket; the other systems never touch it.
  const server = await NatsServer.start({ jetstream: true });
  console.log(`bench: nats-server pid ${server.pid} on ${server.url}`);
  // The scale case reads subscriptions and registry writes from the server's monitoring port; children inherit it.
  process.env[MONITOR_ENV] = server.monitorUrl;
  try {
    if (opts.profile) return await profile(server.url, opts.profile, opts.only);
    const cases = opts.only ? CASES.filter((c) => opts.only?.includes(c.key)) : CASES;
    const data = await runRounds(server, s, cases);
    const results = buildResults(
      { settings: s, command: commandLine(opts.args), startedAt, elapsedS: (Date.now() - startedAt.getTime()) / 1000, cases },
      data,
      REPO_ROOT,
    );
    const [jsonFile, mdFile] = opts.standard
      ? [path.join(BENCH_DIR, 'results.json'), path.join(BENCH_DIR, 'RESULTS.md')]
      : [path.join(BENCH_DIR, `results.tmp-${s.mode}.json`), path.join(BENCH_DIR, `results.tmp-${s.mode}.md`)];
    writeAtomic(jsonFile, `${JSON.stringify(results, null, 2)}\n`);
    writeAtomic(mdFile, markdown(results));
    console.log(`\n${table(results)}\n`);
    for (const g of results.goals) if (!g.met) console.log(`goal not met: ${goalLine(g).replace(/`/g, '')}`);
    for (const n of results.notes) console.log(`note: ${n.case}: ${n.note}`);
    console.log(`\nbench: wrote ${path.relative(REPO_ROOT, jsonFile)} and ${path.relative(REPO_ROOT, mdFile)} in ${results.elapsed_s} s`);
    return integrityFailures(data, cases);
  } finally {
    killAllChildren(); // each child is stopped where it is started; this is the backstop
    await server.stop();
  }
}

/** Troupe must never lose or duplicate a stream item; an anchor may (raw has no flow control), and that is reported. */
function integrityFailures(data: Collected, cases: readonly CaseDef[]): number {
  let bad = 0;
  for (const c of cases) {
    const v = data.integrity[c.key]?.[c.troupe];
    if (v && (v.lost > 0 || v.duplicated > 0 || v.errors.length > 0)) {
      console.error(`bench: ${c.key}: ${c.troupe} lost ${v.lost} and duplicated ${v.duplicated} items; errors: ${v.errors.join('; ') || 'none'}`);
      bad++;
    }
  }
  return bad === 0 ? 0 : 1;
}

async function runRounds(server: NatsServer, s: Settings, cases: readonly CaseDef[]): Promise<Collected> {
  const data: Collected = { samples: {}, integrity: {}, callErrors: {}, events: {}, discovery: {}, foreignCpu: [] };
  const scenarios = (Object.keys(SCENARIOS) as ScenarioKey[]).filter((k) => cases.some((c) => c.scenario === k));
  for (let round = 0; round < s.rounds; round++) {
    for (const scenario of scenarios) {
      const shape: Scenario = SCENARIOS[scenario];
      if (shape.maxRounds !== undefined && round >= shape.maxRounds[s.mode]) continue;
      const runners = rotate(runnersOf(scenario, cases), round);
      for (const runner of runners) {
        const names = measuresOf(scenario, runner, cases);
        const started = Date.now();
        const mark = cpuMark([server.pid]);
        const results = await runOnce({ url: server.url, scenario, runner, names, settings: s });
        const foreign = foreignCores(mark, cpuMark([server.pid]));
        record(data, cases, { scenario, runner, names, results });
        if (foreign !== undefined) data.foreignCpu.push({ round: round + 1, scenario, system: runner, cores: Math.round(foreign * 100) / 100 });
        const other = foreign === undefined ? '' : `, other processes ${foreign.toFixed(2)} cores`;
        console.log(
          `[round ${round + 1}/${s.rounds}] ${scenario} · ${runner}: ${describe(names, results)} (${((Date.now() - started) / 1000).toFixed(1)} s${other})`,
        );
      }
    }
  }
  if (liveChildren() !== 0) throw new Error(`${liveChildren()} child processes still alive after the last run`);
  return data;
}

function rotate<T>(list: T[], by: number): T[] {
  const k = list.length === 0 ? 0 : by % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}

/** One system in one scenario: what to run and with which node flags per role. */
interface RunSpec {
  url: string;
  scenario: ScenarioKey;
  runner: RunnerKey;
  /** Measures of the scenario this runner makes, in order. */
  names: string[];
  settings: Settings;
  execArgv?: (role: string) => string[];
}

let runCount = 0;

/** Starts the system's workers, runs its caller, stops everything by pid. */
async function runOnce(spec: RunSpec): Promise<MeasureResult[]> {
  const { url, scenario, runner, names, settings } = spec;
  const execArgv = spec.execArgv ?? (() => []);
  const def = RUNNERS[runner];
  const shape = SCENARIOS[scenario];
  const workers: Child[] = [];
  let endpoint: string | undefined;
  try {
    if (def.worker !== 'none') {
      // A scenario with roles gives each worker process its own arguments; each run gets a namespace of its own.
      const roles: ReadonlyArray<readonly string[]> = 'roles' in shape ? shape.roles : Array.from({ length: shape.workers }, () => []);
      const runArgs = 'roles' in shape ? ['--namespace', `bench_${runner}_${++runCount}`] : [];
      const runnerArgs: readonly string[] = 'args' in def ? def.args : [];
      roles.forEach((role, i) => {
        const args = [...role, ...runnerArgs, ...runArgs];
        const job: WorkerJob = args.length === 0 ? { worker: def.worker, url } : { worker: def.worker, url, args };
        workers.push(
          Child.fork(`${runner} worker ${i + 1}${role.length ? ` (${role.join(' ')})` : ''}`, WORKER_JS, { job, execArgv: execArgv(`worker${i + 1}`) }),
        );
      });
      const ready = await Promise.all(workers.map((w) => w.waitFor('ready', READY_TIMEOUT_MS, 'ready')));
      endpoint = ready.map((m) => m.endpoint).find((e) => e !== undefined);
    }
    const makers = shape.measures as Record<string, (s: Settings) => CallerJob['measures'][number]>;
    const measures = names.map((n) => {
      const make = makers[n];
      if (!make) throw new Error(`scenario ${scenario} has no measure ${n}`);
      return make(settings);
    });
    const job: CallerJob = { driver: def.driver, url: def.worker === 'none' ? '' : url, measures, ...(endpoint === undefined ? {} : { endpoint }) };
    const caller = Child.fork(`${runner} caller`, CALLER_JS, { job, execArgv: execArgv('caller') });
    try {
      const msg = await caller.waitFor('result', callerBound(job), `its ${scenario} results`);
      return msg.results;
    } finally {
      await caller.stop();
    }
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
}

/** Generous: connect + probe + every measurement at a slow pace; only a hang should reach it. */
function callerBound(job: CallerJob): number {
  let ms = 60_000;
  for (const m of job.measures) {
    if (m.kind === 'throughput') ms += m.warmupMs + m.durationMs + 20_000;
    else if (m.kind === 'latency' || m.kind === 'first_item') ms += 30_000 + (m.count + m.warmup) * 20;
    else if (m.kind === 'event_latency') ms += 40_000 + (m.count + m.warmup) * (m.intervalMs + 20);
    else if (m.kind === 'event_rate') ms += 40_000 + (m.warmupMs + m.durationMs) * 3;
    else if (m.kind === 'discovery') ms += 60_000 + (m.count + m.warmup) * 25_000;
    else if (m.kind === 'lifecycle') ms += 60_000 + m.replicas * 30;
    else if (m.kind === 'scale') ms += 120_000 + m.restMs + m.replicas * 3;
    else if (m.kind === 'mesh') ms += 300_000 + m.restMs + m.churnMs;
    else if (m.kind === 'llm') ms += 60_000 + (m.requests + m.warmup) * 1_000;
    else ms += 40_000 + ((m.items + m.warmupItems) / 5_000) * 1000;
  }
  return ms;
}

function record(
  data: Collected,
  cases: readonly CaseDef[],
  run: { scenario: ScenarioKey; runner: RunnerKey; names: string[]; results: MeasureResult[] },
): void {
  const { scenario, runner, names, results } = run;
  for (const c of cases) {
    if (c.scenario !== scenario) continue;
    const result = results[names.indexOf(c.measure)];
    if (!result) continue;
    for (const [system, r] of Object.entries(c.systems)) {
      if (r !== runner) continue;
      const value = pick(c, result);
      ((data.samples[c.key] ??= {})[system] ??= []).push(value);
      if (result.kind === 'stream') {
        const v = ((data.integrity[c.key] ??= {})[system] ??= { lost: 0, duplicated: 0, errors: [] });
        v.lost += result.lost;
        v.duplicated += result.duplicated;
        if (result.error) v.errors.push(result.error);
      }
      if (result.kind === 'throughput') {
        const errors = (data.callErrors[c.key] ??= {});
        errors[system] = (errors[system] ?? 0) + result.errors;
      }
      // Delivery counts and discovery samples belong to the measurement, not the case: kept under its first case (p50 and p99 share one run).
      const firstOfMeasure = cases.find((x) => x.scenario === c.scenario && x.measure === c.measure) === c;
      if (firstOfMeasure && (result.kind === 'event_latency' || result.kind === 'event_rate')) {
        const v = ((data.events[c.key] ??= {})[system] ??= { sent: 0, received: 0, lost: 0, gaps: 0, gap_missed: 0, duplicated: 0 });
        v.sent += result.sent;
        v.received += result.received;
        v.lost += result.lost;
        v.gaps += result.gaps;
        v.gap_missed += result.gap_missed;
        v.duplicated += result.duplicated;
      }
      if (firstOfMeasure && result.kind === 'discovery') ((data.discovery[c.key] ??= {})[system] ??= []).push(...result.samples_ms);
    }
  }
}

function pick(c: CaseDef, r: MeasureResult): number {
  const v = (r as unknown as Record<string, unknown>)[c.field];
  if (typeof v !== 'number') throw new Error(`case ${c.key}: measurement ${c.measure} has no ${c.field}`);
  return v;
}

function describe(names: string[], results: MeasureResult[]): string {
  return results
    .map((r, i) => {
      const n = names[i];
      switch (r.kind) {
        case 'latency':
          return `${n} p50 ${Math.round(r.p50_us)} µs p99 ${Math.round(r.p99_us)} µs`;
        case 'throughput':
          return `${n} ${Math.round(r.rps).toLocaleString('en-US')} req/s, peak heap ${r.peak_heap_mb} MB${r.errors ? ` (${r.errors} errors)` : ''}`;
        case 'stream':
          return `${n} ${Math.round(r.items_per_s).toLocaleString('en-US')} items/s lost ${r.lost} dup ${r.duplicated}${r.error ? ` error: ${r.error}` : ''}`;
        case 'event_latency':
          return `${n} p50 ${Math.round(r.p50_us)} µs p99 ${Math.round(r.p99_us)} µs (${r.received}/${r.sent} events, ${r.gaps} gaps)`;
        case 'event_rate':
          return `${n} ${Math.round(r.events_per_s).toLocaleString('en-US')} events/s received, ${Math.round(r.published_per_s).toLocaleString('en-US')}/s published (lost ${r.lost} of ${r.sent}, ${r.gaps} gaps reporting ${r.gap_missed})`;
        case 'discovery':
          return `${n} p50 ${r.p50_ms.toFixed(1)} ms p99 ${r.p99_ms.toFixed(1)} ms max ${r.max_ms.toFixed(1)} ms over ${r.samples_ms.length} spawns`;
        case 'lifecycle':
          return `${n} spawn ${r.spawn_s.toFixed(2)} s, routable ${r.routable_s.toFixed(2)} s, stop ${r.stop_s.toFixed(2)} s, close ${r.close_s.toFixed(2)} s, ${r.dereg_failures} deregistration failures`;
        case 'scale':
          return `${n} spawn ${r.spawn_s.toFixed(2)} s, routable ${r.routable_s.toFixed(2)} s, ${Math.round(r.rss_per_instance_b)} B RSS and ${Math.round(r.heap_per_instance_b)} B heap per instance, ${r.subs_per_instance.toFixed(2)} subscriptions per instance, ${r.discovery_writes_per_s.toFixed(2)} registry writes/s at rest, lease ${r.lease_bytes} B`;
        case 'mesh':
          return `${n} (${r.processes} × ${r.instances} instances${r.instances === 1_000 ? '' : ', fewer in quick mode'}) at rest ${r.rest_in_msgs_per_s.toFixed(1)} msgs/s in, ${r.rest_out_msgs_per_s.toFixed(1)} out, client CPU ${r.client_cpu_rest_pct.toFixed(2)}%, ${r.rest_list_emissions} list emissions · churning (${r.churn_ops} spawns/stops) ${r.churn_in_msgs_per_s.toFixed(1)} in, ${r.churn_out_msgs_per_s.toFixed(1)} out, client CPU ${r.client_cpu_churn_pct.toFixed(2)}%`;
        case 'llm':
          return `${n} TTFT p50 ${r.ttft_p50_ms.toFixed(1)} ms p99 ${r.ttft_p99_ms.toFixed(1)} ms · ITL p50 ${r.itl_p50_ms.toFixed(1)} ms p99 ${r.itl_p99_ms.toFixed(1)} ms · ${Math.round(r.output_tokens_per_s)} tokens/s · KV hit ${r.kv_hit_pct.toFixed(1)}% (${r.requests} requests, ${r.errors} errors)`;
      }
    })
    .join(' · ');
}

/**
 * `--profile [system] [--only case]`: one run of the case (default: unary,
 * 256 in flight) against one system with `--cpu-prof` on the caller and the
 * worker (embedded systems: the one caller process); prints and writes the
 * top self-time functions.
 */
async function profile(url: string, runner: RunnerKey, only: string[] | undefined): Promise<number> {
  const embedded = RUNNERS[runner].worker === 'none';
  const key = only?.[0] ?? (embedded ? 'embedded_unary_rps' : 'unary_c256_rps');
  const c = CASES.find((x) => x.key === key);
  if (!c || !Object.values(c.systems).includes(runner)) {
    throw new Error(`--profile ${runner}: case ${key} does not measure ${runner}; pick a case with --only`);
  }
  const dir = path.join(BENCH_DIR, 'profiles');
  fs.mkdirSync(dir, { recursive: true });
  const stem = `${runner}-${key}`;
  const names = (role: string): string => `${stem}-${role}.cpuprofile`;
  for (const f of fs.readdirSync(dir)) if (f.startsWith(`${stem}-`)) fs.rmSync(path.join(dir, f));
  const s: Settings = { ...FULL, warmupMs: 2_000, durationMs: 5_000 };
  const results = await runOnce({
    url,
    scenario: c.scenario,
    runner,
    names: [c.measure],
    settings: s,
    execArgv: (role) => ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${names(role)}`],
  });
  const line = describe([c.measure], results);
  console.log(`profile run: ${line}`);
  const parts = [
    `# CPU profile: ${runner}, ${key} (${c.title})`,
    '',
    `\`${commandLine(['--profile', runner, '--only', key])}\`; ${line} (the profiler slows it).`,
    '',
  ];
  for (const role of embedded ? ['caller'] : ['caller', 'worker1']) {
    const file = path.join(dir, names(role));
    if (!fs.existsSync(file)) throw new Error(`no profile written at ${file}: the ${role} did not exit cleanly`);
    parts.push(profileMarkdown(`${role} (${path.relative(REPO_ROOT, file)})`, summarizeProfile(file, REPO_ROOT)));
  }
  const md = parts.join('\n');
  const out = path.join(dir, `${stem}.md`);
  fs.writeFileSync(out, md);
  console.log(`\n${md}\nbench: wrote ${path.relative(REPO_ROOT, out)}`);
  return 0;
}

process.once('SIGINT', () => {
  killAllChildren();
  process.exit(130);
});
process.once('SIGTERM', () => {
  killAllChildren();
  process.exit(143);
});
process.on('exit', killAllChildren);

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    killAllChildren();
    process.exit(1);
  },
);
