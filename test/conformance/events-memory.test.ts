import { eventsSuite, openMemoryPair } from '@troupe/testing';

eventsSuite('memory', {
  open: openMemoryPair,
  // Network-wide: subscriptions and durable-log consumers of both runtimes.
  subscriptions: (runtime) => runtime.network?.stats().subscriptions ?? 0,
});
