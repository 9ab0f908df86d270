import 'reflect-metadata';
import { Observable } from 'rxjs';
import { inject, injectable } from 'tsyringe';
import { refuseStandardDecorator } from '../decorator-shape';
import type { DeclaredEndpoints } from '../endpoint-keys';
import { TroupeError } from '../errors';
import { validateName } from '../names';
import { eventHandlers } from '../events/event-handlers';

/** What `@endpoint` records about one method. */
export interface EndpointMeta {
  /** The wire name (`@endpoint('load_metrics')`), validated. */
  readonly name: string;
  /** The method's property name on the class. */
  readonly method: string;
  /** Whether the endpoint streams (async generator, `Observable` return type, or `stream: true`). */
  readonly stream: boolean;
  /** The canary check the runtime sends to idle instances (`@endpoint({ healthCheck })`), resolved. */
  readonly healthCheck?: ResolvedHealthCheck;
  /** Requests and replies are immutable (`@endpoint({ immutable: true })`): in-process calls pass them by reference. */
  readonly immutable?: boolean;
}

/**
 * A canary health check of an endpoint: the runtime sends `payload` to
 * each of its own instances when the endpoint has been idle for
 * `intervalMs`; an error or no answer within `timeoutMs` marks the instance
 * unhealthy and withdraws it from discovery until a check passes again (as
 * Dynamo's canary health checks do). A stream endpoint passes when its
 * first item (or its end) arrives in time.
 *
 * @example
 * \@endpoint({ healthCheck: { payload: { prompt: 'ping', maxTokens: 1 }, intervalMs: 5000 } })
 * async *generate(req: Req) { ... }
 */
export interface HealthCheck {
  /** The request sent (encoded by the runtime's codec like any request). */
  payload: unknown;
  /** Idle time before a check, and the period of checks while unhealthy, ms (default 5000). */
  intervalMs?: number;
  /** How long the check may take, ms (default 2000). */
  timeoutMs?: number;
}

/** A {@link HealthCheck} with defaults applied. */
export interface ResolvedHealthCheck {
  readonly payload: unknown;
  readonly intervalMs: number;
  readonly timeoutMs: number;
}

/** What `@component` records about a class. */
export interface ComponentMeta {
  readonly name: string;
  readonly endpoints: ReadonlyMap<string, EndpointMeta>;
}

/** Options of {@link endpoint}. */
export interface EndpointOptions {
  /** The wire name; defaults to the method name. */
  name?: string;
  /**
   * Whether the endpoint streams. Detected for async generator methods and
   * for methods declared to return `Observable`; set it for any other method
   * that returns an `AsyncIterable` so typed clients call it as a stream.
   */
  stream?: boolean;
  /** A canary check the runtime sends to idle instances of this endpoint. */
  healthCheck?: HealthCheck;
  /**
   * A promise that neither side changes a request or a reply once it is
   * sent (as Orleans' `[Immutable]`): a unary call from this process then
   * hands the handler the caller's request object itself, and the caller
   * the handler's reply object, instead of copies. Over the bus nothing
   * changes. The payload limit, errors and metrics stay as they are; what
   * differs (identity, prototypes, `undefined` fields) is in
   * docs/protocol.md, "In-process calls". Default false: copies.
   */
  immutable?: boolean;
}

function resolveHealthCheck(where: string, hc: HealthCheck | undefined): ResolvedHealthCheck | undefined {
  if (hc === undefined) return undefined;
  if (hc === null || typeof hc !== 'object' || !('payload' in hc)) {
    throw new TroupeError('BAD_REQUEST', `${where}: healthCheck must be { payload, intervalMs?, timeoutMs? }`);
  }
  const intervalMs = hc.intervalMs ?? 5_000;
  const timeoutMs = hc.timeoutMs ?? 2_000;
  for (const [k, v] of [
    ['intervalMs', intervalMs],
    ['timeoutMs', timeoutMs],
  ] as const) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 10)
      throw new TroupeError('BAD_REQUEST', `${where}: healthCheck.${k} must be an integer >= 10 ms, got ${String(v)}`);
  }
  return { payload: hc.payload, intervalMs, timeoutMs };
}

/**
 * What `@endpoint()` returns: a legacy method decorator. On a class that
 * declares its endpoint names (`declare readonly [Endpoints]?: 'a' | 'b'`)
 * it only compiles on a method named there.
 *
 * @example
 * const generate: EndpointDecorator = endpoint('generate');
 */
export type EndpointDecorator = <T extends object, K extends string | symbol>(
  target: T,
  propertyKey: K & DeclaredEndpoints<T>,
  descriptor: PropertyDescriptor,
) => void;

const COMPONENT = Symbol('troupe:component');
const ENDPOINTS = Symbol('troupe:endpoints');
const CLIENT_DEPS = Symbol('troupe:client-deps');

/** Any class. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Class<T = unknown> = new (...args: any[]) => T;

/**
 * Marks a class as a component: a load-balanced service of a pipeline whose
 * running copies (instances) are actors. The class becomes injectable
 * (tsyringe), so its constructor can ask for config, the runtime, a logger
 * and clients of other components.
 *
 * @example
 * \@component('decode')
 * class Decode {
 *   \@endpoint() async *generate(req: { prompt: string }) { yield 'token'; }
 * }
 */
export function component(name: string): ClassDecorator {
  const valid = validateName('component', name);
  return (target: Function, ...standard: unknown[]) => {
    refuseStandardDecorator(`@component('${valid}')`, standard[0]);
    const endpoints = ownEndpoints(target);
    Reflect.defineMetadata(COMPONENT, { name: valid, endpoints } satisfies ComponentMeta, target);
    injectable()(target as unknown as Class);
  };
}

/**
 * Marks a method as an endpoint: an addressable method of the component,
 * `{ns}.{comp}.{ep}`. The method receives the decoded request and a
 * {@link Context}; it may return a value, a Promise, an `AsyncIterable`
 * (async generator) or an `Observable`.
 *
 * @example
 * \@endpoint('load_metrics') loadMetrics() { return { active: 3 }; }
 */
export function endpoint(nameOrOptions?: string | EndpointOptions): EndpointDecorator {
  const opts: EndpointOptions = typeof nameOrOptions === 'string' ? { name: nameOrOptions } : (nameOrOptions ?? {});
  if (opts.name !== undefined) validateName('endpoint', opts.name);
  if (opts.immutable !== undefined && typeof opts.immutable !== 'boolean') {
    throw new TroupeError('BAD_REQUEST', `@endpoint: immutable must be a boolean, got ${String(opts.immutable)}`);
  }
  return (target: object, propertyKey: string | symbol, descriptor: PropertyDescriptor) => {
    refuseStandardDecorator('@endpoint()', propertyKey);
    if (typeof propertyKey !== 'string') {
      throw new TroupeError('BAD_REQUEST', `@endpoint needs a string-named method, got ${String(propertyKey)}`);
    }
    const fn = descriptor.value;
    if (typeof fn !== 'function') {
      throw new TroupeError('BAD_REQUEST', `@endpoint on ${propertyKey}: only methods can be endpoints`);
    }
    const name = validateName('endpoint', opts.name ?? propertyKey);
    const ctor = (target as { constructor: Class }).constructor;
    const list = ownEndpoints(ctor);
    const existing = list.get(name);
    if (existing) {
      throw new TroupeError(
        'BAD_REQUEST',
        `${ctor.name} declares endpoint "${name}" twice (methods ${existing.method} and ${propertyKey}); endpoint names must be unique per component`,
      );
    }
    const returnType: unknown = Reflect.getMetadata('design:returntype', target, propertyKey);
    const stream = opts.stream ?? (fn.constructor?.name === 'AsyncGeneratorFunction' || returnType === Observable);
    const healthCheck = resolveHealthCheck(`@endpoint ${ctor.name}.${propertyKey}`, opts.healthCheck);
    const meta: EndpointMeta = { name, method: propertyKey, stream, ...(healthCheck ? { healthCheck } : {}), ...(opts.immutable ? { immutable: true } : {}) };
    list.set(name, meta);
  };
}

function ownEndpoints(ctor: object): Map<string, EndpointMeta> {
  let list: Map<string, EndpointMeta> | undefined = Reflect.getOwnMetadata(ENDPOINTS, ctor);
  if (!list) {
    // Endpoints of a base class are inherited; the subclass gets its own copy.
    const inherited: Map<string, EndpointMeta> | undefined = Reflect.getMetadata(ENDPOINTS, ctor);
    list = new Map(inherited ?? []);
    Reflect.defineMetadata(ENDPOINTS, list, ctor);
  }
  return list;
}

/**
 * The component metadata of a class; throws `BAD_REQUEST` with a clear
 * message when the class is not a component or has no endpoints.
 *
 * @example
 * componentMeta(Decode).endpoints.get('generate');
 */
export function componentMeta(target: unknown): ComponentMeta {
  const name = typeof target === 'function' ? target.name || '<anonymous class>' : String(target);
  const meta: ComponentMeta | undefined = typeof target === 'function' ? Reflect.getOwnMetadata(COMPONENT, target) : undefined;
  if (!meta) {
    throw new TroupeError('BAD_REQUEST', `${name} is not a component: decorate the class with @component('name')`);
  }
  if (meta.endpoints.size === 0 && eventHandlers(target as object).length === 0) {
    throw new TroupeError('BAD_REQUEST', `component ${meta.name} (${name}) has no endpoints: decorate methods with @endpoint() (or @on() for event handlers)`);
  }
  return meta;
}

// ---- dependency injection -------------------------------------------------

/** tsyringe token of the spawn's `config`. */
export const CONFIG = Symbol.for('troupe:config');
/** tsyringe token of the instance's {@link Logger}. */
export const LOGGER = Symbol.for('troupe:logger');
/** tsyringe token of the instance's {@link InstanceInfo} (its id, namespace, component). */
export const INSTANCE = Symbol.for('troupe:instance');
/** tsyringe token of the instance's `EventPublisher`. */
export const PUBLISHER = Symbol.for('troupe:publisher');
export const METRICS = Symbol.for('troupe:metrics');
/** tsyringe token of the instance's `InstanceProperties`. */
export const PROPERTIES = Symbol.for('troupe:properties');

/**
 * Injects the `config` given to `runtime.spawn`.
 *
 * @example
 * constructor(\@injectConfig() private cfg: { model: string }) {}
 */
export function injectConfig(): ParameterDecorator {
  return inject(CONFIG) as ParameterDecorator;
}

/**
 * Injects the instance's logger (already labelled with its namespace,
 * component and instance id).
 *
 * @example
 * constructor(\@injectLogger() private log: Logger) {}
 */
export function injectLogger(): ParameterDecorator {
  return inject(LOGGER) as ParameterDecorator;
}

/**
 * Injects the instance's identity ({@link InstanceInfo}).
 *
 * @example
 * constructor(\@injectInstance() private me: InstanceInfo) {}
 */
export function injectInstance(): ParameterDecorator {
  return inject(INSTANCE) as ParameterDecorator;
}

/**
 * Injects the instance's `EventPublisher` (the one `ctx.publish` uses), for
 * publishing outside handlers: timers, background loops, `onStart`.
 *
 * @example
 * constructor(\@injectPublisher() private events: EventPublisher) {}
 */
export function injectPublisher(): ParameterDecorator {
  return inject(PUBLISHER) as ParameterDecorator;
}

/**
 * Injects the runtime's metrics (`RuntimeMetrics`): make your own counters,
 * gauges and histograms in the runtime's registry, scraped with Troupe's.
 *
 * @example
 * constructor(\@injectMetrics() metrics: RuntimeMetrics) {
 *   this.tokens = metrics.counter({ name: 'tokens_total', help: 'tokens generated' });
 * }
 */
export function injectMetrics(): ParameterDecorator {
  return inject(METRICS) as ParameterDecorator;
}

/**
 * Injects a handle to the instance's properties (`InstanceProperties`), for
 * setting dynamic properties outside handlers: a load reporter on a timer, a
 * background loop started in `onStart`. Same mechanism as `ctx.setProperty`;
 * `set` throws `BAD_REQUEST` when the runtime runs with `{ discovery: false }`.
 *
 * @example
 * constructor(\@injectProperties() private props: InstanceProperties) {}
 * onStart() { setInterval(() => this.props.set('load', this.queue.length), 500); }
 */
export function injectProperties(): ParameterDecorator {
  return inject(PROPERTIES) as ParameterDecorator;
}

/** One client dependency declared with {@link injectClient}. */
export interface ClientDependency {
  readonly token: string;
  /** The constructor parameter it is injected into. */
  readonly index: number;
  /** The parameter's type as the compiler emitted it (read before tsyringe overwrites it with tokens). */
  readonly declared: unknown;
  readonly target: Class;
  readonly namespace: string | undefined;
}

/**
 * Injects a typed client of another component (see `TypedClient`). The
 * namespace defaults to the namespace the instance is spawned in.
 *
 * @example
 * constructor(\@injectClient(Prefill) private prefill: TypedClient<Prefill>) {}
 */
export function injectClient(target: Class, options: { namespace?: string } = {}): ParameterDecorator {
  const ns = options.namespace === undefined ? undefined : validateName('namespace', options.namespace);
  return (owner, propertyKey, index) => {
    if (propertyKey !== undefined) {
      throw new TroupeError('BAD_REQUEST', '@injectClient is for constructor parameters only');
    }
    // The target's metadata may not exist yet (classes declared later in a
    // module); it is checked at spawn.
    const token = `troupe:client:${ns ?? '.'}:${target.name}:${index}`;
    const deps: ClientDependency[] = Reflect.getOwnMetadata(CLIENT_DEPS, owner) ?? [];
    // `design:paramtypes` is already there (TypeScript applies it first) and tsyringe's
    // @injectable later overwrites injected positions with their tokens: read it now.
    const declared: unknown = (Reflect.getOwnMetadata('design:paramtypes', owner) as unknown[] | undefined)?.[index];
    deps.push({ token, index, target, namespace: ns, declared });
    Reflect.defineMetadata(CLIENT_DEPS, deps, owner);
    inject(token)(owner, propertyKey, index);
  };
}

/** The client dependencies a class declared with {@link injectClient}. */
export function clientDependencies(target: Class): readonly ClientDependency[] {
  return Reflect.getOwnMetadata(CLIENT_DEPS, target) ?? [];
}

/** Who an instance is: given to its constructor and to every handler's context. */
export interface InstanceInfo {
  readonly instanceId: string;
  readonly namespace: string;
  readonly component: string;
}

// ---- constructor checks ---------------------------------------------------

/** tsyringe's metadata key of explicit `@inject(token)` parameters (tsyringe/dist/cjs/reflection-helpers.js). */
const TSYRINGE_TOKENS = 'injectionTokens';

/** Emitted parameter types that say nothing DI can use (no class to construct). */
const OPAQUE: ReadonlyMap<unknown, string> = new Map<unknown, string>([
  [Object, 'an interface, a type alias or a union (emitted as Object)'],
  [Function, 'a type-only import or a function type (emitted as Function)'],
  [String, 'string'],
  [Number, 'number'],
  [Boolean, 'boolean'],
  [Symbol, 'symbol'],
  [BigInt, 'bigint'],
  [Array, 'an array'],
  [Promise, 'a Promise'],
]);

/**
 * Checks, before anything is constructed, that DI can build `target`: every
 * constructor parameter has an explicit token or a class type the compiler
 * emitted (`design:paramtypes`), and each `@injectClient(X)` parameter is not
 * typed as a class (a component class where a `TypedClient<X>` is injected).
 * Throws `BAD_REQUEST` naming the parameter and the fix, instead of
 * tsyringe's `TypeInfo not known for "Function"` at construction.
 *
 * `TypedClient<X>` is a type, emitted as `Object`, so which component the
 * parameter expects is invisible at run time; the typed client answers a
 * method of another class with a `NOT_FOUND` naming the likely mix-up.
 */
export function checkConstructor(target: Class): void {
  const types: unknown[] | undefined = Reflect.getMetadata('design:paramtypes', target);
  const tokens: Record<number, unknown> = Reflect.getOwnMetadata(TSYRINGE_TOKENS, target) ?? {};
  const clients = new Map(clientDependencies(target).map((d) => [d.index, d]));
  const count = Math.max(target.length, types?.length ?? 0);
  const names = parameterNames(target);
  const param = (i: number): string => `parameter ${i}${names[i] ? ` (${names[i]})` : ''} of ${target.name}'s constructor`;
  for (let i = 0; i < count; i++) {
    const client = clients.get(i);
    const type = types?.[i];
    if (client) {
      const declared = client.declared;
      if (typeof declared === 'function' && !OPAQUE.has(declared)) {
        throw new TroupeError(
          'BAD_REQUEST',
          `${param(i)} is typed ${declared.name}, but @injectClient(${client.target.name}) injects a client: type it TypedClient<${client.target.name}>`,
        );
      }
      continue;
    }
    if (tokens[i] !== undefined) continue;
    if (!types) {
      throw new TroupeError(
        'BAD_REQUEST',
        `cannot construct ${target.name}: its constructor takes parameters but the class has no decorator metadata. ` +
          'Set "emitDecoratorMetadata": true (with "experimentalDecorators": true) in tsconfig.json; code built by esbuild/tsx has no metadata, so give every parameter an explicit token there ' +
          '(@injectConfig(), @injectLogger(), @injectInstance(), @injectClient(Other), @inject(token))',
      );
    }
    const what = type === undefined ? 'a type the compiler emitted no value for' : OPAQUE.get(type);
    if (what !== undefined) {
      const fix =
        type === Function
          ? `import the class as a value (\`import { Runtime }\`, not \`import type\`) or give the parameter an explicit token with @inject(token)`
          : 'give it an explicit token: @injectConfig() for the spawn config, @injectLogger(), @injectInstance(), @injectClient(Other) for a TypedClient, @inject(token) for your own';
      throw new TroupeError('BAD_REQUEST', `cannot construct ${target.name}: ${param(i)} is typed ${what}, which DI cannot resolve; ${fix}`);
    }
  }
}

/** Constructor parameter names read from the class source, best effort (for messages only). */
function parameterNames(target: Class): string[] {
  const m = /constructor\s*\(([^)]*)\)/.exec(Function.prototype.toString.call(target));
  if (!m?.[1]) return [];
  return m[1].split(',').map((p) => /^\s*([A-Za-z_$][\w$]*)/.exec(p)?.[1] ?? '');
}
