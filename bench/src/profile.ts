/**
 * Summarises a V8 `.cpuprofile` (written by `node --cpu-prof`): self time
 * per function and per package, the view needed to find a hot path.
 */
import * as fs from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTime {
  name: string;
  ms: number;
  share: number;
}

export interface ProfileSummary {
  totalMs: number;
  /** Busy share: everything but `(idle)`. */
  busyShare: number;
  functions: SelfTime[];
  packages: SelfTime[];
  /** Inclusive time (self + callees) of Troupe's own functions: the cost of each step of its hot path. */
  troupeInclusive: SelfTime[];
}

export function summarizeProfile(file: string, repoRoot: string, top = 25): ProfileSummary {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, CallFrame>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n.callFrame);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const fn = new Map<string, number>();
  const pkg = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const nameOf = (frame: CallFrame): string => {
    const where = location(frame.url, repoRoot);
    return `${frame.functionName || '(anonymous)'}${where ? ` ${where}:${frame.lineNumber + 1}` : ''}`;
  };
  let total = 0;
  let idle = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = (profile.timeDeltas[i] ?? 0) / 1000;
    const id = profile.samples[i] as number;
    const frame = byId.get(id);
    if (!frame) continue;
    total += dt;
    if (frame.functionName === '(idle)') idle += dt;
    const name = nameOf(frame);
    fn.set(name, (fn.get(name) ?? 0) + dt);
    const p = packageOf(frame);
    pkg.set(p, (pkg.get(p) ?? 0) + dt);
    // Walk the stack once; count each Troupe function once per sample even when recursive.
    const onStack = new Set<string>();
    for (let n: number | undefined = id; n !== undefined; n = parent.get(n)) {
      const f = byId.get(n);
      if (f && packageOf(f) === 'packages/runtime') onStack.add(nameOf(f));
    }
    for (const k of onStack) inclusive.set(k, (inclusive.get(k) ?? 0) + dt);
  }
  const rank = (m: Map<string, number>, n = top): SelfTime[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, ms]) => ({ name, ms: Math.round(ms), share: total > 0 ? ms / total : 0 }));
  return {
    totalMs: Math.round(total),
    busyShare: total > 0 ? 1 - idle / total : 0,
    functions: rank(fn),
    packages: rank(pkg),
    troupeInclusive: rank(inclusive, 15),
  };
}

/** `@scope/pkg/file.js` for dependencies, a repo-relative path for our own code. */
function location(url: string, repoRoot: string): string {
  if (!url) return '';
  let u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('/node_modules/');
  if (nm >= 0) return u.slice(nm + '/node_modules/'.length);
  if (u.startsWith(repoRoot)) u = u.slice(repoRoot.length + 1);
  return u;
}

function packageOf(frame: CallFrame): string {
  const url = frame.url.replace(/^file:\/\//, '');
  if (!url) return frame.functionName.startsWith('(') ? frame.functionName : '(native/builtin)';
  if (url.startsWith('node:')) return 'node internals';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const parts = url.slice(nm + '/node_modules/'.length).split('/');
    return parts[0]?.startsWith('@') ? `${parts[0]}/${parts[1]}` : (parts[0] ?? url);
  }
  const ours = /\/(packages\/[^/]+|bench|examples\/[^/]+)\//.exec(url);
  return ours ? (ours[1] as string) : url;
}

export function profileMarkdown(title: string, s: ProfileSummary): string {
  const out = [`### ${title}`, '', `Sampled ${s.totalMs} ms, ${(s.busyShare * 100).toFixed(0)}% busy.`, ''];
  out.push('| Self time by package | ms | share |', '|---|--:|--:|');
  for (const p of s.packages.slice(0, 12)) out.push(`| ${p.name} | ${p.ms} | ${(p.share * 100).toFixed(1)}% |`);
  out.push('', '| Top functions by self time | ms | share |', '|---|--:|--:|');
  for (const f of s.functions) out.push(`| \`${f.name}\` | ${f.ms} | ${(f.share * 100).toFixed(1)}% |`);
  out.push('', '| Troupe functions, inclusive time (self + callees) | ms | share |', '|---|--:|--:|');
  for (const f of s.troupeInclusive) out.push(`| \`${f.name}\` | ${f.ms} | ${(f.share * 100).toFixed(1)}% |`);
  out.push('');
  return out.join('\n');
}
