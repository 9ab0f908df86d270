import type { InstanceInfo } from '../component/decorators';
import { TroupeError } from '../errors';
import { validateName } from '../names';
import type { Plane } from '../plane/plane';
import { H } from '../wire/protocol';
import { EventHeader } from './event-header';
import { Slabs } from '../codec/slab';
import { componentEventSubject, eventLogName, eventLogSubjects, namespaceEventSubject } from '../wire/subjects';
import type { MessageLog } from '../transport/transport';

/**
 * Where an event is published: to its namespace (`{ns}._ev.{event}`) or to
 * its component (`{ns}.{comp}._ev.{event}`).
 *
 * @example
 * ctx.publish('load', { active: 3 }, { scope: EventScope.NAMESPACE });
 */
export const EventScope = {
  NAMESPACE: 'namespace',
  COMPONENT: 'component',
} as const;
export type EventScope = (typeof EventScope)[keyof typeof EventScope];

/**
 * One event as a subscriber receives it. `seq` counts the events one
 * publisher published under one name and scope, from 1, so a subscriber that
 * sees 7 after 4 knows it missed two: `gap` says so (broadcast and unshared
 * durable subscriptions; see {@link EventsOptions.gaps}).
 *
 * @example
 * ns.component('backend').events(KvEvents).subscribe((e) => {
 *   if (e.gap) resync(e.publisher);
 *   apply(e.publisher, e.data);
 * });
 */
export interface EventEnvelope<T = unknown> {
  /** The event's name. */
  readonly event: string;
  readonly scope: EventScope;
  readonly namespace: string;
  /** The publishing component, for component-scoped events. */
  readonly component: string | undefined;
  /** The instance id of the publisher, or the runtime id for a runtime-level publish ('' for a foreign publisher). */
  readonly publisher: string;
  /** The publisher's sequence number for this event name and scope, from 1 (0 when a foreign publisher sent none). */
  readonly seq: number;
  /** When it was published, epoch ms on the publisher's clock. */
  readonly timestamp: number;
  readonly data: T;
  /** How many events of this publisher (name and scope) this subscriber missed just before this one; absent when none. */
  readonly gap?: number;
}

/**
 * A typed event name, made by {@link defineEvent}: publishers and
 * subscribers that share it agree on the payload type.
 */
export interface EventToken<T> {
  readonly name: string;
  /** Type-level only: ties the token to its payload type (never set). */
  readonly __payload?: T;
}

/** An event given by name or by token. */
export type EventRef<T = unknown> = EventToken<T> | string;

/**
 * Declares a typed event: one name, one payload type, checked wherever the
 * token is used to publish or subscribe.
 *
 * @example
 * const KvEvents = defineEvent<{ stored: number[]; removed: number[] }>('kv_events');
 * ctx.publish(KvEvents, { stored: [1], removed: [] });       // checked
 * runtime.namespace('llama_8b').component('backend').events(KvEvents); // Observable<EventEnvelope<...>>
 */
export function defineEvent<T>(name: string): EventToken<T> {
  return Object.freeze({ name: validateName('event', name) });
}

/** The name behind an {@link EventRef}, validated. */
export function eventName(event: EventRef<unknown>): string {
  const name = typeof event === 'string' ? event : (event as EventToken<unknown> | undefined)?.name;
  return validateName('event', name);
}

/** Options of an instance's publish. */
export interface PublishEventOptions {
  /** `component` (default): `{ns}.{comp}._ev.{event}`; `namespace`: `{ns}._ev.{event}`. */
  scope?: EventScope;
}

/**
 * Publishes events on behalf of one instance: `ctx.publish` in handlers,
 * or inject it with `@injectPublisher()` for code outside handlers (timers,
 * background loops). Publishing is fire-and-forget on the bus (core NATS,
 * at most once unless the namespace's events are durable) and fails at once
 * with a TroupeError: `PAYLOAD_TOO_LARGE`, `UNAVAILABLE` while disconnected,
 * `BAD_REQUEST` for a bad name or a payload the codec cannot carry.
 *
 * @example
 * constructor(\@injectPublisher() private readonly events: EventPublisher) {
 *   setInterval(() => this.events.publish('load_metrics', { active: this.active }), 1000);
 * }
 */
export interface EventPublisher {
  /** The id stamped on every event: the instance id. */
  readonly id: string;
  publish<T>(event: EventToken<T>, data: NoInfer<T>, options?: PublishEventOptions): void;
  publish(event: string, data: unknown, options?: PublishEventOptions): void;
}

/**
 * The NATS header names of Troupe's event metadata, for publishers written
 * in other languages (a Rust worker can publish events Troupe subscribers
 * understand: msgpack body, subject `{ns}.{comp}._ev.{event}`, and either
 * the one packed header `EVENT` — `{publisher} {seq} {time}`, what Troupe
 * sends — or the three headers `PUBLISHER`, `SEQ`, `TIME`).
 *
 * @example
 * // what any NATS client sends for seq 7 of publisher 9f3c0a7e12b4d8e1:
 * // subject llama_8b.backend._ev.kv_events, body msgpack(data), headers
 * // { [EVENT_HEADERS.EVENT]: `9f3c0a7e12b4d8e1 7 ${Date.now()}` }
 * // or { [EVENT_HEADERS.PUBLISHER]: '9f3c0a7e12b4d8e1', [EVENT_HEADERS.SEQ]: '7', [EVENT_HEADERS.TIME]: String(Date.now()) }
 */
export const EVENT_HEADERS = {
  EVENT: H.EVENT,
  PUBLISHER: H.PUBLISHER,
  SEQ: H.EVENT_SEQ,
  TIME: H.TIME,
} as const;

/** Limits of a namespace's event log. */
export interface EventLogOptions {
  /** Events older than this are discarded, ms (default 24 h). */
  maxAgeMs?: number;
  /** The oldest events are discarded past this size, bytes (default 256 MiB). */
  maxBytes?: number;
}

/** Limits a log gets when a durable subscription creates it. */
export const DEFAULT_EVENT_LOG: Required<EventLogOptions> = {
  maxAgeMs: 24 * 60 * 60 * 1000,
  maxBytes: 256 * 1024 * 1024,
};

/** One subject a publisher sends to, and the sequence number of the last event it sent there. */
interface SubjectSeq {
  readonly subject: string;
  seq: number;
}

/** Stamps events with a publisher id and a sequence number per subject, and sends them. */
export class SequencedPublisher {
  /**
   * Created at the first event (an instance that never publishes, most of
   * 100,000, holds none): the sequence of each subject (never evicted: a
   * sequence never restarts) and the `Troupe-Event` line, encoded up to the
   * publisher id, so only the numbers are written per event.
   */
  private sending: { seqs: Map<string, SubjectSeq>; options: { headerBlock: EventHeader } } | undefined;

  constructor(
    private readonly plane: Plane,
    readonly id: string,
    /** Where event bodies are copied (shared by the runtime's publishers): see {@link send}. */
    private readonly bodies: Slabs,
  ) {}

  /** The sequence of one subject (created at its first event). */
  slot(subject: string): SubjectSeq {
    const { seqs } = (this.sending ??= { seqs: new Map(), options: { headerBlock: new EventHeader(this.id) } });
    let slot = seqs.get(subject);
    if (slot === undefined) {
      slot = { subject, seq: 0 };
      seqs.set(subject, slot);
    }
    return slot;
  }

  /** Sends one event to the subject of `slot` (from {@link slot}) as its next in sequence. */
  send(slot: SubjectSeq, data: unknown): void {
    // Encoded into the codec's shared buffer and copied into a slab: an event body of its own
    // (the transport holds it until the socket write) without an ArrayBuffer per event, which
    // costs a backing store above V8's 64-byte on-heap limit (≈ 0.3 µs per event measured).
    const codec = this.plane.codec;
    const body = codec.encodeShared ? this.bodies.copy(codec.encodeShared(data)) : codec.encode(data);
    const seq = slot.seq + 1;
    // One header, not three: the subscriber parses (and NATS carries) one line per event.
    const options = (this.sending as NonNullable<SequencedPublisher['sending']>).options;
    options.headerBlock.stamp(seq, Date.now());
    this.plane.transport.publish(slot.subject, body, options);
    // Counted only once sent: a refused publish (too large, disconnected) is no gap.
    slot.seq = seq;
    this.plane.meter.eventsPublished++;
  }
}

/**
 * The subject (and sequence) of each event a publisher sends in one
 * namespace, by event reference (the name string or the token itself, so a
 * publish looks up what it was given without building a key).
 */
class SubjectCache {
  /** Created at the first event: by component ('' for the namespace scope), then by event reference; and the last lookup (a publisher mostly repeats one event). */
  private cache:
    | {
        scopes: Map<string, Map<EventRef<unknown>, SubjectSeq>>;
        component: string | undefined;
        event: EventRef<unknown> | undefined;
        slot: SubjectSeq | undefined;
      }
    | undefined;

  constructor(
    private readonly publisher: SequencedPublisher,
    private readonly ns: string,
  ) {}

  get(component: string | undefined, event: EventRef<unknown>): SubjectSeq {
    const cache = (this.cache ??= { scopes: new Map(), component: undefined, event: undefined, slot: undefined });
    if (cache.slot !== undefined && event === cache.event && component === cache.component) return cache.slot;
    const scopes = cache.scopes;
    let map = scopes.get(component ?? '');
    if (map === undefined) {
      if (scopes.size >= 1024) scopes.clear();
      map = new Map<EventRef<unknown>, SubjectSeq>();
      scopes.set(component ?? '', map);
    }
    let slot = map.get(event);
    if (slot === undefined) {
      const name = eventName(event);
      slot = this.publisher.slot(component === undefined ? namespaceEventSubject(this.ns, name) : componentEventSubject(this.ns, component, name));
      // Bounded: a publisher naming endless distinct events forgets the lookups (never the sequences).
      if (map.size >= 1024) map.clear();
      map.set(event, slot);
    }
    cache.component = component;
    cache.event = event;
    cache.slot = slot;
    return slot;
  }
}

class InstancePublisher implements EventPublisher {
  private readonly subjects: SubjectCache;

  constructor(
    private readonly core: SequencedPublisher,
    private readonly info: InstanceInfo,
  ) {
    this.subjects = new SubjectCache(core, info.namespace);
  }

  get id(): string {
    return this.core.id;
  }

  publish(event: EventRef<unknown>, data: unknown, options?: PublishEventOptions): void {
    const scope = options?.scope ?? EventScope.COMPONENT;
    let component: string | undefined;
    switch (scope) {
      case EventScope.COMPONENT:
        component = this.info.component;
        break;
      case EventScope.NAMESPACE:
        component = undefined;
        break;
      default: {
        const never: never = scope;
        throw new TroupeError('BAD_REQUEST', `unknown event scope ${JSON.stringify(never)}: 'component' or 'namespace'`);
      }
    }
    this.core.send(this.subjects.get(component, event), data);
  }
}

/**
 * What the events of one runtime share: its runtime-level publisher (events
 * published outside any actor carry the runtime id) and one publisher per
 * live instance, so `ctx.publish` and `@injectPublisher()` share one
 * sequence per subject. A field of the runtime's plane.
 */
export class RuntimeEvents {
  private readonly publisher: SequencedPublisher;
  private readonly subjects = new Map<string, SubjectCache>();
  private readonly instances = new Map<string, InstancePublisher>();

  /** Event bodies of every publisher of the runtime (one slab in use, not one per publisher). */
  private readonly bodies = new Slabs();

  constructor(plane: Plane, runtimeId: string) {
    this.publisher = new SequencedPublisher(plane, runtimeId, this.bodies);
    this.plane = plane;
  }

  private readonly plane: Plane;

  /** The publisher of one instance (created on first use, dropped by {@link release}). */
  publisherOf(info: InstanceInfo): EventPublisher {
    let p = this.instances.get(info.instanceId);
    if (p === undefined) {
      p = new InstancePublisher(new SequencedPublisher(this.plane, info.instanceId, this.bodies), info);
      this.instances.set(info.instanceId, p);
    }
    return p;
  }

  /** Forgets a stopped instance's publisher. */
  release(instanceId: string): void {
    this.instances.delete(instanceId);
  }

  /** A runtime-level publish (publisher id: the runtime id) to a namespace or component scope. */
  publish(namespace: string, component: string | undefined, event: EventRef<unknown>, data: unknown): void {
    let cache = this.subjects.get(namespace);
    if (cache === undefined) {
      if (this.subjects.size >= 1024) this.subjects.clear();
      cache = new SubjectCache(this.publisher, namespace);
      this.subjects.set(namespace, cache);
    }
    this.publisher.send(cache.get(component, event), data);
  }
}

/**
 * Opens a namespace's event log `TROUPE_EV_{ns}`. With `update`, applies the
 * limits to an existing log; without, an existing log is used as it is and
 * a new one gets the defaults.
 */
export function openEventLog(plane: Plane, namespace: string, limits: EventLogOptions | undefined): Promise<MessageLog> {
  const l = { ...DEFAULT_EVENT_LOG, ...limits };
  checkLimit('maxAgeMs', l.maxAgeMs);
  checkLimit('maxBytes', l.maxBytes);
  return plane.transport.persistence.log(eventLogName(namespace), {
    subjects: eventLogSubjects(namespace),
    maxAgeMs: l.maxAgeMs,
    maxBytes: l.maxBytes,
    update: limits !== undefined,
  });
}

function checkLimit(name: string, v: unknown): void {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
    throw new TroupeError('BAD_REQUEST', `${name} must be a positive integer, got ${String(v)}`);
  }
}
