import type { Subscription } from 'rxjs';
import { type EventEnvelope, type EventsOptions, validateName } from '@troupe/runtime/internal';
import { parseScope } from '../address';
import { toJson } from '../body';
import { connect, type ConnectionFlags } from '../connection';
import { CliError, toCliError } from '../exit-codes';
import { Output, type OutputFlags } from '../output';
import { untilInterrupted } from '../signals';

/** Options of `troupe events`. */
export interface EventsFlags extends ConnectionFlags, OutputFlags {
  group?: string;
  durable?: string;
  from?: string;
  /** Exit after this many events. */
  count?: number;
  /** With `--count`: fail with TIMEOUT if they have not all arrived within this many ms. */
  timeout?: number;
}

/** One event as `events --json` prints it (stable keys; `gap` is 0 when nothing was missed). */
export interface EventLine {
  event: string;
  scope: string;
  namespace: string;
  component: string | null;
  publisher: string;
  seq: number;
  timestamp: number;
  gap: number;
  data: unknown;
}

/**
 * Parses `--from`: `start` (everything stored), `new` (from now on), an ISO
 * time, or an age such as `10m` / `2h` / `30s` (that long ago).
 *
 * @example
 * parseFrom('start') // 'all'
 * parseFrom('15m')   // a Date 15 minutes ago
 */
export function parseFrom(text: string, now = Date.now()): 'all' | 'new' | Date {
  if (text === 'start' || text === 'all') return 'all';
  if (text === 'new') return 'new';
  const age = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text);
  if (age) {
    const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[age[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
    return new Date(now - Number(age[1]) * unit);
  }
  const t = new Date(text);
  if (!Number.isNaN(t.getTime()) && /\d{4}-\d{2}-\d{2}/.test(text)) return t;
  throw new CliError('USAGE', `--from takes start, new, an ISO time (2026-11-30T12:00:00Z) or an age (10m, 2h), got ${JSON.stringify(text)}`);
}

/**
 * `troupe events ns[.comp] [event]`: tails events (every event of the scope
 * without a name). Broadcast by default; `--group G` balanced between the
 * tails sharing G; `--durable NAME` reads the namespace's event log and keeps
 * its position (`--from` says where a new durable starts). Gaps in a
 * publisher's sequence are shown (a `gap` count with `--json`).
 */
export async function events(scopeArg: string, eventArg: string | undefined, flags: EventsFlags): Promise<void> {
  const scope = parseScope(scopeArg, 2, 1);
  const event = eventArg === undefined || eventArg === '*' ? undefined : local(() => validateName('event', eventArg));
  const options: EventsOptions = {};
  if (flags.group !== undefined) options.group = local(() => validateName('group', flags.group));
  if (flags.durable !== undefined) options.durable = local(() => validateName('durable', flags.durable));
  if (flags.from !== undefined) options.start = parseFrom(flags.from);
  if (options.group !== undefined && (options.durable !== undefined || options.start !== undefined)) {
    throw new CliError('USAGE', '--group is for live events; tails sharing a --durable name already share its events');
  }
  if (flags.count !== undefined && (!Number.isInteger(flags.count) || flags.count <= 0)) throw new CliError('USAGE', '--count takes a positive integer');
  const out = Output.from(flags);
  const runtime = await out.spin('connecting', connect(flags, { discovery: false }));
  const ns = runtime.namespace(scope.namespace as string);
  const where = `${scope.text}${event ? ` ${event}` : ' (every event)'}`;
  const mode = options.group ? `balanced in group ${options.group}` : options.durable ? `durable ${options.durable}` : options.start ? 'replay' : 'broadcast';
  let sub: Subscription | undefined;
  let timer: NodeJS.Timeout | undefined;
  let received = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      options.onReady = () => out.note(`troupe: listening to ${where}, ${mode}`);
      const events$ = scope.component === undefined ? ns.events(event, options) : ns.component(scope.component).events(event, options);
      sub = events$.subscribe({
        next: (e) => {
          if (flags.count !== undefined && received >= flags.count) return; // past the count (same batch): not ours
          received++;
          print(out, e);
          if (flags.count !== undefined && received >= flags.count) {
            // Stop at once so a durable is not handed (and does not ack) events this tail will not print.
            sub?.unsubscribe();
            resolve();
          }
        },
        error: (err: unknown) => reject(toCliError(err)),
        complete: () => resolve(),
      });
      if (flags.count !== undefined && flags.timeout !== undefined) {
        timer = setTimeout(() => reject(new CliError('TIMEOUT', `${received} of ${flags.count} events arrived within ${flags.timeout} ms`)), flags.timeout);
      }
      untilInterrupted().then(() => resolve(), reject);
    });
  } finally {
    if (timer) clearTimeout(timer);
    // close() awaits the stop of every durable subscription, also one just unsubscribed at --count.
    await runtime.close();
  }
}

function local<T>(f: () => T): T {
  try {
    return f();
  } catch (err) {
    throw toCliError(err, { local: true });
  }
}

function print(out: Output, e: EventEnvelope): void {
  if (out.json) {
    const line: EventLine = {
      event: e.event,
      scope: e.scope,
      namespace: e.namespace,
      component: e.component ?? null,
      publisher: e.publisher,
      seq: e.seq,
      timestamp: e.timestamp,
      gap: e.gap ?? 0,
      data: e.data,
    };
    out.jsonLine(line);
    return;
  }
  const c = out.color;
  const where = e.component === undefined ? e.namespace : `${e.namespace}.${e.component}`;
  if (e.gap) out.line(c.yellow(`! gap: ${e.gap} event${e.gap === 1 ? '' : 's'} of ${e.event} from ${e.publisher} missed before #${e.seq}`));
  const time = new Date(e.timestamp).toISOString().slice(11, 23);
  out.line(`${c.dim(time)} ${c.cyan(where)} ${c.bold(e.event)} ${c.dim(`#${e.seq} from ${e.publisher || '?'}`)} ${toJson(e.data)}`);
}
