/**
 * Child process of the scale case on NATS: the process hosting 100,000
 * instances, alone, so its RSS is the hosting side's (the watching client
 * lives in the caller process). Spawns with one call, idles, measures, then
 * waits for `stop`.
 */
import 'reflect-metadata';
import { Runtime } from '@troupe/runtime/internal';
import { errorText, onStop, readJob, type ScaleHostJob, send } from './ipc';
import { hostMany, memory, subscriptionsOf } from './scale';
import { Life } from './systems/troupe';
import { NAMES } from './payload';

async function main(job: ScaleHostJob): Promise<void> {
  const rt = await Runtime.connect({ servers: job.url, name: job.name });
  onStop((code) => void rt.close().finally(() => process.exit(code)));
  // The registry opens at the first spawn: open it (and warm the spawn path) with one instance first.
  const warm = await rt.spawn(Life, { namespace: `${NAMES.troupeNamespace}_warm${process.pid}` });
  await warm.stop();
  const subs0 = (await subscriptionsOf(job.name)) ?? 0;
  const before = await memory();
  const namespace = `${NAMES.troupeNamespace}_scale${process.pid}`;
  const figures = await hostMany(
    rt,
    async () => {
      await send({ type: 'scale-start', at: performance.timeOrigin + performance.now() });
      return rt.spawn(Life, { namespace, replicas: job.replicas });
    },
    { replicas: job.replicas, restMs: job.restMs, before, routable: () => Promise.resolve() },
  );
  const subs = (await subscriptionsOf(job.name)) ?? Number.NaN;
  await send({ type: 'scale', figures: { ...figures, subs_per_instance: (subs - subs0) / job.replicas } });
}

const job = readJob<ScaleHostJob>();
main(job).catch(async (err: unknown) => {
  await send({ type: 'error', message: `scale host failed: ${errorText(err)}` });
  process.exit(1);
});
