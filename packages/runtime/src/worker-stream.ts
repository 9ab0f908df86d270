import { isObservable, type Observable } from 'rxjs';
import { TroupeError, toTroupeError } from './errors';
import type { RequestPlane } from './plane';
import { Frame, H } from './protocol';
import type { RequestContext } from './request-context';

/** Items per data frame at most; frames also stay under max_payload. */
const MAX_BATCH_ITEMS = 1024;
/** Bytes of items per data frame at most (well under the 1 MiB default max_payload). */
const MAX_BATCH_BYTES = 256 * 1024;
/** Room left in a frame for headers. */
export const HEADER_ROOM = 512;

const NIL = new Uint8Array([0xc0]);

/** Concatenates msgpack-encoded items into one msgpack array. */
function packArray(items: Uint8Array[], bytes: number): Uint8Array {
  const n = items.length;
  const head = n < 16 ? 1 : n < 65536 ? 3 : 5;
  const out = new Uint8Array(head + bytes);
  if (n < 16) out[0] = 0x90 | n;
  else if (n < 65536) {
    out[0] = 0xdc;
    out[1] = n >>> 8;
    out[2] = n & 0xff;
  } else {
    out[0] = 0xdd;
    new DataView(out.buffer).setUint32(1, n);
  }
  let o = head;
  for (const b of items) {
    out.set(b, o);
    o += b.length;
  }
  return out;
}

/** Worker-side state of one stream: credit and its waiter. */
export class WorkerStream {
  credit: number;
  private wake: (() => void) | undefined;

  constructor(
    readonly ctx: RequestContext,
    window: number,
  ) {
    this.credit = window;
    ctx.onAbort(() => this.release());
  }

  grant(n: number): void {
    this.credit += n;
    this.release();
  }

  waitForCredit(): Promise<void> {
    if (this.credit > 0 || this.ctx.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      this.wake = resolve;
    });
  }

  private release(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}

/**
 * Moves items from the handler's iterable to the caller: never more than
 * the credit window ahead, the first item of a tick at once (no added
 * latency to the first token), the rest of the tick coalesced into one
 * frame. Returns the number of items sent.
 */
export async function pump(plane: RequestPlane, iterable: AsyncIterable<unknown>, stream: WorkerStream, reply: string): Promise<number> {
  const codec = plane.codec;
  const maxBytes = Math.min(MAX_BATCH_BYTES, plane.transport.maxPayload - HEADER_ROOM);
  let batch: Uint8Array[] = [];
  let batchBytes = 0;
  let sent = 0;
  let tickOpen = false;
  const flush = (): void => {
    if (batch.length === 0) return;
    const frame = packArray(batch, batchBytes);
    const first = sent;
    sent += batch.length;
    batch = [];
    batchBytes = 0;
    plane.transport.publish(reply, frame, { headers: { [H.FRAME]: Frame.DATA, [H.SEQ]: String(first) } });
  };
  const closeTick = (): void => {
    tickOpen = false;
    if (!stream.ctx.aborted) {
      try {
        flush();
      } catch (err) {
        stream.ctx.abort(toTroupeError(err));
      }
    }
  };
  const it = iterable[Symbol.asyncIterator]();
  let finished = false;
  try {
    for (;;) {
      if (stream.credit <= 0) {
        flush();
        await stream.waitForCredit();
        if (stream.ctx.aborted) break;
      }
      const r = await it.next();
      if (stream.ctx.aborted) break;
      if (r.done) {
        finished = true;
        break;
      }
      const bytes = r.value === undefined ? NIL : codec.encode(r.value);
      if (bytes.length > maxBytes) {
        throw new TroupeError('PAYLOAD_TOO_LARGE', `stream item ${sent + batch.length} is ${bytes.length} bytes; a frame holds at most ${maxBytes}`, {
          data: { size: bytes.length, max: maxBytes },
        });
      }
      if (batchBytes + bytes.length > maxBytes) flush();
      batch.push(bytes);
      batchBytes += bytes.length;
      stream.credit--;
      if (!tickOpen) {
        flush();
        tickOpen = true;
        setImmediate(closeTick);
      } else if (batch.length >= MAX_BATCH_ITEMS) {
        flush();
      }
    }
    if (!stream.ctx.aborted) flush();
  } catch (err) {
    // Items produced before the failure still reach the caller, then the error frame.
    if (!stream.ctx.aborted) {
      try {
        flush();
      } catch {
        // the error frame that follows says what went wrong
      }
    }
    throw err;
  } finally {
    if (!finished) void Promise.resolve(it.return?.()).catch(() => undefined);
  }
  return sent;
}

/**
 * A handler's result as an async iterable: async iterables as they are,
 * Observables through a buffer (an Observable cannot be paused; prefer async
 * generators when the producer must feel backpressure), anything else as a
 * single item.
 */
export function toAsyncIterable(result: unknown, stream: WorkerStream): AsyncIterable<unknown> {
  if (isAsyncIterable(result)) return result;
  if (isObservable(result)) return observableToIterable(result, stream);
  return {
    async *[Symbol.asyncIterator]() {
      yield result;
    },
  };
}

function observableToIterable(source: Observable<unknown>, stream: WorkerStream): AsyncIterable<unknown> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<unknown> {
      const buffer: unknown[] = [];
      let head = 0;
      let done = false;
      let failure: unknown;
      let wake: (() => void) | undefined;
      const poke = (): void => {
        const w = wake;
        wake = undefined;
        w?.();
      };
      const sub = source.subscribe({
        next: (v) => {
          buffer.push(v);
          poke();
        },
        error: (e: unknown) => {
          failure = e ?? new Error('observable failed');
          done = true;
          poke();
        },
        complete: () => {
          done = true;
          poke();
        },
      });
      stream.ctx.onAbort(() => {
        sub.unsubscribe();
        done = true;
        poke();
      });
      return {
        async next(): Promise<IteratorResult<unknown>> {
          for (;;) {
            if (head < buffer.length) {
              const value = buffer[head];
              buffer[head++] = undefined;
              if (head > 4096 && head * 2 > buffer.length) {
                buffer.splice(0, head);
                head = 0;
              }
              return { value, done: false };
            }
            if (failure !== undefined) throw failure;
            if (done) return { value: undefined, done: true };
            await new Promise<void>((r) => (wake = r));
          }
        },
        async return(): Promise<IteratorResult<unknown>> {
          sub.unsubscribe();
          done = true;
          return { value: undefined, done: true };
        },
      };
    },
  };
}


export function isAsyncIterable(v: unknown): v is AsyncIterable<unknown> {
  return v !== null && typeof v === 'object' && typeof (v as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function';
}

