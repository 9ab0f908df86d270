import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

/**
 * Issue 18, item 1: a newcomer's way in. Packs @troupe/runtime as npm would
 * publish it, installs the tarball with its peers into a folder outside the
 * workspace exactly as a user would (npm, the documented packages), compiles
 * the starter with the documented tsconfig as an ES-module project and as a
 * CommonJS one, and runs each embedded and on NATS.
 */
const ROOT = join(__dirname, '..', '..', '..');
const RUNTIME = join(ROOT, 'packages', 'runtime');
const STARTER = join(ROOT, 'examples', 'starter');
const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

/** Versions a user installs beside the tarball: the peers as the package declares them, the compiler the workspace uses. */
function userDependencies(): string[] {
  const pkg = JSON.parse(readFileSync(join(RUNTIME, 'package.json'), 'utf8')) as { peerDependencies: Record<string, string> };
  const root = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> };
  return [
    ...Object.entries(pkg.peerDependencies).map(([name, range]) => `${name}@${range}`),
    `typescript@${root.devDependencies.typescript}`,
    `@types/node@${root.devDependencies['@types/node']}`,
  ];
}

function run(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs: number }): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, encoding: 'utf8', timeout: opts.timeoutMs });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')} did not finish within ${opts.timeoutMs} ms: ${r.error.message}\n${r.stdout}\n${r.stderr}`);
  return r;
}

const s = suite<{ dir?: string; tarball?: string }>('starter package');

s.before((ctx) => {
  ctx.dir = mkdtempSync(join(tmpdir(), 'troupe-starter-'));
});

s.after((ctx) => {
  if (ctx.dir) rmSync(ctx.dir, { recursive: true, force: true });
});

s('the starter compiles with the tsconfig docs/getting-started.md documents, verbatim', () => {
  const guide = readFileSync(join(ROOT, 'docs', 'getting-started.md'), 'utf8');
  const documented = /```json\n([\s\S]*?)\n```/.exec(guide)?.[1];
  assert.ok(documented, 'the guide has a ```json tsconfig block');
  assert.equal(JSON.parse(readFileSync(join(STARTER, 'tsconfig.starter.json'), 'utf8')), JSON.parse(documented));
});

s('npm pack ships dist only: no build info, no test files', (ctx) => {
  const dir = ctx.dir as string;
  const r = run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: RUNTIME, timeoutMs: 60_000 });
  assert.is(r.status, 0, r.stderr);
  const [info] = JSON.parse(r.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  assert.ok(info, 'npm pack reported a tarball');
  const files = info.files.map((f) => f.path);
  assert.ok(files.includes('dist/index.js') && files.includes('dist/index.d.ts') && files.includes('dist/internal.js'), 'the entry points are in');
  assert.equal(
    files.filter((f) => f !== 'package.json' && !f.startsWith('dist/')),
    [],
    'nothing outside dist but package.json',
  );
  assert.equal(
    files.filter((f) => /tsbuildinfo|\.test\.|dist-test/.test(f)),
    [],
    'no build info and no tests',
  );
  ctx.tarball = join(dir, info.filename);
});

s('the tarball installs beside its peers with npm, outside the workspace', (ctx) => {
  const dir = ctx.dir as string;
  assert.ok(ctx.tarball, 'packed');
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'my-troupe-app', private: true }));
  const t0 = Date.now();
  // --prefer-offline: the npm cache answers what it holds, the registry the rest.
  const r = run('npm', ['install', ctx.tarball as string, ...userDependencies(), '--prefer-offline', '--no-audit', '--no-fund'], {
    cwd: dir,
    timeoutMs: 240_000,
  });
  assert.is(r.status, 0, `${r.stdout}\n${r.stderr}`);
  console.log(`  npm install of the tarball and its peers: ${Date.now() - t0} ms`);
  const installed = readdirSync(join(dir, 'node_modules', '@troupe', 'runtime', 'dist'));
  assert.ok(!installed.some((f) => f.includes('tsbuildinfo')), 'no build info installed');
});

for (const kind of ['module', 'commonjs'] as const) {
  s(`a ${kind} project compiles the starter with the documented tsconfig and runs it embedded and on NATS`, (ctx) => {
    const dir = ctx.dir as string;
    const project = join(dir, kind);
    mkdirSync(project, { recursive: true });
    cpSync(join(STARTER, 'src'), join(project, 'src'), { recursive: true });
    cpSync(join(STARTER, 'tsconfig.starter.json'), join(project, 'tsconfig.json'));
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: `starter-${kind}`, private: true, type: kind }));
    if (kind === 'module') {
      // ES modules allow top-level await (CommonJS does not: wrap it in an async main there).
      writeFileSync(
        join(project, 'src', 'top-level.ts'),
        "import { Runtime } from '@troupe/runtime';\nconst runtime = await Runtime.embedded();\nawait runtime.close();\nconsole.log('top-level await: ok');\n",
      );
    }
    const t0 = Date.now();
    const tsc = run(join(dir, 'node_modules', '.bin', 'tsc'), ['-p', project], { cwd: project, timeoutMs: 120_000 });
    assert.is(tsc.status, 0, `tsc: ${tsc.stdout}\n${tsc.stderr}`);
    console.log(`  ${kind}: tsc ${Date.now() - t0} ms`);
    const main = join(project, 'dist', 'main.js');
    if (kind === 'module') assert.match(readFileSync(main, 'utf8'), /^import .* from '@troupe\/runtime';$/m, 'compiled as an ES module with named imports');

    const env = { ...process.env };
    delete env.NATS_URL;
    const embedded = run(process.execPath, [main], { cwd: project, env, timeoutMs: 30_000 });
    assert.is(embedded.status, 0, `${embedded.stdout}\n${embedded.stderr}`);
    assert.match(embedded.stdout, /^embedded: HELLO FROM THE TROUPE STARTER$/m);
    assert.match(embedded.stdout, /has no endpoint "nope"; its running instances serve: generate/);

    const onNats = run(process.execPath, [main], {
      cwd: project,
      env: { ...env, NATS_URL, STARTER_NAMESPACE: `starter${process.pid}${kind}` },
      timeoutMs: 30_000,
    });
    assert.is(onNats.status, 0, `${onNats.stdout}\n${onNats.stderr}`);
    assert.match(onNats.stdout, /^nats: HELLO FROM THE TROUPE STARTER$/m);

    if (kind === 'module') {
      const tla = run(process.execPath, [join(project, 'dist', 'top-level.js')], { cwd: project, env, timeoutMs: 30_000 });
      assert.is(tla.status, 0, `${tla.stdout}\n${tla.stderr}`);
      assert.match(tla.stdout, /top-level await: ok/);
    }
  });
}

s.run();
