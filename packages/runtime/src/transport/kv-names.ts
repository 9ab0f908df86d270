import { TroupeError } from '../errors';

// nats.js's rules (kv.ts `validKeyRe`, `validBucketRe`), made strict where it is loose: it lets
// empty tokens (`a..b`) through to the server as a subject, which stores them under a subject no one can watch.
const KEY = /^[A-Za-z0-9_=/-]+(\.[A-Za-z0-9_=/-]+)*$/;
const BUCKET = /^[A-Za-z0-9_-]+$/;

/**
 * Throws `BAD_REQUEST` unless `key` is a KV key both buses store alike:
 * dot-separated non-empty tokens of letters, digits, `_`, `-`, `/` and `=`.
 *
 * @example
 * checkKvKey('ns.comp.ep.0123456789abcdef'); // fine
 * checkKvKey('a..b');                        // throws BAD_REQUEST
 */
export function checkKvKey(key: string): void {
  if (typeof key !== 'string' || !KEY.test(key)) {
    throw new TroupeError('BAD_REQUEST', `invalid key ${JSON.stringify(key)}: dot-separated tokens of letters, digits, "_", "-", "/" and "="`);
  }
}

/**
 * Throws `BAD_REQUEST` unless `name` is a valid bucket name: letters, digits, `_` and `-`.
 *
 * @example
 * checkBucketName('troupe_instances'); // fine
 */
export function checkBucketName(name: string): void {
  if (typeof name !== 'string' || !BUCKET.test(name)) {
    throw new TroupeError('BAD_REQUEST', `invalid bucket name ${JSON.stringify(name)}: letters, digits, "_" and "-"`);
  }
}
