import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type Context, component, endpoint, injectProperties, type InstanceProperties, type InstanceRecord, Runtime } from '@troupe/runtime/internal';
import { NatsServer, waitFor, within } from '@troupe/testing';

// Issue #13, actors by the hundred thousand: the lease stays small whatever the instance count
// and however many instances publish dynamic properties (they travel in chunk records written on
// change); a client's instance list is patched, not rebuilt and re-sorted, when a lease is rewritten
// or one instance's properties change.

const MANY = Number(process.env['TROUPE_ISSUE13_INSTANCES'] ?? 50_000);
const WAIT_MS = 60_000;

const boards: InstanceProperties[] = [];

@component('loaded')
class Loaded {
  constructor(@injectProperties() props: InstanceProperties) {
    boards.push(props);
  }

  @endpoint() ping(): boolean {
    return true;
  }
}

@component('whoami')
class WhoAmI {
  @endpoint() who(_: unknown, ctx: Context): string {
    return ctx.instanceId;
  }
}

const s = suite('issue 13 - actors by the hundred thousand');

s(
  `the lease stays under 1 KB with ${MANY.toLocaleString('en-US')} instances that each set a dynamic property; a stop of them all keeps it far below max_payload`,
  async () => {
    boards.length = 0;
    const rt = await Runtime.embedded({ discovery: { propertyThrottleMs: 20 } });
    const watcher = await Runtime.embedded({ network: rt.network });
    // Every write of the lease as it happens (one read could find it expired: a loop busy past the TTL).
    const leases = await rt.bus.persistence.kv('troupe_leases', { ttlMs: 3_000 });
    let peak = 0;
    let leaseWrites = 0;
    const stopWatch = await leases.watch(rt.id, (e) => {
      if (e.operation !== 'PUT') return;
      peak = Math.max(peak, e.value.length);
      leaseWrites++;
    });
    try {
      const h = await rt.spawn(Loaded, { namespace: 'scale13', replicas: MANY });
      boards.forEach((b, i) => b.set('load', i % 7));
      const client = watcher.namespace('scale13').component('loaded').endpoint('ping').client();
      let latest: readonly InstanceRecord[] = [];
      const sub = client.instances$.subscribe((xs) => (latest = xs));
      await waitFor(
        () => latest.length === MANY && latest.every((x) => typeof x.properties['load'] === 'number'),
        WAIT_MS,
        'every instance listed with its dynamic property',
      );
      const written = leaseWrites;
      await waitFor(() => leaseWrites > written, WAIT_MS, 'a lease write after every property was published');
      assert.ok(peak > 0 && peak < 1024, `the lease was ${peak} bytes at most with ${MANY} instances carrying properties`);
      // One change is one chunk write, seen by the client.
      const before = rt.registryWrites;
      boards[123]?.set('load', 99);
      await waitFor(() => latest.some((x) => x.properties['load'] === 99), WAIT_MS, 'the change listed');
      assert.ok(rt.registryWrites - before <= 2, `one property change cost ${rt.registryWrites - before} registry writes`);

      // A stop of every instance at once: the lease names at most GONE_ON_LEASE ids (the rest are deleted first).
      await within(h.stop(), WAIT_MS, 'the stop of every instance');
      await waitFor(() => latest.length === 0, WAIT_MS, 'every instance gone from the list');
      sub.unsubscribe();
      assert.ok(peak < 128 * 1024, `the lease peaked at ${peak} bytes while ${MANY} instances stopped`);
    } finally {
      stopWatch();
      await watcher.close();
      await rt.close();
    }
  },
);

s('a lease rewritten with nothing new leaves the list as it is; one changed instance is patched in, the others stay the same objects', async () => {
  boards.length = 0;
  const rt = await Runtime.embedded({ discovery: { heartbeatMs: 50, leaseTtlMs: 400, propertyThrottleMs: 10 } });
  const watcher = await Runtime.embedded({ network: rt.network });
  try {
    const n = 2_000;
    await rt.spawn(Loaded, { namespace: 'patch13', replicas: n });
    const client = watcher.namespace('patch13').component('loaded').endpoint('ping').client();
    await client.waitForInstances(n, { timeout: WAIT_MS });
    let emissions = 0;
    let latest: readonly InstanceRecord[] = [];
    const sub = client.instances$.subscribe((xs) => {
      emissions++;
      latest = xs;
    });
    const first = latest;
    emissions = 0;
    // TTL 400 ms: the lease record is rewritten every 200 ms.
    const writes0 = rt.registryWrites;
    await new Promise((r) => setTimeout(r, 700));
    assert.ok(rt.registryWrites - writes0 >= 2, `the lease was rewritten (${rt.registryWrites - writes0} writes)`);
    assert.is(emissions, 0, 'no new list for lease rewrites that change nothing');
    assert.is(latest, first, 'the same list');

    for (const b of boards) b.set('probe', 0);
    await waitFor(() => latest.every((x) => x.properties['probe'] === 0), WAIT_MS, 'every instance listed with probe = 0');
    const settled = latest;
    // One instance changes: the next list differs in that element alone.
    boards[0]?.set('probe', 1);
    await waitFor(() => latest.some((x) => x.properties['probe'] === 1), WAIT_MS, 'the change listed');
    const after = latest;
    assert.is(after.length, settled.length, 'same length');
    let differing = 0;
    for (let i = 0; i < after.length; i++) if (after[i] !== settled[i]) differing++;
    assert.is(differing, 1, `${differing} elements of the list were rebuilt for one instance's change`);
    sub.unsubscribe();
  } finally {
    await watcher.close();
    await rt.close();
  }
});

s(
  'on NATS an instance holds one server subscription per endpoint (its mailbox) and the process one queue subscription per endpoint; every router still reaches every instance',
  async () => {
    const server = await NatsServer.start({ jetstream: true });
    const name = `issue13-subs-${process.pid}`;
    const rt = await Runtime.connect({ servers: server.url, name });
    const caller = await Runtime.connect({ servers: server.url });
    try {
      const subs = async (): Promise<number> => {
        const z = await server.monitor<{ connections: Array<{ name?: string; subscriptions: number }> }>('/connz?limit=1000');
        return z.connections.filter((c) => c.name === name).reduce((n, c) => n + c.subscriptions, 0);
      };
      const warm = await rt.spawn(WhoAmI, { namespace: 'subs13warm' });
      await warm.stop();
      const before = await subs();
      const n = 200;
      const h = await rt.spawn(WhoAmI, { namespace: 'subs13', replicas: n });
      const after = await subs();
      // Per process, whatever its instance count: the endpoint's queue subscription and `$SRV.>` (NATS micro, while it hosts instances).
      assert.ok(after - before <= n + 2, `${after - before} server subscriptions for ${n} one-endpoint instances (one each, plus two per process)`);
      assert.ok(after - before >= n, `${after - before} server subscriptions: every instance keeps its own mailbox`);

      const ns = caller.namespace('subs13');
      const ep = ns.component('whoami').endpoint('who');
      await ep.client().waitForInstances(n, { timeout: WAIT_MS });
      // Queue group: one server subscription, dispatched round-robin over the process's instances.
      const queued = ep.client({ router: 'queue' });
      const viaQueue = new Set<unknown>();
      for (let i = 0; i < 50; i++) viaQueue.add(await queued.call(null));
      assert.is(viaQueue.size, 50, `50 queue-group calls reached ${viaQueue.size} distinct instances`);
      // Client-side round-robin and direct calls go to each instance's own mailbox.
      const rr = ep.client({ router: 'round-robin' });
      const viaRr = new Set<unknown>();
      for (let i = 0; i < n; i++) viaRr.add(await rr.call(null));
      assert.is(viaRr.size, n, 'round-robin reached every instance');
      const target = h.instanceIds[n - 1] as string;
      assert.is(await ep.client().direct(target).call(null), target, 'a direct call reaches exactly its instance');

      await h.stop();
      // The server forgets unsubscribed interest as it reads the connection: poll, bounded.
      let left = await subs();
      for (const until = Date.now() + 5_000; left !== before && Date.now() < until; left = await subs()) await new Promise((r) => setTimeout(r, 50));
      assert.is(left, before, 'a stop of every instance leaves no subscription behind');
    } finally {
      await caller.close();
      await rt.close();
      await server.stop();
    }
  },
);

s.run();
