import { MemoryNetwork, Runtime } from '@troupe/runtime';
import { runtimeSuite } from '@troupe/testing';

runtimeSuite('memory', {
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
});
