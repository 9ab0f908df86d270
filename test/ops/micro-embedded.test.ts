import * as assert from 'uvu/assert';
import { suite } from 'uvu';
import { Runtime, TroupeError, type Transport } from '@troupe/runtime/internal';
import { Cleanup, within } from '@troupe/testing';
import { Gen, Prep } from './fixtures/ops-common';

// The $SRV responder is transport-independent: on the embedded (memory)
// network it answers as on NATS, and `micro: false` turns it off.

const s = suite<{ cleanup: Cleanup }>('ops - NATS micro on the embedded runtime', { cleanup: new Cleanup() });
s.after.each(async (ctx) => ctx.cleanup.run());

/** Publishes a $SRV request with a private reply subject and collects the replies until `count` arrived or `ms` passed. */
async function ask(bus: Transport, subject: string, count: number, ms = 500): Promise<Array<Record<string, unknown>>> {
  const inbox = `_INBOX.micro${Math.random().toString(36).slice(2)}`;
  const got: Array<Record<string, unknown>> = [];
  let done: () => void = () => undefined;
  const enough = new Promise<void>((r) => (done = r));
  const sub = bus.subscribe(inbox, (m) => {
    got.push(JSON.parse(new TextDecoder().decode(m.data)) as Record<string, unknown>);
    if (got.length >= count) done();
  });
  try {
    bus.publish(subject, new Uint8Array(0), { reply: inbox });
    await Promise.race([enough, new Promise((r) => setTimeout(r, ms))]);
    return got;
  } finally {
    sub.unsubscribe();
  }
}

s('every instance answers $SRV.PING, and the name and id forms select', async (ctx) => {
  const rt = ctx.cleanup.runtime(await Runtime.embedded());
  const p = await rt.spawn(Prep, { namespace: 'emb', replicas: 2, version: '2.0.0' });
  await rt.spawn(Gen, { namespace: 'emb' });
  const all = await within(ask(rt.bus, '$SRV.PING', 3), 2_000, 'three PING replies');
  assert.is(all.length, 3);
  assert.ok(all.every((r) => r['type'] === 'io.nats.micro.v1.ping_response'));
  const prep = await ask(rt.bus, '$SRV.INFO.emb_prep', 2);
  assert.equal(prep.map((r) => r['id']).sort(), [...p.instanceIds].sort());
  assert.ok(prep.every((r) => r['version'] === '2.0.0'));
  const one = await ask(rt.bus, `$SRV.STATS.emb_prep.${p.instanceIds[0]}`, 1);
  assert.is(one.length, 1);
  assert.is(one[0]?.['id'], p.instanceIds[0]);
  assert.is((await ask(rt.bus, '$SRV.PING.emb_nothing', 1, 100)).length, 0, 'an unknown name gets no reply');
  assert.is((await ask(rt.bus, '$SRV.SCHEMA', 1, 100)).length, 0, 'an unknown verb gets no reply');
});

s('micro: false answers nothing; a bad version is refused with BAD_REQUEST', async (ctx) => {
  const rt = ctx.cleanup.runtime(await Runtime.embedded({ micro: false }));
  await rt.spawn(Prep, { namespace: 'emb2' });
  assert.is((await ask(rt.bus, '$SRV.PING', 1, 150)).length, 0);
  const err = await rt.spawn(Prep, { namespace: 'emb2', version: 'v1' }).catch((e: unknown) => e);
  assert.instance(err, TroupeError);
  assert.is((err as TroupeError).code, 'BAD_REQUEST');
});

s('metrics: false still counts requests for $SRV.STATS, untimed (no clock read per request)', async (ctx) => {
  const rt = ctx.cleanup.runtime(await Runtime.embedded({ metrics: false }));
  const p = await rt.spawn(Prep, { namespace: 'emb3' });
  const prep = rt.namespace('emb3').component('prep').endpoint('tokenize').client<{ text: string }, string[]>();
  await prep.call({ text: 'a' });
  await prep.call({ text: 'b' });
  const [stats] = await ask(rt.bus, `$SRV.STATS.emb3_prep.${p.instanceIds[0]}`, 1);
  const tok = (stats?.['endpoints'] as Array<Record<string, unknown>>).find((e) => e['name'] === 'tokenize');
  assert.is(tok?.['num_requests'], 2);
  assert.is(tok?.['processing_time'], 0);
  assert.not.match(await rt.metrics.text(), /troupe_/);
});

s.run();
