import { getEventListeners, setMaxListeners } from 'node:events';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cachedHeaderRecords, DEFAULT_STOP_GRACE_MS, onAbort, onStop, precheck, stopGraceOf, unaryHeaders } from './call-options';

test('call options - the header record cache stays bounded whatever the budgets (#16)', () => {
  for (let budget = 1; budget <= 5_000; budget++) unaryHeaders(budget, undefined);
  assert.ok(cachedHeaderRecords() <= 512, `${cachedHeaderRecords()} header records cached`);
  assert.ok(cachedHeaderRecords() > 0, 'records are cached at all');
});

test('call options - the abort listener remover leaves no listener on a long-lived signal (#16)', () => {
  const controller = new AbortController();
  setMaxListeners(0, controller.signal); // 1,000 listeners on purpose
  const removers: (() => void)[] = [];
  for (let i = 0; i < 1_000; i++) {
    const remove = onAbort({ signal: controller.signal }, () => undefined);
    if (remove) removers.push(remove);
  }
  assert.is(getEventListeners(controller.signal, 'abort').length, 1_000);
  for (const r of removers) r();
  assert.is(getEventListeners(controller.signal, 'abort').length, 0);
});

test('call options - a stop listener listens to the own and the parent stop signals, and its remover leaves none', () => {
  const own = new AbortController();
  const parentStop = new AbortController();
  const parent = { requestId: 'r', deadline: Date.now() + 1_000, signal: new AbortController().signal, stopSignal: parentStop.signal };
  let fired = 0;
  const remove = onStop({ stopSignal: own.signal, parent }, () => fired++);
  assert.is(getEventListeners(own.signal, 'abort').length, 1);
  assert.is(getEventListeners(parentStop.signal, 'abort').length, 1);
  parentStop.abort();
  assert.is(fired, 1);
  remove?.();
  assert.is(getEventListeners(own.signal, 'abort').length, 0);
  assert.is(
    onStop({ signal: own.signal }, () => undefined),
    undefined,
    'nothing to listen to',
  );
});

test('call options - the stop grace is the call own (default 2 s), capped by what is left of a stopped parent', () => {
  assert.is(stopGraceOf(undefined), DEFAULT_STOP_GRACE_MS);
  assert.is(stopGraceOf({ stopGraceMs: 50 }), 50);
  const stopped = new AbortController();
  const parent = {
    requestId: 'r',
    deadline: Date.now() + 10_000,
    signal: new AbortController().signal,
    stopSignal: stopped.signal,
    stopDeadline: Date.now() + 300,
  };
  assert.is(stopGraceOf({ parent }), DEFAULT_STOP_GRACE_MS, 'a parent not stopped caps nothing');
  stopped.abort();
  const g = stopGraceOf({ parent });
  assert.ok(g <= 300 && g >= 250, `${g} ms left of the parent's grace`);
  assert.is(stopGraceOf({ parent, stopGraceMs: 10 }), 10);
  assert.is(stopGraceOf({ parent: { ...parent, stopDeadline: Date.now() - 5 } }), 0, 'never negative');
});

test('call options - stopGraceMs out of 0..600000 or not an integer is BAD_REQUEST', () => {
  for (const bad of [-1, 0.5, 600_001, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.is(precheck({ stopGraceMs: bad }, 1_000, 's')?.code, 'BAD_REQUEST', String(bad));
  }
  for (const ok of [0, 1, 600_000]) assert.is(precheck({ stopGraceMs: ok }, 1_000, 's'), undefined, String(ok));
});

test.run();
