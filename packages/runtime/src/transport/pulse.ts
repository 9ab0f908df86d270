import type { Pulse, PulseOptions, Transport } from './transport';

const encoder = new TextEncoder();

/** Encodes one beat: JSON, so `nats sub '_TROUPE.lease.*'` shows it as it is. */
export function encodeBeat(fields: Readonly<Record<string, unknown>>, seq: number, lagMs: number): Uint8Array {
  return encoder.encode(JSON.stringify({ ...fields, seq, lagMs }));
}

/**
 * Starts the process heartbeat of `transport`: its own (threaded) pulse when
 * it has one, else beats from the main event loop — which a blocked loop
 * silences like a frozen process (the embedded runtime has no second
 * connection; its callers share the blocked loop anyway).
 *
 * @example
 * const pulse = startPulse(transport, { subject: '_TROUPE.lease.9f3c0a7e12b4d8e1', intervalMs: 1000, fields: { lease: '9f3c0a7e12b4d8e1' }, busyAfterMs: 250 });
 * await pulse.stop();
 */
export function startPulse(transport: Transport, options: PulseOptions): Pulse {
  return transport.pulse?.(options) ?? new MainLoopPulse(transport, options);
}

/** Beats from the main loop with the transport's own publish (`lagMs` is always 0). */
export class MainLoopPulse implements Pulse {
  private fields: Record<string, unknown>;
  private seq = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly transport: Pick<Transport, 'publish'>,
    private readonly options: PulseOptions,
  ) {
    this.fields = { ...options.fields };
    this.timer = setInterval(() => this.beat(), options.intervalMs);
    this.timer.unref();
    this.beat();
  }

  set(fields: Readonly<Record<string, unknown>>, beatNow = false): void {
    this.fields = { ...this.fields, ...fields };
    if (beatNow) this.beat();
  }

  private beat(): void {
    try {
      this.transport.publish(this.options.subject, encodeBeat(this.fields, ++this.seq, 0));
    } catch {
      // Disconnected: watchers' lease TTL decides; the next period tries again.
    }
  }

  stop(): Promise<void> {
    clearInterval(this.timer);
    return Promise.resolve();
  }
}
