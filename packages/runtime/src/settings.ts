import { type DiscoverySettings, REGISTER_WAIT_MS } from './discovery/registry';
import { resolveRouter } from './discovery/routers';
import { availableParallelism } from 'node:os';
import { TroupeError } from './errors';
import type { PlaneSettings } from './plane/plane';

/** What settings are resolved from: the runtime options' plane fields and the discovery switch. */
export type SettingsInput = Partial<PlaneSettings> & { discovery?: false | Partial<DiscoverySettings & { inhibitMs: number }> };

/** Resolved discovery settings, with the inhibition period of failed instances. */
export type ResolvedDiscovery = DiscoverySettings & { inhibitMs: number };

export const DISCOVERY_DEFAULTS: ResolvedDiscovery = {
  heartbeatMs: 1_000,
  leaseTtlMs: 3_000,
  propertyThrottleMs: 100,
  leaveDelayMs: 100,
  inhibitMs: 5_000,
  registerWaitMs: REGISTER_WAIT_MS,
};

export const DEFAULTS: PlaneSettings = {
  router: 'round-robin',
  requestTimeoutMs: 30_000,
  streamTimeoutMs: 300_000,
  // Measured on loopback, 1M x 32-byte items: 512 -> 0.6 M items/s, 1024 -> 0.82 M, 2048 -> 1.1 M
  // (throughput ~ window / credit round trip); 8192 lets a frame hold 4096 small items (fewer
  // writes, messages and credits: ~15-25% less CPU per item on each side, bench/ANALYSIS.md).
  // The byte window bounds memory for large items.
  streamWindow: 8192,
  streamWindowBytes: 1024 * 1024,
  streamHeartbeatMs: 100,
  streamIdleMs: 1_500,
  // 0: a busy worker (alive, its loop blocked) is bounded by the call's own deadline.
  busyLimitMs: 0,
  gracePeriodMs: 10_000,
  dev: false,
  concurrency: 1,
  mailboxCapacity: 1024,
  // 2 × requestTimeoutMs: see resolveSettings.
  stuckAfterMs: 60_000,
  // One core stays with the event loop (actors, heartbeats, I/O).
  threadPoolSize: Math.max(1, availableParallelism() - 1),
  threadAbortGraceMs: 1_000,
  localCalls: true,
};

/**
 * How long one shutdown step waits for the server (a registry delete, a
 * subscription or connection drain, a durable consumer's stop) before it
 * gives up, logs what it could not do and goes on: `runtime.close()` ends
 * within the grace period plus a few of these whatever the server does
 * (dead, frozen, partitioned). A healthy server answers in milliseconds; a
 * shared, loaded one took over 500 ms for a KV delete in our test runs.
 *
 * @example
 * // close() takes at most about gracePeriodMs + 1 s + 5 * SHUTDOWN_STEP_MS (+ leaveDelayMs)
 */
export const SHUTDOWN_STEP_MS = 1_000;

/**
 * The wait of the remaining shutdown steps once the server failed to answer
 * one: it is dead or frozen, so each further step only gets this long.
 *
 * @example
 * // frozen server, nothing in flight: close() ~ SHUTDOWN_STEP_MS + 3 * SHUTDOWN_SILENT_STEP_MS
 */
export const SHUTDOWN_SILENT_STEP_MS = 200;

export function checkPositiveInt(name: string, v: unknown, min: number): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw new TroupeError('BAD_REQUEST', `${name} must be an integer >= ${min}, got ${String(v)}`);
  }
}

export function resolveSettings(options: SettingsInput): PlaneSettings {
  const s: PlaneSettings = {
    requestTimeoutMs: options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs,
    streamTimeoutMs: options.streamTimeoutMs ?? DEFAULTS.streamTimeoutMs,
    streamWindow: options.streamWindow ?? DEFAULTS.streamWindow,
    streamWindowBytes: options.streamWindowBytes ?? DEFAULTS.streamWindowBytes,
    streamHeartbeatMs: options.streamHeartbeatMs ?? DEFAULTS.streamHeartbeatMs,
    streamIdleMs: options.streamIdleMs ?? DEFAULTS.streamIdleMs,
    busyLimitMs: options.busyLimitMs ?? DEFAULTS.busyLimitMs,
    gracePeriodMs: options.gracePeriodMs ?? DEFAULTS.gracePeriodMs,
    dev: options.dev ?? DEFAULTS.dev,
    concurrency: options.concurrency ?? DEFAULTS.concurrency,
    mailboxCapacity: options.mailboxCapacity ?? DEFAULTS.mailboxCapacity,
    threadPoolSize: options.threadPoolSize ?? DEFAULTS.threadPoolSize,
    threadAbortGraceMs: options.threadAbortGraceMs ?? DEFAULTS.threadAbortGraceMs,
    localCalls: options.localCalls ?? DEFAULTS.localCalls,
    router: options.router ?? (options.discovery === false ? 'queue' : DEFAULTS.router),
    // Twice the default budget: a handler that holds its slot that long has ignored its abort
    // signal for a whole budget (the check also requires every running handler to be past its
    // deadline, so a call given a longer budget is never taken for stuck).
    stuckAfterMs: options.stuckAfterMs ?? 2 * (options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs),
  };
  resolveRouter(s.router);
  checkPositiveInt('requestTimeoutMs', s.requestTimeoutMs, 1);
  checkPositiveInt('streamTimeoutMs', s.streamTimeoutMs, 1);
  checkPositiveInt('streamWindow', s.streamWindow, 1);
  checkPositiveInt('streamWindowBytes', s.streamWindowBytes, 1024);
  checkPositiveInt('streamHeartbeatMs', s.streamHeartbeatMs, 10);
  checkPositiveInt('streamIdleMs', s.streamIdleMs, 1);
  if (s.streamIdleMs < 3 * s.streamHeartbeatMs) {
    // Silence is judged against heartbeats: a bound under ~3 intervals reports live workers as lost.
    throw new TroupeError('BAD_REQUEST', `streamIdleMs (${s.streamIdleMs}) must be at least 3 × streamHeartbeatMs (${s.streamHeartbeatMs})`);
  }
  checkPositiveInt('gracePeriodMs', s.gracePeriodMs, 0);
  checkPositiveInt('busyLimitMs', s.busyLimitMs, 0);
  checkPositiveInt('concurrency', s.concurrency, 1);
  checkPositiveInt('mailboxCapacity', s.mailboxCapacity, 0);
  checkPositiveInt('stuckAfterMs', s.stuckAfterMs, 0);
  checkPositiveInt('threadPoolSize', s.threadPoolSize, 1);
  checkPositiveInt('threadAbortGraceMs', s.threadAbortGraceMs, 0);
  if (typeof s.localCalls !== 'boolean') throw new TroupeError('BAD_REQUEST', `localCalls must be true or false, got ${String(s.localCalls)}`);
  return s;
}

/** Discovery settings with defaults applied, checked; undefined when discovery is off. */
export function resolveDiscovery(options: SettingsInput): ResolvedDiscovery | undefined {
  if (options.discovery === false) return undefined;
  const d = { ...DISCOVERY_DEFAULTS, ...options.discovery };
  for (const k of ['heartbeatMs', 'leaseTtlMs', 'propertyThrottleMs', 'inhibitMs', 'registerWaitMs'] as const) checkPositiveInt(`discovery.${k}`, d[k], 1);
  checkPositiveInt('discovery.leaveDelayMs', d.leaveDelayMs, 0);
  if (d.replicas !== undefined && ![1, 3, 5].includes(d.replicas)) {
    throw new TroupeError('BAD_REQUEST', `discovery.replicas must be 1, 3 or 5, got ${String(d.replicas)}`);
  }
  if (d.leaseTtlMs <= d.heartbeatMs) {
    throw new TroupeError('BAD_REQUEST', `discovery.leaseTtlMs (${d.leaseTtlMs}) must exceed heartbeatMs (${d.heartbeatMs})`);
  }
  return d;
}
