import 'reflect-metadata';
import { container as rootContainer, type DependencyContainer } from 'tsyringe';
import { type ClientOptions, EndpointClient, typedClient, type TypedClient, type TypedClientOptions } from './client';
import { MsgpackCodec } from './codec/msgpack';
import type { Codec } from './codec/codec';
import {
  type Class,
  CONFIG,
  clientDependencies,
  componentMeta,
  INSTANCE,
  type InstanceInfo,
  LOGGER,
  PUBLISHER,
} from './decorators';
import { TroupeError, toTroupeError } from './errors';
import { newInstanceId, newToken } from './ids';
import { ReplyInbox } from './inbox';
import { ActorInstance } from './instance';
import { consoleLogger, type Logger } from './logger';
import { validateName } from './names';
import type { PlaneSettings, RequestPlane } from './plane';
import { type RuntimeStats, statsOf } from './stats';
import { endpointAddress, validateInboxPrefix } from './subjects';
import { Discovery, type ProbeResult } from './discovery';
import { Ctl, H } from './protocol';
import { type DiscoverySettings, type InstanceRecord, Registry } from './registry';
import type { Observable } from 'rxjs';
import { attachEvents, type EventEnvelope, type EventLogOptions, type EventRef, type EventToken, instancePublisher, openEventLog, publishEvent } from './events';
import { closeEventStreams, eventStream, eventTarget, type EventsOptions } from './event-subscription';
import { resolveRouter } from './routers';
import { NatsTransport, type NatsTransportOptions } from './transport/nats/nats-transport';
import { MemoryNetwork } from './transport/memory/memory-transport';
import { TransportStatus, type Transport } from './transport/transport';

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
  /** Logger (default: JSON lines on stderr at `TROUPE_LOG` level, else warn). */
  logger?: Logger;
  /** Connection name shown by the NATS server. */
  name?: string;
  /**
   * Discovery (registry + watches) timing, or `false` to turn it off (then
   * clients can only use the `queue` router and nothing needs JetStream).
   */
  discovery?: false | Partial<DiscoverySettings & { inhibitMs: number }>;
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
  /** Messages one instance handles at once (default: the runtime's, 1). */
  concurrency?: number;
  /** Messages that may wait in one instance's mailbox before it answers OVERLOADED. */
  mailboxCapacity?: number;
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
  /** One 16-hex-char id per replica. */
  readonly instanceIds: readonly string[];
  /** The actor object of one instance (for tests and introspection). */
  instance(instanceId: string): C;
  /** Stops every instance of this spawn: leave, finish in-flight work (bounded by the grace period), stop hooks. */
  stop(): Promise<void>;
}

const DISCOVERY_DEFAULTS: DiscoverySettings & { inhibitMs: number } = {
  heartbeatMs: 1_000,
  leaseTtlMs: 3_000,
  propertyThrottleMs: 100,
  leaveDelayMs: 100,
  inhibitMs: 5_000,
};

const DEFAULTS: PlaneSettings = {
  router: 'round-robin',
  requestTimeoutMs: 30_000,
  streamTimeoutMs: 300_000,
  // Measured on loopback, 1M x 32-byte items: 512 -> 0.6 M items/s, 1024 -> 0.82 M, 2048 -> 1.1 M
  // (throughput ~ window / credit round trip); the byte window bounds memory for large items.
  streamWindow: 2048,
  streamWindowBytes: 1024 * 1024,
  streamHeartbeatMs: 100,
  streamIdleMs: 1_500,
  gracePeriodMs: 10_000,
  dev: false,
  concurrency: 1,
  mailboxCapacity: 1024,
};

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
  private readonly plane: RequestPlane;
  private readonly spawns = new Set<SpawnRecord>();
  private readonly container: DependencyContainer;
  private closing: Promise<void> | undefined;
  private requestSeq = 0;
  private readonly requestPrefix = newToken();

  /** The process side of discovery (lease, records); undefined when discovery is off. */
  private readonly registry: Registry | undefined;

  private constructor(
    private readonly transport: Transport,
    options: RuntimeOptions,
    /** The memory network of an embedded runtime; undefined on NATS. */
    readonly network: MemoryNetwork | undefined,
  ) {
    this.logger = options.logger ?? consoleLogger();
    const settings = resolveSettings(options);
    const inbox = new ReplyInbox(transport, validateInboxPrefix(options.inboxPrefix ?? '_INBOX'));
    const codec = options.codec ?? new MsgpackCodec();
    let discovery: Discovery | undefined;
    if (options.discovery !== false) {
      const d = { ...DISCOVERY_DEFAULTS, ...options.discovery };
      for (const k of ['heartbeatMs', 'leaseTtlMs', 'propertyThrottleMs', 'inhibitMs'] as const) checkPositiveInt(`discovery.${k}`, d[k], 1);
      checkPositiveInt('discovery.leaveDelayMs', d.leaveDelayMs, 0);
      if (d.replicas !== undefined && ![1, 3, 5].includes(d.replicas)) {
        throw new TroupeError('BAD_REQUEST', `discovery.replicas must be 1, 3 or 5, got ${String(d.replicas)}`);
      }
      if (d.leaseTtlMs <= d.heartbeatMs) {
        throw new TroupeError('BAD_REQUEST', `discovery.leaseTtlMs (${d.leaseTtlMs}) must exceed heartbeatMs (${d.heartbeatMs})`);
      }
      this.registry = new Registry(transport.persistence, codec, this.id, d, this.logger);
      discovery = new Discovery(transport.persistence, codec, d, this.logger, transport.status$, (mailbox, timeoutMs) =>
        transport.request(mailbox, new Uint8Array(0), { timeoutMs, headers: { [H.CTL]: Ctl.PROBE } }).then(
          (): ProbeResult => 'alive',
          (err: unknown): ProbeResult => ((err as TroupeError).code === 'NO_INSTANCES' ? 'gone' : 'silent'),
        ),
      );
    }
    this.plane = {
      transport,
      codec,
      inbox,
      settings,
      logger: this.logger,
      discovery,
      nextRequestId: () => `${this.requestPrefix}-${(++this.requestSeq).toString(36)}`,
    };
    this.container = rootContainer.createChildContainer();
    this.container.registerInstance(Runtime as unknown as Class<Runtime>, this);
    attachEvents(this.plane, this.id); // runtime-level events carry the runtime id
  }

  /**
   * Connects to NATS and returns a runtime. An unreachable server is a
   * TroupeError `UNAVAILABLE` naming the URL.
   *
   * @example
   * const runtime = await Runtime.connect({ servers: process.env.NATS_URL });
   */
  static async connect(options: RuntimeOptions = {}): Promise<Runtime> {
    resolveSettings(options); // refuse bad settings before connecting
    if (options.inboxPrefix !== undefined) validateInboxPrefix(options.inboxPrefix);
    const servers = options.servers ?? (process.env.NATS_URL || undefined);
    if (!options.transport && servers === undefined) return Runtime.embedded(options);
    const transport =
      options.transport ??
      (await NatsTransport.connect({
        ...options.nats,
        servers: servers as string | string[],
        name: options.name ?? options.nats?.name ?? 'troupe',
      }));
    const rt = new Runtime(transport, options, undefined);
    await transport.flush();
    await rt.openDiscovery();
    return rt;
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
    resolveSettings(options);
    if (options.inboxPrefix !== undefined) validateInboxPrefix(options.inboxPrefix);
    const network = options.network ?? new MemoryNetwork({ name: options.name });
    const rt = new Runtime(network.connect(options.name), options, network);
    await rt.openDiscovery();
    return rt;
  }

  /** Opens the registry buckets now, so a server without JetStream fails at connect with the fix named. */
  private async openDiscovery(): Promise<void> {
    if (!this.registry) return;
    try {
      await this.registry.open();
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
   * queue group of each endpoint. A start hook that throws fails the spawn
   * with that error (instances already started are stopped).
   *
   * @example
   * const h = await runtime.spawn(Decode, { namespace: 'llama_8b', replicas: 2, config: { model: 'x' } });
   */
  async spawn<C>(target: Class<C>, options: SpawnOptions): Promise<SpawnHandle<C>> {
    if (this.closing) throw new TroupeError('UNAVAILABLE', 'runtime is closing; cannot spawn');
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
    checkPositiveInt('concurrency', concurrency, 1);
    checkPositiveInt('mailboxCapacity', mailboxCapacity, 0);
    for (const dep of clientDependencies(target)) componentMeta(dep.target);

    const record: SpawnRecord = { instances: [] };
    this.spawns.add(record);
    try {
      for (let i = 0; i < replicas; i++) {
        const info: InstanceInfo = { instanceId: newInstanceId(), namespace, component: meta.name };
        const logger = this.logger.child({ namespace, component: meta.name, instance: info.instanceId });
        const actor = this.construct(target, info, logger, options.config);
        const instance = new ActorInstance(this.plane, meta, actor as object, info, { concurrency, mailboxCapacity }, logger);
        instance.propertySink = this.registry ? (k, v) => this.registry?.setDynamic(info.instanceId, k, v) : undefined;
        await instance.start();
        record.instances.push(instance);
        // Registered only once it serves: routable means served.
        await this.registry?.register(instance.addresses, info.instanceId, { ...options.properties });
      }
    } catch (err) {
      await Promise.all(record.instances.map((i) => this.stopInstance(i)));
      this.spawns.delete(record);
      throw err;
    }
    const byId = new Map(record.instances.map((i) => [i.info.instanceId, i]));
    let stopping: Promise<void> | undefined;
    return {
      namespace,
      component: meta.name,
      instanceIds: record.instances.map((i) => i.info.instanceId),
      instance: (id: string) => {
        const inst = byId.get(id);
        if (!inst) throw new TroupeError('NOT_FOUND', `no instance ${id} in this spawn of ${meta.name}`);
        return inst.actor as C;
      },
      stop: () =>
        (stopping ??= Promise.all(record.instances.map((i) => this.stopInstance(i))).then(() => {
          this.spawns.delete(record);
        })),
    };
  }

  /** Graceful stop of one instance: leave the registry first, then stop serving. */
  private async stopInstance(i: ActorInstance): Promise<void> {
    if (this.registry) {
      await this.registry.deregister(i.addresses, i.info.instanceId);
      // Keep serving while watchers see the record go, so clients stop routing here before it refuses.
      const delay = this.registry.settings.leaveDelayMs;
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    }
    await i.stop(this.plane.settings.gracePeriodMs);
  }

  private construct(target: Class, info: InstanceInfo, logger: Logger, config: unknown): unknown {
    const child = this.container.createChildContainer();
    child.registerInstance(CONFIG, config);
    child.registerInstance(LOGGER, logger);
    child.registerInstance(INSTANCE, info);
    child.registerInstance(PUBLISHER, instancePublisher(this.plane, info));
    for (const dep of clientDependencies(target)) {
      child.registerInstance(dep.token, typedClient(this.plane, dep.namespace ?? info.namespace, dep.target));
    }
    try {
      return child.resolve(target);
    } catch (err) {
      throw new TroupeError(
        'BAD_REQUEST',
        `cannot construct ${target.name}: ${(err as Error).message}. Constructor parameters need a class type or an explicit token (@injectConfig(), @injectLogger(), @injectInstance(), @injectClient(Other), @inject(token)); code run by esbuild/tsx has no decorator metadata, so use explicit tokens there`,
        { cause: err },
      );
    }
  }

  /**
   * Stops every instance (in-flight work finishes within the grace period),
   * then drains the connection. Never rejects; calling it twice returns the
   * same promise.
   *
   * @example
   * process.on('SIGTERM', () => void runtime.close().then(() => process.exit(0)));
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.all([...this.spawns].flatMap((s) => s.instances.map((i) => this.stopInstance(i).catch(() => undefined))));
      this.spawns.clear();
      await this.registry?.close();
      this.plane.discovery?.close();
      await closeEventStreams(this.plane); // durable consumers give back what they hold before the drain
      this.plane.inbox.stop(new TroupeError('UNAVAILABLE', 'the runtime closed before the reply arrived'));
      await this.transport.close();
    })().catch((err: unknown) => {
      this.logger.error('error while closing the runtime', { error: toTroupeError(err).message });
    });
    return this.closing;
  }

  /**
   * Closes the runtime on SIGTERM and SIGINT (deregister, finish in-flight
   * work, drain), then exits. Returns a function that removes the handlers.
   *
   * @example
   * runtime.closeOnSignals();
   */
  closeOnSignals(signals: NodeJS.Signals[] = ['SIGTERM', 'SIGINT']): () => void {
    const handler = (sig: NodeJS.Signals): void => {
      this.logger.info('closing on signal', { signal: sig });
      void this.close().then(() => process.exit(0));
    };
    for (const s of signals) process.once(s, handler);
    return () => {
      for (const s of signals) process.off(s, handler);
    };
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
      let timer: NodeJS.Timeout | undefined;
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
      timer = setTimeout(() => {
        sub.unsubscribe();
        reject(new TroupeError('UNAVAILABLE', `the registry did not answer a listing within ${timeoutMs} ms`));
      }, timeoutMs);
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
    const discovery = this.plane.discovery;
    if (!discovery) throw new TroupeError('UNAVAILABLE', 'discovery is off ({ discovery: false }): there is no registry to list');
    return discovery.listing(scope);
  }

  /** Whether the connection is up. */
  get connected(): boolean {
    return this.transport.status === TransportStatus.CONNECTED;
  }

  /** Replies awaited right now (unary calls and streams); 0 when idle. */
  get pendingReplies(): number {
    return this.plane.inbox.pending;
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
    return { ...statsOf(this.plane) };
  }
}

interface SpawnRecord {
  instances: ActorInstance[];
}

function checkPositiveInt(name: string, v: unknown, min: number): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw new TroupeError('BAD_REQUEST', `${name} must be an integer >= ${min}, got ${String(v)}`);
  }
}

function resolveSettings(options: RuntimeOptions): PlaneSettings {
  const s: PlaneSettings = {
    requestTimeoutMs: options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs,
    streamTimeoutMs: options.streamTimeoutMs ?? DEFAULTS.streamTimeoutMs,
    streamWindow: options.streamWindow ?? DEFAULTS.streamWindow,
    streamWindowBytes: options.streamWindowBytes ?? DEFAULTS.streamWindowBytes,
    streamHeartbeatMs: options.streamHeartbeatMs ?? DEFAULTS.streamHeartbeatMs,
    streamIdleMs: options.streamIdleMs ?? DEFAULTS.streamIdleMs,
    gracePeriodMs: options.gracePeriodMs ?? DEFAULTS.gracePeriodMs,
    dev: options.dev ?? DEFAULTS.dev,
    concurrency: options.concurrency ?? DEFAULTS.concurrency,
    mailboxCapacity: options.mailboxCapacity ?? DEFAULTS.mailboxCapacity,
    router: options.router ?? (options.discovery === false ? 'queue' : DEFAULTS.router),
  };
  resolveRouter(s.router);
  checkPositiveInt('requestTimeoutMs', s.requestTimeoutMs, 1);
  checkPositiveInt('streamTimeoutMs', s.streamTimeoutMs, 1);
  checkPositiveInt('streamWindow', s.streamWindow, 1);
  checkPositiveInt('streamWindowBytes', s.streamWindowBytes, 1024)
  checkPositiveInt('streamHeartbeatMs', s.streamHeartbeatMs, 10);
  checkPositiveInt('streamIdleMs', s.streamIdleMs, 1);
  if (s.streamIdleMs < 3 * s.streamHeartbeatMs) {
    // Silence is judged against heartbeats: a bound under ~3 intervals reports live workers as lost.
    throw new TroupeError('BAD_REQUEST', `streamIdleMs (${s.streamIdleMs}) must be at least 3 × streamHeartbeatMs (${s.streamHeartbeatMs})`);
  }
  checkPositiveInt('gracePeriodMs', s.gracePeriodMs, 0);
  checkPositiveInt('concurrency', s.concurrency, 1);
  checkPositiveInt('mailboxCapacity', s.mailboxCapacity, 0);
  return s;
}

/**
 * A namespace (pipeline): clients of its components.
 *
 * @example
 * const ns = runtime.namespace('llama_8b');
 * const decode = ns.client(Decode);
 */
export class NamespaceRef {
  constructor(
    private readonly plane: RequestPlane,
    readonly name: string,
  ) {}

  /** A component of this namespace by name. */
  component(name: string): ComponentRef {
    return new ComponentRef(this.plane, this.name, validateName('component', name));
  }

  /**
   * A typed client of a component class: one method per endpoint, checked
   * against the endpoint's signature.
   *
   * @example
   * await runtime.namespace('demo').client(Echo).say('hi');
   */
  client<C>(target: Class<C>, options?: TypedClientOptions): TypedClient<C> {
    return typedClient(this.plane, this.name, target, options);
  }

  /**
   * A cold Observable of events: `events('x')` is the namespace-scoped event
   * x; `events()` (or `'*'`) every event of the namespace, its own and every
   * component's. Broadcast by default; `{ group }` balanced; `{ durable,
   * start }` from the namespace's event log (see `EventsOptions`).
   *
   * @example
   * runtime.namespace('llama_8b').events(LoadMetrics).subscribe((e) => console.log(e.publisher, e.data));
   */
  events<T = unknown>(event?: EventRef<T>, options?: EventsOptions): Observable<EventEnvelope<T>> {
    return eventStream<T>(this.plane, eventTarget(this.name, undefined, event), options);
  }

  /**
   * Publishes a namespace-scoped event from outside any actor (publisher id:
   * the runtime id). Fails at once with `PAYLOAD_TOO_LARGE` or `UNAVAILABLE`.
   *
   * @example
   * runtime.namespace('llama_8b').publish('config_changed', { version: 2 });
   */
  publish<T>(event: EventToken<T>, data: NoInfer<T>): void;
  publish(event: string, data: unknown): void;
  publish(event: EventRef<unknown>, data: unknown): void {
    publishEvent(this.plane, this.name, undefined, event, data);
  }

  /**
   * Makes this namespace's events durable from now on: creates (or updates
   * the limits of) the JetStream stream `TROUPE_EV_{ns}` that stores every
   * event of the namespace, both scopes. A durable subscription creates it
   * too, with the defaults (24 h, 256 MiB).
   *
   * @example
   * await runtime.namespace('llama_8b').persistEvents({ maxAgeMs: 3_600_000 });
   */
  async persistEvents(options: EventLogOptions = {}): Promise<void> {
    await openEventLog(this.plane, this.name, options);
  }

  /**
   * Deletes this namespace's event log with its stored events and durable
   * positions; events are no longer stored until it is created again.
   *
   * @example
   * await runtime.namespace('llama_8b').deleteEventLog();
   */
  async deleteEventLog(): Promise<void> {
    await (await openEventLog(this.plane, this.name, undefined)).destroy();
  }
}

/**
 * A component of a namespace: its endpoints.
 *
 * @example
 * runtime.namespace('llama_8b').component('decode').endpoint('generate');
 */
export class ComponentRef {
  constructor(
    private readonly plane: RequestPlane,
    readonly namespace: string,
    readonly name: string,
  ) {}

  /** An endpoint of this component by name. */
  endpoint(name: string): EndpointRef {
    return new EndpointRef(this.plane, endpointAddress(this.namespace, this.name, name));
  }

  /**
   * A cold Observable of this component's events: `events('x')` one name,
   * `events()` (or `'*'`) all of them. Options as `NamespaceRef.events`.
   *
   * @example
   * runtime.namespace('llama_8b').component('backend').events(KvEvents, { group: 'indexers' }).subscribe(apply);
   */
  events<T = unknown>(event?: EventRef<T>, options?: EventsOptions): Observable<EventEnvelope<T>> {
    return eventStream<T>(this.plane, eventTarget(this.namespace, this.name, event), options);
  }

  /**
   * Publishes a component-scoped event from outside any actor (publisher id:
   * the runtime id).
   *
   * @example
   * runtime.namespace('llama_8b').component('backend').publish(KvEvents, { stored: [], removed: [1] });
   */
  publish<T>(event: EventToken<T>, data: NoInfer<T>): void;
  publish(event: string, data: unknown): void;
  publish(event: EventRef<unknown>, data: unknown): void {
    publishEvent(this.plane, this.namespace, this.name, event, data);
  }
}

/**
 * An endpoint `ns.comp.ep`: make clients of it.
 *
 * @example
 * const c = runtime.namespace('demo').component('echo').endpoint('say').client<string, string>();
 */
export class EndpointRef {
  constructor(
    private readonly plane: RequestPlane,
    readonly address: ReturnType<typeof endpointAddress>,
  ) {}

  /**
   * A client of this endpoint: routed by the runtime's default router (or
   * `options.router`), `.direct(id)` for one instance, `.where(...)` to filter
   * by properties.
   */
  client<Req = unknown, Res = unknown>(options?: ClientOptions): EndpointClient<Req, Res> {
    return new EndpointClient<Req, Res>(this.plane, this.address, undefined, options);
  }
}
