/**
 * CPU used by processes outside the benchmark while it runs (Linux /proc).
 * On a shared 2-core machine another job's tests skew every figure; this
 * says how much, per run, so a contaminated round is visible in the report.
 */
import * as fs from 'node:fs';

/** Clock ticks per second of /proc figures (USER_HZ; 100 on Linux). */
const TICKS_PER_S = 100;

export interface CpuMark {
  at: number;
  /** All CPUs' busy ticks (user, nice, system, irq, softirq, steal). */
  busy: number;
  /** This process, its reaped children and the given live pids (the nats-server). */
  ours: number;
}

export function cpuMark(livePids: readonly number[]): CpuMark | undefined {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
    let ours = pidTicks('self', true);
    for (const pid of livePids) ours += pidTicks(String(pid), false);
    return { at: performance.now(), busy, ours };
  } catch {
    return undefined; // no /proc: not measured
  }
}

/** Cores' worth of CPU that other processes used between two marks (children must be reaped by `end`). */
export function foreignCores(start: CpuMark | undefined, end: CpuMark | undefined): number | undefined {
  if (!start || !end) return undefined;
  const seconds = (end.at - start.at) / 1000;
  if (seconds <= 0) return undefined;
  const foreign = end.busy - start.busy - (end.ours - start.ours);
  return Math.max(0, foreign / TICKS_PER_S / seconds);
}

function pidTicks(pid: string, withChildren: boolean): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  // fields after the name, 0-based from state: utime 11, stime 12, cutime 13, cstime 14
  const own = (f[11] ?? 0) + (f[12] ?? 0);
  return withChildren ? own + (f[13] ?? 0) + (f[14] ?? 0) : own;
}
