import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Runtime, type TroupeError } from '@troupe/runtime/internal';
import { NatsServer, type WorkerProcess, waitFor, within } from '@troupe/testing';
import { clock, type CountReq } from './fixtures/stream-common';
import { Cleanup, command, ms, nextOf } from './fixtures/stream-harness';

// DESIGN §3: a caller that disappears or unsubscribes MUST abort the handler
// (ctx.signal) within 500 ms; cancellation MUST propagate to downstream calls
// made with the handler's context. "At most one window after": the worker
// never has more credit than one window, and gets no more once the caller left.

const WINDOW = 64;
const BOUND_MS = 500;

const s = suite<{ cleanup: Cleanup; server?: NatsServer; caller?: Runtime }>('streams - cancellation', { cleanup: new Cleanup() });

s.before(async (ctx) => {
  ctx.server = await NatsServer.start({ jetstream: true });
  ctx.caller = await Runtime.connect({ servers: ctx.server.url, name: 'streams-cancel-caller' });
});
s.after(async (ctx) => {
  await ctx.caller?.close();
  await ctx.server?.stop();
});
s.after.each(async (ctx) => {
  await ctx.cleanup.run();
});

interface Aborted {
  name: string;
  code: string;
  t: number;
  produced: number;
}

for (const how of ['unsubscribes', 'aborts its signal'] as const) {
  s(`the caller ${how} mid-stream: the handler is aborted within ${BOUND_MS} ms, at most one window (${WINDOW}) sent after`, async (ctx) => {
    const url = (ctx.server as NatsServer).url;
    const ns = how === 'unsubscribes' ? 'unsub' : 'abort';
    const worker = await ctx.cleanup.worker(url, ns);
    const base = ((await command(worker, { type: 'mark' }, 'marked')) as unknown as { produced: number }).produced;
    const client = (ctx.caller as Runtime)
      .namespace(ns)
      .component('tokens')
      .endpoint('count')
      .client<CountReq, number>()
      .direct(worker.ready.instanceIds[0] as string);
    const ac = new AbortController();
    const since = worker.messages.length;
    let received = 0;
    let cancelledAt = 0;
    let ended: TroupeError | undefined;
    let sub: { unsubscribe(): void } | undefined = undefined;
    // A fast producer and a fast consumer: the worker is as far ahead as credit allows.
    sub = client.stream({ n: 1e12 }, { window: WINDOW, signal: ac.signal }).subscribe({
      next: () => {
        if (++received !== 2_000) return;
        cancelledAt = clock();
        if (how === 'unsubscribes') sub?.unsubscribe();
        else ac.abort();
      },
      error: (e) => (ended = e as TroupeError),
    });
    const aborted = (await nextOf(worker, 'aborted', since, 5_000)) as unknown as Aborted;
    const after = aborted.produced - base - received;
    console.log(
      `streams: caller ${how} after ${received} items: handler aborted ${ms(aborted.t - cancelledAt)} ms later (${aborted.code}); ${after} items produced past what was consumed (window ${WINDOW})`,
    );
    assert.is(aborted.code, 'CANCELLED');
    assert.ok(aborted.t - cancelledAt < BOUND_MS, `aborted ${ms(aborted.t - cancelledAt)} ms after`);
    assert.ok(after <= WINDOW + 1, `${after} items past the consumer, window ${WINDOW}`);
    if (how === 'aborts its signal') await waitFor(() => ended !== undefined, 1_000, 'the stream to end with CANCELLED');
    if (ended) assert.is((ended as TroupeError).code, 'CANCELLED');
    await waitFor(() => (ctx.caller as Runtime).pendingReplies === 0, 1_000, 'the caller to release the stream');
  });
}

s(`the caller process is killed (kill -9) mid-stream: the handler is aborted within ${BOUND_MS} ms, at most one window sent after`, async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const ns = 'callerkill';
  const worker = await ctx.cleanup.worker(url, ns);
  const caller: WorkerProcess = await ctx.cleanup.caller(url);
  const since = worker.messages.length;
  // Paced at ~1 item/ms so the mark just before the kill is ~1 item early (nothing can read the count at the kill itself).
  await command(caller, { type: 'hold', ns, window: WINDOW, delayMs: 1 }, 'receiving');
  const marked = (await command(worker, { type: 'mark' }, 'marked')) as unknown as { produced: number };
  const killedAt = clock();
  await caller.kill('SIGKILL');
  const aborted = (await nextOf(worker, 'aborted', since, 5_000)) as unknown as Aborted;
  const after = aborted.produced - marked.produced;
  console.log(
    `streams: caller killed (kill -9): handler aborted ${ms(aborted.t - killedAt)} ms later (${aborted.code}: its next heartbeat got "no responders"); ${after} items produced after the kill (window ${WINDOW})`,
  );
  assert.is(aborted.code, 'CANCELLED');
  assert.ok(aborted.t - killedAt < BOUND_MS, `aborted ${ms(aborted.t - killedAt)} ms after the kill`);
  assert.ok(after <= WINDOW + 3, `${after} items after the kill, window ${WINDOW} (+2 for the mark's lead)`);
});

s(`a three-hop chain (edge -> relay -> tokens, three processes): cancelling at the edge aborts all three within ${BOUND_MS} ms`, async (ctx) => {
  const url = (ctx.server as NatsServer).url;
  const ns = 'chain';
  const [tokens, relay, edge] = await Promise.all([
    ctx.cleanup.worker(url, ns, { TROUPE_ROLE: 'tokens' }),
    ctx.cleanup.worker(url, ns, { TROUPE_ROLE: 'relay' }),
    ctx.cleanup.worker(url, ns, { TROUPE_ROLE: 'edge' }),
  ]);
  const hops = [edge, relay, tokens];
  const since = hops.map((p) => p.messages.length);
  const client = (ctx.caller as Runtime).namespace(ns).component('edge').endpoint('edge').client<CountReq, number>();
  await client.waitForInstances(1, { timeout: 5_000 });
  const got: number[] = [];
  const sub = client.stream({ n: 1e12, delayMs: 1 }).subscribe({ next: (v) => got.push(v) });
  await waitFor(() => got.length >= 50, 5_000, '50 items through three hops');
  const cancelledAt = clock();
  sub.unsubscribe();
  const aborted = (await within(
    Promise.all(hops.map((p, i) => nextOf(p, 'aborted', since[i] as number, 3_000))),
    4_000,
    'all three handlers to be aborted',
  )) as unknown as Aborted[];
  console.log(`streams: three-hop cancel: ${aborted.map((a) => `${a.name} aborted ${ms(a.t - cancelledAt)} ms after (${a.code})`).join(', ')}`);
  for (const a of aborted) {
    assert.is(a.code, 'CANCELLED', `${a.name}`);
    assert.ok(a.t - cancelledAt < BOUND_MS, `${a.name} aborted ${ms(a.t - cancelledAt)} ms after the cancel`);
  }
  assert.equal(
    got.slice(0, 50),
    Array.from({ length: 50 }, (_, i) => i),
  );
});

s.run();
