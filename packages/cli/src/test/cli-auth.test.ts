import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { NatsServer } from '@troupe/testing';
import { suite } from 'uvu';
import { ExitCode } from '../exit-codes';
import { runCli } from './cli';

// issue #12: credentials and TLS options reach NATS (RuntimeOptions.nats); a refused login is a CONNECTION error.

const s = suite<{ servers: NatsServer[] }>('cli - auth and TLS', { servers: [] });
s.after.each(async (ctx) => {
  for (const sv of ctx.servers.splice(0)) await sv.stop().catch(() => undefined);
});

async function server(ctx: { servers: NatsServer[] }, config: string): Promise<NatsServer> {
  const sv = await NatsServer.start({ jetstream: true, config });
  ctx.servers.push(sv);
  return sv;
}

s('--token and --user/--password log in; a wrong or missing secret is CONNECTION_FAILED (exit 3)', async (ctx) => {
  const tok = await server(ctx, 'authorization { token: "s3cret" }');
  const ok = await runCli(['ls', '--json', '--token', 's3cret', '--server', tok.url]);
  assert.is(ok.code, 0, ok.stderr);
  assert.equal((JSON.parse(ok.stdout) as { instances: unknown[] }).instances, []);
  for (const args of [[], ['--token', 'wrong']]) {
    const bad = await runCli(['ls', ...args, '--server', tok.url]);
    assert.is(bad.code, ExitCode.CONNECTION, bad.stderr);
    assert.match(bad.stderr, /^troupe: CONNECTION_FAILED: .*(AUTHORIZATION|Authorization)/);
  }
  const up = await server(ctx, 'authorization { users: [ { user: "ops", password: "pw1" } ] }');
  assert.is((await runCli(['ls', '--user', 'ops', '--password', 'pw1', '--server', up.url])).code, 0);
  assert.is((await runCli(['ls', '--user', 'ops', '--password', 'nope', '--server', up.url])).code, ExitCode.CONNECTION);
});

s('--tls-ca verifies a TLS server; without it the self-signed certificate is refused', async (ctx) => {
  let dir: string;
  try {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'troupe-cli-tls-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        path.join(dir, 'key.pem'),
        '-out',
        path.join(dir, 'cert.pem'),
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1,DNS:localhost',
      ],
      { stdio: 'ignore' },
    );
  } catch {
    console.log('cli TLS: SKIPPED, reason: openssl could not make a test certificate');
    return;
  }
  const tls = await server(ctx, `tls { cert_file: "${path.join(dir, 'cert.pem')}", key_file: "${path.join(dir, 'key.pem')}" }`);
  const ok = await runCli(['ls', '--json', '--tls-ca', path.join(dir, 'cert.pem'), '--server', tls.url]);
  assert.is(ok.code, 0, ok.stderr);
  const refused = await runCli(['ls', '--server', tls.url]);
  assert.is(refused.code, ExitCode.CONNECTION, refused.stderr);
  const half = await runCli(['ls', '--tls-cert', path.join(dir, 'cert.pem'), '--server', tls.url]);
  assert.is(half.code, ExitCode.USAGE, half.stderr);
});

s.run();
