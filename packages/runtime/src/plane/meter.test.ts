import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CallMeter, DURATION_BUCKETS, Durations, Meter } from './meter';

test('meter - a duration lands in the first bucket whose bound it does not exceed; +Inf past the last', () => {
  const d = new Durations();
  d.observeMs(0.5); // exactly 0.0005 s: le="0.0005"
  d.observeMs(0.6);
  d.observeMs(1_000_000);
  assert.is(d.counts[0], 1);
  assert.is(d.counts[1], 1);
  assert.is(d.counts[DURATION_BUCKETS.length], 1);
  assert.is(d.count, 3);
  assert.ok(Math.abs(d.sum - (0.0005 + 0.0006 + 1000)) < 1e-9);
});

test('meter - a stopped instance folds into its endpoint totals, so counters never go down', () => {
  const m = new Meter();
  const eps = m.endpointMeters('ns', 'comp', ['ep']);
  const e = eps[0];
  e?.finish(0);
  e?.finish(0, 'INTERNAL', 'boom');
  m.retire({ meters: eps });
  const r = m.retired.get('ns.comp.ep');
  assert.is(r?.requests, 2);
  assert.is(r?.errors, 1);
  assert.is(r?.errorCodes.get('INTERNAL'), 1);
  assert.is(r?.lastError, 'boom');
  assert.is(r?.durations.count, 2);
  const again = m.endpointMeters('ns', 'comp', ['ep']);
  again[0]?.finish(0);
  m.retire({ meters: again });
  assert.is(m.retired.get('ns.comp.ep')?.requests, 3);
});

test('meter - an instance that counted nothing reads as shared zero meters, and stops into its endpoint totals', () => {
  const m = new Meter();
  const zeros = m.zeros('ns', 'comp', ['a', 'b']);
  assert.is(m.zeros('ns', 'comp', ['a', 'b']), zeros);
  assert.equal(
    zeros.map((z) => [z.namespace, z.component, z.endpoint, z.requests]),
    [
      ['ns', 'comp', 'a', 0],
      ['ns', 'comp', 'b', 0],
    ],
  );
  m.retire({ meters: zeros });
  assert.is(m.retired.get('ns.comp.b')?.requests, 0);
  assert.is(zeros[0]?.requests, 0);
});

test('meter - client outcomes: successes in a plain field, failures by code; one meter per endpoint', () => {
  const m = new Meter();
  const c = m.callMeter('ns', 'comp', 'ep') as CallMeter;
  assert.is(m.callMeter('ns', 'comp', 'ep'), c);
  c.finish(0, 'OK');
  c.finish(0, 'OK');
  c.finish(0, 'TIMEOUT');
  assert.is(c.ok, 2);
  assert.equal([...c.errors], [['TIMEOUT', 1]]);
  assert.is(c.durations.count, 3);
  assert.instance(c, CallMeter);
});

test.run();
