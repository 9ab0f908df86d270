import type { Decoder, ExtensionCodec } from '@msgpack/msgpack';
import type { DecodeLimits } from './codec';

/** @msgpack/msgpack's `utf8Decode` switches to `TextDecoder` above this many bytes (its `TEXT_DECODER_THRESHOLD`). */
const TEXT_DECODER_THRESHOLD = 200;
/** ASCII strings up to this many bytes are looked up in the decoder's string cache (keys and values alike). */
const CACHE_MAX_LENGTH = 32;
/** Slots of the string cache (direct-mapped by a hash of the bytes; a collision replaces the slot). */
const CACHE_SLOTS = 1024;
/** Thrown inside the fast path on anything it does not decode itself; `decode` then hands the bytes to the library. */
const ANOMALY = new Error('msgpack anomaly');

const textDecoder = new TextDecoder();
/** Big-endian floats are read through one scratch view (the bytes are copied in), not a `DataView` per decode. */
const scratch = new DataView(new ArrayBuffer(8));
const EMPTY = new Uint8Array(0);
/**
 * Node's native Latin-1 slice, which takes any `Uint8Array`: for ASCII bytes it is the library's `utf8DecodeJs`
 * string, built ≈ 2–10× faster than with an array of units (24–180 bytes, node 20).
 */
const nativeLatin1Slice = (Buffer.prototype as unknown as { latin1Slice?: (this: Uint8Array, start: number, end: number) => string }).latin1Slice;
/** The same string by the spec'd route, should a Node release drop the undocumented method. */
export function portableLatin1Slice(this: Uint8Array, start: number, end: number): string {
  return String.fromCharCode.apply(null, this.subarray(start, end) as unknown as number[]);
}
const latin1Slice = typeof nativeLatin1Slice === 'function' ? nativeLatin1Slice : portableLatin1Slice;

/**
 * The msgpack decoder of {@link MsgpackCodec}'s `decode`: returns what
 * @msgpack/msgpack's `Decoder` (the codec's options: the bigint extension,
 * the length limits, the depth limit) returns for the same bytes, in one
 * recursive pass (the fuzz test in `msgpack.test.ts` compares them,
 * values and errors).
 *
 * Hand-rolled because it measured faster (bench/ANALYSIS.md, "dec"): the
 * library reads every byte through a bounds-checked `DataView` (one made per
 * decode), keeps an explicit stack of state objects with a type tag per
 * container, asks `stateIsMapKey()` for every string, builds every short
 * string with an array of UTF-16 units and a spread `String.fromCharCode`, and
 * caches only map keys (a linear scan of up to 16 entries per length). Here
 * plain data is decoded by hand, and ASCII strings up to 32 bytes — keys and
 * the short values that repeat in messages of one shape — come from a
 * direct-mapped cache checked against the bytes. Values are the library's:
 * ints of every width (64-bit ones as numbers, as without `useBigInt64`),
 * floats, its UTF-8 decoding (its JS decoder up to 200 bytes, `TextDecoder`
 * above), binaries as views of the input, arrays, maps as plain objects with
 * string or number keys in wire order; extensions go to the codec's
 * `ExtensionCodec`, so dates, bigints and `ExtData` are the library's.
 * Anything else — truncation, trailing bytes, a bad type byte, a length or
 * depth over the limits, a `__proto__` key, a key that is not a string or a
 * number, a UTF-8 sequence running past its string, an extension that throws
 * — makes it decode the same bytes again with the library's `Decoder`, which
 * throws its own error (the codec maps it to `BAD_REQUEST`).
 *
 * @example
 * const dec = new OnePassDecoder({ library: new Decoder({ extensionCodec }), extensionCodec, limits: DEFAULT_DECODE_LIMITS });
 * dec.decode(new Uint8Array([0x81, 0xa1, 0x61, 0x01])); // { a: 1 }
 */
export class OnePassDecoder {
  private bytes: Uint8Array = EMPTY;
  private pos = 0;
  /** Set while decoding: an extension may call `decode` (the library clones itself then). */
  private busy = false;
  private readonly cache: (string | undefined)[] = new Array<string | undefined>(CACHE_SLOTS).fill(undefined);
  /** UTF-16 units of a non-ASCII short string, reused. */
  private readonly units: number[] = [];
  private readonly library: Decoder;
  private readonly extensionCodec: ExtensionCodec;
  private readonly limits: DecodeLimits;

  constructor(options: { library: Decoder; extensionCodec: ExtensionCodec; limits: DecodeLimits }) {
    this.library = options.library;
    this.extensionCodec = options.extensionCodec;
    this.limits = options.limits;
  }

  /** The value `bytes` encode; throws the library's error for what it refuses. */
  decode(bytes: Uint8Array): unknown {
    if (this.busy) return new OnePassDecoder({ library: this.library, extensionCodec: this.extensionCodec, limits: this.limits }).decode(bytes);
    this.busy = true;
    try {
      this.bytes = bytes;
      this.pos = 0;
      const value = this.value(0);
      if (this.pos !== bytes.length) throw ANOMALY;
      return value;
    } catch {
      return this.library.decode(bytes);
    } finally {
      this.bytes = EMPTY;
      this.busy = false;
    }
  }

  /** One value; `depth` is the number of non-empty arrays and maps around it. */
  private value(depth: number): unknown {
    const bytes = this.bytes;
    if (this.pos >= bytes.length) throw ANOMALY;
    const head = bytes[this.pos++] as number;
    if (head < 0x80) return head;
    if (head < 0x90) return this.map(head - 0x80, depth);
    if (head < 0xa0) return this.array(head - 0x90, depth);
    if (head < 0xc0) return this.string(head - 0xa0);
    if (head >= 0xe0) return head - 0x100;
    switch (head) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xcc:
        return this.uint(1);
      case 0xcd:
        return this.uint(2);
      case 0xce:
        return this.uint(4);
      case 0xcf: {
        const high = this.uint(4);
        return high * 0x1_0000_0000 + this.uint(4);
      }
      case 0xd0:
        return (this.uint(1) << 24) >> 24;
      case 0xd1:
        return (this.uint(2) << 16) >> 16;
      case 0xd2:
        return this.uint(4) | 0;
      case 0xd3: {
        const high = this.uint(4) | 0;
        return high * 0x1_0000_0000 + this.uint(4);
      }
      case 0xca:
        this.scratch(4);
        return scratch.getFloat32(0);
      case 0xcb:
        this.scratch(8);
        return scratch.getFloat64(0);
      case 0xd9:
        return this.string(this.uint(1));
      case 0xda:
        return this.string(this.uint(2));
      case 0xdb:
        return this.string(this.uint(4));
      case 0xc4:
        return this.binary(this.uint(1));
      case 0xc5:
        return this.binary(this.uint(2));
      case 0xc6:
        return this.binary(this.uint(4));
      case 0xdc:
        return this.array(this.uint(2), depth);
      case 0xdd:
        return this.array(this.uint(4), depth);
      case 0xde:
        return this.map(this.uint(2), depth);
      case 0xdf:
        return this.map(this.uint(4), depth);
      case 0xd4:
        return this.extension(1);
      case 0xd5:
        return this.extension(2);
      case 0xd6:
        return this.extension(4);
      case 0xd7:
        return this.extension(8);
      case 0xd8:
        return this.extension(16);
      case 0xc7:
        return this.extension(this.uint(1));
      case 0xc8:
        return this.extension(this.uint(2));
      case 0xc9:
        return this.extension(this.uint(4));
      default:
        throw ANOMALY; // 0xc1, the one byte msgpack never uses
    }
  }

  /** A big-endian unsigned int of 1, 2 or 4 bytes. */
  private uint(size: 1 | 2 | 4): number {
    const bytes = this.bytes;
    const p = this.pos;
    if (p + size > bytes.length) throw ANOMALY;
    this.pos = p + size;
    if (size === 1) return bytes[p] as number;
    if (size === 2) return ((bytes[p] as number) << 8) | (bytes[p + 1] as number);
    return (((bytes[p] as number) << 24) | ((bytes[p + 1] as number) << 16) | ((bytes[p + 2] as number) << 8) | (bytes[p + 3] as number)) >>> 0;
  }

  /** Copies the next `size` bytes into the scratch view. */
  private scratch(size: 4 | 8): void {
    const bytes = this.bytes;
    const p = this.pos;
    if (p + size > bytes.length) throw ANOMALY;
    for (let i = 0; i < size; i++) scratch.setUint8(i, bytes[p + i] as number);
    this.pos = p + size;
  }

  private array(size: number, depth: number): unknown[] {
    if (size === 0) return [];
    // Every element takes a byte at least: a longer header is truncated input (and no array is allocated for it).
    if (size > this.limits.maxArrayLength || depth >= this.limits.maxDepth || size > this.bytes.length - this.pos) throw ANOMALY;
    const array: unknown[] = [];
    for (let i = 0; i < size; i++) array.push(this.value(depth + 1));
    return array;
  }

  private map(size: number, depth: number): Record<string, unknown> {
    const map: Record<string, unknown> = {};
    if (size === 0) return map;
    if (size > this.limits.maxMapLength || depth >= this.limits.maxDepth || size * 2 > this.bytes.length - this.pos) throw ANOMALY;
    const bytes = this.bytes;
    for (let i = 0; i < size; i++) {
      const head = bytes[this.pos] as number;
      let key: unknown;
      if (head >= 0xa0 && head < 0xc0) {
        this.pos++;
        key = this.string(head - 0xa0);
      } else key = this.value(depth + 1);
      // The library's `mapKeyConverter` takes strings and numbers; it refuses `__proto__` before converting.
      if ((typeof key !== 'string' && typeof key !== 'number') || key === '__proto__') throw ANOMALY;
      map[key] = this.value(depth + 1);
    }
    return map;
  }

  private binary(size: number): Uint8Array {
    const p = this.pos;
    if (size > this.limits.maxBinLength || p + size > this.bytes.length) throw ANOMALY;
    this.pos = p + size;
    return this.bytes.subarray(p, p + size); // a view, as the library's `decodeBinary`
  }

  private extension(size: number): unknown {
    const p = this.pos;
    // The library reads an extension's data as a binary: `maxBinLength` bounds it too.
    if (size > this.limits.maxExtLength || size > this.limits.maxBinLength || p + 1 + size > this.bytes.length) throw ANOMALY;
    const type = ((this.bytes[p] as number) << 24) >> 24;
    this.pos = p + 1 + size;
    return this.extensionCodec.decode(this.bytes.subarray(p + 1, p + 1 + size), type, undefined);
  }

  private string(length: number): string {
    const bytes = this.bytes;
    const start = this.pos;
    const end = start + length;
    if (length > this.limits.maxStrLength || end > bytes.length) throw ANOMALY;
    this.pos = end;
    if (length > TEXT_DECODER_THRESHOLD) return textDecoder.decode(bytes.subarray(start, end));
    if (length > CACHE_MAX_LENGTH) {
      for (let i = start; i < end; i++) if ((bytes[i] as number) >= 0x80) return this.utf8(start, end);
      return latin1Slice.call(bytes, start, end);
    }
    // FNV-1a over the bytes, stopping at the first non-ASCII one.
    let hash = 0x811c9dc5;
    for (let i = start; i < end; i++) {
      const b = bytes[i] as number;
      if (b >= 0x80) return this.utf8(start, end);
      hash = Math.imul(hash ^ b, 0x01000193);
    }
    const slot = (hash >>> 0) % CACHE_SLOTS;
    const cached = this.cache[slot];
    if (cached !== undefined && cached.length === length && sameAscii(cached, bytes, start)) return cached;
    const str = latin1Slice.call(bytes, start, end);
    this.cache[slot] = str;
    return str;
  }

  /**
   * The library's `utf8DecodeJs`, unit for unit (no validation: a stray continuation byte is its own unit,
   * a 4-byte sequence past U+10FFFF is cut to a surrogate pair), except that a sequence running past the
   * string's end (where the library reads on into the next value's bytes) is an anomaly.
   */
  private utf8(start: number, end: number): string {
    const bytes = this.bytes;
    const units = this.units;
    let n = 0;
    let p = start;
    while (p < end) {
      const b1 = bytes[p++] as number;
      if ((b1 & 0x80) === 0) units[n++] = b1;
      else if ((b1 & 0xe0) === 0xc0) {
        if (p + 1 > end) throw ANOMALY;
        units[n++] = ((b1 & 0x1f) << 6) | ((bytes[p++] as number) & 0x3f);
      } else if ((b1 & 0xf0) === 0xe0) {
        if (p + 2 > end) throw ANOMALY;
        const b2 = (bytes[p++] as number) & 0x3f;
        const b3 = (bytes[p++] as number) & 0x3f;
        units[n++] = ((b1 & 0x1f) << 12) | (b2 << 6) | b3;
      } else if ((b1 & 0xf8) === 0xf0) {
        if (p + 3 > end) throw ANOMALY;
        const b2 = (bytes[p++] as number) & 0x3f;
        const b3 = (bytes[p++] as number) & 0x3f;
        const b4 = (bytes[p++] as number) & 0x3f;
        let unit = ((b1 & 0x07) << 0x12) | (b2 << 0x0c) | (b3 << 0x06) | b4;
        if (unit > 0xffff) {
          unit -= 0x10000;
          units[n++] = ((unit >>> 10) & 0x3ff) | 0xd800;
          unit = 0xdc00 | (unit & 0x3ff);
        }
        units[n++] = unit;
      } else units[n++] = b1;
    }
    units.length = n;
    return String.fromCharCode.apply(null, units);
  }
}

/** Whether the ASCII string `s` is the bytes at `start` (its length already matched). */
function sameAscii(s: string, bytes: Uint8Array, start: number): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) !== bytes[start + i]) return false;
  return true;
}
