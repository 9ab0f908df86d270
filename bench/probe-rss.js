// Probe: where the RSS of N idle embedded instances goes.
require('reflect-metadata');
const v8 = require('node:v8');
const { Runtime } = require('@troupe/runtime/internal');
const { Life } = require('./dist/systems/troupe');
const { collect } = require('./dist/scale');
const N = Number(process.argv[2] ?? 100000);
const fs = require('node:fs');
function smaps() {
  const out = {}; let cur = null;
  for (const line of fs.readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (m) { const size = parseInt(m[2], 16) - parseInt(m[1], 16); cur = m[3] || (size === 262144 ? 'anon256k' : size >= 60 * 1048576 ? 'anon>=60M' : 'anon-other'); out[cur] ??= 0; continue; }
    const r = /^Rss:\s+(\d+) kB/.exec(line); if (r && cur) out[cur] += Number(r[1]) * 1024;
  }
  return out;
}
function snap() {
  collect();
  const m = process.memoryUsage();
  const sp = {};
  for (const s of v8.getHeapSpaceStatistics()) sp[s.space_name] = { size: s.space_size, used: s.space_used_size, phys: s.physical_space_size };
  return { ...m, sp, maps: smaps() };
}
(async () => {
  const rt = process.env.NATS ? await Runtime.connect({ servers: process.env.NATS, name: `probe-rss-${process.pid}` }) : await Runtime.embedded({ network: (await Runtime.embedded()).network });
  const w = await rt.spawn(Life, { namespace: `warm${process.pid}` });
  await w.stop();
  if (process.argv[3]) { collect(); v8.writeHeapSnapshot(process.argv[3] + '.before'); }
  const b = snap();
  const t0 = performance.now();
  await rt.spawn(Life, { namespace: `scale${process.pid}`, replicas: N });
  const t = (performance.now() - t0) / 1000;
  await new Promise((r) => setTimeout(r, 1000));
  const a = snap();
  const per = (k) => ((a[k] - b[k]) / N).toFixed(0);
  console.log(`spawn ${t.toFixed(2)}s rss ${per('rss')} heapUsed ${per('heapUsed')} heapTotal ${per('heapTotal')} external ${per('external')} arrayBuffers ${per('arrayBuffers')}`);
  for (const k of Object.keys(a.sp)) console.log(k.padEnd(28), 'size', ((a.sp[k].size - b.sp[k].size) / N).toFixed(0), 'used', ((a.sp[k].used - b.sp[k].used) / N).toFixed(0), 'phys', ((a.sp[k].phys - b.sp[k].phys) / N).toFixed(0), 'abs size MB', (a.sp[k].size / 1e6).toFixed(1));
  for (const k of new Set([...Object.keys(a.maps), ...Object.keys(b.maps)])) { const d = ((a.maps[k] ?? 0) - (b.maps[k] ?? 0)) / N; if (Math.abs(d) > 5) console.log('map', k, d.toFixed(0)); }
  if (process.env.TRIM) {
    require('node:child_process').execSync(`gdb -p ${process.pid} -batch -ex 'call (int)malloc_trim(0)'`, { stdio: 'ignore' });
    const t = snap();
    console.log('after malloc_trim: rss', ((t.rss - b.rss) / N).toFixed(0), '[heap]', (((t.maps['[heap]'] ?? 0) - (b.maps['[heap]'] ?? 0)) / N).toFixed(0));
  }
  if (process.argv[3]) { v8.writeHeapSnapshot(process.argv[3]); console.log('snapshot'); }
  process.exit(0);
})();
