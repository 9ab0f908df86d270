import 'reflect-metadata';
import { Observable } from 'rxjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { component, componentMeta, endpoint } from './decorators';
import { TroupeError } from '../errors';

test('decorators - records endpoints, their wire names and whether they stream', () => {
  @component('decode')
  class Decode {
    @endpoint() async *generate(): AsyncGenerator<number> {
      yield 1;
    }
    @endpoint('load_metrics') loadMetrics(): number {
      return 1;
    }
    @endpoint() tokens(): Observable<number> {
      return new Observable();
    }
    @endpoint({ stream: true }) custom(): AsyncIterable<number> {
      return (async function* () {})();
    }
    helper(): void {}
  }
  const meta = componentMeta(Decode);
  assert.is(meta.name, 'decode');
  assert.equal([...meta.endpoints.keys()].sort(), ['custom', 'generate', 'load_metrics', 'tokens']);
  assert.is(meta.endpoints.get('load_metrics')?.method, 'loadMetrics');
  assert.is(meta.endpoints.get('generate')?.stream, true);
  assert.is(meta.endpoints.get('tokens')?.stream, true);
  assert.is(meta.endpoints.get('custom')?.stream, true);
  assert.is(meta.endpoints.get('load_metrics')?.stream, false);
});

test('decorators - immutable is recorded when true and refused when not a boolean', () => {
  @component('shared')
  class Shared {
    @endpoint({ immutable: true }) a(): number {
      return 1;
    }
    @endpoint({ immutable: false }) b(): number {
      return 1;
    }
  }
  const meta = componentMeta(Shared);
  assert.is(meta.endpoints.get('a')?.immutable, true);
  assert.is(meta.endpoints.get('b')?.immutable, undefined);
  assert.throws(
    () => endpoint({ immutable: 'yes' as unknown as boolean }),
    (e: unknown) => e instanceof TroupeError && /immutable must be a boolean/.test(e.message),
  );
});

test('decorators - a class without @component is refused with a clear message', () => {
  class Plain {
    @endpoint() x(): void {}
  }
  try {
    componentMeta(Plain);
    assert.unreachable();
  } catch (err) {
    assert.instance(err, TroupeError);
    assert.match((err as Error).message, /Plain is not a component: decorate the class with @component/);
  }
});

test('decorators - two endpoints of one name are refused', () => {
  assert.throws(() => {
    @component('dup')
    class Dup {
      @endpoint('go') a(): void {}
      @endpoint('go') b(): void {}
    }
    return Dup;
  }, /declares endpoint "go" twice/);
});

test('decorators - invalid names are refused before any subject exists', () => {
  assert.throws(() => component('bad.name'), /invalid component name/);
  assert.throws(() => endpoint('a>'), /invalid endpoint name/);
  assert.throws(() => component('_private'), /reserved/);
});

test('decorators - a component without endpoints is refused', () => {
  @component('empty')
  class Empty {}
  assert.throws(() => componentMeta(Empty), /has no endpoints/);
});

test.run();
