/**
 * The `mesh_10x1000` case (issue #13): `processes` hosting processes with
 * `instances` idle instances each of a one-endpoint component, one watching
 * client (the caller process). Discovery traffic cluster-wide (the private
 * server's `/varz` message counters) and the client's CPU, at rest and while
 * the hosts churn; beside them the paper model of docs/discovery.md.
 */
import { join } from 'node:path';
import type { Runtime } from '@troupe/runtime/internal';
import type { MeshHostJob } from './ipc';
import type { Measure, MeshResult } from './plan';
import { NAMES } from './payload';
import { Child } from './procs';
import { MONITOR_ENV } from './scale';
import { delay } from './time';

const MESH_HOST_JS = join(__dirname, 'mesh-host.js');
/** Bound on the hosts connecting and spawning, and on the client listing every instance. */
const MESH_READY_MS = 120_000;
/** After every instance is listed, and after the churn starts: let the bursts pass before a window opens. */
const SETTLE_MS = 1_500;

/** The server's message counters (`/varz`), cumulative since it started. */
async function serverMsgs(): Promise<{ in: number; out: number; at: number }> {
  const base = process.env[MONITOR_ENV];
  if (!base) throw new Error(`the mesh case reads the server's /varz: ${MONITOR_ENV} is not set (run it through bench/dist/run.js)`);
  const res = await fetch(`${base}/varz`, { signal: AbortSignal.timeout(5_000) });
  const v = (await res.json()) as { in_msgs?: number; out_msgs?: number };
  if (typeof v.in_msgs !== 'number' || typeof v.out_msgs !== 'number') throw new Error('/varz has no in_msgs/out_msgs');
  return { in: v.in_msgs, out: v.out_msgs, at: performance.now() };
}

/** Messages per second in and out of the server, and this process's CPU (% of one core), over `ms`. */
async function measureWindow(ms: number): Promise<{ in: number; out: number; cpu: number }> {
  const a = await serverMsgs();
  const c0 = process.cpuUsage();
  await delay(ms);
  const c = process.cpuUsage(c0);
  const b = await serverMsgs();
  const s = (b.at - a.at) / 1000;
  return { in: (b.in - a.in) / s, out: (b.out - a.out) / s, cpu: ((c.user + c.system) / 1000 / (b.at - a.at)) * 100 };
}

/**
 * Forks the hosts, watches their instances from `watcher` until every one is
 * listed, measures a window at rest, then one while each host alternates a
 * spawn and a stop (`churnPerS` operations a second cluster-wide).
 */
export async function meshOnNats(watcher: Runtime, url: string, m: Extract<Measure, { kind: 'mesh' }>): Promise<Omit<MeshResult, 'kind'>> {
  const namespace = `${NAMES.troupeNamespace}_mesh${process.pid}_${Date.now().toString(36)}`;
  const hosts: Child[] = [];
  try {
    const client = watcher.namespace(namespace).component(NAMES.troupeLife).endpoint('ping').client();
    // The watching client: one live list of the endpoint for the whole run.
    let lists = 0;
    const watch = client.instances$.subscribe(() => lists++);
    try {
      for (let i = 0; i < m.processes; i++) {
        const job: MeshHostJob = { url, name: `bench-mesh-host-${process.pid}-${i}`, namespace, instances: m.instances };
        hosts.push(Child.fork(`troupe mesh host ${i + 1}`, MESH_HOST_JS, { job }));
      }
      await Promise.all(hosts.map((h) => h.waitFor('mesh-ready', MESH_READY_MS, 'its instances spawned')));
      await client.waitForInstances(m.processes * m.instances, { timeout: MESH_READY_MS });
      await serverMsgs(); // the HTTP client's first use (loading, connecting) stays out of the window
      await delay(SETTLE_MS);
      const lists0 = lists;
      const rest = await measureWindow(m.restMs);
      const restLists = lists - lists0;
      for (const h of hosts) h.send({ type: 'churn', everyMs: (m.processes / m.churnPerS) * 1000 });
      await delay(SETTLE_MS);
      const churn = await measureWindow(m.churnMs);
      for (const h of hosts) h.send({ type: 'calm' });
      const calm = await Promise.all(hosts.map((h) => h.waitFor('mesh-calm', 30_000, 'the end of its churn')));
      return {
        processes: m.processes,
        instances: m.instances,
        rest_in_msgs_per_s: rest.in,
        rest_out_msgs_per_s: rest.out,
        churn_in_msgs_per_s: churn.in,
        churn_out_msgs_per_s: churn.out,
        client_cpu_rest_pct: rest.cpu,
        client_cpu_churn_pct: churn.cpu,
        rest_list_emissions: restLists,
        churn_ops: calm.reduce((n, c) => n + c.ops, 0),
      };
    } finally {
      watch.unsubscribe();
    }
  } finally {
    await Promise.all(hosts.map((h) => h.stop(30_000)));
  }
}
