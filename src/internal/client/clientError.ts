/**
 * The error of the Effect client (public as `LhttpClient.ClientError`, which
 * documents its reasons), here so that the client's parts can fail with it,
 * and the constructors they share.
 */
import { Schema } from "effect"
import type * as Message from "../../Message.ts"
import type { SendError } from "./transport.ts"

/** What went wrong, as the client's reason says. */
export class ClientError extends Schema.TaggedError<ClientError>()("ClientError", {
  /**
   * `NotConnected`: a send while the connection is down (and the send buffer,
   * if any, is full); `Closed`: the client was closed, or the connection a
   * request went out on closed before its answer; `Timeout`: a request
   * got no reply in time; `Rejected`: the server answered with an error frame;
   * `InvalidFrame`: what was to be sent would not read back; `TooLarge`: the
   * server refused a frame over its `maxMessageBytes` (the HTTP transports:
   * `413`, the connection stays; a WebSocket server closes the connection
   * with 1009 instead); `InvalidBody`: `call`'s body did not encode with the
   * processor's `body` Schema (nothing was sent); `InvalidReply`: the answer
   * to a `call` did not decode (its reply with the `reply` Schema, or a
   * declared error with the `error` Schema).
   */
  reason: Schema.Literals([
    "NotConnected",
    "Closed",
    "Timeout",
    "Rejected",
    "InvalidFrame",
    "TooLarge",
    "InvalidBody",
    "InvalidReply"
  ]),
  message: Schema.String,
  /**
   * The error frame's status, for `Rejected` (over HTTP also the `4xx` of a
   * frame `POST /send` refused); for `NotConnected`, the `5xx` a send got
   * after 3 tries again (docs/clients.md, "Rules both clients follow").
   */
  status: Schema.optional(Schema.Int),
  /** The error frame's reason, for `Rejected` (`TooManyHeaders`, `NotLhttp`, …). */
  serverReason: Schema.optional(Schema.String)
}) {}

/** What was to be sent would not read back. */
export const invalidFrame = (message: string): ClientError => new ClientError({ reason: "InvalidFrame", message })

/** The client is closed. */
export const closed = (): ClientError => new ClientError({ reason: "Closed", message: "the client is closed" })

/** A send failed, as the transport says. */
export const fromSend = (error: SendError): ClientError =>
  new ClientError({
    reason: error.reason,
    message: error.message,
    ...(error.status === undefined ? {} : { status: error.status }),
    ...(error.serverReason === undefined ? {} : { serverReason: error.serverReason })
  })

/** The server answered with an error frame. */
export const rejected = (failure: Message.Failure): ClientError =>
  new ClientError({
    reason: "Rejected",
    message: failure.message,
    status: failure.status,
    serverReason: failure.reason
  })

/** The answer to a `call` did not decode. */
export const invalidReply = (message: string): ClientError => new ClientError({ reason: "InvalidReply", message })
