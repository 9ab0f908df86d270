import { openNatsPair, threadsSuite } from '@troupe/testing';

threadsSuite('nats', { open: openNatsPair });
