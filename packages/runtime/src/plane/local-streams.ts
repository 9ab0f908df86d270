import type { Codec } from '../codec/codec';
import type { TransportMessage } from '../transport/transport';
import { copyValue, sizeValue } from './local-calls';

/**
 * In-process stream frames: a stream whose caller is this runtime (its reply
 * subject is this runtime's own inbox, and local calls are on) gets its
 * frames handed to the caller's inbox directly instead of published, and
 * its data frames carry the items copied as msgpack would deliver them
 * ({@link copyValue}; by reference for an `@endpoint({ immutable: true })`,
 * only measured) instead of encoded. Everything else is the bus's stream
 * protocol unchanged — the request, credit, cancel, stop, probes and
 * heartbeats still travel as messages, frames keep their headers (frame
 * kind, sequence numbers, the instance on the first), and each item's and
 * frame's size is the msgpack size, so the byte window, payload limits and
 * byte counters read as over the bus. A frame is delivered synchronously,
 * so frames never overtake one another or an error frame published after
 * them.
 */

const EMPTY = new Uint8Array(0);

/** What a local frame carries: a data frame's copied items, or another frame's body bytes; and its msgpack size. */
export interface LocalBody {
  /** A data frame's items (the caller's own copies); empty for other frames. */
  readonly items: unknown[];
  /** The msgpack size of the frame's body (the items array), for byte windows and counters. */
  readonly size: number;
  /** The body of a frame without items (an error frame's error), as on the bus; absent for data frames. */
  readonly data?: Uint8Array;
}

/** A frame handed to an in-process caller: the bus message's headers, and its items already copied. */
export class LocalFrame implements TransportMessage {
  readonly reply = undefined;
  readonly noResponders = false;
  readonly data: Uint8Array;
  readonly items: unknown[];
  readonly size: number;

  constructor(
    /** The caller's reply subject. */
    readonly subject: string,
    private readonly headers: Record<string, string>,
    body: LocalBody,
  ) {
    this.items = body.items;
    this.size = body.size;
    this.data = body.data ?? EMPTY;
  }

  header(name: string): string | undefined {
    return this.headers[name];
  }
}

/** A frame without items (start, end, handoff): its body travels as bytes, as on the bus. */
export function localControlFrame(subject: string, headers: Record<string, string>, data: Uint8Array): LocalFrame {
  return new LocalFrame(subject, headers, { items: NO_ITEMS, size: data.length, data });
}

const NO_ITEMS: unknown[] = [];

/**
 * Items of one data frame in the making, copied for an in-process caller:
 * the counterpart of the bus's encoded frame builder, with the same sizes.
 */
export class CopiedItems {
  private items: unknown[] = [];
  /** Encoded bytes pending (without the array header). */
  bytes = 0;

  constructor(
    private readonly codec: Codec,
    /** `@endpoint({ immutable: true })`: items pass by reference, measured only. */
    private readonly immutable: boolean,
  ) {}

  get count(): number {
    return this.items.length;
  }

  /** Copies (or measures) `value`; returns its msgpack size, adding nothing. Throws the codec's error for what it cannot carry. */
  prepare(value: unknown): number {
    if (value === undefined) {
      // As the bus carries an undefined item: nil, which arrives as null.
      this.pending = null;
      return 1;
    }
    const c = this.immutable ? sizeValue(this.codec, value) : copyValue(this.codec, value);
    this.pending = c.value;
    return c.size;
  }

  private pending: unknown;

  /** Adds the item {@link prepare} made, of `size` bytes. */
  add(size: number): void {
    this.items.push(this.pending);
    this.pending = undefined;
    this.bytes += size;
  }

  /** The pending items and their frame's size (array header included); empty again. */
  take(): LocalBody {
    const items = this.items;
    const n = items.length;
    const size = this.bytes + (n < 16 ? 1 : n < 0x10000 ? 3 : 5);
    this.items = [];
    this.bytes = 0;
    return { items, size };
  }
}
