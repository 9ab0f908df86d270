/**
 * The key of an optional, type-only declaration of a component's endpoint
 * methods. Legacy decorators cannot change a class's type, so a typed
 * client cannot tell `@endpoint` methods from other public methods; a class
 * that declares `declare readonly [Endpoints]?: 'a' | 'b'` gets clients with
 * exactly those methods, and `@endpoint` on a method it does not list fails
 * to compile. `declare` emits nothing: the declaration costs nothing at run
 * time.
 *
 * @example
 * \@component('gateway')
 * class Gateway {
 *   declare readonly [Endpoints]?: 'generate';
 *   \@endpoint() async *generate(req: { prompt: string }) { yield req.prompt; }
 *   helper(): void {} // not on TypedClient<Gateway>
 * }
 */
export const Endpoints: unique symbol = Symbol('troupe:endpoint-names');

/**
 * The endpoint method names a class declares under {@link Endpoints};
 * `string | symbol` when it declares none.
 *
 * @example
 * type Names = DeclaredEndpoints<Gateway>; // 'generate'
 */
export type DeclaredEndpoints<T> = T extends { readonly [Endpoints]?: infer E } ? (unknown extends E ? string | symbol : E) : string | symbol;
