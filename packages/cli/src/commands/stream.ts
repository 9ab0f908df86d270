import type { Subscription } from 'rxjs';
import { parseInstanceId, parseEndpoint } from '../address';
import { readBody, toJson } from '../body';
import { connect, type ConnectionFlags } from '../connection';
import { CliError, toCliError } from '../exit-codes';
import { Output, type OutputFlags } from '../output';
import { endpointClient } from './call';

/** Options of `troupe stream`. */
export interface StreamFlags extends ConnectionFlags, OutputFlags {
  instance?: string;
  timeout: number;
  window?: number;
}

/** How often the progress line on stderr is rewritten. */
const PROGRESS_MS = 250;

/**
 * `troupe stream ns.comp.ep [json|@file|-]`: prints items as they arrive
 * (one JSON line `{"seq":n,"item":...}` each with `--json`). Ctrl-C
 * unsubscribes, which sends the cancel that aborts the remote handler, then
 * closes the runtime (flushing the cancel) and exits 130. On a terminal a
 * progress line (items, items/s) runs on stderr.
 */
export async function stream(address: string, bodyArg: string | undefined, flags: StreamFlags): Promise<void> {
  parseEndpoint(address);
  const instance = flags.instance === undefined ? undefined : parseInstanceId(flags.instance);
  const body = await readBody(bodyArg);
  const out = Output.from(flags);
  const runtime = await out.spin('connecting', connect(flags, { discovery: false, streamTimeoutMs: flags.timeout }));
  const client = endpointClient(runtime, address, instance);
  const spinner = out.spinner(`streaming ${address}`);
  const shared = Boolean(process.stdout.isTTY);
  const started = Date.now();
  let count = 0;
  let sub: Subscription | undefined;
  let onSignal: (() => void) | undefined;
  const progress = (): string => {
    const s = Math.max(0.001, (Date.now() - started) / 1000);
    return `${address}: ${count} items, ${Math.round(count / s)} items/s`;
  };
  const ticker = spinner ? setInterval(() => (spinner.text = progress()), PROGRESS_MS) : undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      onSignal = () => {
        // Unsubscribing sends `Troupe-Ctl: cancel`: the worker's ctx.signal aborts.
        sub?.unsubscribe();
        reject(new CliError('INTERRUPTED', `stream cancelled after ${count} items`));
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      sub = client.stream(body, { timeout: flags.timeout, ...(flags.window !== undefined ? { window: flags.window } : {}) }).subscribe({
        next: (item) => {
          count++;
          // Items and the progress line share the screen only when stdout is the terminal too.
          if (shared) spinner?.clear();
          if (out.json) out.jsonLine({ seq: count, item });
          else out.line(typeof item === 'string' ? item : toJson(item));
          if (shared) spinner?.render();
        },
        error: (err: unknown) => reject(toCliError(err)),
        complete: () => resolve(),
      });
    });
    if (spinner) spinner.succeed(progress());
  } catch (err) {
    spinner?.stop();
    throw err;
  } finally {
    if (ticker) clearInterval(ticker);
    if (onSignal) {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    sub?.unsubscribe();
    await runtime.close();
  }
}
