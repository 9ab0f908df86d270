import { Observable } from 'rxjs';
import type { StreamSink } from './caller-stream';

/** What a consumer needs of a running stream. */
export interface StreamHandle {
  /** Pull mode: the consumer took `n` items (grants credit). */
  consumed(n: number): void;
  /** Cancels the remote handler and releases the stream. */
  teardown(): void;
}

/** Starts a stream into a sink. */
export type StreamOpener<T> = (sink: StreamSink<T>) => StreamHandle;

/**
 * A stream as a cold RxJS Observable that is also an `AsyncIterable`:
 * subscribing pushes (credit follows delivery: right for synchronous
 * consumers), `for await` pulls (credit follows consumption: a slow async
 * consumer pauses the producer).
 *
 * @example
 * const tokens = client.stream({ prompt });
 * tokens.pipe(take(5)).subscribe(console.log);   // push
 * for await (const t of tokens) await write(t);   // pull
 */
export type StreamObservable<T> = Observable<T> & AsyncIterable<T>;

/** Builds a {@link StreamObservable} over `open`. */
export function streamObservable<T>(open: StreamOpener<T>): StreamObservable<T> {
  const o = new Observable<T>((subscriber) => {
    const s = open(subscriber);
    return () => s.teardown();
  });
  return Object.assign(o, { [Symbol.asyncIterator]: (): AsyncIterator<T> => new StreamIterator<T>(open) });
}

type Waiter<T> = { resolve(r: IteratorResult<T>): void; reject(e: unknown): void };

const NONE: never[] = [];

/**
 * The pull side of a stream: sends the request on the first `next()`,
 * buffers what the worker sent (never more than the credit window: the
 * worker sends no further ahead), and grants credit as the consumer takes
 * items. `return()` (a `break` out of `for await`) cancels the remote handler.
 * A data frame's items are kept as the array they were decoded into (no copy
 * per item); `next()` takes from it and returns an already-resolved promise.
 */
export class StreamIterator<T> implements AsyncIterator<T> {
  private handle: StreamHandle | undefined;
  /** The frame items are taken from, and the index of the next one. */
  private frame: T[] = NONE;
  private pos = 0;
  /** Frames delivered after the current one, oldest first, from `qHead` on. */
  private queue: T[][] = [];
  private qHead = 0;
  private failure: { error: unknown } | undefined;
  private ended = false;
  private waiters: Waiter<T>[] = [];
  /** What the stream pushes into; `closed` once it ended or the consumer returned. */
  private readonly sink: StreamSink<T> & { closed: boolean } = {
    pull: true,
    closed: false,
    next: (item) => this.pushAll([item]),
    nextAll: (items) => this.pushAll(items),
    error: (err) => this.fail(err),
    complete: () => this.end(),
  };

  constructor(private readonly open: StreamOpener<T>) {}

  next(): Promise<IteratorResult<T>> {
    if (!this.handle && !this.sink.closed) this.handle = this.open(this.sink);
    if (this.pos < this.frame.length || this.advance()) {
      const value = this.frame[this.pos] as T;
      this.frame[this.pos++] = undefined as T; // a taken item is not kept alive by its frame
      this.handle?.consumed(1);
      return Promise.resolve({ value, done: false });
    }
    if (this.failure) {
      const f = this.failure;
      this.failure = undefined;
      this.ended = true;
      return Promise.reject(f.error);
    }
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  return(): Promise<IteratorResult<T>> {
    if (!this.sink.closed) {
      this.sink.closed = true;
      this.handle?.teardown();
    }
    this.ended = true;
    this.failure = undefined;
    this.clear();
    for (const w of this.waiters.splice(0)) w.resolve({ value: undefined, done: true });
    return Promise.resolve({ value: undefined, done: true });
  }

  /** The current frame is used up: moves to the next queued one; false when none holds an item. */
  private advance(): boolean {
    while (this.qHead < this.queue.length) {
      const f = this.queue[this.qHead] as T[];
      this.queue[this.qHead++] = NONE;
      if (f.length > 0) {
        this.frame = f;
        this.pos = 0;
        // A consumer that never catches up never empties the queue: drop the taken slots now and then.
        if (this.qHead >= 64 && this.qHead * 2 >= this.queue.length) {
          this.queue.splice(0, this.qHead);
          this.qHead = 0;
        }
        return true;
      }
    }
    this.clear();
    return false;
  }

  private clear(): void {
    this.frame = NONE;
    this.pos = 0;
    this.queue.length = 0;
    this.qHead = 0;
  }

  /** Items arrived: waiting reads take the first, the rest wait in the frame (kept, not copied: the stream hands over a frame's own array). */
  private pushAll(items: T[]): void {
    let i = 0;
    while (i < items.length && this.waiters.length > 0) {
      const w = this.waiters.shift() as Waiter<T>;
      this.handle?.consumed(1);
      const value = items[i] as T;
      items[i++] = undefined as T; // the frame may stay as the current one: it keeps no item already handed out
      w.resolve({ value, done: false });
    }
    if (i === items.length) return;
    if (this.pos >= this.frame.length && this.qHead >= this.queue.length) {
      this.frame = items;
      this.pos = i;
      this.queue.length = 0;
      this.qHead = 0;
    } else this.queue.push(i === 0 ? items : items.slice(i));
  }

  private buffered(): boolean {
    if (this.pos < this.frame.length) return true;
    for (let k = this.qHead; k < this.queue.length; k++) if ((this.queue[k] as T[]).length > 0) return true;
    return false;
  }

  private fail(err: unknown): void {
    this.sink.closed = true;
    if (this.buffered() || this.waiters.length === 0) {
      this.failure = { error: err }; // after the buffered items
      return;
    }
    this.ended = true;
    const [first, ...rest] = this.waiters.splice(0);
    first?.reject(err);
    for (const w of rest) w.resolve({ value: undefined, done: true });
  }

  private end(): void {
    this.sink.closed = true;
    this.ended = true;
    for (const w of this.waiters.splice(0)) w.resolve({ value: undefined, done: true });
  }
}
