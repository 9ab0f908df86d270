import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { Cleanup, type NatsServer, serverSuite, waitFor, WorkerProcess } from '@troupe/testing';
import { BIN, FIXTURES } from './cli';

// issue #12: the CLI in a real terminal (tmux): `ls --watch` redraws as instances come and go; `stream` shows its progress line.

const WORKER = path.join(FIXTURES, 'demo-worker.js');
const s = serverSuite('cli - in a terminal', new Cleanup());

function hasTmux(): boolean {
  try {
    execFileSync('tmux', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

s('ls --watch redraws the tree on screen as instances join and leave', async (ctx) => {
  if (!hasTmux()) {
    console.log('cli ls --watch in tmux: SKIPPED, reason: tmux is not installed (apt-get install tmux)');
    return;
  }
  const url = (ctx.server as NatsServer).url;
  const env = { NATS_URL: url, TROUPE_NS: 'screen', TROUPE_PROPS: '{"model":"llama3"}' };
  const a = await WorkerProcess.start(WORKER, { env });
  ctx.cleanup.add(() => a.kill('SIGKILL'));
  const idA = a.ready.instanceIds[0] as string;
  // A private tmux server (-L), so nothing touches the user's sessions; killed at cleanup.
  const sock = `troupe-cli-test-${process.pid}`;
  const tmux = (...args: string[]): string => execFileSync('tmux', ['-L', sock, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  tmux('new-session', '-d', '-x', '200', '-y', '50', '-s', 'ls', `${process.execPath} ${BIN} ls screen --watch --server ${url}`);
  ctx.cleanup.add(async () => {
    try {
      tmux('kill-server');
    } catch {
      // already gone
    }
  });
  let screen = '';
  const shows = (pred: (text: string) => boolean, what: string): Promise<void> =>
    waitFor(
      () => {
        screen = tmux('capture-pane', '-p', '-t', 'ls');
        return pred(screen);
      },
      8_000,
      `${what}; screen:\n${screen}`,
    );
  await shows((t) => t.includes(idA), 'the first instance on screen');
  assert.match(screen, /screen: 1 instance at/);
  assert.match(screen, /NAME\s+HOST\s+PID\s+AGE\s+PROPERTIES/);
  assert.match(screen, /└─ svc/);
  assert.match(screen, new RegExp(`${idA}\\s+\\S+\\s+${a.pid}\\s+\\d+s\\s+model=llama3`));
  const b = await WorkerProcess.start(WORKER, { env });
  ctx.cleanup.add(() => b.kill('SIGKILL'));
  const idB = b.ready.instanceIds[0] as string;
  await shows((t) => t.includes(idB) && /screen: 2 instances/.test(t), 'the second instance on screen');
  await b.stop(); // graceful: deregisters before it exits
  await shows((t) => !t.includes(idB) && /screen: 1 instance at/.test(t), 'the second instance gone from the screen');
  // The screen is redrawn, not appended to: the header appears once.
  assert.is(screen.split('instance at').length - 1, 1, screen);
  console.log(`cli ls --watch in tmux: final screen\n${screen.trimEnd()}`);
  tmux('send-keys', '-t', 'ls', 'C-c');
  await waitFor(
    () => {
      try {
        tmux('has-session', '-t', 'ls');
        return false;
      } catch {
        return true;
      }
    },
    5_000,
    'Ctrl-C to end the watch (the tmux session closes with it)',
  );
});

s('stream shows a progress line (items, items/s) on the terminal while items go to a pipe', async (ctx) => {
  if (!hasTmux()) {
    console.log('cli stream progress in tmux: SKIPPED, reason: tmux is not installed (apt-get install tmux)');
    return;
  }
  const url = (ctx.server as NatsServer).url;
  const w = await WorkerProcess.start(WORKER, { env: { NATS_URL: url, TROUPE_NS: 'progress' } });
  ctx.cleanup.add(() => w.kill('SIGKILL'));
  const sock = `troupe-cli-test-p${process.pid}`;
  const tmux = (...args: string[]): string => execFileSync('tmux', ['-L', sock, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  // stdout to a pipe (wc), stderr on the terminal; the shell stays so the last screen can be read.
  tmux(
    'new-session',
    '-d',
    '-x',
    '120',
    '-y',
    '10',
    '-s',
    'st',
    `${process.execPath} ${BIN} stream progress.svc.count '{"n":600,"everyMs":5}' --server ${url} | wc -l; sleep 30`,
  );
  ctx.cleanup.add(async () => {
    try {
      tmux('kill-server');
    } catch {
      // already gone
    }
  });
  let screen = '';
  const capture = (): string => (screen = tmux('capture-pane', '-p', '-t', 'st'));
  await waitFor(
    () => /progress\.svc\.count: \d+ items, \d+ items\/s/.test(capture()) && !/✔/.test(screen),
    8_000,
    `a running progress line; screen:\n${screen}`,
  );
  const running = screen.trim();
  // wc prints its count once the CLI closed the pipe, after the final progress line.
  await waitFor(
    () => /✔ progress\.svc\.count: 600 items/.test(capture()) && /^\s*600$/m.test(screen),
    10_000,
    `the final progress line and every item through the pipe; screen:\n${screen}`,
  );
  console.log(`cli stream in tmux: running "${running}", then "${screen.trim().split('\n')[0]}"`);
});

s.run();
