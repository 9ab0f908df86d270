import { TroupeError } from './errors';

/**
 * The fix for a build without `experimentalDecorators`: TypeScript then emits
 * standard (TC39) decorators, called as `(value, context)` where `context`
 * is an object with a `kind` — Troupe's decorators are the legacy ones
 * (`(target, key, descriptor)`), and their DI needs the legacy
 * `emitDecoratorMetadata`. Throws `BAD_REQUEST` naming the tsconfig fix when
 * `context` has that shape; returns otherwise.
 */
export function refuseStandardDecorator(decorator: string, context: unknown): void {
  if (context === null || typeof context !== 'object' || typeof (context as { kind?: unknown }).kind !== 'string') return;
  const where = typeof (context as { name?: unknown }).name === 'string' ? ` (on ${(context as { name: string }).name})` : '';
  throw new TroupeError(
    'BAD_REQUEST',
    `${decorator}${where} was called as a standard (TC39) decorator, which means the code was compiled without "experimentalDecorators". ` +
      'Troupe uses TypeScript\'s legacy decorators: set "experimentalDecorators": true and "emitDecoratorMetadata": true under compilerOptions in tsconfig.json and rebuild ' +
      '(esbuild/tsx emit no decorator metadata: give constructor parameters explicit tokens there)',
  );
}
