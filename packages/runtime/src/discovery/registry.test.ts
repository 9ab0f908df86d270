import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MsgpackCodec } from '../codec/msgpack';
import type { Logger } from '../logger';
import type { KvBucket, KvEntry, Persistence } from '../transport/transport';
import type { EndpointAddress } from '../wire/subjects';
import { type LeaseValue, pool, type Registration, REGISTRY_CONCURRENCY, Registry } from './registry';

const codec = new MsgpackCodec();

/** A bucket in a map that counts the requests in flight and can be told to fail or hang. */
class FakeBucket implements KvBucket {
  readonly data = new Map<string, Uint8Array>();
  inFlight = 0;
  peak = 0;
  failDeletes = false;
  hangPuts = false;
  puts = 0;

  private async op<T>(fn: () => T): Promise<T> {
    this.inFlight++;
    this.peak = Math.max(this.peak, this.inFlight);
    try {
      await new Promise((r) => setImmediate(r));
      return fn();
    } finally {
      this.inFlight--;
    }
  }

  /** Puts wait until released, then land (a registry that answers late: after the writer gave up). */
  private held: Promise<void> | undefined;
  hold(): () => void {
    let release = (): void => undefined;
    this.held = new Promise<void>((r) => (release = r));
    return () => {
      this.held = undefined;
      release();
    };
  }

  async put(key: string, value: Uint8Array): Promise<number> {
    if (this.hangPuts) return new Promise(() => undefined);
    if (this.held) await this.held;
    return this.op(() => {
      this.puts++;
      this.data.set(key, value);
      return this.puts;
    });
  }
  get(key: string): Promise<KvEntry | undefined> {
    return this.op(() => {
      const value = this.data.get(key);
      return value && { key, value, revision: 1, operation: 'PUT' as const };
    });
  }
  delete(key: string): Promise<void> {
    return this.op(() => {
      if (this.failDeletes) throw new Error('TIMEOUT');
      this.data.delete(key);
    });
  }
  purge(): Promise<void> {
    return this.op(() => this.data.clear());
  }
  purgeDeletes(): Promise<number> {
    return Promise.resolve(0);
  }
  watch(): Promise<() => void> {
    return Promise.resolve(() => undefined);
  }
}

function fixture(
  heartbeatMs = 1_000,
  registerWaitMs?: number,
): { registry: Registry; records: FakeBucket; leases: FakeBucket; warnings: string[]; lease: () => LeaseValue } {
  const records = new FakeBucket();
  const leases = new FakeBucket();
  const persistence = { kv: async (name: string) => (name.includes('lease') ? leases : records) } as unknown as Persistence;
  const warnings: string[] = [];
  const logger: Logger = {
    debug: () => undefined,
    info: () => undefined,
    warn: (msg) => void warnings.push(msg),
    error: (msg) => void warnings.push(msg),
    child: () => logger,
  };
  const registry = new Registry(
    persistence,
    codec,
    'L1',
    { heartbeatMs, leaseTtlMs: heartbeatMs * 3, propertyThrottleMs: 100, leaveDelayMs: 0, registerWaitMs },
    logger,
  );
  const lease = (): LeaseValue => codec.decode(leases.data.get('L1') as Uint8Array) as LeaseValue;
  return { registry, records, leases, warnings, lease };
}

const addr = (endpoint: string): EndpointAddress => ({ namespace: 'ns', component: 'c', endpoint });
const batchOf = (n: number): { addresses: EndpointAddress[]; instanceId: string; properties: Record<string, unknown> }[] =>
  Array.from({ length: n }, (_, i) => ({ addresses: [addr('a'), addr('b')], instanceId: i.toString(16).padStart(16, '0'), properties: {} }));

// A heartbeat period no test outlasts: a beat's own lease write would be counted as the batch's.
const NO_BEAT_MS = 600_000;

test('registry - a batch registers with one lease write and bounded pipelined record puts (#14)', async () => {
  const { registry, records, leases } = fixture(NO_BEAT_MS);
  await registry.registerMany(batchOf(1_000));
  assert.is(leases.puts, 1, 'lease writes');
  assert.is(records.data.size, 2_001, 'two records per instance and the process marker');
  assert.ok(records.peak <= REGISTRY_CONCURRENCY, `${records.peak} record puts in flight at once`);
  assert.ok(records.peak > 1, 'record puts are pipelined');
  await registry.close();
});

test('registry - a batch stop names every instance gone in one lease write, then deletes their records (#14)', async () => {
  const { registry, records, leases, lease } = fixture(NO_BEAT_MS);
  const batch = batchOf(500);
  await registry.registerMany(batch);
  const writes = leases.puts;
  await registry.deregisterMany(batch);
  assert.is(leases.puts, writes + 1, 'one lease write for the whole batch');
  assert.is(new Set(lease().gone).size, 500, 'the lease names all 500 gone');
  await registry.close(); // waits for the record deletes (bounded)
  assert.equal([...records.data.keys()], [], 'every record and the marker deleted');
  // The pipelined deletes, plus the marker delete of close() beside them.
  assert.ok(records.peak <= REGISTRY_CONCURRENCY + 1, `${records.peak} registry requests in flight at once`);
});

test('registry - deletes the registry refuses are retried at the heartbeat while the lease keeps the instances gone (#14)', async () => {
  const { registry, records, lease, warnings } = fixture(100);
  const batch = batchOf(50);
  await registry.registerMany(batch);
  records.failDeletes = true;
  await registry.deregisterMany(batch);
  await waitUntil(() => registry.leaving.undeleted === 50 && records.inFlight === 0, 'the failed deletes to settle');
  assert.is(records.data.size, 101, 'records still there');
  await registry.heartbeat();
  assert.is(new Set(lease().gone).size, 50, 'the heartbeat keeps naming them gone');
  records.failDeletes = false;
  await registry.heartbeat(); // retries the deletes
  await waitUntil(() => registry.leaving.undeleted === 0, 'the retried deletes');
  assert.is(records.data.size, 1, 'only the marker is left');
  // One heartbeat after the deletes, the lease forgets them (no watcher saw the lease forget them first).
  await waitUntil(() => {
    void registry.heartbeat();
    return lease().gone === undefined;
  }, 'the lease to stop naming them');
  // A beat's lease write that outlived its period on a loaded machine is reported as such; not a deregistration.
  const others = warnings.filter((w) => !w.startsWith('registry heartbeat failed'));
  assert.equal(others, [], 'no deregistration reported as failed');
  await registry.close();
});

test('registry - a later batch is deleted after a heartbeat found nothing to delete (#14)', async () => {
  const { registry, records } = fixture();
  const a = batchOf(5);
  await registry.registerMany(a);
  await registry.deregisterMany(a);
  await waitUntil(() => registry.leaving.undeleted === 0, 'the first batch deletes');
  await registry.heartbeat(); // a delete pass with nothing to do: settles at once
  const b = batchOf(10).slice(5);
  await registry.registerMany(b);
  await registry.deregisterMany(b);
  await waitUntil(() => registry.leaving.undeleted === 0, 'the second batch deletes (a pass that settled at once must not block later ones)');
  assert.is(records.data.size, 1, 'only the marker is left');
  await registry.close();
});

test('registry - a batch stop against a registry that does not answer returns within one heartbeat period (#14)', async () => {
  const { registry, leases, warnings } = fixture(50);
  const batch = batchOf(10);
  await registry.registerMany(batch);
  leases.hangPuts = true;
  const t0 = Date.now();
  await registry.deregisterMany(batch);
  const took = Date.now() - t0;
  assert.ok(took < 50 + 500, `took ${took} ms`);
  assert.match(warnings.join('\n'), /lease write for a graceful stop failed/);
  assert.is(registry.leaving.gone, 10, 'still named gone for the next lease write');
  await registry.close(); // its heartbeat (waiting on the hung registry) holds a timer until then
});

test('registry - pool runs everything with at most the limit in flight and reports the first error', async () => {
  let inFlight = 0;
  let peak = 0;
  const seen: number[] = [];
  await pool([...Array(100).keys()], 7, async (i) => {
    inFlight++;
    peak = Math.max(peak, inFlight);
    await new Promise((r) => setImmediate(r));
    seen.push(i);
    inFlight--;
  });
  assert.is(seen.length, 100);
  assert.is(peak, 7);
  try {
    await pool([1, 2, 3], 2, async (i) => {
      if (i === 2) throw new Error('two');
    });
    assert.unreachable('pool resolved despite an error');
  } catch (err) {
    assert.is((err as Error).message, 'two');
  }
});

test('registry - instances the registry does not take in time serve unregistered and register in the background when it answers (#17.3)', async () => {
  // registerWaitMs long enough that not waiting it is told apart from a loaded machine's delay.
  const { registry, records, leases, warnings } = fixture(40, 300);
  const release = leases.hold();
  const t0 = Date.now();
  assert.is(await registry.registerMany(batchOf(3)), false, 'not registered');
  const took = Date.now() - t0;
  assert.ok(took >= 290 && took < 300 + 300, `registerMany returned after ${took} ms (bound: registerWaitMs 300 ms)`);
  assert.is(registry.unregistered, 3, 'three waiting');
  // Known down: a later spawn does not wait again.
  const t1 = Date.now();
  assert.is(await registry.registerMany(batchOf(5).slice(3)), false);
  assert.ok(Date.now() - t1 < 150, `a second registration waited ${Date.now() - t1} ms for a registry known down (registerWaitMs 300)`);
  assert.is(registry.unregistered, 5);
  await waitUntil(() => registry.registrationFailures >= 2, 'a retry that fails too');
  assert.is(warnings.filter((w) => /registry not answering/.test(w)).length, 1, `one warning for the outage: ${warnings.join(' | ')}`);
  assert.match(warnings[0] as string, /3 instances serve unregistered/);
  release();
  await waitUntil(() => registry.unregistered === 0, 'the background registration', 3_000);
  assert.is(records.data.size, 11, 'two records per instance and the marker');
  for (const r of batchOf(5)) assert.ok(registry.has(r.instanceId), `${r.instanceId} registered`);
  assert.is(warnings.filter((w) => /registry answers again/.test(w)).length, 1, `one recovery line: ${warnings.join(' | ')}`);
  await registry.close();
});

test('registry - a stop racing a registration leaves no record behind when the puts land after it (#17.3)', async () => {
  const { registry, records, leases } = fixture(40, 30);
  // Registered once (lease, marker), so the race is about the new instance's records alone.
  const [first, second] = batchOf(2) as unknown as [Registration, Registration];
  assert.ok(await registry.registerMany([first]));
  const release = records.hold();
  // The lease write lands; the record puts are held past registerWaitMs: not registered yet, but on their way.
  assert.is(await registry.registerMany([second]), false);
  assert.is(registry.unregistered, 1);
  assert.ok(await registry.deregisterMany([second]), 'the lease write naming it gone landed');
  assert.is(registry.unregistered, 0, 'nothing waits any more');
  const lease = codec.decode(leases.data.get('L1') as Uint8Array) as LeaseValue;
  assert.ok(lease.gone?.includes(second.instanceId), 'the lease names it gone while its records may land');
  release(); // the held puts land now, after the stop
  await waitUntil(() => registry.leaving.undeleted === 0 && records.inFlight === 0, 'the records to be deleted once landed');
  const keys = [...records.data.keys()];
  assert.ok(!keys.some((k) => k.endsWith(second.instanceId)), `records of the stopped instance left: ${keys.join(', ')}`);
  assert.ok(
    keys.some((k) => k.endsWith(first.instanceId)),
    'the other instance stays registered',
  );
  // And no retry brings it back.
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(![...records.data.keys()].some((k) => k.endsWith(second.instanceId)), 'a retry registered the stopped instance again');
  await registry.close();
});

test('registry - close while instances wait for the registry is immediate and writes nothing (#17.3)', async () => {
  const { registry, records, leases } = fixture(40, 30);
  leases.hangPuts = true;
  assert.is(await registry.registerMany(batchOf(2)), false);
  const t0 = Date.now();
  await registry.deregisterMany(batchOf(2));
  await registry.close();
  assert.ok(Date.now() - t0 < 100, `took ${Date.now() - t0} ms`);
  leases.hangPuts = false;
  await new Promise((r) => setTimeout(r, 200));
  assert.is(records.data.size, 0, 'no record written after close');
  assert.is(registry.unregistered, 0);
});

test('registry - a slow open at connect is no outage: no warning, the buckets open in the background and a spawn registers (#17.3)', async () => {
  const records = new FakeBucket();
  const leases = new FakeBucket();
  let opened = 0;
  // A loaded server: each bucket takes 40 ms to open, past the 30 ms registerWaitMs.
  const persistence = {
    kv: async (name: string) => {
      await new Promise((r) => setTimeout(r, 40));
      opened++;
      return name.includes('lease') ? leases : records;
    },
  } as unknown as Persistence;
  const warnings: string[] = [];
  const logger: Logger = { debug: () => undefined, info: () => undefined, warn: (m) => void warnings.push(m), error: () => undefined, child: () => logger };
  const registry = new Registry(
    persistence,
    codec,
    'L1',
    { heartbeatMs: 40, leaseTtlMs: 120, propertyThrottleMs: 100, leaveDelayMs: 0, registerWaitMs: 30 },
    logger,
  );
  assert.is(await registry.start(), false, 'not open within registerWaitMs');
  assert.equal(warnings, [], 'a slow open is not reported as an outage');
  await waitUntil(() => opened >= 2, 'the open to finish in the background');
  assert.ok(await registry.registerMany(batchOf(1)), 'the first spawn registers');
  assert.is(registry.unregistered, 0);
  await registry.close();
});

async function waitUntil(predicate: () => boolean, what: string, timeoutMs = 2_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

test.run();
