import { randomBytes } from 'node:crypto';
import type { Transport } from '@troupe/runtime/internal';

/**
 * The NATS service protocol ("micro") as the CLI reads it: `$SRV.STATS`
 * answered by every service instance with JSON typed
 * `io.nats.micro.v1.stats_response` (the schema of nats.go/micro and
 * nats.js `services`; times in nanoseconds).
 */
export const STATS_RESPONSE = 'io.nats.micro.v1.stats_response';

/** One endpoint of a stats response. */
export interface MicroEndpointStats {
  name: string;
  subject: string;
  queue_group?: string;
  num_requests: number;
  num_errors: number;
  last_error?: string;
  /** Nanoseconds. */
  processing_time: number;
  /** Nanoseconds. */
  average_processing_time: number;
  data?: unknown;
}

/** One service instance's stats response. */
export interface MicroStats {
  type: string;
  name: string;
  id: string;
  version: string;
  started?: string;
  metadata?: Record<string, string>;
  endpoints?: MicroEndpointStats[];
}

/**
 * Publishes `$SRV.STATS` (or `$SRV.STATS.{name}`) with a fresh reply subject
 * and gathers every answer that arrives within `windowMs`: micro has no
 * "that was everyone" signal, so a short collection window is how `nats
 * micro stats` does it too. Answers that are not stats responses are skipped.
 *
 * @example
 * const all = await gatherStats(runtime.bus, { windowMs: 300 });
 */
export async function gatherStats(bus: Transport, options: { windowMs: number; name?: string; inboxPrefix?: string }): Promise<MicroStats[]> {
  const inbox = `${options.inboxPrefix ?? '_INBOX'}.${randomBytes(11).toString('hex')}`;
  const got: MicroStats[] = [];
  const sub = bus.subscribe(inbox, (msg) => {
    if (msg.noResponders) return;
    try {
      const body = JSON.parse(Buffer.from(msg.data).toString('utf8')) as MicroStats;
      if (body && body.type === STATS_RESPONSE && typeof body.id === 'string') got.push(body);
    } catch {
      // not JSON: not a micro service answer
    }
  });
  try {
    await bus.flush(); // the server has our interest before anyone answers
    bus.publish(options.name === undefined ? '$SRV.STATS' : `$SRV.STATS.${options.name}`, new Uint8Array(0), { reply: inbox });
    await new Promise((r) => setTimeout(r, options.windowMs));
  } finally {
    sub.unsubscribe();
  }
  return got;
}
