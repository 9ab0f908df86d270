import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Plane } from '../plane/plane';
import { Heartbeats } from './heartbeats';
import type { WorkerStream } from './worker-stream';

test('heartbeats - a stream named after close (accepted in the closing tick) opens no group, timer or inbox key', () => {
  let opened = 0;
  const plane = { inbox: { open: () => (opened++, ['k1', '_INBOX.test.k1']) } } as unknown as Plane;
  const beats = new Heartbeats(plane);
  beats.close();
  beats.add({ reply: '_INBOX.test.caller.7', heartbeatMs: 100, key: '7' } as unknown as WorkerStream);
  assert.is(beats.groupCount, 0);
  assert.is(opened, 0, 'no inbox key taken');
});

test.run();
