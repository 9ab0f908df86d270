import * as assert from 'uvu/assert';
import { Routers, Runtime } from '@troupe/runtime/internal';
import { type NatsServer, waitFor, serverSuite } from '@troupe/testing';
import { clock, FAST, ms, percentile, type WorkReply } from './fixtures/discovery-common';
import { Cleanup, command, ListWatch } from './fixtures/discovery-harness';

// DESIGN §4.1: a new instance is routable by existing clients within 100 ms on loopback.

const SPAWNS = 20;
const s = serverSuite('discovery - spawn to routable', new Cleanup());

s('a newly spawned instance is listed and answers an existing client within 100 ms (p99 over 20 spawns)', async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const env = { NATS_URL: url, TROUPE_NS: 'routable', TROUPE_HB: String(FAST.heartbeatMs), TROUPE_TTL: String(FAST.leaseTtlMs) };
  const w = await ctx.cleanup.worker(env);
  const rt = ctx.cleanup.runtime(await Runtime.connect({ servers: url, discovery: { ...FAST }, requestTimeoutMs: 2_000 }));
  const client = rt.namespace('routable').component('svc').endpoint('work').client<undefined, WorkReply>();
  await client.waitForInstances(1, { timeout: 5_000 });

  // The moment each new id is listed, call it through the router: listed must mean routable.
  const answered = new Map<string, number>();
  const errors: string[] = [];
  const watch = new ListWatch(client.instances$, (xs) => {
    for (const x of xs) {
      if (answered.has(x.instanceId) || x.instanceId === w.ready.instanceIds[0]) continue;
      answered.set(x.instanceId, NaN);
      client.call(undefined, { router: Routers.direct(x.instanceId), timeout: 1_000 }).then(
        (r) => {
          if (r.id !== x.instanceId) errors.push(`routed to ${x.instanceId}, answered by ${r.id}`);
          answered.set(x.instanceId, clock());
        },
        (err: unknown) => errors.push(`${x.instanceId}: ${(err as Error).message}`),
      );
    }
  });
  ctx.cleanup.add(async () => watch.stop());

  const fromResolved: number[] = [];
  const fromCall: number[] = [];
  const toAnswer: number[] = [];
  for (let i = 0; i < SPAWNS; i++) {
    const m = await command(w, { type: 'spawn' }, 'spawned');
    const id = m['id'] as string;
    await waitFor(() => Number.isFinite(answered.get(id)) || errors.length > 0, 2_000, `instance ${id} to be listed and to answer`);
    assert.equal(errors, [], 'every new instance answered its first routed call');
    const listed = watch.appeared.get(id) as number;
    fromResolved.push(listed - (m['t1'] as number));
    fromCall.push(listed - (m['t0'] as number));
    toAnswer.push((answered.get(id) as number) - (m['t1'] as number));
  }
  watch.stop();

  const line = (name: string, xs: number[]): string => `${name} p50=${ms(percentile(xs, 50))}ms p99=${ms(percentile(xs, 99))}ms max=${ms(Math.max(...xs))}ms`;
  console.log(
    `discovery: spawn→routable over ${SPAWNS} spawns: ${line('spawn resolved→listed', fromResolved)}; ${line('spawn called→listed', fromCall)}; ${line('spawn resolved→first reply', toAnswer)}`,
  );
  // Negative values are fine: the watch can deliver the record before the worker sees its own put acknowledged.
  assert.ok(percentile(fromResolved, 99) <= 100, `p99 spawn resolved→listed ${ms(percentile(fromResolved, 99))} ms > 100 ms`);
  assert.ok(percentile(fromCall, 99) <= 100, `p99 spawn called→listed ${ms(percentile(fromCall, 99))} ms > 100 ms`);
});

s.run();
