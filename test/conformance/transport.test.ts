import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryNetwork, NatsTransport, type TransportMessage } from '@troupe/runtime/internal';
import { transportSuite, waitFor } from '@troupe/testing';

const servers = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

// A fresh network per test: nothing leaks from one case into the next.
transportSuite('memory', {
  async open() {
    const network = new MemoryNetwork({ name: 'conformance' });
    const a = network.connect('a');
    const b = network.connect('b');
    return {
      a,
      b,
      close: async () => {
        await Promise.all([a.close(), b.close()]);
        const left = network.stats();
        if (left.connections !== 0 || left.subscriptions !== 0) throw new Error(`memory network leaked ${JSON.stringify(left)}`);
      },
    };
  },
});

// The suite makes a random subject prefix per test, so runs sharing this server never interfere.
transportSuite('nats', {
  async open() {
    const a = await NatsTransport.connect({ servers, name: 'conformance-a' });
    const b = await NatsTransport.connect({ servers, name: 'conformance-b' }).catch(async (e: unknown) => {
      await a.close();
      throw e;
    });
    return {
      a,
      b,
      close: async () => {
        await Promise.all([a.close(), b.close()]);
      },
    };
  },
});

const isolation = suite('memory network');

isolation('two networks in one process are isolated', async () => {
  const one = new MemoryNetwork({ name: 'one' });
  const two = new MemoryNetwork({ name: 'two' });
  const a1 = one.connect();
  const a2 = two.connect();
  try {
    const onOne: string[] = [];
    const onTwo: TransportMessage[] = [];
    a1.subscribe('shared.subject', (m) => onOne.push(m.subject));
    a2.subscribe('inbox', (m) => onTwo.push(m));
    a2.publish('shared.subject', new Uint8Array([2]), { reply: 'inbox' });
    await waitFor(() => onTwo.length === 1, 1_000, 'the no-responders reply on network two');
    assert.is(onTwo[0]?.noResponders, true, 'network two sees no subscriber on shared.subject');
    a1.publish('shared.subject', new Uint8Array([1]));
    await Promise.all([a1.flush(), a2.flush()]);
    assert.equal(onOne, ['shared.subject'], 'network one got only its own message');
  } finally {
    await Promise.all([a1.close(), a2.close()]);
  }
});

isolation('request leaves no subscription behind', async () => {
  const network = new MemoryNetwork();
  const a = network.connect();
  const b = network.connect();
  try {
    b.subscribe('svc', (m) => m.reply !== undefined && b.publish(m.reply, m.data));
    const before = network.stats().subscriptions;
    const replies = await Promise.all(Array.from({ length: 100 }, (_, i) => a.request('svc', new Uint8Array([i]), { timeoutMs: 1_000 })));
    assert.equal(
      replies.map((r) => r.data[0]),
      Array.from({ length: 100 }, (_, i) => i),
    );
    await a.request('nobody', new Uint8Array(0), { timeoutMs: 1_000 }).catch(() => undefined);
    await a.request('svc-silent', new Uint8Array(0), { timeoutMs: 1 }).catch(() => undefined);
    assert.is(network.stats().subscriptions, before);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

// nats.js's publish through Troupe's guarded path into its internals (transport/nats/fast-publish.ts), and the fallback.
const natsInternals = suite('nats transport internals');

interface Seen {
  subject: string;
  reply: string | undefined;
  header: string | undefined;
  body: string;
}

async function roundTrip(a: NatsTransport, b: NatsTransport, subject: string): Promise<Seen[]> {
  const seen: Seen[] = [];
  const sub = b.subscribe(subject, (m) =>
    seen.push({ subject: m.subject, reply: m.reply, header: m.header('Troupe-Timeout'), body: Buffer.from(m.data).toString() }),
  );
  try {
    await b.flush();
    a.publish(subject, Buffer.from('with headers'), { reply: `${subject}.reply.1`, headers: Object.freeze({ 'Troupe-Timeout': '30000' }) });
    a.publish(subject, Buffer.from('with a block'), {
      headerBlock: { block: () => Buffer.from('NATS/1.0\r\nTroupe-Timeout: 5\r\n\r\n'), record: () => ({ 'Troupe-Timeout': '5' }) },
    });
    a.publish(subject, Buffer.from('plain'), { reply: `${subject}.reply.2` });
    a.publish(subject, new Uint8Array(0));
    await a.flush();
    await waitFor(() => seen.length === 4, 2_000, 'the four messages');
  } finally {
    sub.unsubscribe();
  }
  return seen;
}

const expected = (subject: string): Seen[] => [
  { subject, reply: `${subject}.reply.1`, header: '30000', body: 'with headers' },
  { subject, reply: undefined, header: '5', body: 'with a block' },
  { subject, reply: `${subject}.reply.2`, header: undefined, body: 'plain' },
  { subject, reply: undefined, header: undefined, body: '' },
];

/** Bodies and header blocks of {@link roundTrip}'s messages, as nats.js counts them in `outBytes`. */
const SENT_BYTES =
  'with headers'.length +
  'NATS/1.0\r\nTroupe-Timeout: 30000\r\n\r\n'.length +
  'with a block'.length +
  'NATS/1.0\r\nTroupe-Timeout: 5\r\n\r\n'.length +
  'plain'.length;

/** Counts the publishes that go through nats.js's public `publish`. */
function countPublic(t: NatsTransport): { n: number } {
  const count = { n: 0 };
  const nc = t.nc as unknown as { publish: (...a: unknown[]) => void };
  const real = nc.publish.bind(nc);
  nc.publish = (...a: unknown[]) => {
    count.n++;
    real(...a);
  };
  return count;
}

natsInternals('the pinned nats.js takes the fast path, and the messages are those its public publish sends', async () => {
  const a = await NatsTransport.connect({ servers, name: 'internals-a' });
  const b = await NatsTransport.connect({ servers, name: 'internals-b' });
  try {
    const subject = `internals.${process.pid}.fast`;
    const pub = countPublic(a);
    const before = a.nc.stats();
    assert.equal(await roundTrip(a, b, subject), expected(subject));
    assert.is(
      pub.n,
      0,
      "no publish went through nats.js's public publish: the guard accepted nats.js " +
        String((a.nc as unknown as { protocol: { transport: { version: string } } }).protocol.transport.version),
    );
    const after = a.nc.stats();
    assert.is(after.outMsgs - before.outMsgs, 4, 'nats.js counted the messages');
    assert.is(after.outBytes - before.outBytes, SENT_BYTES, 'and their bytes (header blocks included)');
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

natsInternals('when nats.js internals are not the expected ones, publish goes through its public publish', async () => {
  const a = await NatsTransport.connect({ servers, name: 'internals-a' });
  const b = await NatsTransport.connect({ servers, name: 'internals-b' });
  try {
    // A release the fast path was not written against: the guard in the constructor must refuse it.
    (a.nc as unknown as { protocol: { transport: { version: string } } }).protocol.transport.version = '3.0.0';
    const Ctor = NatsTransport as unknown as new (nc: NatsTransport['nc']) => NatsTransport;
    const changed = new Ctor(a.nc);
    const pub = countPublic(changed);
    const before = a.nc.stats();
    const subject = `internals.${process.pid}.fallback`;
    assert.equal(await roundTrip(changed, b, subject), expected(subject));
    assert.is(pub.n, 4, "every publish went through nats.js's public publish");
    const after = a.nc.stats();
    assert.is(after.outMsgs - before.outMsgs, 4);
    assert.is(after.outBytes - before.outBytes, SENT_BYTES, 'the count the fast path keeps too');
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

isolation.run();
natsInternals.run();
