import { TroupeError, toTroupeError } from '../errors';
import type { Logger } from '../logger';
import { clockMs } from '../clock';
import type { RuntimeStats } from '../plane/stats';
import type { ActorInstance, BrokenKind, FailureThreshold } from './instance';

/**
 * How a spawn's replicas are restarted when they fail (`SpawnOptions.restart`):
 * `'never'` (the default) or an Akka-style backoff supervisor. A replica is
 * restarted when its `onStart` throws and when a running instance breaks (a
 * handler called `ctx.fail`, threw a TroupeError with `data: { fatal: true }`,
 * passed the `failures` threshold, or the instance was stuck). A restart
 * builds a fresh actor through DI with a new instance id. `attempts` is the
 * number of restarts in a row (Akka's `maxNrOfRetries`); the count goes back
 * to 0 once an instance has served for `resetAfterMs`. The n-th restart in a
 * row waits `min(backoffMs × 2^(n-1), maxBackoffMs)`.
 *
 * @example
 * await runtime.spawn(Decode, { namespace: 'llm', replicas: 2, restart: { attempts: 5, backoffMs: 200, maxBackoffMs: 10_000, resetAfterMs: 60_000 } });
 */
export interface RestartPolicy {
  /** Restarts in a row before the supervisor gives up (>= 1). */
  attempts: number;
  /** Wait before the first restart in a row, ms; doubled at each further one. */
  backoffMs: number;
  /** Cap of the wait, ms (default 30 s). */
  maxBackoffMs?: number;
  /** An instance that served this long resets the restart count, ms (default 60 s). */
  resetAfterMs?: number;
}

/**
 * `restart` of a spawn: `'never'` or a {@link RestartPolicy}.
 *
 * @example
 * const restart: RestartOption = process.env.PROD ? { attempts: 5, backoffMs: 200 } : 'never';
 */
export type RestartOption = 'never' | RestartPolicy;

type ResolvedPolicy = Required<RestartPolicy>;

const DEFAULT_MAX_BACKOFF_MS = 30_000;
const DEFAULT_RESET_AFTER_MS = 60_000;
/** How long a broken instance's in-flight work may finish before it is stopped (a stuck one gets none). */
const BROKEN_GRACE_MS = 1_000;

function checkPositiveInt(name: string, v: unknown, min: number): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new TroupeError('BAD_REQUEST', `${name} must be an integer >= ${min}, got ${String(v)}`);
}

/** Checks a `restart` option: undefined for `'never'`, the policy with defaults otherwise; BAD_REQUEST naming what is wrong. */
export function resolveRestart(v: unknown): ResolvedPolicy | undefined {
  if (v === undefined || v === 'never') return undefined;
  if (v === null || typeof v !== 'object') {
    throw new TroupeError('BAD_REQUEST', `restart must be 'never' or { attempts, backoffMs, maxBackoffMs?, resetAfterMs? }, got ${JSON.stringify(v)}`);
  }
  const p = v as Partial<RestartPolicy>;
  const r: ResolvedPolicy = {
    attempts: p.attempts as number,
    backoffMs: p.backoffMs as number,
    maxBackoffMs: p.maxBackoffMs ?? Math.max(DEFAULT_MAX_BACKOFF_MS, p.backoffMs ?? 0),
    resetAfterMs: p.resetAfterMs ?? DEFAULT_RESET_AFTER_MS,
  };
  checkPositiveInt('restart.attempts', r.attempts, 1);
  checkPositiveInt('restart.backoffMs', r.backoffMs, 0);
  checkPositiveInt('restart.maxBackoffMs', r.maxBackoffMs, r.backoffMs);
  checkPositiveInt('restart.resetAfterMs', r.resetAfterMs, 1);
  return r;
}

/** Checks a `failures` option ({ count, withinMs }); BAD_REQUEST naming what is wrong. */
export function resolveFailures(v: unknown): FailureThreshold | undefined {
  if (v === undefined) return undefined;
  if (v === null || typeof v !== 'object') throw new TroupeError('BAD_REQUEST', `failures must be { count, withinMs }, got ${JSON.stringify(v)}`);
  const f = v as Partial<FailureThreshold>;
  checkPositiveInt('failures.count', f.count, 1);
  checkPositiveInt('failures.withinMs', f.withinMs, 1);
  return { count: f.count as number, withinMs: f.withinMs as number };
}

/** What a replica's supervisor needs of the runtime. */
export interface ReplicaHost {
  /** A fresh actor and instance (new instance id) through DI; throws on a construction error (never retried). */
  build(): ActorInstance;
  /** Makes a started instance routable. */
  register(instance: ActorInstance): Promise<void>;
  /** Withdraws an instance from discovery (resolves whatever the registry says). */
  deregister(instance: ActorInstance): Promise<unknown>;
  /** Stops an instance within `graceMs` (its in-flight work is then aborted). */
  stop(instance: ActorInstance, graceMs: number): Promise<void>;
  /** The replica's instance changed (a restart) or is gone (`next` undefined: given up). */
  replaced(old: ActorInstance, next: ActorInstance | undefined): void;
  readonly stats: RuntimeStats;
  readonly logger: Logger;
  /** The component's name, for messages. */
  readonly component: string;
  /** The spawn's restart policy (undefined: never restart). */
  readonly policy: ResolvedPolicy | undefined;
}

/** What a {@link Replica} holds only once it restarts or stops. */
class RestartState {
  /** Restarts in a row (reset once an instance served `resetAfterMs`). */
  restarts = 0;
  stopped = false;
  backoff: { timer: NodeJS.Timeout; resolve: () => void } | undefined = undefined;
  restarting: Promise<void> | undefined = undefined;
}

/**
 * The supervisor of one replica slot of a spawn: starts it (retrying a
 * throwing `onStart` per the policy), and when its instance breaks,
 * withdraws it from discovery, stops it and starts a fresh one after the
 * backoff — or gives up, logs it at error and counts it. A new instance id
 * per restart, as an Orleans grain gets a new activation: callers holding
 * the old id (direct calls, open streams) learn it is gone (`NO_INSTANCES`,
 * `INSTANCE_LOST`, migration) instead of reaching fresh state that knows
 * nothing of them, and discovery shows the old record leave and the new one
 * join. Internal.
 */
export class Replica {
  /** The serving instance; undefined before the first start and after a give-up. */
  current: ActorInstance | undefined;
  /** Its restart state, made at its first restart or stop: a replica that never broke (most of 100,000) holds none (−24 B each). */
  private more: RestartState | undefined;

  private get restarts(): number {
    return this.more?.restarts ?? 0;
  }
  private set restarts(v: number) {
    (this.more ??= new RestartState()).restarts = v;
  }
  private get stopped(): boolean {
    return this.more?.stopped ?? false;
  }
  private get backoff(): RestartState['backoff'] {
    return this.more?.backoff;
  }
  private set backoff(v: RestartState['backoff']) {
    (this.more ??= new RestartState()).backoff = v;
  }
  /** A restart under way (withdraw, stop, backoff, start, register). */
  private get restarting(): Promise<void> | undefined {
    return this.more?.restarting;
  }
  private set restarting(v: Promise<void> | undefined) {
    (this.more ??= new RestartState()).restarting = v;
  }

  constructor(
    /** The replica's index in its spawn (0-based), for messages. */
    readonly index: number,
    private readonly host: ReplicaHost,
  ) {}

  /** The spawn's restart policy (its host's: one for all the replicas of a spawn). */
  private get policy(): ResolvedPolicy | undefined {
    return this.host.policy;
  }

  /**
   * Builds and starts the replica's first instance, retrying a throwing
   * `onStart` per the policy (a fresh actor each time); rejects with the
   * last error once the attempts are used up. Not registered: the spawn
   * registers its replicas together; `flush` false leaves the server round
   * trip to the spawn (one for all its replicas).
   */
  async start(flush = true): Promise<ActorInstance> {
    for (;;) {
      const instance = this.host.build();
      try {
        await instance.start(flush);
      } catch (err) {
        const e = toTroupeError(err);
        const delay = this.nextDelay();
        if (delay === undefined || this.stopped) throw err;
        this.host.logger.warn(
          `onStart of ${this.host.component} replica ${this.index} threw; restarting in ${delay} ms (restart ${this.restarts} of ${this.policy?.attempts})`,
          {
            instance: instance.info.instanceId,
            code: e.code,
            error: e.message,
          },
        );
        await this.sleep(delay);
        if (this.stopped) throw err;
        this.host.stats.instancesRestarted++;
        continue;
      }
      this.adopt(instance);
      return instance;
    }
  }

  /** No more restarts; waits for one under way (its instance is then stopped by the caller through {@link current}). */
  async stop(): Promise<void> {
    (this.more ??= new RestartState()).stopped = true;
    if (this.backoff) {
      clearTimeout(this.backoff.timer);
      this.backoff.resolve();
    }
    await this.restarting;
  }

  private adopt(instance: ActorInstance): void {
    this.current = instance;
    instance.supervisor = this;
  }

  /** Told by an adopted instance that it broke (once): withdraws, stops and maybe replaces it. */
  broke(instance: ActorInstance, reason: TroupeError, kind: BrokenKind): void {
    this.restarting ??= this.onBroken(instance, reason, kind).finally(() => {
      this.restarting = undefined;
    });
  }

  /** The wait before the next restart in a row, or undefined when the supervisor must give up. */
  private nextDelay(): number | undefined {
    const p = this.policy;
    if (!p) return undefined;
    // Since the last adopted instance started serving (0: none yet).
    const startedAt = this.current?.startedMs ?? 0;
    if (startedAt > 0 && clockMs() - startedAt >= p.resetAfterMs) this.restarts = 0;
    if (this.restarts >= p.attempts) return undefined;
    this.restarts++;
    return Math.min(p.backoffMs * 2 ** (this.restarts - 1), p.maxBackoffMs);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.backoff = undefined;
        resolve();
      }, ms);
      this.backoff = { timer, resolve };
    });
  }

  private async onBroken(old: ActorInstance, reason: TroupeError, kind: BrokenKind): Promise<void> {
    const h = this.host;
    const id = old.info.instanceId;
    // Out of discovery first: callers' routers drop it while it refuses what still reaches it.
    await h.deregister(old).catch(() => undefined);
    await h.stop(old, kind === 'stuck' ? 0 : BROKEN_GRACE_MS).catch(() => undefined);
    // The spawn is stopping (or the runtime closing): no restart, and no give-up to report.
    if (this.stopped) return this.gone(old);
    let delay = this.nextDelay();
    const fields = { instance: id, kind, error: reason.message };
    if (delay === undefined) {
      this.giveUp(old, this.policy ? `after ${this.policy.attempts} restarts in a row` : "(restart: 'never')", fields);
      return;
    }
    h.logger.warn(
      `${h.component} instance ${id} (replica ${this.index}) is broken (${kind}); restarting with a fresh actor in ${delay} ms (restart ${this.restarts} of ${this.policy?.attempts})`,
      fields,
    );
    for (;;) {
      await this.sleep(delay);
      if (this.stopped) return this.gone(old);
      let next: ActorInstance;
      try {
        next = h.build();
        await next.start();
      } catch (err) {
        const e = toTroupeError(err);
        if (this.stopped) return this.gone(old);
        delay = this.nextDelay();
        if (delay === undefined) {
          this.giveUp(old, `onStart kept failing: ${e.message}`, fields);
          return;
        }
        h.logger.warn(`onStart of ${h.component} replica ${this.index} threw on restart; retrying in ${delay} ms`, { code: e.code, error: e.message });
        continue;
      }
      if (this.stopped) {
        await h.stop(next, 0).catch(() => undefined);
        return this.gone(old);
      }
      this.adopt(next);
      h.replaced(old, next);
      h.stats.instancesRestarted++;
      await h.register(next).catch((err: unknown) => {
        h.logger.error(`restarted ${h.component} instance ${next.info.instanceId} could not register; it serves its queue groups only`, {
          error: toTroupeError(err).message,
        });
      });
      h.logger.warn(`${h.component} replica ${this.index} restarted: instance ${id} replaced by ${next.info.instanceId}`, {
        instance: next.info.instanceId,
        replaced: id,
      });
      return;
    }
  }

  private giveUp(old: ActorInstance, why: string, fields: Record<string, unknown>): void {
    this.host.stats.restartGiveUps++;
    this.host.logger.error(
      `${this.host.component} replica ${this.index} is down for good: instance ${old.info.instanceId} broke and is not restarted ${why}`,
      fields,
    );
    this.gone(old);
  }

  private gone(old: ActorInstance): void {
    this.current = undefined;
    this.host.replaced(old, undefined);
  }
}

const MESSAGE_REPLICAS = 5;

/**
 * The one error of a spawn whose replicas failed to start: the code of the
 * first failure, every failed replica and its error in `data.failed`.
 *
 * @example
 * const e = spawnFailure('decode', 3, [{ replica: 1, error: new TroupeError('INTERNAL', 'no GPU') }]);
 */
export function spawnFailure(component: string, replicas: number, failed: ReadonlyArray<{ replica: number; error: unknown }>): TroupeError {
  const errors = failed.map((f) => ({ replica: f.replica, error: toTroupeError(f.error) }));
  const first = errors[0] as { replica: number; error: TroupeError };
  // The message names a few; `data.failed` has them all (a spawn of 1,000 with a bad config must not log a megabyte).
  const shown = errors.slice(0, MESSAGE_REPLICAS).map((f) => `replica ${f.replica}: ${f.error.message}`);
  if (errors.length > MESSAGE_REPLICAS) shown.push(`and ${errors.length - MESSAGE_REPLICAS} more`);
  const list = shown.join('; ');
  return new TroupeError(first.error.code, `spawn of ${component} failed: ${errors.length} of ${replicas} replicas did not start (${list})`, {
    cause: failed[0]?.error,
    data: { failed: errors.map((f) => ({ replica: f.replica, error: { code: f.error.code, message: f.error.message } })) },
  });
}
