/**
 * Child process: the caller side of one system. Connects its driver, proves
 * the worker answers, makes the job's measurements in order, reports them
 * and exits. Embedded drivers host the worker side in this process too.
 */
import { type CallerJob, errorText, onStop, readJob, send } from './ipc';
import { measure, probe } from './load';
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
    const results: MeasureResult[] = [];
    for (const m of job.measures) results.push(await measure(driver, m, label));
    await send({ type: 'result', results });
  } finally {
    await within(driver.close(), CLOSE_TIMEOUT_MS, `${label} caller to close`).catch((err: unknown) => console.error(errorText(err)));
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
