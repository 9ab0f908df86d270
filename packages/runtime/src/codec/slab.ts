/** Values up to this size are copied into a shared slab (below), larger ones into a buffer of their own. */
const SLAB_VALUE_MAX = 512;
/** Size of one slab. */
const SLAB_BYTES = 8 * 1024;
let slab = new Uint8Array(0);
let slabUsed = 0;

/**
 * A copy of `value` that owns no `ArrayBuffer` of its own when small: a view
 * into a shared 8 KiB slab, as Node's `Buffer` pool does. An `ArrayBuffer`
 * per small value costs its backing store, its C++ record and the
 * `ArrayBuffer` object (~250 B of native and heap memory beside ~100 B of
 * bytes), and 100,000 of them made and dropped leave glibc's heap
 * fragmented. A slab is freed once no view into it is referenced any more.
 * The copy's `buffer` is the slab: read it through `byteOffset` and
 * `byteLength`, never whole.
 *
 * @example
 * const kept = slabCopy(codec.encodeShared(record)); // the shared encode buffer is overwritten by the next encode
 */
export function slabCopy(value: Uint8Array): Uint8Array {
  const n = value.length;
  if (n === 0 || n > SLAB_VALUE_MAX) return value.slice();
  const at = slabPut(value);
  return slab.subarray(at, at + n);
}

/**
 * Copies `value` as {@link slabCopy} does and tells where, without making a
 * view: `into.bytes.subarray(into.offset, into.offset + value.length)` reads
 * it back. A store of many values keeps that pair instead of a view (a
 * `Uint8Array` view is 96 B of heap beside the bytes); `into` receives it,
 * so no object is made per call. `into.bytes` is a shared slab, or the
 * value's own copy when it is large or empty.
 *
 * @example
 * const place = { bytes: EMPTY, offset: 0 };
 * slabPlace(value, place);
 * store(key, place.bytes, place.offset, value.length);
 */
export function slabPlace(value: Uint8Array, into: { bytes: Uint8Array; offset: number }): void {
  const n = value.length;
  if (n === 0 || n > SLAB_VALUE_MAX) {
    into.bytes = value.slice();
    into.offset = 0;
    return;
  }
  into.offset = slabPut(value);
  into.bytes = slab;
}

/** Copies a small value into the current slab (a new one when it is full) and returns its offset there. */
function slabPut(value: Uint8Array): number {
  const n = value.length;
  if (slabUsed + n > slab.length) {
    slab = new Uint8Array(SLAB_BYTES);
    slabUsed = 0;
  }
  const at = slabUsed;
  slab.set(value, at);
  // 8-byte aligned, as Buffer's pool.
  slabUsed = (slabUsed + n + 7) & ~7;
  return at;
}
