import 'reflect-metadata';
import { constants as osConstants } from 'node:os';
import type { Observable } from 'rxjs';
import { container as rootContainer, type DependencyContainer } from 'tsyringe';
import { CallerMonitor } from './caller/caller-monitor';
import { typedClient } from './component/typed-client';
import type { Codec } from './codec/codec';
import { MsgpackCodec } from './codec/msgpack';
import {
  checkConstructor,
  type Class,
  CONFIG,
  clientDependencies,
  componentMeta,
  INSTANCE,
  type InstanceInfo,
  LOGGER,
  METRICS,
  PROPERTIES,
  PUBLISHER,
} from './component/decorators';
import { openTransport } from './connect';
import { Discovery, type ProbeResult } from './discovery/discovery';
import { type DiscoverySettings, type InstanceRecord, pool, Registry } from './discovery/registry';
import { TroupeError, toTroupeError } from './errors';
import { EventStreams } from './events/event-subscription';
import { RuntimeEvents } from './events/events';
import { newInstanceId } from './ids';
import { consoleLogger, lazyChild, type Logger } from './logger';
import { validateName } from './names';
import { Plane, type PlaneSettings } from './plane/plane';
import type { RuntimeStats } from './plane/stats';
import { NamespaceRef } from './refs';
import { checkPositiveInt, resolveDiscovery, resolveSettings, SHUTDOWN_SILENT_STEP_MS, SHUTDOWN_STEP_MS } from './settings';
import { settlesWithin } from './settle';
import type { MemoryNetwork } from './transport/memory/memory-network';
import type { NatsTransportOptions } from './transport/nats/nats-transport';
import { startPulse } from './transport/pulse';
import { type Transport, TransportStatus } from './transport/transport';
import { Heartbeats } from './worker/heartbeats';
import { ActorInstance, type FailureThreshold, type PropertySink } from './worker/instance';
import { Replica, type ReplicaHost, type RestartOption, resolveFailures, resolveRestart, spawnFailure } from './worker/supervisor';
import { isSemver, MicroResponder } from './ops/micro';
import { HealthChecker } from './ops/health-checks';
import { type MetricsOptions, RuntimeMetrics } from './ops/metrics';
import { checkStatusOptions, type RuntimeHealth, type StatusOptions, StatusServer, statusFromEnv } from './ops/status-server';
import type { AddressInfo } from 'node:net';
import { PropertyBoard } from './worker/instance-properties';
import { Ctl, H, refusal } from './wire/protocol';
import { QueueHubs } from './worker/queue-hub';
import { endpointAddress, LEASE_BEAT_WILDCARD, validateInboxPrefix } from './wire/subjects';

/** Instances of one spawn starting at once (their `onStart` hooks run concurrently up to this). */
const START_CONCURRENCY = 64;

/** Options of {@link Runtime.connect}. */
export interface RuntimeOptions extends Partial<PlaneSettings> {
  /**
   * NATS server URL(s); default `NATS_URL`. With neither, the runtime is
   * embedded: an in-process memory network, no server at all.
   */
  servers?: string | string[];
  /** For an embedded runtime: the memory network to join (default: a new one). */
  network?: MemoryNetwork;
  /** Extra nats.js connection options (auth, TLS, ...), passed through. */
  nats?: Omit<NatsTransportOptions, 'servers'>;
  /** Use this transport instead of connecting (tests, the embedded runtime). */
  transport?: Transport;
  /** Reply inbox prefix (default `_INBOX`); give each tenant its own, since `_INBOX.>` reads every reply. */
  inboxPrefix?: string;
  /** The body codec (default msgpack with decode limits). */
  codec?: Codec;
  /**
   * Logger (default: JSON lines on stderr at the level of the `TROUPE_LOG`
   * environment variable — `debug`, `info`, `warn`, `error` or `silent` —
   * else `warn`). Any object with debug/info/warn/error/child works (pino,
   * winston).
   */
  logger?: Logger;
  /** Connection name shown by the NATS server. */
  name?: string;
  /**
   * Discovery (registry + watches) timing, or `false` to turn it off (then
   * clients can only use the `queue` router and nothing needs JetStream).
   */
  discovery?: false | Partial<DiscoverySettings & { inhibitMs: number }>;
  /** Prometheus metrics options, or `false` to turn Troupe's metrics off (`runtime.metrics.registry` stays for yours). */
  metrics?: false | MetricsOptions;
  /**
   * Starts the status server (`/metrics`, `/health`, `/live`) on this port
   * and host (default `127.0.0.1`). Default: `TROUPE_STATUS_PORT` and
   * `TROUPE_STATUS_HOST` when set, else no server.
   */
  status?: StatusOptions;
  /**
   * Answer the NATS micro protocol (`$SRV.PING|INFO|STATS`) for this
   * runtime's instances (default true). Set false when the NATS account may
   * not subscribe to `$SRV.>`.
   */
  micro?: boolean;
}

/** Options of {@link Runtime.spawn}. */
export interface SpawnOptions<Config = unknown> {
  /** The pipeline the instances join. */
  namespace: string;
  /** How many instances (default 1). */
  replicas?: number;
  /** Injected into the constructor with `@injectConfig()`. */
  config?: Config;
  /** Static properties of the instances (published with discovery). */
  properties?: Record<string, unknown>;
  /**
   * Messages one instance handles at once (default: the runtime's, 1). 1 is
   * the classic actor — handlers never interleave on the instance's state —
   * and it serialises *everything*, awaits included: a streaming gateway or
   * an I/O-bound proxy with concurrency 1 serves one caller at a time while
   * the others queue. Give such components more (e.g. 16). An instance whose
   * requests wait over 1 s while the process idles logs a warning once.
   */
  concurrency?: number;
  /** Messages that may wait in one instance's mailbox before it answers OVERLOADED. */
  mailboxCapacity?: number;
  /** The version the instances report to NATS micro clients (`$SRV.INFO`); a semantic version, default `0.0.0`. */
  version?: string;
  /**
   * What happens to a replica whose `onStart` throws or whose instance
   * breaks: `'never'` (default: the spawn fails / the replica stays down) or
   * `{ attempts, backoffMs, maxBackoffMs?, resetAfterMs? }` — restart with a
   * fresh actor (new instance id) after an exponential backoff. See
   * docs/operations.md, "Supervision".
   */
  restart?: RestartOption;
  /**
   * Unexpected handler throws (not a TroupeError) that make an instance
   * broken: `count` of them within `withinMs`. Default: none (only
   * `ctx.fail` or a TroupeError with `data: { fatal: true }` breaks it).
   */
  failures?: FailureThreshold;
  /** No mailbox progress this long (every slot held past its deadline) withdraws and replaces the instance, ms; 0: never. Default: the runtime's (2 × requestTimeoutMs). */
  stuckAfterMs?: number;
}

/**
 * The running instances of one `spawn`.
 *
 * @example
 * const h = await runtime.spawn(Decode, { namespace: 'llama_8b', replicas: 2 });
 * console.log(h.instanceIds); await h.stop();
 */
export interface SpawnHandle<C = unknown> {
  readonly namespace: string;
  readonly component: string;
  /** One 16-hex-char id per serving replica (a restarted replica has a new id; a replica given up is absent). */
  readonly instanceIds: readonly string[];
  /** The actor object of one instance (for tests and introspection). */
  instance(instanceId: string): C;
  /** Stops every instance of this spawn: leave, finish in-flight work (bounded by the grace period), stop hooks. */
  stop(): Promise<void>;
}

/**
 * The per-process object: connection, reply inbox, DI container, `spawn`,
 * clients and graceful shutdown.
 *
 * @example
 * const runtime = await Runtime.connect({ servers: 'nats://127.0.0.1:4222' });
 * await runtime.spawn(Echo, { namespace: 'demo', replicas: 2 });
 * const echo = runtime.namespace('demo').client(Echo);
 * await echo.say('hi');
 * await runtime.close();
 */
export class Runtime {
  /** This runtime's id (random; later also its discovery lease). */
  readonly id: string = newInstanceId();
  readonly logger: Logger;
  private readonly plane: Plane;
  private readonly spawns = new Set<SpawnRecord>();
  /** The instances a close is stopping (out of {@link spawns}, not yet all stopped), for the metrics. */
  private closingInstances: readonly ActorInstance[] = [];
  private readonly container: DependencyContainer;
  private closing: Promise<void> | undefined;
  /** Removers of the process signal handlers {@link closeOnSignals} installed: process-wide state, released by close(). */
  private readonly signalHandlers = new Set<() => void>();

  /** The process side of discovery (lease, records); undefined when discovery is off. */
  private readonly registry: Registry | undefined;
  /** One queue subscription per endpoint for all of this process's instances of it (they each keep their own mailbox). */
  private readonly queues: QueueHubs;
  /** Answers `$SRV.PING|INFO|STATS` for this runtime's instances. */
  private readonly micro: MicroResponder | undefined;
  private readonly runtimeMetrics: RuntimeMetrics;
  /** Canary health checks of endpoints that declare one. */
  private readonly checker: HealthChecker;
  private status: { address: AddressInfo; detach: () => Promise<void> } | undefined;

  private constructor(
    private readonly transport: Transport,
    options: RuntimeOptions,
    /** The memory network of an embedded runtime; undefined on NATS. */
    readonly network: MemoryNetwork | undefined,
  ) {
    this.logger = options.logger ?? consoleLogger();
    const settings = resolveSettings(options);
    const codec = options.codec ?? new MsgpackCodec();
    const d = resolveDiscovery(options);
    let discovery: Discovery | undefined;
    if (d) {
      this.registry = new Registry(transport.persistence, codec, this.id, d, this.logger, (o) => startPulse(transport, o));
      discovery = new Discovery(
        transport.persistence,
        codec,
        d,
        this.logger,
        transport.status$,
        (mailbox, timeoutMs) =>
          transport.request(mailbox, new Uint8Array(0), { timeoutMs, headers: { [H.CTL]: Ctl.PROBE } }).then(
            (): ProbeResult => 'alive',
            (err: unknown): ProbeResult => ((err as TroupeError).code === 'NO_INSTANCES' ? 'gone' : 'silent'),
          ),
        (handler) => {
          const sub = transport.subscribe(LEASE_BEAT_WILDCARD, (m) => handler(m.data));
          return () => sub.unsubscribe();
        },
      );
    }
    this.plane = new Plane(
      {
        transport,
        codec,
        settings,
        logger: this.logger,
        discovery,
        inboxPrefix: validateInboxPrefix(options.inboxPrefix ?? '_INBOX'),
        owner: `runtime ${this.id}${options.name ? ` (${options.name})` : ''}`,
      },
      (plane) => ({
        monitor: new CallerMonitor(plane),
        heartbeats: new Heartbeats(plane),
        // runtime-level events carry the runtime id
        events: new RuntimeEvents(plane, this.id),
        eventStreams: new EventStreams(),
      }),
    );
    this.queues = new QueueHubs(transport, (msg) => {
      if (!msg.reply) return;
      const err = refusal(`no instance of ${msg.subject} in this process takes requests now (stopping)`);
      try {
        transport.publish(msg.reply, codec.encode(err.toJSON()), { headers: { [H.ERROR]: err.code } });
      } catch {
        // the caller's deadline covers a refusal that could not be sent
      }
    });
    // `metrics: false` also takes the clock reads off the hot path (counts stay, for $SRV.STATS).
    this.plane.meter.timed = options.metrics !== false;
    this.micro = options.micro === false ? undefined : new MicroResponder(transport, this.id, this.logger);
    this.checker = new HealthChecker(
      this.plane,
      {
        withdraw: async (i) => {
          if (this.registry && !(await this.registry.deregister(i.addresses, i.info.instanceId))) {
            throw new TroupeError('UNAVAILABLE', `the registry did not confirm the withdrawal of ${i.info.instanceId}`);
          }
        },
        restore: async (i) => {
          if (!this.registry || !i.serving) return;
          await this.registry.register(i.addresses, i.info.instanceId, { ...i.properties?.statics });
          for (const [k, v] of Object.entries(i.dynamic)) this.registry.setDynamic(i.info.instanceId, k, v);
        },
      },
      this.logger,
    );
    this.runtimeMetrics = new RuntimeMetrics(
      {
        meter: this.plane.meter,
        stats: this.plane.stats,
        transport,
        discovery,
        registry: this.registry,
        // With those a close is stopping: their counts go into the totals only at their stop (a scrape must not see a counter drop).
        instances: () => [...this.spawns].flatMap((s) => s.instances).concat(this.closingInstances),
      },
      options.metrics ?? {},
    );
    this.container = rootContainer.createChildContainer();
    this.container.registerInstance(Runtime as unknown as Class<Runtime>, this);
  }

  /**
   * Connects to NATS and returns a runtime. An unreachable server is a
   * TroupeError `UNAVAILABLE` naming the URL. With no `servers` and no
   * `NATS_URL` the runtime is embedded (see {@link embedded}).
   *
   * @example
   * const runtime = await Runtime.connect({ servers: process.env.NATS_URL });
   */
  static async connect(options: RuntimeOptions = {}): Promise<Runtime> {
    return Runtime.open(options, false);
  }

  /**
   * An embedded runtime: the whole component graph in this process on an
   * in-process memory network with NATS semantics (queue groups, no
   * responders, payload limit), no server at all. Same API; switch to NATS
   * by giving `servers` (or `NATS_URL`) to {@link connect}. Pass `network`
   * to join another embedded runtime's network.
   *
   * @example
   * const a = await Runtime.embedded();
   * const b = await Runtime.embedded({ network: a.network });
   */
  static async embedded(options: Omit<RuntimeOptions, 'servers' | 'transport' | 'nats'> = {}): Promise<Runtime> {
    return Runtime.open(options, true);
  }

  private static async open(options: RuntimeOptions, embedded: boolean): Promise<Runtime> {
    resolveSettings(options); // refuse bad settings before connecting
    resolveDiscovery(options);
    const status = options.status !== undefined ? checkStatusOptions(options.status) : statusFromEnv();
    if (options.micro !== undefined && typeof options.micro !== 'boolean')
      throw new TroupeError('BAD_REQUEST', `micro must be a boolean, got ${String(options.micro)}`);
    if (options.metrics !== undefined && options.metrics !== false && (options.metrics === null || typeof options.metrics !== 'object')) {
      throw new TroupeError('BAD_REQUEST', `metrics must be false or an options object, got ${String(options.metrics)}`);
    }
    if (options.inboxPrefix !== undefined) validateInboxPrefix(options.inboxPrefix);
    const { transport, network } = await openTransport(options, embedded);
    let rt: Runtime;
    try {
      rt = new Runtime(transport, options, network);
    } catch (err) {
      await transport.close();
      throw err;
    }
    if (!network) await transport.flush();
    await rt.openDiscovery();
    if (status) {
      try {
        rt.status = await StatusServer.attach(status, { registry: rt.runtimeMetrics.registry, health: () => rt.health() });
      } catch (err) {
        await rt.close();
        throw err;
      }
    }
    return rt;
  }

  /**
   * Opens the registry buckets now, so a server without JetStream fails at
   * connect with the fix named. A registry that merely does not answer (a
   * JetStream election, a cluster without quorum) does not fail the connect:
   * instances spawned meanwhile serve unregistered and register when it
   * answers (see {@link Registry.registerMany}).
   */
  private async openDiscovery(): Promise<void> {
    if (!this.registry) return;
    try {
      await this.registry.start();
    } catch (err) {
      await this.transport.close();
      const e = toTroupeError(err, 'UNAVAILABLE');
      throw new TroupeError(e.code, `${e.message}. Or connect with { discovery: false } to run without a registry (queue-group routing only)`, { cause: err });
    }
  }

  /** Registry writes this process made (records and lease heartbeats). */
  get registryWrites(): number {
    return this.registry?.writes ?? 0;
  }

  /** The transport this runtime runs on. */
  get bus(): Transport {
    return this.transport;
  }

  /** Resolved settings (defaults applied). */
  get settings(): PlaneSettings {
    return this.plane.settings;
  }

  /**
   * A namespace (pipeline) handle: clients of its components and endpoints.
   *
   * @example
   * runtime.namespace('llama_8b').component('decode').endpoint('generate').client();
   */
  namespace(name: string): NamespaceRef {
    return new NamespaceRef(this.plane, validateName('namespace', name));
  }

  /**
   * Starts `replicas` instances of a component class in `namespace`. Each
   * instance is constructed through the DI container (config, runtime,
   * logger, clients), runs `onStart`, then listens on its mailbox and in the
   * queue group of each endpoint, then registers them in discovery (a
   * registry that does not answer within `discovery.registerWaitMs` does not
   * fail the spawn: they serve unregistered and register when it answers,
   * see docs/discovery.md). A start hook that throws is retried per
   * `restart`; a replica that still fails fails the spawn with one
   * TroupeError (the first failure's code, `data.failed` listing every
   * failed replica and its error; the instances that started are stopped).
   *
   * @example
   * const h = await runtime.spawn(Decode, { namespace: 'llama_8b', replicas: 2, config: { model: 'x' } });
   */
  async spawn<C>(target: Class<C>, options: SpawnOptions): Promise<SpawnHandle<C>> {
    if (this.closing) throw new TroupeError('UNAVAILABLE', `runtime ${this.id} is closing; cannot spawn`);
    const meta = componentMeta(target);
    if (options === null || typeof options !== 'object') {
      throw new TroupeError('BAD_REQUEST', 'spawn needs options: { namespace, replicas? }');
    }
    const namespace = validateName('namespace', options.namespace);
    for (const ep of meta.endpoints.values()) endpointAddress(namespace, meta.name, ep.name);
    const replicas = options.replicas ?? 1;
    if (!Number.isInteger(replicas) || replicas < 1) {
      throw new TroupeError('BAD_REQUEST', `replicas must be an integer >= 1, got ${String(replicas)}`);
    }
    const concurrency = options.concurrency ?? this.plane.settings.concurrency;
    const mailboxCapacity = options.mailboxCapacity ?? this.plane.settings.mailboxCapacity;
    const version = options.version ?? '0.0.0';
    if (!isSemver(version))
      throw new TroupeError('BAD_REQUEST', `version must be a semantic version such as 1.2.3 (NATS micro requires one), got ${String(version)}`);
    checkPositiveInt('concurrency', concurrency, 1);
    checkPositiveInt('mailboxCapacity', mailboxCapacity, 0);
    for (const dep of clientDependencies(target)) componentMeta(dep.target);
    checkConstructor(target);

    const restart = resolveRestart(options.restart);
    const failures = resolveFailures(options.failures);
    const stuckAfterMs = options.stuckAfterMs ?? this.plane.settings.stuckAfterMs;
    checkPositiveInt('stuckAfterMs', stuckAfterMs, 0);

    const record: SpawnRecord = { instances: [], replicas: [] };
    const statics = { ...options.properties };
    this.spawns.add(record);
    const host = this.replicaHost(record, target, { component: meta.name, namespace, statics, policy: restart }, options, {
      plane: this.plane,
      meta,
      concurrency,
      mailboxCapacity,
      failures,
      stuckAfterMs,
      queues: this.queues,
      addresses: [...meta.endpoints.values()].map((ep) => endpointAddress(namespace, meta.name, ep.name)),
      logger: this.logger,
      properties: { statics, sink: this.propertySink() },
    });
    try {
      const slots = Array.from({ length: replicas }, (_, i) => new Replica(i, host));
      const failed: Array<{ replica: number; error: unknown }> = [];
      // Start hooks run concurrently (bounded), each retried per the restart policy; the
      // subscriptions reach the server with one flush for all.
      await pool(slots, START_CONCURRENCY, async (replica) => {
        try {
          await replica.start(replicas === 1);
        } catch (err) {
          failed.push({ replica: replica.index, error: err });
        }
      });
      // Handle order is spawn order, whatever order the starts finished in; `current` follows a restart made meanwhile.
      for (const r of slots) {
        if (!r.current) continue;
        record.replicas.push(r);
        record.instances.push(r.current);
      }
      if (failed.length > 0)
        throw spawnFailure(
          meta.name,
          replicas,
          failed.sort((a, b) => a.replica - b.replica),
        );
      if (replicas > 1) await this.transport.flush();
      // Registered only once they serve: routable means served. One batch: one lease write, pipelined records.
      // A registry that does not answer within registerWaitMs does not fail the spawn: the instances serve
      // their queue groups and mailboxes now and are registered in the background when it answers.
      await this.registry?.registerMany(
        // The spawn's static properties: one object for all its instances (the registry only reads them).
        record.instances.map((i) => ({ addresses: i.addresses, instanceId: i.info.instanceId, properties: statics, keys: i.mailboxSubjects })),
      );
      this.micro?.add(record, version);
      for (const instance of record.instances) this.checker.add(instance);
    } catch (err) {
      this.micro?.remove(record);
      await Promise.all(record.replicas.map((r) => r.stop()));
      await this.stopInstances(record.instances);
      this.spawns.delete(record);
      throw err;
    }
    let stopping: Promise<void> | undefined;
    return {
      namespace,
      component: meta.name,
      // Read each time: a restart replaces an instance id.
      get instanceIds() {
        return record.instances.map((i) => i.info.instanceId);
      },
      instance: (id: string) => {
        const inst = record.instances.find((i) => i.info.instanceId === id);
        if (!inst) throw new TroupeError('NOT_FOUND', `no instance ${id} in this spawn of ${meta.name} (stopped, or replaced by a restart)`);
        return inst.actor as C;
      },
      stop: () =>
        (stopping ??= (async () => {
          // No restart may start an instance once the stop took the list.
          await settlesWithin(Promise.all(record.replicas.map((r) => r.stop())), SHUTDOWN_STEP_MS);
          this.micro?.remove(record);
          await this.stopInstances(record.instances);
          this.spawns.delete(record);
        })()),
    };
  }

  /** Where the property boards of one spawn's instances send a change (one function per spawn); undefined with discovery off. */
  private propertySink(): PropertySink | undefined {
    const registry = this.registry;
    return registry ? (id, k, v) => registry.setDynamic(id, k, v) : undefined;
  }

  /** What the supervisors of one spawn's replicas use: build through DI, register, withdraw, stop, and the spawn's instance list. */
  private replicaHost(
    record: SpawnRecord,
    target: Class,
    spawn: { component: string; namespace: string; statics: Record<string, unknown>; policy: ReplicaHost['policy'] },
    options: SpawnOptions,
    settings: ConstructorParameters<typeof ActorInstance>[2],
  ): ReplicaHost {
    const { component, namespace, statics, policy } = spawn;
    const sink = settings.properties?.sink;
    return {
      build: () => {
        const info: InstanceInfo = { instanceId: newInstanceId(), namespace, component };
        // Made here only when the class injects it; otherwise the instance makes it at first use (most never set a property).
        let injected: PropertyBoard | undefined;
        const properties = (): PropertyBoard => (injected ??= new PropertyBoard(info.instanceId, statics, sink));
        const actor = this.construct(target, { info, config: options.config, properties });
        const instance = new ActorInstance(actor as object, info, settings);
        if (injected) instance.properties = injected;
        return instance;
      },
      register: async (i) => {
        await this.registry?.register(i.addresses, i.info.instanceId, statics);
      },
      deregister: async (i) => {
        if (!this.registry) return;
        i.leaveRegistry();
        await settlesWithin(this.registry.deregister(i.addresses, i.info.instanceId), SHUTDOWN_STEP_MS);
      },
      // Bounded: an onStop hook that never returns must not hold the replica's restart.
      stop: async (i, graceMs) => {
        if (!(await settlesWithin(i.stop(graceMs, Math.min(graceMs, SHUTDOWN_STEP_MS)), graceMs + 2 * SHUTDOWN_STEP_MS))) {
          this.logger.warn(`instance ${i.info.instanceId} did not stop within ${graceMs + 2 * SHUTDOWN_STEP_MS} ms (an onStop hook still running); going on`);
        }
      },
      replaced: (old, next) => {
        const k = record.instances.indexOf(old);
        if (k < 0) return;
        // Micro reads the spawn's list as it is: the replacement answers in its place from now on.
        this.checker.remove(old.info.instanceId);
        if (next) {
          record.instances[k] = next;
          this.checker.add(next);
        } else {
          record.instances.splice(k, 1);
          // Its last replica given up: no subscription kept for a list that stays empty.
          if (record.instances.length === 0) this.micro?.remove(record);
        }
      },
      stats: this.plane.stats,
      logger: this.logger.child({ namespace, component }),
      component,
      policy,
    };
  }

  /**
   * Graceful stop of a batch of instances (one spawn's, or every one on
   * close): leave the registry as one batch (one lease write names them all
   * gone, so watchers drop them together), keep serving for the leave delay
   * once, then stop them all in parallel within one grace period. When the
   * registry does not confirm the leave within `leaveWithinMs`, `onNotLeft`
   * runs and the instances stop anyway, without the leave delay and with a
   * short wait for the server (watchers drop them at the next heartbeat that
   * lands, or the lease TTL).
   */
  private async stopInstances(list: readonly ActorInstance[], leaveWithinMs = Infinity, onNotLeft?: () => void): Promise<void> {
    if (list.length === 0) return;
    // Micro stopped answering for them already (its caller removed their spawn's list).
    for (const i of list) this.checker.remove(i.info.instanceId);
    let left = true;
    if (this.registry) {
      // The records are going: a later property change must not bring them back to the lease.
      for (const i of list) i.leaveRegistry();
      const leaving = this.registry.deregisterMany(list.map((i) => ({ addresses: i.addresses, instanceId: i.info.instanceId })));
      left = (await settlesWithin(leaving, leaveWithinMs)) && (await leaving);
      // Keep serving while watchers see them go, so clients stop routing here before they
      // refuse; pointless when the lease write did not land.
      const delay = this.registry.settings.leaveDelayMs;
      if (left && delay > 0) await new Promise((r) => setTimeout(r, delay));
    }
    if (!left) onNotLeft?.();
    const grace = this.plane.settings.gracePeriodMs;
    const step = left ? Math.min(grace, SHUTDOWN_STEP_MS) : SHUTDOWN_SILENT_STEP_MS;
    await Promise.all(
      list.map((i) =>
        i
          .stop(grace, step)
          .catch((err: unknown) => this.logger.error('instance stop failed', { instance: i.info.instanceId, error: toTroupeError(err).message })),
      ),
    );
  }

  private construct(target: Class, deps: { info: InstanceInfo; config: unknown; properties: () => PropertyBoard }): unknown {
    const { info, config } = deps;
    const child = this.container.createChildContainer();
    child.registerInstance(CONFIG, config);
    // Made only when the class injects it.
    child.register(LOGGER, { useFactory: () => lazyChild(this.logger, { namespace: info.namespace, component: info.component, instance: info.instanceId }) });
    child.registerInstance(INSTANCE, info);
    child.register(PROPERTIES, { useFactory: deps.properties });
    // Made only when the class injects it (most actors never publish): 100,000 idle instances hold no publisher.
    child.register(PUBLISHER, { useFactory: () => this.plane.events.publisherOf(info) });
    child.registerInstance(METRICS, this.runtimeMetrics);
    for (const dep of clientDependencies(target)) {
      child.registerInstance(dep.token, typedClient(this.plane, { namespace: dep.namespace ?? info.namespace, target: dep.target }));
    }
    try {
      return child.resolve(target);
    } catch (err) {
      throw new TroupeError(
        'BAD_REQUEST',
        `cannot construct ${target.name}: ${(err as Error).message}. Constructor parameters need a class type or an explicit token (@injectConfig(), @injectLogger(), @injectInstance(), @injectProperties(), @injectClient(Other), @inject(token)); code run by esbuild/tsx has no decorator metadata, so use explicit tokens there`,
        { cause: err },
      );
    }
  }

  /**
   * Stops every instance (in-flight work finishes within the grace period),
   * then drains the connection. Bounded whatever the server does: each step
   * that waits for the server (deregistration, the lease removal, durable
   * consumers, the drain) gives up after 1 s (200 ms once the server has
   * failed to answer one), logs a
   * warning saying what it could not do, and goes on — so `close()` resolves
   * within the grace period plus a few such steps even when the server is
   * dead or frozen. Never rejects; calling it twice returns the same promise.
   *
   * @example
   * process.on('SIGTERM', () => void runtime.close().then(() => process.exit(0)));
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown()
      .catch((err: unknown) => {
        this.logger.error('error while closing the runtime', { error: toTroupeError(err).message });
      })
      .finally(() => {
        // Once closed, its signal handlers go: process-wide state must not outlive the runtime.
        for (const remove of this.signalHandlers) remove();
        this.signalHandlers.clear();
      });
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    // A server that failed to answer one step (dead, frozen, partitioned) gets a short wait at
    // the next ones: the shutdown must not pay the full step for each of them.
    // Without a connection (the server died) every step is short from the start.
    let silent = this.transport.status !== TransportStatus.CONNECTED;
    const bound = (): number => (silent ? SHUTDOWN_SILENT_STEP_MS : SHUTDOWN_STEP_MS);
    const leaveMs = bound();
    // Supervisors first: no restart may start an instance once the list is taken.
    await settlesWithin(Promise.all([...this.spawns].flatMap((s) => s.replicas.map((r) => r.stop()))), leaveMs);
    const instances = [...this.spawns].flatMap((s) => s.instances);
    for (const s of this.spawns) this.micro?.remove(s);
    this.closingInstances = instances;
    this.spawns.clear();
    let notLeft = 0;
    // One batch: one lease write for all of them, one leave delay, one grace period in parallel.
    const stopped = this.stopInstances(instances, leaveMs, () => {
      notLeft = instances.length;
      silent = true;
    }).catch(() => undefined);
    // Each instance's stop is bounded (leave, grace period, abort wait); an onStop hook that
    // never returns must not hold the process.
    const stopBound = this.stopBoundMs();
    const allStopped = await settlesWithin(stopped, stopBound);
    if (notLeft > 0) {
      this.logger.warn(
        `could not deregister ${notLeft} instances: registry did not answer within ${leaveMs} ms; watchers drop them when a later lease write lands, or at the lease TTL (${this.registry?.settings.leaseTtlMs} ms)`,
      );
    }
    if (!allStopped) this.logger.warn(`instances did not stop within ${stopBound} ms (a handler or onStop hook still running); closing anyway`);
    // From here new calls and streams are refused at once (handlers draining above could still call out).
    this.plane.shutOff();
    // A registry that did not answer the deregistrations gets no second wait for the lease.
    if (this.registry && !(await settlesWithin(this.registry.close(), silent ? 0 : SHUTDOWN_STEP_MS))) {
      this.logger.warn(
        `could not remove the process lease: registry did not answer${silent ? '' : ` within ${SHUTDOWN_STEP_MS} ms`}; watchers drop it at the lease TTL (${this.registry.settings.leaseTtlMs} ms)`,
      );
      silent = true;
    }
    this.micro?.close();
    this.checker.close();
    this.runtimeMetrics.close();
    this.closingInstances = []; // nothing scrapes them any more
    await this.status?.detach();
    // Durable consumers give back what they hold before the drain; waiting replies fail now.
    const consumersMs = bound();
    if (!(await this.plane.close(new TroupeError('UNAVAILABLE', 'the runtime closed before the reply arrived'), consumersMs))) {
      this.logger.warn(`event consumers did not stop within ${consumersMs} ms; messages they hold go back to the log after its ack wait`);
      silent = true;
    }
    const drainMs = bound();
    if (!(await this.transport.close(drainMs))) {
      this.logger.warn(`connection did not drain within ${drainMs} ms (server unreachable or not answering); closed`);
    }
  }

  /** Bound on stopping the instances in `close()`: leave, leave delay, grace period, abort wait, drain. */
  private stopBoundMs(): number {
    const grace = this.plane.settings.gracePeriodMs;
    return SHUTDOWN_STEP_MS + (this.registry?.settings.leaveDelayMs ?? 0) + grace + Math.min(1_000, grace) + SHUTDOWN_STEP_MS;
  }

  /**
   * Closes the runtime on SIGTERM and SIGINT (deregister, finish in-flight
   * work within the grace period, drain), then exits 0 — within the grace
   * period plus a few seconds whatever the server does. The first signal
   * says what it waits for — `draining N in-flight requests (grace period
   * X s; Ctrl-C again to exit now)`, at warn when something is in flight
   * (the default log level shows it), else at info; a second signal exits at
   * once with 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM), as
   * a shell reports a process killed by it. Returns a function that removes
   * the handlers; a closed runtime removes them too, so a process that opens
   * and closes many runtimes does not pile up listeners on `process`.
   *
   * @example
   * runtime.closeOnSignals();
   */
  closeOnSignals(signals: NodeJS.Signals[] = ['SIGTERM', 'SIGINT']): () => void {
    // The second signal and the backstop are onSignals' (below); this is the first one.
    const handler = (sig: NodeJS.Signals): void => {
      const inFlight = [...this.spawns].reduce((n, s) => n + s.instances.reduce((m, i) => m + i.inFlight, 0), 0);
      const grace = this.plane.settings.gracePeriodMs / 1000;
      const again = sig === 'SIGINT' ? 'Ctrl-C' : sig;
      const line = `closing on ${sig}: draining ${inFlight} in-flight request${inFlight === 1 ? '' : 's'} (grace period ${grace} s; ${again} again to exit now)`;
      if (inFlight > 0) this.logger.warn(line, { signal: sig, inFlight });
      else this.logger.info(line, { signal: sig, inFlight });
      void this.close().then(() => process.exit(0));
    };
    const off = onSignals(signals, handler, { logger: this.logger, backstopMs: this.closeBoundMs() + SIGNAL_BACKSTOP_MS });
    const remove = (): void => {
      off();
      this.signalHandlers.delete(remove);
    };
    this.signalHandlers.add(remove);
    return remove;
  }

  /** What `close()` takes at most (the sum of its bounded steps), ms. */
  private closeBoundMs(): number {
    return this.stopBoundMs() + 3 * SHUTDOWN_STEP_MS;
  }

  /**
   * The live instances discovery knows, one record per endpoint of each
   * instance: every namespace (no scope), or those under `ns`, `ns.comp` or
   * `ns.comp.ep`. A one-shot read of the registry (records joined with live
   * leases, dynamic properties merged). Rejects with `UNAVAILABLE` when
   * discovery is off or the registry does not answer within the request
   * timeout, and with `BAD_REQUEST` for a malformed scope.
   *
   * @example
   * for (const r of await runtime.instances('llama_8b')) console.log(r.component, r.endpoint, r.instanceId);
   */
  async instances(scope = ''): Promise<InstanceRecord[]> {
    const list$ = this.watchInstances(scope);
    const timeoutMs = this.plane.settings.requestTimeoutMs;
    return new Promise<InstanceRecord[]>((resolve, reject) => {
      // The timer fires long after `sub` exists; `next` may run synchronously, after `timer` exists.
      const timer = setTimeout(() => {
        sub.unsubscribe();
        reject(new TroupeError('UNAVAILABLE', `the registry did not answer a listing within ${timeoutMs} ms`));
      }, timeoutMs);
      const sub = list$.subscribe({
        next: (list) => {
          clearTimeout(timer);
          queueMicrotask(() => sub.unsubscribe());
          resolve([...list]);
        },
        error: (err: unknown) => {
          clearTimeout(timer);
          reject(err as Error);
        },
      });
    });
  }

  /**
   * The live instances under a scope (as {@link instances}) as they change:
   * a cold Observable that emits the whole list once the registry is read
   * and again on every spawn, stop, lease loss or property change.
   * Unsubscribing stops the watch.
   *
   * @example
   * runtime.watchInstances('llama_8b.decode').subscribe((list) => console.log(list.length, 'decode endpoints'));
   */
  watchInstances(scope = ''): Observable<readonly InstanceRecord[]> {
    if (typeof scope !== 'string') throw new TroupeError('BAD_REQUEST', `a listing scope is a string (ns, ns.comp or ns.comp.ep), got ${typeof scope}`);
    if (this.plane.closed) throw this.plane.refusal(`list instances of "${scope}"`);
    const discovery = this.plane.discovery;
    if (!discovery) throw new TroupeError('UNAVAILABLE', 'discovery is off ({ discovery: false }): there is no registry to list');
    return discovery.listing(scope);
  }

  /**
   * This runtime's Prometheus metrics: its own prom-client registry (Troupe's
   * metrics unless `metrics: false`, and any you register) and its text.
   *
   * @example
   * new Counter({ name: 'tokens_total', help: 'tokens', registers: [runtime.metrics.registry] });
   */
  get metrics(): RuntimeMetrics {
    return this.runtimeMetrics;
  }

  /**
   * Where the status server listens (`status` option or
   * `TROUPE_STATUS_PORT`); undefined when it is off.
   *
   * @example
   * const { port } = runtime.statusAddress ?? { port: 0 };
   */
  get statusAddress(): { host: string; port: number } | undefined {
    return this.status ? { host: this.status.address.address, port: this.status.address.port } : undefined;
  }

  /**
   * This runtime's health as `/health` reports it: connected to NATS, lease
   * current, every instance serving, registered and passing its canary
   * checks.
   *
   * @example
   * if (!runtime.health().ready) console.warn(runtime.health());
   */
  health(): RuntimeHealth {
    const connected = this.transport.status === TransportStatus.CONNECTED;
    const reg = this.registry;
    const instances = [...this.spawns].flatMap((s) => s.instances);
    let lease: RuntimeHealth['lease'] = null;
    if (reg && reg.lastLeaseWrite > 0) {
      const ageMs = Date.now() - reg.lastLeaseWrite;
      lease = { current: ageMs < reg.settings.leaseTtlMs, ageMs, ttlMs: reg.settings.leaseTtlMs };
    }
    const list = instances.map((i) => {
      const endpoints = [...i.component.endpoints.values()].map((ep) => {
        const check = i.checks.get(ep.name);
        const status: 'ok' | 'failing' | 'unchecked' = check === undefined ? 'unchecked' : check.ok ? 'ok' : 'failing';
        return {
          name: ep.name,
          subject: `${i.info.namespace}.${i.info.component}.${ep.name}`,
          status,
          ...(check?.lastError ? { lastError: check.lastError } : {}),
        };
      });
      return {
        namespace: i.info.namespace,
        component: i.info.component,
        instanceId: i.info.instanceId,
        serving: i.serving,
        registered: reg ? reg.has(i.info.instanceId) : true,
        healthy: endpoints.every((e) => e.status !== 'failing'),
        endpoints,
      };
    });
    // A closing runtime is not ready: an orchestrator stops sending it traffic while it drains.
    const ready =
      !this.closing &&
      connected &&
      (lease === null ? !reg || instances.length === 0 : lease.current) &&
      list.every((i) => i.serving && i.registered && i.healthy);
    return { ready, runtime: this.id, nats: { connected, server: this.transport.describe }, lease, instances: list };
  }

  /** Whether the connection is up. */
  get connected(): boolean {
    return this.transport.status === TransportStatus.CONNECTED;
  }

  /** Replies awaited right now (unary calls and streams); 0 when idle. */
  get pendingReplies(): number {
    return this.plane.inbox.pending;
  }

  private retained(): RetainedState {
    const p = this.plane;
    const monitor = p.monitor.retained();
    let workerActive = 0;
    let workerStreams = 0;
    for (const s of this.spawns) {
      for (const i of s.instances) {
        const r = i.retained();
        workerActive += r.active;
        workerStreams += r.streams;
      }
    }
    const v = p.discovery?.retained() ?? { views: 0, records: 0, tracked: 0, trackedInstances: 0, mailboxes: 0, inhibited: 0, strikes: 0 };
    return {
      wheelScheduled: p.wheel.scheduled,
      pendingReplies: p.inbox.pending,
      monitorStreams: p.monitor.size,
      monitorProbes: monitor.probes,
      monitorInstances: monitor.instances,
      heartbeatGroups: p.heartbeats.groupCount,
      workerActive,
      workerStreams,
      views: v.views,
      viewRecords: v.records,
      viewTracked: v.tracked,
      viewTrackedInstances: v.trackedInstances,
      viewMailboxes: v.mailboxes,
      viewInhibited: v.inhibited,
      viewStrikes: v.strikes,
      cachedRoutes: this.network?.cachedRoutes() ?? 0,
      registryGone: this.registry?.leaving.gone ?? 0,
      registryUndeleted: this.registry?.leaving.undeleted ?? 0,
    };
  }

  /**
   * A snapshot of this runtime's stream counters: streams lost and
   * migrated, liveness probes and heartbeats sent, handlers aborted because
   * their caller was gone.
   *
   * @example
   * if (runtime.stats().streamsMigrated > 0) console.log('a worker was lost; streams moved');
   */
  stats(): RuntimeStats {
    return { ...this.plane.stats };
  }
}

interface SpawnRecord {
  /** The serving instance of each replica (a restart swaps it, a give-up removes it). */
  instances: ActorInstance[];
  /** The replicas' supervisors. */
  replicas: Replica[];
}

/**
 * What a runtime still holds per call, per stream and per instance — every
 * structure that grows with traffic — for tests that prove finished work
 * leaves nothing behind (issue #16). Internal (`@troupe/runtime/internal`).
 *
 * @example
 * await Promise.all(calls);
 * assert.equal(retainedState(runtime).wheelScheduled, 0);
 */
export interface RetainedState {
  /** Unary calls waiting in the deadline wheel (a settled call leaves it at once). */
  wheelScheduled: number;
  /** Reply keys open on the muxed inbox (calls, streams, probes, heartbeat groups). */
  pendingReplies: number;
  /** Caller streams watched for liveness, probes in flight, instances remembered as recently heard. */
  monitorStreams: number;
  monitorProbes: number;
  monitorInstances: number;
  /** Worker heartbeat groups (one per caller runtime with open streams). */
  heartbeatGroups: number;
  /** Requests being handled and worker streams open, over every instance. */
  workerActive: number;
  workerStreams: number;
  /** Endpoint views and what they hold: records, calls tracked in flight (and instances with any), cached mailboxes, inhibitions, strikes. */
  views: number;
  viewRecords: number;
  viewTracked: number;
  viewTrackedInstances: number;
  viewMailboxes: number;
  viewInhibited: number;
  viewStrikes: number;
  /** The memory network's route cache (embedded only; 0 on NATS). */
  cachedRoutes: number;
  /** Instances that left and are still named gone on the lease, and those whose records are not deleted yet. */
  registryGone: number;
  registryUndeleted: number;
}

/**
 * Reads {@link RetainedState} of `runtime`.
 *
 * @example
 * const before = retainedState(runtime);
 */
export function retainedState(runtime: Runtime): RetainedState {
  return runtime['retained']();
}

/** Past `close()`'s own bound, the signal path exits anyway (an event-loop stall, a bug): never a process that lingers. */
const SIGNAL_BACKSTOP_MS = 2_000;

/**
 * The process side of {@link Runtime.closeOnSignals}: the first of `signals`
 * runs `first`; any later one exits at once (exit code 128 + signal number,
 * as a shell reports a process killed by it) — an operator pressing Ctrl-C
 * twice, or an orchestrator's second SIGTERM, means "now". A process still
 * alive `backstopMs` after the first signal exits with an error logged.
 * `process.on`, not `once`: with `once` a second SIGTERM would fall to
 * Node's default (killed by the signal, nothing logged), and a SIGINT after
 * a SIGTERM would only call `first` again.
 */
function onSignals(signals: readonly NodeJS.Signals[], first: (sig: NodeJS.Signals) => void, opts: { logger: Logger; backstopMs: number }): () => void {
  let received: NodeJS.Signals | undefined;
  const handler = (sig: NodeJS.Signals): void => {
    const code = 128 + (osConstants.signals[sig] ?? 0);
    if (received) {
      opts.logger.warn(`second signal (${sig} after ${received}): exiting now without finishing the shutdown`);
      process.exit(code);
    }
    received = sig;
    const backstop = setTimeout(() => {
      opts.logger.error(`shutdown did not finish within ${opts.backstopMs} ms of ${sig}; exiting`);
      process.exit(code);
    }, opts.backstopMs);
    backstop.unref();
    first(sig);
  };
  for (const s of signals) process.on(s, handler);
  return () => {
    for (const s of signals) process.off(s, handler);
  };
}
