import { performance } from 'node:perf_hooks';

/**
 * Upper bounds of the duration histograms, seconds (Prometheus `le`). Chosen
 * for a request plane whose loopback round trip is ~0.5 ms and whose streams
 * run for minutes; the last bucket is +Inf.
 */
export const DURATION_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/** A monotonic clock in ms with sub-ms resolution (what every meter measures with). */
export const now: () => number = () => performance.now();

/** The last `Date.now()` read by {@link wallAt}, and the {@link now} reading it was taken at. */
let wallBase = 0;
let wallBaseAt = Number.NEGATIVE_INFINITY;
/** How long {@link wallAt} counts on from one wall-clock read (ms): a stepped wall clock is seen within this. */
const WALL_RESYNC_MS = 100;

/**
 * `Date.now()` at the {@link now} reading `t` the caller has just taken: the
 * last wall-clock read plus the whole milliseconds elapsed on the monotonic
 * clock since, the wall clock read again every {@link WALL_RESYNC_MS}. It reads
 * the same as `Date.now()` or one less (each truncates its own fraction), as
 * two `Date.now()` calls a moment apart may; one clock read fewer per call.
 */
export function wallAt(t: number): number {
  const elapsed = t - wallBaseAt;
  if (elapsed >= 0 && elapsed < WALL_RESYNC_MS) return wallBase + Math.floor(elapsed);
  wallBase = Date.now();
  wallBaseAt = t;
  return wallBase;
}

/**
 * A duration histogram in plain integers: counts per bucket (not
 * cumulative; the exporter sums them at scrape time), the sum in seconds and
 * the count. Observing is a short scan and three adds — no prom-client call
 * on the hot path.
 */
/** The error counts of a meter that saw no error. */
const NO_CODES: ReadonlyMap<string, number> = new Map();

export class Durations {
  /** One count per bucket of {@link DURATION_BUCKETS}, then +Inf. */
  readonly counts: number[] = new Array<number>(DURATION_BUCKETS.length + 1).fill(0);
  sum = 0;
  count = 0;

  /** Records one duration given in ms. */
  observeMs(ms: number): void {
    const s = ms / 1000;
    let i = 0;
    const b = DURATION_BUCKETS;
    while (i < b.length && s > (b[i] as number)) i++;
    this.counts[i]!++;
    this.sum += s;
    this.count++;
  }

  /** Adds another histogram's counts into this one (folding a stopped instance into its endpoint's totals). */
  add(o: Durations): void {
    for (let i = 0; i < this.counts.length; i++) this.counts[i]! += o.counts[i]!;
    this.sum += o.sum;
    this.count += o.count;
  }
}

/**
 * The counters of one endpoint of one instance, worker side. Updated on the
 * hot path with plain integer adds; read by the NATS micro responder
 * (`$SRV.STATS`, per instance) and by the Prometheus exporter (summed per
 * namespace/component/endpoint at scrape time). Internal.
 */
export class EndpointMeter {
  /** Requests whose handler ran to an answer (value or error), as NATS micro counts `num_requests`. */
  requests = 0;
  /** Requests answered with an error (handler threw, bad request, deadline passed). */
  errors = 0;
  /** Message of the last error, for `$SRV.STATS` `last_error`. */
  lastError = '';
  /** Errors by code. */
  /** Calls by error code (created at the first error: most of 100,000 idle instances never fail). */
  get errorCodes(): ReadonlyMap<string, number> {
    return this.codes ?? NO_CODES;
  }
  private codes: Map<string, number> | undefined;
  /** Handler time in ms (summed; micro reports nanoseconds). */
  processingMs = 0;
  /** Handler times (created at the first timed request: an idle instance holds no bucket arrays). */
  get durations(): Durations {
    return (this.handled ??= new Durations());
  }
  /** {@link durations} when any request was timed (what a scrape reads without creating them). */
  get durationsSeen(): Durations | undefined {
    return this.handled;
  }
  private handled: Durations | undefined;
  /** Handlers running now. */
  inFlight = 0;
  /** Requests refused at once because the mailbox was full. */
  overloaded = 0;
  /** Request body bytes received. */
  bytesIn = 0;
  /** Reply and stream frame body bytes sent. */
  bytesOut = 0;
  /** Stream items sent. */
  streamItems = 0;
  /** Stream data frames sent (items coalesced per tick). */
  streamFrames = 0;
  /** Times a producer had to wait for the caller's credit. */
  creditStalls = 0;
  /** Time from handler start to the first stream item leaving (created at the first stream item). */
  get firstItem(): Durations {
    return (this.firstItems ??= new Durations());
  }
  /** {@link firstItem} when any stream sent an item. */
  get firstItemSeen(): Durations | undefined {
    return this.firstItems;
  }
  private firstItems: Durations | undefined;
  /** Whether requests are timed (off with `metrics: false`: no clock read on the hot path; counts stay). */
  timed = true;

  constructor(
    readonly namespace: string,
    readonly component: string,
    readonly endpoint: string,
  ) {}

  /** When a request starts (`now()`), or 0 when requests are not timed. */
  start(): number {
    return this.timed ? now() : 0;
  }

  /** Counts one finished request that started at {@link start}; `code` and `message` when it failed. */
  finish(startedAt: number, code?: string, message?: string): void {
    this.requests++;
    if (this.timed) {
      const ms = now() - startedAt;
      this.processingMs += ms;
      this.durations.observeMs(ms);
    }
    if (code !== undefined) this.error(code, message ?? code);
  }

  /**
   * {@link finish} of a request that succeeded, ending at `endedAt` (a `now()`
   * reading made just now: an in-process caller's, taken as its reply was
   * handed over synchronously), or NaN to read the clock.
   */
  finishAt(startedAt: number, endedAt: number): void {
    this.requests++;
    if (this.timed) {
      const ms = (endedAt === endedAt ? endedAt : now()) - startedAt;
      this.processingMs += ms;
      this.durations.observeMs(ms);
    }
  }

  /** Counts one error answer. */
  error(code: string, message: string): void {
    this.errors++;
    this.lastError = message;
    const codes = (this.codes ??= new Map());
    codes.set(code, (codes.get(code) ?? 0) + 1);
  }

  /** Adds a stopped instance's counters into this (per-endpoint totals never go down). */
  add(o: EndpointMeter): void {
    this.requests += o.requests;
    this.errors += o.errors;
    if (o.lastError) this.lastError = o.lastError;
    if (o.codes) {
      const codes = (this.codes ??= new Map());
      for (const [c, n] of o.codes) codes.set(c, (codes.get(c) ?? 0) + n);
    }
    this.processingMs += o.processingMs;
    if (o.handled) this.durations.add(o.handled);
    this.overloaded += o.overloaded;
    this.bytesIn += o.bytesIn;
    this.bytesOut += o.bytesOut;
    this.streamItems += o.streamItems;
    this.streamFrames += o.streamFrames;
    this.creditStalls += o.creditStalls;
    if (o.firstItems) this.firstItem.add(o.firstItems);
  }
}

/** Client-side counters of calls to one endpoint (whichever instance answered). */
export class CallMeter {
  /** Calls (unary) and streams that succeeded: a plain field, so the common case costs no map update. */
  ok = 0;
  /** Calls and streams that failed, by error code. */
  readonly errors = new Map<string, number>();
  readonly durations = new Durations();

  constructor(
    readonly namespace: string,
    readonly component: string,
    readonly endpoint: string,
  ) {}

  /** Counts one finished call that started at `startedAt` (from `now()`); returns the clock reading it ended at. */
  finish(startedAt: number, code: string): number {
    const t = now();
    this.durations.observeMs(t - startedAt);
    if (code === 'OK') this.ok++;
    else this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
    return t;
  }
}

/**
 * What the meter reads an instance's counters from: its own meters once it
 * counted anything, before that the component's shared zero meters
 * ({@link Meter.zeros}) — 100,000 idle instances hold no meter object.
 */
export interface MeterSource {
  readonly meters: readonly EndpointMeter[];
}

/**
 * Every plain counter of one runtime, a field of its plane: per-endpoint
 * worker meters (the folded totals of stopped instances; live ones are read
 * from the instances themselves),
 * client call meters, event and discovery counts, connection figures. The
 * exporter reads it at scrape time. Internal.
 */
export class Meter {
  /** Totals of stopped instances, by `ns.comp.ep`. */
  readonly retired = new Map<string, EndpointMeter>();
  /** Client meters by `ns.comp.ep`. */
  readonly calls = new Map<string, CallMeter>();
  /** The all-zero meters an instance reads as before its first request, by `ns.comp` (never written: see {@link MeterSource}). */
  private readonly zeroMeters = new Map<string, readonly EndpointMeter[]>();
  eventsPublished = 0;
  eventsDelivered = 0;
  eventGaps = 0;
  /** Whether requests and calls are timed and client calls counted (false with `metrics: false`). */
  timed = true;

  /** The meters of one instance, one per endpoint in `endpoints` order (an array, not a map: most components have one or two). */
  endpointMeters(namespace: string, component: string, endpoints: Iterable<string>): EndpointMeter[] {
    // Mapped from an array, so exactly as long as needed (an array pushed to keeps room for 16).
    return [...endpoints].map((ep) => {
      const e = new EndpointMeter(namespace, component, ep);
      e.timed = this.timed;
      return e;
    });
  }

  /** Zero meters of a component's endpoints, shared by every instance that has counted nothing yet; read-only. */
  zeros(namespace: string, component: string, endpoints: Iterable<string>): readonly EndpointMeter[] {
    const key = `${namespace}\u0000${component}`;
    let z = this.zeroMeters.get(key);
    if (!z) this.zeroMeters.set(key, (z = this.endpointMeters(namespace, component, endpoints)));
    return z;
  }

  /**
   * Folds a stopped instance's counts into its endpoints' totals (once per instance: its stop). Live
   * instances' meters are read from the runtime's spawns at scrape time, not kept here by id: a map
   * entry per instance is ≈ 40 B of hash table for 100,000 idle instances.
   */
  retire(source: MeterSource): void {
    for (const e of source.meters) {
      const key = `${e.namespace}.${e.component}.${e.endpoint}`;
      let r = this.retired.get(key);
      if (!r) this.retired.set(key, (r = new EndpointMeter(e.namespace, e.component, e.endpoint)));
      r.add(e);
    }
  }

  /** The client meter of one endpoint (created on first use; a client keeps its reference); undefined when not timed. */
  callMeter(namespace: string, component: string, endpoint: string): CallMeter | undefined {
    if (!this.timed) return undefined;
    const key = `${namespace}.${component}.${endpoint}`;
    let m = this.calls.get(key);
    if (!m) this.calls.set(key, (m = new CallMeter(namespace, component, endpoint)));
    return m;
  }
}
