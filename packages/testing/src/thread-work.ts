/**
 * Functions the thread suites run in worker threads. Every pool thread
 * imports this module: it must stay free of side effects at load.
 */
import { threadId } from 'node:worker_threads';
import { type ThreadContext, threadFunction, TroupeError } from '@troupe/runtime';

/** What a burn reports: the thread it ran on and whether it stopped on an abort. */
export interface Burned {
  readonly threadId: number;
  readonly aborted: boolean;
}

/** Busy-waits `ms` on the calling thread; with `ctx`, stops once it is aborted. */
export function spin(ms: number, ctx?: ThreadContext): boolean {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (ctx?.aborted) return true;
  }
  return false;
}

/** What this thread started, in order (per thread: each thread loads its own copy of this module). */
const started: string[] = [];

/** Burns `ms` of CPU in the thread; `cooperative` reads `ctx.aborted` as it goes, otherwise it ignores aborts. */
export const burn = threadFunction(__filename, 'burn', (req: { ms: number; cooperative: boolean }, ctx: ThreadContext): Burned => {
  started.push('burn');
  const aborted = spin(req.ms, req.cooperative ? ctx : undefined);
  return { threadId, aborted };
});

/** A thread's identity and what it ran before. */
export interface ThreadReport {
  readonly threadId: number;
  readonly started: readonly string[];
}

/** The id of the thread that ran it, and what that thread started before. */
export const whichThread = threadFunction(__filename, 'whichThread', (): ThreadReport => ({ threadId, started: [...started] }));

/** Resolves when the task's signal fires (an async function: it sees the abort as an event). */
export const untilAborted = threadFunction(__filename, 'untilAborted', (_req: null, ctx: ThreadContext): Promise<number> => {
  started.push('untilAborted');
  return new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve(threadId)));
});

/** Throws a TroupeError (with data) or a plain Error. */
export const fail = threadFunction(__filename, 'fail', (req: { troupe: boolean }): never => {
  throw failure(req.troupe);
});

/** The error {@link fail} throws, for main-thread handlers to throw the same. */
export function failure(troupe: boolean): Error {
  return troupe ? new TroupeError('NOT_FOUND', 'no prompt 7 in the cache', { data: { prompt: 7 } }) : new Error('boom in the handler');
}

/** Returns a function: not structured-cloneable. */
export const unclonable = threadFunction(__filename, 'unclonable', (): unknown => () => 1);

/** One item produced in a thread. */
export interface Produced {
  readonly i: number;
  /** When the thread produced it (epoch ms). */
  readonly at: number;
}

/** `n` items, each after `stepMs` of CPU (a decode loop: compute a step, yield a token); stops when aborted. */
export const steps = threadFunction(__filename, 'steps', function* (req: { n: number; stepMs: number }, ctx: ThreadContext): Generator<Produced> {
  started.push('steps');
  for (let i = 0; i < req.n && !ctx.aborted; i++) {
    spin(req.stepMs, ctx);
    yield { i, at: Date.now() };
  }
});

/** What {@link countUntilStopped} returns: how far it got, and whether a stop (not a kill) ended it. */
export interface Counted {
  readonly n: number;
  readonly stopped: boolean;
  readonly aborted: boolean;
}

/** Counts in a synchronous loop until the caller stops it (`ctx.stopped`), returning what it has; bounded by `maxMs`. */
export const countUntilStopped = threadFunction(__filename, 'countUntilStopped', (req: { maxMs: number }, ctx: ThreadContext): Counted => {
  started.push('countUntilStopped');
  const end = Date.now() + req.maxMs;
  let n = 0;
  while (!ctx.stopped && !ctx.aborted && Date.now() < end) n++;
  return { n, stopped: ctx.stopped, aborted: ctx.aborted };
});

/** Yields a token every `stepMs` of CPU; once stopped (seen as the event, on `stopSignal`), yields `'final'` and returns. */
export const tokensUntilStopped = threadFunction(
  __filename,
  'tokensUntilStopped',
  async function* (req: { stepMs: number }, ctx: ThreadContext): AsyncGenerator<string> {
    started.push('tokensUntilStopped');
    let stopEvent = false;
    ctx.stopSignal.addEventListener('abort', () => (stopEvent = true), { once: true });
    for (let i = 0; !ctx.aborted; i++) {
      spin(req.stepMs, ctx);
      await new Promise<void>((r) => setImmediate(r)); // the loop turns: the stop message is seen as the event
      if (stopEvent) {
        yield 'final';
        return;
      }
      yield `t${i}`;
    }
  },
);
