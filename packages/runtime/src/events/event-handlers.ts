import 'reflect-metadata';
import type { InstanceInfo } from '../component/decorators';
import { refuseStandardDecorator } from '../decorator-shape';
import { TroupeError } from '../errors';
import { EventSubscription, eventTarget, planEvents, type EventPlan } from './event-subscription';
import type { EventEnvelope, EventRef } from './events';
import type { Logger } from '../logger';
import type { Mailbox } from '../worker/mailbox';
import { validateName } from '../names';
import type { Plane } from '../plane/plane';

/** Options of {@link on}. */
export interface OnOptions {
  /**
   * The publishing component: its component-scoped events. Omitted: the
   * namespace-scoped event (`ctx.publish(name, data, { scope: 'namespace' })`).
   */
  component?: string;
  /** The namespace to listen in (default: the instance's). */
  namespace?: string;
  /** Balanced: instances sharing the group (e.g. the replicas of this component) get each event once between them. */
  group?: string;
  /** Durable: the position is kept under this name; replicas sharing it share the events (pass `gaps: false` then). Acked once the handler finished. */
  durable?: string;
  /** Where a new durable (or a replay) starts; see `EventsOptions.start`. */
  start?: 'all' | 'new' | Date;
  /** Report gaps (default true, false with `group`). */
  gaps?: boolean;
  /**
   * Durable only: the ack wait of the durable when this creates it, ms
   * (default 30 000). A handler that runs longer is not redelivered: its
   * event is kept in progress until the handler finishes.
   */
  ackWaitMs?: number;
}

/** One `@on` declaration. */
interface HandlerMeta {
  readonly method: string;
  readonly event: EventRef<unknown>;
  readonly options: OnOptions;
}

const HANDLERS = Symbol('troupe:event-handlers');

/** A method that can handle events of type T. */
type EventMethod<T> = (data: T, envelope: EventEnvelope<T>) => unknown;

/**
 * Declares an event handler on a component class: each instance subscribes
 * when it spawns (before the spawn resolves) and unsubscribes when it
 * stops. Handlers run in the instance's mailbox like requests, so with
 * concurrency 1 they never interleave with endpoint handlers; a live event
 * that finds the mailbox full is dropped (logged; the next event reports
 * the gap), a durable one comes back later. `'*'` takes every event of the
 * component (or, without `component`, of the namespace).
 *
 * @example
 * \@component('router')
 * class Router {
 *   \@on(KvEvents, { component: 'backend' })
 *   onKv(ev: KvEvent, env: EventEnvelope<KvEvent>) { this.index.apply(env.publisher, ev); }
 *   \@endpoint() route(req: Req) { ... }
 * }
 */
// By name the payload type is the method's own (`any`); a token checks the method against it.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function on<T = any>(
  event: EventRef<T>,
  options: OnOptions = {},
): <M extends EventMethod<T>>(target: object, propertyKey: string | symbol, descriptor: TypedPropertyDescriptor<M>) => void {
  // Checked at declaration time: a bad name fails where it is written.
  planEvents(eventTarget(options.namespace ?? 'x', options.component, event), options);
  return (target, propertyKey, descriptor) => {
    refuseStandardDecorator('@on()', propertyKey);
    if (typeof propertyKey !== 'string' || typeof descriptor.value !== 'function') {
      throw new TroupeError('BAD_REQUEST', `@on decorates string-named methods, not ${String(propertyKey)}`);
    }
    const ctor = (target as { constructor: object }).constructor;
    const own: HandlerMeta[] = Reflect.getOwnMetadata(HANDLERS, ctor) ?? [...(Reflect.getMetadata(HANDLERS, ctor) ?? [])];
    own.push({ method: propertyKey, event: event as EventRef<unknown>, options: { ...options } });
    Reflect.defineMetadata(HANDLERS, own, ctor);
  };
}

/** The `@on` declarations of a class (its own and inherited). */
export function eventHandlers(target: object): readonly HandlerMeta[] {
  return Reflect.getMetadata(HANDLERS, target) ?? [];
}

/** What a running instance lends its event handlers. */
export interface HandlerHost {
  readonly plane: Plane;
  readonly actor: object;
  readonly info: InstanceInfo;
  readonly logger: Logger;
  readonly mailbox: Mailbox;
  /** True once the instance gave up on queued work (grace period over): queued events are skipped. */
  refused(): boolean;
}

/** The running subscriptions of one instance's `@on` handlers. */
export interface EventHandlers {
  /** Unsubscribes; live events already received still go to the mailbox. Never rejects. */
  stop(): Promise<void>;
}

/**
 * Subscribes every `@on` handler of the instance's class and resolves once
 * the bus has them all; undefined when the class declares none. On failure
 * nothing stays subscribed.
 */
export async function startEventHandlers(host: HandlerHost): Promise<EventHandlers | undefined> {
  const decls = eventHandlers(host.actor.constructor);
  if (decls.length === 0) return undefined;
  const subs: EventSubscription[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(subs.map((s) => s.stop(true)));
  };
  try {
    for (const d of decls) {
      const fn = (host.actor as Record<string, unknown>)[d.method];
      if (typeof fn !== 'function') throw new TroupeError('INTERNAL', `${d.method} is not a function on the instance`);
      const namespace = d.options.namespace === undefined ? host.info.namespace : validateName('namespace', d.options.namespace);
      const plan: EventPlan = planEvents(eventTarget(namespace, d.options.component, d.event), d.options);
      const logger = host.logger.child({ handler: d.method });
      subs.push(
        new EventSubscription(host.plane, plan, {
          sink: (env) => deliver(host, fn as EventMethod<unknown>, env, logger),
          onError: (err) => logger.error('event handler subscription ended', { code: err.code, error: err.message }),
          logger,
        }),
      );
    }
    await Promise.all(subs.map((s) => s.ready));
  } catch (err) {
    await stop();
    throw err;
  }
  return { stop };
}

/**
 * Runs one event through the mailbox: false when it has no room, else a
 * promise that settles when the handler finished (false if the instance
 * gave up on queued work before it ran, so a durable event comes back).
 */
function deliver(host: HandlerHost, fn: EventMethod<unknown>, env: EventEnvelope<unknown>, logger: Logger): boolean | Promise<boolean> {
  let done!: (handled: boolean) => void;
  const finished = new Promise<boolean>((resolve) => (done = resolve));
  const accepted = host.mailbox.offer(async () => {
    if (host.refused()) return done(false);
    try {
      await fn.call(host.actor, env.data, env);
    } catch (err) {
      logger.error('event handler threw', { event: env.event, publisher: env.publisher, seq: env.seq, error: (err as Error)?.message ?? String(err) });
    }
    done(true);
  });
  return accepted ? finished : false;
}
