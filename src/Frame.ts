/**
 * An LHTTP/1.0 frame: a command, ordered headers and a body.
 *
 * `parse` is the allocation-light fast path the server runs on every inbound
 * frame; `render` is its inverse. `FromString` is the same codec as a Schema
 * (`string <-> Frame`) for `Schema.decode…` / `Schema.encode…`.
 *
 * @since 0.1.0
 */
import { Effect, Option, Result, Schema, SchemaGetter, SchemaIssue } from "effect"
import * as WireFrame from "./internal/wire/frame.ts"
import * as Grammar from "./internal/wire/grammar.ts"
import * as Protocol from "./internal/wire/protocol.ts"
import { ProtocolError } from "./ProtocolError.ts"

const isHeaders = (u: unknown): u is ReadonlyMap<string, string> => {
  if (!(u instanceof Map)) return false
  for (const [name, value] of u) {
    if (typeof name !== "string" || typeof value !== "string") return false
  }
  return true
}

/**
 * Header names and values in insertion order, as a `ReadonlyMap`. Names are
 * case-sensitive; a name given twice keeps its first position and its last
 * value. The schema checks a map in place rather than copying it: frames are
 * decoded on the hot path.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Headers = Schema.declare(isHeaders, {
  title: "Headers",
  description: "LHTTP header names and values, in insertion order"
})

/**
 * The decoded shape of a frame.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Frame = Schema.Struct({
  command: Schema.String,
  headers: Headers,
  body: Schema.String
})

/**
 * A frame: `LHTTP/1.0 <command>\r\n`, `name:value\r\n` headers, a blank line,
 * the body.
 *
 * @since 0.1.0
 * @category models
 */
export interface Frame extends Schema.Schema.Type<typeof Frame> {}

/**
 * Options of the parser.
 *
 * @since 0.1.0
 * @category models
 */
export interface ParseOptions {
  /** Most distinct header names a frame may carry (default {@link defaultMaxHeaders}). */
  readonly maxHeaders?: number | undefined
}

/**
 * The default cap on distinct header names per frame.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultMaxHeaders = 64

/**
 * The protocol name and version every frame starts with.
 *
 * @since 0.1.0
 * @category constants
 */
export const protocol: typeof Protocol.version = Protocol.version

const emptyHeaders: ReadonlyMap<string, string> = new Map()

/**
 * Builds a frame. Headers may be a map or a record; a record's keys keep the
 * order JavaScript gives them.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  command: string,
  headers: ReadonlyMap<string, string> | Readonly<Record<string, string>> = emptyHeaders,
  body = ""
): Frame => ({
  command,
  headers: headers instanceof Map ? headers : new Map(Object.entries(headers)),
  body
})

/**
 * Parses one frame. Never throws: anything outside the grammar of
 * docs/protocol.md is a {@link ProtocolError}.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parse = (input: string, options?: ParseOptions): Result.Result<Frame, ProtocolError> => {
  const result = Grammar.parseFrame(input, options?.maxHeaders ?? defaultMaxHeaders)
  return result instanceof Grammar.Problem ? Result.fail(toError(result)) : Result.succeed(result)
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

/**
 * The text of bytes that must be valid UTF-8 (a binary WebSocket message, an
 * HTTP body): an `InvalidUtf8` error otherwise, never U+FFFD in place of the
 * bad bytes.
 *
 * @since 0.1.0
 * @category parsing
 */
export const decodeUtf8 = (input: Uint8Array | ArrayBuffer): Result.Result<string, ProtocolError> => {
  try {
    return Result.succeed(utf8.decode(input))
  } catch {
    return Result.fail(new ProtocolError({ reason: "InvalidUtf8", message: "the frame is not valid UTF-8" }))
  }
}

/**
 * Parses one frame from bytes (a binary WebSocket message). The bytes must be
 * valid UTF-8.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseBytes = (input: Uint8Array, options?: ParseOptions): Result.Result<Frame, ProtocolError> => {
  const text = decodeUtf8(input)
  return Result.isFailure(text) ? Result.fail(text.failure) : parse(text.success, options)
}

/**
 * Writes a frame as text: `name:value` with no space, headers in insertion
 * order. It trusts its input: use {@link validate} on frames built from
 * untrusted parts.
 *
 * @since 0.1.0
 * @category encoding
 */
export const render: (frame: Frame) => string = WireFrame.render

/**
 * Checks that a frame can be rendered and read back unchanged: no line break
 * in the command, header names non-empty without `:` or line breaks, header
 * values without line breaks.
 *
 * @since 0.1.0
 * @category validation
 */
export const validate = (frame: Frame): Result.Result<Frame, ProtocolError> => {
  const problem = Grammar.checkFrame(frame)
  return problem === undefined ? Result.succeed(frame) : Result.fail(toError(problem))
}

const toError = (problem: Grammar.Problem): ProtocolError =>
  new ProtocolError({ reason: problem.reason, message: problem.message })

/**
 * The codec as a Schema: decodes a string into a {@link Frame} and encodes a
 * frame back into its text.
 *
 * @since 0.1.0
 * @category schemas
 */
export const FromString: Schema.decodeTo<typeof Frame, Schema.String> = Schema.String.pipe(
  Schema.decodeTo(Frame, {
    decode: SchemaGetter.transformEffect((input: string) => {
      const result = Grammar.parseFrame(input, defaultMaxHeaders)
      return result instanceof Grammar.Problem
        ? Effect.fail(new SchemaIssue.InvalidValue({ message: result.message }, Option.some(input)))
        : Effect.succeed(result)
    }),
    encode: SchemaGetter.transformEffect((frame: Frame) => {
      const problem = Grammar.checkFrame(frame)
      return problem === undefined
        ? Effect.succeed(render(frame))
        : Effect.fail(new SchemaIssue.InvalidValue({ message: problem.message }, Option.some(frame)))
    })
  })
)
