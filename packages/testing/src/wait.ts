import { withTimeout } from '@troupe/runtime/internal';

/**
 * Waits until `predicate` is true, polling every few ms; throws after
 * `timeoutMs` with a message saying what did not happen. Tests wait on an
 * event or a condition bounded this way (or with {@link within}); a fixed
 * {@link sleep} is for handlers that simulate work, not for synchronisation.
 *
 * @example
 * await waitFor(() => received.length === 100, 2000, '100 messages to arrive');
 */
export async function waitFor(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/**
 * Resolves with `p`'s value, or throws after `timeoutMs` naming `what`.
 *
 * @example
 * const reply = await within(client.call(x), 1000, 'the reply');
 */
export function within<T>(p: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  return withTimeout(p, timeoutMs, () => {
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
  });
}

/**
 * Resolves after `ms`, or rejects with the signal's reason when it aborts
 * first (handlers in tests use it to honour `ctx.signal`).
 *
 * @example
 * await sleep(10, ctx.signal);
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
