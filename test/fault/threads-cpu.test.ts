import * as assert from 'uvu/assert';
import { Runtime, TroupeError } from '@troupe/runtime';
import { Cleanup, type NatsServer, serverSuite, sleep, WorkerProcess, within } from '@troupe/testing';
import type { Burned, Produced, ThreadReport } from '@troupe/testing/dist/thread-work';

// Issue #19 item 3: CPU-bound endpoints off the event loop. A real worker
// process on NATS runs its heavy handlers in worker threads
// (ctx.runInThread / ctx.streamInThread); its other endpoints, its streams'
// heartbeats and its I/O must not notice.

const s = serverSuite('threads - CPU-bound endpoints in worker threads', new Cleanup());

interface Setup {
  rt: Runtime;
  ns: string;
}

async function setup(ctx: { cleanup: Cleanup; server?: NatsServer }, ns: string): Promise<Setup> {
  const url = (ctx.server as NatsServer).url;
  const w = await WorkerProcess.start(require.resolve('./fixtures/thread-worker'), { env: { NATS_URL: url, TROUPE_NS: ns } });
  ctx.cleanup.add(() => w.kill('SIGKILL'));
  // A short idle bound: a worker whose heartbeats stalled for 600 ms fails the stream with INSTANCE_LOST.
  const rt = ctx.cleanup.runtime(await Runtime.connect({ servers: url, streamIdleMs: 600 }));
  return { rt, ns };
}

const ep = <Req, Res>(x: Setup, name: string) => x.rt.namespace(x.ns).component('cpu').endpoint(name).client<Req, Res>();

async function failure(p: Promise<unknown>): Promise<TroupeError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  assert.instance(e, TroupeError, 'the call failed with a TroupeError');
  return e as TroupeError;
}

s('while a thread computes for 2 s, the same process answers pings in under 10 ms and its concurrent stream keeps its heartbeats', async (ctx) => {
  const x = await setup(ctx, 'thr1');
  const ping = ep<null, number>(x, 'ping');
  const burn = ep<{ ms: number; cooperative: boolean }, Burned>(x, 'burn');
  await ping.call(null); // discovered and warm
  await ep<null, ThreadReport>(x, 'whichThread').call(null); // the thread is started and its module loaded
  // A main-thread stream whose gaps (700 ms) exceed the caller's idle bound (600 ms): only the worker's heartbeats (every 100 ms) keep it alive.
  const ticks: number[] = [];
  const ticking = new Promise<void>((resolve, reject) =>
    ep<{ n: number; everyMs: number }, number>(x, 'ticks')
      .stream({ n: 5, everyMs: 700 })
      .subscribe({ next: () => ticks.push(Date.now()), error: reject, complete: resolve }),
  );
  ticking.catch(() => undefined); // judged after the burn, below: not an unhandled rejection meanwhile
  const started = Date.now();
  let done = false;
  const burning = burn.call({ ms: 2_000, cooperative: false }).finally(() => (done = true));
  const pings: number[] = [];
  while (!done && pings.length < 200) {
    const t = performance.now();
    await ping.call(null);
    pings.push(performance.now() - t);
    await sleep(50); // spread the pings over the burn
  }
  const result = await within(burning, 10_000, 'the 2 s burn');
  const burnMs = Date.now() - started;
  const tickFailure = await within(
    ticking.then(
      () => undefined,
      (e: unknown) => e,
    ),
    10_000,
    'the ticks stream',
  );
  assert.is(tickFailure, undefined, `the concurrent stream failed (its heartbeats stopped?): ${String(tickFailure)}`);
  const sorted = [...pings].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)] as number;
  const gaps = ticks.slice(1).map((t, i) => t - (ticks[i] as number));
  console.log(
    `threads: ${pings.length} pings during a ${burnMs} ms burn in a thread: median ${median.toFixed(1)} ms, max ${(sorted[sorted.length - 1] as number).toFixed(1)} ms; tick gaps (700 ms apart) max ${Math.max(...gaps)} ms`,
  );
  assert.is(result.aborted, false);
  assert.ok(burnMs >= 1_900, `the burn took ${burnMs} ms`);
  assert.ok(pings.length >= 10, `only ${pings.length} pings answered during the burn`);
  assert.ok(median < 10, `median ping ${median.toFixed(1)} ms during the burn (want < 10 ms)`);
  // A blocked event loop would hold a ping for the rest of the burn (up to 2 s); a loaded 2-core host delays some by tens of ms.
  for (const p of pings) assert.ok(p < 500, `a ping took ${p.toFixed(1)} ms during the burn`);
  assert.is(ticks.length, 5, 'every tick arrived: heartbeats kept the stream alive (no INSTANCE_LOST)');
  for (const g of gaps) assert.ok(g < 1_200, `a tick gap of ${g} ms (ticks are 700 ms apart)`);
});

s('cancelling a thread stream frees its thread: the next call starts at once', async (ctx) => {
  const x = await setup(ctx, 'thr2');
  const which = ep<null, ThreadReport>(x, 'whichThread');
  const first = (await which.call(null)).threadId;
  let got = 0;
  for await (const item of ep<{ n: number; stepMs: number }, Produced>(x, 'steps').iterate({ n: 100, stepMs: 200 })) {
    assert.is(item.i, 0);
    got++;
    break; // cancel: the thread is mid-step, 99 steps of 200 ms left
  }
  assert.is(got, 1);
  const t = performance.now();
  const report = await which.call(null);
  const took = performance.now() - t;
  console.log(`threads: the next call answered ${took.toFixed(0)} ms after the cancel`);
  assert.equal(report, { threadId: first, started: ['steps'] }, 'the same (only) thread, which stopped on ctx.aborted');
  assert.ok(took < 1_000, `the next call took ${took.toFixed(0)} ms after the cancel`);
});

s('a thread stream delivers N items in order under a window of 2; with a slow consumer the thread pauses', async (ctx) => {
  const x = await setup(ctx, 'thr3');
  const n = 100;
  const window = 2;
  const producedAt: number[] = [];
  const consumedAt: number[] = [];
  for await (const item of ep<{ n: number; stepMs: number }, Produced>(x, 'steps').iterate({ n, stepMs: 1 }, { window })) {
    assert.is(item.i, consumedAt.length, 'in order');
    producedAt.push(item.at);
    await sleep(10); // a slow consumer
    consumedAt.push(Date.now());
  }
  assert.is(consumedAt.length, n);
  // Item k exists only once item k - lead was consumed: the thread's buffer (16) + the credit window + slack.
  const lead = 16 + window + 4;
  for (let k = lead; k < n; k++) {
    assert.ok(
      (producedAt[k] as number) >= (consumedAt[k - lead] as number) - 1,
      `item ${k} was produced before item ${k - lead} was consumed: the thread ran ahead of the credits`,
    );
  }
  const span = (producedAt[n - 1] as number) - (producedAt[0] as number);
  console.log(`threads: ${n} items (1 ms of CPU each), window ${window}, 10 ms consumer: the thread produced over ${span} ms`);
  assert.ok(span >= (n - lead) * 10 * 0.8, `the thread produced ${n} items in ${span} ms: it did not wait for the consumer`);
});

s('a throw in the thread reaches the caller as a TroupeError; a deadline answers TIMEOUT and the thread stops on its abort', async (ctx) => {
  const x = await setup(ctx, 'thr4');
  const fail = ep<{ troupe: boolean }, never>(x, 'fail');
  const a = await failure(fail.call({ troupe: true }));
  assert.equal({ code: a.code, message: a.message, data: a.data }, { code: 'NOT_FOUND', message: 'no prompt 7 in the cache', data: { prompt: 7 } });
  const b = await failure(fail.call({ troupe: false }));
  assert.equal({ code: b.code, message: b.message }, { code: 'INTERNAL', message: 'boom in the handler' });
  const which = ep<null, ThreadReport>(x, 'whichThread');
  const first = (await which.call(null)).threadId;
  const t = await failure(ep<{ ms: number; cooperative: boolean }, Burned>(x, 'burn').call({ ms: 20_000, cooperative: true }, { timeout: 1_000 }));
  assert.is(t.code, 'TIMEOUT');
  assert.equal(await which.call(null, { timeout: 1_000 }), { threadId: first, started: ['burn'] }, 'the same thread ran the burn, saw ctx.aborted and is free');
});

s.run();
