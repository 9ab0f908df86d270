import { newToken } from './ids';
import { inboxRoot, inboxWildcard } from './subjects';
import type { Transport, TransportMessage, TransportSubscription } from './transport/transport';

/** Receives the messages sent to one reply subject. */
export interface ReplyHandler {
  onReply(msg: TransportMessage): void;
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

  constructor(transport: Transport, prefix: string) {
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
  stop(): void {
    this.sub.unsubscribe();
  }

  private dispatch(msg: TransportMessage): void {
    const handler = this.handlers.get(msg.subject.slice(this.cut));
    if (handler) handler.onReply(msg);
  }
}
