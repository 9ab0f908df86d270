/** The base of {@link clockMs}: a millisecond before this module loaded, so a reading is never 0 (0 can mean "not yet"). */
const BASE = Date.now() - 1;

/**
 * `Date.now()` counted from a base taken when the process loaded: the same
 * clock, as a small integer. A time kept in a field of an object made
 * 100,000 times (an instance's start) costs a boxed double (16 B) each when
 * it is a `Date.now()` reading; this one is a V8 small integer for the first
 * 24.8 days of the process (a number all the same after that).
 *
 * @example
 * const at = clockMs();
 * const wall = new Date(clockWall(at)); // the wall time it was read at
 */
export function clockMs(): number {
  const t = Date.now() - BASE;
  // `| 0` makes it a small integer: a difference of two doubles is a (boxed) double even when whole.
  return t <= SMI_MAX ? t | 0 : t;
}

/** The largest V8 small integer on 64-bit builds without pointer compression (Node's). */
const SMI_MAX = 0x7fffffff;

/** The wall time (ms since 1970, as `Date.now()`) of a {@link clockMs} reading. */
export function clockWall(t: number): number {
  return BASE + t;
}
