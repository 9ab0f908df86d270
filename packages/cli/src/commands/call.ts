import type { EndpointClient, Runtime } from '@troupe/runtime/internal';
import { parseEndpoint, parseInstanceId } from '../address';
import { readBody, toJson } from '../body';
import { connect, type ConnectionFlags } from '../connection';
import { toCliError } from '../exit-codes';
import { Output, type OutputFlags } from '../output';

/** Options of `troupe call`. */
export interface CallFlags extends ConnectionFlags, OutputFlags {
  instance?: string;
  timeout: number;
}

/** Opens an untyped client of `ns.comp.ep`, pinned to `--instance` when given. */
export function endpointClient(runtime: Runtime, address: string, instance: string | undefined): EndpointClient {
  const a = parseEndpoint(address);
  const client = runtime.namespace(a.namespace).component(a.component).endpoint(a.endpoint).client({ router: 'queue' });
  return instance === undefined ? client : client.direct(instance);
}

/**
 * `troupe call ns.comp.ep [json|@file|-]`: one request, one reply. Sent to
 * the endpoint's NATS queue group (no discovery read, so no JetStream needed
 * and no wait for a registry), or to one instance's mailbox with
 * `--instance`. The reply is printed as JSON (`{"reply": ...}` with `--json`).
 */
export async function call(address: string, bodyArg: string | undefined, flags: CallFlags): Promise<void> {
  parseEndpoint(address);
  const instance = flags.instance === undefined ? undefined : parseInstanceId(flags.instance);
  const body = await readBody(bodyArg);
  const out = Output.from(flags);
  const runtime = await out.spin('connecting', connect(flags, { discovery: false, requestTimeoutMs: flags.timeout }));
  try {
    const client = endpointClient(runtime, address, instance);
    const reply = await out
      .spin(`calling ${address}${instance ? ` on ${instance}` : ''}`, client.call(body, { timeout: flags.timeout }))
      .catch((err: unknown) => {
        throw toCliError(err);
      });
    if (out.json) out.jsonLine({ reply });
    else out.line(typeof reply === 'string' ? reply : toJson(reply, 2));
  } finally {
    await runtime.close();
  }
}
