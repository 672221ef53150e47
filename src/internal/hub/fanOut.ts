/**
 * A channel of the hub (its local subscribers, its bus subscription, the
 * positions it has seen) and the fan-out of what the bus delivers on it: the
 * message rendered at most twice, as published (for plain subscriptions) and
 * positioned (for those that asked), each once for all its subscribers.
 */
import type { Deferred, Scope } from "effect"
import type * as Channel from "../../Channel.ts"
import type { Connection } from "../../Connection.ts"
import * as History from "../../History.ts"
import type { Rejection } from "../../Rejection.ts"
import type * as Transport from "../../Transport.ts"
import { Outbound } from "../wire/outbound.ts"

/** What fan-out needs of a subscriber (a `Hub.Subscriber` is one). */
export interface Receiver {
  readonly deliver: (frame: Transport.Outbound) => void
  readonly connection?: Connection | undefined
}

/** A channel with local subscribers. */
export interface Entry<S extends Receiver = Receiver> {
  readonly channel: Channel.ChannelId
  readonly subscribers: Set<S>
  /** The subscribers among them that asked for positions. */
  readonly positioned: Set<S>
  /** The channel's history policy here, fixed when the entry is made (undefined: no history). */
  readonly policy: History.Policy | undefined
  /**
   * The highest offset of the channel this process has delivered or recovered up to (undefined
   * before the first): a message whose previous offset is past it follows a gap.
   */
  last: number | undefined
  /** The epoch `last` belongs to (a new one, the stream made again, starts over). */
  lastEpoch: string | undefined
  /** The connections among them whose joining was told to the watchers. */
  readonly members: Set<Connection>
  /** Subscribers recovering the channel's history: what arrives for them meanwhile waits here. */
  gates: Map<S, Array<Transport.Outbound>> | undefined
  /** The bus subscription, once taken. */
  scope: Scope.Closeable | undefined
  /** Completed when the bus subscription is taken (or failed): later joiners wait on it. */
  readonly ready: Deferred.Deferred<void, Rejection>
}

/** A new entry, before its bus subscription is taken. */
export const makeEntry = <S extends Receiver>(
  channel: Channel.ChannelId,
  policy: History.Policy | undefined,
  ready: Deferred.Deferred<void, Rejection>
): Entry<S> => ({
  channel,
  subscribers: new Set(),
  positioned: new Set(),
  policy,
  members: new Set(),
  gates: undefined,
  last: undefined,
  lastEpoch: undefined,
  scope: undefined,
  ready
})

/** Delivers a frame to one subscriber: one that throws is reported and does not cost the others their frame. */
export const deliverSafely = (
  subscriber: Receiver,
  frame: Transport.Outbound,
  onDefect: (defect: unknown) => void
): void => {
  try {
    subscriber.deliver(frame)
  } catch (defect) {
    onDefect(defect)
  }
}

/**
 * A message as a subscription that asked for positions receives it: with its
 * position, or (from a bus that could not number it) without any position
 * header its publisher wrote.
 */
export const positionedFrame = (
  channel: Channel.ChannelId,
  text: string,
  position: History.Position | undefined
): Outbound =>
  position === undefined
    ? new Outbound(History.unpositioned(text))
    : new Outbound(History.positioned(text, channel, position), {
      channel,
      epoch: position.epoch,
      offset: position.offset
    })

/**
 * Records that the channel reached `position` (a new epoch starts over) and
 * answers the offset it had reached before (undefined: none, or another epoch).
 */
export const advance = (entry: Entry<Receiver>, position: History.Position): number | undefined => {
  if (entry.lastEpoch !== position.epoch) {
    entry.lastEpoch = position.epoch
    entry.last = undefined
  }
  const last = entry.last
  if (last === undefined || position.offset > last) entry.last = position.offset
  return last
}

/**
 * Fans a delivered message out to the channel's subscribers; a recovering
 * subscriber's frames wait at its gate. A message that follows a gap (the bus
 * says the channel's previous offset, and this process never saw it: NATS was
 * lost a while) first has `onGap` recover what is missing for the positioned
 * subscribers.
 */
export const fanOut = <S extends Receiver>(
  entry: Entry<S>,
  payload: string,
  position: History.Position | undefined,
  previous: number | undefined,
  onDefect: (defect: unknown) => void,
  onGap: (entry: Entry<S>, since: History.Position) => void
): void => {
  if (position !== undefined) {
    const last = advance(entry, position)
    if (previous !== undefined && last !== undefined && previous > last && entry.positioned.size > 0) {
      onGap(entry, { epoch: position.epoch, offset: last })
    }
  }
  const positioned = entry.positioned
  if (positioned.size === 0) {
    const frame = new Outbound(payload)
    for (const subscriber of entry.subscribers) deliverSafely(subscriber, frame, onDefect)
    return
  }
  const withPosition = positionedFrame(entry.channel, payload, position)
  const gates = entry.gates
  let plain: Outbound | undefined
  for (const subscriber of entry.subscribers) {
    if (!positioned.has(subscriber)) {
      deliverSafely(subscriber, plain ??= new Outbound(payload), onDefect)
      continue
    }
    const gate = gates === undefined ? undefined : gates.get(subscriber)
    if (gate !== undefined) gate.push(withPosition)
    else deliverSafely(subscriber, withPosition, onDefect)
  }
}
