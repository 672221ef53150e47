/**
 * The browser SDK's messages: `Message` (a command, ordered headers and a
 * body), `encode` and `decode` over the shared frame grammar
 * (internal/wire/), the error class of the SDK, and `fromEvent`.
 */
import { frameTextOf } from "../internal/wire/eventStream.ts"
import { parse, render } from "../internal/wire/frame.ts"
import { checkFrame, checkHeader, Problem } from "../internal/wire/grammar.ts"
import { Command, ErrorHeader, Header, version } from "../internal/wire/protocol.ts"

/** The start of every frame: `"LHTTP/1.0"`. */
export const PROTOCOL = version

/** Headers as given to the SDK: a record, a `Map` or name/value pairs; `null`/`undefined` values are left out. */
export type HeadersInput =
  | Readonly<Record<string, string | number | boolean | null | undefined>>
  | ReadonlyMap<string, string | number | boolean | null | undefined>
  | Iterable<readonly [string, string | number | boolean | null | undefined]>
  | null
  | undefined

/** One channel id, several as a space-separated string, or an array of ids. */
export type Channels = string | ReadonlyArray<string>

/** Anything with a command, headers and a body. */
export interface MessageInput {
  readonly command?: string | undefined
  readonly headers?: HeadersInput
  readonly body?: string | null | undefined
}

/**
 * An error frame from the server (`status` > 0: `status`, `reason` and `id` are its headers, the
 * message its body), or a client-side failure (`status` 0, `reason` `"Timeout"`, `"Closed"`,
 * `"QueueFull"` or `"DuplicateId"`). `decode` and `encode` throw it with the protocol's reasons
 * (`NotLhttp`, `UnsupportedVersion`, `MalformedStartLine`, `MalformedHeader`). Over SSE and
 * long-poll, a frame `POST /send` refused gives its HTTP status, with the reason its answer names
 * (`NotLhttp`, `InvalidUtf8`, ...) or `"TooLarge"` (413) or `"Refused"`; a failed HTTP request,
 * `"HttpError"` and its status (a send answered `5xx` once more after 3 tries again, too).
 */
export class LhttpError extends Error {
  override readonly name = "LhttpError"
  readonly status: number
  readonly reason: string
  readonly id: string | undefined
  constructor(status: number, reason: string, message?: string, id?: string) {
    super(message || reason)
    this.status = status
    this.reason = reason
    this.id = id
  }
}

const isIterable = (value: object): value is Iterable<readonly [unknown, unknown]> =>
  typeof (value as { readonly [Symbol.iterator]?: unknown })[Symbol.iterator] === "function"

/** The name/value pairs of headers as given. */
export const entriesOf = (headers: HeadersInput): Array<readonly [unknown, unknown]> =>
  headers == null ? [] : isIterable(headers) ? Array.from(headers) : Object.entries(headers)

/** Channels as a `subscribe`, `publish` or `unsubscribe` header says them. */
export const joinChannels = (channels: Channels): string =>
  typeof channels === "string" ? channels : Array.isArray(channels) ? channels.join(" ") : String(channels)

/** One LHTTP message: a command, ordered headers and a body. */
export class Message {
  command: string
  /** Insertion order; a repeated name keeps its first place and its last value. */
  headers: Map<string, string>
  body: string
  constructor(command?: string | null, headers?: HeadersInput, body?: string | null) {
    this.command = String(command ?? "")
    this.headers = new Map()
    for (const [name, value] of entriesOf(headers)) {
      if (value != null) this.headers.set(String(name), String(value))
    }
    this.body = body == null ? "" : String(body)
  }
  getHeader(name: string): string | undefined {
    return this.headers.get(name)
  }
  /** The frame's text (see {@link encode}). */
  encode(): string {
    return encode(this)
  }
  toString(): string {
    return encode(this)
  }
  static encode(message: MessageInput): string {
    return encode(message)
  }
  static decode(text: string): Message {
    return decode(text)
  }
}

/** Whether a message is an error frame (`error` with a `status`). */
export const isErrorFrame = (message: Message): boolean =>
  message.command === Command.error && message.headers.has(ErrorHeader.status)

/** The error an error frame stands for. */
export const errorOf = (message: Message): LhttpError =>
  new LhttpError(
    Number(message.headers.get(ErrorHeader.status)) || 0,
    message.headers.get(ErrorHeader.reason) ?? "Error",
    message.body,
    message.headers.get(Header.id)
  )

const noHeaders: ReadonlyMap<string, string> = new Map()

/**
 * `LHTTP/1.0 <command>\r\n` + `name:value\r\n` per header + `\r\n` + body. Throws an
 * {@link LhttpError} when the frame could not be read back (CR/LF in the command, a name or a
 * value; an empty name or one holding `:`).
 */
export function encode(message: MessageInput): string {
  const command = String(message.command ?? "")
  const body = message.body == null ? "" : String(message.body)
  const bad = checkFrame({ command, headers: noHeaders, body })
  if (bad !== undefined) throw new LhttpError(400, bad.reason, bad.message)
  const headers = new Message("", message.headers).headers
  for (const [name, value] of headers) {
    const problem = checkHeader(name, value)
    if (problem !== undefined) {
      throw new LhttpError(
        400,
        problem.reason,
        `the header ${JSON.stringify(name)} cannot be written: ${problem.message}`
      )
    }
  }
  return render({ command, headers, body })
}

/**
 * Reads a frame (docs/protocol.md §2): the command after `LHTTP/1.0 `, headers split at their
 * first `:` up to the first empty line, then the body verbatim. Throws an {@link LhttpError}.
 */
export function decode(text: string): Message {
  const frame = parse(String(text))
  if (frame instanceof Problem) {
    throw new LhttpError(frame.reason === "UnsupportedVersion" ? 505 : 400, frame.reason, frame.message)
  }
  return new Message(frame.command, frame.headers, frame.body)
}

/** The message a connection received (text, or UTF-8 bytes), or undefined when it is no frame. */
export const received = (data: unknown): Message | undefined => {
  try {
    return decode(typeof data === "string" ? data : new TextDecoder().decode(data as ArrayBuffer))
  } catch {
    return undefined
  }
}

/**
 * A frame's text from the data of a Server-Sent Event of `GET /sse` (its `data:` lines joined with
 * `\n`, as `EventSource` gives `event.data`): the head, up to the first empty line, gets its CRLF
 * line breaks back; the body is kept as it is, so a CRLF or CR in it arrives as LF
 * (docs/transports.md). `decode(fromEvent(event.data))` reads it.
 */
export function fromEvent(data: string): string {
  return frameTextOf(String(data))
}
