import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { pathToFileURL } from 'node:url';
import { TroupeError } from '../errors';
import { isThreadFunction, threadFunction } from './thread-function';

const badRequest =
  (pattern: RegExp) =>
  (e: unknown): boolean =>
    e instanceof TroupeError && e.code === 'BAD_REQUEST' && pattern.test(e.message);

test('threadFunction - records the module path (from __filename or a file URL) and the export name', () => {
  const f = threadFunction(__filename, 'double', (n: number) => n * 2);
  assert.is(f.module, __filename);
  assert.is(f.name, 'double');
  assert.is(f.fn(21, undefined as never), 42);
  assert.ok(isThreadFunction(f));
  assert.is(threadFunction(pathToFileURL(__filename).href, 'double', (n: number) => n).module, __filename, 'import.meta.url works too');
});

test('threadFunction - refuses what a thread could not find, with a typed error at declaration', () => {
  assert.throws(() => threadFunction('./work.js', 'w', () => 1), badRequest(/absolute path or a file URL/));
  assert.throws(() => threadFunction('', 'w', () => 1), badRequest(/__filename/));
  assert.throws(() => threadFunction(__filename, 'not an identifier', () => 1), badRequest(/export's identifier/));
  assert.throws(() => threadFunction(__filename, 'w', 3 as never), badRequest(/must be a function/));
  assert.not.ok(
    isThreadFunction(() => 1),
    'a plain function is not one',
  );
});

test.run();
