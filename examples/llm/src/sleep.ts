import { TroupeError } from '@troupe/runtime';

/**
 * Simulated compute: resolves after `ms`, or rejects CANCELLED as soon as
 * `signal` aborts (so a cancelled request stops burning "GPU" time at once).
 */
export function simulate(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new TroupeError('CANCELLED', 'cancelled'));
    const onAbort = (): void => {
      clearTimeout(t);
      reject(new TroupeError('CANCELLED', 'cancelled'));
    };
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
