/**
 * Moleculer: a `bench` service with an `echo` action, on the NATS
 * transporter with its defaults (JSON serializer, built-in balancer), or
 * without a transporter for local calls. The local stream action returns an
 * object-mode Readable, Moleculer's way to stream a response.
 */
import { Readable } from 'node:stream';
import { type Context, ServiceBroker } from 'moleculer';
import { type Item, makeItem, NAMES, PAYLOAD, type StreamRequest } from '../payload';
import type { ConnectDriver, Driver, StartWorker } from './system';

/** Bound on the caller seeing the worker's service (NATS discovery). */
const DISCOVERY_TIMEOUT_MS = 15_000;

function broker(url: string | undefined, role: string): ServiceBroker {
  return new ServiceBroker({
    nodeID: `bench-${role}-${process.pid}`,
    namespace: 'bench',
    logger: false,
    ...(url === undefined ? {} : { transporter: { type: 'NATS', options: { url } } }),
  });
}

function addBenchService(b: ServiceBroker): void {
  b.createService({
    name: NAMES.moleculerService,
    actions: {
      echo: (ctx: Context<unknown>) => ctx.params,
      items: (ctx: Context<StreamRequest>) => Readable.from(generate(ctx.params.n)),
    },
  });
}

function* generate(n: number): Generator<Item> {
  for (let i = 0; i < n; i++) yield makeItem(i);
}

export const startWorker: StartWorker = async (url) => {
  const b = broker(url, 'worker');
  addBenchService(b);
  await b.start();
  return { close: () => b.stop() };
};

export const connect: ConnectDriver = async (url) => {
  const b = broker(url, 'caller');
  await b.start();
  try {
    await b.waitForServices([NAMES.moleculerService], DISCOVERY_TIMEOUT_MS);
  } catch (err) {
    await b.stop();
    throw err;
  }
  return driverOf(b);
};

export const connectLocal: ConnectDriver = async () => {
  const b = broker(undefined, 'local');
  addBenchService(b);
  await b.start();
  return driverOf(b);
};

const ECHO = `${NAMES.moleculerService}.echo`;
const ITEMS = `${NAMES.moleculerService}.items`;

function driverOf(b: ServiceBroker): Driver {
  return {
    unary: () => b.call(ECHO, PAYLOAD),
    stream: async (n, onItem) => {
      const s = await b.call<Readable, StreamRequest>(ITEMS, { n });
      for await (const item of s) onItem(item as Item);
    },
    close: () => b.stop(),
  };
}
