/**
 * The LLM pipeline's command. Embedded (the default, what `pnpm start` runs):
 * every component in this process. On NATS (`NATS_URL`): the roles named by
 * `--role`, so each component can run in its own process:
 *
 *   NATS_URL=nats://127.0.0.1:4222 node examples/llm/dist/main.js --role decode --replicas 2
 *
 * Prints the URL, the model and a curl line; serves until SIGINT/SIGTERM,
 * then drains gracefully. Started by a test harness with an IPC channel, it
 * reports `ready` (with the URL and instance ids) and stops on `stop`.
 */
import 'reflect-metadata';
import { TroupeError } from '@troupe/runtime';
import { parseConfig } from './config';
import { startPipeline } from './pipeline';

async function main(): Promise<void> {
  let cfg;
  try {
    cfg = parseConfig(process.argv.slice(2));
  } catch (err) {
    console.error(err instanceof TroupeError ? err.message : err);
    process.exit(2);
  }
  const pipeline = await startPipeline(cfg);
  const where = cfg.natsUrl ? `NATS ${cfg.natsUrl}` : 'embedded (in-process, no server)';
  const counts = cfg.roles.map((r) => (r === 'frontend' ? r : `${r}×${cfg.replicas[r]}`)).join(', ');
  console.log(`troupe llm: ${counts} in namespace ${cfg.namespace} on ${where}; router ${cfg.router}${cfg.migrate ? ', migration on' : ''}`);
  if (pipeline.url) {
    console.log(`listening on ${pipeline.url}  model: ${cfg.model}`);
    console.log(
      `try: curl -N ${pipeline.url}/v1/chat/completions -H 'content-type: application/json' -d '{"model":"${cfg.model}","stream":true,"max_tokens":60,"messages":[{"role":"user","content":"Tell me about the lighthouse."}]}'`,
    );
  }
  let closing = false;
  const shutdown = (signal: string): void => {
    if (closing) return;
    closing = true;
    console.log(`${signal}: draining (in-flight requests finish, then every instance leaves)…`);
    pipeline.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error('shutdown failed:', err);
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  if (process.send) {
    const instanceIds = Object.values(pipeline.handles).flatMap((h) => [...h.instanceIds]);
    const byRole = Object.fromEntries(Object.entries(pipeline.handles).map(([r, h]) => [r, [...h.instanceIds]]));
    process.on('message', (m: { type?: string }) => {
      if (m?.type === 'stop') shutdown('stop');
    });
    process.once('disconnect', () => shutdown('disconnect'));
    process.send({ type: 'ready', instanceIds, byRole, url: pipeline.url, pid: process.pid });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
