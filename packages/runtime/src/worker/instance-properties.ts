import { TroupeError } from '../errors';

/**
 * A handle to one instance's properties, for code that runs outside a
 * handler: a load reporter on a timer, a background loop started in
 * `onStart`. `set` is the same mechanism as `ctx.setProperty`: the value is
 * published in the registry in its process's property chunk (the changed
 * chunks written at most once per `propertyThrottleMs`), shows in
 * `runtime.instances()` and to routers (`Routers.leastLoaded('load')`).
 * `get` reads back what this instance set last, or its static property from
 * `spawn`. With discovery off (`{ discovery: false }`) there is no registry
 * to publish to, and `set` throws `BAD_REQUEST` saying so (not `UNAVAILABLE`:
 * that code is retryable, and no retry or other instance changes a runtime's
 * configuration). Once the instance has begun to leave the registry (it is
 * stopping), `set` still updates `get` but is no longer published: its
 * records are gone.
 *
 * @example
 * \@component('decode')
 * class Decode implements OnStart, OnStop {
 *   private timer?: NodeJS.Timeout;
 *   constructor(\@injectProperties() private readonly props: InstanceProperties) {}
 *   onStart(): void {
 *     this.timer = setInterval(() => this.props.set('load', activeSlots()), 500);
 *   }
 *   onStop(): void {
 *     clearInterval(this.timer);
 *   }
 * }
 */
export interface InstanceProperties {
  /** Sets a dynamic property (published in the registry, throttled). Throws `BAD_REQUEST` with discovery off or for a key that is not a non-empty string. */
  set(key: string, value: unknown): void;
  /** The value this instance set last for `key`, else its static property from `spawn`, else undefined. */
  get(key: string): unknown;
}

/**
 * The one implementation: the properties of one instance and where changes
 * go (the registry's dynamic properties; undefined when discovery is off).
 * Shared by `ctx.setProperty` and `@injectProperties()`. Internal.
 */
export class PropertyBoard implements InstanceProperties {
  /** What `set` changed (created at the first set: most instances never set one). */
  private changed: Record<string, unknown> | undefined;
  private left = false;
  /** The dynamic properties set so far (what `$SRV.STATS` reports as `data`). */
  get dynamic(): Readonly<Record<string, unknown>> {
    return this.changed ?? NO_PROPERTIES;
  }

  constructor(
    private readonly instanceId: string,
    /** The static properties from `spawn` (registered with the instance's records; shared by the instances of a spawn, never written). */
    readonly statics: Readonly<Record<string, unknown>>,
    /** Where a change goes: the registry's dynamic properties of `instanceId` (one function per spawn). */
    private readonly sink: ((instanceId: string, key: string, value: unknown) => void) | undefined,
  ) {}

  set(key: string, value: unknown): void {
    if (typeof key !== 'string' || key === '') {
      throw new TroupeError('BAD_REQUEST', `a property key is a non-empty string, got ${typeof key === 'string' ? '""' : typeof key}`);
    }
    if (!this.sink) {
      throw new TroupeError(
        'BAD_REQUEST',
        `cannot set property ${key} of instance ${this.instanceId}: the runtime runs with { discovery: false }, so there is no registry to publish properties to`,
      );
    }
    (this.changed ??= {})[key] = value;
    if (!this.left) this.sink(this.instanceId, key, value);
  }

  get(key: string): unknown {
    const changed = this.changed;
    return changed !== undefined && Object.hasOwn(changed, key) ? changed[key] : this.statics[key];
  }

  /** The instance is leaving the registry: later changes are kept locally only. */
  leave(): void {
    this.left = true;
  }
}

const NO_PROPERTIES: Readonly<Record<string, unknown>> = Object.freeze({});
