import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { NatsServer, stopAll, within } from '@troupe/testing';

// Network checks use node built-ins only, so they verify the harness rather
// than trust it (and do not depend on the runtime package).

test.after.each(async () => {
  await stopAll();
});

test('nats-server - starts on an OS-assigned port and accepts TCP', async () => {
  const ns = await NatsServer.start();
  assert.ok(Number.isInteger(ns.port) && ns.port > 0, `port ${ns.port}`);
  assert.is(ns.url, `nats://127.0.0.1:${ns.port}`);
  assert.ok(isAlive(ns.pid), `pid ${ns.pid} is not running`);
  const conn = await Conn.open(ns.port);
  try {
    assert.is(conn.info['port'], ns.port);
    assert.not.ok(conn.info['jetstream'], 'JetStream should be off unless asked for');
    conn.write('PING\r\n');
    assert.is(await conn.next(1_000, 'PONG'), 'PONG');
  } finally {
    conn.close();
  }
});

test('nats-server - restarts on the same port', async () => {
  const ns = await NatsServer.start();
  const { port, pid } = ns;
  await ns.restart();
  assert.is(ns.port, port);
  assert.is.not(ns.pid, pid);
  await waitUntilGone(pid);
  const conn = await Conn.open(port);
  conn.close();
  assert.is(conn.info['port'], port);
});

test('nats-server - SIGSTOP freezes and SIGCONT resumes', async () => {
  const ns = await NatsServer.start();
  const conn = await Conn.open(ns.port);
  try {
    conn.write('PING\r\n');
    await conn.next(1_000, 'PONG before SIGSTOP');
    await ns.signal('SIGSTOP');
    conn.write('PING\r\n');
    const frozen = await conn.next(300, 'PONG while stopped').then(
      (line) => line,
      () => undefined,
    );
    assert.is(frozen, undefined, 'a stopped server must not answer');
    await ns.signal('SIGCONT');
    assert.is(await conn.next(2_000, 'PONG after SIGCONT'), 'PONG');
  } finally {
    conn.close();
  }
});

test('nats-server - starts with JetStream', async () => {
  const ns = await NatsServer.start({ jetstream: true });
  const conn = await Conn.open(ns.port);
  conn.close();
  assert.is(conn.info['jetstream'], true);
  assert.ok(ns.storeDir && fs.statSync(ns.storeDir).isDirectory(), `store dir ${ns.storeDir}`);
  const varz = await getJson<{ jetstream?: { config?: { store_dir?: string } } }>(`${ns.monitorUrl}/varz`);
  assert.ok(varz.jetstream?.config?.store_dir?.startsWith(ns.storeDir ?? '?'), JSON.stringify(varz.jetstream));
});

test('nats-server - keeps JetStream data across a restart', async () => {
  const ns = await NatsServer.start({ jetstream: true });
  const conn = await Conn.open(ns.port);
  try {
    const created = await conn.request('$JS.API.STREAM.CREATE.ORDERS', JSON.stringify({ name: 'ORDERS', subjects: ['orders.>'] }));
    assert.not.ok(JSON.parse(created).error, created);
    const ack = await conn.request('orders.1', 'hello');
    assert.is(JSON.parse(ack).stream, 'ORDERS', ack);
  } finally {
    conn.close();
  }
  await ns.kill(); // a crash, not a graceful stop: the store must still recover
  await ns.restart();
  const jsz = await getJson<{ streams?: number; messages?: number }>(`${ns.monitorUrl}/jsz`);
  assert.equal([jsz.streams, jsz.messages], [1, 1], JSON.stringify(jsz));
});

test('nats-server - kills children by pid on stop', async () => {
  const a = await NatsServer.start({ jetstream: true });
  const b = await NatsServer.start();
  const store = a.storeDir ?? '';
  await a.stop();
  await waitUntilGone(a.pid);
  assert.not.ok(fs.existsSync(store), 'stop() removes the store dir');
  assert.ok(isAlive(b.pid), 'stopping one server leaves the other running');
  await stopAll();
  await waitUntilGone(b.pid);
});

test('nats-server - kills its servers when the test process exits or is terminated', async () => {
  for (const ending of ['exit', 'SIGTERM'] as const) {
    const script = [
      `const { NatsServer } = require(${JSON.stringify(require.resolve('@troupe/testing'))});`,
      `NatsServer.start().then((s) => { console.log(s.pid); ${ending === 'SIGTERM' ? 'setInterval(() => {}, 1000);' : ''} });`,
    ].join('\n');
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const closed = once(child, 'close');
    let pid = 0;
    try {
      pid = Number(await firstLine(child.stdout, 5_000, `the child's server pid (${ending})`));
      assert.ok(pid > 0, `pid ${pid}`);
      // 'exit': the child ends on its own, which proves the server does not keep it alive.
      if (ending === 'SIGTERM') child.kill('SIGTERM');
      const [code, signal] = (await within(closed, 5_000, `the child to end (${ending})`)) as [number, string];
      assert.equal([code, signal], [ending === 'SIGTERM' ? 143 : 0, null]);
      await waitUntilGone(pid);
    } finally {
      child.kill('SIGKILL');
      if (pid > 0 && isAlive(pid)) process.kill(pid, 'SIGKILL');
    }
  }
});

test('nats-server - a 3-node cluster forms routes', async () => {
  const cluster = await NatsServer.cluster(3);
  assert.is(new Set(cluster.urls).size, 3);
  for (const s of cluster.servers) {
    const routez = await getJson<{ num_routes: number }>(`${s.monitorUrl}/routez`);
    assert.is(routez.num_routes, 2, `routes on ${s.url}`);
  }
  const node = cluster.servers[0]!;
  await node.kill();
  await node.restart();
  await cluster.formed(); // bounded; throws naming the route counts it saw
  await cluster.stop();
});

/**
 * A raw NATS connection: enough protocol (INFO, PING/PONG, SUB/PUB/MSG) to
 * check a server without a client library.
 */
class Conn {
  private buffer = '';
  private sid = 0;
  private readonly lines: string[] = [];
  private waiter: (() => void) | undefined;

  private constructor(
    private readonly socket: net.Socket,
    public info: Record<string, unknown> = {},
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      for (let end = this.buffer.indexOf('\r\n'); end >= 0; end = this.buffer.indexOf('\r\n')) {
        this.lines.push(this.buffer.slice(0, end));
        this.buffer = this.buffer.slice(end + 2);
      }
      this.waiter?.();
    });
    socket.on('error', () => undefined); // surfaced as a timeout in next()
  }

  static async open(port: number): Promise<Conn> {
    const socket = net.connect({ host: '127.0.0.1', port });
    await within(once(socket, 'connect'), 1_000, `TCP connect to 127.0.0.1:${port}`);
    const conn = new Conn(socket);
    const line = await conn.next(1_000, 'INFO line');
    assert.ok(line.startsWith('INFO '), line);
    conn.info = JSON.parse(line.slice(5)) as Record<string, unknown>;
    conn.write('CONNECT {"verbose":false,"pedantic":false}\r\n');
    return conn;
  }

  write(data: string): void {
    this.socket.write(data);
  }

  /** The next protocol line, or a rejection naming `what` did not arrive in time. */
  next(timeoutMs: number, what: string): Promise<string> {
    const line = this.lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`no ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = () => {
        const l = this.lines.shift();
        if (l === undefined) return;
        clearTimeout(timer);
        this.waiter = undefined;
        resolve(l);
      };
    });
  }

  /** Request/reply by hand: one inbox, skipping PINGs the server may send meanwhile. */
  async request(subject: string, payload: string): Promise<string> {
    const sid = ++this.sid;
    const inbox = `_INBOX.${sid}`;
    this.write(`SUB ${inbox} ${sid}\r\nUNSUB ${sid} 1\r\n`);
    this.write(`PUB ${subject} ${inbox} ${Buffer.byteLength(payload)}\r\n${payload}\r\n`);
    for (;;) {
      const line = await this.next(2_000, `reply to ${subject}`);
      if (line.startsWith(`MSG ${inbox} `)) return this.next(1_000, `payload of the reply to ${subject}`);
      if (line.startsWith('-ERR')) throw new Error(`${subject}: ${line}`);
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

function getJson<T>(url: string): Promise<T> {
  return within(
    new Promise<T>((resolve, reject) => {
      http
        .get(url, { agent: false }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve(JSON.parse(body) as T));
        })
        .on('error', reject);
    }),
    2_000,
    `GET ${url}`,
  );
}

function firstLine(stream: NodeJS.ReadableStream, timeoutMs: number, what: string): Promise<string> {
  return within(
    new Promise<string>((resolve, reject) => {
      let text = '';
      stream.setEncoding('utf8');
      stream.on('data', (c: string) => {
        text += c;
        const end = text.indexOf('\n');
        if (end >= 0) resolve(text.slice(0, end).trim());
      });
      stream.on('end', () => reject(new Error(`stream ended before ${what}: ${JSON.stringify(text)}`)));
    }),
    timeoutMs,
    what,
  );
}

/** A zombie (killed, not yet reaped by its new parent) counts as gone. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Death is observed by polling: there is no event for another process's child. */
async function waitUntilGone(pid: number, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) assert.unreachable(`pid ${pid} still running ${timeoutMs} ms after it should have been killed`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test.run();
