/**
 * Settles as `p` does, unless `ms` pass first: then settles with what
 * `onTimeout` returns (a fallback value) or throws (the error to reject
 * with). The timer is cleared as soon as either side wins, so a settled race
 * keeps no timer alive. `p` is not cancelled: a caller that must stop the
 * work behind it does so itself. The one race-with-a-timer of the runtime
 * (and of its test helpers), so every bounded wait clears its timer the same way.
 *
 * @example
 * const entry = await withTimeout(bucket.get(key), 1000, () => {
 *   throw new TroupeError('TIMEOUT', `${key} not read within 1000 ms`);
 * });
 * const idle = await withTimeout(mailbox.idle().then(() => true), graceMs, () => false);
 */
export function withTimeout<T, U = never>(p: PromiseLike<T>, ms: number, onTimeout: () => U): Promise<T | U> {
  return new Promise<T | U>((resolve, reject) => {
    const timer = setTimeout(() => {
      try {
        resolve(onTimeout());
      } catch (err) {
        reject(err);
      }
    }, ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
