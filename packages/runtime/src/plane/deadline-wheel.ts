/** Something with a deadline that the wheel fires unless it finished first. */
export interface Expirable {
  /** Called at (or just after) the deadline, once, unless removed before. */
  expire(): void;
}

/** The clock a wheel runs on: the real one by default, a driven one in tests. */
export interface WheelClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): WheelTimer;
  clearTimeout(timer: WheelTimer): void;
}

/** A timer of a {@link WheelClock}; `ref`/`unref` say whether it keeps the process alive. */
export interface WheelTimer {
  ref?(): unknown;
  unref?(): unknown;
}

/** The process clock. */
export const SYSTEM_CLOCK: WheelClock = {
  now: Date.now,
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout),
};

/** Bucket width, ms: deadlines fire at most this late (a 300 ms deadline: within 3.3%). */
const SLOT_MS = 5;

/**
 * One timer for every unary deadline of a runtime instead of a `setTimeout`
 * plus `clearTimeout` per call (the Timeout object and the timer-list
 * bookkeeping are a measurable share of a caller's CPU at tens of thousands
 * of calls per second). Deadlines land in 5 ms slots. A call that settles
 * removes itself at once (`remove`, O(1)): the wheel never holds a settled
 * call, so nothing of a finished call's payload outlives it (a wheel that
 * only skipped settled entries kept every call of the last 30 s reachable:
 * gigabytes at full load, issue #16).
 *
 * @example
 * wheel.add(call, Date.now() + 300); // later, when the reply came: wheel.remove(call)
 */
export class DeadlineWheel {
  private readonly slots = new Map<number, Set<Expirable>>();
  /** The slot of each scheduled entry, for O(1) removal. */
  private readonly slotOf = new Map<Expirable, number>();
  private timer: WheelTimer | undefined;
  private nextDue = Infinity;

  constructor(private readonly clock: WheelClock = SYSTEM_CLOCK) {}

  /** Schedules `item` to expire at `deadline` (epoch ms of the wheel's clock). */
  add(item: Expirable, deadline: number): void {
    const slot = Math.ceil(deadline / SLOT_MS);
    const set = this.slots.get(slot);
    if (set) set.add(item);
    else this.slots.set(slot, new Set([item]));
    if (this.slotOf.size === 0) this.timer?.ref?.();
    this.slotOf.set(item, slot);
    const due = slot * SLOT_MS;
    if (due < this.nextDue) this.arm(due);
  }

  /** Forgets `item` (it settled before its deadline): no reference to it is kept. */
  remove(item: Expirable): void {
    const slot = this.slotOf.get(item);
    if (slot === undefined) return;
    this.slotOf.delete(item);
    const set = this.slots.get(slot);
    if (set && set.delete(item) && set.size === 0) this.slots.delete(slot);
    // Nothing waits: the armed timer may fire empty but must not keep the process alive.
    if (this.slotOf.size === 0) this.timer?.unref?.();
  }

  /** Stops the timer and forgets every entry without expiring it (the runtime closes). */
  close(): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.nextDue = Infinity;
    this.slots.clear();
    this.slotOf.clear();
  }

  private arm(due: number): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.nextDue = due;
    this.timer = this.clock.setTimeout(this.tick, Math.max(0, due - this.clock.now()));
    if (this.slotOf.size === 0) this.timer.unref?.();
  }

  private readonly tick = (): void => {
    this.timer = undefined;
    this.nextDue = Infinity;
    const now = this.clock.now();
    let earliest = Infinity;
    for (const [slot, set] of this.slots) {
      if (slot * SLOT_MS <= now) {
        this.slots.delete(slot);
        for (const item of set) {
          this.slotOf.delete(item);
          item.expire();
        }
      } else if (slot < earliest) earliest = slot;
    }
    if (earliest !== Infinity) this.arm(earliest * SLOT_MS);
  };

  /** Entries waiting for their deadline (settled ones are gone) — for tests and leak checks. */
  get scheduled(): number {
    return this.slotOf.size;
  }
}
