import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Mailbox } from './mailbox';

test('mailbox - runs at most `concurrency` jobs and refuses past capacity', async () => {
  const box = new Mailbox(2, 3);
  const releases: Array<() => void> = [];
  let running = 0;
  let peak = 0;
  const job = () =>
    new Promise<void>((resolve) => {
      running++;
      peak = Math.max(peak, running);
      releases.push(() => {
        running--;
        resolve();
      });
    });
  const accepted = Array.from({ length: 6 }, () => box.offer(job));
  assert.equal(accepted, [true, true, true, true, true, false]);
  assert.is(box.running, 2);
  assert.is(box.queued, 3);
  while (releases.length) {
    releases.shift()!();
    await new Promise((r) => setImmediate(r));
  }
  await box.idle();
  assert.is(peak, 2);
  assert.is(box.running, 0);
});

test('mailbox - a synchronous job runs inside offer', () => {
  const box = new Mailbox(1, 0);
  let ran = false;
  assert.ok(box.offer(() => void (ran = true)));
  assert.ok(ran);
  assert.is(box.running, 0);
});

test('mailbox - a long run of queued synchronous jobs does not grow the stack', async () => {
  const box = new Mailbox(1, 200_000);
  let release!: () => void;
  box.offer(() => new Promise<void>((r) => (release = r)));
  let count = 0;
  for (let i = 0; i < 100_000; i++) box.offer(() => void count++);
  release();
  await box.idle();
  assert.is(count, 100_000);
});

test('mailbox - a throwing job does not wedge it', async () => {
  const box = new Mailbox(1, 10);
  box.offer(() => {
    throw new Error('x');
  });
  box.offer(() => Promise.reject(new Error('y')));
  let ran = false;
  box.offer(() => void (ran = true));
  await box.idle();
  assert.ok(ran);
});

test.run();
