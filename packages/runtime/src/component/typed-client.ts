import type { Observable } from 'rxjs';
import { EndpointClient, type ClientOptions } from '../caller/client';
import type { CallOptions, StreamOptions } from '../caller/call-options';
import type { StreamObservable } from '../caller/stream-iterator';
import type { Endpoints } from '../endpoint-keys';
import { TroupeError } from '../errors';
import type { Plane } from '../plane/plane';
import { endpointAddress } from '../wire/subjects';
import { type Class, componentMeta } from './decorators';

// ---- typed clients --------------------------------------------------------

type AnyFn = (...args: never[]) => unknown;
type RequestOf<F> = F extends (req: infer R, ...rest: never[]) => unknown ? R : never;
type ItemOf<R> = R extends AsyncIterable<infer T> ? T : R extends Observable<infer T> ? T : never;

/** The client-side signature of one endpoint method. */
export type ClientMethod<F> = F extends AnyFn
  ? [ItemOf<ReturnType<F>>] extends [never]
    ? (request: RequestOf<F>, options?: CallOptions) => Promise<Awaited<ReturnType<F>>>
    : (request: RequestOf<F>, options?: StreamOptions<RequestOf<F>, ItemOf<ReturnType<F>>>) => StreamObservable<ItemOf<ReturnType<F>>>
  : never;

type Lifecycle = 'onStart' | 'onStop';

/** The public, non-lifecycle methods of `C`. */
type PublicMethods<C> = { [K in keyof C]: K extends Lifecycle ? never : C[K] extends AnyFn ? K : never }[keyof C];

/** The methods a typed client of `C` has: those `C` declares under `[Endpoints]`, else every public method. */
type ClientKeys<C> = C extends { readonly [Endpoints]?: infer E } ? (unknown extends E ? PublicMethods<C> : Extract<E, PublicMethods<C>>) : PublicMethods<C>;

/**
 * A client derived from a component class: one method per endpoint, typed
 * from the endpoint's signature (streaming endpoints return an Observable,
 * unary ones a Promise).
 *
 * Which methods: legacy decorators cannot change a class's type, so the
 * compiler cannot see which methods carry `@endpoint`. The type keeps the
 * class's *public* methods (make helpers `private`, `protected` or `#x` and
 * they are gone), or exactly the names the class declares under
 * `[Endpoints]` (see {@link Endpoints}). At run time only endpoints exist:
 * calling any other method name throws `NOT_FOUND` at once, naming the
 * component's endpoints.
 *
 * @example
 * const decode = runtime.namespace('llama_8b').client(Decode);
 * decode.generate({ prompt: 'hi' }).subscribe(console.log); // type-checked
 */
export type TypedClient<C> = {
  readonly [K in ClientKeys<C> & keyof C]: ClientMethod<C[K]>;
};

/** Options of a typed client: a client's options, or one instance. */
export interface TypedClientOptions extends ClientOptions {
  /** Pin every call to one instance (its mailbox). */
  instance?: string;
}

/** Builds a {@link TypedClient} of `target` in `namespace`. */
export function typedClient<C>(plane: Plane, spec: { namespace: string; target: Class<C>; options?: TypedClientOptions }): TypedClient<C> {
  const { namespace, target, options = {} } = spec;
  const meta = componentMeta(target);
  const names = [...meta.endpoints.values()].map((ep) => ep.method);
  const notEndpoint = (key: string, why: string) => (): never => {
    throw new TroupeError(
      'NOT_FOUND',
      `${key} is not an endpoint of component ${meta.name} (class ${target.name}): ${why}; its endpoints are ${names.join(', ')}`,
      { data: { method: key, endpoints: names } },
    );
  };
  // Names that are not endpoints fall through the object to a prototype that answers NOT_FOUND,
  // so endpoint calls never pass a Proxy trap.
  const out: Record<string, unknown> = Object.create(missingMethods(target, notEndpoint));
  for (const key of classMethods(target)) {
    if (!names.includes(key)) out[key] = notEndpoint(key, 'a public method without @endpoint is not callable remotely (decorate it, or make it private)');
  }
  for (const ep of meta.endpoints.values()) {
    const { instance, ...clientOptions } = options;
    let client = new EndpointClient(
      plane,
      endpointAddress(namespace, meta.name, ep.name),
      undefined,
      instance === undefined ? clientOptions : { ...clientOptions, router: 'queue' },
    );
    if (instance !== undefined) client = client.direct(instance);
    out[ep.method] = ep.stream ? (req: unknown, o?: StreamOptions) => client.stream(req, o) : (req: unknown, o?: CallOptions) => client.call(req, o);
  }
  return Object.freeze(out) as TypedClient<C>;
}

/** Probed by `await`, JSON, inspection and test matchers: never answered with a stub. */
const PROBED = new Set(['then', 'toJSON', 'inspect', 'asymmetricMatch', 'nodeType', 'constructor']);

/**
 * The prototype of a typed client: any other string name is a method of
 * another class, most likely a client injected for the wrong component
 * (`@injectClient(A) x: TypedClient<B>`, which no compiler can catch).
 */
function missingMethods(target: Class, notEndpoint: (key: string, why: string) => () => never): object {
  return new Proxy(Object.create(Object.prototype) as object, {
    get(base, key, receiver) {
      if (typeof key === 'symbol' || PROBED.has(key) || key in base) return Reflect.get(base, key, receiver);
      return notEndpoint(
        key,
        `${target.name} has no such method. If this client was injected, check that @injectClient(${target.name}) sits on a parameter typed TypedClient<${target.name}>`,
      );
    },
  });
}

/** Method names of a class and its bases (not Object's). */
function classMethods(target: Class): string[] {
  const out = new Set<string>();
  for (let p = target.prototype as object | null; p && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) {
    for (const key of Object.getOwnPropertyNames(p)) {
      if (key !== 'constructor' && typeof Object.getOwnPropertyDescriptor(p, key)?.value === 'function') out.add(key);
    }
  }
  return [...out];
}
