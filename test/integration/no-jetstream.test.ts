import { NatsServer } from '@troupe/testing';
import { component, endpoint, Runtime, TroupeError } from '@troupe/runtime/internal';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

@component('echo')
class Echo {
  @endpoint() say(x: string): string {
    return x;
  }
}

const s = suite<{ server?: NatsServer }>('discovery without JetStream');

s.before(async (ctx) => {
  ctx.server = await NatsServer.start({ jetstream: false });
});

s.after(async (ctx) => {
  await ctx.server?.stop();
});

s('refuses to connect with an error that names the fix, at once', async (ctx) => {
  const t0 = Date.now();
  try {
    await Runtime.connect({ servers: ctx.server!.url });
    assert.unreachable('connected to a server without JetStream with discovery on');
  } catch (err) {
    assert.instance(err, TroupeError);
    assert.is((err as TroupeError).code, 'UNAVAILABLE');
    assert.match((err as Error).message, /no JetStream/);
    assert.match((err as Error).message, /-js/);
    assert.match((err as Error).message, /discovery: false/);
  }
  assert.ok(Date.now() - t0 < 3_000, 'failed fast');
});

s('runs with discovery off: queue-group routing only', async (ctx) => {
  const rt = await Runtime.connect({ servers: ctx.server!.url, discovery: false });
  try {
    await rt.spawn(Echo, { namespace: 'nojs', replicas: 2 });
    assert.is(await rt.namespace('nojs').client(Echo).say('hi'), 'hi');
    assert.throws(() => rt.namespace('nojs').component('echo').endpoint('say').client({ router: 'round-robin' }), /needs discovery/);
  } finally {
    await rt.close();
  }
});

s.run();
