/** One unit of work in a mailbox: may finish synchronously or return a Promise. */
export type Job = () => void | Promise<void>;

/**
 * An instance's bounded mailbox. At most `concurrency` jobs run at once (1 =
 * the classic actor: one message at a time, so handlers never interleave on
 * the instance's state); at most `capacity` wait. {@link offer} refuses past
 * the bound so the caller can answer `OVERLOADED` at once instead of queueing
 * without limit.
 *
 * A job offered while a slot is free runs synchronously inside `offer` (no
 * extra tick on the unary hot path).
 *
 * @example
 * const box = new Mailbox(1, 1000);
 * if (!box.offer(() => handle(msg))) replyOverloaded(msg);
 */
export class Mailbox {
  // Created at first use: an idle instance's mailbox is a few numbers (100,000 of them hold no arrays).
  private queue: Job[] | undefined;
  private head = 0;
  private active = 0;
  private idleWaiters: Array<() => void> | undefined;

  constructor(
    readonly concurrency: number,
    readonly capacity: number,
  ) {
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be an integer >= 1, got ${concurrency}`);
    if (!Number.isInteger(capacity) || capacity < 0) throw new RangeError(`mailbox capacity must be an integer >= 0, got ${capacity}`);
  }

  /** When the queue last went from empty to non-empty (ms epoch); 0 while nothing waits. */
  waitingSince = 0;

  /** Jobs started plus jobs finished so far: unchanged over a while means the mailbox makes no progress. */
  progress = 0;

  /** Jobs running now. */
  get running(): number {
    return this.active;
  }

  /** Jobs waiting. */
  get queued(): number {
    return this.queue === undefined ? 0 : this.queue.length - this.head;
  }

  /** Runs or queues `job`; false when the mailbox is full. */
  offer(job: Job): boolean {
    if (this.active < this.concurrency) {
      this.run(job);
      return true;
    }
    if (this.queued >= this.capacity) return false;
    if (this.queued === 0) this.waitingSince = Date.now();
    (this.queue ??= []).push(job);
    return true;
  }

  /** Resolves when nothing runs and nothing waits. */
  idle(): Promise<void> {
    if (this.active === 0 && this.queued === 0) return Promise.resolve();
    return new Promise((resolve) => (this.idleWaiters ??= []).push(resolve));
  }

  /** Removes every waiting job and returns them (used to refuse them on shutdown). */
  takeQueued(): Job[] {
    if (this.queue === undefined) return [];
    const out = this.queue.slice(this.head);
    this.queue.length = 0;
    this.head = 0;
    this.waitingSince = 0;
    return out;
  }

  private draining = false;

  /**
   * Runs `fn(a, b)` in a free slot now — {@link offer} of a job without the
   * job's closure; only while `running < concurrency` (a RangeError
   * otherwise: nothing may overtake queued jobs).
   */
  runNow<A, B>(fn: (a: A, b: B) => void | Promise<void>, a: A, b: B): void {
    if (this.active >= this.concurrency) throw new RangeError('runNow() without a free slot');
    this.active++;
    this.progress++;
    let result: void | Promise<void>;
    try {
      result = fn(a, b);
    } catch {
      result = undefined;
    }
    this.ran(result);
  }

  /** Starts `job` in a free slot; a synchronous job frees its slot before returning. */
  private run(job: Job): void {
    this.active++;
    this.progress++;
    let result: void | Promise<void>;
    try {
      result = job();
    } catch {
      // jobs report their own errors; a throw here must not wedge the mailbox
      result = undefined;
    }
    this.ran(result);
  }

  /** A job returned: its slot frees now (synchronous) or when its promise settles. */
  private ran(result: void | Promise<void>): void {
    if (result && typeof (result as Promise<void>).then === 'function') {
      const done = (this.asyncDone ??= () => {
        this.active--;
        this.progress++;
        this.pump();
      });
      (result as Promise<void>).then(done, done);
    } else {
      this.active--;
      this.progress++;
      // Nothing waits and nobody awaits idle (the unary hot path): no pump.
      if (this.queued > 0 || this.idleWaiters !== undefined) this.pump();
    }
  }

  /** Frees the slot of an async job when it settles (one closure per mailbox, made at its first async job). */
  private asyncDone: (() => void) | undefined;

  /** Starts waiting jobs while slots are free; iterative so long runs of synchronous jobs never grow the stack. */
  private pump(): void {
    if (this.draining) return;
    this.draining = true;
    const q = this.queue;
    try {
      if (q !== undefined) {
        while (this.active < this.concurrency && this.head < q.length) {
          const next = q[this.head] as Job;
          q[this.head] = undefined as unknown as Job;
          this.head++;
          this.run(next);
        }
        if (this.head >= q.length) {
          q.length = 0;
          this.head = 0;
          this.waitingSince = 0;
        } else if (this.head > 1024 && this.head * 2 > q.length) {
          q.splice(0, this.head);
          this.head = 0;
        }
      }
    } finally {
      this.draining = false;
    }
    if (this.active === 0 && this.queued === 0 && this.idleWaiters !== undefined) {
      const waiters = this.idleWaiters;
      this.idleWaiters = undefined;
      for (const w of waiters) w();
    }
  }
}
