import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { toTroupeError, TroupeError } from '../errors';
import type { Logger } from '../logger';
import type { ThreadFunction } from './thread-function';
import type { FromThread, TaskMessage, ThreadError, ToThread } from './thread-protocol';

/** Items a thread may produce ahead of the stream's consumer (the thread pauses there). */
export const THREAD_STREAM_WINDOW = 16;

/** What a task needs of its request. */
export interface ThreadTaskOptions {
  readonly signal: AbortSignal;
  readonly deadline: number;
  /** The request's stop (`ctx.stopSignal`): the thread's `ctx.stopped` and `ctx.stopSignal` follow it; the work may finish. */
  readonly stopSignal?: AbortSignal;
}

/** The pool's settings. */
export interface ThreadPoolSettings {
  /** Threads at most (started on demand). */
  readonly size: number;
  /** How long an aborted task may keep its thread before the thread is terminated and replaced, ms. */
  readonly abortGraceMs: number;
}

interface Slot {
  readonly worker: Worker;
  /** The task running on it; undefined while idle. */
  task: Running | undefined;
}

interface Running {
  readonly port: MessagePort;
  readonly flag: Int32Array;
  readonly onMessage: (m: FromThread) => void;
  readonly fail: (err: TroupeError) => void;
  graceTimer: NodeJS.Timeout | undefined;
}

interface Waiter {
  readonly resolve: (slot: Slot) => void;
  readonly reject: (err: TroupeError) => void;
}

/**
 * The runtime's worker threads for CPU-bound endpoint work
 * (`ctx.runInThread` / `ctx.streamInThread`). Threads start on demand up to
 * `size` and run one task each; tasks beyond wait here in order (the
 * instance's mailbox already bounds how many of its requests run). An
 * aborted task is told at once (shared flag and message); one still holding
 * its thread `abortGraceMs` later has its thread terminated and replaced.
 * Internal: a field of the plane, closed with it.
 */
export class ThreadPool {
  private readonly slots = new Set<Slot>();
  private readonly idle: Slot[] = [];
  private readonly waiting: Waiter[] = [];
  private closedWith: TroupeError | undefined;

  constructor(
    readonly settings: ThreadPoolSettings,
    private readonly logger: Logger,
  ) {}

  /** Threads started now (busy or idle). */
  get threads(): number {
    return this.slots.size;
  }

  /** Runs `f(request)` in a thread; settles with its result, its error, or the abort reason as soon as the signal aborts. */
  run<Req, Res>(f: ThreadFunction<Req, Res>, request: Req, options: ThreadTaskOptions): Promise<Awaited<Res>> {
    return new Promise<Awaited<Res>>((resolve, reject) => {
      let settled = false;
      const settle = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        fn();
      };
      void this.start(f, request, options, false, {
        onMessage: (m) => {
          if (m.t === 'done') settle(() => resolve(m.v as Awaited<Res>));
          else if (m.t === 'error') settle(() => reject(fromThread(m.e)));
        },
        fail: (err) => settle(() => reject(err)),
      });
    });
  }

  /**
   * Runs `f(request)` in a thread and yields what it yields, in order. The
   * thread runs at most {@link THREAD_STREAM_WINDOW} items ahead of the
   * consumer (so the stream's credit window governs it); ending the
   * iteration early aborts the thread's work.
   */
  stream<Req, T>(f: ThreadFunction<Req, unknown>, request: Req, options: ThreadTaskOptions): AsyncIterable<T> {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the iterator's own methods (not arrows) read the pool
    const pool = this;
    return {
      [Symbol.asyncIterator](): AsyncIterator<T> {
        const items: T[] = [];
        let ended = false;
        let failure: Error | undefined;
        let wake: (() => void) | undefined;
        let consumed = 0;
        let port: MessagePort | undefined;
        const local = new AbortController();
        const signal = AbortSignal.any([options.signal, local.signal]);
        const started = pool.start(f, request, { signal, deadline: options.deadline, stopSignal: options.stopSignal }, true, {
          onMessage: (m) => {
            if (m.t === 'item') items.push(m.v as T);
            else if (m.t === 'end') ended = true;
            else if (m.t === 'error') failure ??= fromThread(m.e);
            wake?.();
          },
          fail: (err) => {
            failure ??= err;
            wake?.();
          },
        });
        void started.then((p) => (port = p));
        return {
          async next(): Promise<IteratorResult<T>> {
            for (;;) {
              if (items.length > 0) {
                const value = items.shift() as T;
                // Acknowledge every half window: the thread resumes before it runs dry.
                if (++consumed % (THREAD_STREAM_WINDOW / 2) === 0) post(port, { t: 'ack', n: consumed });
                return { value, done: false };
              }
              if (failure) throw failure;
              if (ended) return { value: undefined, done: true };
              await new Promise<void>((r) => (wake = r));
              wake = undefined;
            }
          },
          async return(): Promise<IteratorResult<T>> {
            if (!ended && !failure) local.abort(new TroupeError('CANCELLED', `the consumer of ${f.name} stopped`));
            ended = true;
            return { value: undefined, done: true };
          },
        };
      },
    };
  }

  /** Terminates every thread; waiting and running tasks fail with `reason`. */
  async close(reason: TroupeError): Promise<void> {
    this.closedWith ??= reason;
    for (const w of this.waiting.splice(0)) w.reject(reason);
    const exits: Promise<number>[] = [];
    for (const slot of this.slots) {
      slot.task?.fail(reason);
      exits.push(slot.worker.terminate().catch(() => 0));
    }
    this.slots.clear();
    this.idle.length = 0;
    await Promise.all(exits);
  }

  /** Waits for a thread, posts the task, and wires abort; resolves with the task's port once posted. */
  private async start(
    f: ThreadFunction<unknown, unknown> | ThreadFunction<never, unknown>,
    request: unknown,
    options: ThreadTaskOptions,
    stream: boolean,
    handlers: Pick<Running, 'onMessage' | 'fail'>,
  ): Promise<MessagePort | undefined> {
    const { signal } = options;
    const abortError = (): TroupeError => asTroupe(signal.reason, `${f.name} was aborted`);
    if (signal.aborted) return void handlers.fail(abortError());
    let slot: Slot;
    try {
      slot = await this.acquire(signal);
    } catch (err) {
      // closed, aborted while waiting, or a thread that could not start
      return void handlers.fail(toTroupeError(err));
    }
    const channel = new MessageChannel();
    const flag = new Int32Array(new SharedArrayBuffer(8));
    const running: Running = { port: channel.port1, flag, onMessage: handlers.onMessage, fail: handlers.fail, graceTimer: undefined };
    const task: TaskMessage = {
      port: channel.port2,
      module: f.module,
      name: f.name,
      request,
      stream,
      deadline: options.deadline,
      flag: flag.buffer as SharedArrayBuffer,
      window: THREAD_STREAM_WINDOW,
    };
    try {
      slot.worker.postMessage(task, [channel.port2]);
    } catch (err) {
      channel.port1.close();
      this.release(slot);
      handlers.fail(
        new TroupeError('BAD_REQUEST', `the request to ${f.name} cannot be sent to a thread (not structured-cloneable): ${(err as Error).message}`, {
          cause: err,
        }),
      );
      return undefined;
    }
    slot.task = running;
    slot.worker.ref();
    const onAbort = (): void => {
      const reason = abortError();
      Atomics.store(flag, 0, 1);
      post(channel.port1, { t: 'abort', code: reason.code, message: reason.message });
      handlers.fail(reason);
      running.graceTimer = setTimeout(() => {
        if (slot.task !== running) return;
        this.logger.warn(`a thread running ${f.name} ignored its abort for ${this.settings.abortGraceMs} ms: terminated, a new one replaces it`, {
          module: f.module,
        });
        this.discard(slot);
      }, this.settings.abortGraceMs);
      running.graceTimer.unref();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    // A stop is not an abort: the thread is told (shared flag and message) and may finish its work.
    const { stopSignal } = options;
    const onStop = (): void => {
      Atomics.store(flag, 1, 1);
      post(channel.port1, { t: 'stop' });
    };
    if (stopSignal?.aborted) onStop();
    else stopSignal?.addEventListener('abort', onStop, { once: true });
    channel.port1.on('message', (m: FromThread) => {
      if (m.t !== 'item') {
        signal.removeEventListener('abort', onAbort);
        stopSignal?.removeEventListener('abort', onStop);
        clearTimeout(running.graceTimer);
        channel.port1.close();
        if (slot.task === running) {
          slot.task = undefined;
          this.release(slot);
        }
      }
      handlers.onMessage(m);
    });
    return channel.port1;
  }

  private acquire(signal: AbortSignal): Promise<Slot> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const free = this.idle.pop();
    if (free) return Promise.resolve(free);
    if (this.slots.size < this.settings.size) {
      try {
        return Promise.resolve(this.spawn());
      } catch (err) {
        return Promise.reject(new TroupeError('UNAVAILABLE', `cannot start a worker thread: ${(err as Error)?.message ?? String(err)}`, { cause: err }));
      }
    }
    return new Promise<Slot>((resolve, reject) => {
      const waiter: Waiter = {
        resolve: (slot) => {
          signal.removeEventListener('abort', onAbort);
          resolve(slot);
        },
        reject,
      };
      const onAbort = (): void => {
        const i = this.waiting.indexOf(waiter);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(asTroupe(signal.reason, 'aborted while waiting for a thread'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(waiter);
    });
  }

  private release(slot: Slot): void {
    if (!this.slots.has(slot)) return;
    const next = this.waiting.shift();
    if (next) return next.resolve(slot);
    slot.worker.unref();
    this.idle.push(slot);
  }

  private spawn(): Slot {
    const worker = new Worker(join(__dirname, 'thread-main.js'));
    const slot: Slot = { worker, task: undefined };
    this.slots.add(slot);
    // A thread that dies (an uncaught throw outside the task, out of memory) fails its task; another replaces it on demand.
    worker.on('error', (err) => {
      this.logger.error('a pool thread failed', { error: err.message });
      slot.task?.fail(new TroupeError('INTERNAL', `the thread running the task failed: ${err.message}`, { cause: err }));
      this.discard(slot);
    });
    worker.on('exit', () => {
      if (!this.slots.has(slot)) return;
      slot.task?.fail(new TroupeError('INTERNAL', 'the thread running the task exited'));
      this.discard(slot);
    });
    return slot;
  }

  /** Terminates a thread and lets a waiting task start a new one. */
  private discard(slot: Slot): void {
    if (!this.slots.delete(slot)) return;
    const i = this.idle.indexOf(slot);
    if (i >= 0) this.idle.splice(i, 1);
    if (slot.task) {
      clearTimeout(slot.task.graceTimer);
      slot.task.port.close();
      slot.task = undefined;
    }
    void slot.worker.terminate().catch(() => 0);
    const next = this.closedWith ? undefined : this.waiting.shift();
    if (next) next.resolve(this.spawn());
  }
}

function post(port: MessagePort | undefined, m: ToThread): void {
  try {
    port?.postMessage(m);
  } catch {
    // the port closed: the task is over
  }
}

function asTroupe(reason: unknown, fallback: string): TroupeError {
  return reason instanceof TroupeError ? reason : new TroupeError('CANCELLED', fallback, { cause: reason });
}

/** The error of a thread as the caller of a main-thread handler would see it: a TroupeError as thrown, anything else as an Error with its message and stack (normalised to INTERNAL like any handler throw). */
function fromThread(e: ThreadError): Error {
  if (e.troupe) {
    const err = new TroupeError(e.code, e.message, e.data === undefined ? undefined : { data: e.data });
    if (e.stack) err.stack = e.stack;
    return err;
  }
  const err = new Error(e.message);
  err.name = e.name;
  if (e.stack) err.stack = e.stack;
  return err;
}
