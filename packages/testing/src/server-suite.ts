import { suite, type Test } from 'uvu';
import type { Cleanup } from './cleanup';
import { NatsServer } from './nats-server';

/** The context of a {@link serverSuite}: its cleanup list and its private server. */
export interface ServerSuiteContext<C extends Cleanup> {
  cleanup: C;
  server?: NatsServer;
}

/**
 * A uvu suite with a private `nats-server` (JetStream on, OS-assigned port)
 * started before its cases and stopped after them, and `cleanup` run after
 * each case — the frame every fault test file needs.
 *
 * @example
 * const s = serverSuite('discovery - kill -9', new Cleanup());
 * s('...', async (ctx) => { const url = ctx.server!.url; ... });
 */
export function serverSuite<C extends Cleanup>(name: string, cleanup: C): Test<ServerSuiteContext<C>> {
  const s = suite<ServerSuiteContext<C>>(name, { cleanup });
  s.before(async (ctx) => {
    ctx.server = await NatsServer.start({ jetstream: true });
  });
  s.after(async (ctx) => {
    await ctx.server?.stop();
  });
  s.after.each(async (ctx) => {
    await ctx.cleanup.run();
  });
  return s;
}
