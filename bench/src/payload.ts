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
} as const;
