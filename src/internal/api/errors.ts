/**
 * The server API's refusals: `ApiError` with a stable `reason`, its HTTP
 * status, and the refusals the operations make of what they are given.
 */
import { Schema } from "effect"
import type { Rejection } from "../../Rejection.ts"

/**
 * Why an operation was refused, as JSON (`{"reason", "message"}`) with the
 * HTTP status of {@link statusOf}.
 *
 * @since 0.1.0
 * @category errors
 */
export class ApiError extends Schema.TaggedError<ApiError>()("ApiError", {
  reason: Schema.Literals([
    "InvalidRequest",
    "UnknownOperation",
    "NoHistory",
    "PresenceOff",
    "BusUnavailable",
    "PublishUnconfirmed",
    "HistoryUnavailable"
  ]),
  message: Schema.String
}) {}

/**
 * The HTTP status of an {@link ApiError}.
 *
 * @since 0.1.0
 * @category errors
 */
export const statusOf = (error: ApiError): number => {
  switch (error.reason) {
    case "InvalidRequest":
      return 400
    case "UnknownOperation":
    case "NoHistory":
    case "PresenceOff":
      return 404
    case "PublishUnconfirmed":
      return 504
    case "BusUnavailable":
    case "HistoryUnavailable":
      return 503
  }
}

/** An operation's request that is not one. */
export const invalid = (message: string) => new ApiError({ reason: "InvalidRequest", message })

/** A refusal of the hub (publish), as the API's error. */
export const fromRejection = (rejection: Rejection): ApiError =>
  new ApiError({
    reason: rejection.reason === "PublishUnconfirmed"
      ? "PublishUnconfirmed"
      : rejection.reason === "HistoryUnavailable"
      ? "HistoryUnavailable"
      : "BusUnavailable",
    message: rejection.message
  })
