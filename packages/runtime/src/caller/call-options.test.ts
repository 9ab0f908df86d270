import { getEventListeners } from 'node:events';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cachedHeaderRecords, onAbort, unaryHeaders } from './call-options';

test('call options - the header record cache stays bounded whatever the budgets (#16)', () => {
  for (let budget = 1; budget <= 5_000; budget++) unaryHeaders(budget, undefined);
  assert.ok(cachedHeaderRecords() <= 512, `${cachedHeaderRecords()} header records cached`);
  assert.ok(cachedHeaderRecords() > 0, 'records are cached at all');
});

test('call options - the abort listener remover leaves no listener on a long-lived signal (#16)', () => {
  const controller = new AbortController();
  const removers: (() => void)[] = [];
  for (let i = 0; i < 1_000; i++) {
    const remove = onAbort({ signal: controller.signal }, () => undefined);
    if (remove) removers.push(remove);
  }
  assert.is(getEventListeners(controller.signal, 'abort').length, 1_000);
  for (const r of removers) r();
  assert.is(getEventListeners(controller.signal, 'abort').length, 0);
});

test.run();
