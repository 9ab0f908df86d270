import { TroupeError } from '../errors';

/**
 * A valid header name: printable ASCII without `:` — the rule nats.js applies
 * (`canonicalMIMEHeaderKey` refuses `:` and anything outside `!`..`~`). Both
 * transports check names with it, so a header accepted in memory is accepted
 * on NATS and the reverse.
 */
const HEADER_NAME = /^[!-9;-~]+$/;
/** A CR or LF in a value would end the header line early (header injection). */
const CRLF = /[\r\n]/;

/**
 * Throws `BAD_REQUEST` unless `name: value` can travel as a NATS header.
 * Called by each transport for every header it sends (the memory transport
 * copies them, the NATS one encodes them once per frozen record).
 *
 * @example
 * checkHeader('Troupe-Id', 'abc'); // fine
 * checkHeader('a:b', 'x');         // throws BAD_REQUEST: invalid header name "a:b"
 */
export function checkHeader(name: string, value: unknown): void {
  if (!HEADER_NAME.test(name)) throw new TroupeError('BAD_REQUEST', `invalid header name ${JSON.stringify(name)}: printable ASCII without ':'`);
  if (typeof value !== 'string') throw new TroupeError('BAD_REQUEST', `header ${JSON.stringify(name)} must be a string`);
  if (CRLF.test(value)) throw new TroupeError('BAD_REQUEST', `header ${name} must not contain CR or LF`);
}
