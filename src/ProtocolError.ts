/**
 * The typed error of everything that reads the wire: frames, channel lists,
 * multipart offsets and upstream headers. It crosses the wire as an error
 * frame (see {@link ErrorFrame}).
 *
 * @since 0.1.0
 */
import { Schema } from "effect"
import * as ErrorFrame from "./ErrorFrame.ts"
import type { Frame } from "./internal/wire/frameModel.ts"

/**
 * Why a frame or a part of it was refused.
 *
 * @since 0.1.0
 * @category models
 */
export const Reason = Schema.Literals([
  "NotLhttp",
  "UnsupportedVersion",
  "MalformedStartLine",
  "MalformedHeader",
  "TooManyHeaders",
  "InvalidUtf8",
  "InvalidChannel",
  "InvalidMultipart",
  "InvalidUpstream"
])

/**
 * @since 0.1.0
 * @category models
 */
export type Reason = typeof Reason.Type

/**
 * The status each reason is reported with in an error frame: HTTP-like, 400
 * for a malformed request and 431 for too many headers.
 *
 * @since 0.1.0
 * @category constants
 */
export const statusOf: { readonly [R in Reason]: number } = {
  NotLhttp: 400,
  UnsupportedVersion: 505,
  MalformedStartLine: 400,
  MalformedHeader: 400,
  TooManyHeaders: 431,
  InvalidUtf8: 400,
  InvalidChannel: 400,
  InvalidMultipart: 400,
  InvalidUpstream: 400
}

/**
 * A frame, or one of its headers, that the protocol does not allow.
 *
 * @since 0.1.0
 * @category errors
 */
export class ProtocolError extends Schema.TaggedError<ProtocolError>()("ProtocolError", {
  reason: Reason,
  message: Schema.String
}) implements ErrorFrame.Respondable {
  /** The status of the error frame for this error. */
  get status(): number {
    return statusOf[this.reason]
  }

  /** Marks the error as one that becomes an error frame. */
  get [ErrorFrame.TypeId](): ErrorFrame.TypeId {
    return ErrorFrame.TypeId
  }

  /** The error frame the server sends for this error, echoing the request's `id` when given. */
  toFrame(id?: string): Frame {
    return ErrorFrame.make({ status: this.status, reason: this.reason, message: this.message, id })
  }
}
