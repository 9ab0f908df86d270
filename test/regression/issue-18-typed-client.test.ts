import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { component, endpoint, Endpoints, injectClient, Runtime, TroupeError, type TypedClient } from '@troupe/runtime';

// Compile-time half: this file is part of the build (`tsc -b`), so each `@ts-expect-error`
// below must meet an error — an unused one fails the build.

@component('front')
class Front {
  @endpoint() ask(q: string): string {
    return `front:${q}`;
  }
  /** Public but not an endpoint. */
  helper(n: number): number {
    return n + 1;
  }
  private secret(): number {
    return 42;
  }
  protected guarded(): number {
    return this.secret();
  }
}

/** Declares its endpoint names: its clients have exactly those methods. */
@component('exact')
class Exact {
  declare readonly [Endpoints]?: 'ask';
  @endpoint() ask(q: string): string {
    return `exact:${q}`;
  }
  helper(n: number): number {
    return n + 1;
  }
}

@component('flaky')
class Flaky {
  @endpoint() flake(): string {
    return 'flake';
  }
}

/** The mix-up no compiler can see: a client of Flaky where one of Front is wanted. */
@component('mixed')
class Mixed {
  constructor(@injectClient(Flaky) private readonly front: TypedClient<Front>) {}
  @endpoint() relay(q: string): Promise<string> {
    return this.front.ask(q);
  }
}

/** A component class where its client belongs: caught at spawn from design:paramtypes. */
@component('classtyped')
class ClassTyped {
  constructor(@injectClient(Front) readonly front: Front) {}
  @endpoint() ping(): string {
    return 'pong';
  }
}

export function compileTimeChecks(front: TypedClient<Front>, exact: TypedClient<Exact>): void {
  void front.ask('x');
  // @ts-expect-error private methods are not on a typed client
  void front.secret;
  // @ts-expect-error protected methods are not on a typed client
  void front.guarded;
  // @ts-expect-error lifecycle hooks and unknown names are not on a typed client
  void front.onStart;
  // @ts-expect-error the request type is the endpoint's
  void front.ask(1);
  void exact.ask('x');
  // @ts-expect-error a class that declares [Endpoints] gets exactly those methods: helper is public but not listed
  void exact.helper(1);
}

export class Undeclared {
  declare readonly [Endpoints]?: 'ask';
  @endpoint() ask(): string {
    return 'a';
  }
  // @ts-expect-error @endpoint on a method the class does not list under [Endpoints] does not compile
  @endpoint() other(): string {
    return 'b';
  }
}

test('issue 18 - a public method that is not an endpoint throws NOT_FOUND at once, naming the endpoints', async () => {
  const rt = await Runtime.embedded();
  try {
    await rt.spawn(Front, { namespace: 'issue18tc' });
    const client = rt.namespace('issue18tc').client(Front);
    assert.is(await client.ask('q'), 'front:q');
    // Compiles (helper is public; legacy decorators cannot mark endpoints in the type) and fails clearly at run time.
    const err = (() => {
      try {
        void client.helper(1);
      } catch (e) {
        return e as TroupeError;
      }
      return undefined;
    })();
    assert.instance(err, TroupeError);
    assert.is(err?.code, 'NOT_FOUND');
    assert.match(err?.message ?? '', /helper is not an endpoint of component front \(class Front\).*its endpoints are ask/);
    assert.is(await Promise.resolve(client).then((c) => typeof c.ask), 'function', 'a client can be awaited (then is not a stub)');
    assert.is(JSON.stringify(client), '{}', 'JSON does not call a stub');
  } finally {
    await rt.close();
  }
});

test('issue 18 - a client injected for the wrong component answers NOT_FOUND naming the likely mix-up', async () => {
  const rt = await Runtime.embedded();
  try {
    await rt.spawn(Flaky, { namespace: 'issue18mix' });
    await rt.spawn(Mixed, { namespace: 'issue18mix' });
    try {
      await rt.namespace('issue18mix').client(Mixed).relay('q');
      assert.unreachable('relay should fail');
    } catch (e) {
      assert.instance(e, TroupeError);
      assert.is((e as TroupeError).code, 'NOT_FOUND');
      assert.match(
        (e as Error).message,
        /ask is not an endpoint of component flaky \(class Flaky\).*@injectClient\(Flaky\) sits on a parameter typed TypedClient<Flaky>/,
      );
    }
  } finally {
    await rt.close();
  }
});

test('issue 18 - @injectClient on a parameter typed as a component class is refused at spawn', async () => {
  const rt = await Runtime.embedded();
  try {
    await rt.spawn(ClassTyped, { namespace: 'issue18cls' });
    throw new Error('spawn should fail');
  } catch (e) {
    assert.instance(e, TroupeError, String(e));
    assert.is((e as TroupeError).code, 'BAD_REQUEST');
    assert.match(
      (e as Error).message,
      /parameter 0 \(front\) of ClassTyped's constructor is typed Front, but @injectClient\(Front\) injects a client: type it TypedClient<Front>/,
    );
  } finally {
    await rt.close();
  }
});

test.run();
