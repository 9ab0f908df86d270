import type { Logger } from '@troupe/runtime/internal';

/** One captured log line: level, message and every field. */
export interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

/** A logger that keeps every line (all levels) in `lines`. */
export function captureLogger(lines: LogLine[], fields: Record<string, unknown> = {}): Logger {
  const at =
    (level: string) =>
    (msg: string, extra?: Record<string, unknown>): void => {
      lines.push({ ...fields, ...extra, level, msg });
    };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: (f) => captureLogger(lines, { ...fields, ...f }) };
}
