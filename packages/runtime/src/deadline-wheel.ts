/** Something with a deadline that the wheel fires unless it finished first. */
export interface Expirable {
  /** True once settled: the wheel skips it. */
  readonly settled: boolean;
  /** Called at (or just after) the deadline. */
  expire(): void;
}

/** Bucket width, ms: deadlines fire at most this late (a 300 ms deadline: within 3.3%). */
const SLOT_MS = 5;

/**
 * One timer for every unary deadline of a runtime instead of a `setTimeout`
 * plus `clearTimeout` per call (the Timeout object and the timer-list
 * bookkeeping are a measurable share of a caller's CPU at tens of thousands
 * of calls per second). Deadlines land in 5 ms slots; a settled call is not
 * removed, just skipped when its slot comes due.
 *
 * @example
 * wheel.add(call, Date.now() + 300);
 */
export class DeadlineWheel {
  private readonly slots = new Map<number, Expirable[]>();
  private timer: NodeJS.Timeout | undefined;
  private nextDue = Infinity;
  private size = 0;
  /** Entries not settled yet: while 0 the timer does not keep the process alive. */
  private live = 0;

  /** Schedules `item` to expire at `deadline` (epoch ms). */
  add(item: Expirable, deadline: number): void {
    const slot = Math.ceil(deadline / SLOT_MS);
    const list = this.slots.get(slot);
    if (list) list.push(item);
    else this.slots.set(slot, [item]);
    this.size++;
    if (this.live++ === 0) this.timer?.ref();
    const due = slot * SLOT_MS;
    if (due < this.nextDue) this.arm(due);
  }

  /** An entry settled before its deadline (it stays in its slot, skipped). */
  settle(): void {
    if (--this.live === 0) this.timer?.unref();
  }

  private arm(due: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.nextDue = due;
    this.timer = setTimeout(this.tick, Math.max(0, due - Date.now()));
    if (this.live === 0) this.timer.unref();
  }

  private readonly tick = (): void => {
    this.timer = undefined;
    this.nextDue = Infinity;
    const now = Date.now();
    let earliest = Infinity;
    for (const [slot, list] of this.slots) {
      if (slot * SLOT_MS <= now) {
        this.slots.delete(slot);
        this.size -= list.length;
        for (const item of list) if (!item.settled) item.expire(); // expire() settles it
      } else if (slot < earliest) earliest = slot;
    }
    if (earliest !== Infinity) this.arm(earliest * SLOT_MS);
  };

  /** Entries scheduled (settled or not) — for tests. */
  get scheduled(): number {
    return this.size;
  }
}
