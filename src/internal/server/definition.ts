/**
 * What processors and filters share: a definition value with a service key,
 * implemented by a Layer. A handler runs with the services its Layer was
 * built with, over those of the fiber that calls it: the Layer's win (a
 * processor keeps the services it was built with), except its `Scope`, which
 * is left out, so the `Scope` a handler sees is the message's (or the
 * connection's), never the Layer's.
 */
import { Context, Effect, Layer, Scope } from "effect"

/** Runs every handler of `handlers` with `context` over the calling fiber's services. */
const provideAll = <H extends object>(handlers: H, context: Context.Context<never>): H => {
  const out: Record<string, unknown> = {}
  for (const [name, handler] of Object.entries(handlers)) {
    out[name] = typeof handler === "function"
      ? (...args: Array<unknown>) =>
        Effect.updateContext(
          (handler as (...args: Array<unknown>) => Effect.Effect<unknown, unknown, unknown>)(...args),
          (current: Context.Context<never>) => Context.merge(current, context) as Context.Context<unknown>
        )
      : handler
  }
  return out as H
}

/** The Layer that implements a definition from handlers or an Effect that builds them. */
export const toLayer = <I, Impl, H extends object, E, R>(
  key: Context.Key<I, Impl>,
  build: H | Effect.Effect<H, E, R>,
  finish: (handlers: H) => Impl
): Layer.Layer<I, E, Exclude<R, Scope.Scope>> =>
  Layer.effect(
    key,
    Effect.gen(function*() {
      const handlers = Effect.isEffect(build) ? yield* build : build
      // the Layer's services, less its Scope: a handler's Scope is the message's or the connection's
      const context = Context.omit(Scope.Scope)(yield* Effect.context<never>())
      return finish(provideAll(handlers, context))
    })
  ) as Layer.Layer<I, E, Exclude<R, Scope.Scope>>
