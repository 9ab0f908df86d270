import { randomBytes } from 'node:crypto';

/**
 * A random 64-bit id as 16 lowercase hex characters. A string, because ids
 * above 2^53 do not survive JSON numbers.
 *
 * @example
 * newInstanceId(); // '9f3c0a7e12b4d8e1'
 */
export function newInstanceId(): string {
  return randomBytes(8).toString('hex');
}

/** A short random token for inbox subjects and request ids (base36, ~72 bits). */
export function newToken(): string {
  return randomBytes(9).toString('base64url').replace(/[-_]/g, 'x');
}
