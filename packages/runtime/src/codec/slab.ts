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
  if (slabUsed + n > slab.length) {
    slab = new Uint8Array(SLAB_BYTES);
    slabUsed = 0;
  }
  const copy = slab.subarray(slabUsed, slabUsed + n);
  copy.set(value);
  // 8-byte aligned, as Buffer's pool.
  slabUsed = (slabUsed + n + 7) & ~7;
  return copy;
}
