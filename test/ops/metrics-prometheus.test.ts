import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { Runtime } from '@troupe/runtime/internal';
import { Cleanup, serverSuite, WorkerProcess, type NatsServer } from '@troupe/testing';
import { get, Prometheus, until } from './fixtures/ops-harness';
import type { TokenizeRequest } from './fixtures/ops-common';

// DESIGN §9: Prometheus metrics. A real Prometheus server (Debian's package)
// scrapes /metrics of two worker processes; its HTTP API answers the request
// count and a latency quantile per endpoint.

const WORKER = join(__dirname, 'fixtures', 'ops-worker.js');
const s = serverSuite('ops - Prometheus scrapes two workers', new Cleanup());

s('a real Prometheus reads request counts and latency quantiles per endpoint', async (ctx) => {
  if (!Prometheus.available()) {
    // .ci/run installs Debian's prometheus package when it is missing.
    throw new Error('prometheus is not installed (/usr/bin/prometheus); run .ci/run or apt-get install -y prometheus');
  }
  const url = (ctx.server as NatsServer).url;
  const ns = 'promns';
  const env = { NATS_URL: url, TROUPE_NS: ns, TROUPE_STATUS_PORT: '0' };
  const workers: WorkerProcess[] = [];
  for (const spawn of ['prep:1,gen:1', 'prep:1']) {
    const w = await WorkerProcess.start(WORKER, { env: { ...env, TROUPE_SPAWN: spawn }, readyTimeoutMs: 15_000 });
    ctx.cleanup.add(() => w.kill('SIGKILL'));
    workers.push(w);
  }
  const targets = workers.map((w) => `127.0.0.1:${Number(w.ready['statusPort'])}`);
  for (const t of targets) {
    const m = await get(`http://${t}/metrics`);
    assert.is(m.status, 200);
    assert.match(m.body, /# TYPE troupe_requests_total counter/);
  }
  const prom = await Prometheus.start(targets);
  ctx.cleanup.add(() => prom.stop());
  // Both targets scraped once before any call: rate() then sees the calls as an increase.
  await until(async () => ((await prom.query('up{job="troupe"} == 1')).length === 2 ? true : undefined), 20_000, 'both workers to be scraped (up == 1)', 200);

  const rt = ctx.cleanup.runtime(await Runtime.connect({ servers: url, requestTimeoutMs: 5_000 }));
  const prep = rt.namespace(ns).component('prep').endpoint('tokenize').client<TokenizeRequest, string[]>();
  await prep.waitForInstances(2, { timeout: 5_000 });
  for (let i = 0; i < 40; i++) await prep.call({ text: 'a b', workMs: 3 });
  await prep.call({ text: 'x', fail: 'INTERNAL' }).catch((e: { code: string }) => assert.is(e.code, 'INTERNAL'));
  const gen = rt.namespace(ns).component('gen').endpoint('generate').client<{ n: number }, number>();
  for (let i = 0; i < 4; i++) {
    let n = 0;
    for await (const _ of gen.stream({ n: 10 })) n++;
    assert.is(n, 10);
  }

  const counts = await until(
    async () => {
      const r = await prom.query(`sum by (endpoint) (troupe_requests_total{namespace="${ns}"})`);
      const by = Object.fromEntries(r.map((x) => [x.metric['endpoint'], Number(x.value[1])]));
      return by['tokenize'] === 41 && by['generate'] === 4 ? by : undefined;
    },
    15_000,
    'Prometheus to count 41 tokenize and 4 generate requests',
    250,
  );
  const errors = await prom.query(`sum by (endpoint, code) (troupe_request_errors_total{namespace="${ns}"})`);
  assert.equal(
    errors.map((e) => [e.metric['endpoint'], e.metric['code'], e.value[1]]),
    [['tokenize', 'INTERNAL', '1']],
  );
  const items = await prom.query(`sum(troupe_stream_items_total{namespace="${ns}",endpoint="generate"})`);
  assert.is(items[0]?.value[1], '40');

  const q = async (expr: string): Promise<Record<string, number>> =>
    Object.fromEntries((await prom.query(expr)).map((x) => [x.metric['endpoint'] as string, Number(x.value[1])]));
  const p50 = await q(`histogram_quantile(0.5, sum by (le, endpoint) (troupe_request_duration_seconds_bucket{namespace="${ns}"}))`);
  const p90 = await q(`histogram_quantile(0.9, sum by (le, endpoint) (rate(troupe_request_duration_seconds_bucket{namespace="${ns}"}[1m])))`);
  console.log(`prometheus: requests ${JSON.stringify(counts)}; p50 ${JSON.stringify(p50)} s; p90 (rate over 1m) ${JSON.stringify(p90)} s`);
  for (const ep of ['tokenize', 'generate']) {
    assert.ok(Number.isFinite(p50[ep]) && (p50[ep] as number) > 0, `a p50 for ${ep}: ${p50[ep]}`);
    assert.ok(Number.isFinite(p90[ep]) && (p90[ep] as number) > 0, `a p90 for ${ep}: ${p90[ep]}`);
  }
  // tokenize works 3 ms: its median bucket is above 2.5 ms and well under a second.
  assert.ok((p50['tokenize'] as number) >= 0.0025 && (p50['tokenize'] as number) < 1, `tokenize p50 ${p50['tokenize']} s`);
});

s.run();
