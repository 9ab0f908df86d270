import type { Test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  component,
  type Context,
  endpoint,
  injectConfig,
  injectInstance,
  injectProperties,
  type InstanceInfo,
  type InstanceProperties,
  type OnStart,
  type OnStop,
  type InstanceRecord,
  Routers,
  type Runtime,
  type RuntimeOptions,
  TroupeError,
} from '@troupe/runtime/internal';
import { sleep, waitFor, within } from './wait';

/**
 * Routing cases of the runtime conformance suite: client-side routers over
 * discovery, filters on static properties, dynamic properties, retries.
 * In-process on every transport; the fault tests (test/fault/discovery-*)
 * repeat the timing-sensitive ones with real processes.
 */

interface Pair {
  worker: Runtime;
  caller: Runtime;
}

let nsCounter = 0;
const freshNamespace = (): string => `rt${process.pid}x${Date.now().toString(36)}x${(nsCounter++).toString(36)}`;

@component('routed')
class Routed {
  /** Handlers running now: tests await it instead of sleeping until a request has started. */
  running = 0;

  constructor(@injectInstance() readonly me: InstanceInfo) {}

  /** Answers with the serving instance's id, after `ms`. */
  @endpoint() async who(req: { ms?: number } | undefined, ctx: Context): Promise<string> {
    this.running++;
    try {
      if (req?.ms) await sleep(req.ms, ctx.signal);
    } finally {
      this.running--;
    }
    return this.me.instanceId;
  }

  /** Answers with the serving instance's id and the request's text. */
  @endpoint() echo(req: { text: string }): { id: string; text: string } {
    return { id: this.me.instanceId, text: req.text };
  }

  /** Publishes `load` as a dynamic property of the instance. */
  @endpoint() setLoad(value: number, ctx: Context): string {
    ctx.setProperty('load', value);
    return this.me.instanceId;
  }
}

/** Reports its `load` (from its config) every 20 ms from a timer started in `onStart`: outside any handler. */
@component('reporter')
class Reporter implements OnStart, OnStop {
  private timer: NodeJS.Timeout | undefined;
  constructor(
    @injectProperties() readonly props: InstanceProperties,
    @injectConfig() private readonly cfg: { load: number; syncInStart?: boolean },
    @injectInstance() readonly me: InstanceInfo,
  ) {}

  onStart(): void {
    // With discovery off this throws at once and fails the spawn, instead of publishing nothing.
    if (this.cfg.syncInStart) this.props.set('load', this.cfg.load);
    this.timer = setInterval(() => this.props.set('load', this.cfg.load), 20);
  }

  onStop(): void {
    clearInterval(this.timer);
  }

  @endpoint() who(): string {
    return this.me.instanceId;
  }
}

async function expectCode(p: Promise<unknown>, code: string, what: string): Promise<TroupeError> {
  try {
    await within(p, 10_000, what);
  } catch (err) {
    assert.instance(err, TroupeError, `${what}: expected a TroupeError, got ${String(err)}`);
    assert.is((err as TroupeError).code, code, `${what}: ${(err as Error).message}`);
    return err as TroupeError;
  }
  return assert.unreachable(`${what}: expected ${code}, but it succeeded`) as never;
}

/** Adds the routing cases to a runtime suite. */
export function addRoutingCases<C extends object>(s: Test<C>, open: (ctx: C, options?: RuntimeOptions) => Promise<Pair>): void {
  s('routing - least-loaded prefers the idle instance when the other is made slow', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const h = await worker.spawn(Routed, { namespace: ns, replicas: 2, concurrency: 4 });
    const [slow, idle] = h.instanceIds as [string, string];
    const client = caller.namespace(ns).component('routed').endpoint('who').client<{ ms?: number }, string>({ router: 'least-loaded' });
    await client.waitForInstances(2, { timeout: 5_000 });
    // Three long requests on one instance, through the same endpoint view so they count as its load.
    const busy = Array.from({ length: 3 }, () => client.call({ ms: 800 }, { router: Routers.direct(slow) }));
    const picks: string[] = [];
    for (let i = 0; i < 20; i++) picks.push(await client.call({}));
    assert.equal([...new Set(picks)], [idle], `least-loaded sent ${picks.filter((p) => p === slow).length} of 20 requests to the busy instance`);
    assert.equal(await Promise.all(busy), [slow, slow, slow]);
    // Idle again: both get picks.
    const after = await Promise.all(Array.from({ length: 40 }, () => client.call({ ms: 5 })));
    assert.is(new Set(after).size, 2, 'with equal load both instances serve');
  });

  s('routing - where() routes only to instances whose static property matches', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const a = await worker.spawn(Routed, { namespace: ns, properties: { model: 'llama' } });
    const b = await worker.spawn(Routed, { namespace: ns, replicas: 2, properties: { model: 'mistral' } });
    const all = caller.namespace(ns).component('routed').endpoint('who').client<{ ms?: number }, string>();
    await all.waitForInstances(3, { timeout: 5_000 });
    const mistral = all.where((p) => p.model === 'mistral');
    assert.equal((await mistral.instances()).map((x) => x.instanceId).sort(), [...b.instanceIds].sort());
    assert.ok((await mistral.instances()).every((x) => x.properties['model'] === 'mistral'));
    const served = new Set(await Promise.all(Array.from({ length: 20 }, () => mistral.call({}))));
    assert.equal([...served].sort(), [...b.instanceIds].sort(), 'both mistral instances served, the llama one never');
    assert.is(await all.where((p) => p.model === 'llama').call({}), a.instanceIds[0]);
    await expectCode(all.where((p) => p.model === 'gpt').call({}), 'NO_INSTANCES', 'a filter nothing matches');
  });

  s('routing - a dynamic property set by ctx.setProperty becomes visible in instances()', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const h = await worker.spawn(Routed, { namespace: ns, replicas: 2, properties: { model: 'llama' } });
    const [one, other] = h.instanceIds as [string, string];
    const setLoad = caller.namespace(ns).component('routed').endpoint('setLoad').client<number, string>();
    await setLoad.waitForInstances(2, { timeout: 5_000 });
    let latest: readonly InstanceRecord[] = [];
    const sub = setLoad.instances$.subscribe((xs) => (latest = xs));
    try {
      const loadOf = (id: string): unknown => latest.find((x) => x.instanceId === id)?.properties['load'];
      assert.is(await setLoad.direct(one).call(7), one);
      await waitFor(() => loadOf(one) === 7, 3_000, 'load 7 to show in the instance list');
      assert.is(await setLoad.direct(one).call(8), one);
      await waitFor(() => loadOf(one) === 8, 3_000, 'load 8 to replace 7');
      assert.is(loadOf(other), undefined, 'the other instance has no load property');
      const listed = (await setLoad.instances()).find((x) => x.instanceId === one);
      assert.equal(listed?.properties, { model: 'llama', load: 8 }, 'static and dynamic properties together');
      assert.equal(listed?.dynamic, { load: 8 }, 'the dynamic ones alone');
      assert.is(latest.find((x) => x.instanceId === other)?.dynamic, undefined, 'no dynamic field without dynamic properties');
      const nsListing = (await caller.instances(ns)).find((x) => x.instanceId === one && x.endpoint === 'setLoad');
      assert.equal(nsListing?.dynamic, { load: 8 }, 'the namespace listing carries them too');
      // Routers see it too: least-loaded by `load` avoids the loaded instance.
      const who = caller
        .namespace(ns)
        .component('routed')
        .endpoint('who')
        .client<{ ms?: number }, string>({ router: Routers.leastLoaded('load') });
      await who.waitForInstances(2, { timeout: 5_000 });
      let whoList: readonly InstanceRecord[] = [];
      const whoSub = who.instances$.subscribe((xs) => (whoList = xs));
      await waitFor(() => whoList.find((x) => x.instanceId === one)?.properties['load'] === 8, 3_000, 'the who endpoint to list load 8');
      whoSub.unsubscribe();
      const picks: string[] = [];
      for (let i = 0; i < 10; i++) picks.push(await who.call({}));
      assert.equal([...new Set(picks)], [other], 'least-loaded by property picks the unloaded instance');
    } finally {
      sub.unsubscribe();
    }
  });

  s('routing - a background loop sets load through @injectProperties(): instances() and least-loaded see it', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const busy = await worker.spawn(Reporter, { namespace: ns, config: { load: 9 }, properties: { model: 'llama' } });
    const idle = await worker.spawn(Reporter, { namespace: ns, config: { load: 0 } });
    const busyId = busy.instanceIds[0] as string;
    const idleId = idle.instanceIds[0] as string;
    const who = caller
      .namespace(ns)
      .component('reporter')
      .endpoint('who')
      .client<undefined, string>({ router: Routers.leastLoaded('load') });
    await who.waitForInstances(2, { timeout: 5_000 });
    let latest: readonly InstanceRecord[] = [];
    const sub = who.instances$.subscribe((xs) => (latest = xs));
    try {
      const loadOf = (id: string): unknown => latest.find((x) => x.instanceId === id)?.properties['load'];
      await waitFor(() => loadOf(busyId) === 9 && loadOf(idleId) === 0, 3_000, "both reporters' load to show in the client's instance list");
      const listed = await caller.instances(`${ns}.reporter.who`);
      assert.equal(
        listed.find((x) => x.instanceId === busyId)?.properties,
        { model: 'llama', load: 9 },
        'runtime.instances(): static and dynamic properties together',
      );
      assert.is(busy.instance(busyId).props.get('load'), 9, 'get() reads back what the loop set');
      assert.is(busy.instance(busyId).props.get('model'), 'llama', 'get() reads a static property');
      const picks: string[] = [];
      for (let i = 0; i < 10; i++) picks.push(await who.call(undefined));
      assert.equal(
        [...new Set(picks)],
        [idleId],
        `least-loaded by load sent ${picks.filter((p) => p === busyId).length} of 10 requests to the loaded instance`,
      );
    } finally {
      sub.unsubscribe();
    }
  });

  s('routing - with { discovery: false } setting a property is a BAD_REQUEST naming it, from a handler and from @injectProperties()', async (ctx) => {
    const { worker, caller } = await open(ctx, { discovery: false });
    const ns = freshNamespace();
    // The handle, from onStart: the spawn fails with the error.
    const fromHandle = await expectCode(
      worker.spawn(Reporter, { namespace: ns, config: { load: 1, syncInStart: true } }),
      'BAD_REQUEST',
      'props.set with discovery off',
    );
    assert.match(fromHandle.message, '{ discovery: false }');
    // ctx.setProperty in a handler: the caller gets it.
    await worker.spawn(Routed, { namespace: ns });
    const setLoad = caller.namespace(ns).component('routed').endpoint('setLoad').client<number, string>({ router: 'queue' });
    const fromCtx = await expectCode(setLoad.call(3), 'BAD_REQUEST', 'ctx.setProperty with discovery off');
    assert.match(fromCtx.message, '{ discovery: false }');
  });

  s('routing - retry re-routes an OVERLOADED request to another instance', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    // One instance that refuses everything while it runs one request, one roomy instance.
    const full = await worker.spawn(Routed, { namespace: ns, concurrency: 1, mailboxCapacity: 0 });
    const roomy = await worker.spawn(Routed, { namespace: ns });
    const fullId = full.instanceIds[0] as string;
    const client = caller.namespace(ns).component('routed').endpoint('who').client<{ ms?: number }, string>();
    await client.waitForInstances(2, { timeout: 5_000 });
    const occupying = client.direct(fullId).call({ ms: 1_000 });
    const occupied = full.instance(fullId);
    await waitFor(() => occupied.running === 1, 5_000, 'the occupying request to run on the full instance');
    // A router that always tries the full instance first.
    const preferFull = (xs: readonly InstanceRecord[]): string | undefined => (xs.find((x) => x.instanceId === fullId) ?? xs[0])?.instanceId;
    await expectCode(client.call({}, { router: preferFull }), 'OVERLOADED', 'without retries the refusal reaches the caller');
    const answered = await within(client.call({}, { router: preferFull, retry: { attempts: 1, backoffMs: 1 } }), 5_000, 'the retried call');
    assert.is(answered, roomy.instanceIds[0], 'the retry went to the other instance');
    assert.is(await occupying, fullId);
  });

  s('routing - a retry sends the request as first encoded, after other calls have encoded theirs in between', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const full = await worker.spawn(Routed, { namespace: ns, concurrency: 1, mailboxCapacity: 0 });
    const roomy = await worker.spawn(Routed, { namespace: ns });
    const fullId = full.instanceIds[0] as string;
    const roomyId = roomy.instanceIds[0] as string;
    const target = caller.namespace(ns).component('routed');
    const echo = target.endpoint('echo').client<{ text: string }, { id: string; text: string }>();
    await echo.waitForInstances(2, { timeout: 5_000 });
    const occupying = target.endpoint('who').client<{ ms?: number }, string>().direct(fullId).call({ ms: 1_000 });
    const occupied = full.instance(fullId);
    await waitFor(() => occupied.running === 1, 5_000, 'the occupying request to run on the full instance');
    const preferFull = (xs: readonly InstanceRecord[]): string | undefined => (xs.find((x) => x.instanceId === fullId) ?? xs[0])?.instanceId;
    // Bodies of 100-400 bytes (over V8's on-heap limit), 200 of them encoded while the retried call waits out its
    // backoff: a request path that keeps its bytes in a shared buffer or slab must still resend its own.
    const text = (i: number) => `${i}:`.padEnd(100 + (i % 300), String.fromCharCode(97 + (i % 26)));
    const retried = echo.call({ text: text(7) }, { router: preferFull, retry: { attempts: 1, backoffMs: 200 } });
    const others = await Promise.all(Array.from({ length: 200 }, (_, i) => echo.direct(roomyId).call({ text: text(1000 + i) })));
    others.forEach((r, i) => assert.is(r.text, text(1000 + i)));
    const answered = await within(retried, 5_000, 'the retried call');
    assert.equal(answered, { id: roomyId, text: text(7) }, 'the retry went to the other instance with the request as sent');
    assert.is(await occupying, fullId);
  });
}
