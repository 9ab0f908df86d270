/** Values up to this size are copied into a shared slab (below), larger ones into a buffer of their own. */
const SLAB_VALUE_MAX = 512;
/** Size of one slab. */
const SLAB_BYTES = 8 * 1024;
/** A span is offset × this + length (lengths are at most {@link SLAB_VALUE_MAX}): at most 2^23, a small integer. */
const SPAN_LENGTHS = 1024;

/**
 * Copies of small values that own no `ArrayBuffer` each: views into shared
 * 8 KiB slabs, as Node's `Buffer` pool does. An `ArrayBuffer` per small
 * value costs its backing store, its C++ record and the `ArrayBuffer` object
 * (~250 B of native and heap memory beside ~100 B of bytes), and 100,000 of
 * them made and dropped leave glibc's heap fragmented. A slab is freed once
 * no copy in it is referenced any more, and a region once written is never
 * reused. Keep copies that live long and copies that go soon in different
 * pools: a slab is kept whole as long as one of its copies lives.
 *
 * @example
 * const slabs = new Slabs();
 * const kept = slabs.copy(codec.encodeShared(record)); // the shared encode buffer is overwritten by the next encode
 */
export class Slabs {
  private slab = new Uint8Array(0);
  private used = 0;

  /** A copy of `value`: a view into a slab when small (its `buffer` is the slab: read it through `byteOffset` and `byteLength`, never whole). */
  copy(value: Uint8Array): Uint8Array {
    const n = value.length;
    if (n === 0 || n > SLAB_VALUE_MAX) return value.slice();
    const at = this.put(value);
    return this.slab.subarray(at, at + n);
  }

  /**
   * Copies `value` as {@link copy} does and tells where, without making a
   * view: {@link Slabs.view}`(into.bytes, into.span)` reads it back. A store
   * of many values keeps that pair instead of a view (a `Uint8Array` view is
   * 96 B of heap beside the bytes, the pair two fields); `into` receives it,
   * so no object is made per call. `into.bytes` is a slab and `into.span`
   * the copy's offset and length in it packed in one small integer, or
   * `into.bytes` is the value's own copy (large or empty) and `span` is -1.
   */
  place(value: Uint8Array, into: { bytes: Uint8Array; span: number }): void {
    const n = value.length;
    if (n === 0 || n > SLAB_VALUE_MAX) {
      into.bytes = value.slice();
      into.span = -1;
      return;
    }
    into.span = this.put(value) * SPAN_LENGTHS + n;
    into.bytes = this.slab;
  }

  /** The bytes {@link place} told of. */
  static view(bytes: Uint8Array, span: number): Uint8Array {
    if (span < 0) return bytes;
    const at = Math.floor(span / SPAN_LENGTHS);
    return bytes.subarray(at, at + (span % SPAN_LENGTHS));
  }

  /** Copies a small value into the current slab (a new one when it is full) and returns its offset there. */
  private put(value: Uint8Array): number {
    const n = value.length;
    if (this.used + n > this.slab.length) {
      this.slab = new Uint8Array(SLAB_BYTES);
      this.used = 0;
    }
    const at = this.used;
    this.slab.set(value, at);
    // 8-byte aligned, as Buffer's pool.
    this.used = (at + n + 7) & ~7;
    return at;
  }
}
