import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Cleanup, type NatsServer, serverSuite, WorkerProcess } from '@troupe/testing';
import { ExitCode } from '../exit-codes';
import { CliProcess, FIXTURES, runCli } from './cli';

// issue #12: `troupe call` and `troupe stream` reach an endpoint and one instance; errors are typed exit codes.

const WORKER = path.join(FIXTURES, 'demo-worker.js');
const s = serverSuite('cli - call and stream', new Cleanup());

interface Work {
  instanceId: string;
  pid: number;
  n: number;
}

async function workers(ctx: { cleanup: Cleanup; server?: NatsServer }, ns: string): Promise<WorkerProcess[]> {
  const env = { NATS_URL: (ctx.server as NatsServer).url, TROUPE_NS: ns };
  const out: WorkerProcess[] = [];
  for (let i = 0; i < 2; i++) {
    const w = await WorkerProcess.start(WORKER, { env });
    ctx.cleanup.add(() => w.kill('SIGKILL'));
    out.push(w);
  }
  return out;
}

function oneLineError(stderr: string, code: string): void {
  assert.is(stderr.trim().split('\n').length, 1, `one line: ${stderr}`);
  assert.match(stderr, new RegExp(`^troupe: ${code}: `), stderr);
}

s('call reaches the endpoint (queue group) and, with --instance, that instance', async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const ws = await workers(ctx, 'calls');
  const ids = ws.map((w) => w.ready.instanceIds[0] as string);
  const any = await runCli(['call', 'calls.svc.work', '{"ms":1}', '--json', '--server', url]);
  assert.is(any.code, 0, any.stderr);
  const reply = (JSON.parse(any.stdout) as { reply: Work }).reply;
  assert.ok(ids.includes(reply.instanceId), `answered by ${reply.instanceId}`);
  for (const [i, id] of ids.entries()) {
    const r = await runCli(['call', 'calls.svc.work', '--instance', id, '--json', '--server', url]);
    assert.is(r.code, 0, r.stderr);
    const got = (JSON.parse(r.stdout) as { reply: Work }).reply;
    assert.is(got.instanceId, id);
    assert.is(got.pid, ws[i]?.pid);
  }
  // The body from a file and from stdin; plain output is the reply's JSON.
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'troupe-cli-')), 'req.json');
  fs.writeFileSync(file, '{"ms":2}');
  const fromFile = await runCli(['call', 'calls.svc.work', `@${file}`, '--server', url]);
  assert.is(fromFile.code, 0, fromFile.stderr);
  assert.ok(ids.includes((JSON.parse(fromFile.stdout) as Work).instanceId));
  const fromStdin = await runCli(['call', 'calls.svc.work', '-', '--instance', ids[1] as string, '--server', url], { input: '{"ms":1}' });
  assert.is(fromStdin.code, 0, fromStdin.stderr);
  assert.is((JSON.parse(fromStdin.stdout) as Work).instanceId, ids[1]);
});

s('call errors: one line naming the code, distinct exit codes', async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const [w] = await workers(ctx, 'errs');
  const id = (w as WorkerProcess).ready.instanceIds[0] as string;
  const cases: Array<{ args: string[]; exit: number; code: string; input?: string }> = [
    { args: ['call', 'errs.svc.nothing'], exit: ExitCode.NO_INSTANCES, code: 'NO_INSTANCES' },
    { args: ['call', 'errs.svc.work', '--instance', 'ffffffffffffffff'], exit: ExitCode.NO_INSTANCES, code: 'NO_INSTANCES' },
    { args: ['call', 'errs.svc.work', '{"ms":3000}', '--timeout', '300'], exit: ExitCode.TIMEOUT, code: 'TIMEOUT' },
    { args: ['call', 'errs.svc.work', '{"fail":"boom"}', '--instance', id], exit: ExitCode.INTERNAL, code: 'INTERNAL' },
    { args: ['call', 'errs.svc.work', '{not json'], exit: ExitCode.USAGE, code: 'USAGE' },
    { args: ['call', 'errs.svc.work', '@/nonexistent/req.json'], exit: ExitCode.USAGE, code: 'USAGE' },
    { args: ['call', 'errs.svc'], exit: ExitCode.USAGE, code: 'USAGE' },
    { args: ['call', 'errs.s*c.work'], exit: ExitCode.USAGE, code: 'USAGE' },
    { args: ['call', 'errs.svc.work', '--instance', 'nope'], exit: ExitCode.USAGE, code: 'USAGE' },
    { args: ['call', 'errs.svc.work', '--timeout', 'soon'], exit: ExitCode.USAGE, code: 'USAGE' },
    { args: ['call'], exit: ExitCode.USAGE, code: 'USAGE' },
    { args: ['frobnicate'], exit: ExitCode.USAGE, code: 'USAGE' },
  ];
  for (const c of cases) {
    const r = await runCli([...c.args, '--server', url]);
    assert.is(r.code, c.exit, `troupe ${c.args.join(' ')}: exit ${r.code}, stderr ${r.stderr}`);
    oneLineError(r.stderr, c.code);
    assert.is(r.stdout, '', `nothing on stdout for ${c.args.join(' ')}`);
  }
  // --json errors are one JSON object on stderr.
  const j = await runCli(['call', 'errs.svc.nothing', '--json', '--server', url]);
  assert.equal(JSON.parse(j.stderr), {
    error: { code: 'NO_INSTANCES', message: (JSON.parse(j.stderr) as { error: { message: string } }).error.message, exitCode: 4 },
  });
  const down = await runCli(['call', 'errs.svc.work', '--server', 'nats://127.0.0.1:1']);
  assert.is(down.code, ExitCode.CONNECTION);
  oneLineError(down.stderr, 'CONNECTION_FAILED');
});

s('stream prints every item (one JSON line each with --json), from the endpoint or one instance', async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const ws = await workers(ctx, 'streams');
  const r = await runCli(['stream', 'streams.svc.count', '{"n":50}', '--json', '--server', url]);
  assert.is(r.code, 0, r.stderr);
  const lines = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { seq: number; item: number });
  assert.equal(
    lines,
    Array.from({ length: 50 }, (_, i) => ({ seq: i + 1, item: i + 1 })),
  );
  const target = ws[1] as WorkerProcess;
  const id = target.ready.instanceIds[0] as string;
  const before = target.messages.filter((m) => m.type === 'stream-started').length;
  const plain = await runCli(['stream', 'streams.svc.count', '{"n":3}', '--instance', id, '--server', url]);
  assert.is(plain.code, 0, plain.stderr);
  assert.is(plain.stdout, '1\n2\n3\n');
  assert.is(target.messages.filter((m) => m.type === 'stream-started' && m['instanceId'] === id).length, before + 1, 'the pinned instance ran the stream');
  const none = await runCli(['stream', 'streams.svc.nothing', '--server', url]);
  assert.is(none.code, ExitCode.NO_INSTANCES, none.stderr);
  oneLineError(none.stderr, 'NO_INSTANCES');
});

s("stream: the first SIGINT (Ctrl-C) stops the worker's handler, which sends its final item; exit 130", async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const [w] = await workers(ctx, 'stop');
  const worker = w as WorkerProcess;
  const id = worker.ready.instanceIds[0] as string;
  const cli = CliProcess.start(['stream', 'stop.svc.count', '{"n":100000,"everyMs":5}', '--instance', id, '--json', '--server', url]);
  ctx.cleanup.add(() => cli.kill());
  await cli.waitForOut((l) => (JSON.parse(l) as { seq: number }).seq >= 10, 5_000, '10 items');
  const sentAt = Date.now();
  cli.signal('SIGINT');
  const stopped = await worker.waitFor('stopped', 2_000);
  const exit = await cli.waitExit(5_000);
  const tookMs = Date.now() - sentAt;
  const items = cli.out.filter((l) => l.trim() !== '').map((l) => (JSON.parse(l) as { item: number }).item);
  console.log(`cli stream: handler stopped, exit ${tookMs} ms after SIGINT, ${String(stopped['sent'])} items sent; the CLI printed ${items.length}`);
  assert.is(stopped['instanceId'], id);
  assert.is(exit.code, ExitCode.INTERRUPTED);
  assert.match(cli.err.join('\n'), /stream stopped after \d+ items/);
  assert.is(items[items.length - 1], -1, 'the final item sent after the stop was printed');
  assert.is(items.length, (stopped['sent'] as number) + 1, 'every item the handler sent was printed');
  assert.equal(
    items.slice(0, -1),
    items.slice(0, -1).map((_, i) => i + 1),
    'in order, none lost',
  );
  assert.is(worker.messages.filter((m) => m.type === 'aborted').length, 0, 'a stop is not a kill');
});

s("stream: a second SIGINT kills the worker's handler at once; exit 130", async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const [w] = await workers(ctx, 'cancel');
  const worker = w as WorkerProcess;
  const id = worker.ready.instanceIds[0] as string;
  // A handler that ignores the stop, and a grace long enough that only the kill can end it within the bounds below.
  const cli = CliProcess.start([
    'stream',
    'cancel.svc.count',
    '{"n":100000,"everyMs":5,"ignoreStop":true}',
    '--instance',
    id,
    '--json',
    '--stop-grace',
    '60000',
    '--server',
    url,
  ]);
  ctx.cleanup.add(() => cli.kill());
  await cli.waitForOut((l) => (JSON.parse(l) as { seq: number }).seq >= 10, 5_000, '10 items');
  cli.signal('SIGINT');
  const printed = cli.out.length;
  // Two signals sent back to back can merge into one delivery: the second goes once items kept coming after the first.
  await cli.waitForOut(() => cli.out.length >= printed + 10, 5_000, 'items after the ignored stop');
  const sentAt = Date.now();
  cli.signal('SIGINT');
  const aborted = await worker.waitFor('aborted', 2_000);
  const tookMs = Date.now() - sentAt;
  const exit = await cli.waitExit(5_000);
  console.log(
    `cli stream: handler aborted ${tookMs} ms after the second SIGINT, having sent ${String(aborted['sent'])} items; the CLI printed ${cli.out.length}`,
  );
  assert.is(aborted['instanceId'], id);
  assert.ok(tookMs < 1_000, `aborted after ${tookMs} ms`);
  assert.is(exit.code, ExitCode.INTERRUPTED);
  assert.ok((aborted['sent'] as number) < 100_000, 'the handler stopped early');
});

s.run();
