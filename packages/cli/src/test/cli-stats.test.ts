import * as assert from 'uvu/assert';
import * as os from 'node:os';
import { connect, type NatsConnection, type Service } from 'nats';
import { Cleanup, type NatsServer, serverSuite } from '@troupe/testing';
import type { StatsDocument } from '../commands/stats';
import { CliProcess, runCli } from './cli';

// issue #12: `troupe stats` reads the NATS service protocol ($SRV.STATS,
// io.nats.micro.v1.stats_response). Here against micro services that nobody on this project
// wrote (nats.js's own `nc.services`), to prove the CLI reads the standard schema; against
// Troupe instances in cli-stats-troupe.test.ts.

const s = serverSuite('cli - stats', new Cleanup());

interface StandIn {
  svc: Service;
  served: { ok: number; failed: number };
}

/** One "instance": a micro service named after its namespace and component, endpoint `work` in the component's queue group. */
async function standIn(nc: NatsConnection, ns: string, comp: string, metadata = true): Promise<StandIn> {
  const served = { ok: 0, failed: 0 };
  const svc = await nc.services.add({
    name: `${ns}-${comp}`,
    version: '0.1.0',
    queue: `${ns}-${comp}-work`, // nats.js micro refuses '.' in a queue name (Troupe's group is ns.comp.ep)
    ...(metadata ? { metadata: { namespace: ns, component: comp, host: os.hostname(), pid: String(process.pid) } } : {}),
    statsHandler: () => Promise.resolve({ load: served.ok + served.failed }),
  });
  svc.addEndpoint('work', {
    subject: `${ns}.${comp}.work`,
    // nats.js micro times the handler call and counts a throw as an error, so the
    // stand-in works synchronously (a short spin) and throws to fail.
    handler: (_err, msg) => {
      const req = msg.json<{ fail?: boolean; ms?: number }>();
      const until = Date.now() + (req.ms ?? 0);
      while (Date.now() < until) {
        // spin: synchronous work that micro's processing_time sees
      }
      if (req.fail) {
        served.failed++;
        throw new Error('asked to fail');
      }
      served.ok++;
      msg.respond('ok');
    },
  });
  return { svc, served };
}

s('stats sums requests, errors and latency per endpoint and shows each instance with its load', async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const nc = await connect({ servers: url });
  ctx.cleanup.add(() => nc.close());
  const a = await standIn(nc, 'st', 'svc');
  const b = await standIn(nc, 'st', 'svc');
  await standIn(nc, 'other', 'svc'); // another namespace: not in `stats st`
  await standIn(nc, 'st', 'svc', false); // a micro service that is no Troupe component (no metadata): left out
  const enc = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));
  const calls = 24;
  const failures = 5;
  for (let i = 0; i < calls; i++) await nc.request('st.svc.work', enc({ fail: i < failures, ms: 2 }), { timeout: 2_000 });
  const r = await runCli(['stats', 'st', '--json', '--no-discovery', '--server', url]);
  assert.is(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as StatsDocument;
  assert.equal(Object.keys(doc), ['scope', 'time', 'endpoints']);
  assert.is(doc.endpoints.length, 1, JSON.stringify(doc));
  const ep = doc.endpoints[0] as StatsDocument['endpoints'][number];
  // The bare micro service shares the queue group, so some calls went to it: count only what the two Troupe-like ones served.
  const servedByTroupe = [a, b].reduce((n, x) => n + x.served.ok + x.served.failed, 0);
  const failedByTroupe = a.served.failed + b.served.failed;
  console.log(
    `cli stats: ${calls} calls (${failures} failing), ${servedByTroupe} to the two stand-ins; stats says ${ep.requests} requests, ${ep.errors} errors, avg ${ep.averageLatencyMs} ms`,
  );
  assert.is(ep.namespace, 'st');
  assert.is(ep.component, 'svc');
  assert.is(ep.endpoint, 'work');
  assert.is(ep.requests, servedByTroupe);
  assert.is(ep.errors, failedByTroupe);
  assert.ok(ep.averageLatencyMs >= 1 && ep.averageLatencyMs < 1_000, `average ${ep.averageLatencyMs} ms for 2 ms of work`);
  assert.equal(new Set(ep.instances.map((i) => i.instanceId)), new Set([a.svc.info().id, b.svc.info().id]));
  for (const x of [a, b]) {
    const row = ep.instances.find((i) => i.instanceId === x.svc.info().id);
    assert.ok(row);
    assert.is(row.requests, x.served.ok + x.served.failed);
    assert.is(row.errors, x.served.failed);
    assert.is(row.pid, process.pid);
    assert.is(row.load['load'], x.served.ok + x.served.failed, 'the stats data is the instance load');
  }
  // More calls, and the counts follow.
  for (let i = 0; i < 10; i++) await nc.request('st.svc.work', enc({}), { timeout: 2_000 });
  const after = JSON.parse((await runCli(['stats', 'st.svc', '--json', '--no-discovery', '--server', url])).stdout) as StatsDocument;
  assert.is(
    after.endpoints[0]?.requests,
    [a, b].reduce((n, x) => n + x.served.ok + x.served.failed, 0),
  );
  // Text off a terminal: a table with the endpoint and both instances.
  const text = await runCli(['stats', 'st', '--no-discovery', '--server', url]);
  assert.is(text.code, 0, text.stderr);
  assert.match(text.stdout, /st\.svc\.work/);
  for (const x of [a, b]) assert.match(text.stdout, new RegExp(x.svc.info().id));
  // Nothing answers for an unknown namespace: an empty list, not an error.
  const none = JSON.parse((await runCli(['stats', 'nobody', '--json', '--no-discovery', '--server', url])).stdout) as StatsDocument;
  assert.equal(none.endpoints, []);
});

s('stats --watch --json prints one document per refresh', async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const nc = await connect({ servers: url });
  ctx.cleanup.add(() => nc.close());
  await standIn(nc, 'sw', 'svc');
  const p = CliProcess.start(['stats', 'sw', '--watch', '--json', '--interval', '200', '--window', '100', '--server', url]);
  ctx.cleanup.add(() => p.kill());
  await p.waitForOut(() => p.out.length >= 1, 5_000, 'a first refresh');
  await nc.request('sw.svc.work', new TextEncoder().encode('{}'), { timeout: 2_000 });
  await p.waitForOut((l) => (JSON.parse(l) as StatsDocument).endpoints[0]?.requests === 1, 5_000, 'a refresh counting the call');
  p.signal('SIGINT');
  assert.is((await p.waitExit(5_000)).code, 0);
  assert.ok(p.json<StatsDocument>().length >= 2);
});

s.run();
