/**
 * The documentation is tested like code:
 *
 * - every ```ts block of README.md and docs/*.md type-checks with the
 *   repository's `tsc` in a scratch ES-module project that depends on the
 *   built `@troupe/runtime`, under the compiler options docs/getting-started.md
 *   documents (its ```json block); a block marked ```ts fragment is skipped
 *   (keep those few);
 * - blocks marked ```ts run (the README tour among them) also run, on the
 *   embedded runtime, and must exit 0;
 * - every relative link resolves to a file inside the repository (and a
 *   `#anchor` to a heading of that file); nothing links outside it;
 * - README.md stays under 10 KB.
 *
 * A failure names the Markdown file and line.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const README_MAX_BYTES = 10 * 1024;

/** README.md and docs/*.md, repository-relative. */
function docFiles(): string[] {
  const docs = fs
    .readdirSync(path.join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`);
  return ['README.md', ...docs];
}

interface Block {
  /** Repository-relative Markdown file. */
  file: string;
  /** 1-based line of the block's first code line in that file. */
  line: number;
  lang: string;
  flags: string[];
  code: string;
}

/** Fenced code blocks (``` or ~~~, any info string) of one Markdown file. */
export function extractBlocks(file: string, text: string): Block[] {
  const lines = text.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})\s*([^`]*)$/.exec(lines[i] ?? '');
    if (!open) continue;
    const fence = open[2] ?? '```';
    const [lang = '', ...flags] = (open[3] ?? '').trim().split(/\s+/);
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && !(lines[j] ?? '').trim().startsWith(fence)) body.push(lines[j++] ?? '');
    blocks.push({ file, line: i + 2, lang, flags, code: body.join('\n') });
    i = j;
  }
  return blocks;
}

const isTs = (b: Block): boolean => b.lang === 'ts' || b.lang === 'typescript';

/** The compiler options docs/getting-started.md tells users to set (its first ```json block). */
function documentedCompilerOptions(): Record<string, unknown> {
  const file = 'docs/getting-started.md';
  const json = extractBlocks(file, fs.readFileSync(path.join(ROOT, file), 'utf8')).find((b) => b.lang === 'json');
  assert.ok(json, `${file} has no \`\`\`json block with the tsconfig`);
  const config = JSON.parse(json.code) as { compilerOptions: Record<string, unknown> };
  assert.is(config.compilerOptions.strict, true, `${file}: the documented tsconfig must be strict`);
  assert.is(config.compilerOptions.experimentalDecorators, true);
  assert.is(config.compilerOptions.emitDecoratorMetadata, true);
  return config.compilerOptions;
}

function link(target: string, at: string): void {
  fs.mkdirSync(path.dirname(at), { recursive: true });
  fs.symlinkSync(target, at, 'dir');
}

/** A scratch `"type": "module"` project whose node_modules point at the workspace's built packages. */
function scratchProject(blocks: Block[]): { dir: string; names: Map<string, Block> } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'troupe-docs-'));
  const runtimeDir = path.join(ROOT, 'packages', 'runtime');
  const nm = path.join(dir, 'node_modules');
  link(runtimeDir, path.join(nm, '@troupe', 'runtime'));
  for (const dep of ['rxjs', 'reflect-metadata']) link(fs.realpathSync(path.join(runtimeDir, 'node_modules', dep)), path.join(nm, dep));
  link(fs.realpathSync(path.join(ROOT, 'node_modules', '@types', 'node')), path.join(nm, '@types', 'node'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'troupe-docs-check', private: true, type: 'module' }));
  const names = new Map<string, Block>();
  fs.mkdirSync(path.join(dir, 'src'));
  for (const b of blocks) {
    const name = `${b.file.replace(/[^A-Za-z0-9]+/g, '_')}_L${b.line}.ts`;
    names.set(`src/${name}`, b);
    // Appended, so block lines keep their numbers; makes a block without imports a module too.
    fs.writeFileSync(path.join(dir, 'src', name), `${b.code}\nexport {};\n`);
  }
  const compilerOptions = { ...documentedCompilerOptions(), rootDir: 'src', outDir: 'dist' };
  fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions, include: ['src'] }, null, 2));
  return { dir, names };
}

const tsBlocks = (): Block[] =>
  docFiles().flatMap((f) => extractBlocks(f, fs.readFileSync(path.join(ROOT, f), 'utf8')).filter((b) => isTs(b) && !b.flags.includes('fragment')));

let project: { dir: string; names: Map<string, Block> } | undefined;

test.after(() => {
  if (project) fs.rmSync(project.dir, { recursive: true, force: true });
});

test('docs - every TypeScript block type-checks under the documented strict settings', () => {
  const blocks = tsBlocks();
  assert.ok(
    blocks.some((b) => b.file === 'README.md'),
    'the README tour was not found',
  );
  project = scratchProject(blocks);
  const tsc = path.join(ROOT, 'node_modules', '.bin', 'tsc');
  const out = spawnSync(tsc, ['-p', project.dir, '--pretty', 'false'], { encoding: 'utf8', timeout: 120_000 });
  const text = `${out.stdout ?? ''}${out.stderr ?? ''}`;
  const errors = text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const m = /^(.+?)\((\d+),(\d+)\): (error TS\d+: .*)$/.exec(l);
      const block = m
        ? project?.names.get(
            path
              .relative(project.dir, path.resolve(project.dir, m[1] ?? ''))
              .split(path.sep)
              .join('/'),
          )
        : undefined;
      return block && m ? `${block.file}:${block.line + Number(m[2]) - 1}:${m[3]} ${m[4]}` : l;
    });
  assert.ok(out.status === 0 && errors.length === 0, `code blocks in the docs do not compile (tsc exit ${String(out.status)}):\n${errors.join('\n')}`);
});

test('docs - blocks marked `ts run` (the README tour among them) run on the embedded runtime', () => {
  assert.ok(project, 'the type-check case did not build the scratch project');
  const runnable = [...project.names].filter(([, b]) => b.flags.includes('run'));
  assert.ok(
    runnable.some(([, b]) => b.file === 'README.md'),
    'the README tour is not marked `ts run`',
  );
  const env: NodeJS.ProcessEnv = { ...process.env, TROUPE_LOG: 'error' };
  delete env.NATS_URL; // embedded
  for (const [name, b] of runnable) {
    const js = path.join(project.dir, name.replace(/^src\//, 'dist/').replace(/\.ts$/, '.js'));
    const r = spawnSync(process.execPath, [js], { cwd: project.dir, env, encoding: 'utf8', timeout: 30_000 });
    assert.is(r.status, 0, `${b.file}:${b.line}: the block exited ${String(r.status ?? r.signal)}:\n${r.stdout}\n${r.stderr}`);
  }
});

/** GitHub's heading anchors of a Markdown file. */
function anchors(text: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  let inFence = false;
  for (const line of text.split('\n')) {
    if (/^\s*(`{3,}|~{3,})/.test(line)) inFence = !inFence;
    const h = inFence ? null : /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!h) continue;
    const base = (h[1] ?? '')
      .toLowerCase()
      .replace(/<[^>]+>/g, '')
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

test('docs - every relative link resolves inside the repository', () => {
  const problems: string[] = [];
  for (const file of docFiles()) {
    const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
    let inFence = false;
    text.split('\n').forEach((line, i) => {
      if (/^\s*(`{3,}|~{3,})/.test(line)) inFence = !inFence;
      if (inFence) return;
      const where = `${file}:${i + 1}`;
      const targets = [...line.replace(/`[^`]*`/g, '').matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)|^\s*\[[^\]]+\]:\s*(\S+)/g)].map(
        (m) => m[1] ?? m[2] ?? '',
      );
      for (const target of targets) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:
        if (target.includes('shared/')) problems.push(`${where}: links the shared folder outside the repository: ${target}`);
        const [rel = '', anchor] = target.split('#');
        const abs = rel === '' ? path.join(ROOT, file) : path.resolve(path.dirname(path.join(ROOT, file)), decodeURI(rel));
        if (path.relative(ROOT, abs).startsWith('..')) {
          problems.push(`${where}: ${target} points outside the repository`);
          continue;
        }
        if (!fs.existsSync(abs)) {
          problems.push(`${where}: ${target} does not exist`);
          continue;
        }
        if (anchor && abs.endsWith('.md') && !anchors(fs.readFileSync(abs, 'utf8')).has(anchor)) {
          problems.push(`${where}: ${target}: no heading #${anchor} in ${path.relative(ROOT, abs)}`);
        }
      }
    });
  }
  assert.equal(problems, [], problems.join('\n'));
});

test('docs - README.md stays a five-minute read (under 10 KB)', () => {
  const size = fs.statSync(path.join(ROOT, 'README.md')).size;
  assert.ok(size < README_MAX_BYTES, `README.md is ${size} bytes; keep it under ${README_MAX_BYTES}: move detail into docs/`);
});

test('docs - the extractor finds fences, flags and lines', () => {
  const md = ['# t', '', '```ts run', 'const a = 1;', '```', '', '~~~ts fragment', 'x', '~~~', '```sh', 'ls', '```'].join('\n');
  const b = extractBlocks('x.md', md);
  assert.equal(
    b.map((x) => [x.lang, x.flags.join(','), x.line, x.code]),
    [
      ['ts', 'run', 4, 'const a = 1;'],
      ['ts', 'fragment', 8, 'x'],
      ['sh', '', 11, 'ls'],
    ],
  );
});

test.run();
