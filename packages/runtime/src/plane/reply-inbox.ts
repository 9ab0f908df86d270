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
 * of every open stream of that caller, space-separated. Reply keys are base36
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

/**
 * One runtime's reply inbox: a single wildcard subscription `{root}.*` that
 * receives every unary reply and stream frame, dispatched by the last token.
 * nats.js's `request()` builds an Error per call for async traces and costs
 * ~3x a hand-written mux at 256 in flight (NATS-FACTS); this is that mux.
 */
export class ReplyInbox {
  readonly root: string;
  private readonly handlers = new Map<string, ReplyHandler>();
  private readonly sub: TransportSubscription;
  private seq = 0;
  private readonly cut: number;

  constructor(
    private readonly transport: Transport,
    prefix: string,
  ) {
    this.root = inboxRoot(prefix, newToken());
    this.cut = this.root.length + 1;
    this.sub = transport.subscribe(inboxWildcard(this.root), (msg) => this.dispatch(msg));
  }

  /** Registers `handler` and returns `[key, replySubject]`. */
  open(handler: ReplyHandler): [string, string] {
    const key = (++this.seq).toString(36);
    this.handlers.set(key, handler);
    return [key, `${this.root}.${key}`];
  }

  /** Forgets a reply key; later messages to it are dropped. */
  close(key: string): void {
    this.handlers.delete(key);
  }

  /** How many replies are awaited (for leak tests). */
  get pending(): number {
    return this.handlers.size;
  }

  /** Stops receiving. */
  /** Stops receiving; everything still awaiting a reply fails with `err`. */
  stop(err: TroupeError): void {
    this.sub.unsubscribe();
    const waiting = [...this.handlers.values()];
    for (const h of waiting) h.abandon?.(err);
  }

  private dispatch(msg: TransportMessage): void {
    const key = msg.subject.slice(this.cut);
    const handler = this.handlers.get(key);
    if (handler) handler.onReply(msg);
    else if (key === HEARTBEAT_KEY) this.onHeartbeat(msg);
  }

  /**
   * A worker's heartbeat: every stream it names is alive. Keys this inbox no
   * longer has (unsubscribed, or a cancel that never arrived) are answered
   * `gone` so the worker aborts their handlers.
   */
  private onHeartbeat(msg: TransportMessage): void {
    let gone: string[] | undefined;
    for (const key of unpackTokens(msg.data)) {
      const h = this.handlers.get(key);
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
