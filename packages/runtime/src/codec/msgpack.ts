import { DecodeError, Decoder, Encoder, ExtensionCodec } from '@msgpack/msgpack';
import { TroupeError } from '../errors';
import { type Codec, DEFAULT_DECODE_LIMITS, type DecodeLimits } from './codec';
import { OnePassDecoder } from './one-pass-decoder';
import { OnePassEncoder } from './one-pass-encoder';

/** msgpack extension type for bigint (the value's decimal string as UTF-8). */
const BIGINT_EXT = 0;

function extensions(): ExtensionCodec {
  const ext = new ExtensionCodec();
  // Date already has msgpack's timestamp extension (-1); bigint needs its own,
  // because `useBigInt64` would also turn every large plain number into a bigint.
  ext.register({
    type: BIGINT_EXT,
    encode: (v: unknown) => (typeof v === 'bigint' ? Buffer.from(v.toString(), 'utf8') : null),
    decode: (data: Uint8Array) => {
      const text = Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8');
      if (!/^-?\d{1,4096}$/.test(text)) throw new DecodeError(`malformed bigint extension`);
      return BigInt(text);
    },
  });
  return ext;
}

/**
 * msgpack (`@msgpack/msgpack`) with decode limits: `Uint8Array` stays binary,
 * `Date` and `bigint` round-trip, `undefined` map values are dropped. Garbage,
 * truncation, over-limit input and `__proto__` keys throw `BAD_REQUEST`,
 * never crash the caller.
 *
 * @example
 * const codec = new MsgpackCodec();
 * codec.decode(codec.encode({ at: new Date(), n: 2n ** 70n }));
 */
export class MsgpackCodec implements Codec {
  /** Writes the bytes `Encoder` would (in one pass over each object's keys), handing it dates, bigints and errors. */
  private readonly encoder: OnePassEncoder;
  /** Returns what the library's `Decoder` (below, limits and depth limit set) returns, and hands it what it refuses. */
  private readonly decoder: OnePassDecoder;
  readonly limits: DecodeLimits;

  constructor(limits: Partial<DecodeLimits> = {}) {
    this.limits = { ...DEFAULT_DECODE_LIMITS, ...limits };
    const extensionCodec = extensions();
    const encoder = new Encoder({ extensionCodec, ignoreUndefined: true, maxDepth: this.limits.maxDepth });
    this.encoder = new OnePassEncoder(encoder, this.limits.maxDepth);
    const decoder = new Decoder({
      extensionCodec,
      maxStrLength: this.limits.maxStrLength,
      maxBinLength: this.limits.maxBinLength,
      maxArrayLength: this.limits.maxArrayLength,
      maxMapLength: this.limits.maxMapLength,
      maxExtLength: this.limits.maxExtLength,
    });
    limitDepth(decoder, this.limits.maxDepth);
    this.decoder = new OnePassDecoder({ library: decoder, extensionCodec, limits: this.limits });
  }

  encode(value: unknown): Uint8Array {
    try {
      return this.encoder.encode(value);
    } catch (err) {
      throw new TroupeError('BAD_REQUEST', `cannot encode value: ${(err as Error).message}`, { cause: err });
    }
  }

  encodeShared(value: unknown): Uint8Array {
    try {
      return this.encoder.encodeShared(value);
    } catch (err) {
      throw new TroupeError('BAD_REQUEST', `cannot encode value: ${(err as Error).message}`, { cause: err });
    }
  }

  decode(bytes: Uint8Array): unknown {
    if (bytes.length === 0) return undefined;
    try {
      return this.decoder.decode(bytes);
    } catch (err) {
      // @msgpack/msgpack throws RangeError on truncation and DecodeError on garbage.
      throw new TroupeError('BAD_REQUEST', `malformed msgpack body: ${(err as Error).message}`, { cause: err });
    }
  }
}

/**
 * @msgpack/msgpack has no depth limit on decode (it decodes 100k-deep nesting
 * iteratively; the caller's recursive code then overflows). Its decoder keeps
 * an explicit state stack, so the limit is enforced where a state is pushed.
 */
function limitDepth(decoder: Decoder, maxDepth: number): void {
  const stack = (decoder as unknown as { stack?: { stackHeadPosition: number; getUninitializedStateFromPool(): unknown } }).stack;
  if (!stack || typeof stack.getUninitializedStateFromPool !== 'function') {
    throw new Error('@msgpack/msgpack internals changed: cannot enforce the decode depth limit');
  }
  const take = stack.getUninitializedStateFromPool.bind(stack);
  stack.getUninitializedStateFromPool = () => {
    if (stack.stackHeadPosition + 1 >= maxDepth) {
      throw new DecodeError(`max depth exceeded: nesting deeper than ${maxDepth}`);
    }
    return take();
  };
}
