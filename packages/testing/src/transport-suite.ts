import { randomBytes } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type HeaderBlock, type Transport, type TransportMessage, TransportStatus, TroupeError } from '@troupe/runtime/internal';
import { waitFor, within } from './wait';

/** Two connections to one bus: tests publish on one and subscribe on the other. */
export interface TransportPair {
  a: Transport;
  b: Transport;
  /** Closes both connections and whatever else the factory opened; must tolerate either being closed already. */
  close(): Promise<void>;
}

/** The cases of {@link transportSuite}, named as behaviour. */
export const TRANSPORT_CASES = [
  'delivers to a literal subject',
  "delivers to an object target's deliver, on a literal subject and in a queue group",
  'matches * and > wildcards',
  'queue group delivers each message to exactly one member',
  'no responders reply arrives at once',
  'no responders reply goes only to the publishing connection',
  'request resolves with the reply',
  'request without responders rejects NO_INSTANCES at once',
  'request times out with TIMEOUT',
  'headers arrive',
  'header lookups match whole names, with one header or several',
  'copies headers at publish',
  'takes pre-encoded header blocks, read during publish only',
  'header bytes read before any other lookup say what header() says (first line, status line, other first lines)',
  'refuses a payload over maxPayload with PAYLOAD_TOO_LARGE at once',
  'counts headers toward maxPayload',
  'keeps per-publisher order',
  'delivers asynchronously, never inside publish',
  'a throwing handler does not stop delivery to others',
  'unsubscribe stops delivery',
  'drain delivers what arrived then stops',
  'close delivers what arrived then resolves',
  'publish after close is UNAVAILABLE',
  'refuses wildcard or empty-token publish subjects with BAD_REQUEST',
  'one header rule: printable ASCII names without colon, no CR or LF in values',
] as const;

/** One of {@link TRANSPORT_CASES}. */
export type TransportCase = (typeof TRANSPORT_CASES)[number];

/** Opens a fresh {@link TransportPair} per test. */
export interface TransportFactory {
  open(): Promise<TransportPair>;
  /**
   * Cases this transport does not pass, each with the reason. A deviation is
   * declared and printed, never silently skipped.
   */
  deviations?: Partial<Record<TransportCase, string>>;
}

interface Ctx {
  pair?: TransportPair;
}

/** An opened pair plus a subject prefix unique to this test, so runs on a shared server never interfere. */
interface Open {
  a: Transport;
  b: Transport;
  /** `subject('x')` is `tt.<random>.x`. */
  subject(suffix: string): string;
  /** Every message published so far (by either connection) has reached every subscriber on both. */
  barrier(): Promise<void>;
}

// Generous bounds: a hung test fails in seconds, a slow shared machine does not flake.
const WAIT_MS = 5_000;
// The no-responders reply is a ~2–4 ms round trip on NATS (NATS-FACTS); 100 ms is "at once".
const AT_ONCE_MS = 100;

const bytes = (...xs: number[]): Uint8Array => new Uint8Array(xs);

function thrownCode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof TroupeError) return e.code;
    throw e;
  }
  return undefined;
}

async function rejection(p: Promise<unknown>, what: string): Promise<TroupeError> {
  try {
    await within(p, WAIT_MS, what);
  } catch (e) {
    if (e instanceof TroupeError) return e;
    throw e;
  }
  throw new Error(`${what} resolved; expected a TroupeError`);
}

/**
 * The conformance suite of the {@link Transport} contract: subjects and
 * wildcards, queue groups, no-responders, request/reply, headers, payload
 * limit, ordering, asynchronous delivery, unsubscribe/drain and close.
 * Every transport must pass it unchanged; a case it cannot pass is declared
 * in `factory.deviations` with its reason. Calls `.run()` itself.
 *
 * @example
 * transportSuite('memory', {
 *   async open() {
 *     const net = new MemoryNetwork();
 *     const a = net.connect('a');
 *     const b = net.connect('b');
 *     return { a, b, close: async () => void (await Promise.all([a.close(), b.close()])) };
 *   },
 * });
 */
export function transportSuite(name: string, factory: TransportFactory): void {
  const s = suite<Ctx>(`transport[${name}]`);
  const deviations = factory.deviations ?? {};

  s.before(() => {
    const lines = Object.entries(deviations).map(([c, why]) => `  skips "${c}": ${why}\n`);
    if (lines.length > 0) process.stdout.write(`\n${lines.join('')}`);
  });

  s.after.each(async (ctx) => {
    const pair = ctx.pair;
    ctx.pair = undefined;
    if (pair !== undefined) await within(pair.close(), WAIT_MS, `transport[${name}] to close its pair`);
  });

  const open = async (ctx: Ctx): Promise<Open> => {
    const pair = await within(factory.open(), WAIT_MS, `transport[${name}] to open a pair`);
    ctx.pair = pair;
    const { a, b } = pair;
    const prefix = `tt.${randomBytes(6).toString('hex')}`;
    let barriers = 0;
    return {
      a,
      b,
      subject: (suffix) => `${prefix}.${suffix}`,
      barrier: async () => {
        // Per-publisher order: once a message published after everything else
        // reached both connections, everything before it has too.
        const subject = `${prefix}.barrier.${barriers++}`;
        let onA = false;
        let onB = false;
        const sa = a.subscribe(subject, () => (onA = true));
        const sb = b.subscribe(subject, () => (onB = true));
        await within(Promise.all([a.flush(), b.flush()]), WAIT_MS, 'both connections to flush before the barrier');
        a.publish(subject, bytes());
        await waitFor(() => onA && onB, WAIT_MS, 'the barrier message to reach both connections');
        sa.unsubscribe();
        sb.unsubscribe();
      },
    };
  };

  // Subscriptions are registered with the bus once the subscriber has flushed.
  const ready = (...ts: Transport[]): Promise<unknown> => within(Promise.all(ts.map((t) => t.flush())), WAIT_MS, 'subscriptions to register');

  const cases: Record<TransportCase, (ctx: Ctx) => Promise<void>> = {
    "delivers to an object target's deliver, on a literal subject and in a queue group": async (ctx) => {
      const { a, b, subject } = await open(ctx);
      // An instance's endpoint subscribes with itself (a MessageTarget), not a bound function.
      class Target {
        readonly got: TransportMessage[] = [];
        deliver(m: TransportMessage): void {
          this.got.push(m);
        }
      }
      const literal = new Target();
      const queued = new Target();
      b.subscribe(subject('t.literal'), literal);
      b.subscribe(subject('t.queued'), queued, { queue: 'q' });
      await ready(b);
      a.publish(subject('t.literal'), bytes(1));
      a.publish(subject('t.queued'), bytes(2), { reply: subject('reply.to') });
      await waitFor(() => literal.got.length === 1 && queued.got.length === 1, WAIT_MS, 'one message to each target');
      assert.equal([...(literal.got[0] as TransportMessage).data], [1]);
      assert.is((queued.got[0] as TransportMessage).reply, subject('reply.to'));
      assert.equal([...(queued.got[0] as TransportMessage).data], [2]);
    },
    'delivers to a literal subject': async (ctx) => {
      const { a, b, subject } = await open(ctx);
      const got: TransportMessage[] = [];
      b.subscribe(subject('x.y'), (m) => got.push(m));
      await ready(b);
      a.publish(subject('x.y'), bytes(1, 2, 3));
      a.publish(subject('x.y'), bytes(4), { reply: subject('reply.to') });
      await waitFor(() => got.length === 2, WAIT_MS, 'two messages on a literal subject');
      const [first, second] = got as [TransportMessage, TransportMessage];
      assert.is(first.subject, subject('x.y'));
      assert.equal([...first.data], [1, 2, 3]);
      assert.is(first.reply, undefined);
      assert.is(first.noResponders, false);
      assert.is(first.header('anything'), undefined);
      assert.is(second.reply, subject('reply.to'));
    },

    'matches * and > wildcards': async (ctx) => {
      const { a, b, subject } = await open(ctx);
      const got: Record<string, string[]> = { star: [], gt: [], mid: [], lit: [] };
      const record = (key: string) => (m: TransportMessage) => got[key]?.push(m.subject);
      b.subscribe(subject('*'), record('star'));
      b.subscribe(subject('>'), record('gt'));
      b.subscribe(subject('*.c'), record('mid'));
      b.subscribe(subject('b'), record('lit'));
      await ready(b);
      const base = subject('b').slice(0, -2); // the prefix itself: ">" needs at least one more token
      for (const s of [subject('b'), subject('b.c'), subject('x.c.d'), base, subject('end.end.end')]) a.publish(s, bytes());
      await waitFor(() => got['gt']?.includes(subject('end.end.end')) === true, WAIT_MS, 'the last message on the > subscription');
      assert.equal(got['star'], [subject('b')]);
      assert.equal(got['gt'], [subject('b'), subject('b.c'), subject('x.c.d'), subject('end.end.end')]);
      assert.equal(got['mid'], [subject('b.c')]);
      assert.equal(got['lit'], [subject('b')]);
    },

    'queue group delivers each message to exactly one member': async (ctx) => {
      const { a, b, subject, barrier } = await open(ctx);
      const members = [0, 0, 0];
      let plain = 0;
      // Members on both connections: a group spans connections.
      b.subscribe(subject('work'), () => members[0]!++, { queue: 'workers' });
      b.subscribe(subject('work'), () => members[1]!++, { queue: 'workers' });
      a.subscribe(subject('work'), () => members[2]!++, { queue: 'workers' });
      b.subscribe(subject('work'), () => plain++);
      await ready(a, b);
      for (let i = 0; i < 1000; i++) a.publish(subject('work'), bytes(i & 0xff));
      const sum = (): number => members.reduce((x, y) => x + y, 0);
      await waitFor(() => plain === 1000 && sum() >= 1000, WAIT_MS, '1000 messages to the plain subscriber and the group');
      await barrier();
      assert.is(sum(), 1000, `each message to exactly one member: ${members.join('+')}`);
      assert.is(plain, 1000, 'a plain subscriber gets every message');
      assert.ok(
        members.every((n) => n > 0),
        `every member got some: ${members.join(',')}`,
      );
    },

    'no responders reply arrives at once': async (ctx) => {
      const { a, subject } = await open(ctx);
      const inbox = subject('inbox');
      let got: { msg: TransportMessage; at: number } | undefined;
      a.subscribe(inbox, (msg) => (got = { msg, at: performance.now() }));
      await ready(a);
      const t0 = performance.now();
      a.publish(subject('nobody.home'), bytes(1, 2), { reply: inbox });
      await waitFor(() => got !== undefined, WAIT_MS, 'the no-responders status reply');
      const { msg, at } = got as { msg: TransportMessage; at: number };
      assert.ok(at - t0 < AT_ONCE_MS, `arrived after ${(at - t0).toFixed(1)} ms`);
      assert.is(msg.noResponders, true);
      assert.is(msg.data.length, 0);
      assert.is(msg.subject, inbox);
    },

    'no responders reply goes only to the publishing connection': async (ctx) => {
      // nats-server sends the 503 to the publisher alone (measured on 2.9.10).
      const { a, b, subject, barrier } = await open(ctx);
      const inbox = subject('inbox');
      const seen: string[] = [];
      b.subscribe(inbox, (m) => seen.push(`b ${String(m.noResponders)}`)); // the other connection subscribed first
      a.subscribe(inbox, (m) => seen.push(`a ${String(m.noResponders)}`));
      await ready(a, b);
      a.publish(subject('nobody.home'), bytes(), { reply: inbox });
      a.publish(subject('nobody.home'), bytes()); // no reply subject: silence
      await waitFor(() => seen.length > 0, WAIT_MS, 'the no-responders status reply');
      await barrier();
      assert.equal(seen, ['a true']);
    },

    'request resolves with the reply': async (ctx) => {
      const { a, b, subject } = await open(ctx);
      b.subscribe(subject('svc'), (m) => {
        if (m.reply !== undefined) b.publish(m.reply, m.data.slice().reverse(), { headers: { echo: m.header('x') ?? 'none' } });
      });
      await ready(b);
      const reply = await within(a.request(subject('svc'), bytes(1, 2, 3), { timeoutMs: WAIT_MS, headers: { x: 'hi' } }), WAIT_MS, 'the reply');
      assert.equal([...reply.data], [3, 2, 1]);
      assert.is(reply.header('echo'), 'hi');
      assert.is(reply.noResponders, false);
    },

    'request without responders rejects NO_INSTANCES at once': async (ctx) => {
      const { a, subject } = await open(ctx);
      const t0 = performance.now();
      const err = await rejection(a.request(subject('nobody'), bytes(1), { timeoutMs: WAIT_MS }), 'the request to nobody');
      const elapsed = performance.now() - t0;
      assert.is(err.code, 'NO_INSTANCES');
      assert.ok(elapsed < AT_ONCE_MS, `rejected after ${elapsed.toFixed(1)} ms`);
    },

    'request times out with TIMEOUT': async (ctx) => {
      const { a, b, subject } = await open(ctx);
      let asked = 0;
      b.subscribe(subject('silent'), () => asked++);
      await ready(b);
      const t0 = performance.now();
      const err = await rejection(a.request(subject('silent'), bytes(1), { timeoutMs: 100 }), 'the request to a silent responder');
      const elapsed = performance.now() - t0;
      assert.is(err.code, 'TIMEOUT');
      assert.is(asked, 1);
      assert.ok(elapsed >= 90 && elapsed < 2_000, `timed out after ${elapsed.toFixed(1)} ms`);
    },

    'headers arrive': async (ctx) => {
      const { a, b, subject } = await open(ctx);
      let got: TransportMessage | undefined;
      b.subscribe(subject('h'), (m) => (got = m));
      await ready(b);
      a.publish(subject('h'), bytes(7), { headers: { 'X-Trace-Id': 'abc-123', lower: 'v', empty: '' } });
      await waitFor(() => got !== undefined, WAIT_MS, 'a message with headers');
      const m = got as TransportMessage;
      assert.is(m.header('X-Trace-Id'), 'abc-123');
      assert.is(m.header('lower'), 'v');
      assert.is(m.header('empty'), '');
      assert.is(m.header('missing'), undefined);
      assert.equal([...m.data], [7]);
    },

    'header lookups match whole names, with one header or several': async (ctx) => {
      const { a, b, subject } = await open(ctx);
      const got: TransportMessage[] = [];
      const spans: string[][] = [];
      const names = ['Troupe-Timeout', 'Troupe-Timeou', 'Troupe-Timeout2', 'troupe-timeout', 'Troupe-Id', 'Troupe-Idx', 'Id', 'k', 'Troupe', ''];
      b.subscribe(subject('w'), (m) => {
        got.push(m);
        // Where the transport has them, the raw bytes of each header say what header() says (read in the handler: valid until it returns).
        if (m.headerBytes === undefined) return;
        const out = { bytes: new Uint8Array(0), from: 0, to: 0 };
        spans.push(
          names.map((name) => {
            const found = (m.headerBytes as NonNullable<TransportMessage['headerBytes']>).call(m, name, out);
            return `${name}=${found ? new TextDecoder().decode(out.bytes.subarray(out.from, out.to)) : '-'}|${m.header(name) ?? '-'}`;
          }),
        );
      });
      await ready(b);
      // One header (the NATS transport answers other names without a search), then several whose names nest and recur in values.
      a.publish(subject('w'), bytes(1), { headers: { 'Troupe-Timeout': '300' } });
      a.publish(subject('w'), bytes(2), { headers: { 'Troupe-Id': 'a', 'Troupe-Idx': 'Troupe-Id: no', Id: 'b c', k: 'caf\u00e9' } });
      await waitFor(() => got.length === 2, WAIT_MS, 'two messages with headers');
      const [one, many] = got as [TransportMessage, TransportMessage];
      assert.is(one.header('Troupe-Timeout'), '300');
      for (const name of ['Troupe-Timeou', 'Troupe-Timeout2', 'Timeout', 'troupe-timeout', 'Troupe-Id', '']) {
        assert.is(one.header(name), undefined, `${JSON.stringify(name)} on a one-header message`);
      }
      assert.is(one.noResponders, false);
      assert.is(many.header('Troupe-Id'), 'a');
      assert.is(many.header('Troupe-Idx'), 'Troupe-Id: no');
      assert.is(many.header('Id'), 'b c');
      assert.is(many.header('k'), 'caf\u00e9');
      for (const name of ['Troupe-I', 'Troupe', 'no', 'd', 'Troupe-Timeout']) assert.is(many.header(name), undefined, `${JSON.stringify(name)}`);
      assert.equal([...one.data, ...many.data], [1, 2]);
      if (one.headerBytes !== undefined) assert.is(spans.length, 2);
      for (const line of spans.flat()) {
        const [seen, read] = line.split('|');
        assert.is(seen?.slice(seen.indexOf('=') + 1), read, line);
      }
    },

    'takes pre-encoded header blocks, read during publish only': async (ctx) => {
      const { a, b, subject } = await open(ctx);
      const got: TransportMessage[] = [];
      b.subscribe(subject('p'), (m) => got.push(m));
      await ready(b);
      // One object reused for every publish, as an event publisher does: each message keeps its own values.
      let n = 0;
      const block: HeaderBlock = {
        block: () => new TextEncoder().encode(`NATS/1.0\r\nTroupe-Event: p1 ${n} 1700000000000\r\n\r\n`),
        record: () => ({ 'Troupe-Event': `p1 ${n} 1700000000000` }),
      };
      for (n = 1; n <= 2; n++) a.publish(subject('p'), bytes(n), { headerBlock: block });
      await waitFor(() => got.length === 2, WAIT_MS, 'two messages with pre-encoded headers');
      assert.equal(
        got.map((m) => [m.header('Troupe-Event'), m.header('Troupe-Id'), [...m.data]]),
        [
          ['p1 1 1700000000000', undefined, [1]],
          ['p1 2 1700000000000', undefined, [2]],
        ],
      );
    },

    'header bytes read before any other lookup say what header() says (first line, status line, other first lines)': async (ctx) => {
      const { a, b, subject } = await open(ctx);
      const got: TransportMessage[] = [];
      const spans: string[] = [];
      // Read in the handler, the event's name first (the NATS transport reads a first line without indexing the block), then names that are not it.
      const names = ['Troupe-Event', 'Troupe-Even', 'Troupe-Event2', 'troupe-event', 'X', 'Troupe-Event'];
      b.subscribe(subject('f'), (m) => {
        got.push(m);
        if (m.headerBytes === undefined) return;
        const out = { bytes: new Uint8Array(0), from: 0, to: 0 };
        for (const name of names) {
          const found = (m.headerBytes as NonNullable<TransportMessage['headerBytes']>).call(m, name, out);
          spans.push(`${name}=${found ? new TextDecoder().decode(out.bytes.subarray(out.from, out.to)) : '-'}|${m.header(name) ?? '-'}`);
        }
      });
      await ready(b);
      const blocks: [string, string][] = [
        ['NATS/1.0\r\nTroupe-Event:  p1 7 9 \t\r\n\r\n', 'p1 7 9'],
        ['NATS/1.0\r\nTroupe-Event:p1 8 9\r\nX: y\r\n\r\n', 'p1 8 9'],
        ['NATS/1.0 100 Idle\r\nTroupe-Event: p1 9 9\r\n\r\n', 'p1 9 9'],
        ['NATS/1.0\r\nX: y\r\nTroupe-Event: p1 10 9\r\n\r\n', 'p1 10 9'],
        ['NATS/1.0\r\nTroupe-Event2: no\r\n\r\n', ''],
      ];
      for (const [text, value] of blocks) {
        const block: HeaderBlock = {
          block: () => new TextEncoder().encode(text),
          record: (): Record<string, string> => (value === '' ? { 'Troupe-Event2': 'no' } : { 'Troupe-Event': value }),
        };
        a.publish(subject('f'), bytes(1), { headerBlock: block });
      }
      await waitFor(() => got.length === blocks.length, WAIT_MS, 'the messages with pre-encoded headers');
      assert.equal(
        got.map((m) => m.header('Troupe-Event') ?? ''),
        blocks.map(([, value]) => value),
      );
      if (got[0]?.headerBytes !== undefined) assert.is(spans.length, names.length * blocks.length);
      for (const line of spans) {
        const [seen, read] = line.split('|');
        assert.is(seen?.slice(seen.indexOf('=') + 1), read, line);
      }
    },

    'copies headers at publish': async (ctx) => {
      const { a, b, subject } = await open(ctx);
      let got: TransportMessage | undefined;
      b.subscribe(subject('c'), (m) => (got = m));
      await ready(b);
      // The bytes become the transport's at publish (Transport.publish: zero-copy on NATS); headers are copied.
      const headers: Record<string, string> = { k: 'before' };
      a.publish(subject('c'), bytes(1, 2, 3), { headers });
      headers['k'] = 'after';
      await waitFor(() => got !== undefined, WAIT_MS, 'the message');
      assert.equal([...(got as TransportMessage).data], [1, 2, 3]);
      assert.is((got as TransportMessage).header('k'), 'before');
    },

    'refuses a payload over maxPayload with PAYLOAD_TOO_LARGE at once': async (ctx) => {
      const { a, subject } = await open(ctx);
      const max = a.maxPayload;
      assert.ok(Number.isSafeInteger(max) && max > 0, `maxPayload is ${max}`);
      try {
        a.publish(subject('big'), new Uint8Array(max + 1));
        assert.unreachable('publish of maxPayload + 1 bytes did not throw');
      } catch (e) {
        if (!(e instanceof TroupeError)) throw e;
        assert.is(e.code, 'PAYLOAD_TOO_LARGE');
        assert.equal(e.data, { size: max + 1, max });
      }
      a.publish(subject('big'), new Uint8Array(max)); // exactly max is allowed
      const err = await rejection(a.request(subject('big'), new Uint8Array(max + 1), { timeoutMs: WAIT_MS }), 'an oversized request');
      assert.is(err.code, 'PAYLOAD_TOO_LARGE');
    },

    'counts headers toward maxPayload': async (ctx) => {
      const { a, subject } = await open(ctx);
      // "NATS/1.0\r\nk: v\r\n\r\n" alone is 18 bytes.
      assert.is(
        thrownCode(() => a.publish(subject('big'), new Uint8Array(a.maxPayload - 4), { headers: { k: 'v' } })),
        'PAYLOAD_TOO_LARGE',
      );
    },

    'keeps per-publisher order': async (ctx) => {
      const { a, b, subject } = await open(ctx);
      const n = 10_000;
      const onB: number[] = [];
      const onA: number[] = [];
      const decode = (m: TransportMessage): number => new DataView(m.data.buffer, m.data.byteOffset, m.data.byteLength).getUint32(0);
      b.subscribe(subject('seq'), (m) => onB.push(decode(m)));
      a.subscribe(subject('seq'), (m) => onA.push(decode(m)));
      await ready(a, b);
      for (let i = 0; i < n; i++) {
        const buf = new Uint8Array(4);
        new DataView(buf.buffer).setUint32(0, i);
        a.publish(subject('seq'), buf);
      }
      await waitFor(() => onA.length === n && onB.length === n, 15_000, `${n} messages on both connections`);
      for (const [who, got] of [
        ['b', onB],
        ['a', onA],
      ] as const) {
        for (let i = 0; i < n; i++) if (got[i] !== i) assert.unreachable(`on ${who}: message ${i} is ${String(got[i])}`);
      }
    },

    'delivers asynchronously, never inside publish': async (ctx) => {
      const { a, b, subject } = await open(ctx);
      let inside = false;
      const seen: boolean[] = [];
      a.subscribe(subject('async'), () => seen.push(inside));
      b.subscribe(subject('async'), () => seen.push(inside));
      await ready(a, b);
      inside = true;
      a.publish(subject('async'), bytes(1));
      const duringPublish = seen.length;
      inside = false;
      assert.is(duringPublish, 0, 'no handler ran inside publish');
      await waitFor(() => seen.length === 2, WAIT_MS, 'the message on both connections');
      assert.equal(seen, [false, false]);
    },

    'a throwing handler does not stop delivery to others': async (ctx) => {
      const { a, b, subject } = await open(ctx);
      const warnings: string[] = [];
      const onWarning = (w: Error): void => void warnings.push(w.message);
      process.on('warning', onWarning);
      try {
        let threw = 0;
        let fine = 0;
        b.subscribe(subject('t'), () => {
          threw++;
          throw new Error('conformance: deliberate handler failure');
        });
        b.subscribe(subject('t'), () => fine++);
        a.subscribe(subject('t'), () => fine++);
        await ready(a, b);
        a.publish(subject('t'), bytes(1));
        a.publish(subject('t'), bytes(2));
        await waitFor(() => threw === 2 && fine === 4, WAIT_MS, 'both messages to every handler');
        await waitFor(() => warnings.filter((w) => w.includes('deliberate handler failure')).length === 2, WAIT_MS, 'a warning per throw');
      } finally {
        process.off('warning', onWarning);
      }
    },

    'unsubscribe stops delivery': async (ctx) => {
      const { a, b, subject, barrier } = await open(ctx);
      let n = 0;
      const sub = b.subscribe(subject('u'), () => {
        n++;
        sub.unsubscribe(); // messages already on their way are dropped too
      });
      await ready(b);
      for (let i = 0; i < 10; i++) a.publish(subject('u'), bytes(i));
      await waitFor(() => n > 0, WAIT_MS, 'the first message');
      await barrier();
      assert.is(n, 1);
      assert.is(sub.closed, true);
      a.publish(subject('u'), bytes());
      await barrier();
      assert.is(n, 1);
    },

    'drain delivers what arrived then stops': async (ctx) => {
      const { a, b, subject, barrier } = await open(ctx);
      let n = 0;
      const sub = b.subscribe(subject('d'), () => n++);
      await ready(b);
      // Published on the subscriber's own connection, so they are ahead of the drain.
      for (let i = 0; i < 100; i++) b.publish(subject('d'), bytes(i));
      await within(sub.drain(), WAIT_MS, 'the drain');
      assert.is(n, 100, 'everything published before the drain was delivered');
      assert.is(sub.closed, true);
      for (let i = 0; i < 10; i++) a.publish(subject('d'), bytes(i));
      await barrier();
      assert.is(n, 100, 'nothing after the drain');
    },

    'close delivers what arrived then resolves': async (ctx) => {
      const { b, subject } = await open(ctx);
      let n = 0;
      b.subscribe(subject('c'), () => n++);
      await ready(b);
      for (let i = 0; i < 50; i++) b.publish(subject('c'), bytes(i));
      await within(b.close(), WAIT_MS, 'close');
      assert.is(n, 50);
      assert.is(b.status, TransportStatus.CLOSED);
    },

    'publish after close is UNAVAILABLE': async (ctx) => {
      const { a, subject } = await open(ctx);
      assert.is(a.status, TransportStatus.CONNECTED);
      const statuses: TransportStatus[] = [];
      const watch = a.status$.subscribe((st) => statuses.push(st));
      try {
        await within(a.close(), WAIT_MS, 'close');
        assert.is(a.status, TransportStatus.CLOSED);
        assert.equal(statuses, [TransportStatus.CONNECTED, TransportStatus.CLOSED]);
      } finally {
        watch.unsubscribe();
      }
      assert.is(
        thrownCode(() => a.publish(subject('x'), bytes())),
        'UNAVAILABLE',
      );
      assert.is(
        thrownCode(() => a.subscribe(subject('x'), () => undefined)),
        'UNAVAILABLE',
      );
      assert.is((await rejection(a.request(subject('x'), bytes(), { timeoutMs: 1_000 }), 'a request after close')).code, 'UNAVAILABLE');
      await within(a.close(), WAIT_MS, 'a second close');
      await within(a.flush(), WAIT_MS, 'flush after close');
    },

    'refuses wildcard or empty-token publish subjects with BAD_REQUEST': async (ctx) => {
      const { a, subject } = await open(ctx);
      const base = subject('p');
      for (const bad of [`${base}.*`, `${base}.>`, '*', '>', `${base}..x`, `.${base}`, `${base}.`, '', `${base} x`, `${base}\tx`]) {
        assert.is(
          thrownCode(() => a.publish(bad, bytes())),
          'BAD_REQUEST',
          `publish to ${JSON.stringify(bad)}`,
        );
      }
      assert.is(
        thrownCode(() => a.publish(base, bytes(), { reply: `${base}.*` })),
        'BAD_REQUEST',
        'a wildcard reply subject',
      );
      assert.is((await rejection(a.request(`${base}.>`, bytes(), { timeoutMs: 1_000 }), 'a request to a wildcard')).code, 'BAD_REQUEST');
    },

    'one header rule: printable ASCII names without colon, no CR or LF in values': async (ctx) => {
      const { a, b, subject } = await open(ctx);
      let got: TransportMessage | undefined;
      b.subscribe(subject('hr'), (m) => (got = m));
      await ready(b);
      // nats.js's rule (any printable ASCII but ':'), not HTTP's stricter token grammar: both transports accept these.
      a.publish(subject('hr'), bytes(1), { headers: { 'X/Y@z': 'v', 'a=b': 'w' } });
      await waitFor(() => got !== undefined, WAIT_MS, 'a message with unusual header names');
      assert.is((got as TransportMessage).header('X/Y@z'), 'v');
      assert.is((got as TransportMessage).header('a=b'), 'w');
      for (const name of ['a:b', 'a b', '', 'caf\u00e9', 'a\tb']) {
        assert.is(
          thrownCode(() => a.publish(subject('hr'), bytes(), { headers: { [name]: 'v' } })),
          'BAD_REQUEST',
          `header name ${JSON.stringify(name)}`,
        );
      }
      for (const value of ['a\rb', 'a\nb']) {
        assert.is(
          thrownCode(() => a.publish(subject('hr'), bytes(), { headers: { k: value } })),
          'BAD_REQUEST',
          `header value ${JSON.stringify(value)}`,
        );
      }
      const r = await rejection(a.request(subject('hr'), bytes(), { timeoutMs: 1_000, headers: { 'a:b': 'v' } }), 'a request with a bad header name');
      assert.is(r.code, 'BAD_REQUEST');
    },
  };

  for (const c of TRANSPORT_CASES) {
    if (deviations[c] !== undefined) s.skip(c, cases[c]);
    else s(c, cases[c]);
  }
  s.run();
}
