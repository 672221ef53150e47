/**
 * What the URL of a new SSE or long-poll connection subscribes to:
 * `subscribe=<channels>` and `since=<channel>:<position>` (or `:now`), read
 * and checked once, and the subscribe frames they stand for, which go
 * through the pipeline as a client's would (docs/transports.md).
 */
import { Result } from "effect"
import * as Channel from "../../Channel.ts"
import * as Frame from "../../Frame.ts"
import * as History from "../../History.ts"
import { Command, Header, HttpQuery, sinceNow } from "../wire/protocol.ts"
import type { Refusal } from "./admission.ts"

/** Options of what the URL of a new SSE or long-poll connection subscribes to. */
export interface Options {
  /**
   * Channels one SSE or long-poll URL may name, `subscribe` and `since`
   * together (default 32); past it, 400 `TooManyChannels`.
   */
  readonly maxUrlChannels?: number | undefined
  /**
   * Bytes of history the `since` positions of one SSE or long-poll URL may
   * recover (default 256 KiB); past it, the rest is not sent and those
   * channels' `position` frames say `recovered:no` with `reason:RecoveryLimit`.
   */
  readonly urlRecoveryBytes?: number | undefined
}

/** The defaults of {@link Options}. */
export const defaults = {
  maxUrlChannels: 32,
  urlRecoveryBytes: 256 * 1024
} as const

/** What a URL subscribes to: its `subscribe` channels, and the channels it recovers since a position. */
export interface Subscriptions {
  readonly channels: ReadonlyArray<Channel.ChannelId>
  readonly since: ReadonlyArray<{ readonly channel: Channel.ChannelId; readonly position: string }>
}

/** A URL that subscribes to nothing. */
export const none: Subscriptions = { channels: [], since: [] }

/** The subscribe list of a query: channel ids separated by spaces or commas. */
const channelsOf = (url: URL) => {
  const value = (url.searchParams.get(HttpQuery.subscribe) ?? "").trim()
  if (value === "") return Channel.validateAll([])
  return Channel.validateAll(value.split(/[ ,]+/))
}

/**
 * The subscriptions of a query: `subscribe` (see {@link channelsOf}) and each
 * `since=<channel>:<epoch>:<offset>`, which subscribes to that history channel
 * since that position, or `since=<channel>:now`, which subscribes to it with
 * positions from now on (docs/history-and-presence.md). Past `maxChannels`
 * channels, or anything invalid: a 400 with the reason.
 */
export const parse = (url: URL, maxChannels: number): Result.Result<Subscriptions, Refusal> => {
  const refused = (reason: string, message: string) => Result.fail({ status: 400, body: `${reason}: ${message}\n` })
  const tooMany = () =>
    refused(
      "TooManyChannels",
      `one URL names at most ${maxChannels} channels (subscribe and since together): ` +
        "subscribe to more with POST /send, or over several requests"
    )
  const values = url.searchParams.getAll(HttpQuery.since)
  if (values.length > maxChannels) return tooMany()
  const channels = channelsOf(url)
  if (channels._tag === "Failure") return refused(channels.failure.reason, channels.failure.message)
  if (channels.success.length + values.length > maxChannels) return tooMany()
  const since: Array<Subscriptions["since"][number]> = []
  for (const value of values) {
    const match = /^(.+):(now|[^:]+:[^:]+)$/.exec(value)
    if (match === null || History.parseSince(match[2]!) === undefined) {
      return refused("InvalidSince", "since is <channel>:now or <channel>:<epoch>:<offset>")
    }
    const channel = Channel.validate(match[1]!)
    if (channel._tag === "Failure") return refused(channel.failure.reason, channel.failure.message)
    // a channel named twice: its last position
    const twice = since.findIndex((entry) => entry.channel === channel.success)
    if (twice !== -1) since.splice(twice, 1)
    since.push({ channel: channel.success, position: match[2]! })
  }
  return Result.succeed({ channels: channels.success, since })
}

const subscribeFrame = (channels: ReadonlyArray<string>, since?: string) =>
  Frame.render(
    Frame.make(
      Command.subscribe,
      since === undefined
        ? { [Header.subscribe]: channels.join(" ") }
        : { [Header.subscribe]: channels.join(" "), [Header.since]: since }
    )
  )

/**
 * The frames that subscribe a URL's channels: the plain ones in one, those
 * `since:now` in another, one per channel recovered since a position.
 */
export const framesOf = (subscriptions: Subscriptions): Array<string> => {
  const recovering = new Set(subscriptions.since.map((entry) => entry.channel))
  const plain = subscriptions.channels.filter((channel) => !recovering.has(channel))
  const frames: Array<string> = []
  if (plain.length > 0) frames.push(subscribeFrame(plain))
  const now = subscriptions.since.filter((entry) => entry.position === sinceNow).map((entry) => entry.channel)
  if (now.length > 0) frames.push(subscribeFrame(now, sinceNow))
  for (const { channel, position } of subscriptions.since) {
    if (position !== sinceNow) frames.push(subscribeFrame([channel], position))
  }
  return frames
}

/** The channels a URL recovers since a position (not `now`). */
export const recovered = (subscriptions: Subscriptions): Array<Channel.ChannelId> =>
  subscriptions.since.filter((entry) => entry.position !== sinceNow).map((entry) => entry.channel)

/**
 * Why a URL is refused when the server has a `messageRate`: it needs more
 * messages than the rate's burst takes at once (400, rather than closing its
 * own connection with 1008); undefined when it fits.
 */
export const burstRefusal = (subscriptions: Subscriptions, burst: number | undefined): Refusal | undefined =>
  burst !== undefined && framesOf(subscriptions).length > burst
    ? {
      status: 400,
      body: `TooManyChannels: this server takes ${burst} messages at once from a connection: ` +
        "recover fewer channels since a position in one URL, or subscribe to the rest with POST /send\n"
    }
    : undefined
