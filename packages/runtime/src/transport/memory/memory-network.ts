import { randomBytes } from 'node:crypto';
import { TroupeError } from '../../errors';
import { MemoryBus } from './memory-bus';
import { MemoryTransport } from './memory-transport';

/**
 * NATS's default `max_payload` (1 MiB), the memory network's default too; the
 * NATS server can be configured up to 64 MiB.
 *
 * @example
 * new MemoryNetwork({ maxPayload: 8 * MEMORY_DEFAULT_MAX_PAYLOAD });
 */
export const MEMORY_DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/**
 * Options of {@link MemoryNetwork}.
 *
 * @example
 * new MemoryNetwork({ name: 'tests', maxPayload: 64 * 1024 });
 */
export interface MemoryNetworkOptions {
  /** Largest message (payload + encoded headers) accepted, in bytes. Default 1 MiB, as NATS. */
  maxPayload?: number;
  /** A name for logs and `describe`; a random one by default. */
  name?: string;
}

/**
 * Counters of a {@link MemoryNetwork}, for tests that prove nothing leaks.
 *
 * @example
 * await transport.close();
 * assert.equal(network.stats(), { connections: 0, subscriptions: 0, queued: 0 });
 */
export interface MemoryNetworkStats {
  /** Connections not yet closed. */
  connections: number;
  /** Subscriptions still receiving (draining ones and durable-log consumers included). */
  subscriptions: number;
  /** Deliveries queued and not yet made. */
  queued: number;
}

/**
 * An embedded, in-process message bus faithful to core NATS: `*` and `>`
 * wildcards, queue groups, "no responders" replies, headers, a payload limit,
 * per-publisher ordering and asynchronous delivery. Instance-scoped: two
 * networks in one process never see each other. Each {@link connect} is one
 * "connection" that implements the {@link Transport} seam.
 *
 * @example
 * const network = new MemoryNetwork();
 * const a = network.connect('worker');
 * const b = network.connect('client');
 * a.subscribe('echo', (m) => a.publish(m.reply!, m.data));
 * const reply = await b.request('echo', new Uint8Array([1]), { timeoutMs: 1000 });
 */
export class MemoryNetwork {
  readonly name: string;
  readonly maxPayload: number;
  private readonly bus: MemoryBus;
  private connectSeq = 0;

  constructor(options: MemoryNetworkOptions = {}) {
    const max = options.maxPayload ?? MEMORY_DEFAULT_MAX_PAYLOAD;
    if (!Number.isSafeInteger(max) || max <= 0) {
      throw new TroupeError('BAD_REQUEST', `maxPayload must be a positive integer, got ${String(options.maxPayload)}`);
    }
    this.maxPayload = max;
    this.name = options.name ?? randomBytes(4).toString('hex');
    this.bus = new MemoryBus(max);
  }

  /** Opens one connection to this network. */
  connect(name?: string): MemoryTransport {
    this.connectSeq++;
    return new MemoryTransport(this.bus, `${this.name}/${name ?? `c${this.connectSeq}`}`);
  }

  /**
   * Routes in the subject cache now: at most 4096, whatever the number of
   * unique reply subjects published to (leak tests).
   *
   * @example
   * assert.ok(network.cachedRoutes() <= 4096);
   */
  cachedRoutes(): number {
    return this.bus.cachedRoutes;
  }

  /** How many connections, subscriptions and queued deliveries are live now. */
  stats(): MemoryNetworkStats {
    return { connections: this.bus.openConnections, subscriptions: this.bus.subscriptionCount, queued: this.bus.queued };
  }
}
