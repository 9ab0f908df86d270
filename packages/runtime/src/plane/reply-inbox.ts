import type { TroupeError } from '../errors';
import { newToken } from '../ids';
import { Ctl, H } from '../wire/protocol';
import { inboxRoot, inboxWildcard } from '../wire/subjects';
import type { Transport, TransportMessage, TransportSubscription } from '../transport/transport';

/** Receives the messages sent to one reply subject. */
export interface ReplyHandler {
  onReply(msg: TransportMessage): void;
  /** A worker's heartbeat named this key: the stream is alive (streams only). */
  onHeartbeat?(): void;
  /** The inbox stops (the runtime closes): fail with `err` now instead of waiting for a deadline. */
  abandon?(err: TroupeError): void;
}

/**
 * The inbox token workers send heartbeats to: `{root}._hb`, body = the keys
 * of every open stream of that caller, space-separated. Reply keys are decimal
 * and never start with `_`.
 */
export const HEARTBEAT_KEY = '_hb';

/** The heartbeat subject of the caller inbox a reply subject belongs to. */
export function heartbeatSubjectOf(reply: string): string {
  return `${reply.slice(0, reply.lastIndexOf('.'))}.${HEARTBEAT_KEY}`;
}

/** The key (last token) of a reply subject. */
export function replyKeyOf(reply: string): string {
  return reply.slice(reply.lastIndexOf('.') + 1);
}

/** Space-separated tokens (keys or subjects never contain whitespace) as bytes, and back. */
export function packTokens(tokens: readonly string[]): Uint8Array {
  return Buffer.from(tokens.join(' '), 'latin1');
}
export function unpackTokens(data: Uint8Array): string[] {
  if (data.length === 0) return [];
  return Buffer.from(data.buffer, data.byteOffset, data.length).toString('latin1').split(' ');
}

/** Slots per generation step in a ticket: 2^24 replies open at once (a ticket stays below 2^53). */
const SLOTS = 0x1000000;
/** Generations wrap here (2^29): a stale reply would need 536 million reuses of its slot to be mistaken. */
const GENERATIONS = 0x20000000;

/**
 * One runtime's reply inbox: a single wildcard subscription `{root}.*` that
 * receives every unary reply and stream frame, dispatched by the last token.
 * nats.js's `request()` builds an Error per call for async traces and costs
 * ~3x a hand-written mux at 256 in flight (NATS-FACTS); this is that mux.
 *
 * Handlers sit in numbered slots, reused (the most recently freed first);
 * each reuse bumps the slot's generation. A reply key is one decimal number,
 * the ticket `generation × 2^24 + slot`: opening, dispatching and closing
 * allocate nothing but the reply subject (no Map entry, no key string to
 * hash), and a late reply to a key closed meanwhile finds a newer generation
 * and is dropped.
 */
export class ReplyInbox {
  readonly root: string;
  private readonly handlers: Array<ReplyHandler | undefined> = [];
  private readonly gens: number[] = [];
  private readonly free: number[] = [];
  private open_ = 0;
  private readonly sub: TransportSubscription;
  private readonly cut: number;
  private readonly prefix: string;

  constructor(
    private readonly transport: Transport,
    prefix: string,
  ) {
    this.root = inboxRoot(prefix, newToken());
    this.prefix = `${this.root}.`;
    this.cut = this.prefix.length;
    this.sub = transport.subscribe(inboxWildcard(this.root), (msg) => this.dispatch(msg));
  }

  /** Registers `handler` and returns `[key, replySubject]`. */
  open(handler: ReplyHandler): [string, string] {
    const key = decimalOf(this.take(handler));
    return [key, this.prefix + key];
  }

  /** Registers `handler` and returns its ticket (see {@link subjectOf}, {@link release}): the unary hot path. */
  take(handler: ReplyHandler): number {
    let slot = this.free.pop();
    if (slot === undefined) {
      slot = this.handlers.length;
      if (slot >= SLOTS) throw new RangeError(`more than ${SLOTS} replies awaited at once`);
      this.handlers.push(undefined);
      this.gens.push(0);
    }
    this.handlers[slot] = handler;
    this.open_++;
    return (this.gens[slot] as number) * SLOTS + slot;
  }

  /** The reply subject of a ticket. */
  subjectOf(ticket: number): string {
    return this.prefix + decimalOf(ticket);
  }

  /** Forgets a ticket; later messages to it are dropped. Closing one twice (or a stale one) does nothing. */
  release(ticket: number): void {
    const slot = ticket % SLOTS;
    if (this.handlers[slot] === undefined || this.gens[slot] !== (ticket - slot) / SLOTS) return;
    this.handlers[slot] = undefined;
    this.gens[slot] = ((ticket - slot) / SLOTS + 1) % GENERATIONS;
    this.free.push(slot);
    this.open_--;
  }

  /** Forgets a reply key; later messages to it are dropped. */
  close(key: string): void {
    const t = parseTicket(key, 0);
    if (t >= 0) this.release(t);
  }

  /** How many replies are awaited (for leak tests). */
  get pending(): number {
    return this.open_;
  }

  /** Whether `subject` is one of this inbox's reply subjects (its caller is this runtime). */
  owns(subject: string): boolean {
    return subject.length > this.cut && subject.startsWith(this.prefix);
  }

  /**
   * Hands a frame to the handler of its subject directly, as if it had
   * arrived on the subscription (plane/local-streams.ts): a closed key drops
   * it, as on the bus; nothing arrives once the inbox stopped. Never throws.
   */
  deliver(msg: TransportMessage): void {
    if (this.stopped) return;
    try {
      this.dispatch(msg);
    } catch (e) {
      // As a transport delivers: a handler must not throw; one that does loses this message only.
      process.emitWarning(`troupe: reply handler for ${msg.subject} threw: ${(e as Error)?.message ?? String(e)}`);
    }
  }

  private stopped = false;

  /** Stops receiving; everything still awaiting a reply fails with `err`. */
  stop(err: TroupeError): void {
    this.stopped = true;
    this.sub.unsubscribe();
    const waiting = this.handlers.filter((h) => h !== undefined);
    for (const h of waiting) h.abandon?.(err);
  }

  /** The handler of a live ticket. */
  private handlerOf(ticket: number): ReplyHandler | undefined {
    if (ticket < 0) return undefined;
    const slot = ticket % SLOTS;
    return this.gens[slot] === (ticket - slot) / SLOTS ? this.handlers[slot] : undefined;
  }

  private dispatch(msg: TransportMessage): void {
    const subject = msg.subject;
    const handler = this.handlerOf(parseTicket(subject, this.cut));
    if (handler) handler.onReply(msg);
    else if (subject.length === this.cut + HEARTBEAT_KEY.length && subject.endsWith(HEARTBEAT_KEY)) this.onHeartbeat(msg);
  }

  /**
   * A worker's heartbeat: every stream it names is alive. Keys this inbox no
   * longer has (unsubscribed, or a cancel that never arrived) are answered
   * `gone` so the worker aborts their handlers.
   */
  private onHeartbeat(msg: TransportMessage): void {
    let gone: string[] | undefined;
    for (const key of unpackTokens(msg.data)) {
      const h = this.handlerOf(parseTicket(key, 0));
      if (h?.onHeartbeat) h.onHeartbeat();
      else (gone ??= []).push(key);
    }
    if (gone && msg.reply) {
      try {
        this.transport.publish(msg.reply, packTokens(gone), { headers: { [H.CTL]: Ctl.GONE } });
      } catch {
        // the worker asks again with its next heartbeat
      }
    }
  }
}

/** Zeros that pad the low nine digits of a ticket, by the length of their text. */
const PADS = ['', '00000000', '0000000', '000000', '00000', '0000', '000', '00', '0', ''];
const SMI_MAX = 0x3fffffff;

/**
 * A ticket's decimal text. A ticket past 2^30 (any slot reused more than 63
 * times, so nearly every ticket of a busy runtime) is a heap number, and V8
 * prints those through its double-to-text path, several times slower than
 * two small integers: the text is built from the digits above and the nine
 * below 10^9, each a small integer.
 */
function decimalOf(ticket: number): string {
  if (ticket <= SMI_MAX) return String(ticket);
  const hi = Math.floor(ticket / 1e9);
  const lo = String(ticket - hi * 1e9);
  return String(hi) + (PADS[lo.length] as string) + lo;
}

/** The ticket a decimal key (from `from` to the end of `s`) names; -1 when it is not one. */
function parseTicket(s: string, from: number): number {
  const n = s.length;
  if (n <= from || n - from > 16) return -1;
  let t = 0;
  for (let i = from; i < n; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    t = t * 10 + d;
  }
  return t <= Number.MAX_SAFE_INTEGER ? t : -1;
}
