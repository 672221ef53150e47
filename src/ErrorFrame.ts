/**
 * The one error frame of the protocol:
 *
 * ```text
 * LHTTP/1.0 error\r\n
 * status:<code>\r\n
 * reason:<Reason>\r\n
 * id:<request id>\r\n      (only when the request carried an `id` header)
 * \r\n
 * <human-readable message>
 * ```
 *
 * @since 0.1.0
 */
import type { Frame } from "./internal/wire/frameModel.ts"
import { Command, ErrorHeader, Header } from "./internal/wire/protocol.ts"

/**
 * The command of an error frame.
 *
 * @since 0.1.0
 * @category constants
 */
export const command: typeof Command.error = Command.error

/**
 * What an error frame says.
 *
 * @since 0.1.0
 * @category models
 */
export interface ErrorInfo {
  /** An HTTP-like status: 4xx for the client's fault, 5xx for the server's. */
  readonly status: number
  /** A machine-readable reason, e.g. `MalformedHeader`. */
  readonly reason: string
  /** A human-readable explanation; never the contents of the message. */
  readonly message: string
  /** The `id` header of the request this answers, if it had one. */
  readonly id?: string | undefined
}

/**
 * Builds an error frame.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (info: ErrorInfo): Frame => {
  const headers = new Map<string, string>([
    [ErrorHeader.status, String(info.status)],
    [ErrorHeader.reason, sanitize(info.reason)]
  ])
  if (info.id !== undefined) headers.set(Header.id, sanitize(info.id))
  return { command, headers, body: info.message }
}

/**
 * Reads an error frame back, or `undefined` when the frame is not one: its
 * command must be `error`, its `status` a three-digit code and its `reason`
 * non-empty.
 *
 * @since 0.1.0
 * @category parsing
 */
export const fromFrame = (frame: Frame): ErrorInfo | undefined => {
  if (frame.command !== command) return undefined
  const status = frame.headers.get(ErrorHeader.status)
  const reason = frame.headers.get(ErrorHeader.reason)
  if (status === undefined || !/^[1-5][0-9][0-9]$/.test(status) || !reason) return undefined
  return { status: Number(status), reason, message: frame.body, id: frame.headers.get(Header.id) }
}

/**
 * The mark of an error that becomes an error frame.
 *
 * @since 0.1.0
 * @category Respondable
 */
export const TypeId: unique symbol = Symbol.for("effect-lhttp/ErrorFrame/Respondable")

/**
 * @since 0.1.0
 * @category Respondable
 */
export type TypeId = typeof TypeId

/**
 * An error that the server answers with an error frame: what every hook of a
 * processor or filter may fail with. `ProtocolError`, `Rejection` and
 * `UpstreamError` are Respondable; an error class of your own becomes one by
 * implementing this interface (or map your errors to a `Rejection`). Anything
 * else, a defect included, is logged and answered `500 InternalError`.
 *
 * @since 0.1.0
 * @category Respondable
 */
export interface Respondable {
  readonly [TypeId]: TypeId
  /** The error frame for this error, echoing the request's `id` when given. */
  readonly toFrame: (id?: string) => Frame
}

/**
 * Whether a value is a {@link Respondable} error.
 *
 * @since 0.1.0
 * @category Respondable
 */
export const isRespondable = (u: unknown): u is Respondable => typeof u === "object" && u !== null && TypeId in u

// Header values cannot hold line breaks; an id echoed from a request never does,
// but a reason from user code might.
const sanitize = (value: string): string => value.replace(/[\r\n]+/g, " ")
