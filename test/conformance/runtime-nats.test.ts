import { Runtime } from '@troupe/runtime';
import { runtimeSuite } from '@troupe/testing';

const servers = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

runtimeSuite('nats', {
  async open(options) {
    const worker = await Runtime.connect({ ...options, servers, gracePeriodMs: options?.gracePeriodMs ?? 2_000 });
    const caller = await Runtime.connect({ ...options, servers });
    return {
      worker,
      caller,
      close: async () => {
        await Promise.all([worker.close(), caller.close()]);
      },
    };
  },
});
