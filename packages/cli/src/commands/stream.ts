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
  stopGrace: number;
}

/** How often the progress line on stderr is rewritten. */
const PROGRESS_MS = 250;

/**
 * `troupe stream ns.comp.ep [json|@file|-]`: prints items as they arrive
 * (one JSON line `{"seq":n,"item":...}` each with `--json`). The first Ctrl-C
 * (or SIGTERM) stops the stream the way Dynamo's `stop_generating` does: the
 * remote handler sees `ctx.stopSignal`, may send its final items, which are
 * printed, and the stream ends normally (past `--stop-grace` the worker kills
 * the handler and the stream still ends with what arrived). A second Ctrl-C
 * kills at once: unsubscribing sends the cancel that aborts the handler. Either
 * way the command closes the runtime (flushing the control message) and exits
 * 130. On a terminal a progress line (items, items/s) runs on stderr.
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
  const stop = new AbortController();
  const progress = (): string => {
    const s = Math.max(0.001, (Date.now() - started) / 1000);
    return `${address}: ${count} items, ${Math.round(count / s)} items/s`;
  };
  const ticker = spinner ? setInterval(() => (spinner.text = progress()), PROGRESS_MS) : undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      onSignal = () => {
        if (!stop.signal.aborted) {
          // First signal: `Troupe-Ctl: stop`; the handler's ctx.stopSignal aborts and it may finish.
          if (spinner) spinner.text = `${progress()} (stopping; Ctrl-C again to kill)`;
          stop.abort();
          return;
        }
        // Second signal: unsubscribing sends `Troupe-Ctl: cancel`; the worker's ctx.signal aborts.
        sub?.unsubscribe();
        reject(new CliError('INTERRUPTED', `stream cancelled after ${count} items`));
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      const options = {
        timeout: flags.timeout,
        stopSignal: stop.signal,
        stopGraceMs: flags.stopGrace,
        ...(flags.window !== undefined ? { window: flags.window } : {}),
      };
      sub = client.stream(body, options).subscribe({
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
    if (stop.signal.aborted) {
      spinner?.stop();
      throw new CliError('INTERRUPTED', `stream stopped after ${count} items`);
    }
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
