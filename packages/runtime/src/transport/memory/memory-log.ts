import { TroupeError } from '../../errors';
import type { LogConsumeOptions, LogConsumer, LogMessage, LogOptions, MessageLog } from '../transport';
import { subjectError, subjectMatches } from '../../wire/subject-grammar';

/** Default of {@link LogConsumeOptions.maxInFlight}, as the NATS log. */
const DEFAULT_MAX_IN_FLIGHT = 256;
// A pump yields to the event loop after this much work, as the bus's delivery does.
const YIELD_AFTER_MS = 5;
// Subject -> logs cache bound, as the bus's route cache.
const MATCH_CACHE_MAX = 4096;
const LOG_NAME = /^[A-Za-z0-9_-]+$/;

/** One stored message. */
interface Stored {
  readonly seq: number;
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: Readonly<Record<string, string>> | undefined;
  readonly at: number;
  readonly size: number;
}

/**
 * The memory network's durable logs, with the behaviour of JetStream streams
 * that Troupe relies on: a log captures every publish to its subjects from
 * the moment it exists; consumers read in log order, durable ones keep their
 * position by name and share messages between the consumers of that name.
 * One instance per network, nothing global. Deliberate differences: no ack
 * wait (an unacked message comes back on `nak` only, never by timeout:
 * nothing is lost in flight in one process; so `ackWaitMs` is ignored and
 * `inProgress()` is a no-op) and no check that two logs' subjects overlap.
 */
export class MemoryLogs {
  private readonly logs = new Map<string, MemoryLog>();
  private readonly matches = new Map<string, readonly MemoryLog[]>();
  /** Attached consumers, all logs together. */
  consumerCount = 0;
  /** Told when consumers attach (+1) and stop (-1); the bus counts them as subscriptions. */
  onConsumers: ((delta: number) => void) | undefined;

  /** Whether any log stores messages: the bus looks no further when false. */
  get capturing(): boolean {
    return this.logs.size > 0;
  }

  /** Stores a publish in every log whose subjects match it. Called by the bus, inside `publish`. */
  capture(subject: string, data: Uint8Array, headers: Readonly<Record<string, string>> | undefined): void {
    let logs = this.matches.get(subject);
    if (logs === undefined) {
      logs = [...this.logs.values()].filter((l) => l.subjects.some((p) => subjectMatches(p, subject)));
      if (this.matches.size >= MATCH_CACHE_MAX) this.matches.clear();
      this.matches.set(subject, logs);
    }
    if (logs.length === 0) return;
    // One copy for every log: the sender may reuse its buffer once publish returns.
    const copy = new Uint8Array(data);
    for (const log of logs) log.append(subject, copy, headers);
  }

  async open(name: string, options: LogOptions): Promise<MessageLog> {
    if (!LOG_NAME.test(name)) throw new TroupeError('BAD_REQUEST', `invalid log name ${JSON.stringify(name)}: letters, digits, "_" and "-"`);
    for (const s of options.subjects) {
      const why = subjectError(s, true);
      if (why !== undefined) throw new TroupeError('BAD_REQUEST', `invalid log subject ${JSON.stringify(s)}: ${why}`);
    }
    let log = this.logs.get(name);
    if (log === undefined) {
      log = new MemoryLog(this, name, options);
      this.logs.set(name, log);
      this.matches.clear();
    } else if (options.update) {
      log.configure(options);
      this.matches.clear();
    }
    return log;
  }

  /** @internal */
  remove(log: MemoryLog): void {
    if (this.logs.get(log.name) === log) this.logs.delete(log.name);
    this.matches.clear();
  }

  /** @internal */
  consumersChanged(delta: number): void {
    this.consumerCount += delta;
    this.onConsumers?.(delta);
  }
}

class MemoryLog implements MessageLog {
  subjects: readonly string[] = [];
  private maxAgeMs = Infinity;
  private maxBytes = Infinity;
  /** Stored messages from index `head` on, with contiguous seqs (trimming only ever removes the oldest). */
  private msgs: Stored[] = [];
  private head = 0;
  private bytes = 0;
  lastSeq = 0;
  private readonly durables = new Map<string, Cursor>();
  private readonly cursors = new Set<Cursor>();
  destroyed = false;

  constructor(
    private readonly owner: MemoryLogs,
    readonly name: string,
    options: LogOptions,
  ) {
    this.configure(options);
  }

  configure(options: LogOptions): void {
    this.subjects = [...options.subjects];
    this.maxAgeMs = options.maxAgeMs ?? Infinity;
    this.maxBytes = options.maxBytes ?? Infinity;
    this.trim(Date.now());
  }

  /** The first stored seq (lastSeq + 1 when empty). */
  get firstSeq(): number {
    const first = this.msgs[this.head];
    return first === undefined ? this.lastSeq + 1 : first.seq;
  }

  get(seq: number): Stored | undefined {
    const first = this.msgs[this.head];
    if (first === undefined || seq < first.seq) return undefined;
    return this.msgs[this.head + (seq - first.seq)];
  }

  /** The seq of the first message stored at or after `at`. */
  seqAt(at: number): number {
    let lo = this.head;
    let hi = this.msgs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.msgs[mid] as Stored).at < at) lo = mid + 1;
      else hi = mid;
    }
    return lo < this.msgs.length ? (this.msgs[lo] as Stored).seq : this.lastSeq + 1;
  }

  append(subject: string, data: Uint8Array, headers: Readonly<Record<string, string>> | undefined): void {
    const at = Date.now();
    let size = subject.length + data.length;
    if (headers !== undefined) for (const k in headers) size += k.length + (headers[k] as string).length;
    this.msgs.push({ seq: ++this.lastSeq, subject, data, headers, at, size });
    this.bytes += size;
    this.trim(at);
    for (const c of this.cursors) c.schedule();
  }

  private trim(now: number): void {
    while (this.head < this.msgs.length) {
      const m = this.msgs[this.head] as Stored;
      if (now - m.at <= this.maxAgeMs && this.bytes <= this.maxBytes) break;
      this.bytes -= m.size;
      this.msgs[this.head] = undefined as unknown as Stored;
      this.head++;
    }
    if (this.head > 1024 && this.head * 2 > this.msgs.length) {
      this.msgs = this.msgs.slice(this.head);
      this.head = 0;
    }
  }

  async consume(options: LogConsumeOptions, handler: (msg: LogMessage) => void): Promise<LogConsumer> {
    if (this.destroyed) throw new TroupeError('UNAVAILABLE', `log ${this.name} was deleted`);
    if (options.filter !== undefined) {
      const why = subjectError(options.filter, true);
      if (why !== undefined) throw new TroupeError('BAD_REQUEST', `invalid filter ${JSON.stringify(options.filter)}: ${why}`);
    }
    this.trim(Date.now());
    let cursor = options.durable === undefined ? undefined : this.durables.get(options.durable);
    if (cursor !== undefined && cursor.filter !== options.filter) {
      throw new TroupeError(
        'BAD_REQUEST',
        `durable ${options.durable} of log ${this.name} follows ${cursor.filter ?? 'the whole log'}, not ${options.filter ?? 'the whole log'}; pick another durable name`,
      );
    }
    if (cursor === undefined) {
      const start = options.start;
      const next = start === 'all' ? this.firstSeq : start === 'new' ? this.lastSeq + 1 : this.seqAt(start.getTime());
      cursor = new Cursor(this, { filter: options.filter, durable: options.durable, next, maxInFlight: options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT });
      if (options.durable !== undefined) this.durables.set(options.durable, cursor);
    }
    this.cursors.add(cursor);
    const consumer = new MemoryLogConsumer(cursor, handler, options.onError);
    cursor.attach(consumer);
    this.owner.consumersChanged(1);
    return consumer;
  }

  /** @internal A consumer stopped: an ephemeral cursor goes with it. */
  detached(cursor: Cursor): void {
    this.owner.consumersChanged(-1);
    if (cursor.idle && cursor.durable === undefined) this.cursors.delete(cursor);
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const c of this.cursors) c.close();
    this.cursors.clear();
    this.durables.clear();
    this.msgs = [];
    this.head = 0;
    this.owner.remove(this);
  }
}

interface CursorSpec {
  filter: string | undefined;
  durable: string | undefined;
  next: number;
  maxInFlight: number;
}

/** A consumer position in a log: one per durable name, or one per ephemeral consumer. */
class Cursor {
  readonly filter: string | undefined;
  readonly durable: string | undefined;
  private readonly maxInFlight: number;
  /** The next seq to look at. */
  private next: number;
  /** Delivered and not acked (durable only), with the consumer that has it. */
  private readonly pending = new Map<number, MemoryLogConsumer>();
  /** Seqs to deliver again, in order, before moving on. */
  private redeliver: number[] = [];
  private readonly seen = new Set<number>();
  /** Consumers receiving now. */
  private readonly attached: MemoryLogConsumer[] = [];
  /** Every consumer not stopped, including those not yet attached. */
  private readonly members = new Set<MemoryLogConsumer>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private rr = 0;
  private scheduled = false;

  constructor(
    private readonly log: MemoryLog,
    spec: CursorSpec,
  ) {
    this.filter = spec.filter;
    this.durable = spec.durable;
    this.next = spec.next;
    this.maxInFlight = spec.maxInFlight;
  }

  get idle(): boolean {
    return this.members.size === 0;
  }

  /** Delivery starts on a later turn: the caller of consume() has its consumer before the first message, as over a socket. */
  attach(c: MemoryLogConsumer): void {
    this.members.add(c);
    setImmediate(() => {
      if (c.stopped || this.log.destroyed) return;
      this.attached.push(c);
      this.schedule();
    });
  }

  detach(c: MemoryLogConsumer): void {
    this.members.delete(c);
    const i = this.attached.indexOf(c);
    if (i >= 0) this.attached.splice(i, 1);
    // What it was given stays pending with it, as on JetStream: its holder may still ack or nak it
    // (a handler finishing after stop). Nothing is in flight here, so nothing else needs giving back.
    this.log.detached(this);
    this.schedule();
  }

  close(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const c of [...this.members]) c.closeQuietly();
    this.attached.length = 0;
  }

  ack(seq: number): void {
    if (this.durable === undefined) return;
    if (this.pending.delete(seq)) {
      this.seen.delete(seq);
      this.schedule();
    }
  }

  nak(seq: number, delayMs: number): void {
    if (this.durable === undefined || !this.pending.delete(seq)) return;
    if (!(delayMs > 0)) {
      this.requeue(seq);
      this.schedule();
      return;
    }
    const t = setTimeout(() => {
      this.timers.delete(t);
      this.requeue(seq);
      this.schedule();
    }, delayMs);
    t.unref?.();
    this.timers.add(t);
  }

  private requeue(seq: number): void {
    this.seen.add(seq);
    let i = this.redeliver.length;
    while (i > 0 && (this.redeliver[i - 1] as number) > seq) i--;
    this.redeliver.splice(i, 0, seq);
  }

  /** Delivers asynchronously, never inside a publish or an ack. */
  schedule(): void {
    if (this.scheduled || this.attached.length === 0) return;
    this.scheduled = true;
    queueMicrotask(this.pump);
  }

  private readonly pump = (): void => {
    this.scheduled = false;
    const start = performance.now();
    for (let n = 1; this.attached.length > 0 && !this.log.destroyed; n++) {
      if (this.durable !== undefined && this.pending.size >= this.maxInFlight) return;
      if (n % 64 === 0 && performance.now() - start > YIELD_AFTER_MS) {
        this.scheduled = true;
        setImmediate(this.pump);
        return;
      }
      const msg = this.take();
      if (msg === undefined) return;
      const consumer = this.attached[this.rr++ % this.attached.length] as MemoryLogConsumer;
      if (this.durable !== undefined) this.pending.set(msg.seq, consumer);
      consumer.deliver(new MemoryLogMessage(this, msg, this.seen.has(msg.seq)));
    }
  };

  /** The next message to deliver: redeliveries first, then the next matching one. */
  private take(): Stored | undefined {
    while (this.redeliver.length > 0) {
      const m = this.log.get(this.redeliver.shift() as number);
      if (m !== undefined) return m; // else it aged out meanwhile
    }
    this.next = Math.max(this.next, this.log.firstSeq);
    while (this.next <= this.log.lastSeq) {
      const m = this.log.get(this.next++);
      if (m !== undefined && (this.filter === undefined || subjectMatches(this.filter, m.subject))) return m;
    }
    return undefined;
  }
}

class MemoryLogConsumer implements LogConsumer {
  stopped = false;

  constructor(
    private readonly cursor: Cursor,
    private readonly handler: (msg: LogMessage) => void,
    private readonly onError: ((err: TroupeError) => void) | undefined,
  ) {}

  deliver(msg: LogMessage): void {
    try {
      this.handler(msg);
    } catch (e) {
      process.emitWarning(`troupe: log consumer handler threw: ${(e as Error)?.message ?? String(e)}`);
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.cursor.detach(this);
  }

  /** The log was deleted: delivery ends. */
  closeQuietly(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.cursor.detach(this);
    this.onError?.(new TroupeError('UNAVAILABLE', 'the log was deleted'));
  }
}

class MemoryLogMessage implements LogMessage {
  constructor(
    private readonly cursor: Cursor,
    private readonly m: Stored,
    readonly redelivered: boolean,
  ) {}
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
    return this.m.at;
  }
  header(name: string): string | undefined {
    return this.m.headers === undefined ? undefined : this.m.headers[name];
  }
  ack(): void {
    this.cursor.ack(this.m.seq);
  }
  nak(delayMs = 0): void {
    this.cursor.nak(this.m.seq, delayMs);
  }
  /** No ack wait on the memory network (see {@link MemoryLogs}): nothing to restart. */
  inProgress(): void {}
  readonly ackWaitMs = undefined;
}
