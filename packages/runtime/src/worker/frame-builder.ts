/** Room kept before the items for the msgpack array header (at most 5 bytes). */
const HEAD = 5;
/** A new buffer's size; it grows by doubling up to the frame limit. */
const INITIAL_BYTES = 16 * 1024;
/** Idle buffers kept for the next frame, process-wide (a scratch cache, not per-runtime state): ≤ 1 MiB idle. */
const POOL_MAX = 4;
/**
 * Larger buffers are dropped after their frame rather than kept idle. A full frame of small
 * items (4 096 × 32 bytes) needs 128 KiB: kept, so a fast stream does not regrow its buffer
 * from 16 KiB (three copies) for every frame.
 */
const POOL_MAX_BYTES = 256 * 1024;
const pool: Uint8Array[] = [];

/**
 * One stream frame in the making: a msgpack array of items that are already
 * encoded, built in a reused buffer so that each item costs one copy and each
 * frame one allocation. The buffer is held only while items are pending; an
 * empty builder holds nothing.
 */
export class FrameBuilder {
  private buf: Uint8Array | undefined;
  private pos = HEAD;
  /** Items pending. */
  count = 0;

  /** Encoded bytes pending (without the array header). */
  get bytes(): number {
    return this.pos - HEAD;
  }

  add(item: Uint8Array): void {
    const end = this.pos + item.length;
    let buf = this.buf ?? (this.buf = pool.pop() ?? new Uint8Array(INITIAL_BYTES));
    if (end > buf.length) buf = this.grow(end);
    buf.set(item, this.pos);
    this.pos = end;
    this.count++;
  }

  /** The pending items as one msgpack array (a new buffer); the builder is empty again. */
  take(): Uint8Array {
    const buf = this.buf;
    if (!buf) return EMPTY_ARRAY.slice();
    const n = this.count;
    let start: number;
    if (n < 16) {
      start = HEAD - 1;
      buf[start] = 0x90 | n;
    } else if (n < 65536) {
      start = HEAD - 3;
      buf[start] = 0xdc;
      buf[start + 1] = n >>> 8;
      buf[start + 2] = n & 0xff;
    } else {
      start = 0;
      buf[0] = 0xdd;
      buf[1] = n >>> 24;
      buf[2] = (n >>> 16) & 0xff;
      buf[3] = (n >>> 8) & 0xff;
      buf[4] = n & 0xff;
    }
    const frame = buf.slice(start, this.pos);
    this.pos = HEAD;
    this.count = 0;
    this.buf = undefined;
    if (buf.length <= POOL_MAX_BYTES && pool.length < POOL_MAX) pool.push(buf);
    return frame;
  }

  private grow(end: number): Uint8Array {
    const old = this.buf as Uint8Array;
    let size = old.length * 2;
    while (size < end) size *= 2;
    const buf = new Uint8Array(size);
    buf.set(old.subarray(0, this.pos));
    this.buf = buf;
    return buf;
  }
}

const EMPTY_ARRAY = new Uint8Array([0x90]);
