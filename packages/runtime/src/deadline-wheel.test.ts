import { spawnSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DeadlineWheel, type Expirable } from './deadline-wheel';

function item(): Expirable & { at: number; settledFlag: boolean } {
  const x = {
    at: 0,
    settledFlag: false,
    get settled() {
      return x.settledFlag;
    },
    expire() {
      x.at = Date.now();
      x.settledFlag = true;
    },
  };
  return x;
}

test('deadline wheel - fires each deadline within one slot and skips settled entries', async () => {
  const wheel = new DeadlineWheel();
  const t0 = Date.now();
  const a = item();
  const b = item();
  const c = item();
  wheel.add(a, t0 + 40);
  wheel.add(b, t0 + 80);
  wheel.add(c, t0 + 60);
  c.settledFlag = true; // finished first
  wheel.settle();
  await new Promise((r) => setTimeout(r, 150));
  assert.ok(a.at - t0 >= 40 && a.at - t0 <= 60, `a fired at +${a.at - t0} ms for +40`);
  assert.ok(b.at - t0 >= 80 && b.at - t0 <= 100, `b fired at +${b.at - t0} ms for +80`);
  assert.is(c.at, 0, 'a settled entry never fires');
  assert.is(wheel.scheduled, 0);
});

test('deadline wheel - settled entries do not keep the process alive', () => {
  const script = `
    const { DeadlineWheel } = require(${JSON.stringify(require.resolve('./deadline-wheel'))});
    const w = new DeadlineWheel();
    w.add({ settled: true, expire() {} }, Date.now() + 60000);
    w.settle();`;
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['-e', script], { timeout: 10_000 });
  assert.is(r.status, 0, String(r.stderr));
  assert.ok(Date.now() - t0 < 5_000, `the process exited after ${Date.now() - t0} ms, not at the 60 s deadline`);
});

test.run();
