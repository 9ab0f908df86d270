import { TroupeError } from '../errors';
import type { InstanceRecord } from './registry';

/** What a router may know beyond the instance list: per-instance in-flight counts, a shared counter. */
export interface RouterContext {
  /** Requests this process has in flight to the instance. */
  inflight(instanceId: string): number;
  /** A counter shared by every client of the endpoint in this process (round-robin). */
  next(): number;
}

/**
 * Picks an instance for a request. `pick` gets the routable instances
 * (registered, lease alive, not inhibited, matching the client's filter) and
 * returns one id, or undefined for "none".
 *
 * @example
 * const byModel: Router = { name: 'by-model', pick: (xs, req) => xs.find((x) => x.properties.model === req.model)?.instanceId };
 */
export interface Router {
  readonly name: string;
  pick(instances: readonly InstanceRecord[], request: unknown, ctx: RouterContext): string | undefined;
}

/** A custom routing function: the hook for KV-cache-aware routing; it can read properties. */
export type RouteFunction = (instances: readonly InstanceRecord[], request: unknown) => string | undefined;

/** Names of the built-in routers, or a router, or a function. `queue` leaves balancing to the NATS server. */
export type RouterSpec = 'queue' | 'round-robin' | 'random' | 'least-loaded' | 'power-of-two' | Router | RouteFunction;

/**
 * The built-in routers.
 *
 * @example
 * client.call(req, { router: Routers.hash((r: { session: string }) => r.session) });
 */
export const Routers = {
  /** Each instance in turn: exactly even over a stable list. */
  roundRobin(): Router {
    return {
      name: 'round-robin',
      pick: (xs, _req, ctx) => (xs.length === 0 ? undefined : xs[ctx.next() % xs.length]?.instanceId),
    };
  },
  /** Uniformly at random. */
  random(): Router {
    return { name: 'random', pick: (xs) => xs[Math.floor(Math.random() * xs.length)]?.instanceId };
  },
  /**
   * Fewest requests in flight from this process, plus the instance's
   * `property` (e.g. `active_slots`) when it publishes one; ties broken at
   * random.
   */
  leastLoaded(property?: string): Router {
    return {
      name: 'least-loaded',
      pick: (xs, _req, ctx) => {
        let best: string[] = [];
        let bestLoad = Infinity;
        for (const x of xs) {
          const prop = property === undefined ? 0 : Number(x.properties[property] ?? 0);
          const load = ctx.inflight(x.instanceId) + (Number.isFinite(prop) ? prop : 0);
          if (load < bestLoad) {
            bestLoad = load;
            best = [x.instanceId];
          } else if (load === bestLoad) best.push(x.instanceId);
        }
        return best[Math.floor(Math.random() * best.length)];
      },
    };
  },
  /** Two random choices, the less loaded of them (in-flight counts). */
  powerOfTwo(): Router {
    return {
      name: 'power-of-two',
      pick: (xs, _req, ctx) => {
        if (xs.length <= 1) return xs[0]?.instanceId;
        const i = Math.floor(Math.random() * xs.length);
        let j = Math.floor(Math.random() * (xs.length - 1));
        if (j >= i) j++;
        const a = xs[i] as InstanceRecord;
        const b = xs[j] as InstanceRecord;
        return ctx.inflight(a.instanceId) <= ctx.inflight(b.instanceId) ? a.instanceId : b.instanceId;
      },
    };
  },
  /**
   * Stable affinity by rendezvous (highest-random-weight) hashing: the same
   * key goes to the same instance while it lives, and when instances come or
   * go only the keys of those instances move.
   */
  hash<Req = unknown>(key: (request: Req) => string | number): Router {
    return {
      name: 'hash',
      pick: (xs, req) => {
        const k = String(key(req as Req));
        let best: string | undefined;
        let bestScore = -1;
        for (const x of xs) {
          const score = hash32(`${k}\u0000${x.instanceId}`);
          if (score > bestScore || (score === bestScore && best !== undefined && x.instanceId < best)) {
            bestScore = score;
            best = x.instanceId;
          }
        }
        return best;
      },
    };
  },
  /** Always one instance (no fallback). */
  direct(instanceId: string): Router {
    return { name: 'direct', pick: (xs) => xs.find((x) => x.instanceId === instanceId)?.instanceId };
  },
  /** A function of the instances (with their properties) and the request. */
  custom(fn: RouteFunction): Router {
    return { name: 'custom', pick: (xs, req) => fn(xs, req) };
  },
} as const;

/** Resolves a {@link RouterSpec} to a router, or `'queue'`. */
export function resolveRouter(spec: RouterSpec): Router | 'queue' {
  if (typeof spec === 'function') return Routers.custom(spec);
  if (typeof spec === 'object' && spec !== null && typeof spec.pick === 'function') return spec;
  switch (spec) {
    case 'queue':
      return 'queue';
    case 'round-robin':
      return Routers.roundRobin();
    case 'random':
      return Routers.random();
    case 'least-loaded':
      return Routers.leastLoaded();
    case 'power-of-two':
      return Routers.powerOfTwo();
    default:
      throw new TroupeError(
        'BAD_REQUEST',
        `unknown router ${JSON.stringify(spec)}: use queue, round-robin, random, least-loaded, power-of-two, a Router or a function`,
      );
  }
}

/** MurmurHash3's 32-bit finaliser over FNV-1a: fast and well mixed for short strings. */
function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
