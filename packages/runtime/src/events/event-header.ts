import { checkHeader } from '../wire/header-grammar';
import { H } from '../wire/protocol';
import type { HeaderBlock, Headers } from '../transport/transport';

/** Blocks written per slab: a slab holds about a hundred. */
const SLAB_BYTES = 8 * 1024;
/**
 * Where every publisher's blocks are written, one after the other (one
 * slab for the process, not one per publisher: 100,000 instances may each
 * publish once); replaced, never reused, when full.
 */
const slabs = { slab: new Uint8Array(0), used: 0 };

/** `\r\n\r\n` and room for two numbers of up to 20 digits and the space between them. */
const NUMBERS_ROOM = 4 + 20 + 1 + 20;

/**
 * The `Troupe-Event: {publisher} {seq} {time}` header of one publisher,
 * encoded once up to the publisher and completed per event with the two
 * numbers: no header string, record or name check per event.
 *
 * @example
 * const line = new EventHeader('9f3c0a7e12b4d8e1');
 * transport.publish(subject, body, { headerBlock: line.stamp(7, Date.now()) });
 */
export class EventHeader implements HeaderBlock {
  /** `NATS/1.0\r\nTroupe-Event: {publisher} ` as bytes. */
  private readonly start: Buffer;
  private seq = 0;
  private time = 0;

  constructor(readonly publisher: string) {
    checkHeader(H.EVENT, publisher);
    this.start = Buffer.from(`NATS/1.0\r\n${H.EVENT}: ${publisher} `, 'utf8');
  }

  /** Sets the numbers of the next block; returns this. */
  stamp(seq: number, time: number): this {
    this.seq = seq;
    this.time = time;
    return this;
  }

  /**
   * Fresh bytes each call (the transport may hold them until the socket
   * write), cut from a shared slab: a view per event, no
   * buffer allocated per event.
   */
  block(): Uint8Array {
    const start = this.start;
    let slab = slabs.slab;
    let at = slabs.used;
    if (at + start.length + NUMBERS_ROOM > slab.length) {
      slab = slabs.slab = new Uint8Array(Math.max(SLAB_BYTES, start.length + NUMBERS_ROOM));
      at = 0;
    }
    const from = at;
    slab.set(start, at);
    at = writeDigits(slab, at + start.length, this.seq);
    // ` {time}\r\n\r\n`, written once per clock reading (a flood repeats one millisecond hundreds of times).
    const tail = this.time === clock.time ? clock : tick(this.time);
    const bytes = tail.bytes;
    for (let i = 0; i < tail.length; i++) slab[at + i] = bytes[i] as number;
    at += tail.length;
    slabs.used = at;
    return slab.subarray(from, at);
  }

  record(): Headers {
    return { [H.EVENT]: `${this.publisher} ${this.seq} ${this.time}` };
  }
}

/** The end of the last block written, shared by every publisher: ` {time}\r\n\r\n` for the last time stamped. */
const clock = { time: Number.NaN, bytes: new Uint8Array(NUMBERS_ROOM), length: 0 };

/** Makes {@link clock} say `time`. */
function tick(time: number): typeof clock {
  const out = clock.bytes;
  out[0] = 32; // ' '
  let at = writeDigits(out, 1, time);
  out[at++] = 13;
  out[at++] = 10;
  out[at++] = 13;
  out[at++] = 10;
  clock.time = time;
  clock.length = at;
  return clock;
}

/** Writes a non-negative safe integer in decimal at `at`; returns the end. */
function writeDigits(out: Uint8Array, at: number, n: number): number {
  if (!(n >= 0 && Number.isSafeInteger(n))) {
    // Never for a sequence or a clock reading; written as text all the same.
    const text = String(n);
    for (let i = 0; i < text.length; i++) out[at + i] = text.charCodeAt(i) & 0x7f;
    return at + text.length;
  }
  let len = 1;
  for (let x = n; x >= 10; x = Math.floor(x / 10)) len++;
  for (let i = at + len - 1; i >= at; i--) {
    out[i] = 48 + (n % 10);
    n = Math.floor(n / 10);
  }
  return at + len;
}
