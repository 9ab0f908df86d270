import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const MAIN = join(__dirname, '..', '..', '..', 'examples', 'echo', 'dist', 'main.js');

/** Runs the example as a user would; resolves with its output, bounded. */
function runExample(env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`example did not finish within 20 s; output so far:\n${out}`));
    }, 20_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

test('example - the main job runs on the embedded runtime by default', async () => {
  const env = { ...process.env };
  delete env.NATS_URL;
  const { code, out } = await runExample(env);
  assert.is(code, 0, out);
  assert.match(out, /on memory network/);
  assert.match(out, /stream {2}-> 9 tokens/);
  assert.match(out, /answered by 2 instance\(s\)/);
  assert.match(out, /direct {2}-> reached/);
});

test('example - the same code runs on NATS when NATS_URL is set', async () => {
  const { code, out } = await runExample({ ...process.env, NATS_URL: process.env.NATS_URL ?? 'nats://127.0.0.1:4222' });
  assert.is(code, 0, out);
  assert.match(out, /on nats /);
  assert.match(out, /direct {2}-> reached/);
});

test.run();
