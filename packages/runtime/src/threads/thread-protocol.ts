import type { MessagePort } from 'node:worker_threads';
import type { ErrorCode } from '../errors';

/** One task posted to a thread (on its `parentPort`), with a private port for everything else. */
export interface TaskMessage {
  readonly port: MessagePort;
  readonly module: string;
  readonly name: string;
  readonly request: unknown;
  readonly stream: boolean;
  readonly deadline: number;
  /** Two Int32s: [0] 1 once aborted (read synchronously by `ctx.aborted`), [1] 1 once stopped (`ctx.stopped`). */
  readonly flag: SharedArrayBuffer;
  /** Items the thread may post ahead of the main side's acknowledgements. */
  readonly window: number;
}

/** What a thread throws, as it crosses to the main thread. */
export interface ThreadError {
  /** Whether it was a TroupeError (then `code` and `data` are its own). */
  readonly troupe: boolean;
  readonly code: ErrorCode;
  readonly name: string;
  readonly message: string;
  readonly data?: unknown;
  readonly stack?: string;
}

/** Thread → main, on the task's port. `done`, `end` and `error` are last: the thread is free after them. */
export type FromThread =
  | { readonly t: 'done'; readonly v: unknown }
  | { readonly t: 'item'; readonly v: unknown }
  | { readonly t: 'end' }
  | { readonly t: 'error'; readonly e: ThreadError };

/** Main → thread, on the task's port. */
export type ToThread =
  { readonly t: 'abort'; readonly code: ErrorCode; readonly message: string } | { readonly t: 'stop' } | { readonly t: 'ack'; readonly n: number };
