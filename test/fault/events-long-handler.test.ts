import * as assert from 'uvu/assert';
import { component, on, Runtime } from '@troupe/runtime/internal';
import { Cleanup, type NatsServer, serverSuite, waitFor } from '@troupe/testing';

// Issue #17.8: an `@on` handler of a durable event stream that runs past the
// JetStream ack wait must not be redelivered meanwhile (to another replica, or
// to itself behind its own back): its event is kept in progress (`+WPI`) while
// the handler runs. The proof runs fast with a 2 s ack wait and a 5 s handler
// (2.5 ack waits); a control case shows that the 2 s ack wait is real, i.e. an
// event nobody keeps in progress does come back after it. The 45 s handler of
// the issue (against the default 30 s ack wait) proves nothing more and costs
// 45 s of every run: it runs only with TROUPE_LONG_TESTS=1.

const ACK_WAIT_MS = 2_000;
const HANDLER_MS = 5_000;

interface Job {
  id: number;
  ms: number;
}

/** Sleeps `ms` per job and records each run (replica, job, redelivered or not). */
@component('slow')
class Slow {
  static runs: Array<{ id: number; at: number }> = [];
  static finished = 0;

  @on('job', { durable: 'slow-jobs', ackWaitMs: ACK_WAIT_MS, start: 'all' })
  async onJob(job: Job): Promise<void> {
    Slow.runs.push({ id: job.id, at: Date.now() });
    await new Promise((r) => setTimeout(r, job.ms));
    Slow.finished++;
  }
}

/** The same with the default ack wait (30 s), for the opt-in 45 s case. */
@component('slower')
class Slower {
  static runs = 0;
  static finished = 0;

  @on('job', { durable: 'slower-jobs', start: 'all' })
  async onJob(job: Job): Promise<void> {
    Slower.runs++;
    await new Promise((r) => setTimeout(r, job.ms));
    Slower.finished++;
  }
}

const s = serverSuite('events - long durable handlers', new Cleanup());

let nsCounter = 0;
const freshNamespace = (): string => `long${process.pid}x${(nsCounter++).toString(36)}`;

async function open(ctx: { cleanup: Cleanup; server?: NatsServer }): Promise<{ rt: Runtime; ns: string }> {
  const rt = ctx.cleanup.runtime(await Runtime.connect({ servers: (ctx.server as NatsServer).url, gracePeriodMs: 1_000 }));
  const ns = freshNamespace();
  await rt.namespace(ns).persistEvents({ maxAgeMs: 600_000 });
  ctx.cleanup.add(() => rt.namespace(ns).deleteEventLog());
  return { rt, ns };
}

s('control: with a 2 s ack wait, a message nobody acks or keeps in progress comes back after ~2 s', async (ctx) => {
  const { rt, ns } = await open(ctx);
  const log = await rt.bus.persistence.log(`TROUPE_EV_${ns}`, { subjects: [`${ns}._ev.*`, `${ns}.*._ev.*`] });
  const deliveries: Array<{ at: number; redelivered: boolean }> = [];
  const consumer = await log.consume({ filter: undefined, durable: 'control', start: 'all', ackWaitMs: ACK_WAIT_MS }, (m) => {
    deliveries.push({ at: Date.now(), redelivered: m.redelivered });
    assert.is(m.ackWaitMs, ACK_WAIT_MS, "the message reports the consumer's ack wait");
  });
  ctx.cleanup.add(() => consumer.stop());
  rt.namespace(ns).publish('job', { id: 0, ms: 0 });
  await waitFor(() => deliveries.length >= 2, ACK_WAIT_MS * 3, 'the unacked message to come back after the ack wait');
  const [first, second] = deliveries as [{ at: number }, { at: number; redelivered: boolean }];
  const after = second.at - first.at;
  console.log(`events: an unacked message came back after ${after} ms (ack wait ${ACK_WAIT_MS} ms)`);
  assert.ok(second.redelivered, 'the second delivery is a redelivery');
  assert.ok(after >= ACK_WAIT_MS - 100 && after < ACK_WAIT_MS * 2, `came back after ${after} ms`);
});

s('a 5 s @on handler of a durable stream with a 2 s ack wait runs once: kept in progress, not redelivered to the other replica', async (ctx) => {
  const { rt, ns } = await open(ctx);
  Slow.runs = [];
  Slow.finished = 0;
  // Two replicas share the durable: a redelivery would go to the idle one and run the job twice.
  const h = await rt.spawn(Slow, { namespace: ns, replicas: 2 });
  ctx.cleanup.add(() => h.stop());
  const t0 = Date.now();
  rt.namespace(ns).publish('job', { id: 1, ms: HANDLER_MS });
  await waitFor(() => Slow.finished >= 1, HANDLER_MS + 5_000, 'the 5 s handler to finish');
  // Nothing to await for "no redelivery": watch one more ack wait (and a half) after it finished,
  // past the point where an unacked event would have come back twice already.
  await new Promise((r) => setTimeout(r, ACK_WAIT_MS * 1.5));
  console.log(`events: a ${HANDLER_MS} ms handler with a ${ACK_WAIT_MS} ms ack wait ran ${Slow.runs.length} time(s) in ${Date.now() - t0} ms`);
  assert.equal(
    Slow.runs.map((r) => r.id),
    [1],
    `ran at ${Slow.runs.map((r) => r.at - t0).join(', ')} ms: redelivered while its handler ran`,
  );
});

if (process.env['TROUPE_LONG_TESTS'] === '1') {
  s('the 45 s handler of the issue, default 30 s ack wait: runs once', async (ctx) => {
    const { rt, ns } = await open(ctx);
    const h = await rt.spawn(Slower, { namespace: ns, replicas: 2 });
    ctx.cleanup.add(() => h.stop());
    rt.namespace(ns).publish('job', { id: 2, ms: 45_000 });
    await waitFor(() => Slower.finished >= 1, 60_000, 'the 45 s handler to finish');
    await new Promise((r) => setTimeout(r, 5_000)); // an observation window, as above
    assert.is(Slower.runs, 1, 'redelivered while its handler ran');
  });
} else {
  console.log('events - long durable handlers: the 45 s case runs with TROUPE_LONG_TESTS=1 (the 2 s / 5 s case proves the same in 7.5 s)');
}

s.run();
