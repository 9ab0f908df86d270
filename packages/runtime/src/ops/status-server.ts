import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AggregatorRegistry, type Registry } from 'prom-client';
import { TroupeError } from '../errors';

/**
 * Where a runtime's status server listens (`RuntimeOptions.status`, or the
 * `TROUPE_STATUS_PORT` / `TROUPE_STATUS_HOST` environment).
 *
 * @example
 * await Runtime.connect({ status: { port: 9464 } }); // GET http://127.0.0.1:9464/metrics
 */
export interface StatusOptions {
  /** TCP port; 0 picks a free one (read it back from `runtime.statusAddress`). */
  port: number;
  /** Interface to bind; default `127.0.0.1` (metrics are not for the whole network unless you say so). */
  host?: string;
}

/** One runtime's health, as `/health` reports it. */
export interface RuntimeHealth {
  /** Whether this runtime is ready to serve (every check below passes). */
  ready: boolean;
  runtime: string;
  nats: { connected: boolean; server: string };
  /** The process lease; null without discovery or before the first registration. */
  lease: { current: boolean; ageMs: number; ttlMs: number } | null;
  instances: InstanceHealth[];
}

/** One instance's health. */
export interface InstanceHealth {
  namespace: string;
  component: string;
  instanceId: string;
  /** Started and not stopping. */
  serving: boolean;
  /** Its records are in the registry (always true without discovery). */
  registered: boolean;
  /** Every canary check of its endpoints passed (true when none is declared). */
  healthy: boolean;
  endpoints: Array<{ name: string; subject: string; status: 'ok' | 'failing' | 'unchecked'; lastError?: string }>;
}

/** What a runtime gives the status server. */
export interface StatusSource {
  readonly registry: Registry;
  health(): RuntimeHealth;
}

/** Checks status options; throws `BAD_REQUEST` on anything else. */
export function checkStatusOptions(o: unknown): StatusOptions {
  if (o === null || typeof o !== 'object') throw new TroupeError('BAD_REQUEST', `status must be { port, host? }, got ${String(o)}`);
  const { port, host } = o as Partial<StatusOptions>;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new TroupeError('BAD_REQUEST', `status.port must be an integer 0..65535, got ${String(port)}`);
  }
  if (host !== undefined && (typeof host !== 'string' || host.length === 0))
    throw new TroupeError('BAD_REQUEST', `status.host must be a non-empty string, got ${String(host)}`);
  return { port, host: host ?? '127.0.0.1' };
}

/** The status options from `TROUPE_STATUS_PORT` / `TROUPE_STATUS_HOST`, or undefined. */
export function statusFromEnv(env: NodeJS.ProcessEnv = process.env): StatusOptions | undefined {
  const raw = env['TROUPE_STATUS_PORT'];
  if (raw === undefined || raw === '') return undefined;
  const port = Number(raw);
  if (!/^\d+$/.test(raw)) throw new TroupeError('BAD_REQUEST', `TROUPE_STATUS_PORT must be a port number, got ${raw}`);
  return checkStatusOptions({ port, host: env['TROUPE_STATUS_HOST'] || undefined });
}

// A listening port belongs to the process, not to one runtime: runtimes of one
// process that ask for the same fixed port share its server (the merge below),
// and it closes with the last of them. Port 0 always gets a server of its own.
const shared = new Map<string, StatusServer>();

/**
 * The opt-in HTTP status server: `/metrics` (Prometheus text), `/live`
 * (the process is up), `/health` (JSON; 503 when a runtime is not ready).
 * Built on `node:http`: three GET routes need no framework. Internal; a
 * runtime attaches with {@link StatusServer.attach}.
 */
export class StatusServer {
  private readonly sources = new Set<StatusSource>();
  private readonly server: Server;
  private listening: Promise<AddressInfo>;

  private constructor(
    private readonly key: string | undefined,
    options: StatusOptions,
  ) {
    this.server = createServer((req, res) => void this.route(req, res));
    this.listening = new Promise<AddressInfo>((resolve, reject) => {
      this.server.once('error', (err) =>
        reject(new TroupeError('UNAVAILABLE', `status server cannot listen on ${options.host}:${options.port}: ${err.message}`, { cause: err })),
      );
      this.server.listen(options.port, options.host, () => resolve(this.server.address() as AddressInfo));
    });
  }

  /** Attaches a runtime (starting or sharing a server); resolves with the address and a detach function. */
  static async attach(options: StatusOptions, source: StatusSource): Promise<{ address: AddressInfo; detach: () => Promise<void> }> {
    const key = options.port === 0 ? undefined : `${options.host}:${options.port}`;
    let server = key === undefined ? undefined : shared.get(key);
    if (!server) {
      server = new StatusServer(key, options);
      if (key !== undefined) shared.set(key, server);
    }
    const s = server;
    let address: AddressInfo;
    try {
      address = await s.listening;
    } catch (err) {
      if (key !== undefined) shared.delete(key);
      throw err;
    }
    s.sources.add(source);
    return { address, detach: () => s.detach(source) };
  }

  private async detach(source: StatusSource): Promise<void> {
    this.sources.delete(source);
    if (this.sources.size > 0) return;
    if (this.key !== undefined) shared.delete(this.key);
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, ['text/plain', 'GET only\n']);
    try {
      switch (path) {
        case '/metrics':
          return send(res, 200, ['text/plain; version=0.0.4; charset=utf-8', await this.metrics()]);
        case '/live':
          return send(res, 200, ['application/json', '{"status":"live"}\n']);
        case '/health': {
          const runtimes = [...this.sources].map((s) => s.health());
          const ready = runtimes.length > 0 && runtimes.every((r) => r.ready);
          return send(res, ready ? 200 : 503, ['application/json', `${JSON.stringify({ status: ready ? 'ready' : 'unavailable', runtimes })}\n`]);
        }
        default:
          return send(res, 404, ['text/plain', 'routes: /metrics /health /live\n']);
      }
    } catch (err) {
      return send(res, 500, ['text/plain', `${(err as Error).message}\n`]);
    }
  }

  /** One runtime: its registry; several: summed per label set (prom-client's cluster aggregation). */
  private async metrics(): Promise<string> {
    const regs = [...this.sources].map((s) => s.registry);
    if (regs.length === 1) return (regs[0] as Registry).metrics();
    const all = await Promise.all(regs.map((r) => r.getMetricsAsJSON()));
    return AggregatorRegistry.aggregate(all).metrics();
  }
}

function send(res: ServerResponse, status: number, [type, body]: [string, string]): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}
