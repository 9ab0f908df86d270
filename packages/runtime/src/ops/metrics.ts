import { Counter, type CounterConfiguration, Gauge, type GaugeConfiguration, Histogram, type HistogramConfiguration, Registry } from 'prom-client';
import type { Subscription } from 'rxjs';
import type { Discovery } from '../discovery/discovery';
import type { Registry as DiscoveryRegistry } from '../discovery/registry';
import { DURATION_BUCKETS, Durations, type EndpointMeter, type Meter } from '../plane/meter';
import type { RuntimeStats } from '../plane/stats';
import { type Transport, TransportStatus } from '../transport/transport';
import type { ActorInstance } from '../worker/instance';

/**
 * Options of a runtime's Prometheus metrics (`RuntimeOptions.metrics`);
 * `false` turns the runtime's own metrics off (the registry stays, for
 * yours).
 *
 * @example
 * await Runtime.connect({ metrics: { perInstance: true } });
 */
export interface MetricsOptions {
  /**
   * Adds an `instance` label (the instance id) to the worker-side metrics.
   * Off by default: instance ids are unbounded over a deployment's life, and
   * every restart makes new series.
   */
  perInstance?: boolean;
}

type Labels = Record<string, string>;
interface Sample {
  labels: Labels;
  value: number;
  metricName?: string;
}
type MetricType = 'counter' | 'gauge' | 'histogram';

/**
 * A prom-client metric whose values are read from plain counters at scrape
 * time (prom-client's own `collect()` hook cannot set histogram buckets).
 * The hot path never calls prom-client; a scrape walks the counters once.
 */
class ScrapedMetric {
  readonly aggregator = 'sum';
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: MetricType,
    private readonly read: () => Sample[],
  ) {}

  get(): Promise<{ name: string; help: string; type: MetricType; values: Sample[]; aggregator: string }> {
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values: this.read(), aggregator: this.aggregator });
  }

  reset(): void {
    // the counters belong to the runtime; a registry reset does not clear them
  }
}

function histogramSamples(name: string, labels: Labels, d: Durations): Sample[] {
  const out: Sample[] = [];
  let cumulative = 0;
  for (let i = 0; i < DURATION_BUCKETS.length; i++) {
    cumulative += d.counts[i] as number;
    out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: String(DURATION_BUCKETS[i]) }, value: cumulative });
  }
  out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: d.count });
  out.push({ metricName: `${name}_sum`, labels, value: d.sum });
  out.push({ metricName: `${name}_count`, labels, value: d.count });
  return out;
}

/** What the exporter reads: the runtime's counters and live state. */
export interface MetricSources {
  readonly meter: Meter;
  readonly stats: RuntimeStats;
  readonly transport: Transport;
  readonly discovery: Discovery | undefined;
  readonly registry: DiscoveryRegistry | undefined;
  /** The runtime's live instances. */
  readonly instances: () => Iterable<ActorInstance>;
}

/**
 * The Prometheus metrics of one runtime: its own prom-client `Registry`
 * (never the global default one), Troupe's metrics read from the plane's
 * plain counters at scrape time, and room for yours (`counter`, `gauge`,
 * `histogram`, or any prom-client metric registered in `registry`). Reach it
 * as `runtime.metrics`, or inject it with `@injectMetrics()`.
 *
 * @example
 * const tokens = runtime.metrics.counter({ name: 'tokens_total', help: 'tokens generated' });
 * tokens.inc(3);
 * console.log(await runtime.metrics.text());
 */
export class RuntimeMetrics {
  /** The registry: Troupe's metrics (unless turned off) and any you register. */
  readonly registry = new Registry();
  private statusSub: Subscription | undefined;
  private reconnects = 0;
  private disconnects = 0;

  /** @internal Built by the runtime. */
  constructor(
    private readonly sources: MetricSources,
    options: MetricsOptions | false,
  ) {
    if (options === false) return;
    let down = false;
    this.statusSub = sources.transport.status$.subscribe((s) => {
      if (s === TransportStatus.RECONNECTING && !down) {
        down = true;
        this.disconnects++;
      } else if (s === TransportStatus.CONNECTED && down) {
        down = false;
        this.reconnects++;
      }
    });
    this.registerAll(options.perInstance === true);
  }

  /**
   * A prom-client counter in this runtime's registry (scraped with Troupe's
   * metrics; no prom-client import of your own needed).
   *
   * @example
   * const tokens = runtime.metrics.counter({ name: 'tokens_total', help: 'tokens generated', labelNames: ['model'] });
   * tokens.inc({ model: 'llama' }, 12);
   */
  counter<L extends string>(config: Omit<CounterConfiguration<L>, 'registers'>): Counter<L> {
    return new Counter<L>({ ...config, registers: [this.registry] });
  }

  /**
   * A prom-client gauge in this runtime's registry.
   *
   * @example
   * const kv = runtime.metrics.gauge({ name: 'kv_cache_usage', help: 'KV cache blocks in use' });
   * kv.set(0.42);
   */
  gauge<L extends string>(config: Omit<GaugeConfiguration<L>, 'registers'>): Gauge<L> {
    return new Gauge<L>({ ...config, registers: [this.registry] });
  }

  /**
   * A prom-client histogram in this runtime's registry.
   *
   * @example
   * const batch = runtime.metrics.histogram({ name: 'batch_size', help: 'requests per batch', buckets: [1, 2, 4, 8, 16] });
   * batch.observe(4);
   */
  histogram<L extends string>(config: Omit<HistogramConfiguration<L>, 'registers'>): Histogram<L> {
    return new Histogram<L>({ ...config, registers: [this.registry] });
  }

  /** The metrics in Prometheus text format. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Stops watching the connection. */
  close(): void {
    this.statusSub?.unsubscribe();
  }

  /** Worker meters grouped by label set: live instances plus the folded totals of stopped ones. */
  private endpointGroups(perInstance: boolean): Array<{ labels: Labels; meters: EndpointMeter[] }> {
    const groups = new Map<string, { labels: Labels; meters: EndpointMeter[] }>();
    const add = (m: EndpointMeter, instance: string | undefined): void => {
      const key = `${m.namespace}.${m.component}.${m.endpoint}${instance === undefined ? '' : `.${instance}`}`;
      let g = groups.get(key);
      if (!g) {
        const labels: Labels = { namespace: m.namespace, component: m.component, endpoint: m.endpoint };
        if (instance !== undefined) labels['instance'] = instance;
        groups.set(key, (g = { labels, meters: [] }));
      }
      g.meters.push(m);
    };
    // A stopped instance still in its spawn's list was folded into the totals below.
    for (const i of this.sources.instances()) if (!i.stopped) for (const m of i.meters) add(m, perInstance ? i.info.instanceId : undefined);
    for (const m of this.sources.meter.retired.values()) add(m, perInstance ? 'stopped' : undefined);
    return [...groups.values()];
  }

  private registerAll(perInstance: boolean): void {
    const reg = (name: string, help: string, type: MetricType, read: () => Sample[]): void => {
      this.registry.registerMetric(new ScrapedMetric(name, help, type, read) as never);
    };
    const perEndpoint = (pick: (m: EndpointMeter) => number) => (): Sample[] =>
      this.endpointGroups(perInstance).map((g) => ({ labels: g.labels, value: g.meters.reduce((n, m) => n + pick(m), 0) }));
    const merged = (pick: (m: EndpointMeter) => Durations | undefined, name: string) => (): Sample[] =>
      this.endpointGroups(perInstance).flatMap((g) => {
        const d = new Durations();
        for (const m of g.meters) {
          const seen = pick(m);
          if (seen) d.add(seen);
        }
        return histogramSamples(name, g.labels, d);
      });

    reg(
      'troupe_requests_total',
      "Requests handled by this runtime's instances (answered with a value or an error).",
      'counter',
      perEndpoint((m) => m.requests),
    );
    reg('troupe_request_errors_total', 'Requests answered with an error, by error code.', 'counter', () =>
      this.endpointGroups(perInstance).flatMap((g) => {
        const byCode = new Map<string, number>();
        for (const m of g.meters) for (const [c, n] of m.errorCodes) byCode.set(c, (byCode.get(c) ?? 0) + n);
        return [...byCode].map(([code, value]) => ({ labels: { ...g.labels, code }, value }));
      }),
    );
    reg(
      'troupe_request_duration_seconds',
      'Handler time of a request (a stream: until its last frame), seconds.',
      'histogram',
      merged((m) => m.durationsSeen, 'troupe_request_duration_seconds'),
    );
    reg(
      'troupe_requests_in_flight',
      'Handlers running now.',
      'gauge',
      perEndpoint((m) => m.inFlight),
    );
    reg(
      'troupe_overloaded_total',
      'Requests refused with OVERLOADED because the mailbox was full.',
      'counter',
      perEndpoint((m) => m.overloaded),
    );
    reg(
      'troupe_request_bytes_total',
      'Request body bytes received.',
      'counter',
      perEndpoint((m) => m.bytesIn),
    );
    reg(
      'troupe_response_bytes_total',
      'Reply and stream frame body bytes sent.',
      'counter',
      perEndpoint((m) => m.bytesOut),
    );
    reg(
      'troupe_stream_items_total',
      'Stream items sent.',
      'counter',
      perEndpoint((m) => m.streamItems),
    );
    reg(
      'troupe_stream_frames_total',
      'Stream data frames sent (items of one tick share a frame).',
      'counter',
      perEndpoint((m) => m.streamFrames),
    );
    reg(
      'troupe_stream_credit_stalls_total',
      "Times a stream producer waited for the caller's credit.",
      'counter',
      perEndpoint((m) => m.creditStalls),
    );
    reg(
      'troupe_stream_first_item_seconds',
      'Time from handler start to the first stream item sent, seconds.',
      'histogram',
      merged((m) => m.firstItemSeen, 'troupe_stream_first_item_seconds'),
    );
    reg('troupe_mailbox_depth', "Requests waiting in the mailboxes of a component's instances.", 'gauge', () => {
      const by = new Map<string, Sample>();
      for (const i of this.sources.instances()) {
        const labels: Labels = { namespace: i.info.namespace, component: i.info.component };
        if (perInstance) labels['instance'] = i.info.instanceId;
        const key = Object.values(labels).join('.');
        const s = by.get(key) ?? { labels, value: 0 };
        s.value += i.queued;
        by.set(key, s);
      }
      return [...by.values()];
    });

    const calls = () => [...this.sources.meter.calls.values()];
    const callLabels = (c: { namespace: string; component: string; endpoint: string }): Labels => ({
      namespace: c.namespace,
      component: c.component,
      endpoint: c.endpoint,
    });
    reg('troupe_client_calls_total', "Calls and streams made by this runtime's clients, by outcome code (OK on success).", 'counter', () =>
      calls().flatMap((c) => [
        { labels: { ...callLabels(c), code: 'OK' }, value: c.ok },
        ...[...c.errors].map(([code, value]) => ({ labels: { ...callLabels(c), code }, value })),
      ]),
    );
    reg('troupe_client_call_duration_seconds', 'Client-side duration of a call (a stream: until it ended), seconds.', 'histogram', () =>
      calls().flatMap((c) => histogramSamples('troupe_client_call_duration_seconds', callLabels(c), c.durations)),
    );

    const scalar = (name: string, help: string, type: MetricType, read: () => number): void => reg(name, help, type, () => [{ labels: {}, value: read() }]);
    const st = this.sources.stats;
    scalar('troupe_streams_lost_total', "Stream attempts of this runtime's clients that ended in INSTANCE_LOST.", 'counter', () => st.streamsLost);
    scalar('troupe_streams_migrated_total', 'Streams re-issued to another instance after INSTANCE_LOST.', 'counter', () => st.streamsMigrated);
    scalar('troupe_stream_probes_total', 'Liveness probes sent to silent instances.', 'counter', () => st.probesSent);
    scalar('troupe_stream_heartbeats_total', "Stream heartbeat messages sent by this runtime's instances.", 'counter', () => st.heartbeatsSent);
    scalar('troupe_callers_lost_total', 'Stream handlers aborted because their caller was gone.', 'counter', () => st.callersLost);
    const meter = this.sources.meter;
    scalar('troupe_events_published_total', 'Events published by this runtime.', 'counter', () => meter.eventsPublished);
    scalar('troupe_events_delivered_total', "Events delivered to this runtime's subscribers.", 'counter', () => meter.eventsDelivered);
    scalar('troupe_event_gaps_total', "Events missed, as seen in publishers' sequence numbers.", 'counter', () => meter.eventGaps);
    const discovery = this.sources.discovery;
    if (discovery) {
      reg('troupe_discovery_instances', 'Instances a watched endpoint lists now.', 'gauge', () =>
        discovery.sizes().endpoints.map((e) => ({
          labels: { namespace: e.address.namespace, component: e.address.component, endpoint: e.address.endpoint },
          value: e.instances,
        })),
      );
      scalar('troupe_discovery_leases', 'Live process leases this runtime sees.', 'gauge', () => discovery.sizes().leases);
    }
    const registry = this.sources.registry;
    if (registry) {
      scalar('troupe_lease_heartbeat_failures_total', 'Lease heartbeats of this process that failed.', 'counter', () => registry.failures);
      scalar(
        'troupe_unregistered_instances',
        'Instances of this runtime that serve but are not in the registry yet: it did not answer (they register when it does).',
        'gauge',
        () => registry.unregistered,
      );
      scalar(
        'troupe_registration_failures_total',
        'Registration attempts the registry did not answer or refused (retried with backoff).',
        'counter',
        () => registry.registrationFailures,
      );
    }
    const transport = this.sources.transport;
    scalar('troupe_nats_connected', '1 while the connection is up, else 0.', 'gauge', () => (transport.status === TransportStatus.CONNECTED ? 1 : 0));
    scalar('troupe_nats_disconnects_total', 'Times the connection was lost.', 'counter', () => this.disconnects);
    scalar('troupe_nats_reconnects_total', 'Times the connection came back.', 'counter', () => this.reconnects);
  }
}
