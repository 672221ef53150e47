/**
 * A typed request (`call`) to a processor definition: the body encoded with
 * its `body` Schema, and the answer decoded: the reply with its `reply`
 * Schema, or a declared error with its `error` Schema (declaredErrors.ts).
 */
import { Effect, Schema } from "effect"
import type * as Message from "../../Message.ts"
import type * as Processor from "../../Processor.ts"
import { ClientError, invalidReply, rejected } from "./clientError.ts"
import * as DeclaredErrors from "./declaredErrors.ts"

/**
 * Calls the processor of `definition` with `body`; `exchange` sends the
 * request (the command and the encoded body) and waits for its answer.
 */
export const call = <Command extends string, Body, Reply, Err>(
  definition: Processor.Processor<Command, Body, Reply, Err>,
  body: Body,
  exchange: (command: string, body: string) => Effect.Effect<Message.Message, ClientError>
): Effect.Effect<Reply, Err | ClientError> =>
  Effect.gen(function*() {
    const command = definition.command
    const text = definition.body === undefined
      ? typeof body === "string"
        ? body
        : yield* new ClientError({ reason: "InvalidBody", message: `the body of ${command} is not a string` })
      : yield* Schema.encodeEffect(definition.body)(body).pipe(
        Effect.mapError((error) =>
          new ClientError({
            reason: "InvalidBody",
            message: `the body of ${command} does not encode: ${error.message}`
          })
        )
      )
    const answer = yield* exchange(command, text)
    if (answer._tag === "Failure") {
      const verdict = DeclaredErrors.decode(command, definition.error, answer)
      return yield* Effect.fail(
        verdict._tag === "Declared"
          ? verdict.error
          : verdict._tag === "Rejected"
          ? rejected(answer)
          : invalidReply(verdict.message)
      )
    }
    if (definition.reply === undefined) return undefined as Reply
    return yield* Schema.decodeEffect(definition.reply)(answer.body).pipe(
      Effect.mapError((error) => invalidReply(`the reply to ${command} does not decode: ${error.message}`))
    )
  })
