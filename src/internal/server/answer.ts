/**
 * How a message that failed is answered: a `Respondable` error with its own
 * error frame, a declared error of a typed request with the frame the Effect
 * client decodes back (`internal/client/declaredErrors.ts` is the other side
 * of the same contract), and anything else with `500 InternalError`, its
 * cause logged and never sent.
 */
import { Cause, Effect, Result, Schema } from "effect"
import * as ErrorFrame from "../../ErrorFrame.ts"
import * as Frame from "../../Frame.ts"
import * as Rejection from "../../Rejection.ts"
import type { LiveConnection } from "./connection.ts"

/**
 * The error frame for a failed step: a Respondable error's own frame (checked:
 * a frame of user code that would not read back is not sent), else 500, with
 * the cause logged and never sent. An interruption from user code (a handler
 * awaiting an interrupted fiber) is a failure of that message like any other.
 */
export const answer = (connection: LiveConnection, id: string | undefined) => (cause: Cause.Cause<unknown>) => {
  const error = Cause.findErrorOption(cause)
  if (error._tag === "Some" && ErrorFrame.isRespondable(error.value)) {
    const refusal = error.value
    return Effect.suspend(() => {
      const frame = Frame.validate(refusal.toFrame(id))
      if (Result.isSuccess(frame)) return Effect.sync(() => connection.write(frame.success))
      return failed(connection, id, Cause.fail(frame.failure))
    }).pipe(Effect.catchDefect((defect) => failed(connection, id, Cause.die(defect))))
  }
  return failed(connection, id, cause)
}

const failed = (connection: LiveConnection, id: string | undefined, cause: Cause.Cause<unknown>) =>
  Effect.logWarning("a processor or filter failed", cause).pipe(
    Effect.andThen(Effect.sync(() => connection.write(Rejection.internal.toFrame(id))))
  )

// the status of a declared error: its own `status` field when it is an error status, else 400
const declaredStatus = (error: unknown): number => {
  const status = (error as { readonly status?: unknown }).status
  return typeof status === "number" && Number.isInteger(status) && status >= 400 && status <= 599 ? status : 400
}

/**
 * A declared error of a typed request as the Rejection of its error frame:
 * the reason its tag, the body the encoded error as JSON.
 */
export const declared = (schema: Schema.Codec<unknown, unknown>, error: unknown) =>
  Schema.encodeUnknownEffect(schema)(error).pipe(
    Effect.orDie,
    Effect.flatMap((encoded) =>
      Effect.fail(
        new Rejection.Rejection({
          status: declaredStatus(error),
          reason: String((error as { readonly _tag?: unknown })._tag ?? "Error"),
          message: JSON.stringify(encoded)
        })
      )
    )
  )
