/**
 * Child processes of the orchestrator: forked compiled JS, every wait
 * bounded with a message naming the child and its last output lines, every
 * child killed by pid in `stop()`, on SIGINT/SIGTERM and at exit.
 */
import { type ChildProcess, fork } from 'node:child_process';
import type { ToChild, ToParent } from './ipc';

const TAIL_LINES = 30;
/** A child asked to stop gets this long to close its connections (and write a CPU profile) before SIGKILL. */
const STOP_GRACE_MS = 10_000;
const KILL_WAIT_MS = 3_000;

const live = new Set<Child>();

/** What a child gets: its job (JSON in argv[2]) and extra node flags (e.g. `--cpu-prof`). */
export interface ForkOptions {
  job: unknown;
  execArgv?: string[];
}

/**
 * One forked child. Its stdout and stderr are kept as a tail for error
 * messages (and echoed when `BENCH_VERBOSE` is set).
 */
export class Child {
  readonly pid: number;
  private readonly proc: ChildProcess;
  private readonly tail: string[] = [];
  private readonly inbox: ToParent[] = [];
  private readonly waiters = new Set<() => void>();
  private exitInfo: string | undefined;
  readonly exited: Promise<void>;

  private constructor(
    readonly label: string,
    file: string,
    opts: ForkOptions,
  ) {
    const { job, execArgv = [] } = opts;
    this.proc = fork(file, [JSON.stringify(job)], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], execArgv });
    if (this.proc.pid === undefined) throw new Error(`could not fork ${label} (${file})`);
    this.pid = this.proc.pid;
    live.add(this);
    for (const stream of [this.proc.stdout, this.proc.stderr]) {
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => this.record(chunk));
    }
    this.proc.on('message', (m: ToParent) => {
      this.inbox.push(m);
      this.wake();
    });
    this.exited = new Promise<void>((resolve) => {
      this.proc.once('exit', (code, signal) => {
        this.exitInfo = `exited with code ${code}, signal ${signal}`;
        live.delete(this);
        resolve();
        this.wake();
      });
      this.proc.once('error', (err) => {
        this.exitInfo ??= `failed: ${err.message}`;
        this.wake();
      });
    });
  }

  static fork(label: string, file: string, opts: ForkOptions): Child {
    return new Child(label, file, opts);
  }

  /**
   * Resolves with the child's first message of `type`; rejects at once on
   * its `error` message or its exit, and after `timeoutMs` otherwise.
   */
  waitFor<T extends ToParent['type']>(type: T, timeoutMs: number, what: string): Promise<Extract<ToParent, { type: T }>> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const i = this.inbox.findIndex((m) => m.type === type || m.type === 'error');
        if (i >= 0) {
          const m = this.inbox.splice(i, 1)[0] as ToParent;
          done();
          if (m.type === 'error') reject(new Error(`${this.label} (pid ${this.pid}): ${m.message}${this.tailText()}`));
          else resolve(m as Extract<ToParent, { type: T }>);
        } else if (this.exitInfo !== undefined) {
          done();
          reject(new Error(`${this.label} (pid ${this.pid}) ${this.exitInfo} before ${what}${this.tailText()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.label} (pid ${this.pid}) did not report ${what} within ${timeoutMs} ms; it may be hung${this.tailText()}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Sends a message to the child (false when its channel is closed). */
  send(msg: ToChild): boolean {
    if (this.exitInfo !== undefined || !this.proc.connected) return false;
    try {
      return this.proc.send(msg);
    } catch {
      return false;
    }
  }

  /** Asks the child to close and exit; SIGKILL by pid if it has not within the grace period. Never rejects. */
  async stop(graceMs = STOP_GRACE_MS): Promise<void> {
    if (this.exitInfo === undefined && this.proc.connected) {
      try {
        this.proc.send({ type: 'stop' } satisfies ToChild);
      } catch {
        // channel already closed: the kill below covers it
      }
    }
    if (await settles(this.exited, graceMs)) return;
    process.stderr.write(`bench: ${this.label} (pid ${this.pid}) did not exit within ${graceMs} ms of stop; killing it\n`);
    this.kill();
    if (!(await settles(this.exited, KILL_WAIT_MS))) {
      process.stderr.write(`bench: ${this.label} (pid ${this.pid}) still there ${KILL_WAIT_MS} ms after SIGKILL\n`);
    }
  }

  /** SIGKILL by pid, synchronously (safe in exit handlers). */
  kill(): void {
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  private record(chunk: string): void {
    for (const line of chunk.split('\n')) {
      if (!line) continue;
      this.tail.push(line);
      if (this.tail.length > TAIL_LINES) this.tail.shift();
      if (process.env['BENCH_VERBOSE']) process.stderr.write(`[${this.label}] ${line}\n`);
    }
  }

  private tailText(): string {
    return this.tail.length === 0 ? '' : `\n--- last output of ${this.label} ---\n${this.tail.join('\n')}`;
  }
}

function settles(p: Promise<void>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    void p.then(() => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/** Kills every live child by pid; synchronous, for exit and signal handlers. */
export function killAllChildren(): void {
  for (const c of live) c.kill();
  live.clear();
}

/** How many children are alive (the orchestrator checks it is 0 at the end). */
export function liveChildren(): number {
  return live.size;
}
