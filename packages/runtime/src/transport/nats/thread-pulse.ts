import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { ConnectionOptions } from 'nats';
import { MainLoopPulse } from '../pulse';
import type { Pulse, PulseOptions, Transport } from '../transport';
import type { PulseThreadCommand, PulseThreadData, PulseThreadReport } from './pulse-thread';

/** How often the main loop stamps the shared clock: a busy loop is told from a healthy one within ~2 ticks. */
const TICK_MS = 50;
/** How long `stop()` waits for the thread to close its connection before terminating it (shutdown must stay bounded with the server gone). */
const STOP_WAIT_MS = 200;

/**
 * Connection options a thread can receive: functions (an `authenticator`,
 * a `reconnectDelayHandler`) do not cross `postMessage`. Returns undefined
 * when the options cannot authenticate without one.
 */
export function threadConnectOptions(options: Partial<ConnectionOptions>): Partial<ConnectionOptions> | undefined {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(options)) {
    if (v === undefined) continue;
    try {
      out[k] = structuredClone(v);
    } catch {
      if (k === 'authenticator') return undefined;
    }
  }
  return out as Partial<ConnectionOptions>;
}

/**
 * A process heartbeat published from a `worker_threads` thread with its own
 * NATS connection (one thread and one connection per process, whatever its
 * instance count). The main loop stamps a shared clock every 50 ms; the
 * thread reports how late that stamp is as `lagMs`, and beats at once when the
 * loop turns busy. A thread that cannot start or connect falls back to beats
 * from the main loop (a blocked loop then looks frozen, as before).
 *
 * @example
 * const pulse = new ThreadPulse(transport, { servers: 'nats://127.0.0.1:4222' }, { subject: '_TROUPE.lease.9f3c0a7e12b4d8e1', intervalMs: 1000, fields: {}, busyAfterMs: 250 });
 * await pulse.stop();
 */
export class ThreadPulse implements Pulse {
  private readonly worker: Worker;
  private readonly clock: Float64Array;
  private readonly ticker: NodeJS.Timeout;
  private fallback: MainLoopPulse | undefined;
  private fields: Record<string, unknown>;
  private exited = false;
  private readonly exit: Promise<void>;

  constructor(
    private readonly transport: Pick<Transport, 'publish'>,
    connectOptions: Partial<ConnectionOptions>,
    private readonly options: PulseOptions,
  ) {
    this.fields = { ...options.fields };
    const shared = new SharedArrayBuffer(8);
    this.clock = new Float64Array(shared);
    this.clock[0] = Date.now();
    this.ticker = setInterval(() => (this.clock[0] = Date.now()), TICK_MS);
    this.ticker.unref();
    const data: PulseThreadData = { connect: { ...connectOptions, name: `${connectOptions.name ?? 'troupe'}-pulse` }, pulse: options, shared, tickMs: TICK_MS };
    this.worker = new Worker(join(__dirname, 'pulse-thread.js'), { workerData: data });
    // The beat thread never keeps a process alive on its own.
    this.worker.unref();
    this.exit = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    void this.exit.then(() => (this.exited = true));
    this.worker.on('message', (m: PulseThreadReport) => {
      if ('error' in m) this.fallBack(`the beat thread could not connect: ${m.error}`);
    });
    this.worker.on('error', (err) => this.fallBack(`the beat thread failed: ${err.message}`));
  }

  private fallBack(why: string): void {
    if (this.fallback) return;
    process.emitWarning(`troupe: ${why}; beating from the main event loop (a blocked loop will look frozen)`);
    this.fallback = new MainLoopPulse(this.transport, { ...this.options, fields: this.fields });
  }

  set(fields: Readonly<Record<string, unknown>>, beatNow = false): void {
    this.fields = { ...this.fields, ...fields };
    this.fallback?.set(fields, beatNow);
    if (!this.exited) this.worker.postMessage({ set: { ...fields }, beatNow } satisfies PulseThreadCommand);
  }

  async stop(): Promise<void> {
    clearInterval(this.ticker);
    await this.fallback?.stop();
    if (this.exited) return;
    this.worker.postMessage({ stop: true } satisfies PulseThreadCommand);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.exit.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), STOP_WAIT_MS))),
    ]);
    clearTimeout(timer);
    if (timedOut) await this.worker.terminate();
  }
}
