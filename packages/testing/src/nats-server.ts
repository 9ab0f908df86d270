/**
 * Real `nats-server` child processes for tests, modelled on nats.js's `nst`
 * harness: OS-assigned ports read back from a ports file, restart on the same
 * port, signals (SIGSTOP/SIGCONT), clusters, and cleanup by pid even when a
 * test fails. Nothing here imports `@troupe/runtime`, so the harness keeps
 * working while the runtime is broken.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

/** Debian's package location; these machines run 2.9.10. */
const DEFAULT_BIN = '/usr/sbin/nats-server';
const HOST = '127.0.0.1';
const LOG_LINES = 100;
const DEFAULT_START_TIMEOUT_MS = 5_000;
/** JetStream flushes its store on SIGTERM; a healthy 2.9 server exits in milliseconds. */
const STOP_GRACE_MS = 3_000;
/** SIGKILL cannot be ignored, so this only covers the kernel tearing the process down. */
const KILL_WAIT_MS = 2_000;
const SIGNAL_WAIT_MS = 1_000;
const DEFAULT_FORM_TIMEOUT_MS = 10_000;
/** No event says "the port is free again": back off briefly, bounded by the start deadline. */
const PORT_RETRY_DELAY_MS = 100;
/** Pre-picked cluster ports can be taken by someone else before the server binds them. */
const CLUSTER_ATTEMPTS = 3;

/**
 * Why the harness failed; every message names what did not happen and ends
 * with the server's last log lines.
 *
 * @example
 * try { await NatsServer.start(); } catch (e) { if (e instanceof NatsServerError && e.code === 'START_TIMEOUT') ... }
 */
export const NatsServerErrorCode = {
  START_FAILED: 'START_FAILED',
  START_TIMEOUT: 'START_TIMEOUT',
  ADDRESS_IN_USE: 'ADDRESS_IN_USE',
  STOP_TIMEOUT: 'STOP_TIMEOUT',
  SIGNAL_TIMEOUT: 'SIGNAL_TIMEOUT',
  CLUSTER_TIMEOUT: 'CLUSTER_TIMEOUT',
  MISUSE: 'MISUSE',
} as const;

/** One of {@link NatsServerErrorCode}'s values. */
export type NatsServerErrorCode = (typeof NatsServerErrorCode)[keyof typeof NatsServerErrorCode];

/**
 * The harness's one error class. Deliberately not `TroupeError`: harness
 * failures never cross the wire, and the harness must not load the runtime.
 *
 * @example
 * throw new NatsServerError('START_TIMEOUT', 'nats-server (pid 12) did not write its ports file in 5000 ms');
 */
export class NatsServerError extends Error {
  override readonly name = 'NatsServerError';
  readonly code: NatsServerErrorCode;

  constructor(code: NatsServerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

/**
 * Options for {@link NatsServer.start}.
 *
 * @example
 * await NatsServer.start({ jetstream: true, config: 'max_payload: 2MB' });
 */
export interface NatsServerOptions {
  /** Enable JetStream with a fresh temp `store_dir` that survives `restart()`. */
  jetstream?: boolean;
  /** Extra nats-server config text appended to the generated file (later keys win). */
  config?: string;
  /** Client port; leave unset for an OS-assigned one. `restart()` uses it to keep the port. */
  port?: number;
  /** Extra command-line arguments, e.g. `['-DV']` for protocol tracing. */
  args?: string[];
  /** Bound on each start (ports file written and TCP answering); default 5000 ms. */
  startTimeoutMs?: number;
  /** Cluster membership; {@link NatsServer.cluster} fills this in. */
  cluster?: ClusterMembership;
}

/**
 * One node's cluster settings: its route listen port and its peers' route ports.
 *
 * @example
 * await NatsServer.start({ cluster: { name: 'c1', port: 40001, routes: [40002, 40003] } });
 */
export interface ClusterMembership {
  name: string;
  port: number;
  routes: number[];
}

/**
 * Options for {@link NatsServer.cluster}: every node gets the same server options.
 *
 * @example
 * await NatsServer.cluster(3, { jetstream: true, formTimeoutMs: 15_000 });
 */
export interface NatsClusterOptions extends Omit<NatsServerOptions, 'port' | 'cluster'> {
  /** Bound on every node reporting n-1 routes; default 10000 ms. */
  formTimeoutMs?: number;
}

// Module-level registry so cleanup works by pid even when a test throws
// before its `finally`, or the test process is interrupted.
const livePids = new Set<number>();
const liveDirs = new Set<string>();
const liveServers = new Set<NatsServer>();
let hooksInstalled = false;

/**
 * A real `nats-server` child process on loopback with an OS-assigned port.
 * Its child and pipes are unref'd, so a test that forgets `stop()` still lets
 * its process exit; the exit hook then kills the server by pid.
 *
 * @example
 * const ns = await NatsServer.start({ jetstream: true });
 * try { await connect({ servers: ns.url }); } finally { await ns.stop(); }
 */
export class NatsServer {
  /** Unique per server; JetStream clusters require one. */
  readonly serverName: string;
  /** JetStream store directory, kept across `restart()`; undefined without JetStream. */
  readonly storeDir: string | undefined;

  private readonly options: NatsServerOptions;
  private readonly tmpDir: string;
  private readonly portsDir: string;
  private readonly configPath: string;
  private readonly log: string[] = [];
  private running = false;
  private removed = false;
  private closed: Promise<void> = Promise.resolve();
  private currentPid = 0;
  private clientPort = -1;
  private monitorPort = -1;

  private constructor(options: NatsServerOptions) {
    this.options = { ...options };
    this.serverName = `troupe-${randomBytes(4).toString('hex')}`;
    this.tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'troupe-nats-'));
    liveDirs.add(this.tmpDir);
    liveServers.add(this);
    this.portsDir = path.join(this.tmpDir, 'ports');
    this.configPath = path.join(this.tmpDir, 'nats-server.conf');
    this.storeDir = options.jetstream ? path.join(this.tmpDir, 'jetstream') : undefined;
    if (options.port !== undefined) this.clientPort = options.port;
    installExitHooks();
  }

  /**
   * Starts a server and resolves once its ports file is written and its
   * client port sends the INFO line; rejects (and cleans up) otherwise.
   *
   * @example
   * const ns = await NatsServer.start();
   */
  static async start(options: NatsServerOptions = {}): Promise<NatsServer> {
    const server = new NatsServer(options);
    try {
      await server.launch(options.port !== undefined);
    } catch (err) {
      await server.stop().catch(() => undefined);
      throw err;
    }
    return server;
  }

  /**
   * Starts `n` routed servers and resolves once every node reports n-1 routes.
   *
   * @example
   * const c = await NatsServer.cluster(3);
   * try { await connect({ servers: c.urls }); } finally { await c.stop(); }
   */
  static cluster(n: number, options: NatsClusterOptions = {}): Promise<NatsCluster> {
    return NatsCluster.start(n, options);
  }

  /** Process id of the current incarnation (changes on restart). */
  get pid(): number {
    return this.currentPid;
  }

  /** Client port; stays the same across `restart()`. */
  get port(): number {
    return this.clientPort;
  }

  /** Client URL, e.g. `nats://127.0.0.1:41234`. */
  get url(): string {
    return `nats://${HOST}:${this.clientPort}`;
  }

  /** Monitoring endpoint base URL (`/varz`, `/connz`, `/routez`, `/jsz`). */
  get monitorUrl(): string {
    return `http://${HOST}:${this.monitorPort}`;
  }

  /**
   * The last (up to 100) lines the server wrote to stdout/stderr, for error messages.
   *
   * @example
   * assert.ok(ok, `server never saw the client:\n${ns.logTail()}`);
   */
  logTail(lines = LOG_LINES): string {
    return this.log.slice(-lines).join('\n');
  }

  /**
   * GETs a monitoring endpoint and parses its JSON, bounded by `timeoutMs`.
   *
   * @example
   * const { num_routes } = await ns.monitor<{ num_routes: number }>('/routez');
   */
  monitor<T>(endpoint: string, timeoutMs = 1_000): Promise<T> {
    return getJson<T>(`${this.monitorUrl}${endpoint}`, timeoutMs);
  }

  /**
   * SIGTERM, then SIGKILL if it has not exited within 3 s; resolves once the
   * process has exited and its temp dirs (store dir included) are removed.
   *
   * @example
   * afterEach(() => ns.stop());
   */
  async stop(): Promise<void> {
    try {
      await this.halt();
    } finally {
      this.removeDirs();
      liveServers.delete(this);
    }
  }

  /**
   * Sends a terminating signal (default SIGKILL) and resolves once the process
   * has exited. Temp dirs stay, so `restart()` can model a crash and recovery.
   *
   * @example
   * await ns.kill(); await ns.restart();
   */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.running) return;
    this.send(signal);
    if (!(await settlesWithin(this.closed, KILL_WAIT_MS))) {
      throw this.error('STOP_TIMEOUT', `did not exit within ${KILL_WAIT_MS} ms of ${signal}`);
    }
  }

  /**
   * Sends any signal. For SIGSTOP/SIGCONT it resolves once `/proc` shows the
   * process stopped/resumed, so the next step of a test sees the new state.
   *
   * @example
   * await ns.signal('SIGSTOP'); // frozen: TCP still accepts, nothing answers
   */
  async signal(signal: NodeJS.Signals): Promise<void> {
    if (!this.running) throw this.error('MISUSE', `is not running; cannot send ${signal}`);
    this.send(signal);
    if (signal === 'SIGSTOP') await this.waitForState(true, signal);
    if (signal === 'SIGCONT') await this.waitForState(false, signal);
  }

  /**
   * Stops the process (gracefully) and starts it again on the same client,
   * monitoring and route ports with the same store dir, so JetStream data
   * persists. Retries while the port is briefly in use, within the start bound.
   *
   * @example
   * await ns.restart(); // same ns.url, new ns.pid
   */
  async restart(): Promise<void> {
    if (this.removed) {
      throw this.error('MISUSE', 'was stopped and its temp dirs removed; use kill() to model a crash before restart()');
    }
    await this.halt();
    this.record(`--- restarting on port ${this.clientPort} ---`);
    await this.launch(true);
  }

  /**
   * `retryInUse` is for ports we mean to reuse (restart, an explicit port),
   * which the old socket or another process may hold for a moment. A first
   * start on OS-assigned ports never retries: a clash there is a real error,
   * and a cluster retries with new route ports instead.
   */
  private async launch(retryInUse: boolean): Promise<void> {
    const timeoutMs = this.options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await this.spawnOnce(deadline, timeoutMs);
      } catch (err) {
        const retry = retryInUse && isCode(err, 'ADDRESS_IN_USE') && Date.now() + PORT_RETRY_DELAY_MS < deadline;
        if (!retry) throw err;
        await delay(PORT_RETRY_DELAY_MS);
      }
    }
  }

  private record(line: string): void {
    this.log.push(line);
    if (this.log.length > LOG_LINES) this.log.shift();
  }

  private async spawnOnce(deadline: number, timeoutMs: number): Promise<void> {
    fs.rmSync(this.portsDir, { recursive: true, force: true });
    fs.mkdirSync(this.portsDir, { recursive: true });
    fs.writeFileSync(this.configPath, this.renderConfig());

    const bin = process.env['NATS_SERVER_BIN'] || DEFAULT_BIN;
    const child = spawn(bin, ['-c', this.configPath, ...(this.options.args ?? [])], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const pid = child.pid;
    // Only this attempt's lines decide ADDRESS_IN_USE; the ring spans restarts.
    const attempt: string[] = [];
    const onLine = (line: string): void => {
      this.record(line);
      attempt.push(line);
    };
    forEachLine(child.stdout, onLine);
    forEachLine(child.stderr, onLine);
    let spawnError: Error | undefined;
    this.closed = new Promise<void>((resolve) => {
      child.once('error', (err) => {
        spawnError = err;
        if (pid === undefined) resolve(); // a failed spawn may never emit 'close'
      });
      child.once('close', () => resolve());
    }).then(() => {
      this.running = false;
      if (pid !== undefined) livePids.delete(pid);
    });
    if (pid === undefined) {
      await this.closed;
      throw new NatsServerError('START_FAILED', `could not run ${bin} (set NATS_SERVER_BIN): ${spawnError?.message}`, {
        cause: spawnError,
      });
    }
    this.currentPid = pid;
    this.running = true;
    livePids.add(pid);
    child.unref();
    unrefStream(child.stdout);
    unrefStream(child.stderr);

    try {
      const ports = await this.waitForPortsFile(child, deadline, timeoutMs);
      this.clientPort = portOf(ports.nats?.[0]);
      this.monitorPort = portOf(ports.monitoring?.[0]);
      await readInfo(this.clientPort, Math.max(100, deadline - Date.now()));
    } catch (err) {
      await this.halt().catch(() => undefined);
      if (err instanceof NatsServerError) {
        const inUse = attempt.some((l) => l.includes('address already in use'));
        throw inUse ? new NatsServerError('ADDRESS_IN_USE', err.message, { cause: err }) : err;
      }
      throw this.error('START_TIMEOUT', `did not answer INFO on ${this.url} within ${timeoutMs} ms`, err);
    }
  }

  private waitForPortsFile(child: ChildProcess, deadline: number, timeoutMs: number): Promise<Ports> {
    return new Promise<Ports>((resolve, reject) => {
      const finish = (err: Error | undefined, ports?: Ports): void => {
        watcher.close();
        clearInterval(poll);
        clearTimeout(timer);
        child.off('close', onClose);
        if (err) reject(err);
        else resolve(ports as Ports);
      };
      const check = (): void => {
        const ports = readPortsFile(this.portsDir, this.currentPid);
        if (ports) finish(undefined, ports);
      };
      // 'close' (not 'exit') so the log tail in the message includes the fatal line.
      const onClose = (code: number | null, signal: string | null): void =>
        finish(this.error('START_FAILED', `exited (code ${code}, signal ${signal}) before writing its ports file`));
      // The watcher is the event; the poll covers file systems where fs.watch misses writes.
      const watcher = fs.watch(this.portsDir, check);
      const poll = setInterval(check, 50);
      const timer = setTimeout(
        () => finish(this.error('START_TIMEOUT', `did not write its ports file within ${timeoutMs} ms`)),
        Math.max(0, deadline - Date.now()),
      );
      child.once('close', onClose);
      check();
    });
  }

  private renderConfig(): string {
    const lines = [
      '# generated by @troupe/testing',
      `server_name: ${q(this.serverName)}`,
      `host: ${q(HOST)}`,
      `port: ${this.clientPort}`,
      `http: ${q(`${HOST}:${this.monitorPort}`)}`,
      `ports_file_dir: ${q(this.portsDir)}`,
    ];
    if (this.storeDir) lines.push(`jetstream { store_dir: ${q(this.storeDir)} }`);
    const cluster = this.options.cluster;
    if (cluster) {
      const routes = cluster.routes.map((p) => q(`nats-route://${HOST}:${p}`)).join(', ');
      lines.push(`cluster { name: ${q(cluster.name)}, listen: ${q(`${HOST}:${cluster.port}`)}, routes: [${routes}] }`);
    }
    if (this.options.config) lines.push(this.options.config);
    return `${lines.join('\n')}\n`;
  }

  private async halt(): Promise<void> {
    if (!this.running) return this.closed;
    this.send('SIGCONT'); // a SIGSTOPped process would hold SIGTERM until resumed
    this.send('SIGTERM');
    if (await settlesWithin(this.closed, STOP_GRACE_MS)) return;
    this.send('SIGKILL');
    if (!(await settlesWithin(this.closed, KILL_WAIT_MS))) {
      throw this.error('STOP_TIMEOUT', `did not exit within ${STOP_GRACE_MS + KILL_WAIT_MS} ms of SIGTERM and SIGKILL`);
    }
  }

  private send(signal: NodeJS.Signals): void {
    try {
      process.kill(this.currentPid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }

  private async waitForState(stopped: boolean, signal: string): Promise<void> {
    await until(() => (isStopped(this.currentPid) === stopped ? true : undefined), {
      timeoutMs: SIGNAL_WAIT_MS,
      intervalMs: 5,
      onTimeout: () => this.error('SIGNAL_TIMEOUT', `was not ${stopped ? 'stopped' : 'resumed'} ${SIGNAL_WAIT_MS} ms after ${signal}`),
    });
  }

  private removeDirs(): void {
    if (this.removed) return;
    this.removed = true;
    fs.rmSync(this.tmpDir, { recursive: true, force: true });
    liveDirs.delete(this.tmpDir);
  }

  private error(code: NatsServerErrorCode, what: string, cause?: unknown): NatsServerError {
    const tail = this.logTail(20) || '(no output)';
    return new NatsServerError(code, `nats-server (pid ${this.currentPid}, port ${this.clientPort}) ${what}; last log lines:\n${tail}`, {
      cause,
    });
  }
}

/**
 * A set of routed servers on loopback; see {@link NatsServer.cluster}.
 *
 * @example
 * const c = await NatsServer.cluster(3);
 * await c.servers[0]!.kill(); await c.servers[0]!.restart(); await c.formed();
 */
export class NatsCluster {
  readonly servers: readonly NatsServer[];

  /** Wraps servers already started; {@link NatsCluster.start} is the usual door. */
  constructor(servers: readonly NatsServer[]) {
    this.servers = servers;
  }

  /**
   * Route ports must be known before any node starts (each node lists all
   * peers), so they are picked by binding port 0; another process may take
   * one first, in which case the whole cluster is retried on new ports.
   *
   * @example
   * const c = await NatsCluster.start(3, { jetstream: true });
   */
  static async start(n: number, options: NatsClusterOptions = {}): Promise<NatsCluster> {
    if (!Number.isInteger(n) || n < 2) {
      throw new NatsServerError('MISUSE', `a cluster needs at least 2 nodes, got ${n}`);
    }
    const { formTimeoutMs, ...serverOptions } = options;
    const name = `troupe-${randomBytes(4).toString('hex')}`;
    for (let attempt = 1; ; attempt++) {
      const routePorts = await freePorts(n);
      const results = await Promise.allSettled(
        routePorts.map((port, i) => NatsServer.start({ ...serverOptions, cluster: { name, port, routes: routePorts.filter((_, j) => j !== i) } })),
      );
      const servers = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
      if (failures.length === 0) {
        const cluster = new NatsCluster(servers);
        try {
          await cluster.formed(formTimeoutMs);
        } catch (err) {
          await cluster.stop().catch(() => undefined);
          throw err;
        }
        return cluster;
      }
      await Promise.allSettled(servers.map((s) => s.stop()));
      if (attempt >= CLUSTER_ATTEMPTS || !failures.every((f) => isCode(f, 'ADDRESS_IN_USE'))) throw failures[0];
    }
  }

  /**
   * Client URLs of every node, in `servers` order.
   *
   * @example
   * await connect({ servers: c.urls });
   */
  get urls(): string[] {
    return this.servers.map((s) => s.url);
  }

  /**
   * Resolves once every node's `/routez` reports n-1 routes; use it again
   * after restarting a node.
   *
   * @example
   * await c.servers[1]!.restart(); await c.formed();
   */
  async formed(timeoutMs = DEFAULT_FORM_TIMEOUT_MS): Promise<void> {
    const want = this.servers.length - 1;
    let seen: number[] = [];
    await until(
      async () => {
        seen = await Promise.all(
          this.servers.map((s) =>
            s.monitor<{ num_routes?: number }>('/routez').then(
              (r) => r.num_routes ?? 0,
              () => -1,
            ),
          ),
        );
        return seen.every((x) => x === want) ? true : undefined;
      },
      {
        timeoutMs,
        intervalMs: 50,
        onTimeout: () =>
          new NatsServerError(
            'CLUSTER_TIMEOUT',
            `cluster did not form within ${timeoutMs} ms: wanted ${want} routes per node, /routez said [${seen.join(', ')}] ` +
              `(-1 = no answer) for ports [${this.servers.map((s) => s.port).join(', ')}]`,
          ),
      },
    );
  }

  /**
   * Stops every node (in parallel); rejects with the first failure after all were tried.
   *
   * @example
   * try { ... } finally { await c.stop(); }
   */
  async stop(): Promise<void> {
    const results = await Promise.allSettled(this.servers.map((s) => s.stop()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}

/**
 * Stops every server this process started and has not stopped yet; call it
 * from `after.each` so a failed test cannot leak a server into the next one.
 *
 * @example
 * test.after.each(() => stopAll());
 */
export async function stopAll(): Promise<void> {
  const results = await Promise.allSettled([...liveServers].map((s) => s.stop()));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/** Synchronous on purpose: it runs from `process.on('exit')`, where nothing async completes. */
function killAllSync(): void {
  for (const pid of livePids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  livePids.clear();
  for (const dir of liveDirs) fs.rmSync(dir, { recursive: true, force: true });
  liveDirs.clear();
}

/**
 * The exit hook catches every normal exit (including uvu finishing with a
 * server still up); SIGINT/SIGTERM (Ctrl-C, the runner's timeout) would
 * otherwise kill the test process without running it.
 */
function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', killAllSync);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      killAllSync();
      process.exit(128 + os.constants.signals[signal]);
    });
  }
}

/** The JSON nats-server writes to `<ports_file_dir>/<exe>_<pid>.ports`. */
interface Ports {
  nats?: string[];
  monitoring?: string[];
  cluster?: string[];
}

function readPortsFile(dir: string, pid: number): Ports | undefined {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return undefined;
  }
  const name = names.find((n) => n.endsWith(`_${pid}.ports`));
  if (!name) return undefined;
  try {
    const ports = JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8')) as Ports;
    return ports.nats?.length ? ports : undefined;
  } catch {
    return undefined; // caught mid-write; the next change event reads it whole
  }
}

function portOf(url: string | undefined): number {
  const port = url ? Number(new URL(url).port) : NaN;
  if (!Number.isInteger(port) || port <= 0) throw new NatsServerError('START_FAILED', `ports file has no usable URL: ${url}`);
  return port;
}

/**
 * Connects and reads the INFO line, retrying refused connects until the
 * bound; proves the port is nats-server speaking, not merely bound.
 */
async function readInfo(port: number, timeoutMs: number): Promise<Record<string, unknown>> {
  const deadline = Date.now() + Math.max(0, timeoutMs);
  let lastError: unknown;
  return until(
    () =>
      readInfoOnce(port, Math.max(1, deadline - Date.now())).catch((err: unknown) => {
        lastError = err;
        return undefined;
      }),
    {
      timeoutMs,
      intervalMs: 20,
      onTimeout: () => new Error(`no INFO from ${HOST}:${port}: ${String(lastError)}`),
    },
  );
}

function readInfoOnce(port: number, timeoutMs: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: HOST, port });
    let buffer = '';
    const done = (err: Error | undefined, info?: Record<string, unknown>): void => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(info ?? {});
    };
    const timer = setTimeout(() => done(new Error(`no INFO line within ${timeoutMs} ms`)), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const end = buffer.indexOf('\r\n');
      if (end < 0) return;
      const line = buffer.slice(0, end);
      if (!line.startsWith('INFO ')) return done(new Error(`expected INFO, got ${JSON.stringify(line.slice(0, 80))}`));
      try {
        done(undefined, JSON.parse(line.slice(5)) as Record<string, unknown>);
      } catch (err) {
        done(err as Error);
      }
    });
    socket.on('error', (err) => done(err));
    socket.on('close', () => done(new Error('connection closed before INFO')));
  });
}

/** Distinct free loopback ports: all are held at once so none repeats. */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const s = net.createServer();
          s.once('error', reject);
          s.listen(0, HOST, () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

/** `agent: false` so no keep-alive socket outlives the request. */
function getJson<T>(url: string, timeoutMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`GET ${url}: HTTP ${res.statusCode}`));
        try {
          resolve(JSON.parse(body) as T);
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/** Process state from /proc (Linux); undefined elsewhere, which callers treat as "not stopped". */
function isStopped(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state === 'T' || state === 't';
  } catch {
    return false;
  }
}

/** Polls `probe` until it returns a value; every call site says what it waits for. */
async function until<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  opts: { timeoutMs: number; intervalMs: number; onTimeout: () => Error },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    const left = deadline - Date.now();
    if (left <= 0) throw opts.onTimeout();
    await delay(Math.min(opts.intervalMs, left));
  }
}

/** True if `p` settled within `ms`; the timer is ref'd so the wait itself keeps the process alive. */
function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    p.then(
      () => {
        clearTimeout(timer);
        resolve(true);
      },
      () => {
        clearTimeout(timer);
        resolve(true);
      },
    );
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function forEachLine(stream: NodeJS.ReadableStream | null, onLine: (line: string) => void): void {
  if (!stream) return;
  let rest = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const parts = (rest + chunk).split('\n');
    rest = parts.pop() ?? '';
    for (const part of parts) onLine(part);
  });
  stream.on('end', () => {
    if (rest) onLine(rest);
  });
}

function unrefStream(stream: unknown): void {
  (stream as { unref?: () => void } | null)?.unref?.();
}

function isCode(err: unknown, code: NatsServerErrorCode): boolean {
  return err instanceof NatsServerError && err.code === code;
}

/** nats-server's config format accepts JSON string literals. */
function q(s: string): string {
  return JSON.stringify(s);
}
