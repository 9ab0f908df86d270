import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { component, endpoint, Runtime, TroupeError } from '@troupe/runtime';
// A type-only import erases the class: emitDecoratorMetadata can only emit `Function` for it.
import type { Runtime as RuntimeType } from '@troupe/runtime';
import type { Logger } from '@troupe/runtime';

/** Where the compiled tests live; fixtures compiled here resolve `@troupe/runtime` from the workspace. */
const HERE = __dirname;
const ROOT = join(HERE, '..', '..', '..');
const TSC = join(ROOT, 'node_modules', '.bin', 'tsc');

async function spawnError(target: new (...args: never[]) => unknown): Promise<TroupeError> {
  const rt = await Runtime.embedded();
  try {
    await rt.spawn(target, { namespace: 'issue18' });
  } catch (err) {
    assert.instance(err, TroupeError);
    return err as TroupeError;
  } finally {
    await rt.close();
  }
  assert.unreachable(`spawning ${target.name} should fail`);
  throw new Error('unreachable');
}

@component('typeonly')
class TypeOnly {
  constructor(readonly rt: RuntimeType) {}
  @endpoint() ping(): string {
    return 'pong';
  }
}

interface Settings {
  model: string;
}

@component('iface')
class Iface {
  constructor(
    readonly log: Runtime,
    readonly settings: Settings,
  ) {}
  @endpoint() ping(): string {
    return 'pong';
  }
}

test('issue 18 - a type-only import of a constructor parameter names the parameter and the fix, not tsyringe\'s "TypeInfo not known for Function"', async () => {
  const e = await spawnError(TypeOnly);
  assert.is(e.code, 'BAD_REQUEST');
  assert.match(e.message, /parameter 0 \(rt\) of TypeOnly's constructor is typed a type-only import/);
  assert.match(e.message, /import \{ Runtime \}`, not `import type`/);
  assert.not.match(e.message, /TypeInfo not known/);
});

test('issue 18 - an interface-typed parameter names the parameter and the explicit tokens', async () => {
  const e = await spawnError(Iface);
  assert.match(e.message, /parameter 1 \(settings\) of Iface's constructor is typed an interface, a type alias or a union \(emitted as Object\)/);
  assert.match(e.message, /@injectConfig\(\)/);
});

test('issue 18 - a class without decorator metadata (emitDecoratorMetadata off, esbuild, tsx) says so', async () => {
  // A class decorated by hand gets no design:paramtypes, exactly like a build without emitDecoratorMetadata.
  const NoMeta = class NoMeta {
    constructor(readonly log: Logger) {}
    ping(): string {
      return 'pong';
    }
  };
  endpoint()(NoMeta.prototype, 'ping', Object.getOwnPropertyDescriptor(NoMeta.prototype, 'ping') as PropertyDescriptor);
  component('nometa')(NoMeta);
  const e = await spawnError(NoMeta);
  assert.match(e.message, /no decorator metadata/);
  assert.match(e.message, /"emitDecoratorMetadata": true/);
});

test('issue 18 - a standard (TC39) decorator call names the tsconfig fix', () => {
  const standard = { kind: 'method', name: 'generate' };
  assert.throws(
    () => (endpoint() as unknown as (v: unknown, c: unknown) => void)(() => 1, standard),
    /"experimentalDecorators": true and "emitDecoratorMetadata": true/,
  );
  assert.throws(
    () => (component('x') as unknown as (v: unknown, c: unknown) => void)(class {}, { kind: 'class', name: 'X' }),
    /@component\('x'\) \(on X\) was called as a standard \(TC39\) decorator/,
  );
});

test('issue 18 - code compiled without experimentalDecorators fails at load with the fix named', () => {
  // As a user would hit it: the compiler reports the decorator signature, emits anyway, and the program runs.
  const dir = mkdtempSync(join(HERE, 'tc39-'));
  try {
    writeFileSync(
      join(dir, 'main.ts'),
      `import { component, endpoint } from '@troupe/runtime';\n@component('gateway')\nexport class Gateway {\n  @endpoint() generate(): string { return 'x'; }\n}\n`,
    );
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { target: 'ES2022', module: 'commonjs', moduleResolution: 'node10', strict: true, skipLibCheck: true, types: [], outDir: 'out' },
        files: ['main.ts'],
      }),
    );
    const tsc = spawnSync(TSC, ['-p', dir], { encoding: 'utf8', timeout: 60_000 });
    assert.ok(tsc.status !== null, `tsc did not finish: ${tsc.error?.message}`);
    const run = spawnSync(process.execPath, [join(dir, 'out', 'main.js')], { encoding: 'utf8', timeout: 20_000 });
    assert.is.not(run.status, 0, 'the program fails');
    assert.match(run.stderr, /@endpoint\(\) \(on generate\) was called as a standard \(TC39\) decorator/, run.stderr);
    assert.match(run.stderr, /"experimentalDecorators": true/);
    assert.not.match(run.stderr, /\[object Object\]/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
