import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TroupeError } from '../errors';
import type { InstanceRecord } from './registry';
import { resolveRouter, type Router, type RouterContext, Routers } from './routers';

// Pure: fake records and a fake context, no network, no timers.

const PICKS = 10_000;
const IDS = ['0000000000000001', '00000000000000a2', '0000000000000b03', '000000000000c004'] as const;

function rec(instanceId: string, properties: Record<string, unknown> = {}): InstanceRecord {
  return {
    namespace: 'ns',
    component: 'comp',
    endpoint: 'ep',
    instanceId,
    lease: 'ffffffffffffffff',
    host: 'test',
    pid: 1,
    startedAt: 0,
    proto: '1',
    properties,
  };
}

/** A router context with fixed in-flight counts and a shared counter, like an EndpointView's. */
function fakeContext(inflight: Record<string, number> = {}): RouterContext {
  let n = 0;
  return { inflight: (id) => inflight[id] ?? 0, next: () => n++ };
}

function countPicks(router: Router, xs: readonly InstanceRecord[], ctx: RouterContext, picks = PICKS): Map<string, number> {
  const counts = new Map<string, number>(xs.map((x) => [x.instanceId, 0]));
  for (let i = 0; i < picks; i++) {
    const id = router.pick(xs, { i }, ctx);
    assert.ok(id !== undefined && counts.has(id), `${router.name} picked ${String(id)}, not one of the instances`);
    counts.set(id as string, (counts.get(id as string) ?? 0) + 1);
  }
  return counts;
}

/**
 * Asserts every count is within 5 standard deviations of its binomial
 * expectation (a false alarm about once in 1.7 million runs per count).
 */
function assertBinomial(counts: Map<string, number>, expected: Map<string, number>, total: number, what: string): void {
  for (const [id, p] of expected) {
    const got = counts.get(id) ?? 0;
    const mean = total * p;
    const sigma = Math.sqrt(total * p * (1 - p));
    assert.ok(Math.abs(got - mean) <= 5 * sigma + 1e-9, `${what}: ${id} got ${got}, expected ${mean.toFixed(0)} ± ${(5 * sigma).toFixed(0)} (5σ)`);
  }
}

test('routers - round-robin spreads 10,000 picks exactly evenly over 4 instances', () => {
  const xs = IDS.map((id) => rec(id));
  const counts = countPicks(Routers.roundRobin(), xs, fakeContext());
  assert.equal([...counts.values()], [2_500, 2_500, 2_500, 2_500]);
});

test('routers - round-robin takes the instances in turn, and an empty list gives undefined', () => {
  const xs = IDS.map((id) => rec(id));
  const ctx = fakeContext();
  const r = Routers.roundRobin();
  assert.equal(
    Array.from({ length: 8 }, () => r.pick(xs, undefined, ctx)),
    [...IDS, ...IDS],
  );
  assert.is(r.pick([], undefined, ctx), undefined);
});

test('routers - random is uniform over 4 instances (chi-square and ±5σ over 10,000 picks)', () => {
  const xs = IDS.map((id) => rec(id));
  const counts = countPicks(Routers.random(), xs, fakeContext());
  const expected = PICKS / xs.length;
  const chi2 = [...counts.values()].reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
  // 3 degrees of freedom: P(chi2 > 30.66) = 1e-6.
  assert.ok(chi2 < 30.66, `chi-square ${chi2.toFixed(2)} over ${[...counts.values()].join('/')}`);
  assertBinomial(counts, new Map(IDS.map((id) => [id, 0.25])), PICKS, 'random');
  assert.is(Routers.random().pick([], undefined, fakeContext()), undefined);
});

test('routers - least-loaded never picks the instance with requests in flight while another is idle', () => {
  const xs = IDS.map((id) => rec(id));
  const busy = IDS[1];
  const counts = countPicks(Routers.leastLoaded(), xs, fakeContext({ [busy]: 3 }));
  assert.is(counts.get(busy), 0, 'the busy instance got picks');
  // The idle ones share the rest, ties broken at random.
  assertBinomial(counts, new Map(IDS.filter((id) => id !== busy).map((id) => [id, 1 / 3])), PICKS, 'least-loaded ties');
});

test('routers - least-loaded picks the only idle instance every time', () => {
  const xs = IDS.map((id) => rec(id));
  const idle = IDS[2];
  const inflight = Object.fromEntries(IDS.map((id) => [id, id === idle ? 0 : 1]));
  const counts = countPicks(Routers.leastLoaded(), xs, fakeContext(inflight));
  assert.is(counts.get(idle), PICKS);
});

test('routers - least-loaded adds a load property to the in-flight counts', () => {
  // active_slots 5 on all but one: that one wins although it has 2 requests in flight from us.
  const xs = IDS.map((id, i) => rec(id, { active_slots: i === 3 ? 0 : 5 }));
  const counts = countPicks(Routers.leastLoaded('active_slots'), xs, fakeContext({ [IDS[3]]: 2 }));
  assert.is(counts.get(IDS[3]), PICKS);
  // A non-numeric property counts as 0 rather than poisoning the comparison.
  const odd = [rec(IDS[0], { active_slots: 'lots' }), rec(IDS[1], { active_slots: 1 })];
  assert.is(Routers.leastLoaded('active_slots').pick(odd, undefined, fakeContext()), IDS[0]);
});

test('routers - power-of-two never picks a loaded instance while another is idle', () => {
  const xs = IDS.map((id) => rec(id));
  const busy = IDS[0];
  const counts = countPicks(Routers.powerOfTwo(), xs, fakeContext({ [busy]: 1 }));
  // Its two choices are distinct, so the busy one always loses to an idle one.
  assert.is(counts.get(busy), 0, 'the busy instance got picks');
  assertBinomial(counts, new Map(IDS.slice(1).map((id) => [id, 1 / 3])), PICKS, 'power-of-two');
});

test('routers - power-of-two favours lighter instances as the theory says', () => {
  // Loads 0,1,2,3: instance of rank r wins the (3 - r) of the 6 pairs in which it is lighter.
  const xs = IDS.map((id) => rec(id));
  const inflight = Object.fromEntries(IDS.map((id, i) => [id, i]));
  const counts = countPicks(Routers.powerOfTwo(), xs, fakeContext(inflight));
  assertBinomial(counts, new Map(IDS.map((id, r) => [id, (3 - r) / 6])), PICKS, 'power-of-two by load');
  // Equal loads: uniform.
  const even = countPicks(Routers.powerOfTwo(), xs, fakeContext());
  assertBinomial(even, new Map(IDS.map((id) => [id, 0.25])), PICKS, 'power-of-two at equal load');
  assert.is(Routers.powerOfTwo().pick([xs[0] as InstanceRecord], undefined, fakeContext()), IDS[0]);
  assert.is(Routers.powerOfTwo().pick([], undefined, fakeContext()), undefined);
});

test('routers - hash: removing one of 4 instances moves only the keys it owned (10,000 keys)', () => {
  const router = Routers.hash((req: { key: string }) => req.key);
  const all = IDS.map((id) => rec(id));
  const keys = Array.from({ length: PICKS }, (_, i) => ({ key: `session-${i}` }));
  const ctx = fakeContext();
  const before = keys.map((k) => router.pick(all, k, ctx) as string);
  const owned = new Map<string, number>(IDS.map((id) => [id, 0]));
  for (const id of before) owned.set(id, (owned.get(id) ?? 0) + 1);
  assertBinomial(owned, new Map(IDS.map((id) => [id, 0.25])), PICKS, 'hash spread');

  for (const gone of IDS) {
    const rest = all.filter((x) => x.instanceId !== gone);
    let moved = 0;
    const movedTo = new Map<string, number>();
    keys.forEach((k, i) => {
      const after = router.pick(rest, k, ctx) as string;
      if (before[i] === gone) {
        moved++;
        movedTo.set(after, (movedTo.get(after) ?? 0) + 1);
      } else {
        assert.is(after, before[i], `key ${k.key} moved from ${before[i]} although only ${gone} left`);
      }
    });
    assert.is(moved, owned.get(gone), `exactly the ${owned.get(gone)} keys of ${gone} moved`);
    // Rendezvous hashing spreads the orphans over the survivors instead of piling them on one.
    assert.is(movedTo.size, 3, `the keys of ${gone} went to ${movedTo.size} instance(s)`);
  }
});

test('routers - hash: adding an instance moves keys only to it; the list order does not matter', () => {
  const router = Routers.hash((req: number) => req);
  const three = IDS.slice(0, 3).map((id) => rec(id));
  const four = IDS.map((id) => rec(id));
  const ctx = fakeContext();
  let movedToNew = 0;
  for (let k = 0; k < PICKS; k++) {
    const a = router.pick(three, k, ctx);
    const b = router.pick(four, k, ctx);
    if (a !== b) {
      assert.is(b, IDS[3], `key ${k} moved from ${a} to ${b}, not to the new instance`);
      movedToNew++;
    }
    assert.is(router.pick([...four].reverse(), k, ctx), b, `key ${k} depends on the list order`);
  }
  assertBinomial(new Map([[IDS[3], movedToNew]]), new Map([[IDS[3], 0.25]]), PICKS, 'keys taken by the new instance');
  assert.is(router.pick([], 1, ctx), undefined);
});

test('routers - direct picks the named instance or nothing', () => {
  const xs = IDS.map((id) => rec(id));
  assert.is(Routers.direct(IDS[2]).pick(xs, undefined, fakeContext()), IDS[2]);
  assert.is(Routers.direct('00000000000000ff').pick(xs, undefined, fakeContext()), undefined);
});

test('routers - a custom function sees the properties and the request', () => {
  const xs = IDS.map((id, i) => rec(id, { model: i === 2 ? 'llama' : 'mistral' }));
  const r = resolveRouter((instances, req) => instances.find((x) => x.properties.model === (req as { model: string }).model)?.instanceId);
  assert.ok(r !== 'queue');
  assert.is((r as Router).pick(xs, { model: 'llama' }, fakeContext()), IDS[2]);
  assert.is((r as Router).pick(xs, { model: 'gpt' }, fakeContext()), undefined);
});

test('routers - resolveRouter knows every name and refuses others with BAD_REQUEST', () => {
  assert.is(resolveRouter('queue'), 'queue');
  for (const name of ['round-robin', 'random', 'least-loaded', 'power-of-two'] as const) {
    assert.is((resolveRouter(name) as Router).name, name);
  }
  const own = Routers.direct(IDS[0]);
  assert.is(resolveRouter(own), own);
  try {
    resolveRouter('fastest' as never);
    assert.unreachable('an unknown router name was accepted');
  } catch (err) {
    assert.instance(err, TroupeError);
    assert.is((err as TroupeError).code, 'BAD_REQUEST');
  }
});

test.run();
