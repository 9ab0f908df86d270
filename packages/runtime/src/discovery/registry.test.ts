import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MsgpackCodec } from '../codec/msgpack';
import type { Logger } from '../logger';
import type { KvBucket, KvEntry, Persistence } from '../transport/transport';
import type { EndpointAddress } from '../wire/subjects';
import { type LeaseValue, pool, REGISTRY_CONCURRENCY, Registry } from './registry';

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

  put(key: string, value: Uint8Array): Promise<number> {
    if (this.hangPuts) return new Promise(() => undefined);
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

function fixture(heartbeatMs = 1_000): { registry: Registry; records: FakeBucket; leases: FakeBucket; warnings: string[]; lease: () => LeaseValue } {
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
  const registry = new Registry(persistence, codec, 'L1', { heartbeatMs, leaseTtlMs: heartbeatMs * 3, propertyThrottleMs: 100, leaveDelayMs: 0 }, logger);
  const lease = (): LeaseValue => codec.decode(leases.data.get('L1') as Uint8Array) as LeaseValue;
  return { registry, records, leases, warnings, lease };
}

const addr = (endpoint: string): EndpointAddress => ({ namespace: 'ns', component: 'c', endpoint });
const batchOf = (n: number): { addresses: EndpointAddress[]; instanceId: string; properties: Record<string, unknown> }[] =>
  Array.from({ length: n }, (_, i) => ({ addresses: [addr('a'), addr('b')], instanceId: i.toString(16).padStart(16, '0'), properties: {} }));

test('registry - a batch registers with one lease write and bounded pipelined record puts (#14)', async () => {
  const { registry, records, leases } = fixture();
  await registry.registerMany(batchOf(1_000));
  assert.is(leases.puts, 1, 'lease writes');
  assert.is(records.data.size, 2_001, 'two records per instance and the process marker');
  assert.ok(records.peak <= REGISTRY_CONCURRENCY, `${records.peak} record puts in flight at once`);
  assert.ok(records.peak > 1, 'record puts are pipelined');
  await registry.close();
});

test('registry - a batch stop names every instance gone in one lease write, then deletes their records (#14)', async () => {
  const { registry, records, leases, lease } = fixture();
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
  const { registry, records, lease, warnings } = fixture(20);
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
  assert.equal(warnings, [], 'no deregistration reported as failed');
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

async function waitUntil(predicate: () => boolean, what: string, timeoutMs = 2_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

test.run();
