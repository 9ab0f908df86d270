/**
 * The publisher side of the event cases, shared by every system so they
 * pace and flush alike: `paced` publishes one event per interval (a timer
 * between publishes, so the figure is latency, not queueing); `flood`
 * publishes as fast as it can for a window, awaiting a flush (a round trip
 * to the server) every `flushEvery` events so the connection's buffer stays
 * bounded.
 */
import { delay } from './time';
import { type EventPayload, makeEvent, type PublishReport, type PublishSpec } from './payload';

export async function publishRun(spec: PublishSpec, publish: (e: EventPayload) => void, flush: () => Promise<void>): Promise<PublishReport> {
  const t0 = performance.now();
  let sent = 0;
  if (spec.mode === 'paced') {
    for (let i = 0; i < spec.n; i++) {
      publish(makeEvent(spec.run, i));
      sent++;
      if (spec.intervalMs > 0 && i + 1 < spec.n) await delay(spec.intervalMs);
    }
    await flush();
  } else {
    const end = t0 + spec.durationMs;
    while (performance.now() < end) {
      for (let k = 0; k < spec.flushEvery; k++) publish(makeEvent(spec.run, sent++));
      await flush();
    }
  }
  return { sent, ms: performance.now() - t0 };
}
