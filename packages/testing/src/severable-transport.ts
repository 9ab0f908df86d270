import {
  deliverTo,
  type MessageHandler,
  type MessageTarget,
  type PublishOptions,
  type RequestOptions,
  type SubscribeOptions,
  type Transport,
  type TransportMessage,
  TransportStatus,
  type TransportSubscription,
  TroupeError,
} from '@troupe/runtime/internal';
import type { Observable } from 'rxjs';

/**
 * How a {@link SeverableTransport} is cut off.
 *
 * @example
 * if (cut.severed === Severed.FROZEN) cut.kill(); // from SIGSTOP-like to kill -9-like
 */
export const Severed = {
  /** Working. */
  NO: 'no',
  /** Like SIGSTOP: its subscriptions stay (the bus still routes to it), nothing goes in or out. */
  FROZEN: 'frozen',
  /** Like kill -9: its subscriptions are gone (the bus answers "no responders"), nothing goes out. */
  DEAD: 'dead',
} as const;
export type Severed = (typeof Severed)[keyof typeof Severed];

/**
 * A transport for in-process fault tests: it shares a real connection (NATS
 * or a memory network) and can then be cut off the way a crashed or frozen
 * process is, so a runtime built on it fails while the test process and the
 * other runtimes keep running. Works the same on every transport, so the
 * conformance suite can prove liveness on each.
 *
 * Storage (`persistence`) is shared and stays up: a severed runtime's
 * discovery lease may outlive it, as a partitioned process's would.
 *
 * @example
 * const cut = new SeverableTransport(pair.worker.bus);
 * const rt = await Runtime.connect({ transport: cut });
 * ...; cut.kill(); // its mailboxes vanish: callers probe and get "no responders"
 */
export class SeverableTransport implements Transport {
  private readonly subs = new Set<TransportSubscription>();
  private state: Severed = Severed.NO;
  private dropping: ((subject: string, options: PublishOptions | undefined) => boolean) | undefined;
  /** Messages this side tried to send while cut off (or filtered out). */
  dropped = 0;

  constructor(private readonly inner: Transport) {}

  get maxPayload(): number {
    return this.inner.maxPayload;
  }
  get status(): TransportStatus {
    return this.state === Severed.NO ? this.inner.status : TransportStatus.CONNECTED; // a frozen process does not know
  }
  get status$(): Observable<TransportStatus> {
    return this.inner.status$;
  }
  get describe(): string {
    return `severable ${this.inner.describe}`;
  }
  get persistence(): Transport['persistence'] {
    return this.inner.persistence;
  }
  /** How it is cut off now. */
  get severed(): Severed {
    return this.state;
  }

  /** Like SIGSTOP: subscriptions stay, nothing is delivered or sent. */
  freeze(): void {
    this.state = Severed.FROZEN;
  }

  /** Like kill -9: every subscription is dropped at the bus; nothing is sent. */
  kill(): void {
    this.state = Severed.DEAD;
    for (const s of [...this.subs]) s.unsubscribe();
  }

  /**
   * Silently drops the outgoing messages `predicate` selects (a lost cancel,
   * a one-way partition) while everything else flows; `undefined` stops.
   *
   * @example
   * cut.dropOutgoing((_s, o) => o?.headers?.['Troupe-Ctl'] === 'cancel');
   */
  dropOutgoing(predicate: ((subject: string, options: PublishOptions | undefined) => boolean) | undefined): void {
    this.dropping = predicate;
  }

  publish(subject: string, data: Uint8Array, options?: PublishOptions): void {
    if (this.state !== Severed.NO || this.dropping?.(subject, options)) {
      this.dropped++;
      return; // a frozen or dead process sends nothing, and nobody tells its code
    }
    this.inner.publish(subject, data, options);
  }

  subscribe(subject: string, handler: MessageHandler | MessageTarget, options?: SubscribeOptions): TransportSubscription {
    const inner = this.inner.subscribe(
      subject,
      (msg) => {
        if (this.state === Severed.NO) deliverTo(handler, msg);
      },
      options,
    );
    const subs = this.subs;
    const sub: TransportSubscription = {
      unsubscribe() {
        subs.delete(sub);
        inner.unsubscribe();
      },
      drain() {
        subs.delete(sub);
        return inner.drain();
      },
      get closed() {
        return inner.closed;
      },
    };
    subs.add(sub);
    return sub;
  }

  request(subject: string, data: Uint8Array, options: RequestOptions): Promise<TransportMessage> {
    if (this.state === Severed.NO && !this.dropping?.(subject, options)) return this.inner.request(subject, data, options);
    return new Promise((_, reject) =>
      setTimeout(() => reject(new TroupeError('TIMEOUT', `no reply from ${subject} in ${options.timeoutMs} ms`)), options.timeoutMs),
    );
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  /** Drops this side's subscriptions; the shared connection stays open for its owner. */
  async close(): Promise<boolean> {
    for (const s of [...this.subs]) s.unsubscribe();
    return true;
  }
}
