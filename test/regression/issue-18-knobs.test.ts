import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { component, type Context, endpoint, type Logger, Runtime } from '@troupe/runtime';

const FIXTURE = join(__dirname, 'fixtures', 'issue-18-ctrl-c.js');

/** Waits for `pattern` in a growing text, bounded. */
function waitForOutput(read: () => string, pattern: RegExp, ms: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = setInterval(() => {
      if (pattern.test(read())) {
        clearInterval(tick);
        resolve();
      } else if (Date.now() - t0 > ms) {
        clearInterval(tick);
        reject(new Error(`${what} did not appear within ${ms} ms; output:\n${read()}`));
      }
    }, 20);
  });
}

test('issue 18 - Ctrl-C with a stream in flight says what it drains; a second Ctrl-C exits 130 at once', async () => {
  // The default log level (no TROUPE_LOG): the drain line must show anyway.
  const env = { ...process.env };
  delete env.TROUPE_LOG;
  const child = spawn(process.execPath, [FIXTURE], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  try {
    await waitForOutput(() => out, /ready/, 10_000, 'the fixture stream');
    child.kill('SIGINT');
    await waitForOutput(() => err, /draining/, 2_000, 'the drain line');
    assert.match(err, /closing on SIGINT: draining 1 in-flight request \(grace period 10 s; Ctrl-C again to exit now\)/);
    assert.match(err, /"level":"warn"/, 'shown at the default level');
    const t0 = Date.now();
    child.kill('SIGINT');
    const { code } = await Promise.race([
      exited,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no exit within 3 s of the second SIGINT; stderr:\n${err}`)), 3_000)),
    ]);
    assert.is(code, 130, `exit code: ${String(code)}\n${err}`);
    assert.ok(Date.now() - t0 < 3_000, 'at once, not after the 10 s grace period');
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});

interface Line {
  level: string;
  msg: string;
  [k: string]: unknown;
}
function capture(lines: Line[], fields: Record<string, unknown> = {}): Logger {
  const at = (level: string) => (msg: string, extra?: Record<string, unknown>) => void lines.push({ ...fields, ...extra, level, msg });
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: (f) => capture(lines, { ...fields, ...f }) };
}

@component('relay')
class Relay {
  @endpoint()
  async wait(ms: number, ctx: Context): Promise<number> {
    // Pure I/O: the handler awaits; the process idles.
    await new Promise((r) => setTimeout(r, Math.min(ms, ctx.remainingMs())));
    return ms;
  }
}

test('issue 18 - an instance whose requests queue behind concurrency 1 while the process idles warns once; one with room does not', async () => {
  const lines: Line[] = [];
  const rt = await Runtime.embedded({ logger: capture(lines) });
  try {
    const serial = await rt.spawn(Relay, { namespace: 'knobs1' });
    const roomy = await rt.spawn(Relay, { namespace: 'knobs2', concurrency: 8 });
    const slow = rt.namespace('knobs1').client(Relay);
    const fast = rt.namespace('knobs2').client(Relay);
    const t0 = Date.now();
    await Promise.all([...Array.from({ length: 4 }, () => slow.wait(700)), ...Array.from({ length: 4 }, () => fast.wait(700))]);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 2_800, `concurrency 1 serialised the four waits (${elapsed} ms)`);
    const warns = lines.filter((l) => l.level === 'warn' && /behind concurrency/.test(l.msg));
    assert.is(warns.length, 1, `one warning: ${JSON.stringify(warns)}`);
    assert.is(warns[0]?.instance, serial.instanceIds[0], 'from the serialised instance');
    assert.match(warns[0]?.msg ?? '', /spawn it with a higher concurrency, e\.g\. \{ concurrency: 16 \}/);
    assert.ok(!lines.some((l) => l.instance === roomy.instanceIds[0] && l.level === 'warn'), 'the instance with room did not warn');
  } finally {
    await rt.close();
  }
});

test.run();
