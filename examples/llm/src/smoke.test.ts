import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { waitFor, within } from '@troupe/testing';

// The README's main command, as a user runs it: `node examples/llm/dist/main.js`
// (what `pnpm start` runs after building), then `curl -N` against it.

const MAIN = join(__dirname, 'main.js');

test('smoke - main.js starts the embedded pipeline, curl -N streams tokens, SIGINT lets the in-flight stream finish and exits 0', async () => {
  const env = { ...process.env };
  delete env['NATS_URL'];
  env['PORT'] = '0'; // OS-assigned: another engineer's run may hold 8080
  const child: ChildProcess = spawn(process.execPath, [MAIN], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    await waitFor(() => /listening on http:\/\/\S+/.test(out) && /try: curl -N .*\n/.test(out), 15_000, `the "listening on" and curl lines; output:\n${out}`);
    const url = (/listening on (http:\/\/\S+)/.exec(out) as RegExpExecArray)[1] as string;
    assert.match(out, /model: troupe-ngram/);
    assert.match(out, /curl -N /, 'prints a curl line');
    const body = JSON.stringify({
      model: 'troupe-ngram',
      stream: true,
      max_tokens: 20,
      seed: 5,
      messages: [{ role: 'user', content: 'Tell me about the lighthouse.' }],
    });
    const sse = await within(
      new Promise<string>((resolve, reject) =>
        execFile('curl', ['-sN', '--max-time', '20', `${url}/v1/chat/completions`, '-H', 'content-type: application/json', '-d', body], (err, stdout) =>
          err ? reject(err) : resolve(stdout),
        ),
      ),
      25_000,
      'curl to finish',
    );
    const events = sse.split('\n\n').filter((e) => e.startsWith('data: '));
    assert.is(events.at(-1), 'data: [DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)) as { choices: Array<{ delta: { content?: string }; finish_reason: string | null }> });
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    assert.ok(chunks.filter((c) => c.choices[0]?.delta.content).length >= 5, `tokens streamed as separate chunks: ${sse}`);
    assert.ok(text.trim().length > 0);
    assert.ok(chunks.some((c) => c.choices[0]?.finish_reason === 'length' || c.choices[0]?.finish_reason === 'stop'));
    // Ctrl-C with a stream in flight: the stream finishes (drain), then the process exits 0.
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'troupe-ngram', stream: true, max_tokens: 60, ignore_eos: true, messages: [{ role: 'user', content: 'Go on.' }] }),
    });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const utf8 = new TextDecoder();
    let streamed = utf8.decode((await reader.read()).value);
    child.kill('SIGINT');
    for (;;) {
      const { value, done } = await within(reader.read(), 10_000, 'the in-flight stream to go on after SIGINT');
      if (done) break;
      streamed += utf8.decode(value, { stream: true });
    }
    assert.match(streamed, /"finish_reason":"length"/, 'the in-flight stream ran to its end');
    assert.ok(streamed.trimEnd().endsWith('data: [DONE]'));
    const code = await within(exited, 15_000, 'the process to exit after SIGINT');
    assert.is(code, 0, out);
    assert.match(out, /SIGINT: draining/);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});

test.run();
