import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TroupeError } from '../errors';
import { type ContextOwner, RequestContext } from './request-context';

/** A context whose owner is never consulted (stop and kill need none of it). */
function context(): RequestContext {
  return new RequestContext({} as ContextOwner, 'generate', 'r1', Date.now() + 10_000);
}

/** Resolves when `signal` aborts (the kill at the end of a grace is an event to await, not a sleep). */
const abortOf = (signal: AbortSignal): Promise<void> => new Promise((r) => signal.addEventListener('abort', () => r(), { once: true }));
/** Resolves after every timer due within `ms` fired (Node runs due timers in order of their due time). */
const timersDue = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('request context - a stop aborts stopSignal, not signal; a handler still running past the grace is killed (CANCELLED)', async () => {
  const ctx = context();
  const stopSignal = ctx.stopSignal; // read before the stop: aborted by it
  let stops = 0;
  ctx.onStop(() => stops++);
  ctx.stop(20);
  assert.ok(stopSignal.aborted && ctx.stopped);
  assert.not.ok(ctx.signal.aborted, 'a stop is no kill');
  assert.is(stops, 1);
  ctx.stop(20);
  assert.is(stops, 1, 'a second stop changes nothing');
  await abortOf(ctx.signal);
  assert.ok(ctx.signal.aborted, 'killed past the grace');
  assert.is(ctx.reason.code, 'CANCELLED');
  assert.equal(ctx.reason.data, { stopGraceMs: 20 });
  ctx.dispose();
});

test('request context - a stop after a kill, and a kill timer after dispose, change nothing', async () => {
  const killed = context();
  killed.abort(new TroupeError('CANCELLED', 'gone'));
  killed.stop(10);
  assert.not.ok(killed.stopped);
  assert.not.ok(killed.stopSignal.aborted);
  const finished = context();
  finished.stop(0);
  finished.dispose(); // the handler returned within its grace
  await timersDue(1); // the grace timer would have fired before this one
  assert.not.ok(finished.aborted, 'no kill after the handler finished');
  assert.ok(finished.stopSignal.aborted, 'read after the stop: already aborted');
});

test('request context - its rarely used state reads as empty until set, and a signal read after an abort or a stop is already aborted', () => {
  const ctx = context();
  assert.not.ok(ctx.aborted);
  assert.not.ok(ctx.stopped);
  assert.is(ctx.stopDeadline, undefined);
  assert.not.ok(ctx.overdueWarned);
  assert.is(ctx.tracestate, undefined);
  assert.is(ctx.reason.code, 'INTERNAL', 'not aborted');
  ctx.dispose(); // nothing armed: nothing to clear
  ctx.overdueWarned = true;
  ctx.tracestate = 'k=v';
  assert.ok(ctx.overdueWarned);
  assert.is(ctx.tracestate, 'k=v');
  const aborted = context();
  aborted.abort(new TroupeError('TIMEOUT', 'late'));
  assert.ok(aborted.aborted);
  assert.ok(aborted.signal.aborted, 'made after the abort: already aborted');
  assert.is(aborted.reason.code, 'TIMEOUT');
  const stopped = context();
  const before = Date.now();
  stopped.stop(1_000);
  assert.ok((stopped.stopDeadline as number) >= before + 1_000);
  stopped.dispose();
});

test.run();
