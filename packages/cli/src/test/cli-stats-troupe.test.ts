import * as assert from 'uvu/assert';
import * as path from 'node:path';
import { Runtime } from '@troupe/runtime';
import { Cleanup, type NatsServer, serverSuite, WorkerProcess } from '@troupe/testing';
import type { StatsDocument } from '../commands/stats';
import { FIXTURES, runCli } from './cli';

// issue #12 with #15: `troupe stats` against real Troupe instances (each answers $SRV.STATS as a
// NATS micro service): the counts it prints are the calls made, per endpoint and per instance.

const WORKER = path.join(FIXTURES, 'demo-worker.js');
const s = serverSuite('cli - stats of Troupe instances', new Cleanup());

s('stats counts exactly the calls made to two worker processes, errors included, with each instance and its load', async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const workers: WorkerProcess[] = [];
  for (let i = 0; i < 2; i++) {
    const w = await WorkerProcess.start(WORKER, { env: { NATS_URL: url, TROUPE_NS: 'trst' } });
    ctx.cleanup.add(() => w.kill('SIGKILL'));
    workers.push(w);
  }
  const ids = workers.map((w) => w.ready.instanceIds[0] as string);
  const rt = ctx.cleanup.runtime(await Runtime.connect({ servers: url }));
  const work = rt.namespace('trst').component('svc').endpoint('work').client<{ ms?: number; fail?: string } | undefined, unknown>();
  await work.waitForInstances(2, { timeout: 5_000 });
  const ok = 9;
  const failed = 3;
  for (let i = 0; i < ok; i++) await work.call({ ms: 1 });
  for (let i = 0; i < failed; i++) await work.call({ fail: 'asked to fail' }).catch(() => undefined);
  const r = await runCli(['stats', 'trst', '--json', '--server', url]);
  assert.is(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as StatsDocument;
  const ep = doc.endpoints.find((e) => e.component === 'svc' && e.endpoint === 'work');
  assert.ok(ep, `svc.work listed: ${r.stdout}`);
  assert.is(ep.requests, ok + failed, 'every call counted once');
  assert.is(ep.errors, failed, 'the failed calls counted as errors');
  assert.equal(ep.instances.map((i) => i.instanceId).sort(), [...ids].sort(), 'both instances, by id');
  assert.is(
    ep.instances.reduce((n, i) => n + i.requests, 0),
    ok + failed,
    'the per-instance counts add up',
  );
  assert.ok(
    ep.instances.some((i) => typeof i.load['load'] === 'number'),
    `the load property travels: ${JSON.stringify(ep.instances.map((i) => i.load))}`,
  );
});

s.run();
