import Table from 'cli-table3';
import ora, { type Ora } from 'ora';
import { createColors } from 'picocolors';
import { CliError, type CliErrorCode } from './exit-codes';
import { toJson } from './body';

/** The output flags every command takes. */
export interface OutputFlags {
  json?: boolean;
}

/** Colour functions of picocolors (no-ops when colours are off). */
export type Colors = ReturnType<typeof createColors>;

/**
 * Where and how a command prints: data on stdout, progress and errors on
 * stderr; colours, tables and spinners only on a terminal and never with
 * `--json` (then stdout carries one JSON document or one JSON line per item,
 * with stable keys).
 *
 * @example
 * const out = Output.from({ json: false });
 * const list = await out.spin('listing instances', runtime.instances('demo'));
 */
export class Output {
  readonly color: Colors;
  /** Colours on stdout. */
  readonly tty: boolean;
  /** Spinners and progress lines on stderr. */
  readonly errTty: boolean;

  constructor(
    readonly json: boolean,
    private readonly stdout: NodeJS.WriteStream = process.stdout,
    private readonly stderr: NodeJS.WriteStream = process.stderr,
  ) {
    const noColor = 'NO_COLOR' in process.env;
    this.tty = !json && Boolean(stdout.isTTY) && !noColor;
    this.errTty = !json && Boolean(stderr.isTTY);
    this.color = createColors(this.tty);
  }

  static from(flags: OutputFlags): Output {
    return new Output(Boolean(flags.json));
  }

  /** Terminal width (80 off a terminal). */
  get columns(): number {
    return this.stdout.columns || 80;
  }

  /** Writes one line of data to stdout. */
  line(text: string): void {
    this.stdout.write(text + '\n');
  }

  /** Writes one JSON document or line to stdout. */
  jsonLine(value: unknown): void {
    this.stdout.write(toJson(value) + '\n');
  }

  /** A diagnostic line on stderr (never data). */
  note(text: string): void {
    this.stderr.write(text + '\n');
  }

  /** Writes raw text to stdout (screen redraws). */
  raw(text: string): void {
    this.stdout.write(text);
  }

  /**
   * Shows a spinner on stderr while `work` runs (on a terminal, not with
   * `--json`), and bounds it: past `timeoutMs` the command fails with a
   * TIMEOUT naming `what`.
   */
  async spin<T>(what: string, work: Promise<T>, timeoutMs?: number): Promise<T> {
    const spinner = this.spinner(what);
    let timer: NodeJS.Timeout | undefined;
    try {
      const bounded =
        timeoutMs === undefined
          ? work
          : Promise.race([
              work,
              new Promise<never>((_, reject) => {
                timer = setTimeout(() => reject(new CliError('TIMEOUT', `${what}: no answer within ${timeoutMs} ms`)), timeoutMs);
              }),
            ]);
      return await bounded;
    } finally {
      if (timer) clearTimeout(timer);
      spinner?.stop();
    }
  }

  /** An ora spinner on stderr, or undefined off a terminal. */
  spinner(text: string): Ora | undefined {
    if (!this.errTty) return undefined;
    return ora({ text, stream: this.stderr, isEnabled: true, discardStdin: false }).start();
  }

  /** Prints an error on one line (stderr): `troupe: CODE: message`, or a JSON object with `--json`. */
  error(err: CliError): void {
    if (this.json) {
      this.stderr.write(toJson({ error: { code: err.code, message: err.message, exitCode: err.exitCode } }) + '\n');
    } else {
      const c = createColors(Boolean(this.stderr.isTTY) && !('NO_COLOR' in process.env));
      this.stderr.write(`${c.red('troupe:')} ${c.bold(label(err.code))}: ${err.message}\n`);
    }
  }
}

function label(code: CliErrorCode): string {
  return code === 'CONNECTION' ? 'CONNECTION_FAILED' : code === 'USAGE' ? 'USAGE' : code;
}

/** "3s", "4m12s", "2h05m", "3d4h": a compact age. */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${h % 24}h`;
}

/** `k=v` pairs of a properties object, values as compact JSON (strings bare). */
export function formatProperties(props: Readonly<Record<string, unknown>>): string {
  return Object.keys(props)
    .sort()
    .map((k) => {
      const v = props[k];
      return `${k}=${typeof v === 'string' ? v : toJson(v)}`;
    })
    .join(' ');
}

/** Drops the padding a table leaves at the end of each line. */
export function trimLines(text: string): string {
  return text
    .split('\n')
    .map((l) => l.trimEnd())
    .join('\n');
}

/** A borderless table (columns two spaces apart), the look of `kubectl get` and `nats micro ls`. */
export function plainTable(head: string[], colAligns?: Array<'left' | 'right'>): Table.Table {
  return new Table({
    head,
    chars: {
      top: '',
      'top-mid': '',
      'top-left': '',
      'top-right': '',
      bottom: '',
      'bottom-mid': '',
      'bottom-left': '',
      'bottom-right': '',
      left: '',
      'left-mid': '',
      mid: '',
      'mid-mid': '',
      right: '',
      'right-mid': '',
      middle: '  ',
    },
    style: { head: [], border: [], 'padding-left': 0, 'padding-right': 0 },
    wordWrap: false,
    ...(colAligns ? { colAligns } : {}),
  });
}
