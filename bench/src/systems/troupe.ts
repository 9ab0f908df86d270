/**
 * Troupe: a `bench` component with a unary `echo` and a streaming `items`
 * endpoint, called through the typed client: with the runtime's default
 * router (client-side round-robin over discovered instances, to their
 * mailboxes), or pinned to a router (`queue`: the NATS queue group balances;
 * `round-robin`). The embedded variant runs both sides in one process on
 * `Runtime.embedded()` (the in-process MemoryNetwork).
 */
import 'reflect-metadata';
import { component, endpoint, type RouterSpec, Runtime } from '@troupe/runtime';
import { type Item, makeItem, NAMES, PAYLOAD, type Payload, type StreamRequest } from '../payload';
import { type ConnectDriver, type Driver, type StartWorker, usSince } from './system';

@component(NAMES.troupeComponent)
export class Bench {
  @endpoint()
  echo(req: Payload): Payload {
    return req;
  }

  /** Flow control is the runtime's (credit window); the generator just yields. */
  @endpoint()
  async *items(req: StreamRequest): AsyncGenerator<Item> {
    for (let i = 0; i < req.n; i++) yield makeItem(i);
  }
}

export const startWorker: StartWorker = async (url) => {
  const runtime = await Runtime.connect({ servers: url, name: `bench-troupe-worker-${process.pid}` });
  try {
    await runtime.spawn(Bench, { namespace: NAMES.troupeNamespace });
  } catch (err) {
    await runtime.close();
    throw err;
  }
  return { close: () => runtime.close() };
};

/** A caller with the runtime's default router, or the given one. */
export function connectWith(router?: RouterSpec): ConnectDriver {
  return async (url) => {
    const runtime = await Runtime.connect({ servers: url, name: `bench-troupe-caller-${process.pid}` });
    return driverOf(runtime, router);
  };
}

/** One embedded runtime (in-process MemoryNetwork, no server) hosting the component and calling it. */
export const connectEmbedded: ConnectDriver = async () => {
  const runtime = await Runtime.embedded({ name: 'bench' });
  try {
    await runtime.spawn(Bench, { namespace: NAMES.troupeNamespace });
  } catch (err) {
    await runtime.close();
    throw err;
  }
  return driverOf(runtime);
};

function driverOf(runtime: Runtime, router?: RouterSpec): Driver {
  const bench = runtime.namespace(NAMES.troupeNamespace).client(Bench, router === undefined ? {} : { router });
  return {
    unary: () => bench.echo(PAYLOAD),
    stream: (n, onItem) =>
      new Promise<void>((resolve, reject) => {
        bench.items({ n }).subscribe({ next: onItem, error: reject, complete: resolve });
      }),
    firstItem: () =>
      new Promise<number>((resolve, reject) => {
        const t0 = process.hrtime.bigint();
        let us = -1;
        bench.items({ n: 1 }).subscribe({
          next: () => {
            if (us < 0) us = usSince(t0);
          },
          error: reject,
          complete: () => (us < 0 ? reject(new Error('troupe stream ended without an item')) : resolve(us)),
        });
      }),
    close: () => runtime.close(),
  };
}
