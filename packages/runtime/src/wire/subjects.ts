import { TroupeError } from '../errors';
import { validateInstanceId, validateName } from '../names';

/**
 * Every subject Troupe uses is built here and nowhere else, from names that
 * have been validated. Everything of a namespace lives under `{ns}.>` so one
 * NATS permission per namespace isolates tenants.
 */

/** An endpoint's address: the three validated names. */
export interface EndpointAddress {
  readonly namespace: string;
  readonly component: string;
  readonly endpoint: string;
}

/**
 * Validates the three names of an endpoint address.
 *
 * @example
 * endpointAddress('llama_8b', 'decode', 'generate');
 */
export function endpointAddress(namespace: string, component: string, endpoint: string): EndpointAddress {
  return {
    namespace: validateName('namespace', namespace),
    component: validateName('component', component),
    endpoint: validateName('endpoint', endpoint),
  };
}

/**
 * `{ns}.{comp}.{ep}`: the subject every instance of an endpoint listens on in
 * the queue group of the same name (load balancing by the NATS server).
 *
 * @example
 * queueSubject(endpointAddress('llama_8b', 'decode', 'generate')); // 'llama_8b.decode.generate'
 */
export function queueSubject(a: EndpointAddress): string {
  return `${a.namespace}.${a.component}.${a.endpoint}`;
}

/** The queue group name of an endpoint (the same string as its subject). */
export function queueGroup(a: EndpointAddress): string {
  return queueSubject(a);
}

/**
 * `{ns}.{comp}.{ep}.{instance_id}`: one instance's mailbox for direct and
 * client-routed requests, and for stream control (credit, cancel).
 *
 * @example
 * mailboxSubject(addr, '9f3c0a7e12b4d8e1'); // 'llama_8b.decode.generate.9f3c0a7e12b4d8e1'
 */
export function mailboxSubject(a: EndpointAddress, instanceId: string): string {
  return `${queueSubject(a)}.${validateInstanceId(instanceId)}`;
}

/** Same as {@link mailboxSubject} for an id the runtime made itself (no re-validation on the hot path). */
export function ownMailboxSubject(a: EndpointAddress, instanceId: string): string {
  // Joined, not concatenated: one flat string, where `+` leaves a tree of four cons strings that an
  // instance's subscription keeps (and flattens into a second copy on its first write): 100,000 of them.
  return [a.namespace, a.component, a.endpoint, instanceId].join('.');
}

/**
 * `{prefix}.{token}`: the root of one runtime's reply inbox; replies go to
 * `{root}.{n}` and one wildcard subscription `{root}.*` receives them all.
 * The prefix is configurable because a tenant allowed `_INBOX.>` reads every
 * reply.
 */
export function inboxRoot(prefix: string, token: string): string {
  return `${prefix}.${token}`;
}

/** The wildcard that matches every reply subject under an inbox root. */
export function inboxWildcard(root: string): string {
  return `${root}.*`;
}

/** Validates an inbox prefix: one or more dot-separated tokens, no wildcards. */
export function validateInboxPrefix(prefix: string): string {
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(prefix)) {
    throw new TroupeError('BAD_REQUEST', `invalid inbox prefix ${JSON.stringify(prefix)}: dot-separated tokens of letters, digits, "_" and "-"`);
  }
  return prefix;
}

/**
 * `{ns}.{comp}.{ep}.{instance_id}`: the registry key of one endpoint of one
 * instance (the same tokens as its mailbox subject).
 */
export function registryKey(a: EndpointAddress, instanceId: string): string {
  return `${queueSubject(a)}.${instanceId}`;
}

/**
 * Prefix of process heartbeats ("beats"): `_TROUPE.lease.{lease}`, one small
 * message per process per heartbeat on plain core NATS, so liveness needs no
 * JetStream write (a stream-leader election stalls those for seconds). A
 * lease is per process and spans namespaces, so it lives outside `{ns}.>`:
 * a process that hosts instances needs publish on `_TROUPE.lease.{its lease}`
 * (or `_TROUPE.lease.*`), a watcher subscribe on `_TROUPE.lease.*`.
 *
 * @example
 * LEASE_BEAT_PREFIX; // '_TROUPE.lease'
 */
export const LEASE_BEAT_PREFIX = '_TROUPE.lease';

/**
 * `_TROUPE.lease.{lease}`: where the process holding `lease` beats.
 *
 * @example
 * leaseBeatSubject('9f3c0a7e12b4d8e1'); // '_TROUPE.lease.9f3c0a7e12b4d8e1'
 */
export function leaseBeatSubject(lease: string): string {
  return `${LEASE_BEAT_PREFIX}.${lease}`;
}

/**
 * `_TROUPE.lease.*`: every process's beats (what watchers subscribe to).
 *
 * @example
 * transport.subscribe(LEASE_BEAT_WILDCARD, (m) => console.log(new TextDecoder().decode(m.data)));
 */
export const LEASE_BEAT_WILDCARD = `${LEASE_BEAT_PREFIX}.*`;

/** `{ns}.{comp}.{ep}.*`: every registry key of one endpoint. */
export function registryFilter(a: EndpointAddress): string {
  return `${queueSubject(a)}.*`;
}

/**
 * The registry filter of a listing scope: `''` every instance, `ns`,
 * `ns.comp` or `ns.comp.ep` (each token a valid name).
 */
export function registryScopeFilter(scope: string): string {
  if (scope === '' || scope === '>') return '>';
  const parts = scope.split('.');
  if (parts.length > 3) throw new TroupeError('BAD_REQUEST', `a listing scope is ns, ns.comp or ns.comp.ep, got "${scope}"`);
  const kinds = ['namespace', 'component', 'endpoint'] as const;
  parts.forEach((p, i) => validateName(kinds[i] as (typeof kinds)[number], p));
  return parts.length === 3 ? `${scope}.*` : `${scope}.>`;
}

/** `{ns}._ev.{event}`: a namespace-scoped event. */
export function namespaceEventSubject(namespace: string, event: string): string {
  return `${validateName('namespace', namespace)}._ev.${validateName('event', event)}`;
}

/** `{ns}.{comp}._ev.{event}`: a component-scoped event. */
export function componentEventSubject(namespace: string, component: string, event: string): string {
  return `${validateName('namespace', namespace)}.${validateName('component', component)}._ev.${validateName('event', event)}`;
}

/** `{ns}._ev.*`: every namespace-scoped event of a namespace. */
export function namespaceEventWildcard(namespace: string): string {
  return `${validateName('namespace', namespace)}._ev.*`;
}

/** `{ns}.{comp}._ev.*`: every event of one component. */
export function componentEventWildcard(namespace: string, component: string): string {
  return `${validateName('namespace', namespace)}.${validateName('component', component)}._ev.*`;
}

/** `{ns}.*._ev.*`: every component-scoped event of a namespace, whatever the component. */
export function anyComponentEventWildcard(namespace: string): string {
  return `${validateName('namespace', namespace)}.*._ev.*`;
}

/**
 * The JetStream stream (durable log) that stores a namespace's events once
 * they are made durable: `TROUPE_EV_{ns}`, capturing both event scopes.
 * Stream names may not contain `.`, `*`, `>` or whitespace; namespace names
 * never do.
 *
 * @example
 * eventLogName('llama_8b'); // 'TROUPE_EV_llama_8b'
 */
export function eventLogName(namespace: string): string {
  return `TROUPE_EV_${validateName('namespace', namespace)}`;
}

/** The subjects a namespace's event log captures: `{ns}._ev.*` and `{ns}.*._ev.*`. */
export function eventLogSubjects(namespace: string): string[] {
  return [namespaceEventWildcard(namespace), anyComponentEventWildcard(namespace)];
}

/** Where an event subject says an event was published. */
export interface EventSubjectParts {
  readonly namespace: string;
  /** Undefined for a namespace-scoped event. */
  readonly component: string | undefined;
  readonly event: string;
}

/**
 * Splits `{ns}._ev.{event}` or `{ns}.{comp}._ev.{event}`; undefined for
 * anything else.
 *
 * @example
 * parseEventSubject('llama_8b.backend._ev.kv_events'); // { namespace: 'llama_8b', component: 'backend', event: 'kv_events' }
 */
export function parseEventSubject(subject: string): EventSubjectParts | undefined {
  const t = subject.split('.');
  if (t.length === 3 && t[1] === '_ev') return { namespace: t[0] as string, component: undefined, event: t[2] as string };
  if (t.length === 4 && t[2] === '_ev') return { namespace: t[0] as string, component: t[1] as string, event: t[3] as string };
  return undefined;
}
