import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { threadConnectOptions } from './nats/thread-pulse';
import { encodeBeat, MainLoopPulse } from './pulse';

// Pure: a fake publish, no network; the one timer is stopped before each test ends.

const decode = (b: Uint8Array): Record<string, unknown> => JSON.parse(new TextDecoder().decode(b)) as Record<string, unknown>;

test('pulse - a beat is JSON: the given fields, seq and lagMs', () => {
  assert.equal(decode(encodeBeat({ lease: 'abc', hb: 1000 }, 3, 42)), { lease: 'abc', hb: 1000, seq: 3, lagMs: 42 });
});

test('pulse - the main-loop pulse beats at once, and again at once when set() asks, with the merged fields', async () => {
  const sent: Array<{ subject: string; beat: Record<string, unknown> }> = [];
  const pulse = new MainLoopPulse(
    { publish: (subject, data) => void sent.push({ subject, beat: decode(data) }) },
    { subject: '_TROUPE.lease.abc', intervalMs: 60_000, fields: { lease: 'abc' }, busyAfterMs: 250 },
  );
  pulse.set({ lrev: 7 });
  pulse.set({ rrev: 9 }, true);
  await pulse.stop();
  assert.equal(sent, [
    { subject: '_TROUPE.lease.abc', beat: { lease: 'abc', seq: 1, lagMs: 0 } },
    { subject: '_TROUPE.lease.abc', beat: { lease: 'abc', lrev: 7, rrev: 9, seq: 2, lagMs: 0 } },
  ]);
});

test('pulse - a publish that throws (disconnected) is not fatal: the next period tries again', async () => {
  let tries = 0;
  const pulse = new MainLoopPulse(
    {
      publish: () => {
        tries++;
        throw new Error('not connected');
      },
    },
    { subject: '_TROUPE.lease.abc', intervalMs: 60_000, fields: {}, busyAfterMs: 250 },
  );
  pulse.set({}, true);
  await pulse.stop();
  assert.is(tries, 2, 'both beats were attempted and neither threw out of the pulse');
});

test('pulse - connection options cross to the beat thread without functions; an authenticator function means no thread', () => {
  const opts = { servers: ['nats://a:4222'], user: 'u', pass: 'p', reconnectDelayHandler: () => 10 };
  assert.equal(threadConnectOptions(opts), { servers: ['nats://a:4222'], user: 'u', pass: 'p' });
  assert.is(threadConnectOptions({ servers: 'nats://a:4222', authenticator: () => ({}) as never }), undefined);
});

test.run();
