import { randomBytes } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type KvBucket,
  type KvEntry,
  type LogConsumeOptions,
  type LogConsumer,
  type LogMessage,
  type MessageLog,
  type Transport,
  TroupeError,
} from '@troupe/runtime/internal';
import { waitFor, within } from './wait';

/** Two connections to one bus, whose storage the suite uses through `persistence`. */
export interface PersistencePair {
  a: Transport;
  b: Transport;
  /**
   * Deletes a KV bucket the suite created (the seam has no bucket delete:
   * the runtime never drops its registry). Nothing to do where storage dies
   * with the pair (a fresh memory network per test).
   */
  dropBucket(name: string): Promise<void>;
  /** Closes both connections; must tolerate either being closed already. */
  close(): Promise<void>;
}

/** The cases of {@link persistenceSuite}, named as behaviour. */
export const PERSISTENCE_CASES = [
  'kv - put then get returns the value and its revision; a missing key is undefined',
  'kv - revisions increase with every write to the bucket',
  'kv - two connections share a bucket',
  'kv - delete: get is undefined and watchers see a DEL',
  'kv - purgeDeletes removes old delete markers: a new watch replays none, live keys stay',
  'kv - purge removes every key',
  'kv - watch delivers current entries, then onSynced, then changes',
  'kv - watch filters with * and >',
  'kv - a stopped watch delivers nothing more',
  'kv - entries expire after the TTL, with no delete marker',
  'kv - invalid keys and bucket names are BAD_REQUEST',
  'log - captures plain publishes to its subjects from its creation, headers included, nothing else',
  'log - a durable resumes after its last ack when consumed again',
  'log - consumers sharing a durable name share the messages, each to one',
  'log - nak with a delay redelivers after the delay, marked redelivered',
  'log - start all, new, or at a time',
  'log - an ephemeral consumer with a filter reads only matching messages',
  'log - destroy deletes the messages: the log opened again by that name is empty',
  'log - a durable name with another filter is BAD_REQUEST',
] as const;

/** One of {@link PERSISTENCE_CASES}. */
export type PersistenceCase = (typeof PERSISTENCE_CASES)[number];

/** Opens a fresh {@link PersistencePair} per test. */
export interface PersistenceFactory {
  open(): Promise<PersistencePair>;
  /**
   * Cases this bus does not pass, each with the reason. A deviation is
   * declared and printed, never silently skipped.
   */
  deviations?: Partial<Record<PersistenceCase, string>>;
}

interface Ctx {
  pair?: PersistencePair;
  buckets: string[];
  logs: MessageLog[];
  consumers: LogConsumer[];
}

/** What a case gets: the pair, names unique to this test, and openers that clean up after it. */
interface Open {
  a: Transport;
  b: Transport;
  /** A bucket or log name unique to this test: `pt_<random>_<suffix>`. */
  name(suffix: string): string;
  /** A subject unique to this test: `pt.<random>.<suffix>`. */
  subject(suffix: string): string;
  /** Opens a bucket on `t` (default a), dropped after the test. */
  bucket(name: string, ttlMs?: number, t?: Transport): Promise<KvBucket>;
  /** Opens a log on a over this test's subjects `pt.<random>.>`, destroyed after the test. */
  log(name: string): Promise<MessageLog>;
  /** Consumes into an array; the consumer is stopped after the test. */
  consume(log: MessageLog, options: Partial<LogConsumeOptions>, onMessage?: (m: LogMessage) => void): Promise<{ got: LogMessage[]; consumer: LogConsumer }>;
}

// Generous bounds: a hung test fails in seconds, a slow shared machine does not flake.
const WAIT_MS = 5_000;
/** Bucket TTL of the expiry case: short, yet well above JetStream's expiry granularity. */
const TTL_MS = 1_000;

const bytes = (...xs: number[]): Uint8Array => new Uint8Array(xs);
const text = (e: KvEntry | undefined): string | undefined => (e === undefined ? undefined : new TextDecoder().decode(e.value));
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

async function rejection(p: Promise<unknown>, what: string): Promise<TroupeError> {
  try {
    await within(p, WAIT_MS, what);
  } catch (e) {
    if (e instanceof TroupeError) return e;
    throw e;
  }
  throw new Error(`${what} resolved; expected a TroupeError`);
}

/** A watch recording entries and the moment it synced, as `key=value`, `-key` (delete) and `|` (synced). */
async function record(bucket: KvBucket, filter: string): Promise<{ seen: string[]; synced: () => boolean; stop: () => void }> {
  const seen: string[] = [];
  let synced = false;
  const stop = await bucket.watch(
    filter,
    (e) => seen.push(e.operation === 'DEL' ? `-${e.key}` : `${e.key}=${text(e) ?? ''}`),
    () => {
      synced = true;
      seen.push('|');
    },
  );
  await waitFor(() => synced, WAIT_MS, `the watch of ${filter} to sync`);
  return { seen, synced: () => synced, stop };
}

/**
 * The conformance suite of the {@link Persistence} half of the transport
 * seam: KV buckets (put/get/delete/purge, watch with wildcards, TTL expiry
 * without delete markers as nats-server 2.9 has it) and durable logs
 * (capture of plain publishes, durable resume, shared durables, nak with a
 * delay, start positions, filters, destroy, a durable name reused with
 * another filter). Every bus must pass it unchanged; a case it cannot pass
 * is declared in `factory.deviations` with its reason. Names are unique per
 * test, and every bucket, log and consumer is removed after it, so runs on a
 * shared server never interfere. Calls `.run()` itself.
 *
 * "Nothing else arrived" is shown without waiting for silence: a sentinel is
 * published last, and once it arrives everything before it has.
 *
 * @example
 * persistenceSuite('memory', {
 *   async open() {
 *     const net = new MemoryNetwork();
 *     const a = net.connect('a');
 *     const b = net.connect('b');
 *     return { a, b, dropBucket: async () => undefined, close: async () => void (await Promise.all([a.close(), b.close()])) };
 *   },
 * });
 */
export function persistenceSuite(name: string, factory: PersistenceFactory): void {
  const s = suite<Ctx>(`persistence[${name}]`, { buckets: [], logs: [], consumers: [] });
  const deviations = factory.deviations ?? {};

  s.before(() => {
    const lines = Object.entries(deviations).map(([c, why]) => `  skips "${c}": ${why}\n`);
    if (lines.length > 0) process.stdout.write(`\n${lines.join('')}`);
  });

  s.after.each(async (ctx) => {
    const { pair, buckets, logs, consumers } = ctx;
    ctx.pair = undefined;
    ctx.buckets = [];
    ctx.logs = [];
    ctx.consumers = [];
    if (pair === undefined) return;
    try {
      await within(Promise.all(consumers.map((c) => c.stop())), WAIT_MS, 'the consumers to stop');
      for (const log of logs) await within(log.destroy(), WAIT_MS, `log ${log.name} to be destroyed`);
      for (const b of buckets) await within(pair.dropBucket(b), WAIT_MS, `bucket ${b} to be dropped`);
    } finally {
      await within(pair.close(), WAIT_MS, `persistence[${name}] to close its pair`);
    }
  });

  const open = async (ctx: Ctx): Promise<Open> => {
    const pair = await within(factory.open(), WAIT_MS, `persistence[${name}] to open a pair`);
    ctx.pair = pair;
    const { a, b } = pair;
    const id = randomBytes(6).toString('hex');
    const subject = (suffix: string): string => `pt.${id}.${suffix}`;
    return {
      a,
      b,
      name: (suffix) => `pt_${id}_${suffix}`,
      subject,
      bucket: async (bucket, ttlMs = 0, t = a) => {
        const kv = await within(t.persistence.kv(bucket, { ttlMs }), WAIT_MS, `bucket ${bucket} to open`);
        if (!ctx.buckets.includes(bucket)) ctx.buckets.push(bucket);
        return kv;
      },
      log: async (log) => {
        const l = await within(a.persistence.log(log, { subjects: [subject('>')] }), WAIT_MS, `log ${log} to open`);
        ctx.logs.push(l);
        return l;
      },
      consume: async (log, options, onMessage) => {
        const got: LogMessage[] = [];
        const consumer = await within(
          log.consume({ filter: undefined, durable: undefined, start: 'all', ...options }, (m) => {
            got.push(m);
            onMessage?.(m);
          }),
          WAIT_MS,
          `a consumer of ${log.name}`,
        );
        ctx.consumers.push(consumer);
        return { got, consumer };
      },
    };
  };

  const payloads = (got: readonly LogMessage[]): number[] => got.map((m) => m.data[0] as number);

  const cases: Record<PersistenceCase, (ctx: Ctx) => Promise<void>> = {
    'kv - put then get returns the value and its revision; a missing key is undefined': async (ctx) => {
      const { bucket, name } = await open(ctx);
      const kv = await bucket(name('kv'));
      const rev = await kv.put('a.b', utf8('one'));
      assert.ok(Number.isInteger(rev) && rev > 0, `revision ${rev}`);
      const e = await kv.get('a.b');
      assert.equal(
        { key: e?.key, value: text(e), revision: e?.revision, operation: e?.operation },
        { key: 'a.b', value: 'one', revision: rev, operation: 'PUT' },
      );
      assert.is(await kv.get('missing'), undefined);
    },

    'kv - revisions increase with every write to the bucket': async (ctx) => {
      const { bucket, name } = await open(ctx);
      const kv = await bucket(name('kv'));
      const r1 = await kv.put('x', utf8('1'));
      const r2 = await kv.put('y', utf8('2'));
      const r3 = await kv.put('x', utf8('3'));
      assert.ok(r1 < r2 && r2 < r3, `revisions ${r1}, ${r2}, ${r3}`);
      assert.is((await kv.get('x'))?.revision, r3);
      assert.is(text(await kv.get('x')), '3');
    },

    'kv - purgeDeletes removes old delete markers: a new watch replays none, live keys stay': async (ctx) => {
      const { bucket, name } = await open(ctx);
      const kv = await bucket(name('kv'));
      for (const k of ['gone1', 'gone2', 'gone3']) await kv.put(k, utf8('v'));
      await kv.put('live', utf8('here'));
      for (const k of ['gone1', 'gone2', 'gone3']) await kv.delete(k);
      const removed = await kv.purgeDeletes(0);
      // A bus that keeps a marker per deleted key (JetStream) removes the 3; one whose deletes leave nothing returns 0.
      assert.ok(removed === 3 || removed === 0, `purgeDeletes removed ${removed} markers (3 deleted keys)`);
      assert.is(text(await kv.get('live')), 'here', 'a live key is untouched');
      assert.is(await kv.get('gone1'), undefined);
      const w = await record(kv, '>');
      w.stop();
      assert.equal(w.seen, ['live=here', '|'], 'a new watch lists the live key only');
      assert.is(await kv.purgeDeletes(0), 0, 'nothing left to remove');
    },

    'kv - two connections share a bucket': async (ctx) => {
      const { a, b, bucket, name } = await open(ctx);
      const onA = await bucket(name('kv'), 0, a);
      const onB = await bucket(name('kv'), 0, b);
      await onA.put('k', utf8('from a'));
      assert.is(text(await onB.get('k')), 'from a');
    },

    'kv - delete: get is undefined and watchers see a DEL': async (ctx) => {
      const { bucket, name } = await open(ctx);
      const kv = await bucket(name('kv'));
      await kv.put('k', utf8('v'));
      const w = await record(kv, '>');
      await kv.delete('k');
      await kv.put('sentinel', utf8('s'));
      await waitFor(() => w.seen.includes('sentinel=s'), WAIT_MS, 'the sentinel put in the watch');
      w.stop();
      assert.equal(w.seen, ['k=v', '|', '-k', 'sentinel=s']);
      assert.is(await kv.get('k'), undefined);
    },

    'kv - purge removes every key': async (ctx) => {
      const { bucket, name } = await open(ctx);
      const kv = await bucket(name('kv'));
      for (const k of ['a', 'b.c', 'b.d']) await kv.put(k, utf8(k));
      await kv.purge();
      for (const k of ['a', 'b.c', 'b.d']) assert.is(await kv.get(k), undefined, `${k} after purge`);
      const w = await record(kv, '>');
      w.stop();
      assert.equal(w.seen, ['|'], 'a new watch lists nothing');
    },

    'kv - watch delivers current entries, then onSynced, then changes': async (ctx) => {
      const { bucket, name } = await open(ctx);
      const kv = await bucket(name('kv'));
      await kv.put('a', utf8('1'));
      await kv.put('b', utf8('2'));
      await kv.put('a', utf8('3')); // history 1: only the latest value is current
      const w = await record(kv, '>');
      await kv.put('c', utf8('4'));
      await waitFor(() => w.seen.includes('c=4'), WAIT_MS, 'the change after sync');
      w.stop();
      assert.equal(w.seen, ['b=2', 'a=3', '|', 'c=4'], 'current entries in revision order, then synced, then the change');
    },

    'kv - watch filters with * and >': async (ctx) => {
      const { bucket, name } = await open(ctx);
      const kv = await bucket(name('kv'));
      await kv.put('ns.c1.x', utf8('1'));
      await kv.put('ns.c2.x.deep', utf8('2'));
      await kv.put('other.c1.x', utf8('3'));
      const star = await record(kv, 'ns.*.x');
      const gt = await record(kv, 'ns.>');
      await kv.put('ns.c3.x', utf8('4'));
      await kv.put('ns.c3.y', utf8('5'));
      await kv.put('other.z', utf8('6'));
      await kv.put('ns.sentinel.x', utf8('s'));
      await waitFor(() => star.seen.includes('ns.sentinel.x=s') && gt.seen.includes('ns.sentinel.x=s'), WAIT_MS, 'the sentinel in both watches');
      star.stop();
      gt.stop();
      assert.equal(star.seen, ['ns.c1.x=1', '|', 'ns.c3.x=4', 'ns.sentinel.x=s']);
      assert.equal(gt.seen, ['ns.c1.x=1', 'ns.c2.x.deep=2', '|', 'ns.c3.x=4', 'ns.c3.y=5', 'ns.sentinel.x=s']);
    },

    'kv - a stopped watch delivers nothing more': async (ctx) => {
      const { bucket, name } = await open(ctx);
      const kv = await bucket(name('kv'));
      const stopped = await record(kv, '>');
      const live = await record(kv, '>');
      stopped.stop();
      await kv.put('k', utf8('v'));
      await waitFor(() => live.seen.includes('k=v'), WAIT_MS, 'the put in the live watch');
      live.stop();
      // The live watch saw the put, so the stopped one would have had it by now too.
      assert.equal(stopped.seen, ['|']);
    },

    'kv - entries expire after the TTL, with no delete marker': async (ctx) => {
      const { bucket, name } = await open(ctx);
      const kv = await bucket(name('ttl'), TTL_MS);
      const w = await record(kv, '>');
      const putAt = Date.now();
      await kv.put('short', utf8('lived'));
      assert.is(text(await kv.get('short')), 'lived', 'readable before the TTL');
      // Expiry is time itself here: poll the bucket (bounded); nothing else can announce it.
      let gone = false;
      const until = Date.now() + TTL_MS + WAIT_MS;
      while (!gone && Date.now() < until) {
        gone = (await kv.get('short')) === undefined;
        if (!gone) await new Promise((r) => setTimeout(r, 50));
      }
      const expiredAfter = Date.now() - putAt;
      assert.ok(gone, `the entry was still readable ${expiredAfter} ms after a put with TTL ${TTL_MS} ms`);
      assert.ok(expiredAfter >= TTL_MS * 0.9, `expired after ${expiredAfter} ms, before the TTL of ${TTL_MS} ms`);
      await kv.put('sentinel', utf8('s'));
      await waitFor(() => w.seen.includes('sentinel=s'), WAIT_MS, 'the sentinel in the watch');
      w.stop();
      assert.equal(w.seen, ['|', 'short=lived', 'sentinel=s'], 'no delete marker for the expired entry');
      const fresh = await record(kv, '>');
      fresh.stop();
      assert.equal(fresh.seen, ['sentinel=s', '|'], 'a new watch does not list the expired entry');
    },

    'kv - invalid keys and bucket names are BAD_REQUEST': async (ctx) => {
      const { a, bucket, name } = await open(ctx);
      const kv = await bucket(name('kv'));
      for (const key of ['', 'a..b', '.a', 'a.', 'a b', 'a*', 'a.>']) {
        assert.is((await rejection(kv.put(key, utf8('v')), `put ${JSON.stringify(key)}`)).code, 'BAD_REQUEST', `put ${JSON.stringify(key)}`);
        assert.is((await rejection(kv.delete(key), `delete ${JSON.stringify(key)}`)).code, 'BAD_REQUEST', `delete ${JSON.stringify(key)}`);
        assert.is((await rejection(kv.get(key), `get ${JSON.stringify(key)}`)).code, 'BAD_REQUEST', `get ${JSON.stringify(key)}`);
      }
      for (const bad of ['a.b', 'a b', '', 'a*']) {
        assert.is((await rejection(a.persistence.kv(bad, { ttlMs: 0 }), `bucket ${JSON.stringify(bad)}`)).code, 'BAD_REQUEST', `bucket ${JSON.stringify(bad)}`);
      }
    },

    'log - captures plain publishes to its subjects from its creation, headers included, nothing else': async (ctx) => {
      const { a, b, log, consume, name, subject } = await open(ctx);
      b.publish(subject('before'), bytes(0)); // before the log: not stored
      await b.flush();
      const l = await log(name('log'));
      b.publish(subject('x'), bytes(1), { headers: { 'X-N': 'one' } });
      b.publish(subject('y.z'), bytes(2));
      b.publish(`pu.${name('elsewhere')}`, bytes(3)); // outside its subjects
      b.publish(subject('sentinel'), bytes(9));
      await Promise.all([a.flush(), b.flush()]);
      const { got } = await consume(l, {});
      await waitFor(() => got.length >= 3, WAIT_MS, 'three stored messages');
      assert.equal(
        got.map((m) => [m.subject, m.data[0], m.header('X-N')]),
        [
          [subject('x'), 1, 'one'],
          [subject('y.z'), 2, undefined],
          [subject('sentinel'), 9, undefined],
        ],
      );
      assert.ok(
        got.every((m, i) => i === 0 || m.seq > (got[i - 1] as LogMessage).seq),
        'seqs increase',
      );
      assert.ok(
        got.every((m) => Math.abs(m.timestamp - Date.now()) < 60_000),
        'timestamps are epoch ms',
      );
    },

    'log - a durable resumes after its last ack when consumed again': async (ctx) => {
      const { a, log, consume, name, subject } = await open(ctx);
      const l = await log(name('log'));
      for (let i = 1; i <= 3; i++) a.publish(subject('e'), bytes(i));
      await a.flush();
      const first = await consume(l, { durable: 'd' }, (m) => m.ack());
      await waitFor(() => first.got.length === 3, WAIT_MS, 'the first three');
      await first.consumer.stop();
      for (let i = 4; i <= 5; i++) a.publish(subject('e'), bytes(i));
      await a.flush();
      const again = await consume(l, { durable: 'd', start: 'all' }, (m) => m.ack());
      await waitFor(() => again.got.length >= 2, WAIT_MS, 'the two after the last ack');
      a.publish(subject('e'), bytes(6));
      await waitFor(() => payloads(again.got).includes(6), WAIT_MS, 'the sentinel');
      assert.equal(payloads(first.got), [1, 2, 3]);
      assert.equal(payloads(again.got), [4, 5, 6], 'resumed after the last ack; start ignored for an existing durable');
    },

    'log - consumers sharing a durable name share the messages, each to one': async (ctx) => {
      const { a, log, consume, name, subject } = await open(ctx);
      const l = await log(name('log'));
      const one = await consume(l, { durable: 'shared' }, (m) => m.ack());
      const two = await consume(l, { durable: 'shared' }, (m) => m.ack());
      const n = 40;
      for (let i = 1; i <= n; i++) a.publish(subject('e'), bytes(i));
      await a.flush();
      await waitFor(() => one.got.length + two.got.length >= n, WAIT_MS, `${n} messages between the two consumers`);
      const all = [...payloads(one.got), ...payloads(two.got)].sort((x, y) => x - y);
      assert.equal(
        all,
        Array.from({ length: n }, (_, i) => i + 1),
        'every message once, none twice',
      );
    },

    'log - nak with a delay redelivers after the delay, marked redelivered': async (ctx) => {
      const { a, log, consume, name, subject } = await open(ctx);
      const l = await log(name('log'));
      const delayMs = 300;
      let nakAt = 0;
      const { got } = await consume(l, { durable: 'd' }, (m) => {
        if (!m.redelivered && m.data[0] === 1) {
          nakAt = Date.now();
          m.nak(delayMs);
        } else m.ack();
      });
      a.publish(subject('e'), bytes(1));
      a.publish(subject('e'), bytes(2));
      await waitFor(() => got.filter((m) => m.data[0] === 1).length === 2, WAIT_MS, 'the nak-ed message again');
      const again = got.filter((m) => m.data[0] === 1)[1] as LogMessage;
      const waited = Date.now() - nakAt;
      assert.ok(waited >= delayMs * 0.9, `redelivered ${waited} ms after a nak of ${delayMs} ms`);
      assert.is(again.redelivered, true);
      assert.is(got.filter((m) => m.data[0] === 2).length, 1, 'the other message once');
      assert.ok(got.findIndex((m) => m.data[0] === 2) < got.lastIndexOf(again), 'the next message was not held back by the delay');
    },

    'log - start all, new, or at a time': async (ctx) => {
      const { a, log, consume, name, subject } = await open(ctx);
      const l = await log(name('log'));
      a.publish(subject('e'), bytes(1));
      await a.flush();
      // Timestamps are the server's (ms granularity): a cut strictly between two stores needs them apart.
      const firstStored = (await consume(l, {})).got;
      await waitFor(() => firstStored.length === 1, WAIT_MS, 'the first message stored');
      const cut = new Date((firstStored[0] as LogMessage).timestamp + 1);
      await waitFor(() => Date.now() > cut.getTime() + 1, WAIT_MS, 'the clock to pass the cut');
      a.publish(subject('e'), bytes(2));
      await a.flush();
      const all = await consume(l, { start: 'all' });
      const fromNew = await consume(l, { start: 'new' });
      const fromCut = await consume(l, { start: cut });
      await waitFor(() => all.got.length === 2 && fromCut.got.length === 1, WAIT_MS, 'start all and start at a time to catch up');
      a.publish(subject('e'), bytes(3));
      await waitFor(() => all.got.length === 3 && fromNew.got.length >= 1 && fromCut.got.length === 2, WAIT_MS, 'the next message in every consumer');
      assert.equal(payloads(all.got), [1, 2, 3]);
      assert.equal(payloads(fromNew.got), [3]);
      assert.equal(payloads(fromCut.got), [2, 3]);
    },

    'log - an ephemeral consumer with a filter reads only matching messages': async (ctx) => {
      const { a, log, consume, name, subject } = await open(ctx);
      const l = await log(name('log'));
      a.publish(subject('x.1'), bytes(1));
      a.publish(subject('y.1'), bytes(2));
      a.publish(subject('x.2'), bytes(3));
      a.publish(subject('x.sentinel'), bytes(9));
      await a.flush();
      const { got } = await consume(l, { filter: subject('x.*') });
      await waitFor(() => payloads(got).includes(9), WAIT_MS, 'the sentinel');
      assert.equal(payloads(got), [1, 3, 9]);
    },

    'log - destroy deletes the messages: the log opened again by that name is empty': async (ctx) => {
      const { a, log, consume, name, subject } = await open(ctx);
      const l = await log(name('log'));
      a.publish(subject('e'), bytes(1));
      await a.flush();
      await l.destroy();
      await l.destroy(); // twice is fine
      const again = await log(name('log'));
      a.publish(subject('e'), bytes(2));
      await a.flush();
      const { got } = await consume(again, {});
      await waitFor(() => got.length >= 1, WAIT_MS, 'the message stored after re-creating');
      assert.equal(payloads(got), [2]);
      assert.is(got[0]?.seq, 1, 'a new log numbers from 1');
    },

    'log - a durable name with another filter is BAD_REQUEST': async (ctx) => {
      const { log, consume, name, subject } = await open(ctx);
      const l = await log(name('log'));
      const first = await consume(l, { durable: 'd', filter: subject('x.*') });
      await first.consumer.stop();
      const err = await rejection(
        l.consume({ filter: subject('y.*'), durable: 'd', start: 'all' }, () => undefined),
        'a durable with another filter',
      );
      assert.is(err.code, 'BAD_REQUEST');
      assert.match(err.message, 'another durable name');
      const whole = await rejection(
        l.consume({ filter: undefined, durable: 'd', start: 'all' }, () => undefined),
        'a durable without its filter',
      );
      assert.is(whole.code, 'BAD_REQUEST');
    },
  };

  for (const c of PERSISTENCE_CASES) {
    if (deviations[c] !== undefined) s.skip(c, cases[c]);
    else s(c, cases[c]);
  }
  s.run();
}
