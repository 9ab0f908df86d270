/**
 * What every system sends: one ~100-byte request object (100 bytes as
 * msgpack, 123 as JSON) for the unary cases and ~32-byte items for streams.
 * Moleculer and NestJS carry them with their default JSON serializers; the
 * raw anchors and Troupe with msgpack.
 */

/** The unary request; every echo worker returns it unchanged. */
export interface Payload {
  id: number;
  user: string;
  op: string;
  tags: string[];
  values: number[];
  ok: boolean;
  note: string;
}

export const PAYLOAD: Payload = Object.freeze({
  id: 123456,
  user: 'ada@example.com',
  op: 'echo',
  tags: ['alpha', 'beta'],
  values: [1.5, 2.25],
  ok: true,
  note: 'brown fox',
}) as Payload;

/**
 * The unary request grown to about `bytes` of msgpack (its `note` padded):
 * PAYLOAD itself for 100 bytes, for the heap cases' 10 KB bodies.
 *
 * @example
 * payloadOf(10 * 1024).note.length // ~10,150
 */
export function payloadOf(bytes: number): Payload {
  const pad = bytes - 100;
  return pad <= 0 ? PAYLOAD : (Object.freeze({ ...PAYLOAD, note: PAYLOAD.note + 'x'.repeat(pad) }) as Payload);
}

/** One stream item: its index (to count loss and duplicates) and padding. */
export interface Item {
  i: number;
  p: string;
}

/** 21 characters: `{i: <uint32>, p: PAD}` is 32 bytes of msgpack. */
const PAD = 'x'.repeat(21);

export function makeItem(i: number): Item {
  return { i, p: PAD };
}

/** Request of a stream endpoint: how many items to send. */
export interface StreamRequest {
  n: number;
}

/** Subjects and names the workers serve (one namespace, so runs never cross). */
export const NAMES = {
  /** Troupe namespace and component of the bench worker. */
  troupeNamespace: 'bench',
  troupeComponent: 'bench',
  rawEcho: 'bench.raw.echo',
  rawItems: 'bench.raw.items',
  rawFirst: 'bench.raw.first',
  rawQueue: 'bench-raw',
  moleculerService: 'bench',
  nestEcho: 'bench.nest.echo',
  /** Troupe's control component of the event and discovery cases (publishes the events, spawns probes). */
  troupeControl: 'bench_ctl',
  /** The component spawned and stopped by the discovery case. */
  troupeProbe: 'bench_probe',
  /** The component spawned 10,000 times and stopped by the lifecycle case. */
  troupeLife: 'bench_life',
  /** The event name of the event cases (Troupe: `bench.bench_ctl._ev.tick`). */
  event: 'tick',
  rawEvent: 'bench.raw.ev.tick',
  rawEventControl: 'bench.raw.ev.run',
} as const;

/**
 * One broadcast event of the event cases (100 bytes of msgpack): the run it
 * belongs to, its index in the run and `t`, when it was published, in ms on
 * the host's wall clock with µs precision ({@link wallMs}), read by the
 * subscriber process against the same clock.
 */
export interface EventPayload {
  run: number;
  i: number;
  t: number;
  user: string;
  op: string;
  tags: string[];
  note: string;
}

export function makeEvent(run: number, i: number): EventPayload {
  return { run, i, t: wallMs(), user: 'ada@example.com', op: 'tick', tags: ['alpha', 'beta'], note: 'brown fox jumps over dog' };
}

/**
 * Epoch ms with µs precision, comparable across processes of this host:
 * `performance.timeOrigin` is the wall clock at process start, `now()` the
 * monotonic time since.
 */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

/** What the publisher of an event run does: `paced` (n events, one per interval) or `flood` (as fast as it can for a window, flushing every `flushEvery`). */
export type PublishSpec =
  { run: number; mode: 'paced'; n: number; intervalMs: number } | { run: number; mode: 'flood'; durationMs: number; flushEvery: number };

/** The publisher's account of a run: events sent and how long it took, ms. */
export interface PublishReport {
  sent: number;
  ms: number;
}

/** Troupe's discovery case: the instance a spawn made and when the spawn resolved ({@link wallMs} of the worker). */
export interface SpawnReport {
  id: string;
  resolvedAt: number;
}
