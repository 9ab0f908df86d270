/**
 * Counters of one runtime's stream machinery: how often streams broke, were
 * migrated, and what liveness cost in messages. A snapshot comes from
 * `runtime.stats()`.
 *
 * @example
 * const { streamsMigrated, streamsLost } = runtime.stats();
 */
export interface RuntimeStats {
  /** Streams this runtime's clients re-issued to another instance after INSTANCE_LOST (the `migrate` option). */
  streamsMigrated: number;
  /** Stream attempts of this runtime's clients that ended in INSTANCE_LOST (migrated or not). */
  streamsLost: number;
  /** Liveness probes this runtime's clients sent to silent instances (one message per instance, naming its silent streams). */
  probesSent: number;
  /** Heartbeat messages this runtime's instances sent (one per caller runtime per interval, naming every open stream). */
  heartbeatsSent: number;
  /**
   * Unary calls this runtime's clients sent again to another instance because
   * the one picked never took them (its mailbox had no responders, or it was
   * stopping and refused): each is a routing decision made on a stale list.
   */
  callsRerouted: number;
  /** Stream handlers this runtime aborted because their caller was gone (its inbox had no subscriber, or no longer knew the stream). */
  callersLost: number;
  /** Times this runtime's clients found a silent stream's instance busy (its beat thread reports a blocked event loop) and kept waiting instead of failing it: once per busy spell. */
  busyWaits: number;
  /** Instances replaced by their supervisor after they broke (declared, too many failures, stuck) or their `onStart` threw. */
  instancesRestarted: number;
  /** Replicas whose supervisor gave up (restart attempts used up, or no restart policy): they stay down. */
  restartGiveUps: number;
  /** Handlers logged as still running well past their deadline (they ignore `ctx.signal`). */
  handlersOverdue: number;
  /** Instances withdrawn because their mailbox made no progress for `stuckAfterMs`. */
  instancesStuck: number;
}

/** Fresh zeroed counters (one set per plane). */
export function newRuntimeStats(): RuntimeStats {
  return {
    streamsMigrated: 0,
    streamsLost: 0,
    probesSent: 0,
    heartbeatsSent: 0,
    callsRerouted: 0,
    callersLost: 0,
    busyWaits: 0,
    instancesRestarted: 0,
    restartGiveUps: 0,
    handlersOverdue: 0,
    instancesStuck: 0,
  };
}
