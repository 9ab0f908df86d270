import { withTimeout } from './timeout';

/**
 * Whether `p` settles (resolves or rejects) within `ms`. Never rejects, and
 * leaves no timer behind. For shutdown steps that wait on a server which may
 * be dead or frozen: the caller gives up after `ms`, says what it could not
 * do, and goes on.
 *
 * @example
 * if (!(await settlesWithin(kv.delete(key), 500))) logger.warn('the registry did not answer within 500 ms');
 */
export function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  const settled = p.then(
    () => true,
    () => true,
  );
  if (ms === Infinity) return settled;
  return withTimeout(settled, Math.max(0, ms), () => false);
}
