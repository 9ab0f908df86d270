import { MemoryNetwork, NatsTransport, type Transport } from '@troupe/runtime/internal';
import { persistenceSuite } from '@troupe/testing';

const servers = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

// A fresh network per test: its buckets and logs die with it.
persistenceSuite('memory', {
  async open() {
    const network = new MemoryNetwork({ name: 'persistence' });
    const a = network.connect('a');
    const b = network.connect('b');
    return {
      a,
      b,
      dropBucket: async () => undefined,
      close: async () => {
        await Promise.all([a.close(), b.close()]);
      },
    };
  },
});

// Names are unique per test (pt_<random>_…); buckets go through the JetStream API (the seam has no bucket delete), logs by destroy().
persistenceSuite('nats', {
  async open() {
    const a = await NatsTransport.connect({ servers, name: 'persistence-a' });
    const b = await NatsTransport.connect({ servers, name: 'persistence-b' }).catch(async (e: unknown) => {
      await a.close();
      throw e;
    });
    return {
      a,
      b,
      dropBucket: (name) => deleteStream(a, `KV_${name}`),
      close: async () => {
        await Promise.all([a.close(), b.close()]);
      },
    };
  },
});

async function deleteStream(t: Transport, stream: string): Promise<void> {
  const reply = await t.request(`$JS.API.STREAM.DELETE.${stream}`, new Uint8Array(0), { timeoutMs: 5_000 });
  const body = JSON.parse(new TextDecoder().decode(reply.data)) as { success?: boolean; error?: { description?: string } };
  if (body.success !== true) throw new Error(`stream ${stream} not deleted: ${body.error?.description ?? 'no reason given'}`);
}
