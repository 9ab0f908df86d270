import {
  AckPolicy,
  type Consumer,
  type ConsumerConfig,
  type ConsumerInfo,
  type ConsumerMessages,
  DeliverPolicy,
  DiscardPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  millis,
  nanos,
  type NatsConnection,
  type NatsError,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from 'nats';
import { TroupeError } from '../../errors';
import type { LogConsumeOptions, LogConsumer, LogMessage, LogOptions, MessageLog } from '../transport';

/** Default of {@link LogConsumeOptions.maxInFlight}. */
const DEFAULT_MAX_IN_FLIGHT = 256;
/** One pull asks for at most this many messages; nats.js pulls again when a quarter is left. */
const PULL_BATCH = 256;
/** A pull waits this long for messages before it is renewed (nats.js default 30 s; shorter notices a lost server sooner). */
const PULL_EXPIRES_MS = 5_000;
/** How long an unacked message waits before JetStream redelivers it, unless the options say otherwise (the JetStream default). */
const ACK_WAIT_MS = 30_000;
/** After stop(), the pull counts as finished once nothing arrived for this long (loopback delivery takes well under 1 ms). */
const QUIET_MS = 25;
/** stop() waits at most this long for messages already on their way. */
const STOP_BOUND_MS = 1_000;
/** JetStream API error codes (nats-server `server/errors.json`). */
const JS_STREAM_NOT_FOUND = 10059;
const JS_CONSUMER_NOT_FOUND = 10014;
const JS_STREAM_NAME_IN_USE = 10058;
const JS_SUBJECTS_OVERLAP = 10065;

/**
 * Opens (creating or updating) the JetStream stream `name` behind the
 * {@link MessageLog} seam. A server without JetStream gets an error that
 * names the fix.
 */
export async function openNatsLog(nc: NatsConnection, name: string, options: LogOptions): Promise<MessageLog> {
  if (nc.info && nc.info.jetstream !== true) {
    throw new TroupeError(
      'UNAVAILABLE',
      `the NATS server at ${nc.getServer()} has no JetStream: durable events are stored in a JetStream stream. Start nats-server with -js (or "jetstream {}" in its config), or use the embedded runtime`,
    );
  }
  let jsm: JetStreamManager;
  try {
    jsm = await nc.jetstreamManager();
  } catch (err) {
    throw new TroupeError('UNAVAILABLE', `JetStream is not available at ${nc.getServer()}: ${(err as Error).message}`, { cause: err });
  }
  const limits: Partial<StreamConfig> = {
    subjects: [...options.subjects],
    max_age: options.maxAgeMs === undefined ? 0 : nanos(options.maxAgeMs),
    max_bytes: options.maxBytes ?? -1,
  };
  try {
    let info;
    try {
      info = await jsm.streams.info(name);
    } catch (err) {
      if (apiCode(err) !== JS_STREAM_NOT_FOUND) throw err;
    }
    if (info === undefined) {
      try {
        await jsm.streams.add({
          name,
          retention: RetentionPolicy.Limits,
          storage: StorageType.File,
          discard: DiscardPolicy.Old,
          num_replicas: 1,
          ...limits,
        });
      } catch (err) {
        // Another process created it between our look and our add: use theirs.
        if (apiCode(err) !== JS_STREAM_NAME_IN_USE) throw err;
      }
    } else if (options.update) {
      await jsm.streams.update(name, { ...info.config, ...limits });
    }
  } catch (err) {
    if (apiCode(err) === JS_SUBJECTS_OVERLAP) {
      throw new TroupeError('BAD_REQUEST', `cannot create log ${name}: its subjects ${options.subjects.join(', ')} overlap another stream's`, { cause: err });
    }
    throw new TroupeError('UNAVAILABLE', `cannot open the JetStream stream ${name}: ${(err as Error).message}`, { cause: err });
  }
  return new NatsLog(jsm, nc.jetstream(), name);
}

class NatsLog implements MessageLog {
  constructor(
    private readonly jsm: JetStreamManager,
    private readonly js: JetStreamClient,
    readonly name: string,
  ) {}

  async consume(options: LogConsumeOptions, handler: (msg: LogMessage) => void): Promise<LogConsumer> {
    try {
      if (options.durable === undefined) return await this.ordered(options, handler);
      const info = await this.durable(options, options.durable);
      const durable = options.durable;
      const c = new DurableConsumer(
        this.js.consumers.getPullConsumerFor(info),
        { handler, onError: options.onError, ackWaitMs: info.config.ack_wait ? millis(info.config.ack_wait) : ACK_WAIT_MS },
        () => this.jsm.consumers.info(this.name, durable),
      );
      await c.start();
      return c;
    } catch (err) {
      if (err instanceof TroupeError) throw err;
      throw new TroupeError('UNAVAILABLE', `cannot consume from ${this.name}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** An ephemeral ordered consumer: no acks; nats.js recreates it at the right position after a gap. */
  private async ordered(options: LogConsumeOptions, handler: (msg: LogMessage) => void): Promise<LogConsumer> {
    const start = options.start;
    const c = await this.js.consumers.get(this.name, {
      ...(options.filter === undefined ? {} : { filterSubjects: options.filter }),
      // 'all' is nats.js's default (from stream seq 1); DeliverPolicy.All with the start seq it adds is refused by the server and retried forever.
      ...(start === 'all' ? {} : start === 'new' ? { deliver_policy: DeliverPolicy.New } : { opt_start_time: start.toISOString() }),
    });
    const messages = await c.consume({ max_messages: PULL_BATCH, callback: (m) => handler(new NatsLogMessage(m, undefined)) });
    let stopped = false;
    return {
      stop: async () => {
        if (stopped) return;
        stopped = true;
        await messages.close().catch(() => undefined);
      },
    };
  }

  /** Looks up or creates the durable consumer `name`. */
  private async durable(options: LogConsumeOptions, name: string): Promise<ConsumerInfo> {
    let info: ConsumerInfo | undefined;
    try {
      info = await this.jsm.consumers.info(this.name, name);
    } catch (err) {
      if (apiCode(err) !== JS_CONSUMER_NOT_FOUND) throw err;
    }
    if (info === undefined) {
      const start = options.start;
      const config: Partial<ConsumerConfig> = {
        durable_name: name,
        ack_policy: AckPolicy.Explicit,
        ack_wait: nanos(options.ackWaitMs ?? ACK_WAIT_MS),
        max_ack_pending: options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT,
        ...(options.filter === undefined ? {} : { filter_subject: options.filter }),
        ...(start === 'all'
          ? { deliver_policy: DeliverPolicy.All }
          : start === 'new'
            ? { deliver_policy: DeliverPolicy.New }
            : { deliver_policy: DeliverPolicy.StartTime, opt_start_time: start.toISOString() }),
      };
      // Adding an identical consumer is idempotent, so two processes racing to create it both succeed.
      info = await this.jsm.consumers.add(this.name, config);
    }
    const filter = info.config.filter_subject || undefined;
    if (filter !== options.filter) {
      throw new TroupeError(
        'BAD_REQUEST',
        `durable ${name} of ${this.name} follows ${filter ?? 'the whole log'}, not ${options.filter ?? 'the whole log'}; pick another durable name`,
      );
    }
    return info;
  }

  async destroy(): Promise<void> {
    try {
      await this.jsm.streams.delete(this.name);
    } catch (err) {
      if (apiCode(err) === JS_STREAM_NOT_FOUND) return;
      throw new TroupeError('UNAVAILABLE', `cannot delete the JetStream stream ${this.name}: ${(err as Error).message}`, { cause: err });
    }
  }
}

/**
 * A durable pull consumer. Stopping it is the delicate part: messages the
 * server already sent when we stop must not sit unacked until the ack wait
 * (30 s) and then arrive out of order. So stop() holds whatever still
 * arrives, closes once the pull is quiet (at most `maxInFlight` can be
 * outstanding), and only then naks what it held, in log order: with our
 * pull gone they go back first in line for the next consumer of the name
 * instead of bouncing back to us. Measured on nats-server 2.9.10: the
 * server forgets a closed pull lazily, and a nak that meets the stale pull
 * is lost until the ack wait while the next message is delivered twice; a
 * consumer info request purges stale pulls, so stop() asks for one before
 * its naks (and always, for the next consumer's sake). A message sent in the instant between "quiet" and the server
 * seeing the unsubscribe still waits for the ack wait: at least once, never
 * lost.
 */
class DurableConsumer implements LogConsumer {
  private stopping = false;
  private stopped: Promise<void> | undefined;
  private readonly held: JsMsg[] = [];
  private lastArrival = 0;
  private messages: ConsumerMessages | undefined;

  private readonly handler: (msg: LogMessage) => void;
  private readonly onError: ((err: TroupeError) => void) | undefined;
  /** The consumer's actual ack wait (it may predate this process's options), ms. */
  private readonly ackWaitMs: number;

  constructor(
    private readonly consumer: Consumer,
    hooks: { handler: (msg: LogMessage) => void; onError: ((err: TroupeError) => void) | undefined; ackWaitMs: number },
    /** Makes the server drop pulls whose inbox is gone (a consumer info request). */
    private readonly purgeStalePulls: () => Promise<unknown>,
  ) {
    this.handler = hooks.handler;
    this.onError = hooks.onError;
    this.ackWaitMs = hooks.ackWaitMs;
  }

  async start(): Promise<void> {
    const messages = await this.consumer.consume({
      max_messages: PULL_BATCH,
      expires: PULL_EXPIRES_MS,
      abort_on_missing_resource: true,
      callback: this.onMessage,
    });
    this.messages = messages;
    void messages.closed().then((err) => {
      if (err && !this.stopping) {
        this.stopping = true;
        this.onError?.(new TroupeError('UNAVAILABLE', `the durable consumer stopped: ${err.message}`, { cause: err }));
      }
    });
  }

  private readonly onMessage = (m: JsMsg): void => {
    this.lastArrival = Date.now();
    if (this.stopping) this.held.push(m);
    else this.handler(new NatsLogMessage(m, this.ackWaitMs));
  };

  stop(): Promise<void> {
    this.stopping = true;
    this.stopped ??= (async () => {
      const until = Date.now() + STOP_BOUND_MS;
      this.lastArrival = Math.max(this.lastArrival, Date.now());
      while (Date.now() < until && Date.now() - this.lastArrival < QUIET_MS) await sleep(5);
      await this.messages?.close().catch(() => undefined);
      // Always: a stale pull also trips up the next new message, not only our naks.
      await this.purgeStalePulls().catch(() => undefined);
      this.held.sort((a, b) => a.seq - b.seq);
      for (const m of this.held.splice(0)) m.nak();
    })();
    return this.stopped;
  }
}

class NatsLogMessage implements LogMessage {
  private readonly acks: boolean;
  constructor(
    private readonly m: JsMsg,
    /** Undefined: an ephemeral (ordered) consumer, which takes no acks. */
    readonly ackWaitMs: number | undefined,
  ) {
    this.acks = ackWaitMs !== undefined;
  }
  get subject(): string {
    return this.m.subject;
  }
  get data(): Uint8Array {
    return this.m.data;
  }
  get seq(): number {
    return this.m.seq;
  }
  get timestamp(): number {
    return Math.floor(this.m.info.timestampNanos / 1e6);
  }
  get redelivered(): boolean {
    return this.m.redelivered;
  }
  header(name: string): string | undefined {
    return this.m.headers?.get(name) || undefined;
  }
  ack(): void {
    if (this.acks) this.m.ack();
  }
  nak(delayMs?: number): void {
    if (this.acks) this.m.nak(delayMs);
  }
  inProgress(): void {
    if (!this.acks) return;
    try {
      this.m.working();
    } catch {
      // the connection closed: the message comes back after the ack wait, as any unacked one
    }
  }
}

function apiCode(err: unknown): number | undefined {
  return (err as NatsError | undefined)?.api_error?.err_code;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
