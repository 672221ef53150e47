/**
 * Channel history: channels whose names start with a configured prefix keep
 * their last messages for a while, each at a position (an `offset` that grows
 * along the channel, and the `epoch` of the history it belongs to), so that a
 * client that was away can subscribe with `since:<epoch>:<offset>` and get
 * what it missed, then the live stream, with no gap and no duplicate. The
 * store is a service: in memory here (one process), JetStream in
 * `effect-lhttp/NatsHistory` (a cluster, across restarts). Channels without a
 * policy have no history and cost nothing more. See docs/history-and-presence.md.
 *
 * @since 0.1.0
 */
import { Context, Data, Duration, Effect, Layer } from "effect"
import type { ChannelId } from "./Channel.ts"
import * as Immediate from "./internal/hub/immediate.ts"
import { randomId } from "./internal/wire/ids.ts"
import * as Positions from "./internal/wire/positions.ts"
import * as Protocol from "./internal/wire/protocol.ts"

/**
 * Which channels keep history, and how much: channels whose name starts with
 * `prefix` keep their last `size` messages, each for at most `ttl`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Policy {
  readonly prefix: string
  readonly size: number
  readonly ttl: Duration.Duration
}

/**
 * The defaults of a policy: the last 100 messages, for 10 minutes.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = { size: 100, ttl: Duration.minutes(10) } as const

/**
 * A place in a channel's history: the epoch (an id of the history itself,
 * which changes when it is lost or reset) and the offset of a message.
 * Offset 0 is the position before the first message.
 *
 * @since 0.1.0
 * @category models
 */
export interface Position {
  readonly epoch: string
  readonly offset: number
}

/**
 * Why a history could not give every message after a position: `Trimmed`
 * (some were dropped by the size or the time limit), `EpochChanged` (the
 * history was lost or reset since), `UnknownPosition` (an offset the history
 * never reached), `NoHistory` (the channel keeps none).
 *
 * @since 0.1.0
 * @category models
 */
export type Unrecoverable = "Trimmed" | "EpochChanged" | "UnknownPosition" | "NoHistory" | "RecoveryLimit"

/**
 * A message of a channel's history: the text as it was published, and its
 * position.
 *
 * @since 0.1.0
 * @category models
 */
export interface Stored {
  readonly text: string
  readonly position: Position
}

/**
 * The answer to a recovery: the messages after the position asked for, in
 * order, and the channel's current position, which is that of the last
 * message when there are any. `reason` is there when the messages are not
 * everything that was published on the channel after that position.
 *
 * @since 0.1.0
 * @category models
 */
export interface Recovery {
  readonly messages: ReadonlyArray<Stored>
  readonly position: Position
  readonly reason?: Unrecoverable | undefined
}

/**
 * What a subscription asks of a history channel: positions from now on
 * (`"now"`: the current position, nothing recovered), or the messages
 * published after a position, then positions.
 *
 * @since 0.1.0
 * @category models
 */
export type Since = Position | "now"

/**
 * The headers of positions: on frames of history channels (`channel`,
 * `offset`, `epoch`) and on the `position` frame that ends a subscription's
 * recovery (`recovered`, `reason` as well).
 *
 * @since 0.1.0
 * @category constants
 */
export const Header: typeof Protocol.PositionHeader = Protocol.PositionHeader

/**
 * The command of the frame that follows what a subscription to a history
 * channel recovered, with the channel's position.
 *
 * @since 0.1.0
 * @category constants
 */
export const positionCommand: typeof Protocol.Command.position = Protocol.Command.position

/**
 * A history store operation that failed.
 *
 * @since 0.1.0
 * @category errors
 */
export class HistoryError extends Data.TaggedError("HistoryError")<{
  readonly reason: "Unavailable" | "AppendFailed" | "ReadFailed" | "InvalidPolicy"
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * The history service: the policies, and the store.
 *
 * @since 0.1.0
 * @category services
 */
export class History extends Context.Service<History, {
  /** The policy of a channel, or undefined when it keeps no history (here, now). */
  readonly policyOf: (channel: ChannelId) => Policy | undefined
  /**
   * How messages get their positions. `"publisher"`: the Hub appends each
   * message published on this process with {@link append} and hands the
   * position to the bus beside the text (the memory store, with a bus that
   * carries it: one process). `"bus"`: the bus itself numbers what it
   * carries, whoever published it (the JetStream store, whose stream records
   * the bus's own subjects), and `append` is not used. `"none"`: no channel
   * keeps history.
   */
  readonly numbering: "publisher" | "bus" | "none"
  /**
   * Appends a message to a channel's history and answers its position.
   * Appends to one channel get increasing offsets in the order they are
   * called. Only for `numbering: "publisher"`.
   */
  readonly append?:
    | ((channel: ChannelId, policy: Policy, text: string) => Effect.Effect<Position, HistoryError>)
    | undefined
  /**
   * The messages of a channel after `since` (none when `since` is undefined:
   * only the current position), as far as the history still has them. A
   * store may stop reading once the messages pass `maxBytes` and answer
   * none of them, with the reason `RecoveryLimit` (the hub answers so
   * anyway: the bound only spares the reading). `reached`: the last position
   * the hub delivered live on the channel, which the recovery must reach at
   * least (a store whose replicas may lag behind reads past a replica that
   * has not got there yet).
   */
  readonly recover: (
    channel: ChannelId,
    policy: Policy,
    since: Position | undefined,
    maxBytes?: number,
    reached?: Position
  ) => Effect.Effect<Recovery, HistoryError>
  /**
   * Drops a channel's history (the server API's `history_remove`). The
   * memory store starts the channel over in a new epoch (a client recovering
   * since before is told `EpochChanged`); JetStream purges the channel's
   * subject, its epoch (the stream's) goes on, so a client recovering since
   * before gets what came after the removal and is not told.
   */
  readonly remove: (channel: ChannelId, policy: Policy) => Effect.Effect<void, HistoryError>
  /** Whether the store can serve now (for `/readyz`); always, when absent. */
  readonly isReady?: Effect.Effect<boolean> | undefined
  /** What the store cannot do here, in one line (e.g. no JetStream), or undefined. */
  readonly limitation?: Effect.Effect<string | undefined> | undefined
}>()("effect-lhttp/History") {}

/**
 * Options of a history: its policies (the first whose prefix matches a
 * channel counts) and, for the memory store, how many channels it keeps at
 * most (the ones used longest ago, by an append or a recovery, are dropped
 * first, their epoch with them; the order is coarse: never one used in the
 * last `maxChannels / 2` uses).
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly policies: ReadonlyArray<Policy>
  readonly maxChannels?: number | undefined
}

const units = { ms: Duration.millis, s: Duration.seconds, m: Duration.minutes, h: Duration.hours } as const

/**
 * Builds policies from `prefix[:size[:ttl]]` items separated by commas, e.g.
 * `chat-,news-:500:1h` (ttl as `<n>ms`, `<n>s`, `<n>m`, `<n>h`); missing
 * parts take {@link defaults}; the prefix `*` stands for every channel.
 * Throws an Error saying what is wrong with a malformed item.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parsePolicies = (text: string): Array<Policy> => {
  const policies: Array<Policy> = []
  for (const item of text.split(",").map((part) => part.trim()).filter((part) => part !== "")) {
    const [prefix, size, ttl, ...rest] = item.split(":")
    if (prefix === undefined || prefix === "" || rest.length > 0) {
      throw new Error(`a history policy is prefix[:size[:ttl]], not ${JSON.stringify(item)}`)
    }
    const count = size === undefined || size === "" ? defaults.size : Number(size)
    if (!Number.isInteger(count) || count < 1) {
      throw new Error(`history size must be a positive integer: ${JSON.stringify(item)}`)
    }
    let age: Duration.Duration = defaults.ttl
    if (ttl !== undefined && ttl !== "") {
      const match = /^(\d+)(ms|s|m|h)$/.exec(ttl)
      if (match === null) throw new Error(`history ttl is <n>ms, <n>s, <n>m or <n>h: ${JSON.stringify(item)}`)
      age = units[match[2] as keyof typeof units](Number(match[1]))
    }
    policies.push({ prefix: prefix === "*" ? "" : prefix, size: count, ttl: age })
  }
  return policies
}

/**
 * The policy lookup shared by the stores: the first policy whose prefix
 * starts the channel's name. The server's internal channels (`$...`, which
 * clients cannot name) never keep history.
 *
 * @since 0.1.0
 * @category utils
 */
export const policyLookup = (policies: ReadonlyArray<Policy>) => (channel: ChannelId): Policy | undefined => {
  if (policies.length === 0 || channel.startsWith("$")) return undefined
  for (const policy of policies) if (channel.startsWith(policy.prefix)) return policy
  return undefined
}

/**
 * Reads a `since` header: `now`, or a position `<epoch>:<offset>`; undefined
 * when it is neither.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseSince: (value: string) => Since | undefined = Positions.parseSince

/**
 * Reads a position, `<epoch>:<offset>`: undefined when it is not one.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parsePosition: (value: string) => Position | undefined = Positions.parsePosition

// the header lines of a position, up to the value: `channel:`, `offset:`, `epoch:`
const channelLine = `${Header.channel}:`
const offsetLine = `${Header.offset}:`
const epochLine = `${Header.epoch}:`

// whether a text holds a position header a publisher may have written
const mayHoldPosition = (text: string): boolean =>
  text.includes(offsetLine) || text.includes(epochLine) || text.includes(channelLine)

// a frame's text cut after its command line: the command line, the other header lines (each with its
// CRLF; without any `channel`, `offset` or `epoch` the publisher wrote) and the rest (the blank line, the body)
const split = (text: string) => {
  const lineEnd = text.indexOf("\r\n")
  const headEnd = text.indexOf("\r\n\r\n")
  const commandLine = lineEnd === -1 ? text : text.slice(0, lineEnd)
  let head = lineEnd === -1 || headEnd === lineEnd ? "" : text.slice(lineEnd + 2, headEnd + 2)
  if (mayHoldPosition(head)) {
    head = head.split("\r\n").filter((line) =>
      line !== "" && !line.startsWith(offsetLine) && !line.startsWith(epochLine) && !line.startsWith(channelLine)
    ).map((line) => `${line}\r\n`).join("")
  }
  const rest = headEnd === -1 ? "\r\n" : text.slice(headEnd + 2)
  return { commandLine, head, rest }
}

/**
 * The text a subscription that asked for positions receives of a message on
 * a history channel: `channel`, `offset` and `epoch` inserted after its
 * command line. Any the publisher wrote itself are removed first, so nobody
 * can forge a position. Subscriptions that did not ask receive the text as
 * it was published.
 *
 * @since 0.1.0
 * @category utils
 */
export const positioned = (text: string, channel: ChannelId, position: Position): string => {
  const { commandLine, head, rest } = split(text)
  return `${commandLine}\r\n${channelLine}${channel}\r\n${offsetLine}${position.offset}\r\n${epochLine}${position.epoch}\r\n${head}${rest}`
}

/**
 * A message's text without the `channel`, `offset` and `epoch` headers its
 * publisher may have written: what a subscription that asked for positions
 * receives of a message that has none (so that it cannot take a forged one
 * for a position).
 *
 * @since 0.1.0
 * @category utils
 */
export const unpositioned = (text: string): string => {
  if (!mayHoldPosition(text)) return text
  const { commandLine, head, rest } = split(text)
  return `${commandLine}\r\n${head}${rest}`
}

/**
 * The offset a positioned frame carries (NaN when it has none): read from
 * its head without parsing the rest.
 *
 * @since 0.1.0
 * @category utils
 */
export const offsetOf = (text: string): number => positionOf(text)?.position.offset ?? NaN

/**
 * The channel and position a frame carries (a delivered frame of a history
 * channel, or a `position` frame), or undefined when it carries none.
 *
 * @since 0.1.0
 * @category parsing
 */
export const positionOf = (text: string): { readonly channel: string; readonly position: Position } | undefined => {
  const headEnd = text.indexOf("\r\n\r\n")
  const head = headEnd === -1 ? text : text.slice(0, headEnd)
  if (!head.includes(`\r\n${offsetLine}`)) return undefined
  let channel: string | undefined
  let epoch: string | undefined
  let offset = NaN
  for (const line of head.split("\r\n")) {
    if (line.startsWith(channelLine)) channel ??= line.slice(channelLine.length)
    else if (line.startsWith(epochLine)) epoch ??= line.slice(epochLine.length)
    else if (line.startsWith(offsetLine) && Number.isNaN(offset)) offset = Number(line.slice(offsetLine.length))
  }
  return channel === undefined || epoch === undefined || !Number.isSafeInteger(offset)
    ? undefined
    : { channel, position: { epoch, offset } }
}

interface Entry {
  readonly offset: number
  readonly text: string
  readonly at: number
}

interface Log {
  readonly epoch: string
  /** The offset of the last message appended (0 before the first). */
  last: number
  /** What is kept, oldest first; `start` is the index of the oldest still kept. */
  readonly entries: Array<Entry>
  start: number
  /** The use (a count of `logOf` calls) at which it last went to the end of the recency order. */
  used: number
  /** The policy it was last trimmed by, and that policy's age limit in ms (read once, not per append). */
  policy: Policy | undefined
  maxAge: number
}

/**
 * The in-memory store: each channel's log lives in this process and its
 * epoch is made with it, so a restart is a new epoch. It numbers what is
 * published on this process (`numbering: "publisher"`): it serves a bus that
 * carries positions, the memory bus; with a bus between processes the Hub
 * keeps no history with it (and says so once).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory = (
  options: Options
): History["Service"] & { readonly append: NonNullable<History["Service"]["append"]> } => {
  const logs = new Map<ChannelId, Log>()
  const maxChannels = options.maxChannels ?? 10_000

  // drops what is past the size or the age; compacts the array now and then
  const trim = (log: Log, policy: Policy, now: number) => {
    const kept = log.entries.length - log.start
    if (kept > policy.size) log.start += kept - policy.size
    if (log.policy !== policy) {
      log.policy = policy
      log.maxAge = Duration.toMillis(policy.ttl)
    }
    const oldest = now - log.maxAge
    while (log.start < log.entries.length && log.entries[log.start]!.at <= oldest) log.start++
    if (log.start > 64 && log.start * 2 > log.entries.length) {
      log.entries.splice(0, log.start)
      log.start = 0
    }
  }

  // the recency order is the map's: most recently used last, the first key the one to drop. A log goes to
  // the end again only once half of maxChannels uses went by since it last did: a busy channel is then
  // never among the first half, and its appends skip the map's delete and set (issue 23)
  let uses = 0
  const refresh = Math.max(1, maxChannels >> 1)
  const logOf = (channel: ChannelId): Log => {
    uses++
    let log = logs.get(channel)
    if (log === undefined) {
      if (logs.size >= maxChannels) logs.delete(logs.keys().next().value!)
      log = { epoch: randomId(), last: 0, entries: [], start: 0, used: uses, policy: undefined, maxAge: 0 }
      logs.set(channel, log)
    } else if (uses - log.used >= refresh) {
      log.used = uses
      logs.delete(channel)
      logs.set(channel, log)
    }
    return log
  }

  const recoverNow = (channel: ChannelId, policy: Policy, since: Position | undefined, now: number): Recovery => {
    const log = logOf(channel)
    trim(log, policy, now)
    const position = { epoch: log.epoch, offset: log.last }
    if (since === undefined) return { messages: [], position }
    if (since.epoch !== log.epoch) return { messages: [], position, reason: "EpochChanged" }
    if (since.offset > log.last || since.offset < 0) return { messages: [], position, reason: "UnknownPosition" }
    // the oldest offset still kept (one past the last when nothing is)
    const first = log.start < log.entries.length ? log.entries[log.start]!.offset : log.last + 1
    const messages: Array<Stored> = []
    for (let i = log.start; i < log.entries.length; i++) {
      const entry = log.entries[i]!
      if (entry.offset > since.offset) {
        messages.push({ text: entry.text, position: { epoch: log.epoch, offset: entry.offset } })
      }
    }
    return since.offset + 1 < first ? { messages, position, reason: "Trimmed" } : { messages, position }
  }

  const appendNow = (channel: ChannelId, policy: Policy, text: string, now: number): Position => {
    const log = logOf(channel)
    const position = { epoch: log.epoch, offset: log.last + 1 }
    log.last = position.offset
    log.entries.push({ offset: position.offset, text, at: now })
    trim(log, policy, now)
    return position
  }

  return {
    policyOf: policyLookup(options.policies),
    numbering: "publisher",
    // its synchronous twin (at the time given) serves the hub's publish without an effect per message
    append: Immediate.attach(
      (channel: ChannelId, policy: Policy, text: string) =>
        Effect.clockWith((clock) => Effect.succeed(appendNow(channel, policy, text, clock.currentTimeMillisUnsafe()))),
      appendNow
    ),
    recover: (channel, policy, since) =>
      Effect.clockWith((clock) => Effect.succeed(recoverNow(channel, policy, since, clock.currentTimeMillisUnsafe()))),
    remove: (channel) =>
      Effect.sync(() => {
        logs.delete(channel)
      })
  }
}

/**
 * The in-memory history as a Layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory = (options: Options): Layer.Layer<History> => Layer.sync(History, () => makeMemory(options))
