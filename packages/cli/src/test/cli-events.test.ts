import * as assert from 'uvu/assert';
import * as path from 'node:path';
import { componentEventSubject, EVENT_HEADERS, MsgpackCodec, Runtime } from '@troupe/runtime/internal';
import { Cleanup, type NatsServer, serverSuite, waitFor, WorkerProcess } from '@troupe/testing';
import type { EventLine } from '../commands/events';
import { CliProcess, FIXTURES, runCli } from './cli';

// issue #12: `troupe events` tails events: broadcast, balanced (--group), durable replay (--durable, --from), gaps shown.

const WORKER = path.join(FIXTURES, 'demo-worker.js');
const s = serverSuite('cli - events', new Cleanup());

async function worker(ctx: { cleanup: Cleanup; server?: NatsServer }, ns: string): Promise<string> {
  const w = await WorkerProcess.start(WORKER, { env: { NATS_URL: (ctx.server as NatsServer).url, TROUPE_NS: ns } });
  ctx.cleanup.add(() => w.kill('SIGKILL'));
  return w.ready.instanceIds[0] as string;
}

async function emit(url: string, ns: string, event: string, n: number): Promise<void> {
  const r = await runCli(['call', `${ns}.svc.emit`, JSON.stringify({ event, n }), '--server', url]);
  assert.is(r.code, 0, r.stderr);
}

function tail(ctx: { cleanup: Cleanup }, args: string[]): CliProcess {
  const p = CliProcess.start(['events', ...args, '--json']);
  ctx.cleanup.add(() => p.kill());
  return p;
}

const listening = (l: string): boolean => l.startsWith('troupe: listening');

s("events receives a component's events as they are published (one JSON line each)", async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const id = await worker(ctx, 'evs');
  const one = tail(ctx, ['evs.svc', 'tick', '--count', '5', '--timeout', '10000', '--server', url]);
  const all = tail(ctx, ['evs', '--count', '6', '--timeout', '10000', '--server', url]);
  await one.waitForErr(listening, 5_000, 'the tail to listen');
  await all.waitForErr(listening, 5_000, 'the namespace tail to listen');
  await emit(url, 'evs', 'tick', 5);
  await emit(url, 'evs', 'tock', 1);
  assert.is((await one.waitExit(10_000)).code, 0, one.err.join('\n'));
  assert.is((await all.waitExit(10_000)).code, 0, all.err.join('\n'));
  const got = one.json<EventLine>();
  assert.equal(
    got.map((e) => (e.data as { i: number }).i),
    [1, 2, 3, 4, 5],
  );
  assert.equal(
    got.map((e) => e.seq),
    [1, 2, 3, 4, 5],
  );
  for (const e of got) {
    assert.equal(Object.keys(e), ['event', 'scope', 'namespace', 'component', 'publisher', 'seq', 'timestamp', 'gap', 'data']);
    assert.is(e.event, 'tick');
    assert.is(e.component, 'svc');
    assert.is(e.publisher, id);
    assert.is(e.gap, 0);
  }
  assert.equal(
    all.json<EventLine>().map((e) => e.event),
    ['tick', 'tick', 'tick', 'tick', 'tick', 'tock'],
    'the namespace tail gets every event',
  );
});

s('events --durable replays from the start, then resumes where it stopped', async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  await worker(ctx, 'evd');
  const rt = ctx.cleanup.runtime(await Runtime.connect({ servers: url, discovery: false }));
  await rt.namespace('evd').persistEvents();
  await emit(url, 'evd', 'tick', 4); // before any tail exists
  const first = await runCli([
    'events',
    'evd.svc',
    'tick',
    '--durable',
    'audit',
    '--from',
    'start',
    '--count',
    '4',
    '--timeout',
    '10000',
    '--json',
    '--server',
    url,
  ]);
  assert.is(first.code, 0, first.stderr);
  const replayed = first.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as EventLine);
  assert.equal(
    replayed.map((e) => (e.data as { i: number }).i),
    [1, 2, 3, 4],
  );
  await emit(url, 'evd', 'tick', 2);
  const second = await runCli(['events', 'evd.svc', 'tick', '--durable', 'audit', '--count', '2', '--timeout', '10000', '--json', '--server', url]);
  assert.is(second.code, 0, second.stderr);
  const resumed = second.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as EventLine);
  assert.equal(
    resumed.map((e) => e.seq),
    [5, 6],
    'the durable resumed after the last event it delivered',
  );
  // A tail that stops at its count mid-batch leaves the rest to the next tail of the durable, at once.
  await emit(url, 'evd', 'tick', 4);
  const part = await runCli(['events', 'evd.svc', 'tick', '--durable', 'audit', '--count', '1', '--timeout', '10000', '--json', '--server', url]);
  assert.equal(
    part.stdout
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as EventLine).seq),
    [7],
  );
  const rest = await runCli(['events', 'evd.svc', 'tick', '--durable', 'audit', '--count', '3', '--timeout', '3000', '--json', '--server', url]);
  assert.is(rest.code, 0, `the events the first tail did not print came back within 3 s: ${rest.stderr}`);
  assert.equal(
    rest.stdout
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as EventLine).seq),
    [8, 9, 10],
  );
  // A one-off replay from a time (no durable) sees everything stored since.
  const again = await runCli(['events', 'evd', '--from', '1h', '--count', '10', '--timeout', '10000', '--json', '--server', url]);
  assert.is(again.code, 0, again.stderr);
  assert.is(again.stdout.trim().split('\n').length, 10);
  // Not enough events within the bound: TIMEOUT, exit 5, after the lines it did get.
  const short = await runCli(['events', 'evd.svc', 'tick', '--durable', 'audit', '--count', '1', '--timeout', '500', '--server', url]);
  assert.is(short.code, 5, short.stderr);
  assert.match(short.stderr, /troupe: TIMEOUT: 0 of 1 events/);
});

s('events --group balances: tails sharing a group get each event once between them', async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  await worker(ctx, 'evg');
  const tails = [tail(ctx, ['evg.svc', 'tick', '--group', 'g1', '--server', url]), tail(ctx, ['evg.svc', 'tick', '--group', 'g1', '--server', url])];
  for (const t of tails) await t.waitForErr(listening, 5_000, 'a group tail to listen');
  await emit(url, 'evg', 'tick', 40);
  const total = (): number => tails.reduce((n, t) => n + t.json<EventLine>().length, 0);
  await waitFor(() => total() >= 40, 5_000, '40 events between the two tails');
  await new Promise((r) => setTimeout(r, 200)); // a duplicate would show up now
  const seen = tails.flatMap((t) => t.json<EventLine>().map((e) => (e.data as { i: number }).i)).sort((a, b) => a - b);
  console.log(`cli events --group: 40 events split ${tails.map((t) => t.json<EventLine>().length).join(' + ')}`);
  assert.equal(
    seen,
    Array.from({ length: 40 }, (_, i) => i + 1),
    'each event exactly once',
  );
  for (const t of tails) {
    t.signal('SIGINT');
    assert.is((await t.waitExit(5_000)).code, 0);
  }
});

s("events shows gaps in a publisher's sequence", async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const rt = ctx.cleanup.runtime(await Runtime.connect({ servers: url, discovery: false }));
  const codec = new MsgpackCodec();
  const send = (seq: number): void =>
    rt.bus.publish(componentEventSubject('evgap', 'svc', 'tick'), codec.encode({ seq }), {
      headers: { [EVENT_HEADERS.PUBLISHER]: '00000000000000aa', [EVENT_HEADERS.SEQ]: String(seq), [EVENT_HEADERS.TIME]: String(Date.now()) },
    });
  const json = tail(ctx, ['evgap.svc', '--count', '2', '--timeout', '5000', '--server', url]);
  const text = CliProcess.start(['events', 'evgap.svc', '--count', '2', '--timeout', '5000', '--server', url]);
  ctx.cleanup.add(() => text.kill());
  await json.waitForErr(listening, 5_000, 'the json tail to listen');
  await text.waitForErr(listening, 5_000, 'the text tail to listen');
  send(1);
  send(4); // 2 and 3 never sent: a gap of 2
  await rt.bus.flush();
  assert.is((await json.waitExit(5_000)).code, 0, json.err.join('\n'));
  assert.is((await text.waitExit(5_000)).code, 0, text.err.join('\n'));
  assert.equal(
    json.json<EventLine>().map((e) => [e.seq, e.gap]),
    [
      [1, 0],
      [4, 2],
    ],
  );
  assert.ok(
    text.out.some((l) => /gap: 2 events of tick from 00000000000000aa missed before #4/.test(l)),
    text.out.join('\n'),
  );
});

s.run();
