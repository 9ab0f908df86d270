import { isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TroupeError } from '../errors';

/** Marks a {@link ThreadFunction} across module copies (the thread loads its own copy of the runtime). */
export const THREAD_FUNCTION = Symbol.for('troupe:thread-function');

/**
 * What a function running in a worker thread receives beside its request.
 * The thread has no access to the actor: no `this`, no clients, no logger.
 *
 * @example
 * export const primes = threadFunction(__filename, 'primes', (req: { upTo: number }, ctx: ThreadContext) => {
 *   let n = 0;
 *   for (let i = 2; i <= req.upTo; i++) { if (ctx.aborted) break; if (isPrime(i)) n++; }
 *   return n;
 * });
 */
export interface ThreadContext {
  /**
   * Aborted when the caller cancels or the deadline passes. Its event fires
   * only when the thread's event loop turns (an `await`, a `yield` of an
   * async generator): a synchronous loop reads {@link aborted} instead.
   */
  readonly signal: AbortSignal;
  /** Whether the work was aborted; read from shared memory, so it is current even inside a synchronous loop. */
  readonly aborted: boolean;
  /**
   * Aborted when the caller asks the work to *stop* (the request's
   * `ctx.stopSignal`, Dynamo's `stop_generating`): unlike {@link signal} the
   * work may finish, returning what it has or yielding its final items, within
   * the caller's stop grace (past it, the request is killed and
   * {@link aborted} turns true). Fires only when the thread's loop turns; a
   * synchronous loop reads {@link stopped}.
   */
  readonly stopSignal: AbortSignal;
  /** Whether the caller asked the work to stop; read from shared memory, current inside a synchronous loop. */
  readonly stopped: boolean;
  /** When the caller stops waiting, in epoch milliseconds. */
  readonly deadline: number;
  /** Milliseconds left until the deadline (never negative). */
  remainingMs(): number;
  /** Throws a `CANCELLED` TroupeError when {@link aborted}: call it between steps of a long computation. */
  throwIfAborted(): void;
}

/**
 * A function that runs in the runtime's worker-thread pool, found by the
 * thread as export `name` of `module`. Made by {@link threadFunction}; run
 * with `ctx.runInThread` / `ctx.streamInThread` from an endpoint.
 *
 * @example
 * const f: ThreadFunction<{ upTo: number }, number> = primes;
 */
export interface ThreadFunction<Req, Res> {
  readonly [THREAD_FUNCTION]: true;
  /** Absolute path of the module that exports it. */
  readonly module: string;
  /** The export's name in that module. */
  readonly name: string;
  /** The function itself (called in the thread). */
  readonly fn: (request: Req, ctx: ThreadContext) => Res;
}

/**
 * Declares a function that endpoints run in a worker thread, so CPU-bound
 * work (a model step, tokenisation, compression) never blocks the process's
 * actors, heartbeats and I/O. Export the result under `name` from the module
 * `module` (pass `__filename`, or `import.meta.url` in ESM): each thread
 * imports that module and calls the export. Keep the module free of side
 * effects at load (no `Runtime.connect`, no `spawn`): every thread runs its
 * top level. The request and the result (or each streamed item) are
 * structured-cloned, so they must be plain data — no functions, no class
 * instances with behaviour.
 *
 * A function returning a value or a Promise is run with `ctx.runInThread`;
 * one returning an iterable or an async iterable (a generator) with
 * `ctx.streamInThread`.
 *
 * @example
 * // primes.ts
 * export const primes = threadFunction(__filename, 'primes', (req: { upTo: number }, ctx: ThreadContext) => countPrimes(req.upTo, ctx));
 * // service.ts
 * \@endpoint() primes(req: { upTo: number }, ctx: Context) { return ctx.runInThread(primes, req); }
 */
export function threadFunction<Req, Res>(module: string, name: string, fn: (request: Req, ctx: ThreadContext) => Res): ThreadFunction<Req, Res> {
  if (typeof module !== 'string' || module === '') {
    throw new TroupeError(
      'BAD_REQUEST',
      `threadFunction(${String(name)}): module must be the path of the module exporting it (__filename, or import.meta.url in ESM)`,
    );
  }
  const path = module.startsWith('file:') ? fileURLToPath(module) : module;
  if (!isAbsolute(path)) {
    throw new TroupeError(
      'BAD_REQUEST',
      `threadFunction(${String(name)}): module must be an absolute path or a file URL (__filename or import.meta.url), got ${module}`,
    );
  }
  if (typeof name !== 'string' || !/^[A-Za-z_$][\w$]*$/.test(name)) {
    throw new TroupeError('BAD_REQUEST', `threadFunction: name must be the export's identifier, got ${String(name)}`);
  }
  if (typeof fn !== 'function') {
    throw new TroupeError('BAD_REQUEST', `threadFunction(${name}): fn must be a function, got ${typeof fn}`);
  }
  return { [THREAD_FUNCTION]: true, module: path, name, fn };
}

/** Whether `v` was made by {@link threadFunction} (in any copy of the runtime). */
export function isThreadFunction(v: unknown): v is ThreadFunction<unknown, unknown> {
  return typeof v === 'object' && v !== null && (v as Record<symbol, unknown>)[THREAD_FUNCTION] === true;
}
