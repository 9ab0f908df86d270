/**
 * results.json and RESULTS.md: medians over rounds, the ratio of Troupe to
 * its raw anchor, the goals, stream integrity, what is pending, and the
 * machine, versions, date and command that produced them.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type CaseDef, type EventDelivery, type Goal, PENDING_CASES, PENDING_SYSTEMS, type Settings } from './plan';
import { median } from './stats';

/** What the rounds produced, per case and reported system. */
export interface Collected {
  /** case -> system -> one value per round. */
  samples: Record<string, Record<string, number[]>>;
  /** Stream cases: case -> system -> loss, duplicates and errors summed over rounds. */
  integrity: Record<string, Record<string, { lost: number; duplicated: number; errors: string[] }>>;
  /** Throughput cases: case -> system -> failed calls summed over rounds (under the 1% that fails a run). */
  callErrors: Record<string, Record<string, number>>;
  /** Event cases: case -> system -> sent, received, lost, gaps summed over rounds (events are at most once: reported, never a failure). */
  events: Record<string, Record<string, EventDelivery>>;
  /** Discovery cases: case -> system -> every spawn's ms, all rounds. */
  discovery: Record<string, Record<string, number[]>>;
  /** CPU (in cores) that processes outside the benchmark used during each run; empty without /proc. */
  foreignCpu: Array<{ round: number; scenario: string; system: string; cores: number }>;
}

export interface RunInfo {
  settings: Settings;
  command: string;
  startedAt: Date;
  elapsedS: number;
  cases: readonly CaseDef[];
}

/** A goal checked: `ratio` = troupe / `vs`, or, without `vs`, the Troupe figure itself in the case's unit. */
export interface GoalOutcome {
  case: string;
  troupe: string;
  vs?: string;
  ratio: number;
  unit?: string;
  min?: number;
  max?: number;
  met: boolean;
}

export interface Results {
  schema: 1;
  date: string;
  command: string;
  mode: Settings['mode'];
  elapsed_s: number;
  settings: Settings;
  machine: Record<string, string | number>;
  versions: Record<string, string>;
  /** case -> one median per system, and `ratio_vs_raw` = troupe / anchor. */
  cases: Record<string, Record<string, number>>;
  case_info: Record<
    string,
    {
      title: string;
      unit: string;
      better: string;
      troupe: string;
      /** Absent when the case has no anchor (no ratio). */
      anchor?: string;
      /** A reference figure from elsewhere (not a goal). */
      note?: string;
      /** `troupe / system` for every other system. */
      ratios: Record<string, number>;
      /** The same for the case's other Troupe systems. */
      variant_ratios: Record<string, Record<string, number>>;
    }
  >;
  goals: GoalOutcome[];
  stream_integrity: Collected['integrity'];
  call_errors: Collected['callErrors'];
  /** Event cases: sent, received, lost and gap-reported events, summed over rounds. */
  event_delivery: Collected['events'];
  /** Discovery cases: every measured spawn, ms from spawn resolved to listed. */
  discovery_samples_ms: Collected['discovery'];
  /** Reference figures printed beside cases (not goals). */
  notes: Array<{ case: string; note: string }>;
  /** Per run: cores' worth of CPU used by other processes on the machine (contamination). */
  foreign_cpu: Collected['foreignCpu'];
  samples: Collected['samples'];
  pending: { systems: typeof PENDING_SYSTEMS; cases: typeof PENDING_CASES };
}

export function buildResults(run: RunInfo, data: Collected, repoRoot: string): Results {
  const cases: Results['cases'] = {};
  const caseInfo: Results['case_info'] = {};
  const goals: GoalOutcome[] = [];
  for (const c of run.cases) {
    const per = data.samples[c.key];
    if (!per) continue;
    const values: Record<string, number> = {};
    for (const system of Object.keys(c.systems)) {
      const v = median(per[system] ?? []);
      if (Number.isFinite(v)) values[system] = round(v, TWO_DECIMALS.has(c.unit) ? 2 : 1);
    }
    const ratios = ratiosOf(values, c.troupe);
    const vsRaw = c.anchor === undefined ? undefined : ratios[c.anchor];
    cases[c.key] = vsRaw === undefined ? values : { ...values, ratio_vs_raw: vsRaw };
    const variants: Record<string, Record<string, number>> = {};
    for (const v of c.variants ?? []) if (values[v] !== undefined) variants[v] = ratiosOf(values, v);
    caseInfo[c.key] = {
      title: c.title,
      unit: c.unit,
      better: c.better,
      troupe: c.troupe,
      ...(c.anchor === undefined ? {} : { anchor: c.anchor }),
      ...(c.note === undefined ? {} : { note: c.note }),
      ratios,
      variant_ratios: variants,
    };
    for (const [troupe, r] of [[c.troupe, ratios] as const, ...Object.entries(variants)]) {
      for (const g of c.goals) {
        if (g.system !== undefined && g.system !== troupe) continue;
        const ratio = g.vs === undefined ? values[troupe] : r[g.vs];
        if (ratio !== undefined) goals.push(goalOutcome({ key: c.key, troupe, unit: c.unit }, g, ratio));
      }
    }
  }
  return {
    schema: 1,
    date: run.startedAt.toISOString(),
    command: run.command,
    mode: run.settings.mode,
    elapsed_s: Math.round(run.elapsedS),
    settings: run.settings,
    machine: machine(),
    versions: versions(repoRoot),
    cases,
    case_info: caseInfo,
    goals,
    stream_integrity: data.integrity,
    call_errors: data.callErrors,
    event_delivery: data.events,
    discovery_samples_ms: data.discovery,
    notes: run.cases.filter((c) => c.note !== undefined && data.samples[c.key]).map((c) => ({ case: c.key, note: c.note as string })),
    foreign_cpu: data.foreignCpu,
    samples: data.samples,
    pending: { systems: PENDING_SYSTEMS, cases: PENDING_CASES },
  };
}

/** `troupe / other` for every other system of the case. */
function ratiosOf(values: Record<string, number>, troupe: string): Record<string, number> {
  const out: Record<string, number> = {};
  const t = values[troupe];
  for (const [system, v] of Object.entries(values)) {
    if (system !== troupe && t !== undefined && v > 0) out[system] = round(t / v, 3);
  }
  return out;
}

function goalOutcome({ key, troupe, unit }: { key: string; troupe: string; unit: string }, g: Goal, ratio: number): GoalOutcome {
  const met = (g.min === undefined || ratio >= g.min) && (g.max === undefined || ratio <= g.max);
  const out: GoalOutcome = g.vs === undefined ? { case: key, troupe, ratio, unit, met } : { case: key, troupe, vs: g.vs, ratio, met };
  if (g.min !== undefined) out.min = g.min;
  if (g.max !== undefined) out.max = g.max;
  return out;
}

function round(v: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

function machine(): Record<string, string | number> {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memory_gib: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
  };
}

function versions(repoRoot: string): Record<string, string> {
  const out: Record<string, string> = {
    node: process.version,
    'nats-server': natsServerVersion(),
    'nats.js (nats)': pkgVersion('nats'),
    'nats.js v3 (@nats-io/transport-node, used by NestJS)': pkgVersion('@nats-io/transport-node'),
    moleculer: pkgVersion('moleculer'),
    '@nestjs/core': pkgVersion('@nestjs/core'),
    '@nestjs/microservices': pkgVersion('@nestjs/microservices'),
    '@msgpack/msgpack': pkgVersion('@msgpack/msgpack'),
    troupe: `${pkgVersion('@troupe/runtime')}${gitRevision(repoRoot)}`,
  };
  return out;
}

/** Version from a package's package.json, found by walking up from its resolved entry (exports may hide it). */
function pkgVersion(name: string): string {
  try {
    let dir = path.dirname(require.resolve(name));
    for (let i = 0; i < 8; i++) {
      const file = path.join(dir, 'package.json');
      if (fs.existsSync(file)) {
        const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: string; version?: string };
        if (pkg.name === name && pkg.version) return pkg.version;
      }
      dir = path.dirname(dir);
    }
  } catch {
    // not installed: said below
  }
  return 'unknown';
}

function natsServerVersion(): string {
  const bin = process.env['NATS_SERVER_BIN'] || '/usr/sbin/nats-server';
  try {
    const out = execFileSync(bin, ['--version'], { encoding: 'utf8', timeout: 5_000 }).trim();
    return out.replace(/^nats-server:\s*/, '');
  } catch {
    return 'unknown';
  }
}

/** ` (git abc1234)`, with `+changes` when the runtime's sources differ from the commit. */
function gitRevision(repoRoot: string): string {
  try {
    const rev = execFileSync('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', timeout: 5_000 }).trim();
    const dirty = execFileSync('git', ['-C', repoRoot, 'status', '--porcelain', '--', 'packages/runtime'], { encoding: 'utf8', timeout: 5_000 }).trim();
    return ` (git ${rev}${dirty ? ' +uncommitted runtime changes' : ''})`;
  } catch {
    return '';
  }
}

// ---- markdown ---------------------------------------------------------------

/** Table columns: the Troupe system of each case, then the anchors. */
const COLUMNS: ReadonlyArray<{ title: string; systems: readonly string[] }> = [
  { title: 'Troupe', systems: ['troupe', 'troupe_queue', 'troupe_embedded', 'troupe_kv'] },
  { title: 'troupe_embedded_immutable', systems: ['troupe_embedded_immutable'] },
  { title: 'troupe_rr', systems: ['troupe_rr'] },
  { title: 'raw_mux', systems: ['raw_mux'] },
  { title: 'raw_request', systems: ['raw_request'] },
  { title: 'raw (1 msg/item or event)', systems: ['raw'] },
  { title: 'Moleculer', systems: ['moleculer', 'moleculer_local'] },
  { title: 'NestJS', systems: ['nestjs'] },
];

export function table(r: Results): string {
  const head = ['Case', 'Unit', 'Better', ...COLUMNS.map((c) => c.title), 'Troupe ÷ anchor', 'Goal'];
  const rows = [head, head.map((_, i) => (i >= 3 && i < 3 + COLUMNS.length + 1 ? '--:' : '---'))];
  for (const [key, values] of Object.entries(r.cases)) {
    const info = r.case_info[key];
    if (!info) continue;
    const cells = COLUMNS.map((col) => {
      const system = col.systems.find((s) => values[s] !== undefined);
      if (system === undefined) return '';
      const v = fmtIn(values[system] as number, info.unit);
      return system === col.systems[0] || col.systems.length === 1 ? v : `${v} (${system})`;
    });
    const ratio = values['ratio_vs_raw'];
    const goals = r.goals.filter((g) => g.case === key);
    rows.push([
      `\`${key}\``,
      info.unit,
      info.better === 'lower' ? 'lower' : 'higher',
      ...cells,
      ratio === undefined || info.anchor === undefined ? '' : `${ratio.toFixed(2)}× ${info.anchor}`,
      goals.map((g) => goalText(g, info.troupe)).join('; '),
    ]);
  }
  return rows.map((row) => `| ${row.join(' | ')} |`).join('\n');
}

function goalText(g: GoalOutcome, primary: string): string {
  const who = g.troupe === primary ? '' : `${g.troupe} `;
  if (g.vs === undefined) {
    const bound = g.min !== undefined ? `≥ ${g.min} ${g.unit ?? ''}` : `≤ ${g.max} ${g.unit ?? ''}`;
    return `${g.met ? '✅' : '❌'} ${who}${bound.trim()} (${fmtIn(g.ratio, g.unit ?? '')} ${g.unit ?? ''})`.trim();
  }
  const bound = g.min !== undefined ? `≥ ${g.min}× ${g.vs}` : `≤ ${g.max}× ${g.vs}`;
  return `${g.met ? '✅' : '❌'} ${who}${bound} (${g.ratio.toFixed(3)}×)`;
}

/** One goal on one line, for the console and the Goals list. */
export function goalLine(g: GoalOutcome): string {
  const bound = g.min !== undefined ? `≥ ${g.min}` : `≤ ${g.max}`;
  if (g.vs === undefined) return `\`${g.case}\` ${g.troupe} = ${fmtIn(g.ratio, g.unit ?? '')} ${g.unit ?? ''} (goal ${bound} ${g.unit ?? ''})`;
  return `\`${g.case}\` ${g.troupe} ÷ ${g.vs} = ${g.ratio.toFixed(3)}× (goal ${bound}×)`;
}

/** Units whose figures keep two decimals (lifecycle phases are ~1 s; registry writes and subscriptions per instance are ~1). */
const TWO_DECIMALS: ReadonlySet<string> = new Set(['s', 'writes/s', 'msgs/s', 'subs']);

function fmt(v: number): string {
  return Math.round(v).toLocaleString('en-US');
}

/** Milliseconds, MB and percentages keep one decimal (discovery is tens of ms), seconds two (lifecycle phases are ~1 s); everything else is rounded. */
function fmtIn(v: number, unit: string): string {
  if (TWO_DECIMALS.has(unit)) return v.toFixed(2);
  return unit === 'ms' || unit === 'MB' || unit === '%' ? v.toFixed(1) : fmt(v);
}

export function markdown(r: Results): string {
  const s = r.settings;
  const out: string[] = [];
  out.push('# Troupe benchmark results', '');
  out.push(
    `Produced by \`${r.command}\` (${r.mode} mode) on ${r.date}, in ${fmtDuration(r.elapsed_s)}. ` +
      `Each figure is the median over ${s.rounds} rounds; every round runs Troupe and its anchors alternately ` +
      `(rotated order), each system with its own caller process, worker process(es) and the one nats-server, all on this machine. ` +
      'Compare the ratios measured in one run, not absolute figures across machines.',
    '',
  );
  out.push('**Latency cases (µs, ms) — lower is better; rate cases (req/s, items/s, events/s) — higher is better.**', '');
  out.push(table(r), '');
  out.push(
    '`Troupe ÷ anchor` is `ratio_vs_raw` in results.json: the Troupe system of the case (`troupe`, `troupe_queue` or `troupe_embedded`) ' +
      'divided by the raw anchor named after it. For latency a ratio below 1 means Troupe is faster; for rates, above 1.',
    '',
  );
  out.push('## Goals', '');
  for (const g of r.goals) out.push(`- ${g.met ? '✅ met' : '❌ not met'}: ${goalLine(g)}`);
  out.push('');
  if (r.notes.length > 0) {
    out.push('References (not goals):', '');
    for (const n of r.notes) out.push(`- \`${n.case}\`: ${n.note}.`);
    out.push('');
  }
  // Where Troupe falls short and what the profiles show: kept by hand in bench/ANALYSIS.md, carried into every report.
  const analysis = path.join(__dirname, '..', 'ANALYSIS.md');
  if (fs.existsSync(analysis)) out.push(fs.readFileSync(analysis, 'utf8').trim(), '');
  out.push('## Stream integrity', '', 'Items lost and duplicated, summed over all rounds (must be 0 for Troupe).', '');
  out.push('| Case | System | Lost | Duplicated | Errors |', '|---|---|--:|--:|---|');
  for (const [key, per] of Object.entries(r.stream_integrity)) {
    for (const [system, v] of Object.entries(per)) {
      out.push(`| \`${key}\` | ${system} | ${v.lost} | ${v.duplicated} | ${v.errors.length === 0 ? '' : v.errors.map(escape).join('<br>')} |`);
    }
  }
  out.push('');
  const failed = Object.entries(r.call_errors).flatMap(([key, per]) =>
    Object.entries(per)
      .filter(([, n]) => n > 0)
      .map(([sys, n]) => `\`${key}\` ${sys}: ${n}`),
  );
  if (failed.length > 0) out.push(`Failed calls (under the 1% that fails a run), summed over rounds: ${failed.join('; ')}.`, '');
  if (Object.keys(r.event_delivery).length > 0) {
    out.push('## Event delivery', '');
    out.push(
      'Events are at most once (core NATS): loss is reported, not a failure. Summed over the measured runs of all rounds. ' +
        '`Gaps` are events that arrived with a gap reported before them (Troupe: per-publisher `seq`; raw has no detection), `missed` what those gaps count.',
      '',
    );
    out.push('| Case | System | Sent | Received | Lost | Gaps | Missed (by gaps) | Duplicated |', '|---|---|--:|--:|--:|--:|--:|--:|');
    for (const [key, per] of Object.entries(r.event_delivery)) {
      for (const [system, v] of Object.entries(per)) {
        out.push(
          `| \`${key}\` | ${system} | ${fmt(v.sent)} | ${fmt(v.received)} | ${fmt(v.lost)} | ${fmt(v.gaps)} | ${fmt(v.gap_missed)} | ${fmt(v.duplicated)} |`,
        );
      }
    }
    out.push('');
  }
  for (const [key, per] of Object.entries(r.discovery_samples_ms)) {
    for (const [system, v] of Object.entries(per)) {
      out.push(`\`${key}\` ${system}, every spawn (ms, all rounds): ${v.map((x) => x.toFixed(1)).join(', ')}.`, '');
    }
  }
  if (r.pending.systems.length + r.pending.cases.length > 0) out.push('## Not yet measured', '');
  for (const p of r.pending.systems)
    out.push(`- \`${p.system}\` in ${p.cases.map((c) => `\`${c}\``).join(', ')}: not yet measured (feature pending: ${p.why}).`);
  for (const p of r.pending.cases) out.push(`- \`${p.key}\`: not yet measured (${p.why}).`);
  if (r.pending.systems.length + r.pending.cases.length > 0) out.push('');
  out.push('## How each system is called', '');
  out.push(
    "- **troupe**: the typed client of a `@component` with `@endpoint() echo(req) { return req; }` and an async-generator `items` endpoint, with the runtime's default router (client-side round-robin over instances discovered in the JetStream KV registry, sent to the instance's mailbox); msgpack bodies; Troupe's NATS connection sets `noAsyncTraces: true`. **troupe_queue**: the same client with `router: 'queue'` (the NATS queue group balances; no discovery on the path). **troupe_rr**: `router: 'round-robin'` explicitly.",
    '- **raw_mux**: hand-written nats.js: `publish` with a reply subject and one wildcard inbox subscription; msgpack (reused Encoder/Decoder) on both sides; the worker decodes, re-encodes and `respond`s in a queue group. No per-call timer, id or header: the floor Troupe is held to.',
    '- **raw_request**: `nc.request()` with nats.js default options (1 s timeout, async traces **on**: what users write); same worker and payload.',
    "- **raw (1 msg/item)**: the worker `publish`es each item to the caller's reply subject, then an empty end marker; no flow control, no batching.",
    '- **moleculer**: `ServiceBroker` with the NATS transporter, default JSON serializer and balancer, `echo` action returning `ctx.params`; the caller waits for the service before it is timed. **moleculer_local**: the same service without a transporter (local calls; parameters are passed by reference, no serialization). Its local stream is an object-mode `Readable` returned by the action.',
    '- **nestjs**: a NestJS microservice on the NATS transport (`@MessagePattern` echo, default JSON serializer), called with `ClientProxy.send`; NestJS 12 uses nats.js v3 (`@nats-io/transport-node`).',
    '- **troupe_embedded**: one runtime on the in-process `MemoryNetwork` (no server) hosting the component and calling it; unary calls take the in-process path with copy semantics (the default), streams cross the memory network. **troupe_embedded_immutable** (unary only, a variant): the same with the endpoints declared `@endpoint({ immutable: true })`, passed by reference in-process — an opt-in, not what a user gets by default; the goal is judged on troupe_embedded.',
    `- The unary request is the same ~100-byte object everywhere (100 bytes as msgpack, 123 as JSON for Moleculer and NestJS); stream items are ~32 bytes of msgpack.`,
    "- **Events** (`event_p50_us`, `event_p99_us`, `events_per_s`): the worker process publishes, the caller process subscribes; the caller asks for each run over the system itself (Troupe: a `bench_ctl` endpoint; raw: `nc.request()`), untimed. **troupe**: `ctx.publish('tick', e)` in that endpoint (component scope, with the publisher, `seq` and time headers), received with `runtime.namespace('bench').component('bench_ctl').events('tick')` (gap detection on). **raw**: `nc.publish` of the msgpack payload (no headers) and one plain `nc.subscribe` decoding it. The event is 100 bytes of msgpack carrying its publish time, the host wall clock at µs precision (`performance.timeOrigin + performance.now()`), which the subscriber reads against the same clock on arrival.",
    "- **Discovery** (`discovery_visible_*_ms`, Troupe only, no anchor): the caller process watches `instances$` of a probe component's endpoint; per iteration it asks the worker (over a `bench_ctl` endpoint) to `runtime.spawn()` one instance, which answers with the wall-clock time the spawn resolved; the figure is the time the caller's watch first listed it minus that (negative: listed before the spawn resolved). The worker then stops it and the caller waits until it leaves the list.",
    "- **LLM pipeline** (`llm_*`): examples/llm, one process per component (frontend with its OpenAI-compatible HTTP API, router, two prefill and two decode workers) on the bench's nats-server; **troupe_kv**: the router's KV-cache-aware routing (prefix overlap from the decode workers' `kv_events` vs their load), **troupe_rr**: the same router sending round-robin. The caller streams chat completions through HTTP (SSE): eight ~900-token system prompts (~56 blocks of 16 tokens each) shared by all requests in a fixed, well-mixed order, a short unique question, 32 output tokens (`ignore_eos`), against decode workers caching 320 blocks each (LRU) — one worker cannot hold every prefix, two can. Simulated costs: 200 µs per uncached prompt token (prefill), 10 ms per decode step. TTFT: request sent to first content chunk; ITL: between content chunks; tokens/s: completion tokens over the measured wall time; KV hit: prompt blocks found in the serving decode worker's cache over those looked up (the workers' counters before and after the measured requests).",
    `- Throughput: ${s.durationMs} ms window after ${s.warmupMs} ms of warm-up, closed loop with N calls in flight. Latency: ${s.seqCount} sequential calls after ${s.seqWarmup} unmeasured. Streams: one stream of ${s.streamItems.toLocaleString('en-US')} items after a ${s.streamWarmupItems.toLocaleString('en-US')}-item warm-up stream. First item: ${s.firstCount} sequential single-item calls after ${s.firstWarmup} unmeasured. Event latency: ${s.eventCount} events after ${s.eventWarmup} unmeasured, one every ${s.eventIntervalMs} ms (a timer between publishes). Event throughput: the publisher publishes as fast as it can for ${s.durationMs} ms after a ${s.warmupMs} ms warm-up run, awaiting a flush every ${s.eventFlushEvery} events; the rate is events received over first-to-last arrival. Discovery: ${s.discoverySpawns} spawns after ${s.discoveryWarmup} unmeasured. LLM: ${s.llmRequests} requests after ${s.llmWarmup} unmeasured, ${s.llmConcurrency} in flight.`,
    '',
  );
  out.push('## Machine and versions', '');
  out.push(
    `- Machine: ${r.machine['cpu']}, ${r.machine['cores']} cores (shared by nats-server, workers and callers), ${r.machine['memory_gib']} GiB, ${r.machine['os']}`,
  );
  out.push(`- Other processes on the machine: ${foreignText(r.foreign_cpu)}`);
  out.push(
    `- Versions: ${Object.entries(r.versions)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  );
  out.push(`- Date: ${r.date}`);
  out.push(`- Command: \`${r.command}\``, '');
  out.push('## Per-round values', '');
  out.push('| Case | System | Rounds |', '|---|---|---|');
  for (const [key, per] of Object.entries(r.samples)) {
    const unit = r.case_info[key]?.unit ?? '';
    for (const [system, v] of Object.entries(per)) out.push(`| \`${key}\` | ${system} | ${v.map((x) => fmtIn(x, unit)).join(', ')} |`);
  }
  out.push('');
  return out.join('\n');
}

/** How much CPU other processes took during the runs: a benchmark on a shared machine says so. */
function foreignText(runs: Results['foreign_cpu']): string {
  if (runs.length === 0) return 'not measured (no /proc)';
  const sorted = [...runs].sort((a, b) => b.cores - a.cores);
  const worst = sorted[0] as Results['foreign_cpu'][number];
  const busy = runs.filter((x) => x.cores >= FOREIGN_WARN_CORES);
  const median = sorted[sorted.length >> 1]?.cores ?? 0;
  const head = `used a median of ${median.toFixed(2)} cores during a run, at most ${worst.cores.toFixed(2)} (round ${worst.round}, ${worst.scenario} · ${worst.system})`;
  return busy.length === 0
    ? `${head}: the runs had the machine to themselves.`
    : `${head}; ${busy.length} of ${runs.length} runs shared the cores with ≥ ${FOREIGN_WARN_CORES} cores of other work (see \`foreign_cpu\` in results.json), which skews those rounds — the medians damp it.`;
}

/** Other processes' CPU above this (in cores) during a run is worth a warning on a 2-core machine. */
const FOREIGN_WARN_CORES = 0.2;

function escape(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function fmtDuration(seconds: number): string {
  const m = Math.floor(seconds / 60);
  const sec = Math.round(seconds % 60);
  return m > 0 ? `${m} min ${sec} s` : `${sec} s`;
}

/** Writes through a temp file and a rename, so a killed run never leaves half a file. */
export function writeAtomic(file: string, text: string): void {
  const tmp = path.join(path.dirname(file), `results.tmp-${process.pid}-${path.basename(file)}`);
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}
