import * as fs from 'node:fs';
import { credsAuthenticator } from 'nats';
import { Runtime, type RuntimeOptions } from '@troupe/runtime/internal';
import { CliError, oneLine } from './exit-codes';

/** The connection options every command takes (see `troupe --help`). */
export interface ConnectionFlags {
  server?: string;
  creds?: string;
  user?: string;
  password?: string;
  token?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** Bound on reaching the server, ms. */
  connectTimeout?: number;
  inboxPrefix?: string;
}

/** Where the CLI connects: `--server`, else `NATS_URL`, else the local default. */
export function serverUrls(flags: ConnectionFlags): string[] {
  const text = flags.server ?? process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/**
 * The runtime options for the flags: NATS only (an embedded runtime would
 * list nothing and answer nothing), auth and TLS passed through to nats.js,
 * no reconnect loop on the first connect so an unreachable server fails
 * within the dial timeout.
 *
 * @example
 * runtimeOptions({ server: 'nats://10.0.0.5:4222', creds: 'user.creds' }, { discovery: false })
 */
export function runtimeOptions(flags: ConnectionFlags, extra: RuntimeOptions = {}): RuntimeOptions {
  const servers = serverUrls(flags);
  if (servers.length === 0) throw new CliError('USAGE', '--server names no URL');
  const nats: NonNullable<RuntimeOptions['nats']> = {
    timeout: flags.connectTimeout ?? 2_000,
    waitOnFirstConnect: false,
    name: 'troupe-cli',
  };
  if (flags.creds !== undefined) {
    let creds: Uint8Array;
    try {
      creds = fs.readFileSync(flags.creds);
    } catch (err) {
      throw new CliError('USAGE', `cannot read --creds ${flags.creds}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    nats.authenticator = credsAuthenticator(creds);
  }
  if (flags.user !== undefined) nats.user = flags.user;
  if (flags.password !== undefined) nats.pass = flags.password;
  if (flags.token !== undefined) nats.token = flags.token;
  if (flags.tlsCa !== undefined || flags.tlsCert !== undefined || flags.tlsKey !== undefined) {
    if ((flags.tlsCert === undefined) !== (flags.tlsKey === undefined)) throw new CliError('USAGE', '--tls-cert and --tls-key go together');
    nats.tls = {
      ...(flags.tlsCa !== undefined ? { caFile: flags.tlsCa } : {}),
      ...(flags.tlsCert !== undefined ? { certFile: flags.tlsCert, keyFile: flags.tlsKey } : {}),
    };
  }
  return {
    ...extra,
    servers,
    nats,
    ...(flags.inboxPrefix !== undefined ? { inboxPrefix: flags.inboxPrefix } : {}),
  };
}

/**
 * Connects a runtime for a command. Any failure here (refused, auth, TLS,
 * no JetStream where discovery needs it) is a `CONNECTION` error (exit 3)
 * naming the server.
 */
export async function connect(flags: ConnectionFlags, extra: RuntimeOptions = {}): Promise<Runtime> {
  const options = runtimeOptions(flags, extra);
  try {
    return await Runtime.connect(options);
  } catch (err) {
    const msg = oneLine((err as Error).message ?? String(err));
    const where = (options.servers as string[]).join(', ');
    throw new CliError('CONNECTION', msg.includes(where) ? msg : `cannot connect to NATS at ${where}: ${msg}`, { cause: err });
  }
}
