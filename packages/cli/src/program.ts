import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { call } from './commands/call';
import { events } from './commands/events';
import { ls } from './commands/ls';
import { run } from './commands/run';
import { stats } from './commands/stats';
import { stream } from './commands/stream';
import { CliError, ExitCode, toCliError } from './exit-codes';
import { Output } from './output';

const VERSION = '0.1.0';

function positiveInt(what: string) {
  return (text: string): number => {
    const n = Number(text);
    if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${what} takes a positive integer, got ${JSON.stringify(text)}`);
    return n;
  };
}

/** `--stop-grace`: 0..600 000 ms, the runtime's bounds of `stopGraceMs`. */
function graceMs(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 600_000)
    throw new InvalidArgumentError(`--stop-grace takes an integer in 0..600000 (ms), got ${JSON.stringify(text)}`);
  return n;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/**
 * The `troupe` program (commander): connection and output options on the
 * root, one subcommand per verb. Exposed so tests and embedders can run it
 * without a process.
 *
 * @example
 * program().commands.map((c) => c.name()) // ['ls', 'call', 'stream', 'events', 'stats', 'run']
 */
export function program(): Command {
  const p = new Command('troupe')
    .description('List, call, stream, tail events, read stats and run components of a Troupe deployment on NATS')
    .version(VERSION)
    .showHelpAfterError(false)
    .addOption(new Option('-s, --server <urls>', 'NATS server URL(s), comma separated').env('NATS_URL').default('nats://127.0.0.1:4222'))
    .option('--creds <file>', 'NATS user credentials file (JWT + nkey seed)')
    .option('--user <name>', 'NATS user')
    .option('--password <password>', 'NATS password')
    .option('--token <token>', 'NATS auth token')
    .option('--tls-ca <file>', 'CA certificate to verify the server')
    .option('--tls-cert <file>', 'client certificate (with --tls-key)')
    .option('--tls-key <file>', 'client private key (with --tls-cert)')
    .option('--inbox-prefix <prefix>', 'reply inbox prefix (when permissions give this user a private one)')
    .option('--connect-timeout <ms>', 'bound on reaching the server', positiveInt('--connect-timeout'), 2_000)
    .option('--json', 'machine-readable output: one JSON document, or one JSON line per item', false);

  p.command('ls')
    .description('list instances as a tree: namespace, component, endpoint, instance (host, pid, age, properties)')
    .argument('[scope]', 'ns, ns.comp or ns.comp.ep (default: everything)')
    .option('-w, --watch', 'redraw as instances come and go (one JSON line per change with --json)', false)
    .option('-t, --timeout <ms>', 'bound on the registry read', positiveInt('--timeout'), 5_000)
    .action((scope: string | undefined, _o: unknown, cmd: Command) => ls(scope, cmd.optsWithGlobals()));

  p.command('call')
    .description('send one request to an endpoint and print the reply')
    .argument('<endpoint>', 'ns.comp.ep')
    .argument('[body]', 'JSON body, @file.json, or - for stdin (default: no body)')
    .option('-i, --instance <id>', "send to this instance's mailbox instead of the queue group")
    .option('-t, --timeout <ms>', 'deadline of the call', positiveInt('--timeout'), 10_000)
    .action((address: string, body: string | undefined, _o: unknown, cmd: Command) => call(address, body, cmd.optsWithGlobals()));

  p.command('stream')
    .description('call a streaming endpoint and print items as they arrive; Ctrl-C stops the remote handler, a second Ctrl-C kills it')
    .argument('<endpoint>', 'ns.comp.ep')
    .argument('[body]', 'JSON body, @file.json, or - for stdin (default: no body)')
    .option('-i, --instance <id>', "send to this instance's mailbox instead of the queue group")
    .option('-t, --timeout <ms>', 'deadline of the whole stream', positiveInt('--timeout'), 300_000)
    .option('--window <items>', 'credit window: items the worker may send ahead of this consumer', positiveInt('--window'))
    .option('--stop-grace <ms>', 'after the first Ctrl-C, how long the handler may take to finish before the worker kills it', graceMs, 2_000)
    .action((address: string, body: string | undefined, _o: unknown, cmd: Command) => stream(address, body, cmd.optsWithGlobals()));

  p.command('events')
    .description('tail events of a namespace or component (every event, or one name)')
    .argument('<scope>', 'ns or ns.comp')
    .argument('[event]', 'event name (default: every event)')
    .option('-g, --group <name>', 'balanced: tails sharing the group get each event once between them')
    .option('-d, --durable <name>', 'durable: read the namespace event log, keep the position under this name')
    .option('--from <where>', 'replay from: start, new, an ISO time, or an age (10m)')
    .option('-n, --count <n>', 'exit after this many events', positiveInt('--count'))
    .option('-t, --timeout <ms>', 'with --count: fail if they have not arrived within this bound', positiveInt('--timeout'))
    .action((scope: string, event: string | undefined, _o: unknown, cmd: Command) => events(scope, event, cmd.optsWithGlobals()));

  p.command('stats')
    .description("requests, errors, average latency per endpoint and per instance ($SRV.STATS) with each instance's load")
    .argument('[scope]', 'ns or ns.comp (default: every Troupe service)')
    .option('-w, --watch', 'refresh (one JSON line per refresh with --json)', false)
    .option('--window <ms>', 'how long answers to $SRV.STATS are gathered', positiveInt('--window'), 300)
    .option('--interval <ms>', 'refresh period with --watch', positiveInt('--interval'), 1_000)
    .option('--no-discovery', 'do not read discovery (no load properties; works without JetStream)')
    .option('-t, --timeout <ms>', 'bound on the registry read', positiveInt('--timeout'), 5_000)
    .action((scope: string | undefined, _o: unknown, cmd: Command) => stats(scope, cmd.optsWithGlobals()));

  p.command('run')
    .description('serve the @component classes a module exports until SIGTERM/SIGINT, then drain')
    .argument('<module>', 'a compiled JavaScript module (./dist/workers.js)')
    .option('-n, --namespace <ns>', 'the namespace the instances join (default: TROUPE_NAMESPACE)')
    .option('-r, --replicas <n>', 'instances of each component', positiveInt('--replicas'), 1)
    .option('-c, --component <names...>', 'only these components (component or export names)')
    .option('--config <file.json>', 'config injected with @injectConfig()')
    .option('-p, --properties <k=v>', 'a static property (repeatable; JSON values parsed)', collect, [] as string[])
    .option('--concurrency <n>', 'messages one instance handles at once', positiveInt('--concurrency'))
    .option('--grace <ms>', 'how long shutdown waits for in-flight work', positiveInt('--grace'))
    .action((file: string, _o: unknown, cmd: Command) => run(file, cmd.optsWithGlobals()));

  return p;
}

/**
 * Runs the program on `argv` and returns the exit code (never throws): usage
 * errors exit 2, connection failures 3, TroupeErrors by code (see
 * {@link ExitCode}), each printed on one line on stderr.
 *
 * @example
 * process.exitCode = await main(['node', 'troupe', 'ls', 'llama_8b', '--json']);
 */
export async function main(argv: string[]): Promise<number> {
  const p = program();
  let json = argv.includes('--json');
  p.exitOverride();
  p.configureOutput({ outputError: () => undefined }); // printed below, on one line
  for (const c of p.commands) {
    c.exitOverride();
    c.configureOutput({ outputError: () => undefined });
  }
  try {
    await p.parseAsync(argv);
    json = Boolean(p.opts()['json']);
    return ExitCode.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return ExitCode.OK; // --help, --version
      if (err.code === 'commander.help') return ExitCode.USAGE; // no command: the help was the answer, on stderr
      const e = new CliError('USAGE', err.message.replace(/^error: /, ''));
      new Output(json).error(e);
      return e.exitCode;
    }
    const e = toCliError(err);
    new Output(json).error(e);
    return e.exitCode;
  }
}
