/**
 * A refusal the server answers with an error frame: the server's own (a
 * limit, an unknown command, a body that does not decode) and any that a
 * processor or filter fails with to refuse a message.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"
import * as ErrorFrame from "./ErrorFrame.ts"
import type { Frame } from "./Frame.ts"

/**
 * A refused message: `status`, `reason` and a human-readable `message` become
 * the error frame (see {@link ErrorFrame}), which echoes the request's `id`.
 *
 * @since 0.1.0
 * @category errors
 */
export class Rejection extends Schema.TaggedError<Rejection>()("Rejection", {
  status: Schema.Int,
  reason: Schema.String,
  message: Schema.String
}) implements ErrorFrame.Respondable {
  /** Marks the error as one that becomes an error frame. */
  get [ErrorFrame.TypeId](): ErrorFrame.TypeId {
    return ErrorFrame.TypeId
  }

  /** The error frame for this refusal, echoing the request's `id` when given. */
  toFrame(id?: string): Frame {
    return ErrorFrame.make({ status: this.status, reason: this.reason, message: this.message, id })
  }
}

/**
 * A command without a processor, and without a built-in header that would
 * give it something to do.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unknownCommand = (command: string): Rejection =>
  new Rejection({
    status: 404,
    reason: "UnknownCommand",
    message: `no processor for the command ${JSON.stringify(command.slice(0, 64))}`
  })

/**
 * A subscription past the per-connection limit.
 *
 * @since 0.1.0
 * @category constructors
 */
export const tooManySubscriptions = (max: number): Rejection =>
  new Rejection({
    status: 429,
    reason: "TooManySubscriptions",
    message: `a connection holds at most ${max} subscriptions`
  })

/**
 * A body that does not decode with the processor's Schema. The explanation is
 * Schema's (what was expected, and the path of the value that failed), cut at
 * 300 characters.
 *
 * @since 0.1.0
 * @category constructors
 */
export const invalidBody = (detail: string): Rejection =>
  new Rejection({
    status: 400,
    reason: "InvalidBody",
    message: detail.length > 300 ? `${detail.slice(0, 300)}…` : detail
  })

/**
 * A processor or filter that failed with something other than a Rejection,
 * or died. The cause is logged, never sent.
 *
 * @since 0.1.0
 * @category constants
 */
export const internal: Rejection = new Rejection({
  status: 500,
  reason: "InternalError",
  message: "the server failed to process the message"
})

/**
 * The `upstream` header before upstream targets are configured.
 *
 * @since 0.1.0
 * @category constants
 */
export const upstreamNotConfigured: Rejection = new Rejection({
  status: 501,
  reason: "UpstreamNotConfigured",
  message: "upstream is not configured on this server"
})

/**
 * A refusal of the `authorize` hook, or of an app's own check.
 *
 * @since 0.1.0
 * @category constructors
 */
export const forbidden = (message: string): Rejection => new Rejection({ status: 403, reason: "Forbidden", message })

/**
 * A request that came while the server drains: it is not run.
 *
 * @since 0.1.0
 * @category constants
 */
export const shuttingDown: Rejection = new Rejection({
  status: 503,
  reason: "ShuttingDown",
  message: "the server is shutting down: send the request again after reconnecting"
})

/**
 * The bus refused a publish or a subscription (for example while a NATS
 * connection is down and its buffer is full).
 *
 * @since 0.1.0
 * @category constructors
 */
export const busUnavailable = (detail: string): Rejection =>
  new Rejection({ status: 503, reason: "BusUnavailable", message: detail })

/**
 * A publish with an `id` that the bus took but did not confirm in time (a
 * stream that did not answer): it may have been published or not, so the
 * publisher is told it cannot know.
 *
 * @since 0.1.0
 * @category constructors
 */
export const publishUnconfirmed = (detail: string): Rejection =>
  new Rejection({ status: 504, reason: "PublishUnconfirmed", message: detail })

/**
 * A channel's history store that cannot append or read now: the message was
 * not published, or the subscription not made.
 *
 * @since 0.1.0
 * @category constructors
 */
export const historyUnavailable = (detail: string): Rejection =>
  new Rejection({ status: 503, reason: "HistoryUnavailable", message: `the channel history is unavailable: ${detail}` })

/**
 * A `since` header that is not `<epoch>:<offset>`, or that goes with more
 * than one subscribed channel.
 *
 * @since 0.1.0
 * @category constructors
 */
export const invalidSince = (detail: string): Rejection =>
  new Rejection({ status: 400, reason: "InvalidSince", message: detail })
