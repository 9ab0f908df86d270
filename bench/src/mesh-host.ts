/**
 * Child process of the mesh case: one of the hosting processes, with
 * `instances` idle instances of a one-endpoint component in the shared
 * namespace. On `churn` it alternates spawning one more instance and
 * stopping it, one operation every `everyMs`, until `calm`.
 */
import 'reflect-metadata';
import { Runtime, type SpawnHandle } from '@troupe/runtime/internal';
import { errorText, type MeshHostJob, onStop, readJob, send, type ToChild } from './ipc';
import { Life } from './systems/troupe';

async function main(job: MeshHostJob): Promise<void> {
  const rt = await Runtime.connect({ servers: job.url, name: job.name });
  onStop((code) => void rt.close().finally(() => process.exit(code)));
  await rt.spawn(Life, { namespace: job.namespace, replicas: job.instances });
  let timer: NodeJS.Timeout | undefined;
  let extra: SpawnHandle | undefined;
  let ops = 0;
  let busy: Promise<void> = Promise.resolve();
  const step = async (): Promise<void> => {
    if (extra === undefined) extra = await rt.spawn(Life, { namespace: job.namespace });
    else {
      const h = extra;
      extra = undefined;
      await h.stop();
    }
    ops++;
  };
  process.on('message', (m: ToChild) => {
    if (m?.type === 'churn' && timer === undefined) {
      timer = setInterval(() => {
        // One operation at a time: a slow one delays the next instead of piling up.
        busy = busy.then(step).catch(async (err: unknown) => {
          await send({ type: 'error', message: `mesh host churn failed: ${errorText(err)}` });
        });
      }, m.everyMs);
    } else if (m?.type === 'calm' && timer !== undefined) {
      clearInterval(timer);
      timer = undefined;
      void busy.then(() => send({ type: 'mesh-calm', ops }));
    }
  });
  await send({ type: 'mesh-ready' });
}

const job = readJob<MeshHostJob>();
main(job).catch(async (err: unknown) => {
  await send({ type: 'error', message: `mesh host failed: ${errorText(err)}` });
  process.exit(1);
});
