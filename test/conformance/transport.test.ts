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

isolation.run();
