import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BlockCache, blockHashes, chainRefs } from './blocks';
import { parseConfig } from './config';
import { KvIndex, kvRouter } from './kv-index';
import { NgramModel } from './model';
import { parseRequest } from './openai';
import { TextOutput } from './text-output';
import { applyChatTemplate, decode, Detokenizer, encode, EOS } from './tokenizer';
import type { InstanceRecord } from '@troupe/runtime';
import * as cl100k from 'gpt-tokenizer/cjs/encoding/cl100k_base';

test('tokenizer - the detokenizer never splits a multi-byte character across deltas', () => {
  const text = 'Zoë 🙂 said “soupe à l’oignon” 🌊🌊 and 灯台.';
  const ids = encode(text);
  assert.ok(
    ids.some((t) => decode([t]).includes('\uFFFD')),
    'the text has tokens that end inside a character',
  );
  assert.is(decode(ids), text, 'decoding is stateless: the broken characters above left nothing behind');
  const d = new Detokenizer();
  const deltas = ids.map((t) => d.push(t));
  deltas.push(d.flush());
  for (const delta of deltas) assert.not.ok(delta.includes('\uFFFD'), `broken character in delta ${JSON.stringify(delta)}`);
  assert.is(deltas.join(''), text);
});

test('tokenizer - the chat template wraps messages in ChatML and user text never becomes a control token', () => {
  const msgs = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'hi' },
  ] as const;
  assert.equal(applyChatTemplate(msgs), cl100k.encodeChat(msgs, 'gpt-4'), "the same ids as gpt-tokenizer's own gpt-4 template");
  const ids = applyChatTemplate([{ role: 'user', content: 'hi <|im_end|>' }]);
  assert.is(decode(ids), '<|im_start|>user<|im_sep|>hi <|im_end|><|im_end|><|im_start|>assistant<|im_sep|>');
  assert.is(ids.filter((t) => t >= 100_000).length, 5, 'start, sep, end, start, sep: the literal "<|im_end|>" in content is ordinary text');
});

test('model - same seed and position give the same token; temperature 0 is greedy', () => {
  const m = NgramModel.load();
  assert.ok(m.vocabulary > 500, `vocabulary ${m.vocabulary}`);
  const ctx = encode('the sea and the');
  const run = (seed: number) => Array.from({ length: 20 }, (_, i) => m.sample(ctx, { seed, position: i, temperature: 1 }));
  assert.equal(run(7), run(7));
  assert.ok(
    [1, 2, 3].some((s) => run(s).join() !== run(7).join()),
    'different seeds differ somewhere',
  );
  const g = m.sample(ctx, { seed: 1, position: 0, temperature: 0 });
  assert.is(m.sample(ctx, { seed: 99, position: 5, temperature: 0 }), g);
});

test('model - the corpus paragraphs end with EOS, so the model can stop', () => {
  const m = NgramModel.fromText('one two three.\n\nfour five six.');
  assert.is(m.sample(encode('one two three.'), { seed: 1, position: 0, temperature: 0 }), EOS);
  assert.is.not(m.sample(encode('one two three.'), { seed: 1, position: 0, temperature: 0, exclude: EOS }), EOS, 'ignore_eos');
});

test('blocks - hashes are chained: equal prefixes share hashes, a change changes every later block', () => {
  const a = Array.from({ length: 64 }, (_, i) => i);
  const b = [...a];
  b[20] = 999;
  const ha = blockHashes(a, 16);
  const hb = blockHashes(b, 16);
  assert.is(ha.length, 4);
  assert.is(blockHashes([...a, 1, 2, 3], 16).length, 4, 'a partial block has no hash');
  assert.is(hb[0], ha[0]);
  for (let i = 1; i < 4; i++) assert.is.not(hb[i], ha[i]);
  assert.ok(ha.every((h) => /^[0-9a-f]{16}$/.test(h)));
});

test('blocks - the LRU cache evicts least recently used blocks and reports them', () => {
  const c = new BlockCache(4);
  const h = blockHashes(
    Array.from({ length: 96 }, (_, i) => i),
    16,
  );
  assert.equal(c.store(chainRefs(h.slice(0, 4))).removed, []);
  assert.is(c.matchPrefix(h), 4);
  c.matchPrefix(h.slice(0, 1)); // block 0 most recent
  const { stored, removed } = c.store(chainRefs(h, 4));
  assert.equal(
    stored.map((b) => b.hash),
    [h[4], h[5]],
  );
  assert.equal(removed, [h[1], h[2]]);
  assert.is(c.free, 0);
  assert.is(c.matchPrefix(h), 1, 'block 1 is gone, so the prefix stops after block 0');
});

test('kv index - overlap counts leading blocks per worker; removal and resync update it', () => {
  const idx = new KvIndex();
  const h = blockHashes(
    Array.from({ length: 80 }, (_, i) => i),
    16,
  );
  idx.apply('w1', { stored: chainRefs(h.slice(0, 4)), removed: [] });
  idx.apply('w2', { stored: chainRefs(h.slice(0, 2)), removed: [] });
  assert.equal(Object.fromEntries(idx.overlap(h)), { w1: 4, w2: 2 });
  idx.apply('w1', { stored: [], removed: [h[1] as string] });
  assert.equal(Object.fromEntries(idx.overlap(h)), { w1: 1, w2: 2 });
  idx.resync('w2', []);
  assert.equal(Object.fromEntries(idx.overlap(h)), { w1: 1 });
  idx.forget('w1');
  assert.equal(idx.overlap(h).size, 0);
  assert.equal(idx.workers, ['w2']);
});

test('kv router - prefers the worker holding the prefix, unless its load outweighs the overlap', () => {
  const idx = new KvIndex();
  const tokens = Array.from({ length: 160 }, (_, i) => i); // 10 blocks
  const h = blockHashes(tokens, 16);
  idx.apply('a', { stored: chainRefs(h), removed: [] });
  const inst = (id: string, active: number) => ({ instanceId: id, properties: { active } }) as unknown as InstanceRecord;
  const ctx = { inflight: () => 0, next: () => 0 };
  const req = { requestId: 'r', tokens, promptTokens: 160, maxTokens: 1, temperature: 0, seed: 0 };
  const r = kvRouter(idx, { blockSize: 16, loadWeight: 4 });
  assert.is(r.pick([inst('a', 1), inst('b', 0)], req, ctx), 'a', '10 cached blocks beat 1 active sequence');
  assert.is(r.pick([inst('a', 5), inst('b', 0)], req, ctx), 'b', '5 active sequences (20) outweigh 10 blocks');
  const empty = kvRouter(new KvIndex(), { blockSize: 16, loadWeight: 4 });
  assert.is(empty.pick([inst('a', 3), inst('b', 1)], req, ctx), 'b', 'no index: least loaded');
});

test('text output - a stop sequence is never sent, even when it arrives split across tokens', () => {
  const out = new TextOutput(['the moon']);
  const ids = encode('pulling at the water, and the moon pulls');
  let sent = '';
  let done = false;
  for (const t of ids) {
    const r = out.push(t);
    sent += r.text;
    if ((done = r.done)) break;
  }
  assert.ok(done);
  assert.is(sent, 'pulling at the water, and ');
  assert.is(out.finishReason, 'stop');
  const plain = new TextOutput([]);
  let all = '';
  for (const t of encode('abc def')) all += plain.push(t).text;
  const end = plain.finish();
  assert.is(all + end.text, 'abc def');
  assert.is(end.reason, 'length');
});

test('openai - bad requests are typed BAD_REQUEST errors naming the field', () => {
  const cases: Array<[unknown, string]> = [
    [null, 'body'],
    [{ messages: [{ role: 'user', content: 'x' }] }, 'model'],
    [{ model: 'm', messages: [] }, 'messages'],
    [{ model: 'm', messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role'],
    [{ model: 'm', messages: [{ role: 'user', content: 'x' }], n: 2 }, 'n'],
    [{ model: 'm', messages: [{ role: 'user', content: 'x' }], temperature: 3 }, 'temperature'],
    [{ model: 'm', messages: [{ role: 'user', content: 'x' }], max_tokens: 0 }, 'max_tokens'],
    [{ model: 'm', messages: [{ role: 'user', content: 'x' }], max_completion_tokens: 1.5 }, 'max_completion_tokens'],
    [{ model: 'm', messages: [{ role: 'user', content: 'x' }], stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
    [{ model: 'm', messages: [{ role: 'user', content: 'x' }], seed: 'x' }, 'seed'],
    [{ model: 'm', messages: [{ role: 'user', content: 'x' }], stream_options: { include_usage: true } }, 'stream_options'],
  ];
  for (const [body, param] of cases) {
    try {
      parseRequest('chat', body);
      assert.unreachable(`accepted ${JSON.stringify(body)}`);
    } catch (err) {
      assert.is((err as { code?: string }).code, 'BAD_REQUEST', JSON.stringify(body));
      assert.is((err as { data?: { param?: string } }).data?.param, param);
    }
  }
  const ok = parseRequest('completion', { model: 'm', prompt: ['p'], max_tokens: 5, stop: 'x', seed: 3 });
  assert.equal([ok.prompt, ok.maxTokens, ok.stop, ok.seed], ['p', 5, ['x'], 3]);
});

test('config - roles, replicas and bad options', () => {
  const c = parseConfig(['--role', 'decode', '--replicas', '3', '--router', 'round-robin', '--no-migrate'], { PORT: '9000' });
  assert.equal([c.roles, c.replicas.decode, c.router, c.migrate, c.port, c.natsUrl], [['decode'], 3, 'round-robin', false, 9000, undefined]);
  assert.equal(parseConfig([], {}).roles, ['frontend', 'router', 'prefill', 'decode']);
  assert.throws(() => parseConfig(['--role', 'chef'], {}), /--role must be one of/);
  assert.throws(() => parseConfig(['--replicas', '0'], {}), /integer ≥ 1/);
  assert.throws(() => parseConfig(['--bogus'], {}), /unknown option/);
});

test.run();
