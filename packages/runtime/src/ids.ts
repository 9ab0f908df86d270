import { randomBytes, randomFillSync } from 'node:crypto';

/** Random bytes drawn 4 KiB at a time: one system call per 512 instance ids, not one each (a spawn of 100,000). */
const POOL = Buffer.allocUnsafe(4096);
let poolAt = POOL.length;

/**
 * A random 64-bit id as 16 lowercase hex characters. A string, because ids
 * above 2^53 do not survive JSON numbers.
 *
 * @example
 * newInstanceId(); // '9f3c0a7e12b4d8e1'
 */
export function newInstanceId(): string {
  if (poolAt + 8 > POOL.length) {
    randomFillSync(POOL);
    poolAt = 0;
  }
  const id = POOL.toString('hex', poolAt, poolAt + 8);
  poolAt += 8;
  return id;
}

/** A short random token for inbox subjects and request ids (base36, ~72 bits). */
export function newToken(): string {
  return randomBytes(9).toString('base64url').replace(/[-_]/g, 'x');
}
