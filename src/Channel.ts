/**
 * Channel ids and the space-separated channel lists of the `subscribe`,
 * `publish` and `unsubscribe` headers.
 *
 * A channel id becomes a bus subject (a NATS subject in a cluster), so it is
 * validated before it reaches any bus: no client can name a wildcard, a
 * system subject or a subject that would break the bus for others.
 *
 * @since 0.1.0
 */
import { Result, Schema } from "effect"
import { ProtocolError } from "./ProtocolError.ts"

/**
 * A channel id that passed {@link validate}: what the Hub and every Bus take,
 * so that an id is validated once, where it enters, and never again.
 *
 * @since 0.1.0
 * @category models
 */
export type ChannelId = typeof ChannelId.Type

/**
 * The default cap on the length of a channel id, in UTF-16 code units.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultMaxLength = 255

/**
 * Options of channel validation.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The longest channel id allowed (default {@link defaultMaxLength}). */
  readonly maxLength?: number | undefined
}

// whitespace, control characters and the NATS wildcards
const forbidden = /[\s\x00-\x1f\x7f*>]/
// the whole rule in one test, for the common case of a valid id
const valid = /^(?![$]|_INBOX)[^\s\x00-\x1f\x7f*>.]+(?:\.[^\s\x00-\x1f\x7f*>.]+)*$/

const diagnose = (channel: string, maxLength: number): string => {
  if (channel.length === 0) return "is empty (a doubled, leading or trailing space in the list?)"
  if (channel.length > maxLength) return `is longer than ${maxLength} characters`
  if (forbidden.test(channel)) return "holds whitespace, a control character, \"*\" or \">\""
  if (channel.startsWith("$")) return "starts with \"$\", which is reserved"
  if (channel.startsWith("_INBOX")) return "starts with \"_INBOX\", which is reserved"
  return "has an empty dot-separated token"
}

// The reason `channel` is invalid, or undefined when it is valid.
const check = (channel: string, maxLength: number): ProtocolError | undefined => {
  if (channel.length <= maxLength && valid.test(channel)) return undefined
  const shown = channel.length > 64 ? JSON.stringify(channel.slice(0, 64)) + "…" : JSON.stringify(channel)
  return new ProtocolError({ reason: "InvalidChannel", message: `channel ${shown} ${diagnose(channel, maxLength)}` })
}

/**
 * Validates one channel id. Rules: non-empty; at most `maxLength` long; no
 * whitespace or control characters; no `*` or `>`; dot-separated tokens that
 * are all non-empty (no leading, trailing or doubled `.`); no `$` prefix
 * (system subjects) and no `_INBOX` prefix (reply subjects).
 *
 * @since 0.1.0
 * @category validation
 */
export const validate = (channel: string, options?: Options): Result.Result<ChannelId, ProtocolError> => {
  const error = check(channel, options?.maxLength ?? defaultMaxLength)
  return error === undefined ? Result.succeed(channel as ChannelId) : Result.fail(error)
}

/**
 * Validates channel ids given one by one (repeated ids kept once, in
 * first-seen order); fails on the first invalid one.
 *
 * @since 0.1.0
 * @category validation
 */
export const validateAll = (
  channels: Iterable<string>,
  options?: Options
): Result.Result<ReadonlyArray<ChannelId>, ProtocolError> => {
  const maxLength = options?.maxLength ?? defaultMaxLength
  const list = new Set<string>(channels)
  for (const channel of list) {
    const error = check(channel, maxLength)
    if (error !== undefined) return Result.fail(error)
  }
  return Result.succeed(Array.from(list) as Array<ChannelId>)
}

/**
 * Parses a channel list: ids separated by single spaces, each validated.
 * Repeated ids are kept once, in first-seen order. The whole list fails on
 * its first invalid id.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseList = (
  value: string,
  options?: Options
): Result.Result<ReadonlyArray<ChannelId>, ProtocolError> => {
  if (value.indexOf(" ") === -1) {
    const error = check(value, options?.maxLength ?? defaultMaxLength)
    return error === undefined ? Result.succeed([value as ChannelId]) : Result.fail(error)
  }
  return validateAll(value.split(" "), options)
}

/**
 * The id of a channel for the server's own use, between its nodes (presence
 * queries, the connections of a session): `$` before a `name` that is a valid
 * id. No client can name it, as {@link validate} refuses the `$` prefix.
 *
 * @since 0.1.0
 * @category constructors
 */
export const internal = (name: string): Result.Result<ChannelId, ProtocolError> => {
  const error = check(name, defaultMaxLength)
  return error === undefined ? Result.succeed(`$${name}` as ChannelId) : Result.fail(error)
}

/**
 * A channel id as a Schema: a string that passes {@link validate}, branded.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ChannelId = Schema.String.check(
  Schema.makeFilter((channel: string) => check(channel, defaultMaxLength)?.message)
).pipe(Schema.brand("effect-lhttp/ChannelId"))
