import { trace, type TracerProvider } from '@opentelemetry/api';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { tracingActive } from './telemetry';

/** A minimal tracer provider: enough for the API to count it as registered. */
const fakeProvider = { getTracer: () => trace.getTracerProvider().getTracer('noop') } as unknown as TracerProvider;

test('tracing - inactive with no provider, active once one is registered, inactive again after disable()', () => {
  assert.is(tracingActive(), false, 'nothing registered');
  const noop = trace.getTracerProvider();
  trace.setGlobalTracerProvider(fakeProvider);
  try {
    assert.is(tracingActive(), true, 'a provider is registered');
  } finally {
    trace.disable();
  }
  assert.is(tracingActive(), false, 'unregistered');
  assert.ok(noop, 'the API always hands out a provider (the proxy)');
});

test.run();
