import { Observable } from 'rxjs';
import { TroupeError, toTroupeError } from '../errors';
import { type EventEnvelope, type EventRef, EventScope, eventName, openEventLog } from './events';
import type { Logger } from '../logger';
import { validateName } from '../names';
import type { Plane } from '../plane/plane';
import { H } from '../wire/protocol';
import {
  anyComponentEventWildcard,
  componentEventSubject,
  componentEventWildcard,
  type EventSubjectParts,
  namespaceEventSubject,
  namespaceEventWildcard,
  parseEventSubject,
} from '../wire/subjects';
import { type ByteSpan, type LogConsumer, type LogMessage, type TransportMessage, TransportStatus, type TransportSubscription } from '../transport/transport';

/**
 * Options of `events()`: broadcast by default (every subscriber gets every
 * event); balanced with `group`; durable with `durable` and/or `start`.
 *
 * @example
 * ns.component('backend').events(KvEvents, { durable: 'kv-indexer', start: 'all' });
 */
export interface EventsOptions {
  /**
   * Balanced delivery: subscribers sharing this name get each event once
   * between them (a NATS queue group). Gaps are not reported (each member
   * sees part of the events).
   */
  group?: string;
  /**
   * Durable delivery: read from the namespace's event log and keep the
   * position under this name, so the next subscription of the name resumes
   * after the last event delivered (acked after it was handed to the
   * subscriber). Subscribers sharing the name share the events, each to one
   * of them: pass `gaps: false` then. Creates the log if needed.
   */
  durable?: string;
  /**
   * Where reading the log starts: everything stored (`'all'`), only events
   * from now on (`'new'`), or the first event at or after a time. Without
   * `durable`, a one-off replay that keeps no position. With `durable`,
   * only a new durable uses it (an existing one resumes). Default with
   * `durable`: `'all'`.
   */
  start?: 'all' | 'new' | Date;
  /** Report gaps in each publisher's sequence (default: true, false with `group`). */
  gaps?: boolean;
  /**
   * Durable only: how long an event handed to the subscriber may stay
   * unacked before the log delivers it again, ms (default 30 000,
   * JetStream's; set when the durable is created, an existing one keeps its
   * own). A handler that runs longer is not redelivered meanwhile: its
   * event is kept in progress (`+WPI`) every third of the ack wait until it
   * finishes.
   */
  ackWaitMs?: number;
  /** Called once the subscription is live on the bus: every event published from then on is delivered. */
  onReady?: () => void;
}

/** What a subscription listens to: one event name, or every event (`event` undefined) of a namespace or a component. */
export interface EventTarget {
  readonly namespace: string;
  /** Undefined: namespace scope, or with `event` undefined, the whole namespace. */
  readonly component: string | undefined;
  /** Undefined: every event of the target. */
  readonly event: string | undefined;
}

/**
 * Validates a subscription target. `event` undefined or `'*'` means every
 * event: of the component when one is given, else of the whole namespace
 * (its namespace-scoped events and every component's).
 */
export function eventTarget(namespace: string, component: string | undefined, event: EventRef<unknown> | undefined): EventTarget {
  return {
    namespace: validateName('namespace', namespace),
    component: component === undefined ? undefined : validateName('component', component),
    event: event === undefined || event === '*' ? undefined : eventName(event),
  };
}

/** A validated subscription: what to subscribe to and how. */
export interface EventPlan {
  readonly target: EventTarget;
  /** Core subjects (broadcast and balanced). */
  readonly subjects: readonly string[];
  /** The log filter (durable and replay); undefined: the whole namespace log. */
  readonly filter: string | undefined;
  readonly queue: string | undefined;
  /** Read from the log instead of live subjects. */
  readonly log: boolean;
  readonly durable: string | undefined;
  readonly start: 'all' | 'new' | Date;
  readonly gaps: boolean;
  /** Ack wait of a durable created by this subscription; undefined: the log's default. */
  readonly ackWaitMs: number | undefined;
}

/** Checks options and builds the subjects; throws `BAD_REQUEST` before anything is sent. */
export function planEvents(target: EventTarget, options: Omit<EventsOptions, 'onReady'>): EventPlan {
  if (options === null || typeof options !== 'object') throw new TroupeError('BAD_REQUEST', 'event subscription options must be an object');
  const queue = options.group === undefined ? undefined : validateName('group', options.group);
  const durable = options.durable === undefined ? undefined : validateName('durable', options.durable);
  const start = options.start;
  if (start !== undefined && start !== 'all' && start !== 'new' && !(start instanceof Date && !Number.isNaN(start.getTime()))) {
    throw new TroupeError('BAD_REQUEST', `start must be 'all', 'new' or a valid Date, got ${String(start)}`);
  }
  if (queue !== undefined && (durable !== undefined || start !== undefined)) {
    throw new TroupeError('BAD_REQUEST', 'group is for live events; subscribers sharing a durable name already share its events');
  }
  if (options.gaps !== undefined && typeof options.gaps !== 'boolean') throw new TroupeError('BAD_REQUEST', 'gaps must be a boolean');
  const ackWaitMs = options.ackWaitMs;
  if (ackWaitMs !== undefined) {
    if (durable === undefined) throw new TroupeError('BAD_REQUEST', 'ackWaitMs is for durable subscriptions (give durable a name)');
    if (typeof ackWaitMs !== 'number' || !Number.isSafeInteger(ackWaitMs) || ackWaitMs < MIN_ACK_WAIT_MS) {
      throw new TroupeError('BAD_REQUEST', `ackWaitMs must be an integer >= ${MIN_ACK_WAIT_MS} ms, got ${String(ackWaitMs)}`);
    }
  }
  const { namespace: ns, component: comp, event } = target;
  let subjects: string[];
  let filter: string | undefined;
  if (event !== undefined) {
    subjects = [comp === undefined ? namespaceEventSubject(ns, event) : componentEventSubject(ns, comp, event)];
    filter = subjects[0];
  } else if (comp !== undefined) {
    subjects = [componentEventWildcard(ns, comp)];
    filter = subjects[0];
  } else {
    subjects = [namespaceEventWildcard(ns), anyComponentEventWildcard(ns)];
    filter = undefined; // the namespace log holds exactly these subjects
  }
  return {
    target,
    subjects,
    filter,
    queue,
    log: durable !== undefined || start !== undefined,
    durable,
    start: start ?? 'all',
    gaps: options.gaps ?? queue === undefined,
    ackWaitMs,
  };
}

/**
 * Receives each event. Return `false` to refuse it (a full mailbox): a live
 * event is dropped (the next one reports the gap), a durable one comes back
 * later. A returned promise delays the durable ack until it settles; if it
 * resolves to `false` the event was not handled after all and comes back.
 */
export type EventSink = (env: EventEnvelope<unknown>) => boolean | void | PromiseLike<boolean | void>;

/** What {@link openEventSubscription} needs besides the plan. */
export interface SubscriptionHooks {
  sink: EventSink;
  /** Delivery ended by itself (the log was deleted). */
  onError(err: TroupeError): void;
  logger: Logger;
}

// A refused durable event comes back after this long (the mailbox had no room).
const REFUSED_NAK_MS = 250;
// Below this, keeping a long handler's event in progress would be most of the traffic.
const MIN_ACK_WAIT_MS = 300;
// A running handler's event is marked in progress this many times per ack wait: a late timer still lands in time.
const PROGRESS_PER_ACK_WAIT = 3;
// Publishers x event names remembered for gap detection; the least recently seen go first.
const GAP_KEYS_MAX = 4096;
/**
 * The event subscriptions of one runtime (a field of its plane): the event
 * Observables subscribed now, and the durable subscriptions being stopped.
 */
export class EventStreams {
  /** Durable subscriptions being stopped, by `{ns}/{durable}`: a restart of the same name waits for them. */
  readonly stoppingDurables = new Map<string, Promise<void>>();
  /** Each live event Observable, as a function that completes it and stops its subscription. */
  readonly live = new Set<() => Promise<void>>();

  /**
   * Completes every event Observable and stops its subscription (called by
   * `runtime.close()` before the connection drains, so durable consumers give
   * back what they hold instead of leaving it to the ack wait).
   */
  async close(): Promise<void> {
    await Promise.all([...this.live].map((close) => close()));
    this.live.clear();
    // Durable subscriptions unsubscribed a moment ago are still giving back what their consumer
    // pulled; closing the connection under them would leave it unacked for the whole ack wait.
    await Promise.all([...this.stoppingDurables.values()]);
  }
}

/** The last sequence number seen of one publisher on one subject. */
interface SeqSeen {
  seq: number;
  /** The tracker's tick when this entry last moved to the recent end. */
  moved: number;
}

/**
 * Remembers the last sequence number seen per publisher and subject, for
 * {@link GAP_KEYS_MAX} of them. An entry moves to the recent end of the map
 * at most once per half the bound of commits, not at every event: every
 * entry seen within the last `GAP_KEYS_MAX / 2` commits is kept (a key can
 * only reach the old end after that many others moved past it).
 */
class GapTracker {
  private readonly last = new Map<string, SeqSeen>();
  private tick = 0;

  /** The entry of `key`, undefined before its first commit. */
  entry(key: string): SeqSeen | undefined {
    return this.last.get(key);
  }

  /** Events missed before `seq` (0 for the first one seen, or an old or repeated one). */
  static gap(entry: SeqSeen | undefined, seq: number): number {
    return entry === undefined || seq <= entry.seq ? 0 : seq - entry.seq - 1;
  }

  commit(key: string, entry: SeqSeen | undefined, seq: number): void {
    const tick = ++this.tick;
    if (entry !== undefined) {
      if (seq > entry.seq) entry.seq = seq;
      if (tick - entry.moved > GAP_KEYS_MAX / 2) {
        entry.moved = tick;
        this.last.delete(key); // re-inserted last: Map order is recency
        this.last.set(key, entry);
      }
      return;
    }
    if (this.last.size >= GAP_KEYS_MAX) {
      const oldest = this.last.keys().next().value;
      if (oldest !== undefined) this.last.delete(oldest);
    }
    this.last.set(key, { seq, moved: tick });
  }
}

/** A message as both the bus and the log give it. */
type EventMessage = Pick<TransportMessage, 'subject' | 'data' | 'header' | 'headerBytes'>;

/**
 * One live event subscription: core subscriptions (broadcast, balanced) or
 * a log consumer (durable, replay). Starts at construction; `ready` settles
 * once the bus has it.
 */
export class EventSubscription {
  readonly ready: Promise<void>;
  private readonly subs: TransportSubscription[] = [];
  private consumer: LogConsumer | undefined;
  private stopped = false;
  private stopping: Promise<void> | undefined;
  private readonly tracker: GapTracker | undefined;
  private dropped = 0;
  /** Timers keeping running handlers' durable events in progress. */
  private readonly working = new Set<NodeJS.Timeout>();

  constructor(
    private readonly plane: Plane,
    private readonly plan: EventPlan,
    private readonly hooks: SubscriptionHooks,
  ) {
    this.tracker = plan.gaps ? new GapTracker() : undefined;
    const only = plan.subjects.length === 1 && plan.target.event !== undefined ? plan.subjects[0] : undefined;
    this.fixedParts = only === undefined ? undefined : parseEventSubject(only);
    this.ready = plan.log ? this.consumeLog() : this.subscribeLive();
    this.ready.catch(() => undefined); // the owner reads it; never an unhandled rejection
  }

  private subscribeLive(): Promise<void> {
    const t = this.plane.transport;
    try {
      const opts = this.plan.queue === undefined ? undefined : { queue: this.plan.queue };
      for (const s of this.plan.subjects) this.subs.push(t.subscribe(s, this.onLive, opts));
    } catch (err) {
      for (const s of this.subs) s.unsubscribe();
      return Promise.reject(toTroupeError(err, 'UNAVAILABLE'));
    }
    return t.flush();
  }

  private async consumeLog(): Promise<void> {
    // A durable name stopped a moment ago in this runtime gives back what it held first: wait, so a restart resumes in order.
    if (this.plan.durable !== undefined) await this.plane.eventStreams.stoppingDurables.get(this.durableKey());
    const log = await openEventLog(this.plane, this.plan.target.namespace, undefined);
    if (this.stopped) return;
    const consumer = await log.consume(
      { filter: this.plan.filter, durable: this.plan.durable, start: this.plan.start, ackWaitMs: this.plan.ackWaitMs, onError: (e) => this.hooks.onError(e) },
      this.onLogged,
    );
    if (this.stopped) {
      await consumer.stop();
      return;
    }
    this.consumer = consumer;
  }

  /**
   * Stops delivery. With `drain`, live events already received are still
   * delivered first (an instance stopping handles what reached it). Never
   * rejects.
   */
  stop(drain = false): Promise<void> {
    if (this.stopping !== undefined) return this.stopping;
    this.stopping = (async () => {
      if (drain && !this.plan.log) {
        await Promise.all(this.subs.map((s) => s.drain()));
      }
      this.stopped = true;
      for (const t of this.working) clearInterval(t);
      this.working.clear();
      for (const s of this.subs) s.unsubscribe();
      // Called before any await, so the consumer holds back from here on.
      const consumerStopped = this.consumer?.stop();
      await this.ready.catch(() => undefined);
      await (consumerStopped ?? this.consumer?.stop())?.catch(() => undefined);
    })().catch((err: unknown) => {
      this.hooks.logger.warn('event subscription did not stop cleanly', { error: (err as Error)?.message });
    });
    if (this.plan.durable !== undefined) {
      const byKey = this.plane.eventStreams.stoppingDurables;
      const key = this.durableKey();
      const p = this.stopping;
      byKey.set(key, p);
      void p.finally(() => {
        if (byKey.get(key) === p) byKey.delete(key);
      });
    }
    return this.stopping;
  }

  private durableKey(): string {
    return `${this.plan.target.namespace}/${this.plan.durable ?? ''}`;
  }

  /** The parts of the one subject of a live subscription to one event name; undefined with wildcards (read per message). */
  private readonly fixedParts: EventSubjectParts | undefined;

  /** The last subject parsed and its parts: a subscription mostly sees one subject, parsed once instead of per event. */
  private lastSubject = '';
  private lastParts: EventSubjectParts | undefined;

  private subjectParts(subject: string): EventSubjectParts | undefined {
    if (subject !== this.lastSubject) {
      this.lastParts = parseEventSubject(subject);
      this.lastSubject = subject;
    }
    return this.lastParts;
  }

  private readonly onLive = (msg: TransportMessage): void => {
    if (this.stopped) return;
    // A subscription to one event name knows its subject: the message's is not read (nats.js decodes it per read).
    const parts = this.fixedParts ?? this.subjectParts(msg.subject);
    if (parts === undefined) return;
    const data = this.decode(msg, parts);
    if (data === NOTHING) return;
    const env = this.envelope(msg, parts, data);
    const accepted = this.deliver(env, parts.event);
    if (accepted === false) {
      // Not committed: the next event of this publisher reports the gap.
      this.dropped++;
      if ((this.dropped & (this.dropped - 1)) === 0) {
        this.hooks.logger.warn('event dropped: the mailbox is full', { event: parts.event, dropped: this.dropped });
      }
      return;
    }
    this.commit(env.seq);
  };

  /** Records the sequence of the event {@link envelope} built last as seen (gap tracking on and a key made). */
  private commit(seq: number): void {
    const key = this.gapKey;
    if (key !== undefined) this.tracker?.commit(key, this.gapEntry, seq);
  }

  /** Hands one envelope to the sink; a sink that throws is logged, never breaks delivery. */
  private deliver(env: Parameters<EventSink>[0], event: string): ReturnType<EventSink> {
    this.plane.meter.eventsDelivered++;
    if (env.gap !== undefined) this.plane.meter.eventGaps += env.gap;
    try {
      return this.hooks.sink(env);
    } catch (err) {
      this.hooks.logger.error('event sink threw', { event, error: (err as Error)?.message });
      return undefined;
    }
  }

  private readonly onLogged = (m: LogMessage): void => {
    if (this.stopped) {
      m.nak(REFUSED_NAK_MS); // delayed: an immediate nak would bounce straight back to this consumer
      return;
    }
    const parts = this.subjectParts(m.subject);
    const data = parts === undefined ? NOTHING : this.decode(m, parts);
    if (parts === undefined || data === NOTHING) {
      m.ack(); // never deliverable: do not let it come back
      return;
    }
    const env = this.envelope(m, parts, data);
    const accepted = this.deliver(env, parts.event);
    if (accepted === false) {
      m.nak(REFUSED_NAK_MS);
      return;
    }
    this.commit(env.seq);
    if (accepted !== undefined && accepted !== true && typeof accepted.then === 'function') {
      const working = this.keepInProgress(m);
      accepted.then(
        (handled) => {
          working();
          if (handled === false) m.nak(REFUSED_NAK_MS);
          else m.ack();
        },
        () => {
          working();
          m.ack(); // the handler failed: logged by the sink; retrying a poison event forever helps no one
        },
      );
    } else {
      m.ack();
    }
  };

  /**
   * Keeps `m` in progress while its handler runs, so a handler longer than
   * the ack wait (30 s by default) is not delivered again meanwhile (to
   * another replica, or to this one behind itself). Returns the function
   * that stops it; stopping the subscription stops them all (what is still
   * running then comes back after the ack wait, as before).
   */
  private keepInProgress(m: LogMessage): () => void {
    const ackWait = m.ackWaitMs;
    if (ackWait === undefined) return () => undefined;
    const timer = setInterval(() => m.inProgress(), Math.max(1, Math.floor(ackWait / PROGRESS_PER_ACK_WAIT)));
    timer.unref();
    this.working.add(timer);
    return () => {
      clearInterval(timer);
      this.working.delete(timer);
    };
  }

  private decode(msg: EventMessage, parts: EventSubjectParts): unknown {
    try {
      return this.plane.codec.decode(msg.data);
    } catch (err) {
      this.hooks.logger.warn('undecodable event dropped', { subject: msg.subject, event: parts.event, error: (err as Error)?.message });
      return NOTHING;
    }
  }

  /** The gap key and tracker entry of the event {@link envelope} built last (read by {@link commit}). */
  private gapKey: string | undefined;
  private gapEntry: SeqSeen | undefined;
  /** Scratch of {@link readMeta}: the last event's metadata. */
  private readonly meta: EventMeta = { publisher: '', seq: 0, time: 0 };

  private envelope(msg: EventMessage, parts: EventSubjectParts, data: unknown): EventEnvelope<unknown> {
    const meta = readMeta(msg, this.meta);
    const { publisher, seq } = meta;
    const timestamp = meta.time > 0 ? meta.time : Date.now();
    let gap = 0;
    if (this.tracker !== undefined && publisher !== '' && seq > 0) {
      // One subject per subscription (the usual case): the publisher alone is the key.
      const key = this.fixedParts === undefined ? `${publisher} ${msg.subject}` : publisher;
      // The same key as the last event's (one publisher's run): its entry, without a lookup.
      const entry = key === this.gapKey && this.gapEntry !== undefined ? this.gapEntry : this.tracker.entry(key);
      gap = GapTracker.gap(entry, seq);
      this.gapKey = key;
      this.gapEntry = entry;
    } else {
      this.gapKey = undefined;
      this.gapEntry = undefined;
    }
    const env: { -readonly [K in keyof EventEnvelope<unknown>]: EventEnvelope<unknown>[K] } = {
      event: parts.event,
      scope: parts.component === undefined ? EventScope.NAMESPACE : EventScope.COMPONENT,
      namespace: parts.namespace,
      component: parts.component,
      publisher,
      seq,
      timestamp,
      data,
    };
    if (gap > 0) env.gap = gap;
    return env;
  }
}

const NOTHING: unique symbol = Symbol('nothing');

/** An event's publisher, sequence (0: none) and time (0: none), as {@link readMeta} finds them. */
interface EventMeta {
  publisher: string;
  seq: number;
  time: number;
}

/**
 * An event's publisher, sequence and time into `out`, from the packed
 * `Troupe-Event` header (`{publisher} {seq} {time}`; the publisher is what
 * precedes the last two fields), else from the three separate headers other
 * publishers may send. Missing or malformed parts read as absent: publisher
 * '', seq and time 0.
 */
function readMeta(msg: EventMessage, out: EventMeta): EventMeta {
  if (msg.headerBytes?.(H.EVENT, span) === true && readPackedBytes(span, out)) return out;
  const packed = msg.header(H.EVENT);
  if (packed !== undefined) {
    const b = packed.lastIndexOf(' ');
    const a = b > 0 ? packed.lastIndexOf(' ', b - 1) : -1;
    if (a > 0) {
      // Events mostly come from the publisher of the last one: its string is kept (no slice, the map key's hash is cached).
      const last = out.publisher;
      out.publisher = a === last.length && packed.startsWith(last) ? last : packed.slice(0, a);
      out.seq = seqOf(digits(packed, a + 1, b));
      out.time = timeOf(digits(packed, b + 1, packed.length));
      return out;
    }
  }
  out.publisher = msg.header(H.PUBLISHER) ?? '';
  out.seq = seqOf(Number(msg.header(H.EVENT_SEQ)));
  out.time = timeOf(Number(msg.header(H.TIME)));
  return out;
}

/** Scratch of {@link readMeta}: where the packed header lies in the message's bytes. */
const span: ByteSpan = { bytes: new Uint8Array(0), from: 0, to: 0 };

/**
 * {@link readMeta} of the packed header from the message's bytes: no
 * string of the line, and the publisher's string only when it is not the
 * last event's. False when the line is not `{publisher} {seq} {time}`
 * (then the string form decides).
 */
function readPackedBytes(s: ByteSpan, out: EventMeta): boolean {
  return sameRun(s, out) || readPackedAny(s, out);
}

/**
 * The usual event: the last one's publisher, then two plain decimal
 * numbers, read in one pass from the start (what {@link readPackedAny}
 * finds for this line). False for anything else.
 */
function sameRun(s: ByteSpan, out: EventMeta): boolean {
  const d = s.bytes;
  const to = s.to;
  const last = out.publisher;
  let at = s.from + last.length;
  if (last.length === 0 || at >= to || d[at] !== SPACE || !spellsAscii(d, s.from, last)) return false;
  let seq = 0;
  const seqFrom = ++at;
  for (let c = (d[at] as number) - 48; at < to && c >= 0 && c <= 9; c = (d[++at] as number) - 48) seq = seq * 10 + c;
  if (at === seqFrom || at - seqFrom > 15 || at >= to || d[at] !== SPACE) return false;
  let time = 0;
  const timeFrom = ++at;
  for (let c = (d[at] as number) - 48; at < to && c >= 0 && c <= 9; c = (d[++at] as number) - 48) time = time * 10 + c;
  if (at !== to || at === timeFrom || at - timeFrom > 15) return false;
  out.seq = seqOf(seq);
  out.time = timeOf(time);
  return true;
}

/** {@link readPackedBytes} of any line: the publisher is what precedes the last two fields. */
function readPackedAny(s: ByteSpan, out: EventMeta): boolean {
  const d = s.bytes;
  const from = s.from;
  let b = s.to - 1;
  while (b >= from && d[b] !== SPACE) b--;
  let a = b - 1;
  while (a >= from && d[a] !== SPACE) a--;
  if (!(a > from)) return false;
  const last = out.publisher;
  out.publisher = a - from === last.length && spellsAscii(d, from, last) ? last : utf8(d, from, a);
  out.seq = seqOf(digitBytes(d, a + 1, b));
  out.time = timeOf(digitBytes(d, b + 1, s.to));
  return true;
}

const SPACE = 32;

/** Whether `d[from..from+text.length)` is `text`, all of it ASCII. */
function spellsAscii(d: Uint8Array, from: number, text: string): boolean {
  for (let k = 0; k < text.length; k++) {
    const c = d[from + k] as number;
    if (c >= 0x80 || c !== text.charCodeAt(k)) return false;
  }
  return true;
}

function utf8(d: Uint8Array, from: number, to: number): string {
  return Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString('utf8', from, to);
}

/** {@link digits} of bytes. */
function digitBytes(d: Uint8Array, from: number, to: number): number {
  if (to <= from || to - from > 15) return Number(utf8(d, from, to));
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = (d[i] as number) - 48;
    if (c < 0 || c > 9) return Number(utf8(d, from, to));
    n = n * 10 + c;
  }
  return n;
}

/** The number written in decimal digits from `from` to `to`; NaN when empty or anything else is there (then `Number()` of the text decides). */
function digits(s: string, from: number, to: number): number {
  if (to <= from || to - from > 15) return Number(s.slice(from, to));
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return Number(s.slice(from, to));
    n = n * 10 + c;
  }
  return n;
}

function seqOf(n: number): number {
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
}

function timeOf(n: number): number {
  return Number.isFinite(n) && n > 0 ? n : 0;
}

/**
 * A cold Observable of events: subscribing opens the subscription,
 * unsubscribing releases it (core subscriptions, or the log consumer, whose
 * durable position stays). Completes when the runtime closes; errors with
 * a TroupeError when it cannot subscribe or the log goes away.
 */
export function eventStream<T>(plane: Plane, target: EventTarget, options: EventsOptions | undefined): Observable<EventEnvelope<T>> {
  const plan = planEvents(target, options ?? {});
  const onReady = options?.onReady;
  if (onReady !== undefined && typeof onReady !== 'function') throw new TroupeError('BAD_REQUEST', 'onReady must be a function');
  return new Observable<EventEnvelope<T>>((subscriber) => {
    if (plane.transport.status === TransportStatus.CLOSED) {
      subscriber.error(new TroupeError('UNAVAILABLE', `${plane.transport.describe} is closed; cannot subscribe to events`));
      return undefined;
    }
    const sub = new EventSubscription(plane, plan, {
      sink: (env) => {
        subscriber.next(env as EventEnvelope<T>);
      },
      onError: (err) => subscriber.error(err),
      logger: plane.logger,
    });
    sub.ready.then(
      () => {
        if (!subscriber.closed) onReady?.();
      },
      (err: unknown) => subscriber.error(toTroupeError(err, 'UNAVAILABLE')),
    );
    const status = plane.transport.status$.subscribe((s) => {
      if (s === TransportStatus.CLOSED) subscriber.complete();
    });
    const closers = plane.eventStreams.live;
    const close = (): Promise<void> => {
      subscriber.complete();
      return sub.stop();
    };
    closers.add(close);
    return () => {
      closers.delete(close);
      status.unsubscribe();
      void sub.stop();
    };
  });
}
