import * as assert from 'uvu/assert';
import { TroupeError } from '@troupe/runtime/internal';
import { within } from './wait';

/** The `TroupeError` that `p` rejects with within 5 s; fails the test if it resolves, times out or rejects with anything else. */
export async function rejection(p: Promise<unknown>, what: string): Promise<TroupeError> {
  try {
    await within(p, 5_000, what);
  } catch (err) {
    assert.instance(err, TroupeError, `${what}: ${String(err)}`);
    return err as TroupeError;
  }
  assert.unreachable(`${what} succeeded`);
  throw new Error('unreachable');
}
