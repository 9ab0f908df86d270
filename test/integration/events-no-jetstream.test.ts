import { NatsServer, within } from '@troupe/testing';
import { Runtime, TroupeError } from '@troupe/runtime/internal';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

const s = suite<{ server?: NatsServer; rt?: Runtime }>('events without JetStream');

s.before(async (ctx) => {
  ctx.server = await NatsServer.start({ jetstream: false });
  ctx.rt = await Runtime.connect({ servers: ctx.server.url, discovery: false });
});

s.after(async (ctx) => {
  await ctx.rt?.close();
  await ctx.server?.stop();
});

s('live events work; durable ones fail at once with an error that names the fix', async (ctx) => {
  const ns = ctx.rt!.namespace('nojs');
  const first = new Promise<unknown>((resolve, reject) => {
    const sub = ns.events('ping', { onReady: () => ns.publish('ping', 1) }).subscribe({
      next: (e) => {
        sub.unsubscribe();
        resolve(e.data);
      },
      error: reject,
    });
  });
  assert.is(await within(first, 2_000, 'a broadcast event'), 1);
  const t0 = Date.now();
  const durable = (): Promise<unknown> => new Promise((resolve, reject) => ns.events('ping', { durable: 'd' }).subscribe({ next: resolve, error: reject }));
  for (const attempt of [durable, () => ns.persistEvents()]) {
    try {
      await within(attempt(), 2_000, 'the durable attempt to fail');
      assert.unreachable('stored events without JetStream');
    } catch (err) {
      assert.instance(err, TroupeError);
      assert.is((err as TroupeError).code, 'UNAVAILABLE');
      assert.match((err as Error).message, /no JetStream/);
      assert.match((err as Error).message, /-js/);
    }
  }
  assert.ok(Date.now() - t0 < 1_000, 'failed fast');
});

s.run();
