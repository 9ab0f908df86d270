import * as assert from 'uvu/assert';
import { Runtime } from '@troupe/runtime';
import { Cleanup, type NatsServer, serverSuite, WorkerProcess, within } from '@troupe/testing';

// Issue #19: a CPU-bound decode loop ("compute a step, yield a token"). Each
// token must be on the wire before the handler's next step runs: measured
// before the fix, a token waited for the following step (and some for
// several): 101, 301, 201, 101 ms at 100 ms per step.
//
// What the delay is made of once fixed (traced with sub-ms clocks in both
// processes, load average 5-6 on 2 cores): the worker's own part, yield to
// socket write, is 0.3-1 ms (the first item of a fresh process ≈ 1 ms: cold
// code); the rest is the machine — the worker burns one core, so the server
// and the caller share the other with everything else, and a wake-up that
// waits for a time slice adds 3-23 ms to one item now and then, on either
// side. The bound stands for every item (10 ms); a run with an item
// over it is made once more, and the test fails only if that one does too:
// the bug it guards against (an item held until the next step ends) is at
// least a step late on every run, never a single descheduled wake-up.

const s = serverSuite('streams - CPU-bound handlers', new Cleanup());

async function startWorker(ctx: { cleanup: Cleanup; server?: NatsServer }, ns: string): Promise<WorkerProcess> {
  const w = await WorkerProcess.start(require.resolve('./fixtures/cpu-worker'), {
    env: { NATS_URL: (ctx.server as NatsServer).url, TROUPE_NS: ns },
  });
  ctx.cleanup.add(() => w.kill('SIGKILL'));
  return w;
}

for (const stepMs of [100, 400]) {
  s(`every item arrives within 10 ms of its yield when each step burns ${stepMs} ms of CPU`, async (ctx) => {
    const ns = `cpu${stepMs}`;
    await startWorker(ctx, ns);
    const rt = ctx.cleanup.runtime(await Runtime.connect({ servers: (ctx.server as NatsServer).url }));
    const client = rt.namespace(ns).component('cpu').endpoint('steps').client<{ n: number; stepMs: number }, { i: number; t: number }>();
    const run = async (): Promise<number[]> => {
      const n = 5;
      const delays: number[] = [];
      await within(
        new Promise<void>((resolve, reject) =>
          client.stream({ n, stepMs }).subscribe({ next: (item) => delays.push(Date.now() - item.t), error: reject, complete: resolve }),
        ),
        n * stepMs + 10_000,
        `the ${n}-item stream`,
      );
      assert.is(delays.length, n, 'every item arrived');
      return delays;
    };
    let delays = await run();
    console.log(`streams: ${stepMs} ms of CPU per step: delay from yield to arrival per item ${delays.join(', ')} ms`);
    if (delays.some((d) => d > 10)) {
      delays = await run();
      console.log(`streams: an item over 10 ms (a wake-up waiting for a time slice?): once more: ${delays.join(', ')} ms`);
    }
    for (const [i, d] of delays.entries()) assert.ok(d <= 10, `item ${i} arrived ${d} ms after its yield (want <= 10 ms)`);
  });
}

s.run();
