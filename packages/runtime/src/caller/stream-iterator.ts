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

/**
 * The pull side of a stream: sends the request on the first `next()`,
 * buffers what the worker sent (never more than the credit window: the
 * worker sends no further ahead), and grants credit as the consumer takes
 * items. `return()` (a `break` out of `for await`) cancels the remote handler.
 */
export class StreamIterator<T> implements AsyncIterator<T> {
  private handle: StreamHandle | undefined;
  private buffer: T[] = [];
  private head = 0;
  private failure: { error: unknown } | undefined;
  private ended = false;
  private waiters: Waiter<T>[] = [];
  /** What the stream pushes into; `closed` once it ended or the consumer returned. */
  private readonly sink: StreamSink<T> & { closed: boolean } = {
    pull: true,
    closed: false,
    next: (item) => this.push(item),
    error: (err) => this.fail(err),
    complete: () => this.end(),
  };

  constructor(private readonly open: StreamOpener<T>) {}

  next(): Promise<IteratorResult<T>> {
    if (!this.handle && !this.sink.closed) this.handle = this.open(this.sink);
    if (this.head < this.buffer.length) {
      const value = this.buffer[this.head] as T;
      this.buffer[this.head++] = undefined as T;
      if (this.head >= this.buffer.length) {
        this.buffer.length = 0;
        this.head = 0;
      } else if (this.head > 1024 && this.head * 2 > this.buffer.length) {
        this.buffer.splice(0, this.head);
        this.head = 0;
      }
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
    this.buffer = [];
    this.head = 0;
    for (const w of this.waiters.splice(0)) w.resolve({ value: undefined, done: true });
    return Promise.resolve({ value: undefined, done: true });
  }

  private push(item: T): void {
    const w = this.waiters.shift();
    if (w) {
      this.handle?.consumed(1);
      w.resolve({ value: item, done: false });
    } else {
      this.buffer.push(item);
    }
  }

  private fail(err: unknown): void {
    this.sink.closed = true;
    if (this.head < this.buffer.length || this.waiters.length === 0) {
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
