import { openNatsPair, runtimeSuite } from '@troupe/testing';

runtimeSuite('nats', { open: openNatsPair });
