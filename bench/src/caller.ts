/**
 * Child process: the caller side of one system. Connects its driver, proves
 * the worker answers, makes the job's measurements in order, reports them
 * and exits. Embedded drivers host the worker side in this process too.
 */
import { type CallerJob, errorText, onStop, readJob, send, type ToChild } from './ipc';
import { blockRun, measure, probe } from './load';
import type { DriverKind, MeasureResult } from './plan';
import type { ConnectDriver, Driver } from './systems/system';
import { within } from './time';

const CONNECT_TIMEOUT_MS = 30_000;
const PROBE_TIMEOUT_MS = 15_000;
const CLOSE_TIMEOUT_MS = 5_000;

/** Loaded on demand, so a caller process only loads the framework it drives. */
function connectorOf(kind: DriverKind): ConnectDriver {
  switch (kind) {
    case 'troupe':
      return (require('./systems/troupe') as typeof import('./systems/troupe')).connectWith();
    case 'troupe_queue':
      return (require('./systems/troupe') as typeof import('./systems/troupe')).connectWith('queue');
    case 'troupe_rr':
      return (require('./systems/troupe') as typeof import('./systems/troupe')).connectWith('round-robin');
    case 'troupe_embedded':
      return (require('./systems/troupe') as typeof import('./systems/troupe')).connectEmbedded;
    case 'troupe_embedded_immutable':
      return (require('./systems/troupe') as typeof import('./systems/troupe')).connectEmbeddedImmutable;
    case 'raw_mux':
      return (require('./systems/raw') as typeof import('./systems/raw')).connectMux;
    case 'raw_request':
      return (require('./systems/raw') as typeof import('./systems/raw')).connectRequest;
    case 'raw_pubsub':
      return (require('./systems/raw') as typeof import('./systems/raw')).connectPubsub;
    case 'moleculer':
      return (require('./systems/moleculer') as typeof import('./systems/moleculer')).connect;
    case 'moleculer_local':
      return (require('./systems/moleculer') as typeof import('./systems/moleculer')).connectLocal;
    case 'nestjs':
      return (require('./systems/nestjs') as typeof import('./systems/nestjs')).connect;
    case 'llm':
      return (require('./systems/llm') as typeof import('./systems/llm')).connect;
  }
}

async function main(job: CallerJob): Promise<void> {
  const label = job.driver;
  const driver: Driver = await within(connectorOf(job.driver)(job.endpoint ?? job.url), CONNECT_TIMEOUT_MS, `${label} caller to connect`);
  try {
    const first = job.measures[0];
    if (first) await probe(driver, first, { label, timeoutMs: PROBE_TIMEOUT_MS });
    if (job.interleaved) {
      if (!first) throw new Error(`${label}: an interleaved run needs a measure`);
      await inBlocks(driver, job.measures, label);
      return;
    }
    const results: MeasureResult[] = [];
    for (const m of job.measures) results.push(await measure(driver, m, label));
    await send({ type: 'result', results });
  } finally {
    await within(driver.close(), CLOSE_TIMEOUT_MS, `${label} caller to close`).catch((err: unknown) => console.error(errorText(err)));
  }
}

/**
 * An interleaved scenario: reports `ready`, then makes its first measure's
 * warm-up and each block when the orchestrator says (answering `done`), that
 * measure's result on `finish`, and its other measures, in order, on `rest`.
 * The orchestrator sends one command at a time.
 */
async function inBlocks(driver: Driver, measures: CallerJob['measures'], label: string): Promise<void> {
  const run = blockRun(driver, measures[0] as CallerJob['measures'][number], label);
  const commands: ToChild[] = [];
  let wake: (() => void) | undefined;
  process.on('message', (c: ToChild) => {
    commands.push(c);
    wake?.();
  });
  await send({ type: 'ready' });
  for (;;) {
    while (commands.length === 0) await new Promise<void>((resolve) => (wake = resolve));
    const c = commands.shift() as ToChild;
    switch (c.type) {
      case 'warmup':
        await run.warmup();
        await send({ type: 'done' });
        break;
      case 'block':
        await send({ type: 'done', p50_us: await run.block(c.calls) });
        break;
      case 'finish':
        await send({ type: 'result', results: [run.result()] });
        break;
      case 'rest': {
        const results: MeasureResult[] = [];
        for (const m of measures.slice(1)) results.push(await measure(driver, m, label));
        await send({ type: 'result', results });
        return;
      }
      case 'stop':
      case 'churn':
      case 'calm':
        break; // stop: onStop exits; the mesh host's commands are not for a caller
    }
  }
}

const job = readJob<CallerJob>();
onStop((code) => process.exit(code));
main(job).then(
  () => process.exit(0),
  async (err: unknown) => {
    await send({ type: 'error', message: `${job.driver} caller failed: ${errorText(err)}` });
    process.exit(1);
  },
);
