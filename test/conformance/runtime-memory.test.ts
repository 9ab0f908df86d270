import { openMemoryPair, runtimeSuite } from '@troupe/testing';

runtimeSuite('memory', { open: openMemoryPair });
