import type { RuntimeOptions } from './runtime';
import { MemoryNetwork } from './transport/memory/memory-network';
import { NatsTransport } from './transport/nats/nats-transport';
import type { Transport } from './transport/transport';

/** A transport chosen and built by {@link openTransport}. */
export interface OpenedTransport {
  readonly transport: Transport;
  /** The memory network of an embedded runtime; undefined on NATS or a given transport. */
  readonly network: MemoryNetwork | undefined;
}

/**
 * The composition root: the one place that chooses and builds a transport.
 * A given `transport` is used as it is; `servers` (or `NATS_URL`) connect to
 * NATS; neither means embedded (an in-process memory network, the given
 * `network` or a new one). The rest of the runtime receives the transport
 * and never imports an implementation.
 *
 * @example
 * const { transport } = await openTransport({ servers: 'nats://127.0.0.1:4222' });
 */
export async function openTransport(options: RuntimeOptions, embedded = false): Promise<OpenedTransport> {
  if (options.transport) return { transport: options.transport, network: undefined };
  const servers = embedded ? undefined : (options.servers ?? (process.env.NATS_URL || undefined));
  if (servers === undefined) {
    const network = options.network ?? new MemoryNetwork({ name: options.name });
    return { transport: network.connect(options.name), network };
  }
  const transport = await NatsTransport.connect({
    ...options.nats,
    servers,
    name: options.name ?? options.nats?.name ?? 'troupe',
  });
  return { transport, network: undefined };
}
