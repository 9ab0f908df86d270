import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { Routers, Runtime, type RuntimeStats, TroupeError } from '@troupe/runtime/internal';
import { type NatsServer, serverSuite, waitFor, WorkerProcess } from '@troupe/testing';
import { clock, ms, type WorkReply } from './fixtures/discovery-common';
import { Cleanup, command, describeFailures, ListWatch, Load } from './fixtures/discovery-harness';

// Issue #17, item 5: a handler that never settles and ignores its signal
// wedges a concurrency-1 instance. With real processes and a real server:
// the wedged instance leaves the caller's list within the stuck bound, the
// calls queued behind it are refused at once and re-routed (none fails, none
// waits for its deadline), and a fresh instance replaces it.

const STUCK_MS = 1_500;
const NS = 'wedged';

const s = serverSuite('supervision - stuck instance (processes)', new Cleanup());

s('one of two instances hangs: it leaves the list within the bound, 0 failed calls under load, a fresh instance replaces it', async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const w = await WorkerProcess.start(join(__dirname, 'fixtures', 'supervise-worker.js'), {
    env: { NATS_URL: url, TROUPE_NS: NS, TROUPE_STUCK_MS: String(STUCK_MS) },
    readyTimeoutMs: 15_000,
  });
  ctx.cleanup.add(() => w.kill('SIGKILL'));
  const [stuck, other] = w.ready.instanceIds as [string, string];

  const rt = ctx.cleanup.runtime(await Runtime.connect({ servers: url, requestTimeoutMs: 10_000 }));
  const work = rt.namespace(NS).component('wedge').endpoint('work').client<undefined, WorkReply>();
  const hang = rt.namespace(NS).component('wedge').endpoint('hang').client<undefined, never>();
  await work.waitForInstances(2, { timeout: 10_000 });
  await hang.waitForInstances(2, { timeout: 10_000 });
  const watch = new ListWatch(work.instances$);
  ctx.cleanup.add(async () => watch.stop());

  const load = new Load(() => work.call(undefined), 50).start();
  ctx.cleanup.add(() => load.stop());
  await waitFor(() => load.outcomes.filter((o) => o.ok).length >= 25, 10_000, '25 calls answered before the hang');

  const t0 = clock();
  const hung: unknown = await hang.call(undefined, { router: Routers.direct(stuck), timeout: 500 }).then(
    () => 'answered',
    (err: unknown) => err,
  );
  assert.instance(hung, TroupeError);
  assert.is((hung as TroupeError).code, 'TIMEOUT');
  await waitFor(() => watch.dropped.has(stuck), STUCK_MS + 5_000, 'the stuck instance to leave the list');
  const droppedAfter = (watch.dropped.get(stuck) as number) - t0;
  await waitFor(() => watch.current.length === 2 && !watch.current.some((r) => r.instanceId === stuck), 10_000, 'a replacement to join the list');
  const fresh = watch.current.map((r) => r.instanceId).find((id) => id !== other) as string;
  const joinedAfter = (watch.appeared.get(fresh) as number) - t0;
  const settled = clock();
  await waitFor(() => load.outcomes.filter((o) => o.sentAt > settled && o.ok).length >= 100, 10_000, '100 calls after the replacement joined');
  const outcomes = await load.stop();

  const { stats, ids } = (await command(w, { type: 'stats' }, 'stats')) as unknown as { stats: RuntimeStats; ids: string[] };
  const during = outcomes.filter((o) => o.sentAt >= t0 && o.sentAt <= t0 + droppedAfter);
  const worst = Math.max(...outcomes.map((o) => o.doneAt - o.sentAt));
  const after = outcomes.filter((o) => o.sentAt > settled);
  console.log(
    `supervision: hang at t0; TIMEOUT answered, stuck instance dropped from the caller's list at +${ms(droppedAfter)} ms (bound ${STUCK_MS} ms + the 500 ms deadline), ` +
      `replacement listed at +${ms(joinedAfter)} ms; ${outcomes.length} calls, failed: ${describeFailures(outcomes)}; ${during.length} sent before the drop, ` +
      `worst latency ${ms(worst)} ms; rerouted ${rt.stats().callsRerouted}; after: ${after.filter((o) => o.id === fresh).length} of ${after.length} served by the replacement`,
  );
  assert.ok(droppedAfter <= 500 + STUCK_MS + 1_500, `dropped ${ms(droppedAfter)} ms after the hang`);
  assert.is(outcomes.filter((o) => !o.ok).length, 0, `failed calls: ${describeFailures(outcomes)}`);
  assert.ok(worst < 10_000, 'no call waited for its deadline');
  assert.ok(!after.some((o) => o.id === stuck), 'nothing reached the stuck instance after the list settled');
  assert.ok(
    after.some((o) => o.id === fresh),
    'the replacement serves',
  );
  assert.equal(ids.sort(), [other, fresh].sort(), "the spawn's instances are the survivor and the replacement");
  assert.is(stats.instancesStuck, 1);
  assert.is(stats.instancesRestarted, 1);
  assert.is(stats.handlersOverdue, 1);
  assert.match(w.log, /handler still running \d+ ms past its deadline/);
  assert.match(w.log, /is broken \(stuck\); restarting with a fresh actor/);
});

s.run();
