/**
 * The main job: a tiny token pipeline. A `generator` component with a unary
 * endpoint (`info`) and a streaming one (`generate`), two replicas, and a
 * client that calls both (round-robin over discovery) and one instance directly.
 *
 * Runs on the embedded runtime (in-process, no server) by default, and on
 * NATS when NATS_URL is set: the same code, chosen by configuration alone.
 */
import 'reflect-metadata';
import { lastValueFrom, toArray } from 'rxjs';
import { component, type Context, endpoint, injectConfig, type OnStart, Runtime } from '@troupe/runtime';

interface GeneratorConfig {
  model: string;
}

@component('generator')
export class Generator implements OnStart {
  private served = 0;

  constructor(@injectConfig() private readonly config: GeneratorConfig) {}

  onStart(): void {
    this.served = 0;
  }

  /** Unary: which model and instance answered. */
  @endpoint()
  info(_req: undefined, ctx: Context): { model: string; instance: string; served: number } {
    return { model: this.config.model, instance: ctx.instanceId, served: this.served };
  }

  /** Streaming: one token per word of the prompt. */
  @endpoint()
  async *generate(req: { prompt: string }, ctx: Context): AsyncGenerator<string> {
    this.served++;
    for (const word of req.prompt.split(/\s+/)) {
      if (ctx.signal.aborted) return;
      yield word;
    }
  }
}

export async function main(): Promise<void> {
  // No servers and no NATS_URL: embedded. NATS_URL=nats://127.0.0.1:4222: NATS.
  const runtime = await Runtime.connect();
  try {
    const handle = await runtime.spawn(Generator, {
      namespace: 'demo',
      replicas: 2,
      config: { model: 'tiny-words' },
    });
    console.log(`spawned generator x2 on ${runtime.bus.describe}: ${handle.instanceIds.join(', ')}`);

    const gen = runtime.namespace('demo').client(Generator);
    const tokens = await lastValueFrom(gen.generate({ prompt: 'the quick brown fox jumps over the lazy dog' }).pipe(toArray()));
    console.log(`stream  -> ${tokens.length} tokens: ${tokens.join(' ')}`);

    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) seen.add((await gen.info(undefined)).instance);
    console.log(`unary   -> 20 calls answered by ${seen.size} instance(s) (round-robin over discovery)`);

    const first = handle.instanceIds[0] as string;
    const direct = runtime.namespace('demo').client(Generator, { instance: first });
    const answer = await direct.info(undefined);
    console.log(`direct  -> ${answer.instance === first ? 'reached' : 'MISSED'} instance ${first} (model ${answer.model})`);
    if (tokens.length !== 9 || answer.instance !== first) throw new Error('example pipeline produced a wrong result');
  } finally {
    await runtime.close();
  }
}

if (require.main === module) {
  main().then(
    () => console.log('ok'),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
