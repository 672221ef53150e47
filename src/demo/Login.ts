/**
 * The `login` demo processor: `LHTTP/1.0 login` with an `id` and a JSON body
 * `{"name":"..."}` creates a session holding that name, makes the name the
 * connection's user (`Connection.user`), and answers with the `session`
 * frame (carrying the `id`). The client keeps the key and restores
 * the session after a reconnect or a reload (`LHTTP/1.0 session` with
 * `restore:<key>`), so the name survives; the `chat` processor reads it.
 *
 * @since 0.1.0
 */
import { Effect, Schema } from "effect"
import * as Connection from "../Connection.ts"
import * as Processor from "../Processor.ts"
import * as Sessions from "../Sessions.ts"

/**
 * What a login carries: a name of 1 to 32 characters.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Credentials = Schema.Struct({ name: Schema.String.check(Schema.isMinLength(1), Schema.isMaxLength(32)) })

/**
 * The `login` processor.
 *
 * @since 0.1.0
 * @category processors
 */
export const Login = Processor.make("login", { body: Schema.fromJsonString(Credentials) })

/**
 * Its implementation, over the `Sessions` service.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = Login.toLayer(Effect.gen(function*() {
  const sessions = yield* Sessions.Sessions
  return {
    onMessage: (exchange) =>
      Effect.suspend(() => {
        // the name is the connection's user too: the server API reaches a user's connections by it (a demo: a
        // real app takes the user from an authenticate hook or a token, not from what the client claims)
        exchange.connection.set(Connection.user, exchange.body.name)
        return Effect.asVoid(sessions.create(exchange.connection, { name: exchange.body.name }, { id: exchange.id }))
      })
  }
}))
