import * as assert from 'uvu/assert';
import { type RetryOptions, Runtime } from '@troupe/runtime/internal';
import { type NatsServer, waitFor, serverSuite } from '@troupe/testing';
import { clock, FAST, ms, type WorkReply } from './fixtures/discovery-common';
import { Cleanup, command, describeFailures, ListWatch } from './fixtures/discovery-harness';

// DESIGN §4.3: kill -9: no request is routed to it after ≤ 1 s (a "no responders"
// on its mailbox inhibits it at once), and it leaves the registry within the lease TTL.

const s = serverSuite('discovery - kill -9', new Cleanup());

async function killOneOfTwo(ctx: { cleanup: Cleanup; server?: NatsServer }, variant: string, retry: RetryOptions | undefined): Promise<void> {
  const url = (ctx.server as NatsServer).url;
  const ns = `kill${variant}`;
  // 20 ms of work per request under 50 req/s. For the kill the load pauses and requests go one at a time
  // until the victim holds one (it reports 'busy' and holds it until its deadline): exactly one request is
  // in flight, to the victim, when it dies, however the machine's load shifts the timing.
  const env = { NATS_URL: url, TROUPE_NS: ns, TROUPE_HB: String(FAST.heartbeatMs), TROUPE_TTL: String(FAST.leaseTtlMs), TROUPE_WORK_MS: '20' };
  const [victim, survivor] = [await ctx.cleanup.worker(env), await ctx.cleanup.worker(env)];
  // Two client processes' worth of discovery: each runtime has its own watches.
  const options = { servers: url, discovery: { ...FAST }, requestTimeoutMs: 3_000 };
  const a = ctx.cleanup.runtime(await Runtime.connect(options));
  const b = ctx.cleanup.runtime(await Runtime.connect(options));
  const ca = a
    .namespace(ns)
    .component('svc')
    .endpoint('work')
    .client<undefined, WorkReply>(retry ? { retry } : {});
  const cb = b.namespace(ns).component('svc').endpoint('work').client<undefined, WorkReply>();
  await Promise.all([ca.waitForInstances(2, { timeout: 5_000 }), cb.waitForInstances(2, { timeout: 5_000 })]);
  const watches = [new ListWatch(ca.instances$), new ListWatch(cb.instances$)];
  ctx.cleanup.add(async () => watches.forEach((w) => w.stop()));

  const load = ctx.cleanup.load(() => ca.call(undefined), 50);
  await new Promise((r) => setTimeout(r, 1_000));
  const dead = victim.ready.instanceIds[0] as string;
  load.pause();
  await waitFor(() => load.inFlight === 0, 5_000, 'the requests in flight to be answered before the kill is set up');
  const since = victim.messages.length;
  await command(victim, { type: 'arm-busy' }, 'armed');
  const held = (): boolean => victim.messages.slice(since).some((m) => m.type === 'busy');
  for (let tries = 0; !held(); tries++) {
    assert.ok(tries < 4, 'four requests in a row went to the survivor: round-robin skipped the victim');
    let answered = false;
    void load.fire().then(() => (answered = true));
    await waitFor(() => answered || held(), 5_000, 'one request to be answered (by the survivor) or held by the victim');
  }
  assert.is(load.inFlight, 1, 'only the request the victim holds is in flight');
  const killedAt = clock();
  await victim.kill('SIGKILL');
  load.resume();
  await waitFor(() => watches.every((w) => w.dropped.has(dead)), FAST.leaseTtlMs + 1_000, `instance ${dead} to leave both clients' lists`);
  await new Promise((r) => setTimeout(r, 1_000));
  const outcomes = await load.stop();

  const leftAfter = watches.map((w) => (w.dropped.get(dead) as number) - killedAt);
  const servedByDead = outcomes.filter((o) => o.ok && o.id === dead && o.sentAt > killedAt);
  const lastToDead = outcomes.filter((o) => o.id === dead).map((o) => o.doneAt);
  const failed = outcomes.filter((o) => !o.ok);
  console.log(
    `discovery: kill -9 of 1 of 2 workers under 50 req/s (${variant}): ${outcomes.length} requests, ${failed.length} failed (${describeFailures(outcomes)}); ` +
      `left the lists ${leftAfter.map(ms).join(' / ')} ms after the kill (lease TTL ${FAST.leaseTtlMs} ms, heartbeat ${FAST.heartbeatMs} ms)`,
  );
  assert.is(servedByDead.length, 0, 'a dead instance answered');
  assert.ok(lastToDead.length > 0, 'the victim served requests before the kill');
  for (const t of leftAfter) assert.ok(t <= FAST.leaseTtlMs + 100, `left a client's list ${ms(t)} ms after the kill, past the ${FAST.leaseTtlMs} ms TTL`);
  // The request in flight at the kill waited for the lease to expire (INSTANCE_LOST), then went elsewhere or failed.
  const caught = outcomes.filter((o) => o.sentAt < killedAt && o.doneAt > killedAt);
  console.log(
    `discovery: the request in flight at the kill ${retry ? 'was re-routed and answered' : 'failed'} ${caught.map((o) => ms(o.doneAt - killedAt)).join(', ')} ms after the kill`,
  );
  assert.is(caught.length, 1, 'one request was in flight to the victim when it died');
  if (retry) assert.is(failed.length, 0, `with retries: ${describeFailures(outcomes)}`);
  else {
    // Exactly the request the victim was running when it died; the others were re-routed at once.
    assert.ok(failed.length <= 1, `without retries: ${describeFailures(outcomes)}`);
    for (const f of failed) assert.is(f.code, 'INSTANCE_LOST', `a request in flight at the kill fails with INSTANCE_LOST: ${f.message}`);
  }
  const after = outcomes.filter((o) => o.sentAt > killedAt + 50);
  assert.ok(after.length > 50 && after.every((o) => o.ok && o.id === survivor.ready.instanceIds[0]), 'the survivor serves everything after the kill');
}

s('kill -9 of 1 of 2 workers under 50 req/s: at most 1 failed request, gone from every list within the lease TTL', async (ctx) => {
  await killOneOfTwo(ctx, 'noretry', undefined);
});

s('kill -9 of 1 of 2 workers under 50 req/s with retries: 0 failed requests', async (ctx) => {
  await killOneOfTwo(ctx, 'retry', { attempts: 2, backoffMs: 10 });
});

s.run();
