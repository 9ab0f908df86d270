import { TroupeError } from './errors';

/** The rule every namespace, component, endpoint and event name follows. */
export const NAME_RULE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/** What a name names, for error messages. */
export type NameKind = 'namespace' | 'component' | 'endpoint' | 'event' | 'group' | 'durable';

/**
 * Throws `BAD_REQUEST` unless `name` is a valid Troupe name. NATS clients
 * accept `*`, `>` and empty tokens on publish, so every name is checked here
 * before any subject is built from it; a leading `_` is reserved for the
 * runtime (`_ev`, `_INBOX`).
 *
 * @example
 * validateName('component', 'decode'); // ok
 * validateName('component', 'de.code'); // throws TroupeError BAD_REQUEST
 */
export function validateName(kind: NameKind, name: unknown): string {
  if (typeof name !== 'string' || !NAME_RULE.test(name)) {
    const shown = typeof name === 'string' ? JSON.stringify(name) : String(name);
    const why =
      typeof name === 'string' && name.startsWith('_')
        ? 'names beginning with "_" are reserved for the runtime'
        : `names must match ${NAME_RULE.source} (letters, digits, "_" and "-", 1-64 chars, not starting with "_" or "-")`;
    throw new TroupeError('BAD_REQUEST', `invalid ${kind} name ${shown}: ${why}`, {
      data: { kind, name: shown, rule: NAME_RULE.source },
    });
  }
  return name;
}

/** An `instance_id`: 16 lowercase hex characters (a random 64-bit value). */
export const INSTANCE_ID_RULE = /^[0-9a-f]{16}$/;

/** Throws `BAD_REQUEST` unless `id` is a valid instance id. */
export function validateInstanceId(id: unknown): string {
  if (typeof id !== 'string' || !INSTANCE_ID_RULE.test(id)) {
    throw new TroupeError('BAD_REQUEST', `invalid instance id ${JSON.stringify(id)}: must be 16 lowercase hex characters`);
  }
  return id;
}
