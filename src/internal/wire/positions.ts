/**
 * The positions a client keeps of the history channels it holds
 * (docs/history-and-presence.md): known from the `position` frame that answers
 * a subscription asking for them, advanced by the positions of the channel's
 * frames, and used to subscribe `since` them on a new connection. Both clients
 * keep theirs with it.
 */
import { Command, ErrorHeader, Header, PositionHeader, sinceNow } from "./protocol.ts"

/** A channel's position in its history. */
export interface Position {
  readonly epoch: string
  readonly offset: number
}

/** A `since` header, read: `now`, or a position. */
export type Since = Position | typeof sinceNow

/** Reads a position, `<epoch>:<offset>`: undefined when it is not one. */
export const parsePosition = (value: string): Position | undefined => {
  const match = /^([A-Za-z0-9_-]{1,64}):(0|[1-9][0-9]{0,15})$/.exec(value)
  if (match === null) return undefined
  const offset = Number(match[2])
  return Number.isSafeInteger(offset) ? { epoch: match[1]!, offset } : undefined
}

/** Reads a `since` header: `now`, or a position; undefined when it is neither. */
export const parseSince = (value: string): Since | undefined => value === sinceNow ? sinceNow : parsePosition(value)

/** What the tracker reads of a received frame. */
export interface Received {
  readonly command: string
  readonly headers: ReadonlyMap<string, string>
}

/** The channels of a space-separated list (`subscribe`, `publish`, `unsubscribe`). */
export const channelsOf = (list: string | undefined): Array<string> =>
  list === undefined ? [] : list.split(" ").filter((channel) => channel !== "")

/** A position as a `since` header says it: `<epoch>:<offset>`. */
const sinceOf = (position: Position): string => `${position.epoch}:${position.offset}`

/**
 * An acknowledgement's `positions` header: `<channel>:<epoch>:<offset>` for
 * each channel with a position, separated by spaces.
 */
export const renderAckPositions = (positions: Iterable<readonly [channel: string, position: Position]>): string => {
  let value = ""
  for (const [channel, position] of positions) {
    value += `${value === "" ? "" : " "}${channel}:${sinceOf(position)}`
  }
  return value
}

/**
 * Reads an acknowledgement's `positions` header (a channel may hold `:`: its
 * position is what follows the last two); items that are not a position are
 * left out.
 */
export const parseAckPositions = (value: string | undefined): Map<string, Position> => {
  const positions = new Map<string, Position>()
  for (const item of channelsOf(value)) {
    const offsetAt = item.lastIndexOf(":")
    const epochAt = offsetAt <= 0 ? -1 : item.lastIndexOf(":", offsetAt - 1)
    if (epochAt <= 0) continue
    const position = parsePosition(item.slice(epochAt + 1))
    if (position !== undefined) positions.set(item.slice(0, epochAt), position)
  }
  return positions
}

const isError = (frame: Received) => frame.command === Command.error && frame.headers.has(ErrorHeader.status)

/**
 * Whether a received frame is the answer to a `since:now` the client added by
 * itself, for a channel without history (a `position` frame with no epoch nor
 * `recovered`): not for the app, which did not ask, and gets what it got
 * before positions were asked for. `askedByApp(channel)`: the app gave the
 * `since` of the channel's subscription itself, so the answer is its.
 */
export const isUnasked = (frame: Received, askedByApp: (channel: string) => boolean): boolean => {
  const { headers } = frame
  if (frame.command !== Command.position || headers.has(Header.publish) || headers.has(Header.id)) return false
  if (headers.has(PositionHeader.epoch) || headers.has(PositionHeader.recovered)) return false
  return !askedByApp(headers.get(PositionHeader.channel) ?? "")
}

/** The last position of each history channel held, as the server told it. */
export class Positions {
  readonly #known = new Map<string, Position>()

  /** The channel's last position, if known. */
  get(channel: string): Position | undefined {
    return this.#known.get(channel)
  }

  /** Forgets the channel's position (it was unsubscribed). */
  forget(channel: string): void {
    this.#known.delete(channel)
  }

  /**
   * How a new connection subscribes to `channels` again: those with a known
   * position each `since` it, the others (`fresh`) as a new subscription.
   */
  split(channels: Iterable<string>): {
    readonly positioned: ReadonlyArray<readonly [channel: string, since: string]>
    readonly fresh: ReadonlyArray<string>
  } {
    const positioned: Array<readonly [string, string]> = []
    const fresh: Array<string> = []
    for (const channel of channels) {
      const position = this.#known.get(channel)
      if (position === undefined) fresh.push(channel)
      else positioned.push([channel, sinceOf(position)])
    }
    return { positioned, fresh }
  }

  /**
   * Keeps the position a received frame carries, for a channel the client
   * holds (`subscribed`). It becomes known from the `position` frame answering
   * a subscription with positions (the server's: no `publish`, no `id`), which
   * a channel without history answers with no epoch: it is forgotten then. It
   * advances with the positions of the channel's frames, only while known, and
   * only from a frame that no subscription without positions could have
   * brought (whose text is the publisher's, forged positions included).
   * False for a frame seen already: a positioned frame of the channel at or
   * before its known position, in the same epoch (a delivery that came
   * twice, e.g. live and again in a recovery): the client drops it.
   */
  observe(frame: Received, subscribed: (channel: string) => boolean): boolean {
    if (isError(frame)) return true
    const { headers } = frame
    const channel = headers.get(PositionHeader.channel)
    if (channel === undefined || !subscribed(channel)) return true
    const epoch = headers.get(PositionHeader.epoch)
    const offset = Number(headers.get(PositionHeader.offset))
    const carried = epoch === undefined || !Number.isSafeInteger(offset) ? undefined : { epoch, offset }
    const published = headers.has(Header.publish)
    const answer = headers.has(Header.id)
    if (frame.command === Command.position && !published && !answer) {
      if (carried === undefined) this.#known.delete(channel)
      else this.#known.set(channel, carried)
      return true
    }
    const known = this.#known.get(channel)
    if (known === undefined || carried === undefined) return true
    if (!published && answer) return true // an answer to this client, no delivery
    // a frame published by a client names the channel it is on (server code publishes without `publish`)
    const to = channelsOf(headers.get(Header.publish))
    if (published && !to.includes(channel)) return true
    if (to.some((other) => other !== channel && subscribed(other) && !this.#known.has(other))) return true
    if (known.epoch === carried.epoch && carried.offset <= known.offset) return false
    this.#known.set(channel, carried)
    return true
  }
}
