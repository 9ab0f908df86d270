/**
 * Troupe: a `bench` component with a unary `echo` and a streaming `items`
 * endpoint, called through the typed client: with the runtime's default
 * router (client-side round-robin over discovered instances, to their
 * mailboxes), or pinned to a router (`queue`: the NATS queue group balances;
 * `round-robin`). The embedded variant runs both sides in one process on
 * `Runtime.embedded()` (the in-process MemoryNetwork).
 */
import 'reflect-metadata';
import {
  component,
  consoleLogger,
  type Context,
  endpoint,
  type InstanceRecord,
  type Logger,
  type RouterSpec,
  Runtime,
  type SpawnHandle,
} from '@troupe/runtime/internal';
import type { Observable } from 'rxjs';
import { publishRun } from '../publish';
import {
  type EventPayload,
  type Item,
  makeItem,
  NAMES,
  PAYLOAD,
  type Payload,
  type PublishReport,
  type PublishSpec,
  type SpawnReport,
  type StreamRequest,
  wallMs,
} from '../payload';
import { delay } from '../time';
import type { ScaleHostJob } from '../ipc';
import type { ScaleResult } from '../plan';
import { Child } from '../procs';
import { hostMany, memory } from '../scale';
import { meshOnNats } from '../mesh';
import { join } from 'node:path';

const SCALE_HOST_JS = join(__dirname, '..', 'scale-host.js');
import { type ConnectDriver, type Driver, type EventChannel, type LifecycleTimes, publishBound, type StartWorker, usSince } from './system';

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

/** The component the discovery case spawns and stops; listed under its `ping` endpoint. */
@component(NAMES.troupeProbe)
export class Probe {
  @endpoint()
  ping(): boolean {
    return true;
  }
}

/** The component of the lifecycle case: spawned 10,000 times in one process. */
@component(NAMES.troupeLife)
export class Life {
  @endpoint()
  ping(): boolean {
    return true;
  }
}

/** The worker process's runtime (the control component spawns probes on it). */
let workerRuntime: Runtime | undefined;
const probes = new Map<string, SpawnHandle>();

/**
 * Control of the event and discovery cases (not timed itself): publishes a
 * run of events with `ctx.publish` (component scope, so subscribers listen
 * on `bench.bench_ctl`), spawns and stops `Probe` instances.
 */
@component(NAMES.troupeControl)
export class BenchControl {
  @endpoint()
  async publishEvents(spec: PublishSpec, ctx: Context): Promise<PublishReport> {
    const rt = need(workerRuntime);
    return publishRun(
      spec,
      (e) => ctx.publish(NAMES.event, e),
      () => rt.bus.flush(),
    );
  }

  /** Spawns one Probe; `resolvedAt` is read as soon as the spawn resolves. */
  @endpoint()
  async spawnProbe(_req: Record<string, never>): Promise<SpawnReport> {
    const h = await need(workerRuntime).spawn(Probe, { namespace: NAMES.troupeNamespace });
    const resolvedAt = wallMs();
    const id = h.instanceIds[0] as string;
    probes.set(id, h);
    return { id, resolvedAt };
  }

  @endpoint()
  async stopProbe(req: { id: string }): Promise<boolean> {
    const h = probes.get(req.id);
    probes.delete(req.id);
    await h?.stop();
    return h !== undefined;
  }
}

function need(rt: Runtime | undefined): Runtime {
  if (rt === undefined) throw new Error('the bench worker runtime is not connected');
  return rt;
}

export const startWorker: StartWorker = async (url) => {
  const runtime = await Runtime.connect({ servers: url, name: `bench-troupe-worker-${process.pid}` });
  workerRuntime = runtime;
  try {
    await runtime.spawn(Bench, { namespace: NAMES.troupeNamespace });
    await runtime.spawn(BenchControl, { namespace: NAMES.troupeNamespace });
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
    const driver = driverOf(runtime, router, (logger) => Runtime.connect({ servers: url, name: `bench-troupe-life-${process.pid}`, logger }));
    return { ...driver, scale: (replicas, restMs) => scaleOnNats(runtime, url, replicas, restMs), mesh: (m) => meshOnNats(runtime, url, m) };
  };
}

/**
 * The bench component with its endpoints declared `immutable: true` (same
 * component name, so the same client calls it): in-process calls pass the
 * request and the reply by reference instead of copying them. An opt-in,
 * measured as a variant beside the default.
 */
@component(NAMES.troupeComponent)
export class BenchImmutable {
  @endpoint({ immutable: true })
  echo(req: Payload): Payload {
    return req;
  }

  @endpoint({ immutable: true })
  async *items(req: StreamRequest): AsyncGenerator<Item> {
    for (let i = 0; i < req.n; i++) yield makeItem(i);
  }
}

/** One embedded runtime (in-process MemoryNetwork, no server) hosting the component and calling it. */
export const connectEmbedded: ConnectDriver = () => embeddedWith(Bench);

/** {@link connectEmbedded} with {@link BenchImmutable}: what `@endpoint({ immutable: true })` buys in-process. */
export const connectEmbeddedImmutable: ConnectDriver = () => embeddedWith(BenchImmutable);

async function embeddedWith(served: typeof Bench | typeof BenchImmutable): ReturnType<ConnectDriver> {
  const runtime = await Runtime.embedded({ name: 'bench' });
  try {
    await runtime.spawn(served, { namespace: NAMES.troupeNamespace });
  } catch (err) {
    await runtime.close();
    throw err;
  }
  const driver = driverOf(runtime, undefined, (logger) => Runtime.embedded({ network: runtime.network, logger }));
  return { ...driver, scale: (replicas, restMs) => scaleEmbedded(runtime, replicas, restMs) };
}

/** Bound on 100,000 instances being listed by the watching client. */
const SCALE_LISTING_TIMEOUT_MS = 300_000;

/**
 * The scale case on NATS: a forked process hosts the instances (its RSS is
 * the hosting side alone); this runtime watches and times routability from
 * the moment that process calls spawn (same host clock).
 */
async function scaleOnNats(watcher: Runtime, url: string, replicas: number, restMs: number): Promise<Omit<ScaleResult, 'kind'>> {
  const host = Child.fork('troupe scale host', SCALE_HOST_JS, {
    job: { url, name: `bench-scale-host-${process.pid}`, replicas, restMs } satisfies ScaleHostJob,
  });
  try {
    const listed = watcher.namespace(`${NAMES.troupeNamespace}_scale${host.pid}`).component(NAMES.troupeLife).endpoint('ping').client();
    await listed.instances();
    const start = await host.waitFor('scale-start', 60_000, 'the start of its spawn');
    await listed.waitForInstances(replicas, { timeout: SCALE_LISTING_TIMEOUT_MS });
    const routable = (performance.timeOrigin + performance.now() - start.at) / 1000;
    const { figures } = await host.waitFor('scale', SCALE_LISTING_TIMEOUT_MS + restMs, 'its figures');
    return { ...figures, routable_s: routable };
  } finally {
    await host.stop(30_000);
  }
}

/** The scale case embedded: a second runtime on this process's MemoryNetwork hosts the instances; this one watches once they are measured. */
async function scaleEmbedded(watcher: Runtime, replicas: number, restMs: number): Promise<Omit<ScaleResult, 'kind'>> {
  const rt = await Runtime.embedded({ network: watcher.network });
  try {
    const warm = await rt.spawn(Life, { namespace: `${NAMES.troupeNamespace}_warm` });
    await warm.stop();
    const namespace = `${NAMES.troupeNamespace}_scale${Date.now().toString(36)}`;
    const before = await memory();
    let listedS = 0;
    const routable = async (): Promise<void> => {
      // A client that starts watching now: how long it takes to list them all.
      const t0 = performance.now();
      await watcher
        .namespace(namespace)
        .component(NAMES.troupeLife)
        .endpoint('ping')
        .client()
        .waitForInstances(replicas, { timeout: SCALE_LISTING_TIMEOUT_MS });
      listedS = (performance.now() - t0) / 1000;
    };
    const figures = await hostMany(rt, () => rt.spawn(Life, { namespace, replicas }), { replicas, restMs, before, routable });
    return { ...figures, routable_s: figures.spawn_s + listedS, subs_per_instance: 0 };
  } finally {
    await rt.close();
  }
}

/** Bound on one instance appearing in (or leaving) the watched list. */
const LISTING_TIMEOUT_MS = 10_000;

/** Opens the runtime the lifecycle case spawns on (the driver's own runtime watches). */
type OpenRuntime = (logger: Logger) => Promise<Runtime>;

function driverOf(runtime: Runtime, router: RouterSpec | undefined, open: OpenRuntime): Driver {
  const ns = runtime.namespace(NAMES.troupeNamespace);
  const bench = ns.client(Bench, router === undefined ? {} : { router });
  const control = ns.client(BenchControl, router === undefined ? {} : { router });
  let watch: ReturnType<typeof listWatch> | undefined;
  return {
    events: (onEvent) =>
      new Promise<EventChannel>((resolve, reject) => {
        let live = false;
        const sub = ns
          .component(NAMES.troupeControl)
          .events<EventPayload>(NAMES.event, {
            onReady: () => {
              live = true;
              resolve({ publish: (spec) => control.publishEvents(spec, { timeout: publishBound(spec) }), close: () => sub.unsubscribe() });
            },
          })
          .subscribe({
            next: (e) => onEvent(e.data, e.gap ?? 0),
            error: (err: unknown) => {
              if (!live) reject(err);
              else console.error(`troupe event subscription failed: ${(err as Error)?.message ?? String(err)}`);
            },
          });
      }),
    spawnVisible: async () => {
      watch ??= listWatch(ns.component(NAMES.troupeProbe).endpoint('ping').client().instances$);
      const w = await watch;
      const r = await control.spawnProbe({});
      await until(() => w.firstSeen.has(r.id), LISTING_TIMEOUT_MS, `probe instance ${r.id} to be listed by instances$`);
      const ms = (w.firstSeen.get(r.id) as number) - r.resolvedAt;
      await control.stopProbe({ id: r.id });
      await until(() => !w.listed.has(r.id), LISTING_TIMEOUT_MS, `probe instance ${r.id} to leave the list after its stop`);
      return ms;
    },
    unary: (payload = PAYLOAD) => bench.echo(payload),
    lifecycle: (replicas) => lifecycle(runtime, open, replicas),
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
    close: async () => {
      (await watch)?.stop();
      await runtime.close();
    },
  };
}

/** Bound on 10,000 instances being listed by the watching runtime. */
const LIFE_LISTING_TIMEOUT_MS = 120_000;

async function lifecycle(watcher: Runtime, open: OpenRuntime, replicas: number): Promise<LifecycleTimes> {
  let failures = 0;
  const base = consoleLogger();
  // Counts what the issue counted: "deregistration failed" warnings (and a failed batch lease write).
  const logger: Logger = {
    debug: (m, f) => base.debug(m, f),
    info: (m, f) => base.info(m, f),
    warn: (m, f) => {
      if (/deregistration failed|graceful stop failed/.test(m)) failures++;
      base.warn(m, f);
    },
    error: (m, f) => base.error(m, f),
    child: () => logger,
  };
  const rt = await open(logger);
  const namespace = `${NAMES.troupeNamespace}${process.pid}x${Date.now().toString(36)}`;
  const listed = watcher.namespace(namespace).component(NAMES.troupeLife).endpoint('ping').client();
  try {
    const t0 = performance.now();
    const h = await rt.spawn(Life, { namespace, replicas });
    const t1 = performance.now();
    await listed.waitForInstances(replicas, { timeout: LIFE_LISTING_TIMEOUT_MS });
    const t2 = performance.now();
    await h.stop();
    const t3 = performance.now();
    await rt.close();
    const t4 = performance.now();
    const s = (ms: number): number => ms / 1000;
    return { spawn_s: s(t1 - t0), routable_s: s(t2 - t0), stop_s: s(t3 - t2), close_s: s(t4 - t3), stop_close_s: s(t4 - t2), dereg_failures: failures };
  } finally {
    await rt.close();
  }
}

/**
 * A standing watch of an instance list: when each instance id was first
 * listed ({@link wallMs}, read in the emission) and what is listed now.
 * Resolves once the first list is there.
 */
function listWatch(list$: Observable<InstanceRecord[]>): Promise<{ firstSeen: Map<string, number>; listed: Set<string>; stop(): void }> {
  return new Promise((resolve, reject) => {
    const firstSeen = new Map<string, number>();
    const state = { firstSeen, listed: new Set<string>(), stop: () => sub.unsubscribe() };
    let first = true;
    const sub = list$.subscribe({
      next: (xs) => {
        const now = wallMs();
        const listed = new Set<string>();
        for (const x of xs) {
          listed.add(x.instanceId);
          if (!firstSeen.has(x.instanceId)) firstSeen.set(x.instanceId, now);
        }
        state.listed = listed;
        if (first) {
          first = false;
          resolve(state);
        }
      },
      error: reject,
    });
  });
}

/** Polls `cond` every 2 ms (the time that matters is read in the emission, not here). */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await delay(2);
  }
}
