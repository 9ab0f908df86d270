import * as assert from 'uvu/assert';
import * as path from 'node:path';
import { Cleanup, type NatsServer, serverSuite, WorkerProcess } from '@troupe/testing';
import type { LsDocument } from '../commands/ls';
import { CliProcess, FIXTURES, runCli } from './cli';

// issue #12: `troupe ls` reads discovery; tests run the built binary against a private nats-server.

const WORKER = path.join(FIXTURES, 'demo-worker.js');
const FAST = { TROUPE_HB: '250', TROUPE_TTL: '1500' };
const s = serverSuite('cli - ls', new Cleanup());

async function worker(cleanup: Cleanup, env: Record<string, string>): Promise<WorkerProcess> {
  const w = await WorkerProcess.start(WORKER, { env });
  cleanup.add(() => w.kill('SIGKILL'));
  return w;
}

s('ls --json lists exactly the spawned instances, with host, pid, age and properties', async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const a = await worker(ctx.cleanup, { NATS_URL: url, TROUPE_NS: 'lsexact', TROUPE_REPLICAS: '1', TROUPE_PROPS: '{"model":"m1"}' });
  const b = await worker(ctx.cleanup, { NATS_URL: url, TROUPE_NS: 'lsexact', TROUPE_REPLICAS: '2', TROUPE_PROPS: '{"model":"m2"}' });
  // A neighbour in another namespace must not be listed.
  await worker(ctx.cleanup, { NATS_URL: url, TROUPE_NS: 'lsother' });
  const r = await runCli(['ls', 'lsexact', '--json', '--server', url]);
  assert.is(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as LsDocument;
  const pidOf = new Map<string, number>();
  for (const id of a.ready.instanceIds) pidOf.set(id, a.pid);
  for (const id of b.ready.instanceIds) pidOf.set(id, b.pid);
  assert.equal(new Set(doc.instances.map((i) => i.instanceId)), new Set(pidOf.keys()), 'exactly the instances spawned');
  assert.is(doc.instances.length, 3 * 3, 'one record per endpoint (work, count, emit) of each instance');
  for (const i of doc.instances) {
    assert.is(i.namespace, 'lsexact');
    assert.is(i.component, 'svc');
    assert.ok(['work', 'count', 'emit'].includes(i.endpoint), i.endpoint);
    assert.is(i.pid, pidOf.get(i.instanceId));
    assert.is(typeof i.host, 'string');
    assert.ok(i.ageMs >= 0 && i.ageMs < 60_000, `age ${i.ageMs}`);
    assert.is(i.properties['model'], a.ready.instanceIds.includes(i.instanceId) ? 'm1' : 'm2');
  }
  // Scoped to one endpoint.
  const one = JSON.parse((await runCli(['ls', 'lsexact.svc.work', '--json', '--server', url])).stdout) as LsDocument;
  assert.equal(
    one.instances.map((i) => i.endpoint),
    ['work', 'work', 'work'],
  );
  // The tree off a terminal: plain text, every instance once per endpoint.
  const text = await runCli(['ls', 'lsexact', '--server', url]);
  assert.is(text.code, 0, text.stderr);
  assert.not.ok(text.stdout.includes('\u001b['), 'no colours off a terminal');
  for (const id of pidOf.keys()) assert.is(text.stdout.split(id).length - 1, 3, `${id} under each of its 3 endpoints`);
  assert.match(text.stdout, /└─ svc/);
});

s('ls --watch --json drops a killed (kill -9) instance within the lease TTL', async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const env = { NATS_URL: url, TROUPE_NS: 'lswatch', ...FAST };
  const victim = await worker(ctx.cleanup, env);
  const survivor = await worker(ctx.cleanup, env);
  const dead = victim.ready.instanceIds[0] as string;
  const alive = survivor.ready.instanceIds[0] as string;
  const ls = CliProcess.start(['ls', 'lswatch.svc.work', '--watch', '--json', '--server', url]);
  ctx.cleanup.add(() => ls.kill());
  const ids = (line: string): string[] => (JSON.parse(line) as LsDocument).instances.map((i) => i.instanceId).sort();
  await ls.waitForOut((l) => ids(l).length === 2, 5_000, 'a listing with both instances');
  const killedAt = Date.now();
  await victim.kill('SIGKILL');
  const after = await ls.waitForOut((l) => !ids(l).includes(dead), Number(FAST.TROUPE_TTL) + 2_000, `a listing without ${dead}`);
  const tookMs = Date.now() - killedAt;
  console.log(`cli ls --watch: killed instance dropped ${tookMs} ms after kill -9 (lease TTL ${FAST.TROUPE_TTL} ms)`);
  assert.equal(ids(after), [alive]);
  assert.ok(tookMs <= Number(FAST.TROUPE_TTL) + 1_000, `dropped after ${tookMs} ms`);
  // Every line is one JSON document with the stable keys.
  for (const d of ls.json<LsDocument>()) assert.equal(Object.keys(d), ['scope', 'time', 'instances']);
  ls.signal('SIGINT');
  const exit = await ls.waitExit(5_000);
  assert.is(exit.code, 0, 'Ctrl-C ends a watch cleanly');
});

s('ls: an unreachable server is a one-line CONNECTION error, exit 3, fast', async () => {
  const r = await runCli(['ls', '--server', 'nats://127.0.0.1:1']);
  assert.is(r.code, 3);
  assert.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /CONNECTION_FAILED.*127\.0\.0\.1:1/);
  assert.ok(r.ms < 3_000, `failed after ${r.ms} ms`);
  const j = await runCli(['ls', '--json', '--server', 'nats://127.0.0.1:1']);
  assert.equal(JSON.parse(j.stderr).error.code, 'CONNECTION');
  assert.is(j.stdout, '');
});

s.run();
