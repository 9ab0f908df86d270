/**
 * Real worker processes for fault tests: a child `node` process that hosts
 * Troupe instances and reports over IPC. Tests kill them by pid (kill -9),
 * freeze them (SIGSTOP) and resume them, like production crashes.
 *
 * Parent side: {@link WorkerProcess.start}. Child side: {@link serveWorker}.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { withTimeout } from '@troupe/runtime/internal';

/** What a worker process reports once it serves. */
export interface WorkerReady {
  type: 'ready';
  instanceIds: string[];
  [key: string]: unknown;
}

/** Any message a worker process sends (`ready`, or test-specific reports). */
export type WorkerMessage = WorkerReady | { type: string; [key: string]: unknown };

const livePids = new Set<number>();
let hooksInstalled = false;

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  // Synchronous: it runs from 'exit', where nothing async completes.
  process.on('exit', () => {
    for (const pid of livePids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

/** Options of {@link WorkerProcess.start}. */
export interface WorkerProcessOptions {
  /** Arguments after the script path. */
  args?: string[];
  /** Extra environment (merged over this process's). */
  env?: Record<string, string>;
  /** Bound on the `ready` report; default 10000 ms. */
  readyTimeoutMs?: number;
}

/**
 * A worker child process started from a compiled script that calls
 * {@link serveWorker}.
 *
 * @example
 * const w = await WorkerProcess.start(require.resolve('./fixtures/echo-worker'), { env: { NATS_URL: ns.url } });
 * await w.kill('SIGKILL');
 */
export class WorkerProcess {
  readonly messages: WorkerMessage[] = [];
  private exited: Promise<number | null>;
  private exitCode: number | null | undefined;
  private output = '';

  private constructor(
    readonly child: ChildProcess,
    readonly ready: WorkerReady,
  ) {
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
      else child.once('exit', (code) => resolve(code));
    });
    void this.exited.then((code) => {
      this.exitCode = code;
      if (child.pid) livePids.delete(child.pid);
    });
  }

  /** Starts the script and waits (bounded) for its `ready` report. */
  static async start(script: string, options: WorkerProcessOptions = {}): Promise<WorkerProcess> {
    installExitHooks();
    const child = fork(script, options.args ?? [], {
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    if (child.pid) livePids.add(child.pid);
    let output = '';
    child.stdout?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-8_000)));
    child.stderr?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-8_000)));
    const messages: WorkerMessage[] = [];
    const timeout = options.readyTimeoutMs ?? 10_000;
    const ready = await new Promise<WorkerReady>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`worker ${script} did not report ready within ${timeout} ms; output:\n${output}`));
      }, timeout);
      child.on('message', (m: WorkerMessage) => {
        messages.push(m);
        if (m.type === 'ready') {
          clearTimeout(timer);
          resolve(m as WorkerReady);
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`worker ${script} exited (${code ?? signal}) before it was ready; output:\n${output}`));
      });
    });
    const w = new WorkerProcess(child, ready);
    w.messages.push(...messages);
    child.on('message', (m: WorkerMessage) => w.messages.push(m));
    child.stdout?.on('data', (d: Buffer) => (w.output = (w.output + d.toString()).slice(-8_000)));
    child.stderr?.on('data', (d: Buffer) => (w.output = (w.output + d.toString()).slice(-8_000)));
    w.output = output;
    return w;
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** The last ~8 KB the worker printed. */
  get log(): string {
    return this.output;
  }

  /** Sends a signal by pid (SIGSTOP, SIGCONT, ...). */
  signal(sig: NodeJS.Signals): void {
    if (this.exitCode === undefined) process.kill(this.pid, sig);
  }

  /** Sends a signal and waits (bounded) for the process to exit. */
  async kill(sig: NodeJS.Signals = 'SIGKILL', timeoutMs = 5_000): Promise<void> {
    if (this.exitCode !== undefined) return;
    try {
      process.kill(this.pid, sig);
    } catch {
      return;
    }
    if (sig === 'SIGSTOP' || sig === 'SIGCONT') return;
    await this.waitExit(timeoutMs);
  }

  /** Asks the worker to close its runtime gracefully and exit; SIGKILL after the bound. */
  async stop(timeoutMs = 10_000): Promise<void> {
    if (this.exitCode !== undefined) return;
    try {
      process.kill(this.pid, 'SIGCONT');
      this.child.send({ type: 'stop' });
    } catch {
      // channel closed: the process is exiting anyway
    }
    try {
      await this.waitExit(timeoutMs);
    } catch {
      await this.kill('SIGKILL');
    }
  }

  /** Sends a test-specific command to the worker. */
  send(message: { type: string; [key: string]: unknown }): void {
    this.child.send(message);
  }

  /** Waits (bounded) for a message of `type` from the worker. */
  async waitFor(type: string, timeoutMs = 5_000): Promise<WorkerMessage> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const m = this.messages.find((x) => x.type === type);
      if (m) return m;
      if (Date.now() > until) throw new Error(`worker ${this.pid} sent no '${type}' message within ${timeoutMs} ms; output:\n${this.output}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  private async waitExit(timeoutMs: number): Promise<void> {
    await withTimeout(this.exited, timeoutMs, () => {
      throw new Error(`worker ${this.pid} did not exit within ${timeoutMs} ms`);
    });
  }
}

/**
 * Child side: run `setup` (connect a runtime, spawn instances), report
 * `ready` with the instance ids, close gracefully on a `stop` message or
 * SIGTERM. `onMessage` receives test-specific commands.
 *
 * @example
 * serveWorker(async () => {
 *   const rt = await Runtime.connect({ servers: process.env.NATS_URL });
 *   const h = await rt.spawn(Echo, { namespace: process.env.NS! });
 *   return { runtime: rt, instanceIds: [...h.instanceIds] };
 * });
 */
export function serveWorker(
  setup: () => Promise<{ runtime: { close(): Promise<void> }; instanceIds: string[]; extra?: Record<string, unknown> }>,
  onMessage?: (m: { type: string; [key: string]: unknown }) => void,
): void {
  if (!process.send) throw new Error('serveWorker must run in a child process started with IPC (WorkerProcess.start)');
  setup().then(
    ({ runtime, instanceIds, extra }) => {
      const close = (): void => {
        void runtime.close().then(() => process.exit(0));
      };
      process.on('message', (m: { type: string }) => {
        if (m.type === 'stop') close();
        else onMessage?.(m);
      });
      process.once('SIGTERM', close);
      process.once('disconnect', () => process.exit(0));
      process.send?.({ type: 'ready', instanceIds, ...extra });
    },
    (err: unknown) => {
      console.error('worker setup failed:', err);
      process.exit(1);
    },
  );
}
