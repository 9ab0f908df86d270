import type { Observable } from 'rxjs';
import { type ClientOptions, EndpointClient } from './caller/client';
import { typedClient, type TypedClient, type TypedClientOptions } from './component/typed-client';
import type { Class } from './component/decorators';
import { eventStream, eventTarget, type EventsOptions } from './events/event-subscription';
import { type EventEnvelope, type EventLogOptions, type EventRef, type EventToken, openEventLog } from './events/events';
import { validateName } from './names';
import type { Plane } from './plane/plane';
import { endpointAddress } from './wire/subjects';

/**
 * A namespace (pipeline): clients of its components.
 *
 * @example
 * const ns = runtime.namespace('llama_8b');
 * const decode = ns.client(Decode);
 */
export class NamespaceRef {
  constructor(
    private readonly plane: Plane,
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
    return typedClient(this.plane, { namespace: this.name, target, options });
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
    this.plane.events.publish(this.name, undefined, event, data);
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
    private readonly plane: Plane,
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
    this.plane.events.publish(this.namespace, this.name, event, data);
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
    private readonly plane: Plane,
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
