import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { nodeFlagsOf, parseUvuSummary, stripAnsi, tally, type FileOutcome } from './run-tests';

// Captured from uvu 0.5.6: 3 tests, one failing, one test.skip. Total leaves
// the skipped test out. Piped with FORCE_COLOR=0, then with FORCE_COLOR=1,
// where kleur wraps the leading newline inside the colour codes.
const PLAIN = [
  '    at async Timeout.exec [as _onTimeout] (/x/uvu/dist/index.js:141:33)',
  '',
  '',
  '',
  '  Total:     2',
  '  Passed:    1',
  '  Skipped:   1',
  '  Duration:  1.11ms',
  '',
  '',
].join('\n');
const COLOURED = '\n  Total:     2\u001b[31m\n  Passed:    1\u001b[39m\n  Skipped:   \u001b[33m1\u001b[39m\n  Duration:  1.11ms\n\n';

const clean: Omit<FileOutcome, 'summary'> = { exitCode: 0, signal: null, timedOut: false };

test('run-tests - reads the node flags a file asks for', () => {
  assert.equal(nodeFlagsOf('"use strict";\n// @node-flags --expose-gc --max-old-space-size=512\nrequire("x");\n'), ['--expose-gc', '--max-old-space-size=512']);
  assert.equal(nodeFlagsOf('"use strict";\n// nothing asked\n'), []);
});

test('run-tests - refuses a node flag that is not --name or --name=value', () => {
  assert.throws(() => nodeFlagsOf('// @node-flags --expose-gc ; rm -rf /\n'), /is not a --flag/);
});

test('run-tests - parses the plain uvu summary', () => {
  assert.equal(parseUvuSummary(PLAIN), { total: 2, passed: 1, skipped: 1 });
});

test('run-tests - parses the coloured uvu summary', () => {
  assert.equal(parseUvuSummary(COLOURED), { total: 2, passed: 1, skipped: 1 });
});

test('run-tests - parses CRLF line endings', () => {
  assert.equal(parseUvuSummary('  Total:     4\r\n  Passed:    4\r\n  Skipped:   0\r\n'), { total: 4, passed: 4, skipped: 0 });
});

test('run-tests - takes the last summary when a file prints several', () => {
  const twice = '  Total:     1\n  Passed:    1\n  Skipped:   0\n' + PLAIN;
  assert.equal(parseUvuSummary(twice), { total: 2, passed: 1, skipped: 1 });
});

test('run-tests - finds no summary in a crash', () => {
  assert.is(parseUvuSummary('TypeError: x is not a function\n    at Object.<anonymous> (/a.js:1:1)\n'), undefined);
});

test('run-tests - ignores a Total line that is not a summary block', () => {
  assert.is(parseUvuSummary('console: Total: 5 items\n'), undefined);
});

test('run-tests - strips ANSI colour codes', () => {
  assert.is(stripAnsi('\u001b[1m\u001b[4mfile\u001b[24m\u001b[22m ok'), 'file ok');
});

test('run-tests - counts failures as total minus passed, skips apart', () => {
  assert.equal(tally({ ...clean, exitCode: 1, summary: { total: 2, passed: 1, skipped: 1 } }), {
    passed: 1,
    failed: 1,
    skipped: 1,
  });
});

test('run-tests - counts a clean file as all passed', () => {
  assert.equal(tally({ ...clean, summary: { total: 5, passed: 5, skipped: 0 } }), { passed: 5, failed: 0, skipped: 0 });
});

test('run-tests - counts a crash without a summary as one failure', () => {
  const t = tally({ ...clean, exitCode: 1, summary: undefined });
  assert.is(t.failed, 1);
  assert.match(t.problem ?? '', 'exited with code 1 before printing a uvu summary');
});

test('run-tests - counts a file that ends without running uvu as one failure', () => {
  const t = tally({ ...clean, summary: undefined });
  assert.is(t.failed, 1);
  assert.match(t.problem ?? '', 'test.run()');
});

test('run-tests - counts a non-zero exit after an all-passing summary as one failure', () => {
  const t = tally({ ...clean, exitCode: 1, summary: { total: 3, passed: 3, skipped: 0 } });
  assert.equal([t.passed, t.failed], [3, 1]);
  assert.match(t.problem ?? '', 'although all its tests passed');
});

test('run-tests - counts a timeout as at least one failure and says so', () => {
  const t = tally({ exitCode: null, signal: 'SIGTERM', timedOut: true, summary: undefined });
  assert.is(t.failed, 1);
  assert.match(t.problem ?? '', 'timed out');
});

test('run-tests - keeps the failures of a file that timed out after its summary', () => {
  const t = tally({ exitCode: null, signal: 'SIGKILL', timedOut: true, summary: { total: 4, passed: 2, skipped: 0 } });
  assert.equal([t.passed, t.failed], [2, 2]);
});

test.run();
