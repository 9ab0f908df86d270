import { spawnSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DeadlineWheel, type Expirable, MAX_TIMER_MS, type WheelClock } from './deadline-wheel';

/** A clock the test drives: timers fire only when `advance` passes their time. */
class DrivenClock implements WheelClock {
  t = 1_000_000;
  private timers: { at: number; fn: () => void }[] = [];
  /** Every delay a timer was asked for. */
  readonly requested: number[] = [];
  now = (): number => this.t;
  setTimeout = (fn: () => void, ms: number): object => {
    this.requested.push(ms);
    const timer = { at: this.t + ms, fn };
    this.timers.push(timer);
    return timer;
  };
  clearTimeout = (timer: object): void => {
    this.timers = this.timers.filter((x) => x !== timer);
  };
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const due = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.timers = this.timers.filter((x) => x !== due);
      this.t = Math.max(this.t, due.at);
      due.fn();
    }
    this.t = end;
  }
  get pending(): number {
    return this.timers.length;
  }
}

function item(clock: DrivenClock): Expirable & { at: number } {
  const x = {
    at: 0,
    expire() {
      x.at = clock.now();
    },
  };
  return x;
}

test('deadline wheel - fires each deadline within one 5 ms slot, never early', () => {
  const clock = new DrivenClock();
  const wheel = new DeadlineWheel(clock);
  const t0 = clock.now();
  const a = item(clock);
  const b = item(clock);
  wheel.add(a, t0 + 40);
  wheel.add(b, t0 + 83);
  clock.advance(39);
  assert.is(a.at, 0, 'not before its deadline');
  clock.advance(200);
  assert.ok(a.at - t0 >= 40 && a.at - t0 <= 45, `a fired at +${a.at - t0} ms for +40`);
  assert.ok(b.at - t0 >= 83 && b.at - t0 <= 88, `b fired at +${b.at - t0} ms for +83`);
  assert.is(wheel.scheduled, 0);
});

test('deadline wheel - a removed entry never fires and is not referenced any more', () => {
  const clock = new DrivenClock();
  const wheel = new DeadlineWheel(clock);
  const t0 = clock.now();
  const c = item(clock);
  const d = item(clock);
  wheel.add(c, t0 + 60);
  wheel.add(d, t0 + 60);
  wheel.remove(c); // settled first
  assert.is(wheel.scheduled, 1, 'only the unsettled entry is held');
  wheel.remove(c); // twice is harmless
  clock.advance(100);
  assert.is(c.at, 0, 'a removed entry never fires');
  assert.ok(d.at > 0, 'the other one did');
  assert.is(wheel.scheduled, 0);
});

test('deadline wheel - close() forgets every entry and its timer', () => {
  const clock = new DrivenClock();
  const wheel = new DeadlineWheel(clock);
  const e = item(clock);
  wheel.add(e, clock.now() + 50);
  wheel.close();
  assert.is(wheel.scheduled, 0);
  assert.is(clock.pending, 0, 'no timer left');
  clock.advance(100);
  assert.is(e.at, 0);
});

test('deadline wheel - removed entries do not keep the process alive', () => {
  const script = `
    const { DeadlineWheel } = require(${JSON.stringify(require.resolve('./deadline-wheel'))});
    const w = new DeadlineWheel();
    const x = { expire() {} };
    w.add(x, Date.now() + 60000);
    w.remove(x);`;
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['-e', script], { timeout: 10_000 });
  assert.is(r.status, 0, String(r.stderr));
  assert.ok(Date.now() - t0 < 5_000, `the process exited after ${Date.now() - t0} ms, not at the 60 s deadline`);
});

test('deadline wheel - an expiry that settles others of its slot, and an entry added twice, fire each entry once', () => {
  const clock = new DrivenClock();
  const wheel = new DeadlineWheel(clock);
  const t0 = clock.now();
  const fired: string[] = [];
  const b: Expirable = { expire: () => fired.push('b') };
  const a: Expirable = {
    expire() {
      fired.push('a');
      wheel.remove(b); // settles a neighbour in the same slot while the slot fires
    },
  };
  const c: Expirable = { expire: () => fired.push('c') };
  wheel.add(b, t0 + 20);
  wheel.add(a, t0 + 20);
  wheel.add(c, t0 + 20);
  wheel.add(c, t0 + 45); // moved, not added twice
  assert.is(wheel.scheduled, 3);
  clock.advance(25);
  assert.equal(fired, ['a'], 'a fired; b was removed by it before its turn; c moved later');
  assert.is(wheel.scheduled, 1);
  clock.advance(25);
  assert.equal(fired, ['a', 'c']);
  assert.is(wheel.scheduled, 0);
  assert.is(a.wheelNext, undefined, 'a fired entry keeps no link to others');
});

test("deadline wheel - a deadline past a timer's reach waits in steps; Infinity never arms", () => {
  const clock = new DrivenClock();
  const wheel = new DeadlineWheel(clock);
  const t0 = clock.now();
  const never = item(clock);
  wheel.add(never, Number.POSITIVE_INFINITY);
  assert.is(clock.pending, 0, 'no timer for a deadline that never comes');
  const far = item(clock);
  const deadline = t0 + 3 * MAX_TIMER_MS;
  wheel.add(far, deadline);
  assert.ok(
    clock.requested.every((ms) => ms <= MAX_TIMER_MS),
    `timer delays within reach: ${clock.requested.join(', ')}`,
  );
  clock.advance(MAX_TIMER_MS + 1);
  assert.is(far.at, 0, 'not at the first step');
  clock.advance(2 * MAX_TIMER_MS + 10);
  assert.ok(far.at >= deadline && far.at <= deadline + 5, `fired at +${far.at - t0} for +${deadline - t0}`);
  assert.ok(
    clock.requested.every((ms) => ms <= MAX_TIMER_MS),
    `timer delays within reach: ${clock.requested.join(', ')}`,
  );
  assert.is(never.at, 0);
  assert.is(wheel.scheduled, 1, 'the Infinity entry stays until removed');
  wheel.remove(never);
  assert.is(wheel.scheduled, 0);
});

test.run();
