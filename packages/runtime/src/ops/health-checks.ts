import { EndpointClient } from '../caller/client';
import type { EndpointMeta, ResolvedHealthCheck } from '../component/decorators';
import { toTroupeError } from '../errors';
import type { Logger } from '../logger';
import type { Plane } from '../plane/plane';
import { endpointAddress } from '../wire/subjects';
import type { ActorInstance } from '../worker/instance';

/** What the checker asks of the runtime when an instance turns unhealthy or healthy again. */
export interface HealthHooks {
  /** Withdraws the instance from discovery (it keeps its mailbox, so checks still reach it). */
  withdraw(instance: ActorInstance): Promise<void>;
  /** Registers it again. */
  restore(instance: ActorInstance): Promise<void>;
}

/** The checker's state of one endpoint of one instance. */
interface Check {
  readonly instance: ActorInstance;
  readonly ep: EndpointMeta;
  readonly hc: ResolvedHealthCheck;
  readonly client: EndpointClient;
  /** The endpoint's request count when last looked at: a change means real traffic. */
  seen: number;
  /** Since when it has been idle (or since the last check). */
  quietSince: number;
  running: boolean;
}

/**
 * Canary health checks (`@endpoint({ healthCheck })`), as Dynamo has them:
 * the runtime sends an endpoint's payload to its own instance's mailbox when
 * the endpoint has been idle for `intervalMs` (traffic is proof enough while
 * it flows), and every `intervalMs` while the instance is unhealthy. An
 * error or no answer within `timeoutMs` marks the instance unhealthy and
 * withdraws it from discovery (routers stop sending it work); a check that
 * passes again registers it again. One timer per runtime. Internal.
 */
export class HealthChecker {
  private readonly checks = new Map<string, Check[]>();
  private timer: NodeJS.Timeout | undefined;
  private tickMs = 1_000;

  constructor(
    private readonly plane: Plane,
    private readonly hooks: HealthHooks,
    private readonly logger: Logger,
  ) {}

  /** Starts checking an instance's endpoints that declare a check (once it serves). */
  add(instance: ActorInstance): void {
    const list: Check[] = [];
    const { namespace, instanceId } = instance.info;
    for (const ep of instance.component.endpoints.values()) {
      const hc = ep.healthCheck;
      if (!hc) continue;
      const client = new EndpointClient(this.plane, endpointAddress(namespace, instance.component.name, ep.name), instanceId, { router: 'queue' });
      list.push({ instance, ep, hc, client, seen: instance.meterOf(ep.name)?.requests ?? 0, quietSince: Date.now(), running: false });
      // A quarter of the shortest interval: a check starts at most that late.
      this.tickMs = Math.min(this.tickMs, Math.max(10, Math.floor(hc.intervalMs / 4)));
    }
    if (list.length === 0) return;
    this.checks.set(instanceId, list);
    if (this.timer) clearInterval(this.timer);
    this.timer = setInterval(() => this.tick(), this.tickMs);
    this.timer.unref();
  }

  /** Stops checking an instance (it stops). */
  remove(instanceId: string): void {
    this.checks.delete(instanceId);
    if (this.checks.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  close(): void {
    this.checks.clear();
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    const t = Date.now();
    for (const list of this.checks.values()) {
      for (const c of list) {
        if (c.running || !c.instance.serving) continue;
        const m = c.instance.meterOf(c.ep.name);
        const unhealthy = c.instance.checks.get(c.ep.name)?.ok === false;
        if (m && !unhealthy && (m.requests !== c.seen || m.inFlight > 0)) {
          c.seen = m.requests;
          c.quietSince = t;
          continue;
        }
        if (t - c.quietSince >= c.hc.intervalMs) void this.run(c);
      }
    }
  }

  private async run(c: Check): Promise<void> {
    c.running = true;
    let error: string | undefined;
    try {
      await this.probe(c);
    } catch (err) {
      error = `${toTroupeError(err).code}: ${toTroupeError(err).message}`;
    }
    c.running = false;
    c.quietSince = Date.now();
    c.seen = c.instance.meterOf(c.ep.name)?.requests ?? c.seen;
    if (!this.checks.has(c.instance.info.instanceId)) return; // stopped meanwhile
    await this.record(c, error);
  }

  /** Sends the payload; resolves when the answer (or a stream's first item or end) arrives in time. */
  private async probe(c: Check): Promise<void> {
    const { payload, timeoutMs } = c.hc;
    if (!c.ep.stream) {
      await c.client.call(payload, { timeout: timeoutMs });
      return;
    }
    // The first item (or the end) within the stream's deadline proves the instance serves; breaking cancels the rest.
    for await (const _ of c.client.stream(payload, { timeout: timeoutMs })) break;
  }

  private async record(c: Check, error: string | undefined): Promise<void> {
    const i = c.instance;
    const wasHealthy = healthy(i);
    i.checks.set(c.ep.name, error === undefined ? { ok: true, at: Date.now() } : { ok: false, lastError: error, at: Date.now() });
    const isHealthy = healthy(i);
    if (wasHealthy === isHealthy) return;
    const fields = { namespace: i.info.namespace, component: i.info.component, instance: i.info.instanceId, endpoint: c.ep.name };
    try {
      if (isHealthy) {
        this.logger.info('canary health check passes again; registering the instance again', fields);
        await this.hooks.restore(i);
      } else {
        this.logger.warn('canary health check failed; withdrawing the instance from discovery', { ...fields, error });
        await this.hooks.withdraw(i);
      }
    } catch (err) {
      this.logger.warn('registry change after a health check failed', { ...fields, error: toTroupeError(err).message });
    }
  }
}

function healthy(i: ActorInstance): boolean {
  for (const c of i.checks.values()) if (!c.ok) return false;
  return true;
}
