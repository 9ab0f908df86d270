import type { NatsTransport } from '@troupe/runtime/internal';
import { eventsSuite, openNatsPair } from '@troupe/testing';

/** nats.js keeps its subscriptions in `protocol.subscriptions` (internal, v2.29); no public count exists. */
interface NatsInternals {
  protocol: { subscriptions: { size(): number } };
}

eventsSuite('nats', {
  open: openNatsPair,
  subscriptions: (runtime) => ((runtime.bus as NatsTransport).nc as unknown as NatsInternals).protocol.subscriptions.size(),
});
