import type { InstanceRecord, Runtime } from '@troupe/runtime/internal';
import { parseScope, type Scope } from '../address';
import { connect, type ConnectionFlags } from '../connection';
import { CliError, toCliError } from '../exit-codes';
import { gatherStats, type MicroStats } from '../micro';
import { formatProperties, Output, type OutputFlags, plainTable, trimLines } from '../output';
import { untilInterrupted } from '../signals';

/** Options of `troupe stats`. */
export interface StatsFlags extends ConnectionFlags, OutputFlags {
  watch?: boolean;
  /** How long replies to `$SRV.STATS` are gathered, ms. */
  window: number;
  /** Refresh period with `--watch`, ms. */
  interval: number;
  /** Read discovery for per-instance load (default on). */
  discovery: boolean;
  timeout: number;
}

/** One instance's share of an endpoint in `stats --json`. */
export interface StatsInstance {
  instanceId: string;
  service: string;
  host: string | null;
  pid: number | null;
  requests: number;
  errors: number;
  averageLatencyMs: number;
  lastError: string | null;
  /** Dynamic properties: the stats `data` of the endpoint, merged with discovery's properties. */
  load: Record<string, unknown>;
}

/** One endpoint in `stats --json`: totals over its instances. */
export interface StatsEndpoint {
  namespace: string;
  component: string;
  endpoint: string;
  requests: number;
  errors: number;
  averageLatencyMs: number;
  instances: StatsInstance[];
}

/** The JSON document of `stats --json` (one line per refresh with `--watch`). */
export interface StatsDocument {
  scope: string;
  time: number;
  endpoints: StatsEndpoint[];
}

/**
 * `troupe stats [ns[.comp]]`: per endpoint, requests, errors and average
 * latency summed over its instances, and each instance's share and load,
 * read through the NATS service protocol (`$SRV.STATS`) and discovery.
 * Services are matched by their metadata `namespace` / `component` (a micro
 * service without them is not a Troupe component and is left out).
 */
export async function stats(scopeArg: string | undefined, flags: StatsFlags): Promise<void> {
  const scope = parseScope(scopeArg, 2);
  for (const [k, v] of [
    ['--window', flags.window],
    ['--interval', flags.interval],
  ] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new CliError('USAGE', `${k} takes a positive number of ms`);
  }
  const out = Output.from(flags);
  const runtime = await out.spin('connecting', connect(flags, flags.discovery ? { requestTimeoutMs: flags.timeout } : { discovery: false }));
  try {
    const once = async (): Promise<StatsDocument> => collect(runtime, scope, flags);
    if (!flags.watch) {
      print(out, await out.spin('gathering $SRV.STATS', once(), flags.timeout + flags.window));
      return;
    }
    let stop = false;
    const interrupted = untilInterrupted().then(() => (stop = true));
    while (!stop) {
      print(out, await once(), true);
      await Promise.race([interrupted, new Promise((r) => setTimeout(r, flags.interval))]);
    }
  } finally {
    await runtime.close();
  }
}

async function collect(runtime: Runtime, scope: Scope, flags: StatsFlags): Promise<StatsDocument> {
  const [replies, records] = await Promise.all([
    gatherStats(runtime.bus, { windowMs: flags.window, ...(flags.inboxPrefix !== undefined ? { inboxPrefix: flags.inboxPrefix } : {}) }),
    flags.discovery
      ? runtime.instances(scope.text).catch((err: unknown) => {
          throw toCliError(err);
        })
      : Promise.resolve([] as InstanceRecord[]),
  ]);
  return { scope: scope.text, time: Date.now(), endpoints: aggregate(scope, replies, records) };
}

/**
 * Folds stats responses into per-endpoint totals with per-instance rows.
 * Latency is the request-weighted mean (processing_time / num_requests).
 */
export function aggregate(scope: Pick<Scope, 'namespace' | 'component'>, replies: readonly MicroStats[], records: readonly InstanceRecord[]): StatsEndpoint[] {
  const byInstance = new Map<string, InstanceRecord>();
  for (const r of records) if (!byInstance.has(r.instanceId)) byInstance.set(r.instanceId, r);
  const eps = new Map<string, StatsEndpoint & { ns: number }>();
  const seen = new Set<string>();
  for (const s of replies) {
    const ns = s.metadata?.['namespace'];
    const comp = s.metadata?.['component'];
    if (ns === undefined || comp === undefined) continue;
    if (scope.namespace !== undefined && ns !== scope.namespace) continue;
    if (scope.component !== undefined && comp !== scope.component) continue;
    if (seen.has(s.id)) continue; // one answer per instance (a duplicate via two routes counts once)
    seen.add(s.id);
    const rec = byInstance.get(s.id);
    for (const e of s.endpoints ?? []) {
      const key = `${ns}.${comp}.${e.name}`;
      let ep = eps.get(key);
      if (!ep) eps.set(key, (ep = { namespace: ns, component: comp, endpoint: e.name, requests: 0, errors: 0, averageLatencyMs: 0, instances: [], ns: 0 }));
      const requests = num(e.num_requests);
      ep.requests += requests;
      ep.errors += num(e.num_errors);
      ep.ns += num(e.processing_time);
      const data = e.data && typeof e.data === 'object' ? (e.data as Record<string, unknown>) : {};
      ep.instances.push({
        instanceId: s.id,
        service: s.name,
        host: s.metadata?.['host'] ?? rec?.host ?? null,
        pid: s.metadata?.['pid'] !== undefined ? Number(s.metadata['pid']) : (rec?.pid ?? null),
        requests,
        errors: num(e.num_errors),
        averageLatencyMs: round(num(e.average_processing_time) / 1e6),
        lastError: e.last_error ? e.last_error : null,
        load: { ...(rec?.properties ?? {}), ...data },
      });
    }
  }
  return [...eps.values()]
    .sort((a, b) => `${a.namespace}.${a.component}.${a.endpoint}`.localeCompare(`${b.namespace}.${b.component}.${b.endpoint}`))
    .map(({ ns, ...ep }) => ({
      ...ep,
      averageLatencyMs: ep.requests > 0 ? round(ns / ep.requests / 1e6) : 0,
      instances: ep.instances.sort((a, b) => a.instanceId.localeCompare(b.instanceId)),
    }));
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

function print(out: Output, doc: StatsDocument, redraw = false): void {
  if (out.json) return out.jsonLine(doc);
  const c = out.color;
  const head = `${c.bold(doc.scope || 'all namespaces')}: $SRV.STATS at ${new Date(doc.time).toISOString()}`;
  let text: string;
  if (doc.endpoints.length === 0) {
    text = `${head}\n${c.dim('(no Troupe service answered $SRV.STATS)')}`;
  } else {
    const table = plainTable(
      ['ENDPOINT / INSTANCE', 'REQUESTS', 'ERRORS', 'AVG LATENCY', 'LOAD'].map((h) => c.dim(h)),
      ['left', 'right', 'right', 'right', 'left'],
    );
    for (const ep of doc.endpoints) {
      table.push([
        c.bold(`${ep.namespace}.${ep.component}.${ep.endpoint}`),
        String(ep.requests),
        errors(out, ep.errors),
        ms(ep.averageLatencyMs),
        c.dim(`${ep.instances.length} instance${ep.instances.length === 1 ? '' : 's'}`),
      ]);
      for (const i of ep.instances) {
        table.push([
          `  ${i.instanceId} ${c.dim(`${i.host ?? '?'}:${i.pid ?? '?'}`)}`,
          String(i.requests),
          errors(out, i.errors),
          ms(i.averageLatencyMs),
          formatProperties(i.load),
        ]);
      }
    }
    text = `${head}\n${trimLines(table.toString())}`;
  }
  if (redraw && out.tty) out.raw('\x1b[H\x1b[2J' + text + '\n');
  else out.line(text);
}

function errors(out: Output, n: number): string {
  return n > 0 ? out.color.red(String(n)) : String(n);
}

function ms(v: number): string {
  return v >= 100 ? `${v.toFixed(0)} ms` : v >= 1 ? `${v.toFixed(1)} ms` : `${(v * 1000).toFixed(0)} µs`;
}
