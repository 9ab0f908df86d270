import { isErrorCode, TroupeError } from '@troupe/runtime/internal';

/**
 * Exit codes of the `troupe` command, one per kind of failure, so scripts can
 * tell "nothing serves this" from "it was too slow" from "the server is down"
 * without parsing messages. A TroupeError from the wire keeps its code in the
 * message and gets the exit code of that code.
 *
 * @example
 * process.exitCode = ExitCode.NO_INSTANCES; // 4
 */
export const ExitCode = {
  OK: 0,
  /** Anything not classified below (a bug, an unexpected throw). */
  OTHER: 1,
  /** Bad arguments or options: nothing was sent. */
  USAGE: 2,
  /** The NATS server could not be reached (or has no JetStream where discovery needs it). */
  CONNECTION: 3,
  NO_INSTANCES: 4,
  TIMEOUT: 5,
  BAD_REQUEST: 6,
  NOT_FOUND: 7,
  INSTANCE_LOST: 8,
  CANCELLED: 9,
  OVERLOADED: 10,
  PAYLOAD_TOO_LARGE: 11,
  UNAVAILABLE: 12,
  INTERNAL: 13,
  /** Stopped by Ctrl-C (128 + SIGINT, the shell convention). */
  INTERRUPTED: 130,
} as const;

/** One of {@link ExitCode}'s values. */
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** What kind of failure a {@link CliError} is: the CLI's own kinds or a TroupeError code. */
export type CliErrorCode = 'USAGE' | 'CONNECTION' | 'OTHER' | 'INTERRUPTED' | TroupeError['code'];

/**
 * The one error the CLI reports: a code (its own or a TroupeError's), a
 * one-line message and the exit code derived from the code.
 *
 * @example
 * throw new CliError('USAGE', 'an endpoint is addressed as ns.comp.ep, got "demo.svc"');
 */
export class CliError extends Error {
  override readonly name = 'CliError';

  constructor(
    readonly code: CliErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
  }

  get exitCode(): ExitCode {
    return ExitCode[this.code];
  }
}

/**
 * Normalises anything thrown into a {@link CliError}: TroupeErrors keep their
 * code, a `BAD_REQUEST` raised locally before anything was sent (a bad name)
 * is a usage error when `local` is set.
 *
 * @example
 * toCliError(new TroupeError('TIMEOUT', 'no reply')).exitCode // 5
 */
export function toCliError(err: unknown, options: { local?: boolean } = {}): CliError {
  if (err instanceof CliError) return err;
  const code = (err as { code?: unknown } | undefined)?.code;
  const message = oneLine(err instanceof Error ? err.message : String(err));
  if ((err instanceof TroupeError || (err as Error | undefined)?.name === 'TroupeError') && isErrorCode(code)) {
    if (options.local && code === 'BAD_REQUEST') return new CliError('USAGE', message, { cause: err });
    return new CliError(code, message, { cause: err });
  }
  return new CliError('OTHER', message, { cause: err });
}

/** Errors are printed on one line: newlines (stacks, server text) are folded. */
export function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}
