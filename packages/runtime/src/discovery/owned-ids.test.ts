import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { OwnedIds, RUN_MIN } from './owned-ids';

const ids = (n: number, prefix: string): string[] => Array.from({ length: n }, (_, i) => `${prefix}${((i * 7919) % n).toString(16).padStart(8, '0')}`);

test('owned ids - a large batch is found, deleted once, and listed with its value', () => {
  const o = new OwnedIds<string>();
  const big = ids(RUN_MIN * 4, 'a');
  o.addMany(big, 'spawn');
  assert.is(o.size, big.length);
  for (const id of big) assert.is(o.get(id), 'spawn');
  assert.not.ok(o.has('zzz'));
  assert.ok(o.delete(big[3] as string));
  assert.not.ok(o.delete(big[3] as string), 'a second delete finds nothing');
  assert.not.ok(o.has(big[3] as string));
  assert.is(o.size, big.length - 1);
  assert.is([...o.entries()].length, big.length - 1);
  for (const id of big) o.delete(id);
  assert.is(o.size, 0);
  assert.equal([...o.entries()], []);
});

test('owned ids - small batches and runs side by side; an id added again takes the new value', () => {
  const o = new OwnedIds<number>();
  const big = ids(RUN_MIN, 'b');
  o.addMany(big, 1);
  o.addMany(['s1', 's2'], 2);
  assert.is(o.get('s1'), 2);
  // A restarted instance's id registered again (a small batch): found with its new value, once.
  o.addMany([big[0] as string], 3);
  assert.is(o.get(big[0] as string), 3);
  assert.is(o.size, big.length + 2);
  // Left the run and is back in another run: found there.
  o.addMany(ids(RUN_MIN, 'b'), 4);
  assert.is(o.get(big[0] as string), 4);
  assert.is(o.get('s2'), 2);
  assert.is(o.size, big.length + 2);
  assert.is(new Set([...o.entries()].map(([id]) => id)).size, big.length + 2);
  o.clear();
  assert.is(o.size, 0);
  assert.not.ok(o.has('s1'));
});

test('owned ids - many runs: each id found in its own run whichever run the last lookup hit, and gone once its run is', () => {
  const o = new OwnedIds<number>();
  const spawns = Array.from({ length: 20 }, (_, k) => ids(RUN_MIN, `r${k}-`));
  spawns.forEach((batch, k) => o.addMany(batch, k));
  // In spawn order (one run after another) and interleaved across runs.
  spawns.forEach((batch, k) => batch.forEach((id) => assert.is(o.get(id), k)));
  for (let i = 0; i < RUN_MIN; i++) spawns.forEach((batch, k) => assert.is(o.get(batch[i] as string), k));
  // A whole run leaves while it is the last one looked up; the others are still found.
  for (const id of spawns[7] as string[]) assert.ok(o.delete(id));
  assert.not.ok(o.has((spawns[7] as string[])[0] as string));
  assert.is(o.get((spawns[8] as string[])[0] as string), 8);
  assert.is(o.size, 19 * RUN_MIN);
});

test.run();
