import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TroupeError } from '../errors';
import { eventTarget, planEvents } from './event-subscription';
import { defineEvent, eventName } from './events';
import { eventLogName, eventLogSubjects, parseEventSubject } from '../wire/subjects';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof TroupeError ? err.code : `not a TroupeError: ${String(err)}`;
  }
  return undefined;
}

test('events - subjects of each target, live and in the log', () => {
  const plan = (c: string | undefined, e: string | undefined, o = {}) => planEvents(eventTarget('ns', c, e), o);
  assert.equal([plan(undefined, 'a').subjects, plan(undefined, 'a').filter], [['ns._ev.a'], 'ns._ev.a']);
  assert.equal([plan('c', 'a').subjects, plan('c', 'a').filter], [['ns.c._ev.a'], 'ns.c._ev.a']);
  assert.equal([plan('c', undefined).subjects, plan('c', '*').filter], [['ns.c._ev.*'], 'ns.c._ev.*']);
  assert.equal([plan(undefined, '*').subjects, plan(undefined, undefined).filter], [['ns._ev.*', 'ns.*._ev.*'], undefined]);
  assert.equal(eventLogSubjects('ns'), ['ns._ev.*', 'ns.*._ev.*']);
  assert.is(eventLogName('llama_8b'), 'TROUPE_EV_llama_8b');
});

test('events - ackWaitMs: for durables only, an integer >= 300 ms', () => {
  const t = eventTarget('ns', 'c', 'a');
  assert.is(planEvents(t, { durable: 'd', ackWaitMs: 2_000 }).ackWaitMs, 2_000);
  assert.is(planEvents(t, { durable: 'd' }).ackWaitMs, undefined, 'default: the log decides (30 s)');
  assert.is(
    code(() => planEvents(t, { ackWaitMs: 2_000 })),
    'BAD_REQUEST',
    'without a durable name',
  );
  assert.is(
    code(() => planEvents(t, { start: 'all', ackWaitMs: 2_000 })),
    'BAD_REQUEST',
    'a replay has no acks',
  );
  for (const bad of [0, 299, 1.5, Number.NaN, '1000' as unknown as number]) {
    assert.is(
      code(() => planEvents(t, { durable: 'd', ackWaitMs: bad })),
      'BAD_REQUEST',
      `ackWaitMs ${String(bad)}`,
    );
  }
});

test('events - delivery modes from options; gaps off for groups', () => {
  const t = eventTarget('ns', 'c', 'a');
  assert.equal(
    [planEvents(t, {}), planEvents(t, { group: 'g' }), planEvents(t, { durable: 'd' }), planEvents(t, { start: 'new' })].map((p) => [
      p.log,
      p.queue,
      p.durable,
      p.start,
      p.gaps,
    ]),
    [
      [false, undefined, undefined, 'all', true],
      [false, 'g', undefined, 'all', false],
      [true, undefined, 'd', 'all', true],
      [true, undefined, undefined, 'new', true],
    ],
  );
});

test('events - bad names and options are refused before anything is sent', () => {
  const t = eventTarget('ns', undefined, 'a');
  assert.is(
    code(() => eventTarget('ns', undefined, 'a.b')),
    'BAD_REQUEST',
  );
  assert.is(
    code(() => eventTarget('ns', undefined, '>')),
    'BAD_REQUEST',
  );
  assert.is(
    code(() => eventTarget('ns', '_x', 'a')),
    'BAD_REQUEST',
  );
  assert.is(
    code(() => planEvents(t, { group: 'a b' })),
    'BAD_REQUEST',
  );
  assert.is(
    code(() => planEvents(t, { durable: 'a.b' })),
    'BAD_REQUEST',
  );
  assert.is(
    code(() => planEvents(t, { group: 'g', start: 'all' })),
    'BAD_REQUEST',
  );
  assert.is(
    code(() => planEvents(t, { start: 'yesterday' as 'all' })),
    'BAD_REQUEST',
  );
  assert.is(
    code(() => defineEvent('')),
    'BAD_REQUEST',
  );
  assert.is(
    code(() => eventName({ name: 'ok' })),
    undefined,
  );
});

test('events - event subjects parse back into scope, component and name', () => {
  assert.equal(parseEventSubject('ns._ev.a'), { namespace: 'ns', component: undefined, event: 'a' });
  assert.equal(parseEventSubject('ns.c._ev.a'), { namespace: 'ns', component: 'c', event: 'a' });
  assert.is(parseEventSubject('ns.c.ep'), undefined);
  assert.is(parseEventSubject('ns.c.ep.0123456789abcdef'), undefined);
});

test.run();
