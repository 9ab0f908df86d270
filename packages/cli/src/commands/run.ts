import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { validateName } from '@troupe/runtime/internal';
import { parseJson } from '../body';
import { connect, type ConnectionFlags } from '../connection';
import { CliError, toCliError } from '../exit-codes';
import { Output, type OutputFlags } from '../output';
import { untilInterrupted } from '../signals';

/** Options of `troupe run`. */
export interface RunFlags extends ConnectionFlags, OutputFlags {
  replicas: number;
  namespace?: string;
  config?: string;
  properties: string[];
  component?: string[];
  concurrency?: number;
  grace?: number;
}

/** What the CLI needs of the runtime copy the user's module was decorated with. */
interface RuntimeModule {
  componentMeta(target: unknown): { name: string; endpoints: ReadonlyMap<string, { name: string }> };
}

/** A component class found in the module. */
interface Found {
  exportName: string;
  cls: new (...args: never[]) => unknown;
  name: string;
  endpoints: string[];
}

/**
 * `troupe run ./module.js`: spawns every `@component` class the module
 * exports (or those named with `--component`, by component or class name)
 * in this process, serves until SIGTERM or SIGINT, then closes the runtime:
 * deregister, finish in-flight work within the grace period, drain.
 */
export async function run(file: string, flags: RunFlags): Promise<void> {
  const namespace = flags.namespace ?? process.env.TROUPE_NAMESPACE;
  if (namespace === undefined) throw new CliError('USAGE', 'run needs --namespace (or TROUPE_NAMESPACE): the pipeline the instances join');
  local(() => validateName('namespace', namespace));
  if (!Number.isInteger(flags.replicas) || flags.replicas < 1) throw new CliError('USAGE', '--replicas takes a positive integer');
  const properties = parseProperties(flags.properties);
  const config = flags.config === undefined ? undefined : readConfig(flags.config);
  const out = Output.from(flags);
  const abs = path.resolve(file);
  if (!fs.existsSync(abs)) throw new CliError('USAGE', `no module at ${abs}`);
  const found = await loadComponents(abs, flags.component);

  const runtime = await out.spin('connecting', connect(flags, flags.grace !== undefined ? { gracePeriodMs: flags.grace } : {}));
  let stopping = false;
  try {
    for (const f of found) {
      const handle = await runtime
        .spawn(f.cls as never, {
          namespace,
          replicas: flags.replicas,
          ...(config !== undefined ? { config } : {}),
          ...(Object.keys(properties).length > 0 ? { properties } : {}),
          ...(flags.concurrency !== undefined ? { concurrency: flags.concurrency } : {}),
        })
        .catch((err: unknown) => {
          throw toCliError(err);
        });
      if (out.json) {
        out.jsonLine({ event: 'serving', namespace, component: f.name, endpoints: f.endpoints, instanceIds: [...handle.instanceIds], pid: process.pid });
      } else {
        const c = out.color;
        out.line(
          `${c.green('serving')} ${c.bold(`${namespace}.${f.name}`)} (${f.exportName}) endpoints ${f.endpoints.join(', ')}: ${handle.instanceIds.join(', ')}`,
        );
      }
    }
    if (out.json) out.jsonLine({ event: 'ready', pid: process.pid });
    else out.note(`troupe: ${found.length} component${found.length === 1 ? '' : 's'} served by pid ${process.pid}; SIGTERM or Ctrl-C drains and exits`);
    const sig = await untilInterrupted();
    stopping = true;
    const started = Date.now();
    if (!out.json) out.note(`troupe: ${sig}: deregistering, finishing in-flight work, draining`);
    await runtime.close();
    if (out.json) out.jsonLine({ event: 'stopped', signal: sig, drainMs: Date.now() - started });
    else out.note(`troupe: stopped in ${Date.now() - started} ms`);
  } finally {
    if (!stopping) await runtime.close();
  }
}

/**
 * Imports the module and picks its component classes. The classes are
 * checked with the runtime copy the module itself resolves (a second copy of
 * `@troupe/runtime` would not see the first one's decorators).
 */
export async function loadComponents(abs: string, only: string[] | undefined): Promise<Found[]> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(abs).href)) as Record<string, unknown>;
  } catch (err) {
    throw new CliError('USAGE', `cannot load ${abs}: ${(err as Error).message}`, { cause: err });
  }
  const rt = runtimeFor(abs);
  const exportsOf = new Map<string, unknown>();
  for (const [k, v] of Object.entries(mod)) if (k !== 'default') exportsOf.set(k, v);
  const def = mod['default'];
  if (typeof def === 'function') {
    exportsOf.set('default', def);
  } else if (def && typeof def === 'object') {
    // A CommonJS module's exports arrive as `default` (named ones only when Node's lexer finds them).
    for (const [k, v] of Object.entries(def as object)) if (!exportsOf.has(k)) exportsOf.set(k, v);
  }
  const seen = new Set<unknown>();
  const found: Found[] = [];
  for (const [exportName, v] of exportsOf) {
    if (typeof v !== 'function' || seen.has(v)) continue;
    seen.add(v);
    let meta: ReturnType<RuntimeModule['componentMeta']>;
    try {
      meta = rt.componentMeta(v);
    } catch {
      continue; // not a component
    }
    found.push({ exportName, cls: v as Found['cls'], name: meta.name, endpoints: [...meta.endpoints.keys()] });
  }
  if (only && only.length > 0) {
    const picked = found.filter((f) => only.includes(f.name) || only.includes(f.exportName));
    const missing = only.filter((n) => !found.some((f) => f.name === n || f.exportName === n));
    if (missing.length > 0) {
      throw new CliError(
        'USAGE',
        `${abs} exports no component ${missing.join(', ')}; it exports ${found.map((f) => `${f.name} (${f.exportName})`).join(', ') || 'none'}`,
      );
    }
    return picked;
  }
  if (found.length === 0) throw new CliError('USAGE', `${abs} exports no @component class`);
  return found;
}

function runtimeFor(abs: string): RuntimeModule {
  try {
    return createRequire(abs)('@troupe/runtime/internal') as RuntimeModule;
  } catch {
    return createRequire(__filename)('@troupe/runtime/internal') as RuntimeModule;
  }
}

/** `k=v` pairs; a value that parses as JSON is that value (`n=3` is a number), otherwise the string. */
export function parseProperties(pairs: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const pair of pairs) {
    const i = pair.indexOf('=');
    if (i <= 0) throw new CliError('USAGE', `--properties takes key=value, got ${JSON.stringify(pair)}`);
    const key = pair.slice(0, i);
    const text = pair.slice(i + 1);
    let value: unknown = text;
    try {
      value = JSON.parse(text);
    } catch {
      // a bare string
    }
    out[key] = value;
  }
  return out;
}

function readConfig(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError('USAGE', `cannot read --config ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseJson(text, file);
}

function local<T>(f: () => T): T {
  try {
    return f();
  } catch (err) {
    throw toCliError(err, { local: true });
  }
}
