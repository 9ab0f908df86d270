/**
 * Undo steps for a test, run last-in first-out in `after.each`, each one
 * even when an earlier one fails: every process a test started is killed by
 * pid and every runtime closed, whatever the test did.
 *
 * @example
 * const cleanup = new Cleanup();
 * cleanup.add(() => worker.kill('SIGKILL'));
 * await cleanup.run();
 */
export class Cleanup {
  private readonly steps: Array<() => Promise<unknown>> = [];

  add(step: () => Promise<unknown>): void {
    this.steps.push(step);
  }

  /** Closes `rt` at cleanup; returns it. */
  runtime<R extends { close(): Promise<void> }>(rt: R): R {
    this.add(() => rt.close());
    return rt;
  }

  async run(): Promise<void> {
    while (this.steps.length > 0) {
      const step = this.steps.pop() as () => Promise<unknown>;
      try {
        await step();
      } catch {
        // keep cleaning up
      }
    }
  }
}
