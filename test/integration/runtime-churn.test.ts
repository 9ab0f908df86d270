// @node-flags --expose-gc
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type Context, component, endpoint, MemoryNetwork, Runtime, type RuntimeOptions } from '@troupe/runtime/internal';
import { NatsServer, waitFor, within } from '@troupe/testing';

// DESIGN/STYLE: a runtime's services are fields of one object it closes, never module-level state.
// Shown from the outside: open and close 100 runtimes in one process, each doing a bit of everything
// (spawn, unary call, stream, event, signal handlers), and nothing grows: timers and sockets
// (process.getActiveResourcesInfo()), subscriptions (the memory network's stats; the NATS server's
// /connz?subs=1), process listeners, and the heap after global.gc() (this file runs with --expose-gc).

const RUNTIMES = 100;
/** Runtimes opened before the baseline: JIT, module caches and lazily built constants settle first. */
const WARMUP = 10;
/**
 * Heap growth allowed over the 100 runtimes, after gc: noise, not a budget. Measured on this
 * machine: +0.3 MB (embedded) and +0.8 MB (NATS). Retained closed runtimes cost ~11 KB
 * (embedded) and ~50 KB (NATS) each, which this bound alone would not always catch: the
 * WeakRef check (every closed runtime and plane collected) is the exact one.
 */
const HEAP_NOISE_BYTES = 4 * 1024 * 1024;
const WAIT_MS = 10_000;

@component('churn')
class Churn {
  @endpoint() echo(x: string): string {
    return x;
  }

  @endpoint() async *count(n: number, ctx: Context): AsyncGenerator<number> {
    for (let i = 0; i < n && !ctx.signal.aborted; i++) yield i;
  }
}

/** One runtime's life: everything a typical process does, then close. Returns weak references to the runtime and its plane. */
async function lifetime(open: () => Promise<Runtime>, i: number): Promise<Array<WeakRef<object>>> {
  const rt = await open();
  // The plane holds every per-runtime service; reaching into it here is the point of the check.
  const refs = [new WeakRef<object>(rt), new WeakRef<object>((rt as unknown as { plane: object }).plane)];
  try {
    rt.closeOnSignals();
    const ns = rt.namespace(`churn${i % 3}`);
    await rt.spawn(Churn, { namespace: ns.name });
    const client = ns.client(Churn);
    assert.is(await within(client.echo(`hi ${i}`), WAIT_MS, 'the echo'), `hi ${i}`);
    const items = new Promise<number[]>((resolve, reject) => {
      const xs: number[] = [];
      client.count(5).subscribe({ next: (x) => xs.push(x), error: reject, complete: () => resolve(xs) });
    });
    assert.equal(await within(items, WAIT_MS, 'the stream'), [0, 1, 2, 3, 4]);
    const got = new Promise<unknown>((resolve, reject) => {
      const sub = ns.events<number>('tick', { onReady: () => ns.publish('tick', i) }).subscribe({
        next: (e) => {
          sub.unsubscribe();
          resolve(e.data);
        },
        error: reject,
      });
    });
    assert.is(await within(got, WAIT_MS, 'the event'), i);
  } finally {
    await rt.close();
  }
  return refs;
}

/**
 * Which of `refs` (their indices) still reach their object after gc. WeakRefs
 * are cleared only between jobs, so each round collects, then yields a turn; a
 * few rounds (not a time bound) let chains of releases complete.
 */
async function stillReachable(refs: ReadonlyArray<WeakRef<object>>): Promise<number[]> {
  let alive = refs.map((_, i) => i);
  for (let round = 0; round < 5 && alive.length > 0; round++) {
    heapAfterGc();
    await new Promise((r) => setImmediate(r));
    alive = alive.filter((i) => refs[i]?.deref() !== undefined);
  }
  return alive;
}

/** Active handles and requests by kind (Timeout, Immediate, TCPSocketWrap, ...). */
function resources(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1;
  return out;
}

/** Kinds of active resources above `baseline` now, as `kind +n`. */
function grown(baseline: Record<string, number>, now = resources()): string[] {
  return Object.entries(now)
    .filter(([k, n]) => n > (baseline[k] ?? 0))
    .map(([k, n]) => `${k} +${n - (baseline[k] ?? 0)}`);
}

function heapAfterGc(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('global.gc is missing: run this file with --expose-gc (run-tests reads its "// @node-flags" line)');
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

interface Snapshot {
  resources: Record<string, number>;
  listeners: number;
  heap: number;
  /** Indices (runtime i: 2i, its plane: 2i + 1) of the measured lifetimes' objects still reachable after gc (after only). */
  reachable?: number[];
}

function snapshot(): Snapshot {
  return { resources: resources(), listeners: process.listenerCount('SIGTERM') + process.listenerCount('SIGINT'), heap: heapAfterGc() };
}

/** Opens and closes RUNTIMES runtimes after a warm-up; returns the snapshots around them. */
async function churn(open: () => Promise<Runtime>): Promise<{ before: Snapshot; after: Snapshot; ms: number }> {
  for (let i = 0; i < WARMUP; i++) await lifetime(open, i);
  const before = snapshot();
  const t0 = Date.now();
  const refs: Array<WeakRef<object>> = [];
  for (let i = 0; i < RUNTIMES; i++) refs.push(...(await lifetime(open, WARMUP + i)));
  const ms = Date.now() - t0;
  // One more, unmeasured: a heap snapshot showed the last closed runtime's only retainer to be V8's
  // "(Stack roots)" (a stale slot of a finished frame), which is not a leak and would hide nothing else.
  await lifetime(open, WARMUP + RUNTIMES);
  // Closing is complete when close() resolves, but a socket's handle goes away on a later turn: wait for it, bounded.
  await waitFor(() => grown(before.resources).length === 0, WAIT_MS, 'active resources to return to the baseline').catch(() => undefined);
  const reachable = await stillReachable(refs);
  return { before, after: { ...snapshot(), reachable }, ms };
}

function report(kind: string, r: { before: Snapshot; after: Snapshot; ms: number }, subs: string): void {
  const mb = (n: number): string => (n / 1024 / 1024).toFixed(2);
  console.log(
    `churn[${kind}]: ${RUNTIMES} runtimes opened and closed in ${r.ms} ms; active resources ${JSON.stringify(r.before.resources)} -> ${JSON.stringify(r.after.resources)}; ` +
      `signal listeners ${r.before.listeners} -> ${r.after.listeners}; ${subs}; closed runtimes+planes still reachable ${r.after.reachable?.length ?? '?'} of ${2 * RUNTIMES} (${r.after.reachable?.map((i) => `#${i >> 1}`).join(' ') || 'none'}); heap after gc ${mb(r.before.heap)} -> ${mb(r.after.heap)} MB (${r.after.heap >= r.before.heap ? '+' : ''}${mb(r.after.heap - r.before.heap)})`,
  );
}

function assertNoGrowth(r: { before: Snapshot; after: Snapshot }): void {
  // No growth: a baseline taken right after a lifetime may still hold a closing socket or a pending immediate.
  assert.equal(grown(r.before.resources, r.after.resources), [], 'timers, immediates and sockets back to the baseline');
  assert.is(r.after.listeners, r.before.listeners, 'no SIGTERM/SIGINT listener left behind');
  // Every one, the most recent included: a timer that outlives close() by a lease TTL keeps the last few
  // (it did: discovery's janitor timers, now cleared by close()).
  assert.equal(r.after.reachable, [], 'closed runtimes (or their planes) still reachable after gc: something outside them holds them');
  assert.ok(r.after.heap - r.before.heap < HEAP_NOISE_BYTES, `heap grew ${r.after.heap - r.before.heap} bytes over ${RUNTIMES} runtimes`);
}

const s = suite<{ server?: NatsServer }>('runtime churn');

s.after(async (ctx) => {
  await ctx.server?.stop();
});

s(`embedded: ${RUNTIMES} runtimes opened and closed leave no timers, subscriptions, listeners or heap behind`, async () => {
  const network = new MemoryNetwork({ name: 'churn' });
  const base = network.stats();
  const r = await churn(() => Runtime.embedded({ network }));
  const left = network.stats();
  report('embedded', r, `memory network ${JSON.stringify(base)} -> ${JSON.stringify(left)}`);
  assert.equal(left, base, 'no connection, subscription or queued message left on the network');
  assertNoGrowth(r);
});

s(`nats: ${RUNTIMES} runtimes opened and closed leave no timers, sockets, server subscriptions, listeners or heap behind`, async (ctx) => {
  const server = await NatsServer.start({ jetstream: true });
  ctx.server = server;
  // Fast discovery so each lifetime is short; the defaults are exercised everywhere else.
  const options: RuntimeOptions = { servers: server.url, discovery: { heartbeatMs: 200, leaseTtlMs: 600 } };
  const connz = (): Promise<{ num_connections: number; connections: Array<{ subscriptions_list?: string[] }> }> => server.monitor('/connz?subs=1');
  const serverSubs = async (): Promise<{ connections: number; subscriptions: number }> => {
    const c = await connz();
    return { connections: c.num_connections, subscriptions: c.connections.reduce((n, x) => n + (x.subscriptions_list?.length ?? 0), 0) };
  };
  const base = await serverSubs();
  const r = await churn(() => Runtime.connect(options));
  // The server forgets a closed connection when it reads the close: poll its monitor, bounded.
  let seen = base;
  await within(
    (async () => {
      for (;;) {
        seen = await serverSubs();
        if (seen.connections === base.connections && seen.subscriptions === base.subscriptions) return;
        await new Promise((res) => setTimeout(res, 20));
      }
    })(),
    WAIT_MS,
    'the server to drop every closed connection and its subscriptions',
  ).catch(async (err: unknown) => {
    const c = await connz();
    throw new Error(
      `${(err as Error).message}: server has ${JSON.stringify(seen)}, baseline ${JSON.stringify(base)}; connections ${JSON.stringify(c.connections).slice(0, 2_000)}`,
    );
  });
  const left = await serverSubs();
  report('nats', r, `server connections/subscriptions ${JSON.stringify(base)} -> ${JSON.stringify(left)}`);
  assert.equal(left, base, 'no connection or subscription left on the server');
  assertNoGrowth(r);
});

s.run();
