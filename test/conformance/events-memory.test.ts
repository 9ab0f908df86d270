import { MemoryNetwork, Runtime } from '@troupe/runtime';
import { eventsSuite } from '@troupe/testing';

eventsSuite('memory', {
  async open(options) {
    const network = new MemoryNetwork();
    const worker = await Runtime.embedded({ ...options, network, gracePeriodMs: options?.gracePeriodMs ?? 2_000 });
    const caller = await Runtime.embedded({ ...options, network });
    return {
      worker,
      caller,
      close: async () => {
        await Promise.all([worker.close(), caller.close()]);
      },
    };
  },
  // Network-wide: subscriptions and durable-log consumers of both runtimes.
  subscriptions: (runtime) => runtime.network?.stats().subscriptions ?? 0,
});
