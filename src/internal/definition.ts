/**
 * What processors and filters share: a definition value with a service key,
 * implemented by a Layer. A handler runs with the services its Layer was
 * built with, under those of the fiber that calls it: the fiber's win, so
 * the `Scope` a handler sees is the message's (or the connection's), never
 * the Layer's.
 */
import { Context, Effect, Layer, type Scope } from "effect"

/** Runs every handler of `handlers` with `context` beneath the calling fiber's services. */
export const provideAll = <H extends object>(handlers: H, context: Context.Context<never>): H => {
  const out: Record<string, unknown> = {}
  for (const [name, handler] of Object.entries(handlers)) {
    out[name] = typeof handler === "function"
      ? (...args: Array<unknown>) =>
        Effect.updateContext(
          (handler as (...args: Array<unknown>) => Effect.Effect<unknown, unknown, unknown>)(...args),
          (current: Context.Context<never>) => Context.merge(context, current) as Context.Context<unknown>
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
      const context = yield* Effect.context<never>()
      return finish(provideAll(handlers, context))
    })
  ) as Layer.Layer<I, E, Exclude<R, Scope.Scope>>
