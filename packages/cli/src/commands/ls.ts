import type { Subscription } from 'rxjs';
import type { InstanceRecord } from '@troupe/runtime/internal';
import { parseScope } from '../address';
import { connect, type ConnectionFlags } from '../connection';
import { CliError, toCliError } from '../exit-codes';
import { formatAge, formatProperties, Output, type OutputFlags, plainTable, trimLines } from '../output';
import { untilInterrupted } from '../signals';

/** Options of `troupe ls`. */
export interface LsFlags extends ConnectionFlags, OutputFlags {
  watch?: boolean;
  timeout: number;
}

/** One instance-endpoint as `ls --json` prints it (stable keys). */
export interface LsItem {
  namespace: string;
  component: string;
  endpoint: string;
  instanceId: string;
  lease: string;
  host: string;
  pid: number;
  startedAt: number;
  ageMs: number;
  /** Static properties merged with the latest dynamic ones. */
  properties: Record<string, unknown>;
  /** The dynamic properties alone (current load); `{}` when none were set. */
  dynamic: Record<string, unknown>;
}

/** The JSON document of `ls --json` (one per redraw with `--watch`, one line each). */
export interface LsDocument {
  scope: string;
  time: number;
  instances: LsItem[];
}

/**
 * `troupe ls [ns[.comp[.ep]]]`: the instances discovery knows, as a tree
 * namespace → component → endpoint → instance; `--watch` redraws on every
 * change (and every second on a terminal, for the ages).
 */
export async function ls(scopeArg: string | undefined, flags: LsFlags): Promise<void> {
  const scope = parseScope(scopeArg, 3);
  const out = Output.from(flags);
  const runtime = await out.spin('connecting', connect(flags, { requestTimeoutMs: flags.timeout }));
  try {
    if (!flags.watch) {
      const list = await out.spin(`listing ${scope.text || 'every namespace'}`, runtime.instances(scope.text), flags.timeout + 500).catch((err: unknown) => {
        throw toCliError(err);
      });
      print(out, scope.text, list, false);
      return;
    }
    await watch(out, scope.text, runtime.watchInstances(scope.text), flags.timeout);
  } finally {
    await runtime.close();
  }
}

async function watch(out: Output, scope: string, list$: import('rxjs').Observable<readonly InstanceRecord[]>, timeoutMs: number): Promise<void> {
  let latest: readonly InstanceRecord[] | undefined;
  let sub: Subscription | undefined;
  let ticker: NodeJS.Timeout | undefined;
  const spinner = out.spinner(`listing ${scope || 'every namespace'}`);
  try {
    await new Promise<void>((resolve, reject) => {
      const first = setTimeout(() => reject(new CliError('TIMEOUT', `the registry did not answer a listing within ${timeoutMs} ms`)), timeoutMs);
      sub = list$.subscribe({
        next: (list) => {
          clearTimeout(first);
          spinner?.stop();
          latest = list;
          print(out, scope, list, true);
        },
        error: (err: unknown) => {
          clearTimeout(first);
          reject(toCliError(err));
        },
      });
      // Ages move on a terminal even when the list does not.
      if (out.tty) ticker = setInterval(() => latest && print(out, scope, latest, true), 1_000);
      untilInterrupted().then(() => resolve(), reject);
    });
  } finally {
    spinner?.stop();
    if (ticker) clearInterval(ticker);
    sub?.unsubscribe();
  }
}

function print(out: Output, scope: string, list: readonly InstanceRecord[], redraw: boolean): void {
  const now = Date.now();
  if (out.json) {
    const doc: LsDocument = { scope, time: now, instances: list.map((r) => item(r, now)) };
    out.jsonLine(doc);
    return;
  }
  const text = render(out, scope, list, now);
  if (redraw && out.tty) out.raw('\x1b[H\x1b[2J' + text + '\n');
  else out.line(text + (redraw ? '\n' : ''));
}

function item(r: InstanceRecord, now: number): LsItem {
  return {
    namespace: r.namespace,
    component: r.component,
    endpoint: r.endpoint,
    instanceId: r.instanceId,
    lease: r.lease,
    host: r.host,
    pid: r.pid,
    startedAt: r.startedAt,
    ageMs: now - r.startedAt,
    properties: { ...r.properties },
    dynamic: { ...r.dynamic },
  };
}

/**
 * The tree as a borderless table: one row per namespace, component and
 * endpoint (indented labels), one per instance with host, pid, age and
 * static properties and current load (the dynamic properties).
 */
export function render(out: Output, scope: string, list: readonly InstanceRecord[], now: number): string {
  const c = out.color;
  const instanceCount = new Set(list.map((r) => r.instanceId)).size;
  const header = `${c.bold(scope || 'all namespaces')}: ${instanceCount} instance${instanceCount === 1 ? '' : 's'} at ${new Date(now).toISOString()}`;
  if (list.length === 0) return `${header}\n${c.dim('(no instances)')}`;
  const table = plainTable(['NAME', 'HOST', 'PID', 'AGE', 'PROPERTIES', 'LOAD'].map((h) => c.dim(h)));
  const tree = group(list);
  for (const [ns, comps] of tree) {
    table.push([c.bold(ns), '', '', '', '', '']);
    const compNames = [...comps.keys()];
    compNames.forEach((comp, ci) => {
      const lastComp = ci === compNames.length - 1;
      table.push([`${lastComp ? '└─' : '├─'} ${c.cyan(comp)}`, '', '', '', '', '']);
      const eps = comps.get(comp) as Map<string, InstanceRecord[]>;
      const epNames = [...eps.keys()];
      epNames.forEach((ep, ei) => {
        const lastEp = ei === epNames.length - 1;
        const pre1 = lastComp ? '   ' : '│  ';
        const insts = eps.get(ep) as InstanceRecord[];
        table.push([`${pre1}${lastEp ? '└─' : '├─'} ${c.green(ep)} ${c.dim(`(${insts.length})`)}`, '', '', '', '', '']);
        insts.forEach((r, ii) => {
          const pre2 = pre1 + (lastEp ? '   ' : '│  ');
          table.push([
            `${pre2}${ii === insts.length - 1 ? '└─' : '├─'} ${r.instanceId}`,
            r.host,
            String(r.pid),
            formatAge(now - r.startedAt),
            formatProperties(staticOnly(r)),
            formatProperties(r.dynamic ?? {}),
          ]);
        });
      });
    });
  }
  return `${header}\n${trimLines(table.toString())}`;
}

/** The properties given at spawn (the merged ones minus what the dynamic ones set). */
function staticOnly(r: InstanceRecord): Record<string, unknown> {
  if (!r.dynamic) return { ...r.properties };
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r.properties)) if (!(k in r.dynamic)) out[k] = v;
  return out;
}

function group(list: readonly InstanceRecord[]): Map<string, Map<string, Map<string, InstanceRecord[]>>> {
  const tree = new Map<string, Map<string, Map<string, InstanceRecord[]>>>();
  const sorted = [...list].sort(
    (a, b) =>
      a.namespace.localeCompare(b.namespace) ||
      a.component.localeCompare(b.component) ||
      a.endpoint.localeCompare(b.endpoint) ||
      a.startedAt - b.startedAt ||
      a.instanceId.localeCompare(b.instanceId),
  );
  for (const r of sorted) {
    let comps = tree.get(r.namespace);
    if (!comps) tree.set(r.namespace, (comps = new Map()));
    let eps = comps.get(r.component);
    if (!eps) comps.set(r.component, (eps = new Map()));
    let insts = eps.get(r.endpoint);
    if (!insts) eps.set(r.endpoint, (insts = []));
    insts.push(r);
  }
  return tree;
}
