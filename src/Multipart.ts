/**
 * Multipart messages: a `multipart:<o1> <o2> …` header cuts the body into
 * parts at byte offsets (UTF-8 bytes, offset 0 being the first byte of the
 * body). Part i is `body[o_i, o_i+1)`, the last one runs to the end, bytes
 * before the first offset are ignored. Each part is a header block ended by
 * `\r\n\r\n` (empty for a part without headers) and a body.
 *
 * @since 0.1.0
 */
import { Result } from "effect"
import { defaultMaxHeaders } from "./Frame.ts"
import * as Grammar from "./internal/wire/grammar.ts"
import { ProtocolError } from "./ProtocolError.ts"

/**
 * The name of the header that carries the offsets.
 *
 * @since 0.1.0
 * @category constants
 */
export const header = "multipart"

/**
 * One part of a multipart body.
 *
 * @since 0.1.0
 * @category models
 */
export interface Part {
  readonly headers: ReadonlyMap<string, string>
  readonly body: string
}

const invalid = (message: string) => Result.fail(new ProtocolError({ reason: "InvalidMultipart", message }))

/**
 * Parses the offsets of a `multipart` header: decimal integers separated by
 * single spaces, none decreasing.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseOffsets = (value: string): Result.Result<ReadonlyArray<number>, ProtocolError> => {
  const offsets: Array<number> = []
  for (const token of value.split(" ")) {
    if (!/^[0-9]{1,15}$/.test(token)) {
      return invalid(`offset ${JSON.stringify(token)} is not a decimal number (offsets are separated by single spaces)`)
    }
    const offset = Number(token)
    if (offsets.length > 0 && offset < offsets[offsets.length - 1]!) {
      return invalid("offsets must not decrease")
    }
    offsets.push(offset)
  }
  return Result.succeed(offsets)
}

const isAscii = (text: string): boolean => !/[^\x00-\x7f]/.test(text)
const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

// Cuts `body` at the byte offsets, or says why it cannot.
const cut = (body: string, offsets: ReadonlyArray<number>): Array<string> | string => {
  if (isAscii(body)) {
    const last = offsets[offsets.length - 1]!
    if (last > body.length) return `offset ${last} is past the end of the ${body.length}-byte body`
    return offsets.map((start, i) => body.slice(start, offsets[i + 1] ?? body.length))
  }
  const bytes = encoder.encode(body)
  const last = offsets[offsets.length - 1]!
  if (last > bytes.length) return `offset ${last} is past the end of the ${bytes.length}-byte body`
  const pieces: Array<string> = []
  for (let i = 0; i < offsets.length; i++) {
    try {
      pieces.push(decoder.decode(bytes.subarray(offsets[i], offsets[i + 1] ?? bytes.length)))
    } catch {
      return `part ${i} does not start or end on a UTF-8 character boundary`
    }
  }
  return pieces
}

/**
 * Cuts a body into parts at the given offsets (or the value of a `multipart`
 * header). Fails when an offset is not a number, decreases, runs past the
 * body or splits a UTF-8 character, or when a part has no header block.
 *
 * @since 0.1.0
 * @category parsing
 */
export const split = (
  body: string,
  offsets: string | ReadonlyArray<number>
): Result.Result<ReadonlyArray<Part>, ProtocolError> => {
  let positions: ReadonlyArray<number>
  if (typeof offsets === "string") {
    const parsed = parseOffsets(offsets)
    if (Result.isFailure(parsed)) return Result.fail(parsed.failure)
    positions = parsed.success
  } else {
    positions = offsets
  }
  if (positions.length === 0) return invalid("no offsets")
  const pieces = cut(body, positions)
  if (typeof pieces === "string") return invalid(pieces)
  const parts: Array<Part> = []
  for (let i = 0; i < pieces.length; i++) {
    const piece = pieces[i]!
    const end = piece.indexOf("\r\n\r\n")
    if (end === -1) return invalid(`part ${i} has no header block ended by CRLF CRLF`)
    const headers = new Map<string, string>()
    const read = Grammar.readHeaders(piece, 0, end, headers, defaultMaxHeaders)
    if (typeof read !== "number") return invalid(`part ${i}: ${read.message}`)
    parts.push({ headers, body: piece.slice(end + 4) })
  }
  return Result.succeed(parts)
}

/**
 * Joins parts into one body and the `multipart` header value that cuts it
 * back into the same parts.
 *
 * @since 0.1.0
 * @category encoding
 */
export const join = (parts: ReadonlyArray<Part>): { readonly body: string; readonly offsets: string } => {
  let body = ""
  let bytes = 0
  const offsets: Array<number> = []
  for (const part of parts) {
    let piece = ""
    for (const [name, value] of part.headers) piece += (piece === "" ? "" : "\r\n") + name + ":" + value
    piece += "\r\n\r\n" + part.body
    offsets.push(bytes)
    bytes += isAscii(piece) ? piece.length : encoder.encode(piece).length
    body += piece
  }
  return { body, offsets: offsets.join(" ") }
}
