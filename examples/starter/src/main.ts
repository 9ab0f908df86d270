/**
 * The starter's entry point: spawns the pipeline and calls it. Embedded (one
 * process, no server) by default; on NATS when NATS_URL is set.
 *
 *   node dist/main.js                                  # embedded
 *   NATS_URL=nats://127.0.0.1:4222 node dist/main.js   # NATS
 */
import 'reflect-metadata';
import { Runtime } from '@troupe/runtime';
import { Gateway, Tokenizer } from './pipeline.js';

async function main(): Promise<void> {
  const namespace = process.env.STARTER_NAMESPACE ?? 'starter';
  // No servers and no NATS_URL: embedded. With NATS_URL: connects to NATS.
  const runtime = await Runtime.connect();
  try {
    await runtime.spawn(Tokenizer, { namespace, replicas: 2 });
    // A streaming gateway spends its time awaiting I/O: let it serve several requests at once.
    await runtime.spawn(Gateway, { namespace, concurrency: 16 });

    const gateway = runtime.namespace(namespace).client(Gateway);
    const words: string[] = [];
    for await (const word of gateway.generate({ prompt: 'hello from the troupe starter' })) words.push(word);
    console.log(`${runtime.network ? 'embedded' : 'nats'}: ${words.join(' ')}`);

    try {
      await runtime.namespace(namespace).component('gateway').endpoint('nope').client().call({});
    } catch (err) {
      console.log(`a typo'd endpoint: ${(err as Error).message}`);
    }
  } finally {
    await runtime.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
