import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { WorkerProcess } from '@troupe/testing';
import { clock, ms } from './fixtures/discovery-common';
import { type Ctx, freshListed, setup, TIMING } from './fixtures/discovery-cluster';
import { Cleanup, describeFailures } from './fixtures/discovery-harness';

// DESIGN §4.6: discovery works across a 3-node NATS cluster. NATS-FACTS: killing a
// node the client is not using costs nothing. JetStream KV in a cluster is a stream
// placed on some node(s): with 1 replica (the default) the registry lives on one
// node and dies with it, so each case picks its victim knowing where the streams are.

const s = suite<Ctx>('discovery - 3-node cluster', { cleanup: new Cleanup() });

s.after.each(async (ctx) => {
  await ctx.cleanup.run();
  await ctx.cluster?.stop();
  ctx.cluster = undefined;
});

async function killNodeWithoutStreams(ctx: Ctx, ns: string, replicas: 1 | 3): Promise<void> {
  const { workers, ids, client, watch, killed, describe } = await setup(ctx, ns, replicas, 'no-stream');
  const load = ctx.cleanup.load(() => client.call(undefined), 50);
  await new Promise((r) => setTimeout(r, 1_000));
  const killedAt = clock();
  await killed.kill('SIGKILL');
  // Long enough for every lease to lapse if heartbeats stopped landing.
  await new Promise((r) => setTimeout(r, TIMING.leaseTtlMs * 2));
  // With R3 the client's records watch may have lived on the killed node: nats.js alone
  // re-creates it after two missed 5 s idle heartbeats (new instances took ~11 s to show).
  // The spawner's beat announces its write, and a watch whose consumer does not answer is
  // resumed on a fresh one (issue #17.2): within 2 s.
  const fresh = await freshListed(workers[0] as WorkerProcess, watch, replicas === 1 ? 5_000 : 2_000);
  const outcomes = await load.stop();
  const dropped = ids.filter((id) => watch.dropped.has(id));
  const servedBy = new Set(outcomes.filter((o) => o.ok && o.sentAt > killedAt).map((o) => o.id));
  console.log(
    `discovery: 3-node cluster, ${describe} (holds no registry ${replicas === 1 ? 'stream' : 'leader'}): ${outcomes.length} requests at 50 req/s, ${describeFailures(outcomes)} failed; ` +
      `${dropped.length} instance(s) left the list; an instance spawned ${TIMING.leaseTtlMs * 2} ms after the kill was listed in ${ms(fresh)} ms`,
  );
  assert.is(outcomes.filter((o) => !o.ok).length, 0, `failures: ${describeFailures(outcomes)}`);
  assert.equal(dropped, [], 'no live instance left the list');
  assert.ok(
    ids.every((id) => servedBy.has(id)),
    'both workers served after the kill',
  );
  if (replicas === 1) assert.ok(fresh <= 100, `a new instance took ${ms(fresh)} ms to be listed after the node loss`);
  else assert.ok(fresh <= 2_000, `a new instance took ${ms(fresh)} ms to be listed after the node loss`);
}

s('R1 buckets: killing the node that holds no registry stream, no worker and no client costs no request', async (ctx) => {
  await killNodeWithoutStreams(ctx, 'clusterr1', 1);
});

s('R3 buckets: killing a node that holds registry replicas (no leader), no worker and no client costs no request', async (ctx) => {
  await killNodeWithoutStreams(ctx, 'clusterr3', 3);
});

s.run();
