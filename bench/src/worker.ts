/**
 * Child process: the worker side of one system. Reports `ready` once it
 * serves, closes gracefully on `stop` (so `--cpu-prof` can write its
 * profile), and exits when the orchestrator goes away.
 */
import { errorText, onStop, readJob, send, type WorkerJob } from './ipc';
import type { WorkerKind } from './plan';
import type { StartWorker, Worker } from './systems/system';
import { within } from './time';

const CLOSE_TIMEOUT_MS = 5_000;

/** Loaded on demand, so a worker process only loads the framework it runs. */
function starterOf(kind: Exclude<WorkerKind, 'none'>): StartWorker {
  switch (kind) {
    case 'troupe':
      return (require('./systems/troupe') as typeof import('./systems/troupe')).startWorker;
    case 'raw':
      return (require('./systems/raw') as typeof import('./systems/raw')).startWorker;
    case 'moleculer':
      return (require('./systems/moleculer') as typeof import('./systems/moleculer')).startWorker;
    case 'nestjs':
      return (require('./systems/nestjs') as typeof import('./systems/nestjs')).startWorker;
    case 'llm':
      return (require('./systems/llm') as typeof import('./systems/llm')).startWorker;
  }
}

const job = readJob<WorkerJob>();
let worker: Promise<Worker> | undefined;
let stopping = false;

onStop((code) => {
  if (stopping) return;
  stopping = true;
  const closing = (worker ?? Promise.resolve(undefined)).then((w) => w?.close());
  within(closing, CLOSE_TIMEOUT_MS, `${job.worker} worker to close`).then(
    () => process.exit(code),
    (err: unknown) => {
      console.error(errorText(err));
      process.exit(code || 1);
    },
  );
});

worker = starterOf(job.worker)(job.url, job.args ?? []);
worker.then(
  (w) => send(w.endpoint === undefined ? { type: 'ready' } : { type: 'ready', endpoint: w.endpoint }),
  async (err: unknown) => {
    await send({ type: 'error', message: `${job.worker} worker failed to start: ${errorText(err)}` });
    process.exit(1);
  },
);
