/**
 * Upstream: the `upstream:<METHOD> <URL>` header also sends a message to an
 * HTTP backend, through the Effect `HttpClient` service, safely:
 *
 * - off until an allowlist of target URL prefixes is configured; a target
 *   outside it, another scheme or port on an allowed host, userinfo, or a
 *   host that resolves to a link-local, unspecified or multicast address is
 *   refused before any request is made; redirects are followed only to
 *   allowed targets;
 * - a timeout, a cap on the response size read, the methods allowed;
 * - only allowed headers are forwarded (never hop-by-hop or identity headers
 *   chosen by the client); the connection id and the command are added, and
 *   optionally an HMAC-SHA256 signature so the backend can trust the request;
 * - every failure is an `UpstreamError` with a reason, answered with an error
 *   frame that echoes the message's `id`;
 * - opt-in reply mode (`upstream-reply` header): the backend's response comes
 *   back as an LHTTP frame.
 *
 * `GET` sends no body; any other method sends the LHTTP body. The call runs
 * after pub/sub, so a `publish` in the same message has already gone out.
 *
 * This module is platform-neutral: the service, its errors and the wire
 * names. The implementation that makes the calls is `NodeUpstream` (Node).
 *
 * @since 0.1.0
 */
import { Context, type Effect, Schema } from "effect"
import * as ErrorFrame from "./ErrorFrame.ts"
import type { Frame } from "./Frame.ts"
import * as Protocol from "./internal/wire/protocol.ts"

/**
 * Why an upstream call failed.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Reason = Schema.Literals([
  "NotAllowed",
  "InvalidTarget",
  "MethodNotAllowed",
  "Transport",
  "Timeout",
  "Status",
  "TooLarge",
  "TooMany"
])

/**
 * @since 0.1.0
 * @category models
 */
export type Reason = typeof Reason.Type

const statusOf: { readonly [R in Reason]: number } = {
  NotAllowed: 403,
  InvalidTarget: 400,
  MethodNotAllowed: 405,
  Transport: 502,
  Timeout: 504,
  Status: 502,
  TooLarge: 502,
  TooMany: 429
}

/**
 * An upstream call that failed or was refused. Its error frame has the
 * reason `Upstream<Reason>`, e.g. `UpstreamTimeout`.
 *
 * @since 0.1.0
 * @category errors
 */
export class UpstreamError extends Schema.TaggedError<UpstreamError>()("UpstreamError", {
  reason: Reason,
  message: Schema.String
}) implements ErrorFrame.Respondable {
  /** The status of the error frame. */
  get status(): number {
    return statusOf[this.reason]
  }

  /** Marks the error as one that becomes an error frame. */
  get [ErrorFrame.TypeId](): ErrorFrame.TypeId {
    return ErrorFrame.TypeId
  }

  /** The error frame the client receives, echoing the message's `id` when given. */
  toFrame(id?: string): Frame {
    return ErrorFrame.make({ status: this.status, reason: `Upstream${this.reason}`, message: this.message, id })
  }
}

/**
 * What one upstream call sends.
 *
 * @since 0.1.0
 * @category models
 */
export interface Call {
  /** The method, as the client wrote it (methods are case-sensitive). */
  readonly method: string
  /** The target URL, as the client wrote it: hostile input, checked before use. */
  readonly url: string
  /** The LHTTP body, sent as the request body unless the method is `GET`. */
  readonly body: string
  /** The message's headers; only the allowed ones are forwarded. */
  readonly headers: ReadonlyMap<string, string>
  /** The id of the client's connection. */
  readonly connectionId: string
  /** The message's command (or the one a processor set). */
  readonly command: string
}

/**
 * What a backend answered.
 *
 * @since 0.1.0
 * @category models
 */
export interface Response {
  /** The backend's status (2xx). */
  readonly status: number
  /** The backend's `content-type`, if any. */
  readonly contentType: string | undefined
  /** The response body, UTF-8 decoded. */
  readonly body: string
}

/**
 * The upstream service: the server finds it in context; without it an
 * `upstream` header is answered `501 UpstreamNotConfigured`.
 *
 * @since 0.1.0
 * @category services
 */
export class Upstream extends Context.Service<Upstream, {
  /** Calls one connection may have queued or running; more are refused with `TooMany`. */
  readonly maxInFlight: number
  /**
   * Makes one call: checks, sends, follows allowed redirects, reads the
   * response. It fails only with an `UpstreamError`, never with a defect.
   */
  readonly call: (call: Call) => Effect.Effect<Response, UpstreamError>
}>()("effect-lhttp/Upstream") {}

/**
 * The header that asks for the backend's response to come back as a frame.
 *
 * @since 0.1.0
 * @category constants
 */
export const replyHeader: typeof Protocol.upstreamReplyHeader = Protocol.upstreamReplyHeader

/**
 * The header of a reply frame that carries the backend's status.
 *
 * @since 0.1.0
 * @category constants
 */
export const statusHeader = "upstream-status"

/**
 * The header of a reply frame that carries the backend's `content-type`,
 * when it sent one.
 *
 * @since 0.1.0
 * @category constants
 */
export const contentTypeHeader = "content-type"

/**
 * The headers the server adds to every upstream request.
 *
 * @since 0.1.0
 * @category constants
 */
export const AddedHeader = {
  connection: "x-lhttp-connection",
  command: "x-lhttp-command",
  timestamp: "x-lhttp-timestamp",
  signature: "x-lhttp-signature"
} as const
