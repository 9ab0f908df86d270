/**
 * The entry of a pool thread: imports the module of each task's
 * {@link ThreadFunction}, runs it, and answers on the task's port. One task at
 * a time per thread (the pool sends the next one after `done`/`end`/`error`).
 */
import { parentPort } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { isErrorCode, TroupeError } from '../errors';
import { isThreadFunction, type ThreadContext, type ThreadFunction } from './thread-function';
import type { FromThread, TaskMessage, ThreadError, ToThread } from './thread-protocol';

const modules = new Map<string, Promise<Record<string, unknown>>>();

async function load(task: TaskMessage): Promise<ThreadFunction<unknown, unknown>> {
  let mod = modules.get(task.module);
  if (!mod) {
    mod = import(pathToFileURL(task.module).href) as Promise<Record<string, unknown>>;
    modules.set(task.module, mod);
  }
  let ns: Record<string, unknown>;
  try {
    ns = await mod;
  } catch (err) {
    modules.delete(task.module);
    throw new TroupeError('INTERNAL', `thread could not load ${task.module}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
  }
  const fromDefault = (ns['default'] as Record<string, unknown> | undefined)?.[task.name];
  const exp = ns[task.name] ?? fromDefault;
  if (!isThreadFunction(exp)) {
    throw new TroupeError('INTERNAL', `${task.module} has no export "${task.name}" made by threadFunction(); export it under the name given to threadFunction`);
  }
  return exp;
}

function toThreadError(err: unknown): ThreadError {
  if (err instanceof TroupeError || (err instanceof Error && err.name === 'TroupeError' && isErrorCode((err as TroupeError).code))) {
    const e = err as TroupeError;
    return { troupe: true, code: e.code, name: e.name, message: e.message, data: cloneable(e.data), stack: e.stack };
  }
  if (err instanceof Error) return { troupe: false, code: 'INTERNAL', name: err.name, message: err.message, stack: err.stack };
  return { troupe: false, code: 'INTERNAL', name: 'Error', message: typeof err === 'string' ? err : `non-error thrown: ${String(err)}` };
}

function cloneable(v: unknown): unknown {
  try {
    structuredClone(v);
    return v;
  } catch {
    return undefined;
  }
}

/** The reason of an aborted `stopSignal` in a thread: the caller's wish, not an error. */
const STOPPED = 'stopped by the caller';

async function run(task: TaskMessage): Promise<void> {
  const port = task.port;
  const flag = new Int32Array(task.flag);
  const controller = new AbortController();
  const stopper = new AbortController();
  let acked = 0;
  let wake: (() => void) | undefined;
  port.on('message', (m: ToThread) => {
    if (m.t === 'abort') controller.abort(new TroupeError(m.code, m.message));
    else if (m.t === 'stop') stopper.abort(STOPPED);
    else acked = m.n;
    wake?.();
  });
  const send = (m: FromThread): void => port.postMessage(m);
  const ctx: ThreadContext = {
    signal: controller.signal,
    get aborted() {
      return controller.signal.aborted || Atomics.load(flag, 0) === 1;
    },
    stopSignal: stopper.signal,
    get stopped() {
      return stopper.signal.aborted || Atomics.load(flag, 1) === 1;
    },
    deadline: task.deadline,
    remainingMs: () => Math.max(0, task.deadline - Date.now()),
    throwIfAborted() {
      if (ctx.aborted) throw (controller.signal.reason as unknown) ?? new TroupeError('CANCELLED', 'aborted');
    },
  };
  try {
    const f = await load(task);
    const result: unknown = f.fn(task.request, ctx);
    if (!task.stream) {
      const value = await result;
      if (isIterable(value)) {
        throw new TroupeError('INTERNAL', `${f.name} returned an iterable: run it with ctx.streamInThread, not ctx.runInThread`);
      }
      try {
        send({ t: 'done', v: value });
      } catch (err) {
        throw new TroupeError('INTERNAL', `the result of ${f.name} cannot be sent from its thread (not structured-cloneable): ${(err as Error).message}`);
      }
      return;
    }
    const it = iterate(result, f.name);
    let sent = 0;
    try {
      for (;;) {
        // Backpressure: at most `window` items ahead of what the main side consumed.
        while (sent - acked >= task.window && !ctx.aborted) await new Promise<void>((r) => (wake = r));
        wake = undefined;
        if (ctx.aborted) break;
        const r = await it.next();
        if (r.done || ctx.aborted) break;
        try {
          send({ t: 'item', v: r.value });
        } catch (err) {
          throw new TroupeError('INTERNAL', `item ${sent} of ${f.name} cannot be sent from its thread (not structured-cloneable): ${(err as Error).message}`);
        }
        sent++;
      }
    } finally {
      await it.return?.();
    }
    send({ t: 'end' });
  } catch (err) {
    send({ t: 'error', e: toThreadError(err) });
  } finally {
    port.close();
  }
}

function isIterable(v: unknown): boolean {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  return (
    typeof (v as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator] === 'function' ||
    (!ArrayBuffer.isView(v) && !(v instanceof Map) && !(v instanceof Set) && typeof (v as Partial<Iterable<unknown>>)[Symbol.iterator] === 'function')
  );
}

function iterate(result: unknown, name: string): AsyncIterator<unknown> | Iterator<unknown> {
  if (result !== null && typeof result === 'object') {
    const r = result as Partial<AsyncIterable<unknown> & Iterable<unknown>>;
    const asyncIt = r[Symbol.asyncIterator];
    if (typeof asyncIt === 'function') return asyncIt.call(r);
    const syncIt = r[Symbol.iterator];
    if (typeof syncIt === 'function') return syncIt.call(r);
  }
  throw new TroupeError('INTERNAL', `${name} must return an iterable or an async iterable (a generator) to be run with streamInThread`);
}

parentPort?.on('message', (task: TaskMessage) => void run(task));
