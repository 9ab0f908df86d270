import { hostname } from 'node:os';
import type { Logger } from '../logger';
import type { Transport, TransportMessage, TransportSubscription } from '../transport/transport';
import type { ActorInstance } from '../worker/instance';
import { ownMailboxSubject, endpointAddress, queueGroup, queueSubject } from '../wire/subjects';

/** The NATS service API prefix (ADR-32): `$SRV.{PING|INFO|STATS}[.{name}[.{id}]]`. */
export const SERVICE_API_PREFIX = '$SRV';

/** The micro protocol's response types (ADR-32, nats.js `ServiceResponseType`). */
export const MicroType = {
  PING: 'io.nats.micro.v1.ping_response',
  INFO: 'io.nats.micro.v1.info_response',
  STATS: 'io.nats.micro.v1.stats_response',
} as const;

/** Semantic version a micro service must carry (nats.js and nats.go parse it). */
const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;

/** Whether `v` is a semantic version as NATS micro requires. */
export function isSemver(v: unknown): v is string {
  return typeof v === 'string' && SEMVER.test(v);
}

/**
 * The NATS micro service name of a component: `{namespace}_{component}`.
 * Troupe names (`[A-Za-z0-9][A-Za-z0-9_-]*`) already satisfy micro's
 * `^[A-Za-z0-9\-_]+$`, so the join is always a valid name; it is the name
 * Dynamo gives its components' services (`{ns}_{comp}`), so tools written
 * for Dynamo find Troupe workers under the same name. Since `_` may occur in
 * either part the join is not reversible: the exact namespace and component
 * travel in the service metadata.
 *
 * @example
 * microServiceName('llama_8b', 'decode'); // 'llama_8b_decode'
 */
export function microServiceName(namespace: string, component: string): string {
  return `${namespace}_${component}`;
}

/** One instance as a micro service: the instance and its service (made per answer, not kept). */
interface Entry {
  readonly instance: ActorInstance;
  readonly service: Service;
}

/**
 * The instances that report one service: a spawn's, as the runtime keeps them (a restart replaces one
 * in place, a replica given up leaves the list). No entry per instance here: 100,000 idle instances
 * hold no hash-table entry for micro (≈ 37 B each).
 */
export interface MicroGroup {
  readonly instances: readonly ActorInstance[];
}

/** What the instances of one component and version report alike: the service name and version. */
interface Service {
  readonly name: string;
  readonly version: string;
}

const encoder = new TextEncoder();

/**
 * Answers the NATS service protocol for every instance of one runtime, as if
 * each were its own NATS micro service (name {@link microServiceName}, id
 * the instance id). One wildcard subscription per runtime (`$SRV.>`, while
 * it has instances), not per instance; a discovery verb gets one reply per matching instance, as
 * separate micro services would send. Internal; started by the runtime at
 * its first spawn.
 */
export class MicroResponder {
  private sub: TransportSubscription | undefined;
  /** The groups answered for (a spawn's instances each), with their service. */
  private readonly groups = new Map<MicroGroup, Service>();
  private readonly host = hostname();
  private readonly pid = String(process.pid);

  constructor(
    private readonly transport: Transport,
    private readonly runtimeId: string,
    private readonly logger: Logger,
  ) {}

  /**
   * Answers for the instances of `group` from now on (call once they serve), as services named after
   * their component and `version`; whatever the list holds when a request arrives (it is read, not copied).
   */
  add(group: MicroGroup, version: string): void {
    if (this.groups.has(group)) return;
    const first = group.instances[0];
    if (first === undefined) return;
    const { namespace, component } = first.info;
    this.groups.set(group, { name: microServiceName(namespace, component), version });
    this.sub ??= this.transport.subscribe(`${SERVICE_API_PREFIX}.>`, (msg) => this.onRequest(msg));
  }

  /** Stops answering for the instances of `group` (they stop); the subscription goes with the last group, so a runtime without instances holds none. */
  remove(group: MicroGroup): void {
    this.groups.delete(group);
    if (this.groups.size === 0) {
      this.sub?.unsubscribe();
      this.sub = undefined;
    }
  }

  /** Unsubscribes. */
  close(): void {
    this.sub?.unsubscribe();
    this.sub = undefined;
    this.groups.clear();
  }

  private onRequest(msg: TransportMessage): void {
    const reply = msg.reply;
    if (!reply) return;
    const parts = msg.subject.split('.');
    if (parts.length < 2 || parts.length > 4) return;
    const verb = parts[1];
    const name = parts[2];
    const id = parts[3];
    for (const [group, service] of this.groups) {
      if (name !== undefined && service.name !== name) continue;
      // One instance by id: a scan of its spawn's list (a request naming an instance is rare; no index is kept for it).
      const instances = id === undefined ? group.instances : onlyOne(group.instances.find((i) => i.info.instanceId === id));
      if (!this.answer(msg, verb, { service, instances })) return;
    }
  }

  /** Answers `verb` for each of `instances`; false when the verb is not ours or a reply could not be sent (stop answering). */
  private answer(msg: TransportMessage, verb: string | undefined, to: { service: Service; instances: Iterable<ActorInstance> }): boolean {
    const reply = msg.reply as string;
    const service = to.service;
    for (const instance of to.instances) {
      const e: Entry = { instance, service };
      let body: object;
      switch (verb) {
        case 'PING':
          body = this.ping(e);
          break;
        case 'INFO':
          body = this.info(e);
          break;
        case 'STATS':
          body = this.stats(e);
          break;
        default:
          return false; // another verb (a newer protocol): not ours to answer
      }
      try {
        this.transport.publish(reply, encoder.encode(JSON.stringify(body)));
      } catch (err) {
        this.logger.warn('$SRV reply not sent', { subject: msg.subject, error: (err as Error).message });
        return false;
      }
    }
    return true;
  }

  /** Fields every response starts with (ADR-32 `ServiceIdentity`). */
  private identity(e: Entry): { name: string; id: string; version: string; metadata: Readonly<Record<string, string>> } {
    // Built per answer (a discovery verb is rare), not kept per instance.
    const { namespace, component, instanceId } = e.instance.info;
    return {
      name: e.service.name,
      id: instanceId,
      version: e.service.version,
      metadata: { namespace, component, instance_id: instanceId, host: this.host, pid: this.pid, runtime: this.runtimeId, troupe: '1' },
    };
  }

  private ping(e: Entry): object {
    return { type: MicroType.PING, ...this.identity(e) };
  }

  private info(e: Entry): object {
    const { namespace, instanceId } = e.instance.info;
    const meta = e.instance.component;
    return {
      type: MicroType.INFO,
      ...this.identity(e),
      description: `Troupe component ${meta.name} in namespace ${namespace}`,
      endpoints: [...meta.endpoints.values()].map((ep) => {
        const addr = endpointAddress(namespace, meta.name, ep.name);
        return {
          name: ep.name,
          subject: queueSubject(addr),
          queue_group: queueGroup(addr),
          metadata: { mailbox: ownMailboxSubject(addr, instanceId), stream: String(ep.stream) },
        };
      }),
    };
  }

  private stats(e: Entry): object {
    const { namespace } = e.instance.info;
    const meta = e.instance.component;
    const data = e.instance.dynamic;
    return {
      type: MicroType.STATS,
      ...this.identity(e),
      started: e.instance.started,
      endpoints: [...meta.endpoints.values()].map((ep) => {
        const addr = endpointAddress(namespace, meta.name, ep.name);
        const m = e.instance.meterOf(ep.name);
        const requests = m?.requests ?? 0;
        // micro reports durations as integer nanoseconds (Go's time.Duration)
        const processingNs = Math.round((m?.processingMs ?? 0) * 1e6);
        return {
          name: ep.name,
          subject: queueSubject(addr),
          queue_group: queueGroup(addr),
          num_requests: requests,
          num_errors: m?.errors ?? 0,
          last_error: m?.lastError ?? '',
          processing_time: processingNs,
          average_processing_time: requests > 0 ? Math.round(processingNs / requests) : 0,
          data,
        };
      }),
    };
  }
}

const NONE: readonly ActorInstance[] = [];

/** `instance` as a list of one, or none. */
function onlyOne(instance: ActorInstance | undefined): readonly ActorInstance[] {
  return instance === undefined ? NONE : [instance];
}
