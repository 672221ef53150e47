/**
 * Header filters: hooks around every message, as in the original lhttp. The
 * server runs the built-in filters first, then the user's filters in the
 * order given:
 *
 * 1. `onOpen` when a connection opens;
 * 2. `before` the processor: built-in multipart (cuts the parts), then the
 *    user's (a filter can change the message or `drop` it);
 * 3. the processor of the command;
 * 4. `after` the processor: built-in pub/sub (subscribe, then publish, then
 *    unsubscribe, whatever the header order), built-in upstream, then the
 *    user's;
 * 5. `onClose` when the connection ends, however it ends.
 *
 * A user's filter is defined as a value and implemented as a Layer:
 *
 * ```ts
 * const Audit = Filter.make("audit")
 * const AuditLive = Audit.toLayer({
 *   before: (exchange) => exchange.header("token") === undefined ? Effect.sync(exchange.drop) : Effect.void
 * })
 * ```
 *
 * A hook fails only with a `Respondable` error (see `ErrorFrame.Respondable`):
 * its error frame answers the message, which stops there; a defect answers
 * `500 InternalError` and is logged.
 *
 * @since 0.1.0
 */
import { Context, type Effect, type Layer, type Scope } from "effect"
import type { Connection } from "./Connection.ts"
import type * as ErrorFrame from "./ErrorFrame.ts"
import type { Exchange } from "./Exchange.ts"
import * as Definition from "./internal/server/definition.ts"

/**
 * The hooks of a filter; all are optional.
 *
 * @since 0.1.0
 * @category models
 */
export interface Hooks<R = never> {
  readonly onOpen?: ((connection: Connection) => Effect.Effect<void, ErrorFrame.Respondable, R>) | undefined
  readonly before?: ((exchange: Exchange) => Effect.Effect<void, ErrorFrame.Respondable, R>) | undefined
  readonly after?: ((exchange: Exchange) => Effect.Effect<void, ErrorFrame.Respondable, R>) | undefined
  readonly onClose?: ((connection: Connection) => Effect.Effect<void, never, R>) | undefined
}

/**
 * A filter's implementation, as the server finds it in context.
 *
 * @since 0.1.0
 * @category models
 */
export interface Implementation {
  readonly name: string
  readonly hooks: Hooks
}

/**
 * The service of the filter named `Name`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service<Name extends string> {
  readonly _: unique symbol
  readonly name: Name
}

/**
 * A filter definition.
 *
 * @since 0.1.0
 * @category models
 */
export interface Filter<Name extends string> {
  readonly _tag: "Filter"
  readonly name: Name
  readonly key: Context.Key<Service<Name>, Implementation>
  /** Implements the filter, from hooks or from an Effect that builds them. */
  readonly toLayer: <R = never, E = never, RB = never>(
    build: Hooks<R> | Effect.Effect<Hooks<R>, E, RB>
  ) => Layer.Layer<Service<Name>, E, Exclude<R | RB, Scope.Scope>>
}

/**
 * Any filter definition.
 *
 * @since 0.1.0
 * @category models
 */
export interface Any {
  readonly _tag: "Filter"
  readonly name: string
  // the identifier of any filter's service: `unknown` would make the server's requirements `unknown`
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly key: Context.Key<any, Implementation>
}

/**
 * The services a list of filters requires.
 *
 * @since 0.1.0
 * @category models
 */
export type Services<F extends Any> = F extends Filter<infer N> ? Service<N> : never

/**
 * Defines a filter.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <const Name extends string>(name: Name): Filter<Name> => {
  const key = Context.Service<Service<Name>, Implementation>(`effect-lhttp/Filter/${name}`)
  return {
    _tag: "Filter",
    name,
    key,
    toLayer: (build) => Definition.toLayer(key, build, (hooks) => ({ name, hooks: hooks as Hooks }))
  }
}
