// @node-flags --expose-gc
import { openMemoryPair, retentionSuite } from '@troupe/testing';

retentionSuite('memory', { open: openMemoryPair });
