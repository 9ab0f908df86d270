import OpenAI, { type APIError } from 'openai';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { waitFor, within } from '@troupe/testing';
import type { Pipeline } from './pipeline';
import { GenerationEvents, type GenerationEvent } from './protocol';
import { chatBody, MODEL, openaiFor, sseEvents, startEmbedded } from './test-support';
import { applyChatTemplate, encode } from './tokenizer';

// The embedded pipeline (frontend, KV router, prefill, 2 decode workers in one process)
// driven through its OpenAI-compatible API with the official `openai` client.

const messages = [
  { role: 'system' as const, content: 'You are a keeper of lighthouses.' },
  { role: 'user' as const, content: 'Tell me about the tides in the bay.' },
];

const api = suite<{ p?: Pipeline; client?: OpenAI }>('llm api - embedded');
api.before(async (ctx) => {
  ctx.p = await startEmbedded();
  ctx.client = openaiFor(ctx.p.url as string);
});
api.after(async (ctx) => {
  await ctx.p?.stop();
});

api('GET /v1/models lists the model the decode workers serve (from discovery properties)', async (ctx) => {
  const list = await (ctx.client as OpenAI).models.list();
  assert.equal(
    list.data.map((m) => m.id),
    [MODEL],
  );
  assert.is(list.data[0]?.object, 'model');
  const created = list.data[0]?.created ?? 0;
  assert.ok(created > 1_700_000_000 && created <= Date.now() / 1000, `created ${created}: when the serving workers started`);
});

api('chat completion: text, finish reason and usage counted with the real tokenizer', async (ctx) => {
  const r = await (ctx.client as OpenAI).chat.completions.create({ model: MODEL, messages, max_tokens: 24, seed: 42, temperature: 0.8 });
  const choice = r.choices[0];
  assert.ok(choice, 'one choice');
  assert.is(r.object, 'chat.completion');
  assert.match(r.id, /^chatcmpl-/);
  assert.is(choice.message.role, 'assistant');
  assert.ok((choice.message.content ?? '').length > 0, 'some text');
  assert.is(r.usage?.prompt_tokens, applyChatTemplate(messages).length);
  if (choice.finish_reason === 'length') assert.is(r.usage?.completion_tokens, 24);
  else assert.is(choice.finish_reason, 'stop');
  assert.is(r.usage?.total_tokens, (r.usage?.prompt_tokens ?? 0) + (r.usage?.completion_tokens ?? 0));
});

api('streaming chat: role first, deltas, a finish chunk, the usage chunk, and the same text as without streaming', async (ctx) => {
  const client = ctx.client as OpenAI;
  const whole = await client.chat.completions.create({ model: MODEL, messages, max_completion_tokens: 40, seed: 7 });
  const stream = await client.chat.completions.create({
    model: MODEL,
    messages,
    max_completion_tokens: 40,
    seed: 7,
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
  for await (const c of stream) chunks.push(c);
  assert.is(chunks[0]?.choices[0]?.delta.role, 'assistant');
  const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
  assert.is(text, whole.choices[0]?.message.content);
  const deltas = chunks.filter((c) => (c.choices[0]?.delta.content ?? '') !== '').length;
  assert.ok(deltas > 5, `streamed in ${deltas} deltas`);
  const finish = chunks.filter((c) => c.choices[0]?.finish_reason);
  assert.is(finish.length, 1);
  assert.is(finish[0]?.choices[0]?.finish_reason, whole.choices[0]?.finish_reason);
  const last = chunks.at(-1);
  assert.equal(last?.choices, []);
  assert.equal(last?.usage, whole.usage);
});

api('seeded determinism: the same seed gives the same text, other seeds other texts', async (ctx) => {
  const client = ctx.client as OpenAI;
  const run = async (seed: number) =>
    (await client.chat.completions.create({ model: MODEL, messages, max_tokens: 30, seed, temperature: 1 })).choices[0]?.message.content;
  const a = await run(1234);
  assert.is(await run(1234), a);
  const others = await Promise.all([1, 2, 3].map(run));
  assert.ok(
    others.some((o) => o !== a),
    'at least one other seed differs',
  );
});

api('completions: streaming and non-streaming agree; max_tokens bounds the output', async (ctx) => {
  const client = ctx.client as OpenAI;
  const prompt = 'The keeper climbed the stairs';
  const whole = await client.completions.create({ model: MODEL, prompt, max_tokens: 12, seed: 3 });
  assert.is(whole.object, 'text_completion');
  assert.is(whole.usage?.prompt_tokens, encode(prompt).length);
  assert.ok((whole.usage?.completion_tokens ?? 0) <= 12);
  const stream = await client.completions.create({ model: MODEL, prompt, max_tokens: 12, seed: 3, stream: true });
  let text = '';
  for await (const c of stream) text += c.choices[0]?.text ?? '';
  assert.is(text, whole.choices[0]?.text);
});

api('an emoji the model emits as three partial tokens streams as one whole character, never U+FFFD', async (ctx) => {
  const client = ctx.client as OpenAI;
  const prompt = 'Beside the specials she drew a little wave,'; // the corpus goes on " 🌊," — three tokens, none a whole character
  const stream = await client.completions.create({ model: MODEL, prompt, max_tokens: 6, temperature: 0, stream: true });
  const deltas: string[] = [];
  for await (const c of stream) deltas.push(c.choices[0]?.text ?? '');
  assert.ok(
    deltas.some((d) => d.includes('🌊')),
    `an intact wave in ${JSON.stringify(deltas)}`,
  );
  assert.not.ok(
    deltas.some((d) => d.includes('\uFFFD')),
    `no broken character in ${JSON.stringify(deltas)}`,
  );
  const whole = await client.completions.create({ model: MODEL, prompt, max_tokens: 6, temperature: 0 });
  assert.is(deltas.join(''), whole.choices[0]?.text);
  assert.is(whole.usage?.completion_tokens, 6);
});

api('stop sequences end the text before the stop string, with finish_reason stop', async (ctx) => {
  const client = ctx.client as OpenAI;
  const free = (await client.chat.completions.create({ model: MODEL, messages, max_tokens: 60, seed: 11, temperature: 0.7 })).choices[0]?.message.content ?? '';
  const words = free.split(' ').filter((w) => w.length > 3);
  const stop = words[Math.floor(words.length / 2)] as string;
  assert.ok(stop, `a word to stop at in ${JSON.stringify(free)}`);
  const cut = free.slice(0, free.indexOf(stop));
  const r = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 60, seed: 11, temperature: 0.7, stop: [stop] });
  assert.is(r.choices[0]?.message.content, cut);
  assert.is(r.choices[0]?.finish_reason, 'stop');
  const s = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 60, seed: 11, temperature: 0.7, stop, stream: true });
  let text = '';
  let reason: string | null | undefined;
  for await (const c of s) {
    text += c.choices[0]?.delta.content ?? '';
    reason ??= c.choices[0]?.finish_reason;
  }
  assert.is(text, cut);
  assert.is(reason, 'stop');
});

api('errors: 400 for a bad request (n=2, bad JSON, bad temperature), 404 for an unknown model', async (ctx) => {
  const client = ctx.client as OpenAI;
  const url = (ctx.p as Pipeline).url as string;
  try {
    await client.chat.completions.create({ model: MODEL, messages, n: 2 });
    assert.unreachable('n=2 accepted');
  } catch (err) {
    assert.instance(err, OpenAI.BadRequestError);
    assert.is((err as APIError).param, 'n');
  }
  try {
    await client.chat.completions.create({ model: 'gpt-17', messages });
    assert.unreachable('unknown model accepted');
  } catch (err) {
    assert.instance(err, OpenAI.NotFoundError);
    assert.is((err as APIError).code, 'model_not_found');
  }
  const raw = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":' });
  assert.is(raw.status, 400);
  assert.is(((await raw.json()) as { error: { type: string } }).error.type, 'invalid_request_error');
  const hot = await fetch(`${url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify(chatBody('x', { temperature: 9, stream: true })) });
  assert.is(hot.status, 400, 'a streaming request is validated before any SSE');
  assert.is((await fetch(`${url}/v1/nothing`)).status, 404);
  try {
    await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'harbour '.repeat(20_000) }] });
    assert.unreachable('a prompt past the context accepted');
  } catch (err) {
    assert.instance(err, OpenAI.BadRequestError);
    assert.is((err as APIError).code, 'context_length_exceeded');
  }
  const huge = await fetch(`${url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: MODEL, prompt: 'x'.repeat(2_000_000) }) });
  assert.is(huge.status, 413);
});

api('closing the HTTP connection mid-stream aborts the decode handler within 500 ms', async (ctx) => {
  const p = ctx.p as Pipeline;
  const events: Array<GenerationEvent & { receivedAt: number }> = [];
  const sub = p.runtime
    .namespace(p.config.namespace)
    .component('decode')
    .events(GenerationEvents)
    .subscribe((e) => events.push({ ...e.data, receivedAt: Date.now() }));
  try {
    const abort = new AbortController();
    const res = await fetch(`${p.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify(chatBody('Tell me a long story.', { stream: true, max_tokens: 4000, ignore_eos: true })),
      signal: abort.signal,
    });
    assert.is(res.status, 200);
    let id = '';
    let contentChunks = 0;
    for await (const ev of sseEvents(res)) {
      id = (ev as { id: string }).id;
      if ((ev as { choices: Array<{ delta: { content?: string } }> }).choices[0]?.delta.content) contentChunks++;
      if (contentChunks === 3) break;
    }
    const closedAt = Date.now();
    abort.abort();
    await waitFor(() => events.some((e) => e.requestId === id && e.phase === 'aborted'), 2_000, `an 'aborted' report for ${id}`);
    const aborted = events.find((e) => e.requestId === id && e.phase === 'aborted') as GenerationEvent & { receivedAt: number };
    const latency = aborted.at - closedAt;
    console.log(`llm: HTTP close -> decode handler aborted in ${latency} ms (embedded)`);
    assert.ok(latency <= 500, `aborted ${latency} ms after the close`);
    assert.not.ok(
      events.some((e) => e.requestId === id && e.phase === 'end'),
      'the generation did not run to its end',
    );
  } finally {
    sub.unsubscribe();
  }
});

api.run();

const faults = suite<{ pipelines: Pipeline[] }>('llm api - failure statuses', { pipelines: [] });
faults.after.each(async (ctx) => {
  await Promise.all(ctx.pipelines.splice(0).map((p) => p.stop()));
});

faults('503 when no decode worker serves any model; 503 when no router instance exists', async (ctx) => {
  const noDecode = await startEmbedded({ roles: ['frontend', 'router', 'prefill'] });
  ctx.pipelines.push(noDecode);
  try {
    await openaiFor(noDecode.url as string).chat.completions.create({ model: MODEL, messages });
    assert.unreachable('served without decode workers');
  } catch (err) {
    assert.instance(err, OpenAI.APIError);
    assert.is((err as APIError).status, 503);
  }
  const noRouter = await startEmbedded({ roles: ['frontend', 'decode'] });
  ctx.pipelines.push(noRouter);
  await waitFor(() => (noRouter.frontend?.models().length ?? 0) > 0, 2_000, 'the frontend to see the decode workers');
  try {
    await openaiFor(noRouter.url as string).chat.completions.create({ model: MODEL, messages, stream: true });
    assert.unreachable('served without a router');
  } catch (err) {
    assert.instance(err, OpenAI.APIError);
    assert.is((err as APIError).status, 503);
    assert.is((err as APIError).code, 'no_instances');
  }
});

faults('429 when the decode worker is full (OVERLOADED at once, not queued)', async (ctx) => {
  const p = await startEmbedded({ replicas: { frontend: 1, router: 1, prefill: 1, decode: 1 }, decodeConcurrency: 1, decodeCapacity: 0, decodeStepMs: 20 });
  ctx.pipelines.push(p);
  const client = openaiFor(p.url as string);
  const first = await client.chat.completions.create({
    model: MODEL,
    messages,
    stream: true,
    max_tokens: 200,
    ignore_eos: true,
  } as OpenAI.Chat.ChatCompletionCreateParamsStreaming);
  const it = first[Symbol.asyncIterator]();
  await it.next(); // the first is being served
  const t0 = Date.now();
  try {
    await client.chat.completions.create({ model: MODEL, messages, max_tokens: 5 });
    assert.unreachable('a second request was accepted by a full worker');
  } catch (err) {
    assert.instance(err, OpenAI.RateLimitError);
    assert.is((err as APIError).status, 429);
  }
  assert.ok(Date.now() - t0 < 1_000, 'refused at once');
  await it.return?.();
});

faults('504 when the deadline passes before the first token; after the first chunk a timeout is an SSE error event, never a hang', async (ctx) => {
  const p = await startEmbedded({ timeoutMs: 600, decodeStepMs: 50, prefillUsPerToken: 60_000 });
  ctx.pipelines.push(p);
  const client = openaiFor(p.url as string);
  try {
    await client.chat.completions.create({ model: MODEL, messages, max_tokens: 100, ignore_eos: true } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
    assert.unreachable('finished within a 600 ms deadline');
  } catch (err) {
    assert.instance(err, OpenAI.APIError);
    assert.is((err as APIError).status, 504, String(err));
  }
  const fast = await startEmbedded({ timeoutMs: 600, decodeStepMs: 50 });
  ctx.pipelines.push(fast);
  const stream = await openaiFor(fast.url as string).chat.completions.create({
    model: MODEL,
    messages,
    max_tokens: 100,
    stream: true,
    ignore_eos: true,
  } as OpenAI.Chat.ChatCompletionCreateParamsStreaming);
  let text = '';
  const t0 = Date.now();
  const failure = await within(
    (async () => {
      try {
        for await (const c of stream) text += c.choices[0]?.delta.content ?? '';
        return undefined;
      } catch (err) {
        return err;
      }
    })(),
    5_000,
    'the stream to end',
  );
  assert.ok(text.length > 0, 'some text before the failure');
  assert.instance(failure, OpenAI.APIError);
  assert.is((failure as APIError).code, 'timeout', String(failure));
  // Whichever hop's deadline fires first (the frontend's, or the router's nested call with the remaining budget).
  assert.match(String((failure as APIError).message), /within \d+ ms|deadline/);
  assert.ok(Date.now() - t0 < 3_000, 'ended at the deadline (600 ms), with slack for a loaded machine');
});

faults('the router modes (kv, round-robin, queue) serve the same seeded text', async (ctx) => {
  const texts: string[] = [];
  for (const router of ['kv', 'round-robin', 'queue'] as const) {
    const p = await startEmbedded({ router });
    ctx.pipelines.push(p);
    const r = await openaiFor(p.url as string).chat.completions.create({ model: MODEL, messages, max_tokens: 20, seed: 5 });
    texts.push(r.choices[0]?.message.content ?? '');
  }
  assert.ok((texts[0] as string).length > 0);
  assert.equal(texts, [texts[0], texts[0], texts[0]]);
});

faults(
  'a shutdown past its grace stops in-flight generations: the SSE response ends cleanly (finish chunk, [DONE]) and decode ends, not aborted',
  async (ctx) => {
    const p = await startEmbedded({ decodeStepMs: 10 });
    ctx.pipelines.push(p);
    const events: GenerationEvent[] = [];
    const sub = p.runtime
      .namespace(p.config.namespace)
      .component('decode')
      .events(GenerationEvents)
      .subscribe((e) => events.push(e.data));
    try {
      const res = await fetch(`${p.url}/v1/chat/completions`, {
        method: 'POST',
        body: JSON.stringify(chatBody('Tell me a long story.', { stream: true, max_tokens: 4000, ignore_eos: true })),
      });
      assert.is(res.status, 200);
      const reader = sseEvents(res);
      const first = (await within(reader.next(), 5_000, 'the first chunk')).value as { id: string };
      // A 100 ms grace: the 4000-token generation (40 s) cannot finish in it, so the frontend stops it.
      const stopping = (p.frontend as NonNullable<Pipeline['frontend']>).stop(100);
      const rest: unknown[] = [];
      await within(
        (async () => {
          for await (const ev of reader) rest.push(ev);
        })(),
        5_000,
        'the response to end',
      );
      await within(stopping, 5_000, 'the frontend to stop');
      const finish = rest.map((ev) => (ev as { choices: Array<{ finish_reason?: string | null }> }).choices[0]?.finish_reason).filter((r) => r);
      assert.equal(finish, ['length'], 'one finish chunk: the response ended cleanly');
      await waitFor(() => events.some((e) => e.requestId === first.id && e.phase === 'end'), 2_000, `an 'end' report for ${first.id}`);
      assert.not.ok(
        events.some((e) => e.requestId === first.id && e.phase === 'aborted'),
        'the generation was stopped, not killed',
      );
    } finally {
      sub.unsubscribe();
    }
  },
);

faults.run();
