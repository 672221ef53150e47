/**
 * Processors handle commands. A processor is defined as a value for one
 * command (optionally with a Schema for its body) and implemented as a Layer,
 * like an `effect/rpc` group: its dependencies are its Layer's requirements.
 *
 * ```ts
 * const Echo = Processor.make("echo")
 * const EchoLive = Echo.toLayer({
 *   onMessage: (exchange) => exchange.send(exchange.text)
 * })
 *
 * const Move = Processor.make("move", { body: Schema.fromJsonString(Schema.Struct({ x: Schema.Number })) })
 * const MoveLive = Move.toLayer(Effect.gen(function*() {
 *   const game = yield* Game
 *   return { onMessage: (exchange) => game.move(exchange.body.x) }
 * }))
 * ```
 *
 * The server takes the list of processors it serves and requires each one's
 * implementation; the same command twice is refused when the server's Layer is
 * built.
 *
 * Hooks: `onOpen` runs for every processor when a connection opens, before its
 * first message; `onMessage` for each message with the processor's command;
 * `onClose` for every processor when the connection ends, however it ends.
 * A hook fails only with a `Respondable` error (`Rejection`, `ProtocolError`,
 * `UpstreamError`, or a class of your own implementing `ErrorFrame.Respondable`):
 * the message is answered with its error frame; an unmapped error is a
 * compile error. A defect answers `500 InternalError` and is logged. A failing
 * `onOpen` closes the connection (1008) after its error frame.
 *
 * Each message runs in a `Scope` of its own, so what `onMessage` acquires is
 * released when the message is done; `onOpen` and `onClose` run in the
 * connection's scope, closed when the connection ends.
 *
 * @since 0.1.0
 */
import { Context, type Effect, type Layer, type Schema, type Scope } from "effect"
import type { Connection } from "./Connection.ts"
import type * as ErrorFrame from "./ErrorFrame.ts"
import type { Exchange } from "./Exchange.ts"
import * as Definition from "./internal/server/definition.ts"

/**
 * What a processor does. With a declared `reply`, `onMessage` returns the
 * reply (sent as a reply frame carrying the request's `id`) and may fail with
 * a declared `error` (sent as an error frame whose reason is the error's tag).
 *
 * @since 0.1.0
 * @category models
 */
export interface Handlers<Body, R = never, Reply = void, Err = never> {
  readonly onOpen?: ((connection: Connection) => Effect.Effect<void, ErrorFrame.Respondable, R>) | undefined
  readonly onMessage?:
    | ((exchange: Exchange<Body>) => Effect.Effect<Reply, Err | ErrorFrame.Respondable, R>)
    | undefined
  readonly onClose?: ((connection: Connection) => Effect.Effect<void, never, R>) | undefined
}

/**
 * A processor's implementation, as the server finds it in context.
 *
 * @since 0.1.0
 * @category models
 */
export interface Implementation {
  readonly command: string
  readonly body: Schema.Codec<unknown, string> | undefined
  readonly reply: Schema.Codec<unknown, string> | undefined
  readonly error: Schema.Codec<unknown, unknown> | undefined
  readonly handlers: Handlers<unknown, never, unknown, unknown>
}

/**
 * The service of the processor for `Command`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service<Command extends string> {
  readonly _: unique symbol
  readonly command: Command
}

/**
 * A processor definition.
 *
 * @since 0.1.0
 * @category models
 */
export interface Processor<Command extends string, Body = string, Reply = void, Err = never> {
  readonly _tag: "Processor"
  readonly command: Command
  readonly body: Schema.Codec<Body, string> | undefined
  /** The reply's Schema, for a typed request. */
  readonly reply: Schema.Codec<Reply, string> | undefined
  /** The Schema of the errors a typed request declares (tagged errors). */
  readonly error: Schema.Codec<Err, unknown> | undefined
  readonly key: Context.Key<Service<Command>, Implementation>
  /** Implements the processor, from handlers or from an Effect that builds them. */
  readonly toLayer: <R = never, E = never, RB = never>(
    build: Handlers<Body, R, Reply, Err> | Effect.Effect<Handlers<Body, R, Reply, Err>, E, RB>
  ) => Layer.Layer<Service<Command>, E, Exclude<R | RB, Scope.Scope>>
}

/**
 * Any processor definition.
 *
 * @since 0.1.0
 * @category models
 */
export interface Any {
  readonly _tag: "Processor"
  readonly command: string
  // the identifier of any processor's service: `unknown` would make the server's requirements `unknown`
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly key: Context.Key<any, Implementation>
}

// every parameter inferred: with `any` there, a definition without a declared error (`never`) did not
// match (its Schemas are invariant), and the server required no processor (test/types/server-layer.ts)
/**
 * The services a list of processors requires.
 *
 * @since 0.1.0
 * @category models
 */
export type Services<P extends Any> = P extends Processor<infer C, infer _Body, infer _Reply, infer _Err> ? Service<C>
  : never

/**
 * Defines the processor of a command. With `body`, the message body is
 * decoded with that Schema before `onMessage` runs, and a body that does not
 * decode is answered with `400 InvalidBody`.
 *
 * With `reply` (and optionally `error`), the processor answers typed
 * requests: `onMessage` returns the reply, encoded with `reply` and sent as a
 * frame with the processor's command, the request's `id` and the encoded
 * reply as its body; a failure with one of the `error` Schema's tagged errors
 * is sent as an error frame whose reason is the error's `_tag` and whose body
 * is the encoded error as JSON (status 400, or the error's own `status` field
 * when it is a number from 400 to 599). Any other failure is answered as
 * usual (a `Respondable` error's frame, else `500 InternalError`, logged).
 * The Effect client calls it with `client.call(Processor, body)`.
 *
 * ```ts
 * class OffBoard extends Schema.TaggedError<OffBoard>()("OffBoard", { x: Schema.Number }) {}
 * const Move = Processor.make("move", {
 *   body: Schema.fromJsonString(Schema.Struct({ x: Schema.Number })),
 *   reply: Schema.fromJsonString(Schema.Struct({ x: Schema.Number })),
 *   error: OffBoard
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <const Command extends string, Body = string, Reply = void, Err = never>(
  command: Command,
  options?: {
    readonly body?: Schema.Codec<Body, string> | undefined
    readonly reply?: Schema.Codec<Reply, string> | undefined
    readonly error?: Schema.Codec<Err, unknown> | undefined
  }
): Processor<Command, Body, Reply, Err> => {
  const key = Context.Service<Service<Command>, Implementation>(`effect-lhttp/Processor/${command}`)
  const body = options?.body
  const reply = options?.reply
  const error = options?.error
  return {
    _tag: "Processor",
    command,
    body,
    reply,
    error,
    key,
    toLayer: (build) =>
      Definition.toLayer(key, build, (handlers) => ({
        command,
        body: body as Schema.Codec<unknown, string> | undefined,
        reply: reply as Schema.Codec<unknown, string> | undefined,
        error: error as Schema.Codec<unknown, unknown> | undefined,
        handlers: handlers as Handlers<unknown, never, unknown, unknown>
      }))
  }
}
