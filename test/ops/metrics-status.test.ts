import * as assert from 'uvu/assert';
import { suite } from 'uvu';
import { Counter } from 'prom-client';
import { Runtime, TroupeError } from '@troupe/runtime/internal';
import { Cleanup } from '@troupe/testing';
import { Gen, Prep, type TokenizeRequest } from './fixtures/ops-common';
import { freePort, get } from './fixtures/ops-harness';

// DESIGN §9: metrics per runtime (own registry, user metrics beside Troupe's,
// `metrics: false`) and the status server's routes, on embedded runtimes.

const s = suite<{ cleanup: Cleanup }>('ops - metrics and status server', { cleanup: new Cleanup() });
s.after.each(async (ctx) => ctx.cleanup.run());

function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

s('worker, client and stream metrics are labelled namespace/component/endpoint, never by instance', async (ctx) => {
  const rt = ctx.cleanup.runtime(await Runtime.embedded());
  await rt.spawn(Prep, { namespace: 'm1', replicas: 2 });
  await rt.spawn(Gen, { namespace: 'm1' });
  const prep = rt.namespace('m1').component('prep').endpoint('tokenize').client<TokenizeRequest, string[]>();
  for (let i = 0; i < 7; i++) await prep.call({ text: 'a b c' });
  await prep.call({ text: 'x', fail: 'BAD_REQUEST' }).catch(() => undefined);
  const gen = rt.namespace('m1').component('gen').endpoint('generate').client<{ n: number }, number>();
  for await (const _ of gen.stream({ n: 3 })) void _;
  const text = await rt.metrics.text();
  const ep = { namespace: 'm1', component: 'prep', endpoint: 'tokenize' };
  assert.is(sample(text, 'troupe_requests_total', ep), 8, 'both instances summed into one series');
  assert.is(sample(text, 'troupe_request_errors_total', { ...ep, code: 'BAD_REQUEST' }), 1);
  assert.is(sample(text, 'troupe_request_duration_seconds_count', ep), 8);
  assert.is(sample(text, 'troupe_request_duration_seconds_bucket', { ...ep, le: '+Inf' }), 8);
  assert.is(sample(text, 'troupe_requests_in_flight', ep), 0);
  assert.ok((sample(text, 'troupe_request_bytes_total', ep) ?? 0) > 0);
  assert.ok((sample(text, 'troupe_response_bytes_total', ep) ?? 0) > 0);
  assert.is(sample(text, 'troupe_client_calls_total', { ...ep, code: 'OK' }), 7);
  assert.is(sample(text, 'troupe_client_calls_total', { ...ep, code: 'BAD_REQUEST' }), 1);
  assert.is(sample(text, 'troupe_client_call_duration_seconds_count', ep), 8);
  const g = { namespace: 'm1', component: 'gen', endpoint: 'generate' };
  assert.is(sample(text, 'troupe_stream_items_total', g), 3);
  assert.is(sample(text, 'troupe_stream_first_item_seconds_count', g), 1);
  assert.ok((sample(text, 'troupe_stream_frames_total', g) ?? 0) >= 1);
  assert.is(sample(text, 'troupe_nats_connected', {}), 1);
  assert.not.match(text, /instance="/, 'no instance label unless asked for');
});

s('counts of stopped instances stay in the totals (counters never go down)', async (ctx) => {
  const rt = ctx.cleanup.runtime(await Runtime.embedded());
  const h = await rt.spawn(Prep, { namespace: 'm2' });
  const prep = rt.namespace('m2').component('prep').endpoint('tokenize').client<TokenizeRequest, string[]>();
  for (let i = 0; i < 3; i++) await prep.call({ text: 'a' });
  await h.stop();
  assert.is(sample(await rt.metrics.text(), 'troupe_requests_total', { namespace: 'm2', endpoint: 'tokenize' }), 3);
});

s('a scrape while a spawn stops or the runtime closes counts each request once (never down, never twice)', async (ctx) => {
  // Live instances are read from the runtime's spawns, stopped ones from the totals: an instance is in
  // exactly one of them whenever a scrape runs, also between "stopped" and "out of its spawn".
  const rt = ctx.cleanup.runtime(await Runtime.embedded());
  const scrapeUntil = async (done: Promise<unknown>, ep: Record<string, string>): Promise<Array<number | undefined>> => {
    let over = false;
    void done.finally(() => (over = true));
    const seen: Array<number | undefined> = [];
    for (let i = 0; i < 5_000 && !over; i++) {
      seen.push(sample(await rt.metrics.text(), 'troupe_requests_total', ep));
      await new Promise((r) => setTimeout(r, 2));
    }
    await done;
    seen.push(sample(await rt.metrics.text(), 'troupe_requests_total', ep));
    return seen;
  };
  const h = await rt.spawn(Prep, { namespace: 'm5', replicas: 2 });
  const prep = rt.namespace('m5').component('prep').endpoint('tokenize').client<TokenizeRequest, string[]>();
  for (let i = 0; i < 4; i++) await prep.call({ text: 'a' });
  const whileStopping = await scrapeUntil(h.stop(), { namespace: 'm5', endpoint: 'tokenize' });
  assert.ok(whileStopping.length >= 2 && whileStopping.every((n) => n === 4), JSON.stringify(whileStopping));
  await rt.spawn(Prep, { namespace: 'm6', replicas: 2 });
  const other = rt.namespace('m6').component('prep').endpoint('tokenize').client<TokenizeRequest, string[]>();
  for (let i = 0; i < 3; i++) await other.call({ text: 'a' });
  const whileClosing = await scrapeUntil(rt.close(), { namespace: 'm6', endpoint: 'tokenize' });
  assert.ok(whileClosing.length >= 2 && whileClosing.every((n) => n === 3), JSON.stringify(whileClosing));
});

s('a user metric lives in the runtime registry; metrics: false leaves only it', async (ctx) => {
  const rt = ctx.cleanup.runtime(await Runtime.embedded({ metrics: false }));
  const tokens = new Counter({ name: 'app_tokens_total', help: 'tokens generated', registers: [rt.metrics.registry] });
  tokens.inc(5);
  rt.metrics.gauge({ name: 'app_kv_usage', help: 'KV cache in use', labelNames: ['model'] }).set({ model: 'm' }, 0.5);
  const text = await rt.metrics.text();
  assert.match(text, /app_tokens_total 5/);
  assert.match(text, /app_kv_usage\{model="m"\} 0.5/);
  assert.not.match(text, /troupe_/);
  const other = ctx.cleanup.runtime(await Runtime.embedded());
  assert.not.match(await other.metrics.text(), /app_tokens_total/, 'registries are per runtime, not the global one');
});

s('bad metrics and status options are refused at once with BAD_REQUEST', async () => {
  for (const options of [{ status: { port: -1 } }, { status: { port: 70000 } }, { status: 'x' }, { metrics: 3 }]) {
    const err = await Runtime.embedded(options as never).then(
      (rt) => rt.close().then(() => undefined),
      (e: unknown) => e,
    );
    assert.instance(err, TroupeError, JSON.stringify(options));
    assert.is((err as TroupeError).code, 'BAD_REQUEST');
  }
  const prev = process.env['TROUPE_STATUS_PORT'];
  process.env['TROUPE_STATUS_PORT'] = 'abc';
  try {
    const err = await Runtime.embedded().catch((e: unknown) => e);
    assert.is((err as TroupeError).code, 'BAD_REQUEST');
  } finally {
    if (prev === undefined) delete process.env['TROUPE_STATUS_PORT'];
    else process.env['TROUPE_STATUS_PORT'] = prev;
  }
});

s('status server: /live, /metrics, /health, 404; runtimes sharing a port are merged', async (ctx) => {
  const port = await freePort();
  const a = ctx.cleanup.runtime(await Runtime.embedded({ status: { port } }));
  const b = ctx.cleanup.runtime(await Runtime.embedded({ network: a.network, status: { port } }));
  assert.equal(a.statusAddress, { host: '127.0.0.1', port });
  await a.spawn(Prep, { namespace: 'm3' });
  await b.spawn(Prep, { namespace: 'm3' });
  const prep = a.namespace('m3').component('prep').endpoint('tokenize').client<TokenizeRequest, string[]>({ router: 'queue' });
  for (let i = 0; i < 6; i++) await prep.call({ text: 'a' });
  const base = `http://127.0.0.1:${port}`;
  assert.is((await get(`${base}/live`)).status, 200);
  const m = await get(`${base}/metrics`);
  assert.is(m.status, 200);
  assert.is(sample(m.body, 'troupe_requests_total', { namespace: 'm3', endpoint: 'tokenize' }), 6, 'both runtimes summed');
  const h = await get(`${base}/health`);
  assert.is(h.status, 200, h.body);
  const health = JSON.parse(h.body) as { status: string; runtimes: Array<{ instances: Array<{ serving: boolean; endpoints: Array<{ name: string }> }> }> };
  assert.is(health.status, 'ready');
  assert.is(health.runtimes.length, 2);
  assert.equal(health.runtimes[0]?.instances[0]?.endpoints.map((e) => e.name).sort(), ['health', 'tokenize']);
  assert.is((await get(`${base}/nope`)).status, 404);
  await b.close();
  assert.is((await get(`${base}/live`)).status, 200, 'the server stays while a runtime uses it');
  await a.close();
  const gone = await get(`${base}/live`).then(
    () => 'answered',
    (e: NodeJS.ErrnoException) => e.code,
  );
  assert.is(gone, 'ECONNREFUSED', 'the last runtime closed the server');
});

s.run();
