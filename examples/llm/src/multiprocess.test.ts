import { join } from 'node:path';
import type OpenAI from 'openai';
import { APIError } from 'openai';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Runtime } from '@troupe/runtime';
import { NatsServer, waitFor, within, WorkerProcess } from '@troupe/testing';
import { GenerationEvents, type DecodeStats, type GenerationEvent } from './protocol';
import { chatBody, MODEL, openaiFor, sseEvents } from './test-support';
import { applyChatTemplate } from './tokenizer';

// Each component in its own process on NATS, started with the real command
// (`node examples/llm/dist/main.js --role … `): a frontend, a router, two
// prefill and two decode workers, on a private nats-server (JetStream on).

const MAIN = join(__dirname, 'main.js');
// Slow enough that a stream is still running when a worker is killed, fast enough for a test.
const COMMON = ['--decode-step-ms', '15', '--prefill-us-per-token', '100', '--block-size', '16'];

type Received = GenerationEvent & { receivedAt: number };

interface Topology {
  procs: Record<string, WorkerProcess>;
  url: string;
}

async function startRole(natsUrl: string, ns: string, role: string, extra: string[] = []): Promise<WorkerProcess> {
  return WorkerProcess.start(MAIN, {
    args: ['--role', role, '--namespace', ns, '--port', '0', ...COMMON, ...extra],
    env: { NATS_URL: natsUrl, TROUPE_LOG: 'warn' },
    readyTimeoutMs: 30_000,
  });
}

/** Starts the topology; resolves once the frontend lists the model and the router sees both decode workers. */
async function startTopology(natsUrl: string, caller: Runtime, ns: string, roles: Record<string, { role: string; extra?: string[] }>): Promise<Topology> {
  const entries = await Promise.all(Object.entries(roles).map(async ([name, r]) => [name, await startRole(natsUrl, ns, r.role, r.extra)] as const));
  const procs = Object.fromEntries(entries);
  const fe = Object.values(procs).find((p) => typeof p.ready['url'] === 'string') as WorkerProcess;
  const url = fe.ready['url'] as string;
  const decoders = Object.values(roles).filter((r) => r.role === 'decode').length;
  await caller.namespace(ns).component('decode').endpoint('generate').client().waitForInstances(decoders, { timeout: 10_000 });
  await caller.namespace(ns).component('router').endpoint('generate').client().waitForInstances(1, { timeout: 10_000 });
  // The frontend's own view (its watch) may trail the caller's by a heartbeat.
  for (const until = Date.now() + 10_000; ;) {
    const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: Array<{ id: string }> };
    if (models.data.length > 0) break;
    if (Date.now() > until) throw new Error('the frontend never listed a model');
    await new Promise((r) => setTimeout(r, 50));
  }
  return { procs, url };
}

function watchGenerations(caller: Runtime, ns: string): { events: Received[]; stop: () => void } {
  const events: Received[] = [];
  const sub = caller
    .namespace(ns)
    .component('decode')
    .events(GenerationEvents)
    .subscribe((e) => events.push({ ...e.data, receivedAt: Date.now() }));
  return { events, stop: () => sub.unsubscribe() };
}

const messages = [
  { role: 'system' as const, content: 'You are the harbour master of a small village. '.repeat(12) },
  { role: 'user' as const, content: 'Who measured the tides?' },
];

const s = suite<{ server?: NatsServer; caller?: Runtime; topo?: Topology; client?: OpenAI; extra: WorkerProcess[] }>('llm - multi-process on NATS', {
  extra: [],
});

s.before(async (ctx) => {
  ctx.server = await NatsServer.start({ jetstream: true });
  ctx.caller = await Runtime.connect({ servers: ctx.server.url, name: 'llm-mp-test' });
  ctx.topo = await startTopology(ctx.server.url, ctx.caller, 'mp', {
    frontend: { role: 'frontend' },
    router: { role: 'router' },
    prefill1: { role: 'prefill' },
    prefill2: { role: 'prefill' },
    decode1: { role: 'decode', extra: ['--replicas', '1'] },
    decode2: { role: 'decode', extra: ['--replicas', '1'] },
  });
  ctx.client = openaiFor(ctx.topo.url);
});
s.after(async (ctx) => {
  await Promise.all([...Object.values(ctx.topo?.procs ?? {}), ...ctx.extra].map((p) => p.stop(5_000)));
  await ctx.caller?.close();
  await ctx.server?.stop();
});

s('openai client: models, a chat completion and a stream with usage, through six processes', async (ctx) => {
  const client = ctx.client as OpenAI;
  assert.equal(
    (await client.models.list()).data.map((m) => m.id),
    [MODEL],
  );
  const listed = await (ctx.caller as Runtime).instances('mp');
  const components = new Set(listed.map((x) => x.component));
  assert.equal([...components].sort(), ['decode', 'frontend', 'prefill', 'router']);
  assert.is(listed.find((x) => x.component === 'frontend')?.properties['url'], (ctx.topo as Topology).url, 'the frontend is discoverable with its URL');
  const whole = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 30, seed: 21 });
  assert.ok((whole.choices[0]?.message.content ?? '').length > 0);
  const stream = await client.chat.completions.create({
    model: MODEL,
    messages,
    max_tokens: 30,
    seed: 21,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let usage: OpenAI.CompletionUsage | null | undefined;
  for await (const c of stream) {
    text += c.choices[0]?.delta.content ?? '';
    usage = c.usage ?? usage;
  }
  assert.is(text, whole.choices[0]?.message.content);
  assert.equal(usage, whole.usage);
});

s('a long prompt is prefilled by a prefill worker; the same prefix again is a KV hit on the worker that holds it', async (ctx) => {
  const client = ctx.client as OpenAI;
  const url = (ctx.topo as Topology).url;
  const stats = async () => ((await (await fetch(`${url}/troupe/stats`)).json()) as { decode: DecodeStats[] }).decode;
  const before = await stats();
  const sys = { role: 'system' as const, content: 'The clockmaker repaired every clock in the district. '.repeat(20) };
  await client.chat.completions.create({ model: MODEL, messages: [sys, { role: 'user', content: 'first question' }], max_tokens: 3, seed: 1 });
  const mid = await stats();
  const remote = (xs: DecodeStats[]) => xs.reduce((n, x) => n + x.remotePrefills, 0);
  assert.is(remote(mid) - remote(before), 1, 'one remote prefill');
  // The router put the prompt's blocks on the chosen worker in its index when it routed (its kv_events confirm them later),
  // so a request sharing the system prompt goes to the worker holding it, whenever the events arrive.
  await client.chat.completions.create({ model: MODEL, messages: [sys, { role: 'user', content: 'second, different question' }], max_tokens: 3, seed: 1 });
  const after = await stats();
  const hits = (xs: DecodeStats[]) => xs.reduce((n, x) => n + x.blocksHit, 0);
  const a = applyChatTemplate([sys, { role: 'user', content: 'first question' }]);
  const b = applyChatTemplate([sys, { role: 'user', content: 'second, different question' }]);
  let common = 0;
  while (a[common] === b[common]) common++;
  const shared = Math.floor(common / 16);
  assert.ok(shared >= 10, `${shared} shared blocks`);
  assert.is(hits(after) - hits(mid), shared, 'every shared block was a hit');
  assert.is(remote(after) - remote(mid), 0, 'the few new tokens were prefilled locally');
});

s('closing the HTTP connection mid-stream aborts the decode handler (another process) within 500 ms', async (ctx) => {
  const caller = ctx.caller as Runtime;
  const url = (ctx.topo as Topology).url;
  const gen = watchGenerations(caller, 'mp');
  try {
    const abort = new AbortController();
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify(chatBody('A long story, please.', { stream: true, max_tokens: 4000, ignore_eos: true })),
      signal: abort.signal,
    });
    assert.is(res.status, 200);
    let id = '';
    let n = 0;
    for await (const ev of sseEvents(res)) {
      id = (ev as { id: string }).id;
      if (++n === 4) break;
    }
    const closedAt = Date.now();
    abort.abort();
    try {
      await waitFor(() => gen.events.some((e) => e.requestId === id && e.phase === 'aborted'), 3_000, `the decode worker to report ${id} aborted`);
    } catch (err) {
      const seen = gen.events.filter((e) => e.requestId === id).map((e) => `${e.phase}@${e.instanceId}+${e.at - closedAt}ms`);
      throw new Error(
        `${(err as Error).message}; its events: ${seen.join(', ') || 'none'}; frontend log:\n${(ctx.topo as Topology).procs['frontend']?.log}\nrouter log:\n${(ctx.topo as Topology).procs['router']?.log}`,
      );
    }
    const ev = gen.events.find((e) => e.requestId === id && e.phase === 'aborted') as Received;
    const latency = ev.at - closedAt;
    console.log(`llm: HTTP close -> decode handler aborted in ${latency} ms (frontend, router, decode in 3 processes)`);
    assert.ok(latency <= 500, `aborted ${latency} ms after the close`);
  } finally {
    gen.stop();
  }
});

s('kill -9 of the decode worker serving a stream: the stream completes on the other worker, every token exactly once', async (ctx) => {
  const client = ctx.client as OpenAI;
  const caller = ctx.caller as Runtime;
  const topo = ctx.topo as Topology;
  // ignore_eos (vLLM's extension): the text runs to its length, so the kill lands mid-stream.
  const req = { model: MODEL, messages, max_tokens: 120, seed: 99, temperature: 1, ignore_eos: true };
  const reference = await client.chat.completions.create(req as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
  assert.is(reference.choices[0]?.finish_reason, 'length');
  const refText = reference.choices[0]?.message.content ?? '';
  const gen = watchGenerations(caller, 'mp');
  try {
    const stream = await client.chat.completions.create({
      ...req,
      stream: true,
      stream_options: { include_usage: true },
    } as OpenAI.Chat.ChatCompletionCreateParamsStreaming);
    const deltas: string[] = [];
    let id = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    let killedAt = 0;
    let victim: WorkerProcess | undefined;
    for await (const c of stream) {
      id = c.id;
      usage = c.usage ?? usage;
      const d = c.choices[0]?.delta.content;
      if (d) deltas.push(d);
      if (deltas.length === 15 && !victim) {
        const started = gen.events.find((e) => e.requestId === id && e.phase === 'start');
        assert.ok(started, 'the serving worker reported the start');
        victim = Object.values(topo.procs).find((p) => p.pid === started.pid);
        assert.ok(victim, `a decode process with pid ${started.pid}`);
        killedAt = Date.now();
        await victim.kill('SIGKILL');
      }
    }
    const starts = gen.events.filter((e) => e.requestId === id && e.phase === 'start');
    console.log(
      `llm: kill -9 after 15 deltas -> migrated to ${starts.at(-1)?.instanceId} in ${(starts.at(-1)?.receivedAt ?? 0) - killedAt} ms; ${deltas.length} deltas`,
    );
    assert.is(deltas.join(''), refText, 'the migrated stream is the same text, gap-free and duplicate-free');
    assert.equal(usage, reference.usage);
    assert.is(starts.length, 2, 'a second decode worker took over');
    assert.is.not(starts[0]?.instanceId, starts[1]?.instanceId);
    // A replacement, so the topology has two decode workers again.
    ctx.extra.push(await startRole((ctx.server as NatsServer).url, 'mp', 'decode', ['--replicas', '1']));
  } finally {
    gen.stop();
  }
});

s('with migration off, kill -9 of the serving decode worker ends the stream with an error event within 2 s', async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const caller = ctx.caller as Runtime;
  const topo = await startTopology(url, caller, 'mp-nomig', {
    edge: { role: 'frontend,router', extra: ['--no-migrate'] },
    decode1: { role: 'decode', extra: ['--replicas', '1'] },
    decode2: { role: 'decode', extra: ['--replicas', '1'] },
  });
  ctx.extra.push(...Object.values(topo.procs));
  const gen = watchGenerations(caller, 'mp-nomig');
  try {
    const stream = await openaiFor(topo.url).chat.completions.create({
      model: MODEL,
      messages,
      max_tokens: 400,
      stream: true,
      ignore_eos: true,
    } as OpenAI.Chat.ChatCompletionCreateParamsStreaming);
    let deltas = 0;
    let killedAt = 0;
    const failure = await within(
      (async () => {
        try {
          for await (const c of stream) {
            if (c.choices[0]?.delta.content) deltas++;
            if (deltas === 10 && killedAt === 0) {
              const started = gen.events.find((e) => e.requestId === c.id && e.phase === 'start') as Received;
              killedAt = Date.now();
              await (Object.values(topo.procs).find((p) => p.pid === started.pid) as WorkerProcess).kill('SIGKILL');
            }
          }
          return undefined;
        } catch (err) {
          return err;
        }
      })(),
      10_000,
      'the stream to end',
    );
    const latency = Date.now() - killedAt;
    console.log(`llm: kill -9 without migration -> SSE error event ${latency} ms after the kill`);
    assert.ok(killedAt > 0, `the worker was killed (after ${deltas} deltas)`);
    assert.instance(failure, APIError, `the stream ended with ${String(failure)} after ${deltas} deltas`);
    assert.is((failure as APIError).code, 'instance_lost');
    assert.ok(latency < 2_000, `error after ${latency} ms`);
  } finally {
    gen.stop();
  }
});

s.run();
