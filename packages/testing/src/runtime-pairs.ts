import { MemoryNetwork, Runtime, type RuntimeOptions } from '@troupe/runtime/internal';
import type { RuntimePair } from './runtime-suite';

/** The grace period suites use unless a case asks for another: short, so a hung stop fails fast. */
const SUITE_GRACE_MS = 2_000;

/**
 * Opens a worker and a caller runtime on one fresh in-process network (the
 * embedded runtime), the factory every suite uses for the memory transport.
 *
 * @example
 * runtimeSuite('memory', { open: openMemoryPair });
 */
export async function openMemoryPair(options?: RuntimeOptions): Promise<RuntimePair> {
  const network = new MemoryNetwork();
  const worker = await Runtime.embedded({ ...options, network, gracePeriodMs: options?.gracePeriodMs ?? SUITE_GRACE_MS });
  const caller = await Runtime.embedded({ ...options, network });
  return pair(worker, caller);
}

/**
 * Opens a worker and a caller runtime on two connections to the NATS server
 * at `NATS_URL` (default `nats://127.0.0.1:4222`).
 *
 * @example
 * runtimeSuite('nats', { open: openNatsPair });
 */
export async function openNatsPair(options?: RuntimeOptions): Promise<RuntimePair> {
  const servers = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
  const worker = await Runtime.connect({ ...options, servers, gracePeriodMs: options?.gracePeriodMs ?? SUITE_GRACE_MS });
  const caller = await Runtime.connect({ ...options, servers });
  return pair(worker, caller);
}

function pair(worker: Runtime, caller: Runtime): RuntimePair {
  return {
    worker,
    caller,
    close: async () => {
      await Promise.all([worker.close(), caller.close()]);
    },
  };
}
