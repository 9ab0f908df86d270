/**
 * The load generators, shared by every system so they all pay the same
 * harness overhead: sequential latency over a fixed count, closed-loop
 * throughput with N calls in flight over a fixed window, and one stream
 * counted item by item for loss and duplicates.
 */
import type { LatencyResult, Measure, MeasureResult, StreamResult, ThroughputResult } from './plan';
import { percentile, sortNumbers } from './stats';
import type { Driver } from './systems/system';
import { delay, within } from './time';
import type { Item } from './payload';

/** Calls still in flight when the window closes must settle within this. */
const SETTLE_MS = 15_000;
/** More failures than this share of completed calls fails the run instead of reporting a figure. */
const MAX_ERROR_SHARE = 0.01;
/** A stream slower than this is reported as hung. */
const MIN_STREAM_RATE = 5_000;

export async function measure(driver: Driver, m: Measure, label: string): Promise<MeasureResult> {
  switch (m.kind) {
    case 'latency':
      return latency(need(driver.unary, label, 'unary calls'), m, label);
    case 'first_item':
      return firstItem(need(driver.firstItem, label, 'single-item calls'), m, label);
    case 'throughput':
      return throughput(need(driver.unary, label, 'unary calls'), m);
    case 'stream':
      return stream(need(driver.stream, label, 'streams'), m, label);
  }
}

/** One successful call, retried briefly: proves the worker is reachable before anything is timed. */
export async function probe(driver: Driver, m: Measure, opts: { label: string; timeoutMs: number }): Promise<void> {
  const { label, timeoutMs } = opts;
  const call: () => Promise<unknown> =
    m.kind === 'first_item'
      ? need(driver.firstItem, label, 'single-item calls')
      : m.kind === 'stream'
        ? () => need(driver.stream, label, 'streams')(1, () => undefined)
        : need(driver.unary, label, 'unary calls');
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      await within(call(), Math.max(1, deadline - Date.now()), `${label}: first call`);
      return;
    } catch (err) {
      last = err;
      await delay(50);
    }
  }
  throw new Error(`${label}: no call succeeded within ${timeoutMs} ms; last error: ${(last as Error)?.message ?? String(last)}`, {
    cause: last,
  });
}

function need<F extends (...args: never[]) => unknown>(fn: F | undefined, label: string, what: string): F {
  if (!fn) throw new Error(`${label} has no ${what}: the case plan pairs it with a measurement it cannot make`);
  return fn;
}

/** Bound on a whole latency loop: generous per call, so only a hung call trips it (no timer per call). */
const loopBound = (calls: number): number => 30_000 + calls * 20;

async function latency(call: () => Promise<unknown>, m: Extract<Measure, { kind: 'latency' }>, label: string): Promise<LatencyResult> {
  const { count, warmup } = m;
  const samples = new Float64Array(count);
  const loop = async (): Promise<void> => {
    for (let i = 0; i < warmup; i++) await call();
    for (let i = 0; i < count; i++) {
      const t0 = process.hrtime.bigint();
      await call();
      samples[i] = Number(process.hrtime.bigint() - t0) / 1000;
    }
  };
  await within(loop(), loopBound(warmup + count), `${label}: ${warmup} + ${count} sequential calls`);
  return summarize(samples);
}

async function firstItem(call: () => Promise<number>, m: Extract<Measure, { kind: 'first_item' }>, label: string): Promise<LatencyResult> {
  const { count, warmup } = m;
  const samples = new Float64Array(count);
  const loop = async (): Promise<void> => {
    for (let i = 0; i < warmup; i++) await call();
    for (let i = 0; i < count; i++) samples[i] = await call();
  };
  await within(loop(), loopBound(warmup + count), `${label}: ${warmup} + ${count} single-item calls`);
  return summarize(samples);
}

function summarize(samples: Float64Array): LatencyResult {
  const sorted = sortNumbers(samples);
  const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
  return { kind: 'latency', p50_us: percentile(sorted, 50), p99_us: percentile(sorted, 99), mean_us: mean };
}

/**
 * `concurrency` lanes, each awaiting its call and starting the next: a
 * closed loop that keeps exactly that many calls in flight. Lanes read the
 * clock after each call instead of waiting on timers: an in-process system
 * (Moleculer local calls) resolves through microtasks alone and would starve
 * every timer, so the window must not depend on one firing.
 */
async function throughput(call: () => Promise<unknown>, m: Extract<Measure, { kind: 'throughput' }>): Promise<ThroughputResult> {
  const { concurrency, warmupMs, durationMs } = m;
  const warmEnd = performance.now() + warmupMs;
  const end = warmEnd + durationMs;
  let completed = 0;
  let errors = 0;
  let firstError: string | undefined;
  const lane = async (): Promise<void> => {
    for (;;) {
      try {
        await call();
        const now = performance.now();
        if (now >= end) return;
        if (now >= warmEnd) completed++;
      } catch (err) {
        errors++;
        firstError ??= (err as Error)?.message ?? String(err);
        if (performance.now() >= end || (errors > 1000 && errors > completed)) return; // failing outright: stop hammering
      }
    }
  };
  const lanes = Array.from({ length: concurrency }, lane);
  await within(Promise.all(lanes), warmupMs + durationMs + SETTLE_MS, `${concurrency} lanes of calls to finish their window`);
  if (errors > MAX_ERROR_SHARE * Math.max(completed, 1)) {
    throw new Error(`${errors} calls failed against ${completed} completed in the window; first error: ${firstError}`);
  }
  const result: ThroughputResult = { kind: 'throughput', rps: completed / (durationMs / 1000), completed, errors };
  if (firstError !== undefined) result.firstError = firstError;
  return result;
}

/** One unmeasured warm-up stream, then the measured one, every item checked off by its index. */
async function stream(
  run: (n: number, onItem: (item: Item) => void) => Promise<void>,
  m: Extract<Measure, { kind: 'stream' }>,
  label: string,
): Promise<StreamResult> {
  const { items, warmupItems } = m;
  const bound = (n: number): number => 10_000 + Math.ceil((n / MIN_STREAM_RATE) * 1000);
  if (warmupItems > 0) await within(run(warmupItems, () => undefined), bound(warmupItems), `${label}: warm-up stream of ${warmupItems} items`);
  const seen = new Uint8Array(items);
  let received = 0;
  let duplicated = 0;
  let outOfRange = 0;
  const onItem = (item: Item): void => {
    const i = item.i;
    if (!(i >= 0 && i < items)) outOfRange++;
    else if (seen[i] === 1) duplicated++;
    else {
      seen[i] = 1;
      received++;
    }
  };
  let error: string | undefined;
  const t0 = performance.now();
  try {
    await within(run(items, onItem), bound(items), `${label}: stream of ${items} items to end`);
  } catch (err) {
    error = (err as Error)?.message ?? String(err);
  }
  const seconds = (performance.now() - t0) / 1000;
  const result: StreamResult = {
    kind: 'stream',
    items_per_s: received / seconds,
    received,
    lost: items - received,
    duplicated: duplicated + outOfRange,
  };
  if (error !== undefined) result.error = error;
  return result;
}
