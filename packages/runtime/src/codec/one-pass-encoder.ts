import { type Encoder, ExtData } from '@msgpack/msgpack';

/** @msgpack/msgpack's `utf8Encode` switches to `TextEncoder.encodeInto` above this many UTF-16 units (its `TEXT_ENCODER_THRESHOLD`). */
const TEXT_ENCODER_THRESHOLD = 50;
const textEncoder = new TextEncoder();

/**
 * The msgpack encoder of {@link MsgpackCodec}'s `encode`: writes exactly the
 * bytes of @msgpack/msgpack's `Encoder` with `ignoreUndefined: true` and no
 * other option but `maxDepth` (the fuzz test in `msgpack.test.ts` compares
 * them), in one pass over each object's keys.
 *
 * Hand-rolled because the library cannot be told to: with `ignoreUndefined`
 * its (private) `encodeMap` reads every value twice, once to count the
 * defined ones for the map header and once to write them, and every object
 * goes through `ExtensionCodec.tryToEncode` (a call per registered extension
 * and an `instanceof ExtData`) and every byte through a bounds-checked
 * `DataView` write. Here a map's header is reserved for its key count and
 * patched once the defined values are counted (moved down in the rare case
 * the count needs a shorter header), and only plain data is written by hand:
 * a `Date`, a `bigint`, an `ExtData`, a symbol or a function — the values an
 * extension or an error belongs to — is encoded by the library's own
 * `encoder` (same options) and its bytes copied in, so extensions and error
 * messages stay the library's.
 *
 * @example
 * const enc = new OnePassEncoder(new Encoder({ extensionCodec, ignoreUndefined: true }), 100);
 * enc.encode({ a: 1, b: undefined }); // Uint8Array [0x81, 0xa1, 0x61, 0x01]
 */
export class OnePassEncoder {
  private bytes = new Uint8Array(2048);
  private view = new DataView(this.bytes.buffer);
  private pos = 0;
  /** Set while encoding: the codec's encoder is not re-entrant (a getter may call `encode`), as the library's is (it clones). */
  private busy = false;

  constructor(
    /** The library's encoder with the same options, for the values this one does not write itself. */
    private readonly library: Encoder,
    private readonly maxDepth: number,
  ) {}

  /** The encoding of `value` in a fresh array. */
  encode(value: unknown): Uint8Array {
    if (this.busy) return new OnePassEncoder(this.library, this.maxDepth).encode(value);
    this.run(value);
    return this.bytes.slice(0, this.pos);
  }

  /** The encoding of `value` in this encoder's buffer, valid until its next call. */
  encodeShared(value: unknown): Uint8Array {
    if (this.busy) return new OnePassEncoder(this.library, this.maxDepth).encode(value);
    this.run(value);
    return this.bytes.subarray(0, this.pos);
  }

  private run(value: unknown): void {
    this.busy = true;
    try {
      this.pos = 0;
      this.value(value, 1);
    } finally {
      this.busy = false;
    }
  }

  private value(v: unknown, depth: number): void {
    if (depth > this.maxDepth) throw new Error(`Too deep objects in depth ${depth}`);
    if (v == null) this.u8(0xc0);
    else if (typeof v === 'number') this.number(v);
    else if (typeof v === 'string') this.string(v);
    else if (typeof v === 'boolean') this.u8(v ? 0xc3 : 0xc2);
    else if (typeof v === 'object') this.object(v, depth);
    else this.delegate(v); // bigint (an extension), symbol and function (the library's error)
  }

  /** The library's order: extensions (Date, then ExtData) first, then arrays, binary, maps. */
  private object(o: object, depth: number): void {
    if (o instanceof ExtData && typeof o.data === 'function') this.positioned(o.type, o.data);
    else if (o instanceof Date || o instanceof ExtData) this.delegate(o);
    else if (Array.isArray(o)) this.array(o, depth);
    else if (ArrayBuffer.isView(o)) this.binary(o);
    else this.map(o as Record<string, unknown>, depth);
  }

  /** An `ExtData` whose bytes depend on where they land (the library passes the data's offset in its output: this one's). */
  private positioned(type: number, data: (dataPos: number) => Uint8Array): void {
    const bytes = data(this.pos + 6);
    const size = bytes.length;
    if (size >= 0x100000000) throw new Error(`Too large extension object: ${size}`);
    this.ensure(6 + size);
    const b = this.bytes;
    b[this.pos] = 0xc9;
    this.view.setUint32(this.pos + 1, size);
    b[this.pos + 5] = type;
    b.set(bytes, this.pos + 6);
    this.pos += 6 + size;
  }

  private delegate(v: unknown): void {
    const bytes = this.library.encodeSharedRef(v);
    this.ensure(bytes.length);
    this.bytes.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  private number(n: number): void {
    this.ensure(9);
    const b = this.bytes;
    let p = this.pos;
    if (Number.isSafeInteger(n)) {
      if (n >= 0) {
        if (n < 0x80) b[p++] = n;
        else if (n < 0x100) {
          b[p++] = 0xcc;
          b[p++] = n;
        } else if (n < 0x10000) {
          b[p++] = 0xcd;
          b[p++] = n >>> 8;
          b[p++] = n;
        } else if (n < 0x100000000) {
          b[p++] = 0xce;
          this.view.setUint32(p, n);
          p += 4;
        } else {
          b[p++] = 0xcf;
          this.view.setUint32(p, n / 0x100000000);
          this.view.setUint32(p + 4, n);
          p += 8;
        }
      } else if (n >= -0x20) b[p++] = 0xe0 | (n + 0x20);
      else if (n >= -0x80) {
        b[p++] = 0xd0;
        b[p++] = n;
      } else if (n >= -0x8000) {
        b[p++] = 0xd1;
        b[p++] = n >> 8;
        b[p++] = n;
      } else if (n >= -0x80000000) {
        b[p++] = 0xd2;
        this.view.setInt32(p, n);
        p += 4;
      } else {
        b[p++] = 0xd3;
        this.view.setUint32(p, Math.floor(n / 0x100000000));
        this.view.setUint32(p + 4, n);
        p += 8;
      }
    } else {
      b[p++] = 0xcb;
      this.view.setFloat64(p, n);
      p += 8;
    }
    this.pos = p;
  }

  private string(s: string): void {
    const length = s.length;
    // Short strings, nearly always ASCII (keys above all): written after a 1-byte header as
    // they are scanned; anything else is counted first, as the library does.
    if (length < 32) {
      this.ensure(1 + length);
      const b = this.bytes;
      const start = this.pos;
      let p = start + 1;
      let i = 0;
      for (; i < length; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        b[p++] = c;
      }
      if (i === length) {
        b[start] = 0xa0 + length;
        this.pos = p;
        return;
      }
    }
    const size = utf8Count(s);
    this.ensure(5 + size);
    const p = this.header(this.pos, size, STR);
    const b = this.bytes;
    if (length > TEXT_ENCODER_THRESHOLD) textEncoder.encodeInto(s, b.subarray(p));
    else utf8Write(s, b, p);
    this.pos = p + size;
  }

  private array(a: unknown[], depth: number): void {
    const size = a.length;
    this.ensure(5);
    // The fix form inline: the common case stays off the general header path.
    if (size < 16) this.bytes[this.pos++] = 0x90 + size;
    else this.pos = this.header(this.pos, size, ARR);
    // The library iterates with for…of (holes read as undefined, written as nil).
    for (const item of a) this.value(item, depth + 1);
  }

  private binary(v: ArrayBufferView): void {
    const size = v.byteLength;
    this.ensure(5 + size);
    this.pos = this.header(this.pos, size, BIN);
    const b = this.bytes;
    b.set(v instanceof Uint8Array ? v : new Uint8Array(v.buffer, v.byteOffset, size), this.pos);
    this.pos += size;
  }

  private map(o: Record<string, unknown>, depth: number): void {
    const keys = Object.keys(o);
    const reserved = mapHeaderSize(keys.length);
    this.ensure(reserved);
    const start = this.pos;
    this.pos += reserved;
    let count = 0;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as string;
      const v = o[key];
      if (v === undefined) continue;
      this.string(key);
      this.value(v, depth + 1);
      count++;
    }
    const size = mapHeaderSize(count);
    if (size < reserved) {
      // Fewer defined values than keys, across a header size (16 or 65,536): move the entries down.
      this.bytes.copyWithin(start + size, start + reserved, this.pos);
      this.pos -= reserved - size;
    }
    if (count < 16) this.bytes[start] = 0x80 + count;
    else this.header(start, count, MAP);
  }

  /** Writes the header of a value of `size` of `kind` at `at` (the shortest form, as the library); the index past it. */
  private header(at: number, size: number, kind: HeaderKind): number {
    const b = this.bytes;
    if (size < kind.fixBelow) b[at++] = kind.fix + size;
    else if (size < 0x100 && kind.c8 >= 0) {
      b[at++] = kind.c8;
      b[at++] = size;
    } else if (size < 0x10000) {
      b[at++] = kind.c16;
      b[at++] = size >>> 8;
      b[at++] = size;
    } else if (size < 0x100000000) {
      b[at++] = kind.c32;
      this.view.setUint32(at, size);
      at += 4;
    } else throw new Error(kind.tooLarge(size));
    return at;
  }

  private u8(byte: number): void {
    this.ensure(1);
    this.bytes[this.pos++] = byte;
  }

  /** Room for `n` more bytes: the buffer doubles past what is needed, as the library's does. */
  private ensure(n: number): void {
    const need = this.pos + n;
    if (need <= this.bytes.length) return;
    const grown = new Uint8Array(need * 2);
    grown.set(this.bytes.subarray(0, this.pos));
    this.bytes = grown;
    this.view = new DataView(grown.buffer);
  }
}

/** A msgpack length header: the fix form (`fix + size` below `fixBelow`), then 8-bit (`c8`, -1 for none), 16- and 32-bit. */
interface HeaderKind {
  fix: number;
  fixBelow: number;
  c8: number;
  c16: number;
  c32: number;
  /** The library's error for a size past 32 bits. */
  tooLarge(size: number): string;
}

const STR: HeaderKind = { fix: 0xa0, fixBelow: 32, c8: 0xd9, c16: 0xda, c32: 0xdb, tooLarge: (n) => `Too long string: ${n} bytes in UTF-8` };
const BIN: HeaderKind = { fix: 0, fixBelow: 0, c8: 0xc4, c16: 0xc5, c32: 0xc6, tooLarge: (n) => `Too large binary: ${n}` };
const ARR: HeaderKind = { fix: 0x90, fixBelow: 16, c8: -1, c16: 0xdc, c32: 0xdd, tooLarge: (n) => `Too large array: ${n}` };
const MAP: HeaderKind = { fix: 0x80, fixBelow: 16, c8: -1, c16: 0xde, c32: 0xdf, tooLarge: (n) => `Too large map object: ${n}` };

function mapHeaderSize(count: number): number {
  return count < 16 ? 1 : count < 0x10000 ? 3 : 5;
}

/** UTF-8 bytes of `s` as @msgpack/msgpack counts them (`utf8Count`: a lone surrogate is 3 bytes). */
function utf8Count(s: string): number {
  const length = s.length;
  let size = 0;
  let i = 0;
  while (i < length) {
    let c = s.charCodeAt(i++);
    if (c < 0x80) size++;
    else if (c < 0x800) size += 2;
    else {
      if (c >= 0xd800 && c <= 0xdbff && i < length) {
        const next = s.charCodeAt(i);
        if ((next & 0xfc00) === 0xdc00) {
          i++;
          c = ((c & 0x3ff) << 10) + (next & 0x3ff) + 0x10000;
        }
      }
      size += c > 0xffff ? 4 : 3;
    }
  }
  return size;
}

/** @msgpack/msgpack's `utf8EncodeJs` (strings of ≤ 50 units): a lone surrogate is written as its 3 bytes, not U+FFFD. */
function utf8Write(s: string, out: Uint8Array, at: number): void {
  const length = s.length;
  let p = at;
  let i = 0;
  while (i < length) {
    let c = s.charCodeAt(i++);
    if (c < 0x80) {
      out[p++] = c;
      continue;
    }
    if (c < 0x800) out[p++] = ((c >> 6) & 0x1f) | 0xc0;
    else {
      if (c >= 0xd800 && c <= 0xdbff && i < length) {
        const next = s.charCodeAt(i);
        if ((next & 0xfc00) === 0xdc00) {
          i++;
          c = ((c & 0x3ff) << 10) + (next & 0x3ff) + 0x10000;
        }
      }
      if (c <= 0xffff) {
        out[p++] = ((c >> 12) & 0x0f) | 0xe0;
        out[p++] = ((c >> 6) & 0x3f) | 0x80;
      } else {
        out[p++] = ((c >> 18) & 0x07) | 0xf0;
        out[p++] = ((c >> 12) & 0x3f) | 0x80;
        out[p++] = ((c >> 6) & 0x3f) | 0x80;
      }
    }
    out[p++] = (c & 0x3f) | 0x80;
  }
}
