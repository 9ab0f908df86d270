import { validateInstanceId, validateName } from '@troupe/runtime/internal';
import { CliError, toCliError } from './exit-codes';

/** A parsed `ns[.comp[.ep]]` argument; absent parts are undefined. */
export interface Scope {
  readonly namespace: string | undefined;
  readonly component: string | undefined;
  readonly endpoint: string | undefined;
  /** The scope string the runtime's listing takes (`''`, `ns`, `ns.comp`, `ns.comp.ep`). */
  readonly text: string;
}

const KINDS = ['namespace', 'component', 'endpoint'] as const;

/**
 * Parses a scope of at most `maxParts` dot-separated names, validating each
 * with the runtime's name rule; a bad one is a usage error naming the part.
 *
 * @example
 * parseScope('llama_8b.decode', 3) // { namespace: 'llama_8b', component: 'decode', endpoint: undefined, text: 'llama_8b.decode' }
 */
export function parseScope(text: string | undefined, maxParts: 1 | 2 | 3, minParts: 0 | 1 | 2 | 3 = 0): Scope {
  const raw = text ?? '';
  const parts = raw === '' ? [] : raw.split('.');
  const shape = ['ns', 'ns.comp', 'ns.comp.ep'].slice(Math.max(0, minParts - 1), maxParts).join(' or ');
  if (parts.length > maxParts || parts.length < minParts) {
    throw new CliError('USAGE', `expected ${shape}, got ${JSON.stringify(raw)}`);
  }
  try {
    parts.forEach((p, i) => validateName(KINDS[i] as (typeof KINDS)[number], p));
  } catch (err) {
    throw toCliError(err, { local: true });
  }
  return { namespace: parts[0], component: parts[1], endpoint: parts[2], text: raw };
}

/**
 * Parses `ns.comp.ep` (all three required).
 *
 * @example
 * parseEndpoint('llama_8b.decode.generate') // { namespace: 'llama_8b', component: 'decode', endpoint: 'generate' }
 */
export function parseEndpoint(text: string): { namespace: string; component: string; endpoint: string } {
  const s = parseScope(text, 3, 3);
  return { namespace: s.namespace as string, component: s.component as string, endpoint: s.endpoint as string };
}

/** Validates an `--instance` id (16 lowercase hex characters). */
export function parseInstanceId(id: string): string {
  try {
    return validateInstanceId(id);
  } catch (err) {
    throw toCliError(err, { local: true });
  }
}
