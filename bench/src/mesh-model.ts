/**
 * The paper model of discovery traffic (docs/discovery.md, "Discovery
 * traffic: the paper model"), printed beside the mesh case's figures.
 */

/**
 * Discovery messages per second the paper model (docs/discovery.md,
 * "Discovery traffic: the paper model") predicts into and out of the
 * server, for `p` hosting processes, `w` watching processes, `e` endpoints
 * per instance and `churn` operations per second (half spawns, half stops).
 * Nothing depends on the instances per process.
 */
export function meshModel(p: number, w: number, e: number, churn: number): { restIn: number; restOut: number; churnIn: number; churnOut: number } {
  // beats, lease rewrites (every 2 s), marker checks
  const restIn = p + p / 2 + p;
  // beats and lease rewrites to each watcher, lease acks, marker replies
  const restOut = p * w + (p * w) / 2 + p / 2 + p;
  const spawns = churn / 2;
  const stops = churn / 2;
  // a spawn: lease write, e records, the marker; a stop: lease write, e deletes
  const churnIn = restIn + spawns * (2 + e) + stops * (1 + e);
  // their acks, and per watcher the records (or deletes) and the lease
  const churnOut = restOut + spawns * (2 + e + w * (e + 1)) + stops * (1 + e + w * (e + 1));
  return { restIn, restOut, churnIn, churnOut };
}
