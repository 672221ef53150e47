/**
 * The typed view of a frame: a tagged union that says what the frame asks
 * for. Every member carries the frame's command, headers and body; a
 * `Notify` or `Request` also carries its validated channel lists, its
 * `since` (the positions it asks for), its upstream target and its multipart
 * parts: what the server reads of a message, decoded once, and what
 * processors and filters read as `exchange.message`.
 *
 * - `Notify`: a frame without an `id` header (fire and forget: a command, a
 *   publish, a delivery).
 * - `Request`: a frame with an `id` header, which a reply or an error frame
 *   echoes (from the server, the reply to a request).
 * - `Failure`: an error frame (see {@link ErrorFrame}).
 *
 * `decode` is the fast typed path; `FromString` is the same as a Schema.
 * Encoding writes the command, headers and body: the derived fields are read
 * from the headers and never written.
 *
 * @since 0.1.0
 */
import { Effect, Option, Result, Schema, SchemaGetter, SchemaIssue } from "effect"
import * as Channel from "./Channel.ts"
import * as ErrorFrame from "./ErrorFrame.ts"
import * as Frame from "./Frame.ts"
import * as Positions from "./internal/wire/positions.ts"
import * as Protocol from "./internal/wire/protocol.ts"
import * as Multipart from "./Multipart.ts"
import { ProtocolError } from "./ProtocolError.ts"

/**
 * The names of the headers the protocol gives a meaning to.
 *
 * @since 0.1.0
 * @category constants
 */
export const Header: typeof Protocol.Header = Protocol.Header

/**
 * An `upstream:<METHOD> <URL>` header, split.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Upstream = Schema.Struct({ method: Schema.String, url: Schema.String })

/**
 * @since 0.1.0
 * @category models
 */
export interface Upstream extends Schema.Schema.Type<typeof Upstream> {}

/**
 * One part of a multipart body, as a Schema.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Part = Schema.Struct({ headers: Frame.Headers, body: Schema.String })

/**
 * One part of a multipart body: the type is `Multipart.Part`, the module
 * that cuts the parts, and {@link Part} is its Schema.
 *
 * @since 0.1.0
 * @category models
 */
export type Part = Multipart.Part

/**
 * A `since` header, read: `now`, or a position (see `History.Since`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const Since = Schema.Union([
  Schema.Literal("now"),
  Schema.Struct({ epoch: Schema.String, offset: Schema.Number })
])

const Channels = Schema.Array(Channel.ChannelId)

const fields = {
  command: Schema.String,
  headers: Frame.Headers,
  body: Schema.String,
  subscribe: Channels,
  publish: Channels,
  unsubscribe: Channels,
  since: Schema.optionalKey(Since),
  upstream: Schema.optionalKey(Upstream),
  multipart: Schema.optionalKey(Schema.Array(Part))
}

/**
 * A frame without an `id`: nothing answers it unless a processor chooses to.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Notify = Schema.TaggedStruct("Notify", fields)

/**
 * @since 0.1.0
 * @category models
 */
export interface Notify extends Schema.Schema.Type<typeof Notify> {}

/**
 * A frame with an `id`: its reply and any error frame carry the same `id`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Request = Schema.TaggedStruct("Request", { ...fields, id: Schema.String })

/**
 * @since 0.1.0
 * @category models
 */
export interface Request extends Schema.Schema.Type<typeof Request> {}

/**
 * An error frame: `LHTTP/1.0 error` with `status`, `reason` and maybe `id`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Failure = Schema.TaggedStruct("Failure", {
  status: Schema.Int,
  reason: Schema.String,
  message: Schema.String,
  id: Schema.optionalKey(Schema.String)
})

/**
 * @since 0.1.0
 * @category models
 */
export interface Failure extends Schema.Schema.Type<typeof Failure> {}

/**
 * The tagged union of every message.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Message = Schema.Union([Notify, Request, Failure])

/**
 * @since 0.1.0
 * @category models
 */
export type Message = Notify | Request | Failure

/**
 * Options of the typed decoding.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends Frame.ParseOptions, Channel.Options {}

const builtinNames: ReadonlySet<string> = new Set(Object.values(Header))

/**
 * Whether a header name is one the protocol gives a meaning to.
 *
 * @since 0.1.0
 * @category guards
 */
export const isBuiltinName = (name: string): boolean => builtinNames.has(name)

const noChannels: ReadonlyArray<Channel.ChannelId> = []

const channelsOf = (
  frame: Frame.Frame,
  name: string,
  options: Channel.Options | undefined
): Result.Result<ReadonlyArray<Channel.ChannelId>, ProtocolError> => {
  const value = frame.headers.get(name)
  return value === undefined || value === "" ? Result.succeed(noChannels) : Channel.parseList(value, options)
}

/**
 * Splits an `upstream` header value, `<METHOD> <URL>`: a method of letters,
 * one space, a URL without spaces. Whether the URL may be called is the
 * upstream filter's decision, not the codec's.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseUpstream = (value: string): Result.Result<Upstream, ProtocolError> => {
  const match = /^([A-Za-z]+) (\S+)$/.exec(value)
  return match === null
    ? Result.fail(
      new ProtocolError({ reason: "InvalidUpstream", message: "an upstream header is \"<METHOD> <URL>\"" })
    )
    : Result.succeed({ method: match[1]!, url: match[2]! })
}

/**
 * Classifies a parsed frame as an error frame (`Failure`), or else as a
 * `Notify` or `Request` (see {@link classify}).
 *
 * @since 0.1.0
 * @category parsing
 */
export const fromFrame = (frame: Frame.Frame, options?: Channel.Options): Result.Result<Message, ProtocolError> => {
  const error = ErrorFrame.fromFrame(frame)
  if (error === undefined) return classify(frame, options)
  const failure: Failure = error.id === undefined
    ? { _tag: "Failure", status: error.status, reason: error.reason, message: error.message }
    : { _tag: "Failure", status: error.status, reason: error.reason, message: error.message, id: error.id }
  return Result.succeed(failure)
}

/**
 * Classifies a parsed frame as a `Notify` or a `Request` whatever its
 * command, validating its channel lists, its upstream header and its
 * multipart offsets: what a server reads of every inbound message, once.
 * A `since` header that is neither `now` nor a position leaves `since`
 * out rather than failing: the server answers it `400 InvalidSince` when it
 * acts on the subscription.
 *
 * @since 0.1.0
 * @category parsing
 */
export const classify = (
  frame: Frame.Frame,
  options?: Channel.Options
): Result.Result<Notify | Request, ProtocolError> => {
  const subscribe = channelsOf(frame, Header.subscribe, options)
  if (Result.isFailure(subscribe)) return Result.fail(subscribe.failure)
  const publish = channelsOf(frame, Header.publish, options)
  if (Result.isFailure(publish)) return Result.fail(publish.failure)
  const unsubscribe = channelsOf(frame, Header.unsubscribe, options)
  if (Result.isFailure(unsubscribe)) return Result.fail(unsubscribe.failure)
  const message: {
    -readonly [K in keyof Request]?: K extends "_tag" ? "Notify" | "Request" : Request[K]
  } = {
    _tag: "Notify",
    command: frame.command,
    headers: frame.headers,
    body: frame.body,
    subscribe: subscribe.success,
    publish: publish.success,
    unsubscribe: unsubscribe.success
  }
  const since = frame.headers.get(Header.since)
  if (since !== undefined) {
    const parsed = Positions.parseSince(since)
    if (parsed !== undefined) message.since = parsed
  }
  const upstream = frame.headers.get(Header.upstream)
  if (upstream) {
    const parsed = parseUpstream(upstream)
    if (Result.isFailure(parsed)) return Result.fail(parsed.failure)
    message.upstream = parsed.success
  }
  const multipart = frame.headers.get(Header.multipart)
  if (multipart) {
    const parts = Multipart.split(frame.body, multipart)
    if (Result.isFailure(parts)) return Result.fail(parts.failure)
    message.multipart = parts.success
  }
  const id = frame.headers.get(Header.id)
  if (id) {
    message._tag = "Request"
    message.id = id
  }
  return Result.succeed(message as Notify | Request)
}

/**
 * The frame a message is written as.
 *
 * @since 0.1.0
 * @category encoding
 */
export const toFrame = (message: Message | typeof Message.Encoded): Frame.Frame =>
  message._tag === "Failure"
    ? ErrorFrame.make(message)
    : { command: message.command, headers: message.headers, body: message.body }

/**
 * Parses and classifies one frame: the typed path without Schema.
 *
 * @since 0.1.0
 * @category parsing
 */
export const decode = (input: string, options?: Options): Result.Result<Message, ProtocolError> => {
  const frame = Frame.parse(input, options)
  return Result.isFailure(frame) ? Result.fail(frame.failure) : fromFrame(frame.success, options)
}

/**
 * Writes a message as frame text.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encode = (message: Message): string => Frame.render(toFrame(message))

/**
 * The typed codec as a Schema: `string <-> Message`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const FromString: Schema.decodeTo<typeof Message, Schema.String> = Schema.String.pipe(
  Schema.decodeTo(Message, {
    decode: SchemaGetter.transformEffect((input: string) => {
      const message = decode(input)
      return Result.isSuccess(message)
        ? Effect.succeed(message.success)
        : Effect.fail(new SchemaIssue.InvalidValue({ message: message.failure.message }, Option.some(input)))
    }),
    encode: SchemaGetter.transformEffect((message: typeof Message.Encoded) => {
      const frame = Frame.validate(toFrame(message))
      return Result.isSuccess(frame)
        ? Effect.succeed(Frame.render(frame.success))
        : Effect.fail(new SchemaIssue.InvalidValue({ message: frame.failure.message }, Option.some(message)))
    })
  })
)
