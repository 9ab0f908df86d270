/**
 * Runs the built `troupe` binary as a subprocess, as a user would: one-shot
 * commands to completion ({@link runCli}) and long-running ones
 * ({@link CliProcess}) whose output lines are read as they come. Every
 * process is killed by pid at cleanup.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { waitFor } from '@troupe/testing';

/** The compiled binary. */
export const BIN = path.resolve(__dirname, '..', 'bin.js');
export const FIXTURES = path.resolve(__dirname, 'fixtures');

/** How a one-shot command ended. */
export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function cliEnv(env: Record<string, string> | undefined): NodeJS.ProcessEnv {
  // No NATS_URL from the outer environment: every test names its own server.
  const base: NodeJS.ProcessEnv = { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' };
  delete base.NATS_URL;
  return { ...base, ...env };
}

/** Runs `troupe args…` to completion (bounded: SIGKILL past `timeoutMs`, which fails the test). */
export function runCli(args: string[], options: { env?: Record<string, string>; input?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  const started = Date.now();
  const timeoutMs = options.timeoutMs ?? 20_000;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: cliEnv(options.env), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`troupe ${args.join(' ')} did not exit within ${timeoutMs} ms; stdout:\n${stdout}\nstderr:\n${stderr}`));
    }, timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      // 'exit' can precede the last 'data' of the pipes; 'close' follows both.
      child.once('close', () => resolve({ code, signal, stdout, stderr, ms: Date.now() - started }));
    });
    if (options.input !== undefined) child.stdin.end(options.input);
    else child.stdin.end();
  });
}

/** A long-running `troupe` process (`--watch`, `stream`, `events`, `run`). */
export class CliProcess {
  readonly out: string[] = [];
  readonly err: string[] = [];
  private outTail = '';
  private errTail = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private done = false;

  private constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (d: Buffer) => {
      const parts = (this.outTail + d.toString()).split('\n');
      this.outTail = parts.pop() as string;
      this.out.push(...parts);
    });
    child.stderr?.on('data', (d: Buffer) => {
      const parts = (this.errTail + d.toString()).split('\n');
      this.errTail = parts.pop() as string;
      this.err.push(...parts);
    });
    this.exited = new Promise((resolve) => {
      child.once('close', (code, signal) => {
        this.done = true;
        resolve({ code, signal });
      });
    });
  }

  static start(args: string[], env?: Record<string, string>): CliProcess {
    return new CliProcess(spawn(process.execPath, [BIN, ...args], { env: cliEnv(env), stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Stdout lines parsed as JSON (lines that are not JSON fail the test). */
  json<T>(): T[] {
    return this.out.filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as T);
  }

  async waitForOut(pred: (line: string) => boolean, timeoutMs: number, what: string): Promise<string> {
    await waitFor(() => this.out.some(pred) || this.done, timeoutMs, `${what}; stdout:\n${this.out.join('\n')}\nstderr:\n${this.err.join('\n')}`);
    const line = this.out.find(pred);
    if (line === undefined) throw new Error(`troupe exited before ${what}; stdout:\n${this.out.join('\n')}\nstderr:\n${this.err.join('\n')}`);
    return line;
  }

  async waitForErr(pred: (line: string) => boolean, timeoutMs: number, what: string): Promise<string> {
    await waitFor(() => this.err.some(pred) || this.done, timeoutMs, `${what}; stderr:\n${this.err.join('\n')}`);
    const line = this.err.find(pred);
    if (line === undefined) throw new Error(`troupe exited before ${what}; stdout:\n${this.out.join('\n')}\nstderr:\n${this.err.join('\n')}`);
    return line;
  }

  signal(sig: NodeJS.Signals): void {
    if (!this.done) process.kill(this.pid, sig);
  }

  /** Waits (bounded) for the exit. */
  async waitExit(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        this.exited,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`troupe (pid ${this.pid}) did not exit within ${timeoutMs} ms; stderr:\n${this.err.join('\n')}`)),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  /** SIGKILL by pid unless it already exited (cleanup). */
  async kill(): Promise<void> {
    if (this.done) return;
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      return;
    }
    await this.waitExit(5_000);
  }
}
