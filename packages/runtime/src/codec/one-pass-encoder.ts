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
    const b = this.bytes;
    let p = this.pos;
    if (size < 32) b[p++] = 0xa0 + size;
    else if (size < 0x100) {
      b[p++] = 0xd9;
      b[p++] = size;
    } else if (size < 0x10000) {
      b[p++] = 0xda;
      b[p++] = size >>> 8;
      b[p++] = size;
    } else if (size < 0x100000000) {
      b[p++] = 0xdb;
      this.view.setUint32(p, size);
      p += 4;
    } else throw new Error(`Too long string: ${size} bytes in UTF-8`);
    if (length > TEXT_ENCODER_THRESHOLD) textEncoder.encodeInto(s, b.subarray(p));
    else utf8Write(s, b, p);
    this.pos = p + size;
  }

  private array(a: unknown[], depth: number): void {
    const size = a.length;
    this.ensure(5);
    const b = this.bytes;
    if (size < 16) b[this.pos++] = 0x90 + size;
    else if (size < 0x10000) {
      b[this.pos++] = 0xdc;
      b[this.pos++] = size >>> 8;
      b[this.pos++] = size;
    } else if (size < 0x100000000) {
      b[this.pos++] = 0xdd;
      this.view.setUint32(this.pos, size);
      this.pos += 4;
    } else throw new Error(`Too large array: ${size}`);
    // The library iterates with for…of (holes read as undefined, written as nil).
    for (const item of a) this.value(item, depth + 1);
  }

  private binary(v: ArrayBufferView): void {
    const size = v.byteLength;
    this.ensure(5 + size);
    const b = this.bytes;
    if (size < 0x100) {
      b[this.pos++] = 0xc4;
      b[this.pos++] = size;
    } else if (size < 0x10000) {
      b[this.pos++] = 0xc5;
      b[this.pos++] = size >>> 8;
      b[this.pos++] = size;
    } else if (size < 0x100000000) {
      b[this.pos++] = 0xc6;
      this.view.setUint32(this.pos, size);
      this.pos += 4;
    } else throw new Error(`Too large binary: ${size}`);
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
    const b = this.bytes;
    if (count < 16) b[start] = 0x80 + count;
    else if (count < 0x10000) {
      b[start] = 0xde;
      b[start + 1] = count >>> 8;
      b[start + 2] = count;
    } else {
      b[start] = 0xdf;
      this.view.setUint32(start + 1, count);
    }
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
