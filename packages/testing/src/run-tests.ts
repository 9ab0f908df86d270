/**
 * The repository's test runner (`pnpm test`): runs every compiled
 * `*.test.js` in its own `node` process, one after another, and adds up
 * uvu's summaries. One process per file keeps a crashed or hung file from
 * taking the others with it, and gives each file a process group that can be
 * killed whole (its nats-servers and workers included).
 *
 * Usage: `node packages/testing/dist/run-tests.js [path-substring ...]`
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const DEFAULT_FILE_TIMEOUT_MS = 180_000;
/** After SIGTERM a file gets this long to clean up (stop its servers) before SIGKILL. */
const KILL_GRACE_MS = 2_000;
/** Only the summary at the end is parsed; earlier output is streamed, not kept. */
const KEEP_OUTPUT_CHARS = 64 * 1024;
/** Where compiled tests live, relative to the repository root. */
const SEARCH_ROOTS = ['packages/*/dist', 'packages/*/dist-test', 'test/dist', 'examples/*/dist'];

/**
 * uvu's closing counts. uvu's `Total` counts the tests that ran and excludes
 * `test.skip` (and, under `test.only`, the tests left out), which `Skipped` counts.
 *
 * @example
 * parseUvuSummary('  Total:     3\n  Passed:    2\n  Skipped:   1\n') // { total: 3, passed: 2, skipped: 1 }
 */
export interface UvuSummary {
  total: number;
  passed: number;
  skipped: number;
}

/**
 * How one file ended, as the runner saw it.
 *
 * @example
 * tally({ exitCode: 1, signal: null, timedOut: false, summary: undefined }) // one failure: a crash
 */
export interface FileOutcome {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  summary: UvuSummary | undefined;
}

/**
 * One file's contribution to the totals, with the reason when it failed for
 * something other than a failing assertion.
 *
 * @example
 * const { passed, failed, skipped, problem } = tally(outcome);
 */
export interface Tally {
  passed: number;
  failed: number;
  skipped: number;
  problem?: string;
}

/**
 * Removes ANSI escape sequences. Children run with FORCE_COLOR=0 on a pipe,
 * so uvu (through kleur) prints plain text, but a TTY-forcing environment
 * must not break the parse.
 *
 * @example
 * stripAnsi('\u001b[32m  Passed:    2\u001b[39m') // '  Passed:    2'
 */
export function stripAnsi(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\u001b\[[0-9;?]*[ -/]*[@-~]/g, '');
}

/**
 * Finds uvu's last summary block (`Total:` / `Passed:` / `Skipped:` on
 * consecutive lines, as uvu 0.5 prints it from `exec()`) in a file's stdout.
 * Returns undefined when there is none, e.g. the file crashed first.
 *
 * @example
 * parseUvuSummary(stdout)?.passed
 */
export function parseUvuSummary(output: string): UvuSummary | undefined {
  const re = /^[ \t]*Total:[ \t]+(\d+)[ \t]*\r?\n[ \t]*Passed:[ \t]+(\d+)[ \t]*\r?\n[ \t]*Skipped:[ \t]+(\d+)/gm;
  const text = stripAnsi(output);
  let last: RegExpExecArray | null = null;
  for (let m = re.exec(text); m; m = re.exec(text)) last = m;
  if (!last) return undefined;
  return { total: Number(last[1]), passed: Number(last[2]), skipped: Number(last[3]) };
}

/**
 * Turns a file's outcome into counts. Failed is `total - passed` because
 * uvu's Total already leaves skipped tests out. A file that crashed, timed
 * out, or ended without a summary counts at least one failure, so nothing
 * that did not demonstrably pass is reported as passing.
 *
 * @example
 * tally({ exitCode: 0, signal: null, timedOut: false, summary: { total: 2, passed: 2, skipped: 0 } })
 * // { passed: 2, failed: 0, skipped: 0 }
 */
export function tally(outcome: FileOutcome): Tally {
  const { summary, exitCode, signal, timedOut } = outcome;
  const passed = summary?.passed ?? 0;
  const skipped = summary?.skipped ?? 0;
  const failedTests = summary ? Math.max(0, summary.total - summary.passed) : 0;
  const ended = signal ? `was killed by ${signal}` : `exited with code ${exitCode}`;
  let problem: string | undefined;
  if (timedOut) problem = `timed out after ${fileTimeoutMs()} ms (TROUPE_TEST_FILE_TIMEOUT_MS); its process group was killed`;
  else if (!summary && exitCode === 0) problem = 'exited 0 without a uvu summary (does it call test.run()?)';
  else if (!summary) problem = `${ended} before printing a uvu summary`;
  else if (exitCode !== 0 && failedTests === 0) problem = `${ended} although all its tests passed`;
  const failed = problem ? Math.max(1, failedTests) : failedTests;
  return problem === undefined ? { passed, failed, skipped } : { passed, failed, skipped, problem };
}

/**
 * Lists compiled test files under the search roots (skipping node_modules),
 * sorted, keeping those whose repository-relative path contains any filter.
 * A file whose source map names a source that no longer exists is a stale
 * build output (`tsc -b` never deletes them) and is reported, not run.
 *
 * @example
 * findTestFiles('/work/main', ['harness']) // { files: ['test/dist/harness/nats-server.test.js'], stale: [] }
 */
export function findTestFiles(root: string, filters: readonly string[] = []): { files: string[]; stale: string[] } {
  const found: string[] = [];
  for (const pattern of SEARCH_ROOTS) {
    for (const dir of expand(root, pattern)) walk(dir, found);
  }
  const files: string[] = [];
  const stale: string[] = [];
  for (const abs of found.sort()) {
    const rel = path.relative(root, abs).split(path.sep).join('/');
    if (filters.length > 0 && !filters.some((f) => rel.includes(f))) continue;
    (isStale(abs) ? stale : files).push(rel);
  }
  return { files, stale };
}

/** Expands one `*` segment (all the search roots need). */
function expand(root: string, pattern: string): string[] {
  let dirs = [root];
  for (const segment of pattern.split('/')) {
    dirs = dirs.flatMap((d) => {
      if (segment !== '*') return [path.join(d, segment)];
      return readDir(d)
        .filter((e) => e.isDirectory() && e.name !== 'node_modules')
        .map((e) => path.join(d, e.name));
    });
  }
  return dirs.filter((d) => fs.existsSync(d));
}

function walk(dir: string, out: string[]): void {
  for (const entry of readDir(dir)) {
    if (entry.name === 'node_modules') continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) walk(full, out);
    else if (entry.isFile() && entry.name.endsWith('.test.js')) out.push(full);
  }
}

function readDir(dir: string): fs.Dirent[] {
  try {
    return fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
}

function isStale(file: string): boolean {
  try {
    const map = JSON.parse(fs.readFileSync(`${file}.map`, 'utf8')) as { sources?: string[]; sourceRoot?: string };
    const source = map.sources?.[0];
    if (!source) return false;
    return !fs.existsSync(path.resolve(path.dirname(file), map.sourceRoot ?? '', source));
  } catch {
    return false; // no or unreadable map: run it
  }
}

function fileTimeoutMs(): number {
  const raw = Number(process.env['TROUPE_TEST_FILE_TIMEOUT_MS']);
  return Number.isFinite(raw) && raw > 0 ? raw : DEFAULT_FILE_TIMEOUT_MS;
}

/** The child currently running, so a signal to the runner can take its whole group down. */
let currentGroup: number | undefined;
/** Set by SIGINT/SIGTERM: finish the current file's teardown, run no more. */
let interrupted: NodeJS.Signals | undefined;

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: the group is already empty
  }
}

/**
 * Pids still running in a process group, zombies excluded: an orphan killed
 * by a test's exit hook is reparented to pid 1, and where pid 1 does not reap
 * (some container inits) it lingers as a zombie that is no leak. Falls back
 * to a signal-0 probe where /proc is missing.
 *
 * @example
 * liveGroupMembers(child.pid) // [] once the file and everything it started are gone
 */
export function liveGroupMembers(pgid: number): number[] {
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    try {
      process.kill(-pgid, 0);
      return [-pgid];
    } catch {
      return [];
    }
  }
  const live: number[] = [];
  for (const pid of entries) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Fields after "(comm)": state ppid pgrp ...
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(pgrp) === pgid && state !== 'Z') live.push(Number(pid));
    } catch {
      // exited while we looked
    }
  }
  return live;
}

/** Where a file may name its node flags: its first bytes (tsc keeps the comment near the top). */
const FLAGS_HEAD_BYTES = 4096;

/**
 * The node flags a test file asks for with a `// @node-flags <flags>` line
 * near its top (within its first 4 KB), e.g. `--expose-gc` for a file that
 * forces garbage collection to measure what its calls retained. Only flags
 * of the shape `--name` or `--name=value` are accepted; anything else fails
 * the file with a clear message rather than being passed to node.
 *
 * @example
 * nodeFlagsOf('// @node-flags --expose-gc\n') // ['--expose-gc']
 */
export function nodeFlagsOf(head: string): string[] {
  const m = /^[ \t]*\/\/ @node-flags[ \t]+(.+)$/m.exec(head);
  if (!m) return [];
  const flags = (m[1] as string).trim().split(/\s+/);
  for (const f of flags) {
    if (!/^--[a-z][a-z0-9-]*(=[^\s]+)?$/.test(f)) throw new Error(`@node-flags: ${JSON.stringify(f)} is not a --flag or --flag=value`);
  }
  return flags;
}

function readHead(file: string): string {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(FLAGS_HEAD_BYTES);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Runs one file as `node <file>` in a new process group (`detached`), so a
 * timeout can kill the file and everything it started. Output streams
 * through; the tail is kept for the summary.
 */
function runFile(root: string, rel: string, timeoutMs: number): Promise<FileOutcome> {
  return new Promise((resolve) => {
    let flags: string[];
    try {
      flags = nodeFlagsOf(readHead(path.join(root, rel)));
    } catch (err) {
      process.stderr.write(`[run-tests] ${rel}: ${(err as Error).message}\n`);
      resolve({ exitCode: 1, signal: null, timedOut: false, summary: undefined });
      return;
    }
    const child = spawn(process.execPath, [...flags, path.join(root, rel)], {
      cwd: root,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FORCE_COLOR: '0' },
    });
    const pgid = child.pid;
    currentGroup = pgid;
    let tail = '';
    let timedOut = false;
    let escalation: NodeJS.Timeout | undefined;
    child.stdout.on('data', (chunk: Buffer) => {
      process.stdout.write(chunk);
      tail = (tail + chunk.toString('utf8')).slice(-KEEP_OUTPUT_CHARS);
    });
    child.stderr.on('data', (chunk: Buffer) => process.stderr.write(chunk));

    const timer = setTimeout(() => {
      timedOut = true;
      process.stderr.write(`\n[run-tests] ${rel} still running after ${timeoutMs} ms: SIGTERM to its process group\n`);
      if (pgid !== undefined) killGroup(pgid, 'SIGTERM');
      escalation = setTimeout(() => {
        if (pgid !== undefined) killGroup(pgid, 'SIGKILL');
      }, KILL_GRACE_MS);
    }, timeoutMs);

    let settled = false;
    const finish = (exitCode: number | null, signal: string | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(escalation);
      currentGroup = undefined;
      // Anything still in the group was leaked by the file (e.g. a worker it never stopped).
      const leaked = pgid === undefined ? [] : liveGroupMembers(pgid);
      if (pgid !== undefined && leaked.length > 0) {
        killGroup(pgid, 'SIGKILL');
        process.stderr.write(`[run-tests] ${rel} left pids ${leaked.join(', ')} running in its group; killed them\n`);
      }
      resolve({ exitCode, signal, timedOut, summary: parseUvuSummary(tail) });
    };
    child.once('error', (err) => {
      process.stderr.write(`[run-tests] could not start ${rel}: ${err.message}\n`);
      finish(null, null);
    });
    // 'close' waits for stdout to drain so the summary is complete; a leaked
    // grandchild holding the pipe open is covered by the timeout.
    child.once('close', (code, signal) => finish(code, signal));
  });
}

async function main(argv: readonly string[]): Promise<number> {
  const root = path.resolve(__dirname, '../../..');
  const filters = argv.filter((a) => a !== '--');
  const { files, stale } = findTestFiles(root, filters);
  for (const rel of stale) {
    process.stdout.write(`[run-tests] skipping stale ${rel}: its source is gone (tsc -b --clean removes it)\n`);
  }
  if (files.length === 0) {
    const where = SEARCH_ROOTS.join(', ');
    process.stdout.write(`no test files (*.test.js) found under ${where}${filters.length ? ` matching ${filters.join(' | ')}` : ''}\n`);
    process.stdout.write('0 passed, 0 failed\n');
    return 1;
  }

  const timeoutMs = fileTimeoutMs();
  const totals = { passed: 0, failed: 0, skipped: 0 };
  const problems: string[] = [];
  for (const rel of files) {
    if (interrupted) break;
    process.stdout.write(`\n▶ ${rel}\n`);
    const started = Date.now();
    const result = tally(await runFile(root, rel, timeoutMs));
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    totals.passed += result.passed;
    totals.failed += result.failed;
    totals.skipped += result.skipped;
    const mark = result.failed > 0 ? '✘' : '✔';
    process.stdout.write(`${mark} ${rel}: ${result.passed} passed, ${result.failed} failed, ${result.skipped} skipped (${seconds} s)\n`);
    if (result.problem) {
      process.stdout.write(`  ${result.problem}\n`);
      problems.push(`${rel}: ${result.problem}`);
    } else if (result.failed > 0) {
      problems.push(`${rel}: ${result.failed} failed`);
    }
  }

  process.stdout.write(`\nfiles: ${files.length} run${stale.length ? `, ${stale.length} stale skipped` : ''}\n`);
  for (const p of problems) process.stdout.write(`  ✘ ${p}\n`);
  process.stdout.write(`skipped: ${totals.skipped}\n`);
  process.stdout.write(`${totals.passed} passed, ${totals.failed} failed\n`);
  if (interrupted) {
    process.stdout.write(`[run-tests] interrupted by ${interrupted}; later files were not run\n`);
    return 128 + os.constants.signals[interrupted];
  }
  return totals.failed > 0 ? 1 : 0;
}

if (require.main === module) {
  // The child runs in its own process group, so Ctrl-C at the terminal does
  // not reach it: forward the signal to the whole group, then leave.
  // main() then prints the totals so far and exits; SIGKILL if the file
  // does not finish its teardown in time.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      interrupted = signal;
      const group = currentGroup;
      if (group === undefined) return;
      killGroup(group, 'SIGTERM');
      setTimeout(() => killGroup(group, 'SIGKILL'), KILL_GRACE_MS).unref();
    });
  }
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`[run-tests] runner failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
