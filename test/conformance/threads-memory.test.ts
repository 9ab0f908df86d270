import { openMemoryPair, threadsSuite } from '@troupe/testing';

threadsSuite('memory', { open: openMemoryPair });
