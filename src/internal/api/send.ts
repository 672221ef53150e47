/**
 * The `send` command (ServerApi.ts says what it does): a client addresses a
 * user's connections, or one, on every node, over the cluster's question
 * that the server API of each node answers.
 */
import { Duration, Effect, Layer, Result } from "effect"
import type { Authorization } from "../../Authorization.ts"
import type { Bus } from "../../Bus.ts"
import * as Cluster from "../../Cluster.ts"
import * as Connection from "../../Connection.ts"
import * as Frame from "../../Frame.ts"
import * as Processor from "../../Processor.ts"
import { Rejection } from "../../Rejection.ts"
import { type ConnectionsQuestion, kinds, sumOf } from "./questions.ts"

/** The `send` command. */
export const SendProcessor = Processor.make("send")

/** The headers of the `send` command and of what it delivers. */
export const SendHeader = {
  user: "user",
  connection: "connection",
  command: "command",
  from: "from",
  delivered: "delivered",
  complete: "complete"
} as const

/** Options of the `send` command. */
export interface Options {
  /** Decides on each send (action `send`); without it any user may send to any user. */
  readonly authorize?: ((request: Authorization) => Effect.Effect<void, Rejection>) | undefined
  /** How long a send waits for the nodes' answers (default 2 seconds). */
  readonly timeout?: Duration.Input | undefined
}

/** The `send` command's implementation, over the cluster. */
export const layer = (options?: Options): Layer.Layer<Processor.Service<"send">, never, Bus> =>
  SendProcessor.toLayer(Effect.gen(function*() {
    const cluster = yield* Cluster.Cluster
    const timeout = Duration.fromInputUnsafe(options?.timeout ?? Duration.seconds(2))
    const authorize = options?.authorize
    return {
      onMessage: (exchange) =>
        Effect.gen(function*() {
          const from = exchange.connection.get(Connection.user)
          if (from === undefined) {
            return yield* new Rejection({ status: 403, reason: "UserRequired", message: "only a user may send to one" })
          }
          const user = exchange.headers.get(SendHeader.user)
          const connection = exchange.headers.get(SendHeader.connection)
          if ((user === undefined) === (connection === undefined)) {
            return yield* new Rejection({
              status: 400,
              reason: "InvalidRequest",
              message: "a send names a user or a connection"
            })
          }
          if (authorize !== undefined) {
            yield* authorize({
              action: "send",
              channels: [],
              connection: exchange.connection,
              user,
              target: connection
            })
          }
          const frame = Frame.make(exchange.headers.get(SendHeader.command) ?? SendProcessor.command, {
            [SendHeader.from]: from
          }, exchange.text)
          const checked = Frame.validate(frame)
          if (Result.isFailure(checked)) return yield* checked.failure
          const question: ConnectionsQuestion = { user, connection, action: "send", frame: Frame.render(frame) }
          const { answers, complete } = yield* cluster.ask<number>(kinds.connections, question, timeout).pipe(
            Effect.mapError((error) => new Rejection({ status: 503, reason: "BusUnavailable", message: error.message }))
          )
          if (exchange.id === undefined) return
          yield* Effect.orDie(exchange.connection.send(Frame.make(exchange.command, {
            id: exchange.id,
            [SendHeader.delivered]: String(sumOf(answers)),
            [SendHeader.complete]: complete ? "yes" : "no"
          })))
        })
    }
  })).pipe(Layer.provide(Cluster.layer))
