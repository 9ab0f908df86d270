/**
 * The load generators, shared by every system so they all pay the same
 * harness overhead: sequential latency over a fixed count, closed-loop
 * throughput with N calls in flight over a fixed window, and one stream
 * counted item by item for loss and duplicates.
 */
import type {
  DiscoveryResult,
  EventDelivery,
  EventLatencyResult,
  EventRateResult,
  LatencyResult,
  Measure,
  MeasureResult,
  StreamResult,
  ThroughputResult,
} from './plan';
import { percentile, sortNumbers } from './stats';
import type { Driver, EventChannel } from './systems/system';
import { delay, within } from './time';
import { getHeapStatistics } from 'node:v8';
import { type EventPayload, type Item, payloadOf, type PublishReport, type PublishSpec, wallMs } from './payload';

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
    case 'throughput': {
      const unary = need(driver.unary, label, 'unary calls');
      const payload = m.bodyBytes === undefined ? undefined : payloadOf(m.bodyBytes);
      return throughput(payload === undefined ? () => unary() : () => unary(payload), m);
    }
    case 'lifecycle':
      return { kind: 'lifecycle', ...(await need(driver.lifecycle, label, 'lifecycle runs')(m.replicas)) };
    case 'scale':
      return { kind: 'scale', ...(await need(driver.scale, label, 'scale runs')(m.replicas, m.restMs)) };
    case 'mesh':
      return { kind: 'mesh', ...(await need(driver.mesh, label, 'mesh runs')(m)) };
    case 'stream':
      return stream(need(driver.stream, label, 'streams'), m, label);
    case 'event_latency':
      return eventLatency(need(driver.events, label, 'events'), m, label);
    case 'event_rate':
      return eventRate(need(driver.events, label, 'events'), m, label);
    case 'discovery':
      return discovery(need(driver.spawnVisible, label, 'spawns'), m, label);
    case 'llm':
      return need(driver.llm, label, 'LLM loads')(m);
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
        : m.kind === 'event_latency' || m.kind === 'event_rate'
          ? () => probeEvents(need(driver.events, label, 'events'))
          : m.kind === 'discovery'
            ? () => need(driver.spawnVisible, label, 'spawns')()
            : m.kind === 'lifecycle' || m.kind === 'scale' || m.kind === 'mesh'
              ? () => Promise.resolve(need(driver.lifecycle, label, 'lifecycle runs')) // nothing to reach: it spawns its own
              : m.kind === 'llm'
                ? need(driver.llmProbe, label, 'LLM requests')
                : () => need(driver.unary, label, 'unary calls')();
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
  const lane = async (call: () => Promise<unknown>): Promise<void> => {
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
  // Peak heap: sampled on a timer and, since an in-process system can starve timers, every 256 calls.
  let peakHeap = 0;
  const sample = (): void => {
    const used = getHeapStatistics().used_heap_size;
    if (used > peakHeap) peakHeap = used;
  };
  const sampler = setInterval(sample, 20);
  let calls = 0;
  const counted = (): Promise<unknown> => {
    if ((++calls & 255) === 0) sample();
    return call();
  };
  const lanes = Array.from({ length: concurrency }, () => lane(counted));
  try {
    await within(Promise.all(lanes), warmupMs + durationMs + SETTLE_MS, `${concurrency} lanes of calls to finish their window`);
  } finally {
    clearInterval(sampler);
  }
  if (errors > MAX_ERROR_SHARE * Math.max(completed, 1)) {
    throw new Error(`${errors} calls failed against ${completed} completed in the window; first error: ${firstError}`);
  }
  const result: ThroughputResult = {
    kind: 'throughput',
    rps: completed / (durationMs / 1000),
    peak_heap_mb: Math.round((peakHeap / (1024 * 1024)) * 10) / 10,
    completed,
    errors,
  };
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
  if (warmupItems > 0)
    await within(
      run(warmupItems, () => undefined),
      bound(warmupItems),
      `${label}: warm-up stream of ${warmupItems} items`,
    );
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

// ---- events and discovery ---------------------------------------------------

/** After the publisher reports a run done, its tail must arrive within this (a quiet subscriber is done sooner). */
const EVENT_TAIL_MS = 5_000;
/** No event for this long after the run is published: the rest is lost. */
const EVENT_QUIET_MS = 500;
/** Run ids: 0 is the probe's; each measurement's runs count up from here, so a straggler of another run is never counted. */
let nextRun = 1;

type Subscribe = NonNullable<Driver['events']>;

/** One event the whole way: the worker answers and the subscription delivers. */
async function probeEvents(subscribe: Subscribe): Promise<void> {
  let got = false;
  const ch = await subscribe((e) => {
    if (e.run === 0) got = true;
  });
  try {
    await ch.publish({ run: 0, mode: 'paced', n: 1, intervalMs: 0 });
    await waitFor(() => got, 2_000);
    if (!got) throw new Error('the probe event did not arrive');
  } finally {
    ch.close();
  }
}

/** Counts one run's events by index: arrivals, duplicates, reported gaps, first and last arrival. */
class RunTally {
  readonly seen: Uint8Array;
  received = 0;
  duplicated = 0;
  gaps = 0;
  gapMissed = 0;
  firstAt = 0;
  lastAt = 0;
  constructor(
    readonly run: number,
    capacity: number,
  ) {
    this.seen = new Uint8Array(capacity);
  }

  /** False for an event of another run. */
  take(e: EventPayload, gap: number, now: number): boolean {
    if (e.run !== this.run) return false;
    if (gap > 0) {
      this.gaps++;
      this.gapMissed += gap;
    }
    if (e.i < this.seen.length) {
      if (this.seen[e.i] === 1) {
        this.duplicated++;
        return true;
      }
      this.seen[e.i] = 1;
    }
    if (this.received === 0) this.firstAt = now;
    this.lastAt = now;
    this.received++;
    return true;
  }

  delivery(sent: number): EventDelivery {
    return { sent, received: this.received, lost: Math.max(0, sent - this.received), gaps: this.gaps, gap_missed: this.gapMissed, duplicated: this.duplicated };
  }
}

/** Has the worker publish `spec`, then waits for its tail: every event, or a quiet spell. */
async function publishAndDrain(ch: EventChannel, spec: PublishSpec, tally: () => RunTally | undefined, label: string): Promise<PublishReport> {
  const report = await ch.publish(spec);
  const t = tally();
  if (t === undefined) {
    await delay(50); // unmeasured run: let its tail pass
    return report;
  }
  let last = t.received;
  let quietSince = performance.now();
  const deadline = quietSince + EVENT_TAIL_MS;
  while (t.received < report.sent && performance.now() < deadline) {
    await delay(5);
    if (t.received !== last) {
      last = t.received;
      quietSince = performance.now();
    } else if (performance.now() - quietSince >= EVENT_QUIET_MS) break;
  }
  if (t.received === 0) throw new Error(`${label}: none of the ${report.sent} events of run ${spec.run} arrived`);
  return report;
}

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const deadline = performance.now() + ms;
  while (!cond() && performance.now() < deadline) await delay(5);
}

/**
 * Paced events: the publisher stamps each with the host's wall clock at
 * µs precision ({@link wallMs}); the subscriber reads the same clock first
 * thing in its callback.
 */
async function eventLatency(subscribe: Subscribe, m: Extract<Measure, { kind: 'event_latency' }>, label: string): Promise<EventLatencyResult> {
  const { count, warmup, intervalMs } = m;
  const warmRun = nextRun++;
  const run = nextRun++;
  const tally = new RunTally(run, count);
  const samples = new Float64Array(count).fill(Number.NaN);
  const ch = await subscribe((e, gap) => {
    const now = wallMs();
    if (tally.take(e, gap, now) && e.i < count && Number.isNaN(samples[e.i] as number)) samples[e.i] = (now - e.t) * 1000;
  });
  let report: PublishReport;
  try {
    if (warmup > 0) await publishAndDrain(ch, { run: warmRun, mode: 'paced', n: warmup, intervalMs }, () => undefined, label);
    report = await publishAndDrain(ch, { run, mode: 'paced', n: count, intervalMs }, () => tally, label);
  } finally {
    ch.close();
  }
  const got = sortNumbers(Array.from(samples).filter((x) => !Number.isNaN(x)));
  const mean = got.reduce((a, b) => a + b, 0) / got.length;
  return { kind: 'event_latency', p50_us: percentile(got, 50), p99_us: percentile(got, 99), mean_us: mean, ...tally.delivery(report.sent) };
}

/** The publisher floods for a warm-up run, then for the measured window; the rate is what the subscriber received over its first-to-last arrival. */
async function eventRate(subscribe: Subscribe, m: Extract<Measure, { kind: 'event_rate' }>, label: string): Promise<EventRateResult> {
  const { warmupMs, durationMs, flushEvery } = m;
  const warmRun = nextRun++;
  const run = nextRun++;
  // Sized for 2 M events/s over the window; an index beyond is counted, not checked for duplicates.
  const tally = new RunTally(run, Math.ceil((durationMs / 1000) * 2_000_000));
  const ch = await subscribe((e, gap) => {
    tally.take(e, gap, performance.now());
  });
  let report: PublishReport;
  try {
    if (warmupMs > 0) await publishAndDrain(ch, { run: warmRun, mode: 'flood', durationMs: warmupMs, flushEvery }, () => undefined, label);
    await delay(200); // the warm-up's backlog drains before the window opens
    report = await publishAndDrain(ch, { run, mode: 'flood', durationMs, flushEvery }, () => tally, label);
  } finally {
    ch.close();
  }
  const span = (tally.lastAt - tally.firstAt) / 1000;
  return {
    kind: 'event_rate',
    events_per_s: span > 0 ? tally.received / span : Number.NaN,
    published_per_s: report.sent / (report.ms / 1000),
    ...tally.delivery(report.sent),
  };
}

/** Sequential spawns: each listed, then stopped and gone before the next. */
async function discovery(spawnVisible: () => Promise<number>, m: Extract<Measure, { kind: 'discovery' }>, label: string): Promise<DiscoveryResult> {
  const { count, warmup } = m;
  const samples: number[] = [];
  const loop = async (): Promise<void> => {
    for (let i = 0; i < warmup; i++) await spawnVisible();
    for (let i = 0; i < count; i++) samples.push(await spawnVisible());
  };
  await within(loop(), 60_000 + (count + warmup) * 25_000, `${label}: ${warmup} + ${count} spawns to be listed`);
  const sorted = sortNumbers(samples);
  return {
    kind: 'discovery',
    p50_ms: percentile(sorted, 50),
    p99_ms: percentile(sorted, 99),
    max_ms: sorted[sorted.length - 1] as number,
    samples_ms: samples.map((x) => Math.round(x * 1000) / 1000),
  };
}
