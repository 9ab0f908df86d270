import { NatsTransport, Runtime } from '@troupe/runtime';
import { eventsSuite } from '@troupe/testing';

const servers = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

/** nats.js keeps its subscriptions in `protocol.subscriptions` (internal, v2.29); no public count exists. */
interface NatsInternals {
  protocol: { subscriptions: { size(): number } };
}

eventsSuite('nats', {
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
  subscriptions: (runtime) => ((runtime.bus as NatsTransport).nc as unknown as NatsInternals).protocol.subscriptions.size(),
});
