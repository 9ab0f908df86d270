import type { Test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  component,
  type Context,
  endpoint,
  injectClient,
  injectInstance,
  type InstanceInfo,
  type Runtime,
  type RuntimeOptions,
  TroupeError,
  type TypedClient,
} from '@troupe/runtime/internal';
import { sleep, waitFor, within } from './wait';

/**
 * Request-context cases of the runtime conformance suite: what travels with a
 * request through nested calls made with `parent: ctx` — the deadline and
 * the cancel (told apart at every hop).
 */

interface AbortLog {
  aborts: { code: string; isTroupeError: boolean; at: number }[];
}

function recordAborts(log: AbortLog, ctx: Context): void {
  ctx.signal.addEventListener(
    'abort',
    () => {
      const r: unknown = ctx.signal.reason;
      log.aborts.push({ code: (r as TroupeError)?.code ?? 'unknown', isTroupeError: r instanceof TroupeError, at: Date.now() });
    },
    { once: true },
  );
}

@component('ctxleaf')
class Leaf implements AbortLog {
  aborts: AbortLog['aborts'] = [];
  started = 0;
  constructor(@injectInstance() readonly me: InstanceInfo) {}

  @endpoint() async hold(ms: number, ctx: Context): Promise<number> {
    recordAborts(this, ctx);
    this.started++;
    await sleep(ms, ctx.signal);
    return ms;
  }
}

@component('ctxmid')
class Mid implements AbortLog {
  aborts: AbortLog['aborts'] = [];
  /** Codes of the nested call's errors. */
  failures: string[] = [];
  constructor(@injectClient(Leaf) private readonly leaf: TypedClient<Leaf>) {}

  @endpoint() async hold(ms: number, ctx: Context): Promise<number> {
    recordAborts(this, ctx);
    try {
      return await this.leaf.hold(ms, { parent: ctx });
    } catch (err) {
      this.failures.push((err as TroupeError).code);
      throw err;
    }
  }
}

interface Pair {
  worker: Runtime;
  caller: Runtime;
}

let nsCounter = 0;
const freshNamespace = (): string => `cx${process.pid}x${Date.now().toString(36)}x${(nsCounter++).toString(36)}`;

async function failure(p: Promise<unknown>, what: string): Promise<TroupeError> {
  try {
    await within(p, 5_000, what);
  } catch (err) {
    assert.instance(err, TroupeError, `${what}: ${String(err)}`);
    return err as TroupeError;
  }
  assert.unreachable(`${what} succeeded`);
  throw new Error('unreachable');
}

/** Adds the request-context cases to the runtime suite `s`. */
export function addContextCases<C extends { pair?: unknown }>(s: Test<C>, open: (ctx: C, options?: RuntimeOptions) => Promise<Pair>): void {
  s('deadline - a unary deadline reads as TIMEOUT at every hop, a cancel as CANCELLED (issue #18)', async (ctx) => {
    const { worker, caller } = await open(ctx);
    const ns = freshNamespace();
    const hl = await worker.spawn(Leaf, { namespace: ns });
    const hm = await worker.spawn(Mid, { namespace: ns });
    const leaf = hl.instance(hl.instanceIds[0] as string);
    const mid = hm.instance(hm.instanceIds[0] as string);
    const client = caller.namespace(ns).client(Mid);

    const timedOut = await failure(client.hold(60_000, { timeout: 300 }), 'the timed-out call');
    assert.is(timedOut.code, 'TIMEOUT', timedOut.message);
    // Both deadlines pass at about the same moment: hop 2 is aborted with TIMEOUT; hop 1 is aborted
    // with TIMEOUT or (when hop 2's deadline fired first) sees its nested call fail with TIMEOUT.
    await waitFor(() => leaf.aborts.length === 1, 1_000, 'hop 2 to see the deadline');
    assert.is(leaf.aborts[0]?.code, 'TIMEOUT', 'hop 2: ctx.signal.reason of a deadline');
    assert.ok(leaf.aborts[0]?.isTroupeError, 'hop 2: the reason is a TroupeError');
    await waitFor(() => mid.aborts.length === 1 || mid.failures.length === 1, 1_000, 'hop 1 to see the deadline');
    assert.is(mid.aborts[0]?.code ?? mid.failures[0], 'TIMEOUT', `hop 1 reads the deadline as a deadline: ${JSON.stringify({ aborts: mid.aborts, failures: mid.failures })}`);
    mid.aborts.length = 0;
    mid.failures.length = 0;
    leaf.aborts.length = 0;

    const ac = new AbortController();
    const call = client.hold(60_000, { timeout: 10_000, signal: ac.signal });
    await waitFor(() => leaf.started === 2, 2_000, 'the second call to reach hop 2');
    const t0 = Date.now();
    ac.abort();
    const cancelled = await failure(call, 'the cancelled call');
    assert.is(cancelled.code, 'CANCELLED', cancelled.message);
    await waitFor(() => leaf.aborts.length === 1 && mid.aborts.length === 1, 1_000, 'both handlers to see the cancel');
    for (const [name, log] of [['hop 1', mid], ['hop 2', leaf]] as const) {
      assert.is(log.aborts[0]?.code, 'CANCELLED', `${name}: ctx.signal.reason of a cancel`);
      assert.ok(log.aborts[0]?.isTroupeError, `${name}: the reason is a TroupeError`);
      assert.ok((log.aborts[0]?.at as number) - t0 < 500, `${name} aborted within 500 ms of the cancel`);
    }
    await waitFor(() => caller.pendingReplies === 0 && worker.pendingReplies === 0, 1_000, 'every call released');
  });
}
