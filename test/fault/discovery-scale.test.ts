import * as assert from 'uvu/assert';
import { Runtime } from '@troupe/runtime/internal';
import { type NatsServer, type WorkerProcess, serverSuite } from '@troupe/testing';
import { clock, ms } from './fixtures/discovery-common';
import { Cleanup, command } from './fixtures/discovery-harness';

// The target is 10 processes × 10,000 instances, each instance updating a
// dynamic property every 100 ms. On a 2-core CI machine the defaults are smaller;
// set TROUPE_SCALE_PROCS / TROUPE_SCALE_INSTANCES (total) for a bigger run. The
// point: registry traffic grows with processes (one lease write carries every
// instance's properties), not with instances.

const PROCS = Number(process.env['TROUPE_SCALE_PROCS'] ?? 4);
const INSTANCES = Number(process.env['TROUPE_SCALE_INSTANCES'] ?? 400);
const WINDOW_MS = Number(process.env['TROUPE_SCALE_WINDOW_MS'] ?? 3_000);
const TICK_MS = 100;
const PER_PROC = Math.max(1, Math.floor(INSTANCES / PROCS));
/** The small size: a tenth of the instances per process (at least 5), same processes. */
const SIZES = [Math.max(5, Math.floor(PER_PROC / 10)), PER_PROC];

interface Row {
  procs: number;
  perProc: number;
  registerSec: number;
  listSec: number;
  writesPerProcPerSec: number;
  watchMsgsPerSec: number;
  watchKBPerSec: number;
  leaseBytes: number;
  subscriptions: number;
  clientCpuPct: number;
}

const s = serverSuite('discovery - scale', new Cleanup());

async function measure(ctx: { cleanup: Cleanup; server?: NatsServer }, perProc: number): Promise<Row> {
  const server = ctx.server as NatsServer;
  const ns = `scale${perProc}`;
  const rt = await Runtime.connect({ servers: server.url, requestTimeoutMs: 10_000 });
  const local = new Cleanup();
  local.runtime(rt);
  try {
    // Everything a watching client receives: both buckets, every key.
    let msgs = 0;
    let bytes = 0;
    let leaseBytes = 0;
    const counting = { on: false };
    for (const bucket of ['troupe_leases', 'troupe_instances']) {
      const kv = await rt.bus.persistence.kv(bucket, { ttlMs: bucket === 'troupe_leases' ? 3_000 : 0 });
      const stop = await kv.watch('>', (e) => {
        if (!counting.on) return;
        msgs++;
        bytes += e.value.length + e.key.length;
        if (bucket === 'troupe_leases') leaseBytes = Math.max(leaseBytes, e.value.length);
      });
      local.add(async () => stop());
    }

    const t0 = clock();
    const env = { NATS_URL: server.url, TROUPE_NS: ns, TROUPE_REPLICAS: '0', TROUPE_SCALE: String(perProc) };
    const workers: WorkerProcess[] = await Promise.all(Array.from({ length: PROCS }, () => ctx.cleanup.worker(env, 60_000)));
    local.add(async () => Promise.all(workers.map((w) => w.kill('SIGKILL'))));
    const registerSec = (clock() - t0) / 1000;
    const client = rt.namespace(ns).component('scale').endpoint('hello').client();
    const t1 = clock();
    await client.waitForInstances(PROCS * perProc, { timeout: 30_000 });
    const listSec = (clock() - t1) / 1000;
    await Promise.all(workers.map((w) => command(w, { type: 'tick-properties', everyMs: TICK_MS }, 'ticking')));
    // Let the first throttled writes settle, then measure a steady window.
    await new Promise((r) => setTimeout(r, 1_000));
    const before = await Promise.all(workers.map((w) => command(w, { type: 'stats' }, 'stats')));
    counting.on = true;
    const cpu0 = process.cpuUsage();
    const w0 = clock();
    await new Promise((r) => setTimeout(r, WINDOW_MS));
    const elapsed = clock() - w0;
    const cpu = process.cpuUsage(cpu0);
    counting.on = false;
    const after = await Promise.all(workers.map((w) => command(w, { type: 'stats' }, 'stats')));
    const varz = await server.monitor<{ subscriptions: number }>('/varz');
    const writes = after.map(
      (a, i) => ((a['writes'] as number) - (before[i]?.['writes'] as number)) / (((a['t'] as number) - (before[i]?.['t'] as number)) / 1000),
    );
    const props = (await client.instances()).filter((x) => typeof x.properties['load'] === 'number').length;
    assert.is(props, PROCS * perProc, 'every instance shows its dynamic property to the client');
    return {
      procs: PROCS,
      perProc,
      registerSec,
      listSec,
      writesPerProcPerSec: writes.reduce((a, b) => a + b, 0) / writes.length,
      watchMsgsPerSec: msgs / (elapsed / 1000),
      watchKBPerSec: bytes / 1024 / (elapsed / 1000),
      leaseBytes,
      subscriptions: varz.subscriptions,
      clientCpuPct: ((cpu.user + cpu.system) / 1000 / elapsed) * 100,
    };
  } finally {
    await local.run();
  }
}

s(
  `registry writes and watch traffic grow with processes, not instances (${PROCS} processes × ${SIZES.join(' then ')} instances, properties every ${TICK_MS} ms)`,
  async (ctx) => {
    const rows: Row[] = [];
    for (const perProc of SIZES) rows.push(await measure(ctx, perProc));
    console.log('discovery: scale (each instance sets a dynamic property every 100 ms; heartbeat 1000 ms, property throttle 100 ms)');
    console.log('  procs | inst/proc | instances | start s | list s | writes/s/proc | watch msgs/s | watch KB/s | lease bytes | server subs | watcher CPU %');
    for (const r of rows) {
      console.log(
        `  ${String(r.procs).padStart(5)} | ${String(r.perProc).padStart(9)} | ${String(r.procs * r.perProc).padStart(9)} | ${r.registerSec.toFixed(1).padStart(7)} | ${r.listSec.toFixed(2).padStart(6)} | ` +
          `${r.writesPerProcPerSec.toFixed(1).padStart(13)} | ${r.watchMsgsPerSec.toFixed(1).padStart(12)} | ${r.watchKBPerSec.toFixed(1).padStart(10)} | ${String(r.leaseBytes).padStart(11)} | ${String(r.subscriptions).padStart(11)} | ${ms(r.clientCpuPct).padStart(13)}`,
      );
    }
    const [small, large] = rows as [Row, Row];
    const growth = large.perProc / small.perProc;
    // ~11 writes/s/process: the throttled lease write (10/s) and the heartbeat, whatever the instance count.
    assert.ok(
      large.writesPerProcPerSec <= small.writesPerProcPerSec * 1.5 && large.writesPerProcPerSec >= small.writesPerProcPerSec / 1.5,
      `writes/s per process went from ${small.writesPerProcPerSec.toFixed(1)} to ${large.writesPerProcPerSec.toFixed(1)} when instances per process grew ${growth}×`,
    );
    assert.ok(large.writesPerProcPerSec <= 1000 / TICK_MS + 5, `${large.writesPerProcPerSec.toFixed(1)} writes/s per process, more than one per property tick`);
    assert.ok(
      large.watchMsgsPerSec <= small.watchMsgsPerSec * 1.5,
      `a watcher received ${small.watchMsgsPerSec.toFixed(1)} then ${large.watchMsgsPerSec.toFixed(1)} msgs/s when instances grew ${growth}×`,
    );
  },
);

s.run();
