import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Runtime, TroupeError } from '@troupe/runtime/internal';
import { NatsServer, type WorkerMessage, type WorkerProcess, waitFor, within } from '@troupe/testing';
import { clock, type CountReq, envNumber } from './fixtures/stream-common';
import { Cleanup, ms, nextOf } from './fixtures/stream-harness';

// Issue #17, item 7: two kinds of cancel, as Dynamo's stop_generating() and
// kill(), from the caller's side and across hops, on real processes: the test
// process calls `relay` (process A), which streams from `tokens` (process B)
// with `parent: ctx`. A stop ends both handlers cleanly and the stream
// normally with everything produced (the final items included); a kill aborts
// both at once.

/** A kill reaches every hop within this bound (DESIGN §3: a cancel aborts the handler within 500 ms). */
const KILL_BOUND_MS = envNumber('STOP_TEST_KILL_BOUND_MS', 500);
/** A stopped chain completes within this bound (two hops, a 5 ms token pace). */
const STOP_BOUND_MS = envNumber('STOP_TEST_STOP_BOUND_MS', 1_000);
/** The grace given to handlers that ignore the stop. */
const GRACE_MS = 300;

const s = suite<{ cleanup: Cleanup; server?: NatsServer; caller?: Runtime }>('streams - stop and kill across processes', { cleanup: new Cleanup() });

s.before(async (ctx) => {
  ctx.server = await NatsServer.start({ jetstream: true });
  ctx.caller = await Runtime.connect({ servers: ctx.server.url, name: 'streams-stop-caller' });
});
s.after(async (ctx) => {
  await ctx.caller?.close();
  await ctx.server?.stop();
});
s.after.each(async (ctx) => {
  await ctx.cleanup.run();
});

interface Report {
  type: string;
  name: string;
  code?: string;
  t: number;
}

/** The reports of `type` a process sent since `since`. */
function reports(p: WorkerProcess, type: string, since: number): Report[] {
  return p.messages.slice(since).filter((m: WorkerMessage) => m.type === type) as unknown as Report[];
}

async function chain(ctx: { cleanup: Cleanup; server?: NatsServer }, ns: string): Promise<[WorkerProcess, WorkerProcess]> {
  const url = (ctx.server as NatsServer).url;
  return Promise.all([ctx.cleanup.worker(url, ns, { TROUPE_ROLE: 'relay' }), ctx.cleanup.worker(url, ns, { TROUPE_ROLE: 'tokens' })]);
}

/** Starts a relayed stream and resolves once `n` items arrived; `done` settles with the items or the error. */
async function startRelay(caller: Runtime, ns: string, req: CountReq, options: { stopSignal?: AbortSignal; signal?: AbortSignal; stopGraceMs?: number }) {
  const client = caller.namespace(ns).component('relay').endpoint('relay').client<CountReq, number>();
  await client.waitForInstances(1, { timeout: 5_000 });
  const got: number[] = [];
  const done = new Promise<number[]>((resolve, reject) =>
    client.stream(req, { ...options, timeout: 30_000 }).subscribe({ next: (v) => got.push(v), error: reject, complete: () => resolve(got) }),
  );
  done.catch(() => undefined); // observed by the test
  await waitFor(() => got.length >= 20, 5_000, '20 items through two hops');
  return { got, done };
}

s('a stop ends both hops cleanly: the stream completes with every item and the final item of each hop, nobody is killed', async (ctx) => {
  const [relay, tokens] = await chain(ctx, 'stop');
  const since = [relay.messages.length, tokens.messages.length] as const;
  const stop = new AbortController();
  const { done } = await startRelay(ctx.caller as Runtime, 'stop', { n: 1e12, delayMs: 5, onStop: -1 }, { stopSignal: stop.signal });
  const stoppedAt = clock();
  stop.abort();
  const got = await within(done, STOP_BOUND_MS + 2_000, 'the stopped stream to complete');
  const took = clock() - stoppedAt;
  const stops = await within(
    Promise.all([nextOf(relay, 'finished', since[0], 2_000), nextOf(tokens, 'finished', since[1], 2_000)]),
    3_000,
    'both handlers to finish',
  );
  console.log(
    `streams: stop across two processes: stream completed ${ms(took)} ms after the stop with ${got.length} items; ${(stops as unknown as Report[]).map((r) => `${r.name} finished ${ms(r.t - stoppedAt)} ms after`).join(', ')}`,
  );
  assert.ok(took < STOP_BOUND_MS, `completed ${ms(took)} ms after the stop`);
  assert.equal(got.slice(-2), [-1, -2], 'the final item of tokens, then of relay');
  const tokensGot = got.slice(0, -2);
  assert.equal(
    tokensGot,
    tokensGot.map((_, i) => i),
    'every token, contiguous',
  );
  assert.is(reports(relay, 'stopped', since[0]).length, 1, 'relay saw the stop');
  assert.is(reports(tokens, 'stopped', since[1]).length, 1, 'tokens saw the stop (through relay)');
  assert.equal(reports(relay, 'aborted', since[0]), [], 'relay was not killed');
  assert.equal(reports(tokens, 'aborted', since[1]), [], 'tokens was not killed');
  await waitFor(() => (ctx.caller as Runtime).pendingReplies === 0, 1_000, 'the caller to release the stream');
});

s(`a kill aborts both hops at once (within ${KILL_BOUND_MS} ms): CANCELLED at the caller, no final items`, async (ctx) => {
  const [relay, tokens] = await chain(ctx, 'kill');
  const since = [relay.messages.length, tokens.messages.length] as const;
  const kill = new AbortController();
  const { got, done } = await startRelay(ctx.caller as Runtime, 'kill', { n: 1e12, delayMs: 5, onStop: -1 }, { signal: kill.signal });
  const killedAt = clock();
  kill.abort();
  let err: unknown;
  try {
    await within(done, 1_000, 'the killed stream to fail');
  } catch (e) {
    err = e;
  }
  const failedAfter = clock() - killedAt;
  assert.instance(err, TroupeError);
  assert.is((err as TroupeError).code, 'CANCELLED');
  const aborted = (await within(
    Promise.all([nextOf(relay, 'aborted', since[0], 2_000), nextOf(tokens, 'aborted', since[1], 2_000)]),
    3_000,
    'both handlers to be aborted',
  )) as unknown as Report[];
  console.log(
    `streams: kill across two processes: caller failed ${ms(failedAfter)} ms after; ${aborted.map((a) => `${a.name} aborted ${ms(a.t - killedAt)} ms after (${a.code})`).join(', ')}`,
  );
  assert.ok(failedAfter < 100, `the caller failed ${ms(failedAfter)} ms after the kill`);
  for (const a of aborted) {
    assert.is(a.code, 'CANCELLED', a.name);
    assert.ok(a.t - killedAt < KILL_BOUND_MS, `${a.name} aborted ${ms(a.t - killedAt)} ms after the kill`);
  }
  assert.ok(!got.includes(-1) && !got.includes(-2), 'no final item');
  assert.equal(reports(relay, 'stopped', since[0]), [], 'a kill is no stop');
  assert.equal(reports(tokens, 'stopped', since[1]), [], 'a kill is no stop');
});

s(`handlers that ignore the stop are killed after stopGraceMs (${GRACE_MS} ms) at both hops; the stream completes with what they produced`, async (ctx) => {
  const [relay, tokens] = await chain(ctx, 'grace');
  const since = [relay.messages.length, tokens.messages.length] as const;
  const stop = new AbortController();
  const { done } = await startRelay(ctx.caller as Runtime, 'grace', { n: 1e12, delayMs: 5 }, { stopSignal: stop.signal, stopGraceMs: GRACE_MS });
  const stoppedAt = clock();
  stop.abort();
  const got = await within(done, GRACE_MS + 3_000, 'the stream to complete after the grace');
  const took = clock() - stoppedAt;
  const aborted = (await within(
    Promise.all([nextOf(relay, 'aborted', since[0], 3_000), nextOf(tokens, 'aborted', since[1], 3_000)]),
    4_000,
    'both handlers to be killed',
  )) as unknown as Report[];
  console.log(
    `streams: stop ignored across two processes (grace ${GRACE_MS} ms): stream completed ${ms(took)} ms after the stop with ${got.length} items; ${aborted.map((a) => `${a.name} killed ${ms(a.t - stoppedAt)} ms after`).join(', ')}`,
  );
  assert.ok(took >= GRACE_MS - 50 && took < GRACE_MS + STOP_BOUND_MS, `completed ${ms(took)} ms after the stop`);
  assert.equal(
    got,
    got.map((_, i) => i),
    'every token, contiguous, no final item',
  );
  for (const a of aborted) {
    assert.is(a.code, 'CANCELLED', a.name);
    assert.ok(a.t - stoppedAt >= GRACE_MS - 50 && a.t - stoppedAt < GRACE_MS + KILL_BOUND_MS, `${a.name} killed ${ms(a.t - stoppedAt)} ms after the stop`);
  }
});

s.run();
