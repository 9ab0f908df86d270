import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Runtime } from '@troupe/runtime/internal';
import { Cleanup, serverSuite, WorkerProcess, type NatsServer } from '@troupe/testing';

// DESIGN §9: a NATS micro client in another language that no one on this
// project wrote: Debian's nats.go (golang-github-nats-io-go-nats-dev) and its
// micro package. Built offline in GOPATH mode against /usr/share/gocode (no
// module proxy, no network); .ci/run installs golang-go and the package.

const run = promisify(execFile);
const GOCODE = '/usr/share/gocode/src/github.com/nats-io/nats.go/micro';
const SOURCE = join(__dirname, '..', '..', 'ops', 'fixtures', 'go', 'main.go');
const WORKER = join(__dirname, 'fixtures', 'ops-worker.js');
const s = serverSuite('ops - NATS micro (nats.go micro client)', new Cleanup());

interface Identity {
  name: string;
  id: string;
  version: string;
  metadata: Record<string, string>;
  type: string;
}
interface ProbeResult {
  subjects: string[];
  pingsPkg: Array<{ name: string; id: string; version: string }>;
  infosPkg: Array<{ name: string; id: string; version: string; description: string }>;
  pings: Identity[];
  infos: Array<Identity & { description: string; endpoints: Array<{ name: string; subject: string; queue_group: string }> }>;
  stats: Array<Identity & { started: string; endpoints: Array<{ name: string; num_requests: number; num_errors: number; processing_time: number }> }>;
  named: Identity[];
  byId: Identity[];
  errors: string[];
}

/** Builds the probe offline: GOPATH mode (GO111MODULE=off), GOPROXY=off, Debian's sources only. */
async function buildProbe(): Promise<string> {
  if (!existsSync('/usr/bin/go'))
    throw new Error('go is not installed (/usr/bin/go); run .ci/run or apt-get install -y golang-go golang-github-nats-io-go-nats-dev');
  if (!existsSync(GOCODE)) throw new Error(`nats.go's micro package is not installed (${GOCODE}); apt-get install -y golang-github-nats-io-go-nats-dev`);
  const gopath = mkdtempSync(join(tmpdir(), 'troupe-gopath-'));
  const dir = join(gopath, 'src', 'microprobe');
  mkdirSync(dir, { recursive: true });
  copyFileSync(SOURCE, join(dir, 'main.go'));
  const bin = join(gopath, 'microprobe');
  const env = {
    ...process.env,
    GO111MODULE: 'off',
    GOPATH: `${gopath}:/usr/share/gocode`,
    GOFLAGS: '',
    GOPROXY: 'off',
    // A shared build cache makes the next run's build take ~1 s instead of ~15 s.
    GOCACHE: join(tmpdir(), 'troupe-go-cache'),
  };
  await run('/usr/bin/go', ['build', '-o', bin, '.'], { cwd: dir, env, timeout: 120_000 });
  return bin;
}

s('nats.go micro lists every instance on PING and INFO, and reads STATS in the v1 schema', async (ctx) => {
  const bin = await buildProbe();
  ctx.cleanup.add(async () => rmSync(join(bin, '..'), { recursive: true, force: true }));
  const url = (ctx.server as NatsServer).url;
  const ns = 'microgo';
  const a = await WorkerProcess.start(WORKER, { env: { NATS_URL: url, TROUPE_NS: ns, TROUPE_SPAWN: 'prep:2' }, readyTimeoutMs: 15_000 });
  ctx.cleanup.add(() => a.kill('SIGKILL'));
  const b = await WorkerProcess.start(WORKER, { env: { NATS_URL: url, TROUPE_NS: ns, TROUPE_SPAWN: 'gen:1' }, readyTimeoutMs: 15_000 });
  ctx.cleanup.add(() => b.kill('SIGKILL'));
  const rt = ctx.cleanup.runtime(await Runtime.connect({ servers: url }));
  const prep = rt.namespace(ns).component('prep').endpoint('tokenize').client<{ text: string }, string[]>();
  const p0 = a.ready.instanceIds[0] as string;
  for (let i = 0; i < 4; i++) await prep.direct(p0).call({ text: 'a b' });

  const { stdout } = await run(bin, [url, `${ns}_prep`, '1000'], { timeout: 30_000 });
  const r = JSON.parse(stdout) as ProbeResult;
  assert.equal(r.errors, [], `the Go client decoded every reply: ${r.errors.join('; ')}`);
  assert.equal(r.subjects.slice(0, 4), ['$SRV.PING', '$SRV.INFO', '$SRV.STATS', `$SRV.PING.${ns}_prep`]);
  const all = [...a.ready.instanceIds, ...b.ready.instanceIds].sort();
  assert.equal(r.pingsPkg.map((p) => p.id).sort(), all, 'PING: micro.Ping for every instance');
  assert.ok(r.pingsPkg.every((p) => p.version === '1.2.3' && p.name.startsWith(`${ns}_`)));
  assert.ok(r.pings.every((p) => p.type === 'io.nats.micro.v1.ping_response' && p.metadata['namespace'] === ns));
  assert.equal(r.infosPkg.map((p) => p.id).sort(), all, 'INFO: micro.Info for every instance');
  const info = r.infos.find((i) => i.id === p0);
  assert.is(info?.type, 'io.nats.micro.v1.info_response');
  assert.equal(info?.endpoints.map((e) => [e.name, e.subject, e.queue_group]).sort(), [
    ['health', `${ns}.prep.health`, `${ns}.prep.health`],
    ['tokenize', `${ns}.prep.tokenize`, `${ns}.prep.tokenize`],
  ]);
  assert.equal(r.stats.map((x) => x.id).sort(), all, 'STATS: every instance, decoded strictly (Go time.Time and time.Duration)');
  const tok = r.stats.find((x) => x.id === p0)?.endpoints.find((e) => e.name === 'tokenize');
  assert.is(tok?.num_requests, 4);
  assert.ok((tok?.processing_time ?? 0) > 0);
  assert.equal(r.named.map((p) => p.id).sort(), [...a.ready.instanceIds].sort(), 'PING.{name}');
  assert.is(r.byId.length, 1, 'PING.{name}.{id}: one instance');
  console.log(
    `micro: nats.go ${'micro'} read ${r.pings.length} pings, ${r.infos.length} infos, ${r.stats.length} stats; tokenize on ${p0}: ${tok?.num_requests} requests`,
  );
});

s.run();
