/**
 * The hub keeps channel -> local subscribers, holds one bus subscription per
 * channel for this process (refcounted: taken on the first local subscriber,
 * released after the last), and fans each delivered frame out to the local
 * subscribers: the frame's text is rendered once and encoded once, and the
 * same bytes go to every subscriber. Subscriptions are idempotent per
 * subscriber and bounded in number.
 *
 * It is also the server-side publish API: `publish(channels, command,
 * headers, body)` for processors and apps, and their subscription without a
 * socket: `stream(channels)`.
 *
 * With a {@link History.History} in context, the messages of a channel with a
 * history policy have positions (numbered by the store as they are published
 * here, or by the bus as it carries them). A subscription that asks for
 * positions (`since`) gets the messages it missed since one (then the live
 * ones, with no gap and no duplicate), a `position` frame, and each message
 * with its position; every other subscription gets the published text byte
 * for byte, and nothing else. A message is rendered at most twice (as
 * published, and positioned), never once per subscriber.
 *
 * @since 0.1.0
 */
import { Context, Deferred, Effect, Exit, Layer, Option, Queue, Result, Scope, Stream } from "effect"
import { Bus, type BusError } from "./Bus.ts"
import * as Channel from "./Channel.ts"
import type { Connection } from "./Connection.ts"
import * as Frame from "./Frame.ts"
import * as History from "./History.ts"
import { Outbound } from "./internal/wire/outbound.ts"
import * as Message from "./Message.ts"
import type { ProtocolError } from "./ProtocolError.ts"
import * as Rejection from "./Rejection.ts"
import type * as Transport from "./Transport.ts"

/**
 * What the hub delivers to: a connection, or any local listener.
 *
 * @since 0.1.0
 */
export interface Subscriber {
  /** The channels the subscriber holds; the hub keeps it up to date. */
  readonly channels: Set<Channel.ChannelId>
  /**
   * Receives a frame published to one of its channels, rendered and encoded
   * once for all subscribers; called synchronously during fan-out, must not
   * block. One that throws is logged; the others still get the frame.
   */
  readonly deliver: (frame: Transport.Outbound) => void
  /**
   * The client connection this subscriber is, if it is one: connections are
   * the members of a channel ({@link Membership}); server-side streams are not.
   */
  readonly connection?: Connection | undefined
}

/**
 * A connection joining or leaving a channel on this process: what
 * {@link Hub} watchers are told (after a subscription succeeded; at an
 * unsubscribe or a disconnect).
 *
 * @since 0.1.0
 */
export interface Membership {
  readonly channel: Channel.ChannelId
  readonly connection: Connection
  readonly joined: boolean
}

/**
 * Options of the hub.
 *
 * @since 0.1.0
 */
export interface Options {
  /** Most channels one subscriber may hold (default {@link defaultMaxSubscriptions}). */
  readonly maxSubscriptions?: number | undefined
}

/**
 * The default cap on subscriptions per subscriber.
 *
 * @since 0.1.0
 */
export const defaultMaxSubscriptions = 128

/**
 * The hub.
 *
 * @since 0.1.0
 */
export class Hub extends Context.Service<Hub, {
  /**
   * Subscribes to validated channels, all or none: it fails, holding none of
   * the new ones, when the subscriber would pass the limit or when the bus
   * cannot subscribe to one of them.
   */
  readonly subscribe: (
    subscriber: Subscriber,
    channels: ReadonlyArray<Channel.ChannelId>,
    options?: SubscribeOptions
  ) => Effect.Effect<void, Rejection.Rejection>
  /** Unsubscribes from channels; channels not held are ignored. */
  readonly unsubscribe: (subscriber: Subscriber, channels: Iterable<string>) => Effect.Effect<void>
  /** Drops every subscription of a subscriber (at disconnect). */
  readonly unsubscribeAll: (subscriber: Subscriber) => Effect.Effect<void>
  /** Publishes a frame's text, byte for byte, to validated channels. */
  readonly publishText: (
    channels: ReadonlyArray<Channel.ChannelId>,
    text: string
  ) => Effect.Effect<void, Rejection.Rejection>
  /**
   * Publishes a frame to channels: the channels are validated, the frame is
   * rendered once, and what subscribers receive is that text.
   */
  readonly publish: (
    channels: string | Iterable<string>,
    command: string,
    headers?: ReadonlyMap<string, string> | Readonly<Record<string, string>>,
    body?: string
  ) => Effect.Effect<void, ProtocolError | Rejection.Rejection>
  /**
   * The frames published to channels, on any node, as a Stream of decoded
   * messages: a subscription without a socket, for server-side services. It
   * subscribes when run and unsubscribes when it ends. Each stream has its
   * own bounded buffer ({@link StreamOptions}); frames that do not decode are
   * left out.
   */
  readonly stream: (
    channels: string | Iterable<string>,
    options?: StreamOptions
  ) => Stream.Stream<Message.Message, ProtocolError | Rejection.Rejection>
  /** How many channels have local subscribers. */
  readonly channelCount: () => number
  /** The connections subscribed to a channel on this process. */
  readonly members: (channel: Channel.ChannelId) => ReadonlyArray<Connection>
  /**
   * Runs `listener` for every connection joining or leaving a channel on this
   * process, until the scope closes: within the subscription (after it
   * succeeded) or the unsubscription, so what it publishes comes before
   * anything the connection's next messages cause.
   */
  readonly watch: (listener: (membership: Membership) => Effect.Effect<void>) => Effect.Effect<void, never, Scope.Scope>
}>()("effect-lhttp/Hub") {}

/**
 * The buffer of a {@link Hub} stream: `capacity` frames (default 1,024)
 * waiting for the stream's reader; past it, `"dropping"` (the default)
 * drops the frames that arrive, `"sliding"` drops the oldest waiting ones.
 * Fan-out never waits for a stream.
 *
 * @since 0.1.0
 */
export interface StreamOptions {
  readonly capacity?: number | undefined
  readonly strategy?: "dropping" | "sliding" | undefined
}

/**
 * How a subscriber wants history channels. With `since` (`"now"`, or a
 * position to recover after), each channel it names, held already or not, is
 * answered with a `position` frame (after the messages since the position,
 * when one is given), and its messages carry their positions from then on; a
 * channel without history is answered with a `position` frame that says
 * `NoHistory`. Without `since`, a subscription is plain: the published text,
 * byte for byte, and no `position` frame.
 *
 * @since 0.1.0
 */
export interface SubscribeOptions {
  readonly since?: History.Since | undefined
}

interface Entry {
  readonly channel: Channel.ChannelId
  readonly subscribers: Set<Subscriber>
  /** The subscribers among them that asked for positions. */
  readonly positioned: Set<Subscriber>
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
  gates: Map<Subscriber, Array<Transport.Outbound>> | undefined
  /** The bus subscription, once taken. */
  scope: Scope.Closeable | undefined
  /** Completed when the bus subscription is taken (or failed): later joiners wait on it. */
  readonly ready: Deferred.Deferred<void, Rejection.Rejection>
}

/**
 * A message as a subscription that asked for positions receives it: with its
 * position, or (from a bus that could not number it) without any position
 * header its publisher wrote.
 */
const positionedFrame = (channel: Channel.ChannelId, text: string, position: History.Position | undefined): Outbound =>
  position === undefined
    ? new Outbound(History.unpositioned(text))
    : new Outbound(History.positioned(text, channel, position), { channel, epoch: position.epoch, offset: position.offset })

// one subscriber that throws does not cost the others their frame
const deliverTo = (subscriber: Subscriber, frame: Transport.Outbound, onDefect: (defect: unknown) => void): void => {
  try {
    subscriber.deliver(frame)
  } catch (defect) {
    onDefect(defect)
  }
}

// The message rendered at most twice: as published (for plain subscriptions) and positioned (for
// those that asked), each once for all its subscribers; a recovering subscriber's frames wait at its gate.
// A message that follows a gap (the bus says the channel's previous offset, and this process never saw
// it: NATS was lost a while) first has `onGap` recover what is missing for the positioned subscribers.
const fanOut = (
  entry: Entry,
  payload: string,
  position: History.Position | undefined,
  previous: number | undefined,
  onDefect: (defect: unknown) => void,
  onGap: (entry: Entry, since: History.Position) => void
): void => {
  if (position !== undefined) {
    if (entry.lastEpoch !== position.epoch) {
      entry.lastEpoch = position.epoch
      entry.last = undefined
    }
    const last = entry.last
    if (last === undefined || position.offset > last) entry.last = position.offset
    if (previous !== undefined && last !== undefined && previous > last && entry.positioned.size > 0) {
      onGap(entry, { epoch: position.epoch, offset: last })
    }
  }
  const positioned = entry.positioned
  if (positioned.size === 0) {
    const frame = new Outbound(payload)
    for (const subscriber of entry.subscribers) deliverTo(subscriber, frame, onDefect)
    return
  }
  const withPosition = positionedFrame(entry.channel, payload, position)
  const gates = entry.gates
  let plain: Outbound | undefined
  for (const subscriber of entry.subscribers) {
    if (!positioned.has(subscriber)) {
      deliverTo(subscriber, plain ??= new Outbound(payload), onDefect)
      continue
    }
    const gate = gates === undefined ? undefined : gates.get(subscriber)
    if (gate !== undefined) gate.push(withPosition)
    else deliverTo(subscriber, withPosition, onDefect)
  }
}

/**
 * The `position` frame that answers a subscription's `since` on a channel
 * (`recovered` only when it asked since a position; without a recovery: no history).
 */
const positionFrame = (channel: Channel.ChannelId, recovery: History.Recovery | undefined, asked: boolean): Outbound => {
  const headers = new Map<string, string>([[History.Header.channel, channel]])
  if (recovery !== undefined) {
    headers.set(History.Header.epoch, recovery.position.epoch)
    headers.set(History.Header.offset, String(recovery.position.offset))
  }
  const reason = recovery === undefined ? "NoHistory" : recovery.reason
  if (asked) headers.set(History.Header.recovered, reason === undefined ? "yes" : "no")
  if (reason !== undefined) headers.set(History.Header.reason, reason)
  const text = Frame.render(Frame.make(History.positionCommand, headers))
  return recovery === undefined
    ? new Outbound(text)
    : new Outbound(text, { channel, epoch: recovery.position.epoch, offset: recovery.position.offset })
}

// a subscriber's gate goes; with the last one the map goes too, and fan-out looks up nothing again
const closeGate = (entry: Entry, subscriber: Subscriber): void => {
  if (entry.gates?.delete(subscriber) === true && entry.gates.size === 0) entry.gates = undefined
}

const toHistoryRejection = (error: History.HistoryError) => Rejection.historyUnavailable(error.message)

const toRejection = (error: BusError) => Rejection.busUnavailable(error.message)

// a delivered frame decoded once for every stream it goes to (undefined: it does not decode)
const decoded = new WeakMap<Transport.Outbound, Message.Message | undefined>()
const decodedOf = (frame: Transport.Outbound): Message.Message | undefined => {
  if (decoded.has(frame)) return decoded.get(frame)
  const message = Message.decode(frame.text)
  const value = Result.isSuccess(message) ? message.success : undefined
  decoded.set(frame, value)
  return value
}

/**
 * Makes a hub over the `Bus` in context.
 *
 * @since 0.1.0
 */
export const make = Effect.fnUntraced(function*(options?: Options) {
  const bus = yield* Bus
  const store = Option.getOrUndefined(yield* Effect.serviceOption(History.History))
  // a store serves a bus that numbers messages the way it does; with any other, no channel keeps
  // history (said once, when a channel would have)
  const history = store !== undefined && store.numbering === (bus.numbering ?? "none") ? store : undefined
  let mismatchTold = false
  const context = yield* Effect.context<never>()
  const policyOf = (channel: Channel.ChannelId): History.Policy | undefined => {
    if (history !== undefined) return history.policyOf(channel)
    if (store === undefined || mismatchTold || store.policyOf(channel) === undefined) return undefined
    mismatchTold = true
    Effect.runForkWith(context)(Effect.logWarning(
      `channel history is off: the History store numbers messages by ${store.numbering}, the bus by ${bus.numbering ?? "none"}`
    ))
    return undefined
  }
  const maxSubscriptions = options?.maxSubscriptions ?? defaultMaxSubscriptions
  const table = new Map<Channel.ChannelId, Entry>()
  const onDefect = (defect: unknown) => {
    Effect.runForkWith(context)(Effect.logError("a hub subscriber threw while a frame was delivered", defect))
  }

  const release = (channel: Channel.ChannelId, entry: Entry) => {
    if (table.get(channel) === entry) table.delete(channel)
    const scope = entry.scope
    entry.scope = undefined
    return scope === undefined ? Effect.void : Scope.close(scope, Exit.void)
  }

  // Takes the bus subscription of a channel that just got its first subscriber. On failure the
  // entry leaves the table and every subscriber that joined it meanwhile is failed too.
  const open = (channel: Channel.ChannelId, entry: Entry) =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const exit = yield* bus.subscribe(
        channel,
        (payload, position, previous) => fanOut(entry, payload, position, previous, onDefect, heal),
        {
          positions: entry.policy !== undefined,
          // back from a lost connection: the positioned subscribers look for what they missed meanwhile
          onResume: () => {
            if (entry.last !== undefined && entry.lastEpoch !== undefined && entry.positioned.size > 0) {
              heal(entry, { epoch: entry.lastEpoch, offset: entry.last })
            }
          }
        }
      ).pipe(
        Scope.provide(scope),
        Effect.mapError(toRejection),
        Effect.exit
      )
      if (Exit.isFailure(exit)) {
        yield* Scope.close(scope, exit)
        if (table.get(channel) === entry) table.delete(channel)
        for (const subscriber of entry.subscribers) subscriber.channels.delete(channel)
        entry.subscribers.clear()
        yield* Deferred.done(entry.ready, exit)
        return yield* exit
      }
      // the last subscriber left while the subscription was being taken
      if (table.get(channel) !== entry) yield* Scope.close(scope, Exit.void)
      else entry.scope = scope
      yield* Deferred.done(entry.ready, Exit.void)
    })

  // the watchers of memberships; one that fails or dies is logged, the others still run
  const watchers = new Set<(membership: Membership) => Effect.Effect<void>>()
  const tell = (membership: Membership) =>
    Effect.forEach(Array.from(watchers), (watcher) =>
      Effect.suspend(() => watcher(membership)).pipe(
        Effect.catchCause((cause) => Effect.sync(() => onDefect(cause)))
      ), { discard: true })

  // the connections of a subscription that succeeded join their channels
  const joined = (subscriber: Subscriber, channels: ReadonlyArray<Channel.ChannelId>) =>
    Effect.suspend(() => {
      const connection = subscriber.connection
      if (connection === undefined) return Effect.void
      const told: Array<Membership> = []
      for (const channel of channels) {
        const entry = table.get(channel)
        if (entry === undefined || !entry.subscribers.has(subscriber) || entry.members.has(connection)) continue
        entry.members.add(connection)
        if (watchers.size > 0) told.push({ channel, connection, joined: true })
      }
      return told.length === 0 ? Effect.void : Effect.forEach(told, tell, { discard: true })
    })

  const leave = (subscriber: Subscriber, channel: Channel.ChannelId) => {
    if (!subscriber.channels.delete(channel)) return Effect.void
    const entry = table.get(channel)
    if (entry === undefined || !entry.subscribers.delete(subscriber)) return Effect.void
    entry.positioned.delete(subscriber)
    closeGate(entry, subscriber)
    const connection = subscriber.connection
    const left = connection !== undefined && entry.members.delete(connection) && watchers.size > 0
      ? tell({ channel, connection, joined: false })
      : Effect.void
    return entry.subscribers.size === 0 ? Effect.andThen(left, release(channel, entry)) : left
  }

  const deliverSafely = (subscriber: Subscriber, frame: Transport.Outbound) => deliverTo(subscriber, frame, onDefect)

  // what waited at a subscriber's gate goes on after `last` (all of it without one); the gate goes
  const openGate = (subscriber: Subscriber, entry: Entry, last: number | undefined) => {
    const waited = entry.gates?.get(subscriber) ?? []
    closeGate(entry, subscriber)
    if (!entry.subscribers.has(subscriber)) return
    for (const frame of waited) {
      // a frame the bus could not number has no position: it goes as it is
      if (last === undefined || frame.position === undefined || frame.position.offset > last) deliverSafely(subscriber, frame)
    }
  }

  // A history channel's recovery for one subscriber, once the live subscription is in place (what
  // arrives meanwhile waits at its gate): the messages since the position asked for, the position
  // frame, then what waited, less what the recovery already gave. When the store fails, what waited
  // goes on and the subscription's answer is the failure.
  const recover = (
    subscriber: Subscriber,
    entry: Entry,
    policy: History.Policy,
    since: History.Position | undefined
  ) =>
    history!.recover(entry.channel, policy, since).pipe(
      Effect.mapError(toHistoryRejection),
      Effect.tapError(() => Effect.sync(() => openGate(subscriber, entry, undefined))),
      Effect.map((recovery) => {
        if (entry.lastEpoch !== recovery.position.epoch) {
          entry.lastEpoch = recovery.position.epoch
          entry.last = undefined
        }
        if (entry.last === undefined || recovery.position.offset > entry.last) entry.last = recovery.position.offset
        if (entry.subscribers.has(subscriber)) {
          for (const message of recovery.messages) {
            deliverSafely(subscriber, positionedFrame(entry.channel, message.text, message.position))
          }
          deliverSafely(subscriber, positionFrame(entry.channel, recovery, since !== undefined))
        }
        openGate(subscriber, entry, recovery.position.offset)
      })
    )

  // After a gap in what the bus delivered: every positioned subscriber not recovering already gets what
  // is missing since the last offset it had, then a position frame, then what came meanwhile (gated).
  function heal(entry: Entry, since: History.Position) {
    const policy = entry.policy
    if (policy === undefined || history === undefined) return
    for (const subscriber of entry.positioned) {
      if (entry.gates?.has(subscriber) === true) continue
      ;(entry.gates ??= new Map()).set(subscriber, [])
      Effect.runForkWith(context)(
        recover(subscriber, entry, policy, since).pipe(
          Effect.catchCause((cause) => Effect.logWarning("a channel's history could not fill a gap in live delivery", cause))
        )
      )
    }
  }

  // a subscription asking for positions on a channel without history: its position frame says so
  const noHistory = (subscriber: Subscriber, channel: Channel.ChannelId, asked: boolean) =>
    Effect.sync(() => deliverSafely(subscriber, positionFrame(channel, undefined, asked)))

  const subscribe = (subscriber: Subscriber, channels: ReadonlyArray<Channel.ChannelId>, options?: SubscribeOptions) =>
    Effect.suspend(() => {
      const since = options?.since
      const fresh = channels.filter((channel) => !subscriber.channels.has(channel))
      if (fresh.length === 0 && since === undefined) return Effect.void
      if (subscriber.channels.size + fresh.length > maxSubscriptions) {
        return Effect.fail(Rejection.tooManySubscriptions(maxSubscriptions))
      }
      const opening: Array<readonly [Channel.ChannelId, Entry]> = []
      const waiting: Array<Entry> = []
      const positions: Array<Effect.Effect<void, Rejection.Rejection>> = []
      for (const channel of fresh) {
        subscriber.channels.add(channel)
        let entry = table.get(channel)
        if (entry === undefined) {
          entry = {
            channel,
            subscribers: new Set(),
            positioned: new Set(),
            policy: policyOf(channel),
            members: new Set(),
            gates: undefined,
            last: undefined,
            lastEpoch: undefined,
            scope: undefined,
            ready: Deferred.makeUnsafe()
          }
          table.set(channel, entry)
          opening.push([channel, entry])
        } else if (entry.scope === undefined) {
          waiting.push(entry)
        }
        entry.subscribers.add(subscriber)
      }
      // positions, for every channel named (a channel held already is answered too)
      if (since !== undefined) {
        const after = since === "now" ? undefined : since
        for (const channel of channels) {
          const entry = table.get(channel)
          if (entry === undefined || !entry.subscribers.has(subscriber)) continue
          if (entry.scope === undefined && !fresh.includes(channel)) waiting.push(entry)
          // the store may have lost its history since the entry was made (a NATS without JetStream)
          const policy = entry.policy === undefined ? undefined : policyOf(channel)
          if (policy === undefined) {
            positions.push(noHistory(subscriber, channel, after !== undefined))
            continue
          }
          entry.positioned.add(subscriber)
          // (a gate already there, for a recovery still running, is kept: what waits at it is not lost)
          const gates = entry.gates ??= new Map()
          if (!gates.has(subscriber)) gates.set(subscriber, [])
          positions.push(recover(subscriber, entry, policy, after))
        }
      }
      if (opening.length === 0 && waiting.length === 0 && positions.length === 0) return joined(subscriber, fresh)
      // every entry this call opens is settled, whatever the others do: later joiners wait on it
      return Effect.forEach(opening, ([channel, entry]) => Effect.exit(open(channel, entry))).pipe(
        Effect.flatMap((exits) => {
          const failure = exits.find(Exit.isFailure)
          return failure === undefined ? Effect.void : failure
        }),
        Effect.andThen(Effect.forEach(waiting, (entry) => Deferred.await(entry.ready), { discard: true })),
        Effect.andThen(Effect.forEach(positions, (recovery) => recovery, { discard: true })),
        Effect.andThen(joined(subscriber, fresh)),
        // all or none: a channel that failed leaves the others of this call released too
        Effect.onError(() => unsubscribe(subscriber, fresh))
      )
    })

  function unsubscribe(subscriber: Subscriber, channels: Iterable<string>): Effect.Effect<void> {
    return Effect.suspend(() =>
      Effect.forEach(Array.from(channels), (channel) => leave(subscriber, channel as Channel.ChannelId), {
        discard: true
      })
    )
  }

  // a channel with a history policy on a store that numbers what is published here: appended first,
  // then published with its position beside the text
  const publishOne = (channel: Channel.ChannelId, text: string): Effect.Effect<void, Rejection.Rejection> => {
    const policy = policyOf(channel)
    if (policy === undefined) return Effect.mapError(bus.publish(channel, text), toRejection)
    return history!.append!(channel, policy, text).pipe(
      Effect.mapError(toHistoryRejection),
      Effect.flatMap((position) => Effect.mapError(bus.publish(channel, text, position), toRejection))
    )
  }

  // a store that numbers what the bus carries (JetStream) adds nothing on the publishing side
  const publishText = (channels: ReadonlyArray<Channel.ChannelId>, text: string) =>
    history === undefined || history.numbering !== "publisher"
      ? (channels.length === 1
        ? bus.publish(channels[0]!, text)
        : Effect.forEach(channels, (channel) => bus.publish(channel, text), { discard: true })).pipe(
          Effect.mapError(toRejection)
        )
      : Effect.forEach(channels, (channel) => publishOne(channel, text), { discard: true })

  yield* Effect.addFinalizer(() =>
    Effect.forEach(Array.from(table), ([channel, entry]) => release(channel, entry), { discard: true })
  )

  return Hub.of({
    subscribe,
    unsubscribe,
    unsubscribeAll: (subscriber) => Effect.suspend(() => unsubscribe(subscriber, Array.from(subscriber.channels))),
    publishText,
    publish: (channels, command, headers, body) =>
      Effect.suspend((): Effect.Effect<void, ProtocolError | Rejection.Rejection> => {
        const list = typeof channels === "string" ? Channel.parseList(channels) : Channel.validateAll(channels)
        if (Result.isFailure(list)) return Effect.fail(list.failure)
        const frame = Frame.validate(Frame.make(command, headers, body))
        if (Result.isFailure(frame)) return Effect.fail(frame.failure)
        return publishText(list.success, Frame.render(frame.success))
      }),
    stream: (channels, options) =>
      Stream.callback<Message.Message, ProtocolError | Rejection.Rejection>((queue) =>
        Effect.suspend((): Effect.Effect<void, ProtocolError | Rejection.Rejection, Scope.Scope> => {
          const list = typeof channels === "string" ? Channel.parseList(channels) : Channel.validateAll(channels)
          if (Result.isFailure(list)) return Effect.fail(list.failure)
          const subscriber: Subscriber = {
            channels: new Set(),
            deliver: (frame) => {
              const message = decodedOf(frame)
              if (message !== undefined) Queue.offerUnsafe(queue, message)
            }
          }
          return Effect.acquireRelease(subscribe(subscriber, list.success), () => unsubscribe(subscriber, subscriber.channels))
        }), { bufferSize: options?.capacity ?? 1024, strategy: options?.strategy ?? "dropping" }),
    channelCount: () => table.size,
    members: (channel) => {
      const entry = table.get(channel)
      return entry === undefined ? [] : Array.from(entry.members)
    },
    watch: (listener) =>
      Effect.acquireRelease(Effect.sync(() => void watchers.add(listener)), () => Effect.sync(() => void watchers.delete(listener)))
  })
})

/**
 * The hub as a Layer over the `Bus` in context.
 *
 * @since 0.1.0
 */
export const layer = (options?: Options): Layer.Layer<Hub, never, Bus> => Layer.effect(Hub, make(options))
