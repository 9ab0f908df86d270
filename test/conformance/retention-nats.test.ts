// @node-flags --expose-gc
import { openNatsPair, retentionSuite } from '@troupe/testing';

retentionSuite('nats', { open: openNatsPair });
