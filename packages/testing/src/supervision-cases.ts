import type { Test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  component,
  type Context,
  endpoint,
  injectClient,
  injectConfig,
  injectInstance,
  type InstanceInfo,
  type OnStart,
  type OnStop,
  Routers,
  type Runtime,
  type RuntimeOptions,
  TroupeError,
  type TypedClient,
} from '@troupe/runtime/internal';
import { waitFor, within } from './wait';
import { captureLogger, type LogLine } from './capture-logger';

/**
 * Supervision cases of the runtime conformance suite (issue #17): restart
 * policies on `onStart` failures and broken instances, one error for a
 * spawn whose replicas fail, stuck instances withdrawn and replaced.
 */

interface Pair {
  worker: Runtime;
  caller: Runtime;
}

let nsCounter = 0;
const freshNamespace = (): string => `sv${process.pid}x${Date.now().toString(36)}x${(nsCounter++).toString(36)}`;

/** Shared by every actor a spawn builds (the config object is injected as is): counts starts and stops. */
interface Ledger {
  /** `onStart` throws while `starts` (counted before the throw) is in this list (1-based). */
  failStarts: number[];
  starts: number;
  stops: number;
}

@component('fragile')
class Fragile implements OnStart, OnStop {
  /** Per actor: a restarted instance starts again from 0. */
  count = 0;

  constructor(
    @injectConfig() readonly ledger: Ledger,
    @injectInstance() readonly me: InstanceInfo,
  ) {}

  onStart(): void {
    this.ledger.starts++;
    if (this.ledger.failStarts.includes(this.ledger.starts)) throw new Error(`no model (start ${this.ledger.starts})`);
  }

  onStop(): void {
    this.ledger.stops++;
  }

  @endpoint() bump(): { id: string; count: number } {
    return { id: this.me.instanceId, count: ++this.count };
  }

  @endpoint() async breakMe(_: undefined, ctx: Context): Promise<void> {
    await Promise.resolve();
    ctx.fail('lost its model');
  }

  @endpoint() crash(): void {
    throw new Error('unexpected crash');
  }

  /** Never settles and ignores its signal: holds its mailbox slot for good. */
  @endpoint() hang(): Promise<never> {
    return new Promise<never>(() => {});
  }
}

/** Calls `fragile.breakMe` and lets its fatal error through: that breaks the fragile instance, not this one. */
@component('relay')
class Relay {
  constructor(@injectClient(Fragile) private readonly fragile: TypedClient<Fragile>) {}

  @endpoint() async pass(_: undefined, ctx: Context): Promise<void> {
    await this.fragile.breakMe(undefined, { parent: ctx });
  }

  @endpoint() ok(): string {
    return 'ok';
  }
}

async function failure(p: Promise<unknown>, what: string): Promise<TroupeError> {
  try {
    await within(p, 10_000, what);
  } catch (err) {
    assert.instance(err, TroupeError, `${what}: expected a TroupeError, got ${String(err)}`);
    return err as TroupeError;
  }
  assert.unreachable(`${what}: expected a failure, but it succeeded`);
  throw new Error('unreachable');
}

/** The instance ids discovery lists for `ns`'s fragile component, as the caller sees them. */
async function listed(caller: Runtime, ns: string): Promise<string[]> {
  return [...new Set((await caller.instances(`${ns}.fragile`)).map((r) => r.instanceId))].sort();
}

/** Polls the caller's listing until `ok` holds; bounded. */
async function listingUntil(caller: Runtime, ns: string, ok: (ids: string[]) => boolean, { ms, what }: { ms: number; what: string }): Promise<string[]> {
  const until = Date.now() + ms;
  let ids = await listed(caller, ns);
  while (!ok(ids)) {
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}; listed: ${ids.join(',')}`);
    await new Promise((r) => setTimeout(r, 20));
    ids = await listed(caller, ns);
  }
  return ids;
}

export function addSupervisionCases<C extends object>(s: Test<C>, open: (ctx: C, options?: RuntimeOptions) => Promise<Pair>): void {
  s(
    'supervision - onStart failing twice then succeeding with restart { attempts: 3, backoffMs: 50 } serves; with attempts: 1 the spawn fails naming the replica and reason',
    async (ctx) => {
      const { worker, caller } = await open(ctx);
      const ns = freshNamespace();
      const ledger: Ledger = { failStarts: [1, 2], starts: 0, stops: 0 };
      const t0 = Date.now();
      const h = await worker.spawn(Fragile, { namespace: ns, config: ledger, restart: { attempts: 3, backoffMs: 50 } });
      const took = Date.now() - t0;
      assert.is(ledger.starts, 3, 'two failed starts, then one that served');
      assert.ok(took >= 150, `backoff 50 ms then 100 ms before the third start: took ${took} ms`);
      assert.is(worker.stats().instancesRestarted, 2);
      assert.is((await caller.namespace(ns).client(Fragile).bump(undefined)).id, h.instanceIds[0]);

      const ledger2: Ledger = { failStarts: [1, 2], starts: 0, stops: 0 };
      const e = await failure(
        worker.spawn(Fragile, { namespace: freshNamespace(), config: ledger2, restart: { attempts: 1, backoffMs: 10 } }),
        'spawn with attempts: 1',
      );
      assert.is(e.code, 'INTERNAL');
      assert.match(e.message, /replica 0: no model \(start 2\)/);
      assert.equal((e.data as { failed: unknown[] }).failed, [{ replica: 0, error: { code: 'INTERNAL', message: 'no model (start 2)' } }]);
      assert.is(ledger2.starts, 2, 'one start and one restart');
      assert.is(worker.stats().restartGiveUps, 0, 'a spawn that fails is no give-up of a running replica');
    },
  );

  s(
    'supervision - a spawn of 3 replicas whose 2nd onStart throws fails with one TroupeError listing replica 1; the others are stopped, none listed',
    async (ctx) => {
      const { worker, caller } = await open(ctx);
      const ns = freshNamespace();
      const ledger: Ledger = { failStarts: [2], starts: 0, stops: 0 };
      const e = await failure(worker.spawn(Fragile, { namespace: ns, replicas: 3, config: ledger }), 'spawn of 3');
      assert.is(e.code, 'INTERNAL', 'a raw Error from onStart is INTERNAL');
      assert.match(e.message, /fragile failed: 1 of 3 replicas did not start \(replica 1: no model \(start 2\)\)/);
      assert.equal((e.data as { failed: unknown[] }).failed, [{ replica: 1, error: { code: 'INTERNAL', message: 'no model (start 2)' } }]);
      assert.is(ledger.starts, 3, 'every replica was tried');
      assert.is(ledger.stops, 2, 'the two that started were stopped');
      assert.equal(await listed(caller, ns), [], 'nothing of a failed spawn is routable');
    },
  );

  s(
    'supervision - a handler declaring its instance broken (ctx.fail) is replaced by a fresh actor with a new id; discovery shows the swap; calls succeed; stats count it',
    async (ctx) => {
      const lines: LogLine[] = [];
      const { worker, caller } = await open(ctx, { logger: captureLogger(lines) });
      const ns = freshNamespace();
      const h = await worker.spawn(Fragile, { namespace: ns, config: { failStarts: [], starts: 0, stops: 0 }, restart: { attempts: 3, backoffMs: 50 } });
      const old = h.instanceIds[0] as string;
      const client = caller.namespace(ns).client(Fragile);
      await client.bump(undefined);
      assert.is((await client.bump(undefined)).count, 2);
      const e = await failure(client.breakMe(undefined), 'breakMe');
      assert.is(e.code, 'INTERNAL');
      assert.equal(e.data, { fatal: true });
      assert.match(e.message, /declared itself broken: lost its model/);
      await waitFor(() => worker.stats().instancesRestarted === 1, 5_000, 'the broken instance to be restarted');
      const fresh = h.instanceIds[0] as string;
      assert.is.not(fresh, old, 'a restart is a new instance id');
      await listingUntil(caller, ns, (ids) => ids.length === 1 && ids[0] === fresh, { ms: 5_000, what: 'the old record to leave and the new one to join' });
      const after = await within(client.bump(undefined), 5_000, 'a call after the restart');
      assert.equal(after, { id: fresh, count: 1 }, 'fresh state: the count starts again');
      assert.is(worker.stats().restartGiveUps, 0);
      assert.ok(
        lines.some((l) => l.level === 'warn' && /is broken \(fatal\); restarting/.test(l.msg) && l.instance === old),
        `a warn line names the broken instance: ${JSON.stringify(lines.filter((l) => l.level !== 'debug'))}`,
      );
    },
  );

  s('supervision - a fatal error raised downstream and let through breaks the instance that raised it, not the caller instance', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const restart = { attempts: 3, backoffMs: 50 };
    await worker.spawn(Fragile, { namespace: ns, config: { failStarts: [], starts: 0, stops: 0 }, restart });
    const relay = await worker.spawn(Relay, { namespace: ns, restart });
    const relayId = relay.instanceIds[0];
    const client = caller.namespace(ns).client(Relay);
    const e = await failure(client.pass(undefined), 'relay.pass');
    assert.is(e.code, 'INTERNAL');
    assert.equal(e.data, { fatal: true }, 'the caller still sees the error as fatal');
    await waitFor(() => worker.stats().instancesRestarted === 1, 5_000, 'the fragile instance to be restarted');
    assert.is(await within(client.ok(undefined), 5_000, 'relay.ok'), 'ok');
    assert.equal(relay.instanceIds, [relayId], 'the relay instance was not replaced');
    assert.is(worker.stats().instancesRestarted, 1, 'only the fragile instance restarted');
  });

  s(
    "supervision - failures: { count: 3, withinMs } breaks an instance whose handlers keep throwing; restart: 'never' gives up, logged at error and counted",
    async (ctx) => {
      const lines: LogLine[] = [];
      const { worker, caller } = await open(ctx, { logger: captureLogger(lines) });
      const ns = freshNamespace();
      const h = await worker.spawn(Fragile, { namespace: ns, config: { failStarts: [], starts: 0, stops: 0 }, failures: { count: 3, withinMs: 10_000 } });
      const client = caller.namespace(ns).client(Fragile);
      await caller.namespace(ns).component('fragile').endpoint('crash').client().waitForInstances(1, { timeout: 5_000 });
      for (let i = 0; i < 3; i++) assert.is((await failure(client.crash(undefined), `crash ${i}`)).code, 'INTERNAL');
      await waitFor(() => worker.stats().restartGiveUps === 1, 5_000, 'the supervisor to give up');
      assert.equal(h.instanceIds, [], 'the replica is down');
      assert.ok(
        lines.some((l) => l.level === 'error' && /down for good/.test(l.msg)),
        'the give-up is logged at error',
      );
      await listingUntil(caller, ns, (ids) => ids.length === 0, { ms: 5_000, what: 'the broken instance to leave discovery' });
    },
  );

  s(
    'supervision - a stuck instance (a handler that never settles) is logged overdue, leaves every listing, its queued calls are refused at once, later calls succeed, and it is replaced',
    async (ctx) => {
      const lines: LogLine[] = [];
      const { worker, caller } = await open(ctx, { logger: captureLogger(lines) });
      const ns = freshNamespace();
      const h = await worker.spawn(Fragile, {
        namespace: ns,
        replicas: 2,
        config: { failStarts: [], starts: 0, stops: 0 },
        stuckAfterMs: 1_000,
        restart: { attempts: 2, backoffMs: 50 },
      });
      const [stuck, other] = h.instanceIds as [string, string];
      const client = caller.namespace(ns).component('fragile').endpoint('hang').client<undefined, never>();
      const bump = caller.namespace(ns).client(Fragile);
      // The caller's views of both endpoints know both instances before anything hangs.
      const bumpRaw = caller.namespace(ns).component('fragile').endpoint('bump').client();
      await client.waitForInstances(2, { timeout: 5_000 });
      await bumpRaw.waitForInstances(2, { timeout: 5_000 });
      const t0 = Date.now();
      const hung = failure(client.call(undefined, { router: Routers.direct(stuck), timeout: 300 }), 'the hanging call');
      // Queued behind the hung handler, with a budget far past the stuck bound.
      const queued = failure(bumpRaw.call(undefined, { router: Routers.direct(stuck), timeout: 8_000 }), 'a call queued behind it');
      assert.is((await hung).code, 'TIMEOUT');
      const q = await queued;
      const refusedAfter = Date.now() - t0;
      assert.is(q.code, 'UNAVAILABLE', q.message);
      assert.ok(refusedAfter < 4_000, `the queued call is refused when the instance is withdrawn, not at its deadline: ${refusedAfter} ms`);
      const ids = await listingUntil(caller, ns, (l) => !l.includes(stuck), { ms: 5_000, what: 'the stuck instance to leave the caller listing' });
      assert.ok(ids.includes(other));
      assert.ok(!(await client.instances()).some((r) => r.instanceId === stuck), 'gone from the client view too');
      const answers = await within(Promise.all(Array.from({ length: 20 }, () => bump.bump(undefined))), 10_000, '20 calls after the withdrawal');
      assert.ok(!answers.some((a) => a.id === stuck), 'no call reached the stuck instance');
      await waitFor(() => worker.stats().instancesRestarted === 1, 5_000, 'the stuck instance to be replaced');
      const fresh = h.instanceIds.find((id) => id !== other) as string;
      assert.ok(fresh && fresh !== stuck, `a fresh instance replaces it: ${h.instanceIds.join(',')}`);
      await listingUntil(caller, ns, (l) => l.includes(fresh) && l.includes(other) && l.length === 2, { ms: 5_000, what: 'the replacement to join' });
      const servedByFresh = answers.filter((a) => a.id === fresh).length;
      assert.is(
        (await bump.bump(undefined, { router: Routers.direct(fresh) })).count,
        servedByFresh + 1,
        'the replacement has fresh state (counts only its own calls)',
      );
      const st = worker.stats();
      assert.is(st.instancesStuck, 1);
      assert.is(st.handlersOverdue, 1);
      const overdue = lines.filter((l) => l.level === 'warn' && /past its deadline/.test(l.msg));
      assert.is(overdue.length, 1, 'the overdue handler is logged once');
      assert.is(overdue[0]?.endpoint, 'hang');
      assert.ok(typeof overdue[0]?.requestId === 'string' && (overdue[0]?.requestId as string).length > 0, 'with its request id');
      assert.ok(
        lines.some((l) => l.level === 'warn' && /is broken \(stuck\)/.test(l.msg) && l.instance === stuck),
        'the withdrawal is logged',
      );
    },
  );

  s('supervision - bad restart, failures and stuckAfterMs options are a BAD_REQUEST at once', async (ctx) => {
    const { worker } = await open(ctx);
    const config = { failStarts: [], starts: 0, stops: 0 };
    for (const [opts, re] of [
      [{ restart: 'always' }, /restart must be 'never' or/],
      [{ restart: { attempts: 0, backoffMs: 10 } }, /restart.attempts must be an integer >= 1/],
      [{ restart: { attempts: 2 } }, /restart.backoffMs must be/],
      [{ failures: { count: 0, withinMs: 10 } }, /failures.count/],
      [{ stuckAfterMs: -1 }, /stuckAfterMs must be/],
    ] as const) {
      const e = await failure(worker.spawn(Fragile, { namespace: freshNamespace(), config, ...(opts as object) }), JSON.stringify(opts));
      assert.is(e.code, 'BAD_REQUEST');
      assert.match(e.message, re);
    }
    assert.is(config.starts, 0, 'refused before any instance started');
  });
}
