/**
 * Something with a deadline that the wheel fires unless it finished first.
 * The wheel links its entries through the `wheel*` fields (an intrusive list:
 * no Map entry, Set entry or node object per entry); an entry is in at most
 * one wheel at a time, and a class that is added often should initialise the
 * fields in its constructor so its shape never changes.
 */
export interface Expirable {
  /** Called at (or just after) the deadline, once, unless removed before. */
  expire(): void;
  /** The wheel's: the entry's slot (0 while not scheduled). */
  wheelSlot?: number;
  /** The wheel's: neighbours in the slot's list. */
  wheelPrev?: Expirable | undefined;
  wheelNext?: Expirable | undefined;
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
 * The longest delay a timer takes (2^31 − 1 ms, ≈ 24.8 days): Node fires a longer one after 1 ms. A later deadline
 * waits in steps of this (a tick that finds nothing due arms the next step); `Infinity` never fires.
 */
export const MAX_TIMER_MS = 0x7fffffff;

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
  /**
   * The first entry of each slot's list (a few hundred exist at most), keyed by the slot (`ceil(deadline / 5 ms)`)
   * less {@link base}: epoch slots (≈ 3.5e11) are past V8's small-integer range, so each Map operation would hash a
   * heap number (allocated for the key); from the wheel's birth they stay small for 62 days.
   */
  private readonly slots = new Map<number, Expirable>();
  private readonly base: number;
  private count = 0;
  private timer: WheelTimer | undefined;
  private nextDue = Infinity;

  constructor(private readonly clock: WheelClock = SYSTEM_CLOCK) {
    this.base = Math.floor(clock.now() / SLOT_MS);
  }

  /** Schedules `item` to expire at `deadline` (epoch ms of the wheel's clock); an item already scheduled moves. */
  add(item: Expirable, deadline: number): void {
    if (item.wheelSlot) this.remove(item);
    const slot = Math.max(1, Math.ceil(deadline / SLOT_MS));
    const key = slot - this.base;
    const head = this.slots.get(key);
    item.wheelSlot = slot;
    item.wheelPrev = undefined;
    item.wheelNext = head;
    if (head) head.wheelPrev = item;
    this.slots.set(key, item);
    if (this.count++ === 0) this.timer?.ref?.();
    const due = slot * SLOT_MS;
    if (due < this.nextDue) this.arm(due);
  }

  /** Forgets `item` (it settled before its deadline): no reference to it is kept, and it keeps none. */
  remove(item: Expirable): void {
    const slot = item.wheelSlot;
    if (!slot) return;
    const prev = item.wheelPrev;
    const next = item.wheelNext;
    if (next) next.wheelPrev = prev;
    if (prev) prev.wheelNext = next;
    else if (next) this.slots.set(slot - this.base, next);
    else this.slots.delete(slot - this.base);
    item.wheelSlot = 0;
    item.wheelPrev = undefined;
    item.wheelNext = undefined;
    // Nothing waits: the armed timer may fire empty but must not keep the process alive.
    if (--this.count === 0) this.timer?.unref?.();
  }

  /** Stops the timer and forgets every entry without expiring it (the runtime closes). */
  close(): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.nextDue = Infinity;
    for (const head of this.slots.values()) unlinkAll(head);
    this.slots.clear();
    this.count = 0;
  }

  private arm(due: number): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.nextDue = due;
    this.timer = this.clock.setTimeout(this.tick, Math.min(MAX_TIMER_MS, Math.max(0, due - this.clock.now())));
    if (this.count === 0) this.timer.unref?.();
  }

  private readonly tick = (): void => {
    this.timer = undefined;
    this.nextDue = Infinity;
    const now = this.clock.now();
    const due: number[] = [];
    const nowKey = Math.floor(now / SLOT_MS) - this.base;
    for (const key of this.slots.keys()) if (key <= nowKey) due.push(key);
    for (const key of due) {
      // Unlinked one at a time: an expiry may settle (remove) other entries of the same slot.
      for (let item = this.slots.get(key); item; item = this.slots.get(key)) {
        this.remove(item);
        item.expire();
      }
    }
    let earliest = Infinity;
    for (const key of this.slots.keys()) if (key < earliest) earliest = key;
    if (earliest !== Infinity) this.arm((earliest + this.base) * SLOT_MS);
  };

  /** Entries waiting for their deadline (settled ones are gone) — for tests and leak checks. */
  get scheduled(): number {
    return this.count;
  }
}

function unlinkAll(head: Expirable): void {
  for (let item: Expirable | undefined = head; item;) {
    const next: Expirable | undefined = item.wheelNext;
    item.wheelSlot = 0;
    item.wheelPrev = undefined;
    item.wheelNext = undefined;
    item = next;
  }
}
