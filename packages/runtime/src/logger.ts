/** Log levels, least to most severe. */
export const LogLevel = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 } as const;
export type LogLevel = keyof typeof LogLevel;

/**
 * The logger handlers and the runtime use. Bring your own (pino, winston) by
 * passing any object of this shape as `logger` in the runtime options.
 *
 * @example
 * ctx.logger.info('prefill done', { tokens: 128 });
 */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** A logger that adds `fields` to every line. */
  child(fields: Record<string, unknown>): Logger;
}

/**
 * A small structured logger writing one JSON line per entry to stderr. Level
 * from the argument, else `TROUPE_LOG`, else `warn`.
 *
 * @example
 * const log = consoleLogger('info').child({ component: 'decode' });
 */
export function consoleLogger(level?: LogLevel, fields: Record<string, unknown> = {}): Logger {
  const envLevel = process.env.TROUPE_LOG as LogLevel | undefined;
  const min = LogLevel[level ?? (envLevel && envLevel in LogLevel ? envLevel : 'warn')];
  const write = (lvl: Exclude<LogLevel, 'silent'>, msg: string, extra?: Record<string, unknown>): void => {
    if (LogLevel[lvl] < min) return;
    let line: string;
    try {
      line = JSON.stringify({ t: new Date().toISOString(), level: lvl, msg, ...fields, ...extra });
    } catch {
      line = JSON.stringify({ t: new Date().toISOString(), level: lvl, msg });
    }
    process.stderr.write(line + '\n');
  };
  return {
    debug: (m, f) => write('debug', m, f),
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
    child: (f) => consoleLogger(level, { ...fields, ...f }),
  };
}

/**
 * `parent.child(fields)`, made at its first use: an instance that never logs
 * (most of 100,000 idle ones) holds two references instead of a child
 * logger's closures.
 */
export function lazyChild(parent: Logger, fields: Record<string, unknown>): Logger {
  return new LazyChild(parent, fields);
}

class LazyChild implements Logger {
  private made: Logger | undefined;

  constructor(
    private readonly parent: Logger,
    private readonly fields: Record<string, unknown>,
  ) {}

  private get logger(): Logger {
    return (this.made ??= this.parent.child(this.fields));
  }

  debug(msg: string, fields?: Record<string, unknown>): void {
    this.logger.debug(msg, fields);
  }

  info(msg: string, fields?: Record<string, unknown>): void {
    this.logger.info(msg, fields);
  }

  warn(msg: string, fields?: Record<string, unknown>): void {
    this.logger.warn(msg, fields);
  }

  error(msg: string, fields?: Record<string, unknown>): void {
    this.logger.error(msg, fields);
  }

  child(fields: Record<string, unknown>): Logger {
    return this.logger.child(fields);
  }
}
