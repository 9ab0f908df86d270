/**
 * A body codec. Troupe ships one ({@link MsgpackCodec}); the seam exists so
 * the wire format is chosen in one place and decode limits live with it.
 */
export interface Codec {
  /** Encodes a value; throws a TroupeError `BAD_REQUEST` for values it cannot carry. */
  encode(value: unknown): Uint8Array;
  /**
   * Optional: encodes a value into a buffer the codec reuses, valid only until its next call
   * (the stream pump copies it into the frame at once, sparing one allocation per item).
   */
  encodeShared?(value: unknown): Uint8Array;
  /** Decodes bytes; throws a TroupeError `BAD_REQUEST` for malformed or over-limit input. */
  decode(bytes: Uint8Array): unknown;
}

/** Decode limits: every length and the nesting depth are bounded. */
export interface DecodeLimits {
  /** Longest string, in bytes. */
  maxStrLength: number;
  /** Longest binary value, in bytes. */
  maxBinLength: number;
  /** Most elements of one array. */
  maxArrayLength: number;
  /** Most entries of one map. */
  maxMapLength: number;
  /** Longest extension value, in bytes. */
  maxExtLength: number;
  /** Deepest nesting of arrays and maps. */
  maxDepth: number;
}

/** Limits sized for messages up to NATS's 64 MiB ceiling with a sane nesting depth. */
export const DEFAULT_DECODE_LIMITS: DecodeLimits = {
  maxStrLength: 64 * 1024 * 1024,
  maxBinLength: 64 * 1024 * 1024,
  maxArrayLength: 16 * 1024 * 1024,
  maxMapLength: 1024 * 1024,
  maxExtLength: 64 * 1024 * 1024,
  maxDepth: 100,
};
