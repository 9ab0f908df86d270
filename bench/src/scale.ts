/**
 * The `spawn_100k` case (issue #13): what 100,000 idle instances of a
 * one-endpoint component cost the process hosting them. Shared by the
 * embedded driver (one process) and the NATS hosting child (scale-host.ts).
 */
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Runtime } from '@troupe/runtime/internal';
import { delay } from './time';

/** Environment variable with the bench server's monitoring URL (set by the orchestrator, inherited by every child). */
export const MONITOR_ENV = 'TROUPE_BENCH_MONITOR';

/** A full GC, twice (weak references and finalizers of the first pass are collected by the second). */
export function collect(): void {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  gc();
}

/**
 * How long the process idles before memory is read: longer than V8's
 * allocation-throughput window (5 s). A full GC shrinks the young generation
 * only once the allocation rate over that window is low; read sooner after a
 * spawn, the figure counts the semi-spaces V8 grew for the spawn's allocation
 * (≈ 26–33 MB, whatever the instance count: 260–330 B "per instance" at
 * 100,000), which V8 gives back by itself at the first full GC of an idle
 * process. Both readings wait alike.
 */
const SETTLE_MS = 6_000;
/** Bound on the wait for the young generation to be back to its size before the spawn (a loaded machine delays the spawn's last work). */
const SETTLE_MAX_MS = 30_000;

/** V8's young generation (new space, both semi-spaces) as sized now, bytes. */
function youngGeneration(): number {
  return getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
}

/** Memory of the process at one reading (see {@link memory}). */
export interface Memory {
  rss: number;
  heap: number;
  /** The young generation's size then (not subtracted: the figure is the process's RSS). */
  young: number;
}

/**
 * RSS and V8 heap in use once the process idles, after a full GC, bytes:
 * `SETTLE_MS` first, then a full GC a second until the young generation is
 * no larger than `young` (the reading before the spawn), within `SETTLE_MAX_MS`.
 */
export async function memory(young = Number.POSITIVE_INFINITY): Promise<Memory> {
  const until = performance.now() + SETTLE_MAX_MS;
  await delay(SETTLE_MS);
  collect();
  while (youngGeneration() > young && performance.now() < until) {
    await delay(1_000);
    collect();
  }
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed, young: youngGeneration() };
}

/** What one spawn of many idle instances cost the hosting process (see `ScaleResult`). */
export interface HostFigures {
  spawn_s: number;
  rss_per_instance_b: number;
  heap_per_instance_b: number;
  discovery_writes_per_s: number;
  lease_bytes: number;
}

/**
 * Runs `spawn` (one spawn of `run.replicas` instances on `rt`), reads memory
 * once the process has settled (`memory()`; `before` was read the same way
 * before the spawn), runs `routable` (the embedded driver waits for a watching client
 * here), then counts registry writes over `restMs` at rest.
 */
export async function hostMany(
  rt: Runtime,
  spawn: () => Promise<unknown>,
  run: { replicas: number; restMs: number; before: Memory; routable: () => Promise<void> },
): Promise<HostFigures> {
  const { replicas, restMs, before, routable } = run;
  const t0 = performance.now();
  await spawn();
  const spawnS = (performance.now() - t0) / 1000;
  // Memory before anything watches here (embedded: a watching client in this process would count its list too).
  const after = await memory(before.young);
  await routable();
  // At rest: registry writes over the window (lease rewrites; nothing per instance should remain).
  const w0 = rt.registryWrites;
  const r0 = performance.now();
  await delay(restMs);
  const writesPerS = (rt.registryWrites - w0) / ((performance.now() - r0) / 1000);
  const leases = await rt.bus.persistence.kv('troupe_leases', { ttlMs: 3_000 });
  const lease = await leases.get(rt.id);
  return {
    spawn_s: spawnS,
    rss_per_instance_b: (after.rss - before.rss) / replicas,
    heap_per_instance_b: (after.heap - before.heap) / replicas,
    discovery_writes_per_s: writesPerS,
    lease_bytes: lease?.value.length ?? -1,
  };
}

/** Server subscriptions held by the connections whose name starts with `prefix` (`/connz`), or undefined without a monitoring URL. */
export async function subscriptionsOf(prefix: string): Promise<number | undefined> {
  const base = process.env[MONITOR_ENV];
  if (!base) return undefined;
  const res = await fetch(`${base}/connz?limit=100000`, { signal: AbortSignal.timeout(5_000) });
  const body = (await res.json()) as { connections?: Array<{ name?: string; subscriptions?: number }> };
  let n = 0;
  for (const c of body.connections ?? []) if (c.name?.startsWith(prefix)) n += c.subscriptions ?? 0;
  return n;
}
