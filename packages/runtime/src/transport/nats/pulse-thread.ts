/**
 * Entry of the process-heartbeat thread (see {@link ThreadPulse}): its own
 * NATS connection, so beats keep flowing while the main event loop is blocked
 * by a synchronous handler, and a measure of how late that loop is. SIGSTOP
 * freezes this thread with the rest of the process and kill -9 ends it, so
 * silence still means frozen or gone.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { connect, type ConnectionOptions, type NatsConnection } from 'nats';
import type { PulseOptions } from '../transport';

/** What {@link ThreadPulse} hands the thread. */
export interface PulseThreadData {
  readonly connect: Partial<ConnectionOptions>;
  readonly pulse: PulseOptions;
  /** Float64Array(1) over it: when the main loop last ran (epoch ms), written every `tickMs`. */
  readonly shared: SharedArrayBuffer;
  readonly tickMs: number;
}

/** Messages from the main thread. */
export type PulseThreadCommand = { readonly set: Record<string, unknown>; readonly beatNow: boolean } | { readonly stop: true };

/** Messages to the main thread. */
export type PulseThreadReport = { readonly ready: true } | { readonly error: string };

const encoder = new TextEncoder();

async function main(): Promise<void> {
  const data = workerData as PulseThreadData;
  const port = parentPort;
  if (!port) return;
  const lastTick = new Float64Array(data.shared);
  let fields: Record<string, unknown> = { ...data.pulse.fields };
  let seq = 0;
  let busy = false;
  let nc: NatsConnection;
  try {
    nc = await connect(data.connect);
  } catch (err) {
    port.postMessage({ error: (err as Error)?.message ?? String(err) } satisfies PulseThreadReport);
    return;
  }
  // How long the main loop has not run beyond its tick period (0 for a healthy loop).
  const lag = (): number => Math.max(0, Math.round(Date.now() - (lastTick[0] as number) - data.tickMs));
  const beat = (lagMs: number): void => {
    try {
      nc.publish(data.pulse.subject, encoder.encode(JSON.stringify({ ...fields, seq: ++seq, lagMs })));
    } catch {
      // Closed or disconnected: watchers' lease TTL decides; the next period tries again.
    }
  };
  const beats = setInterval(() => beat(lag()), data.pulse.intervalMs);
  // A loop that just became busy (or free again) is announced at once, not a period later:
  // a caller judging a silent stream must see "busy" before its idle bound.
  const watch = setInterval(() => {
    const l = lag();
    const now = l > data.pulse.busyAfterMs;
    if (now !== busy) {
      busy = now;
      beat(l);
    }
  }, data.tickMs);
  beat(lag());
  port.on('message', (m: PulseThreadCommand) => {
    if ('set' in m) {
      fields = { ...fields, ...m.set };
      if (m.beatNow) beat(lag());
      return;
    }
    clearInterval(beats);
    clearInterval(watch);
    void nc
      .close()
      .catch(() => undefined)
      .finally(() => port.close());
  });
  port.postMessage({ ready: true } satisfies PulseThreadReport);
}

void main();
