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
 * With a {@link History.History} in context, a publish to a channel with a
 * history policy is appended to it first and carries its position, and a
 * subscriber that asks for positions gets the messages it missed since one
 * (then the live ones, with no gap and no duplicate) and a `position` frame.
 *
 * @since 0.1.0
 */
import { Context, Deferred, Effect, Exit, Layer, Option, Queue, Result, Scope, Stream } from "effect"
import { Bus, type BusError } from "./Bus.ts"
import * as Channel from "./Channel.ts"
import type { Connection } from "./Connection.ts"
import * as Frame from "./Frame.ts"
import * as History from "./History.ts"
import { Outbound } from "./internal/outbound.ts"
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
 * How a subscriber wants history channels: with `positions`, each history
 * channel it subscribes to is followed by a `position` frame (after the
 * frames since `since`, when given, for a subscription to one channel), and
 * live frames start right after it. Connections ask for positions; server-side
 * streams do not.
 *
 * @since 0.1.0
 */
export interface SubscribeOptions {
  readonly positions?: boolean | undefined
  readonly since?: History.Position | undefined
}

interface Entry {
  readonly subscribers: Set<Subscriber>
  /** The connections among them whose joining was told to the watchers. */
  readonly members: Set<Connection>
  /** Subscribers recovering the channel's history: what arrives for them meanwhile waits here. */
  gates: Map<Subscriber, Array<Transport.Outbound>> | undefined
  /** The bus subscription, once taken. */
  scope: Scope.Closeable | undefined
  /** Completed when the bus subscription is taken (or failed): later joiners wait on it. */
  readonly ready: Deferred.Deferred<void, Rejection.Rejection>
}

// one subscriber that throws does not cost the others their frame
const fanOut = (entry: Entry, payload: string, onDefect: (defect: unknown) => void): void => {
  const frame = new Outbound(payload)
  const gates = entry.gates
  for (const subscriber of entry.subscribers) {
    const gate = gates === undefined ? undefined : gates.get(subscriber)
    if (gate !== undefined) {
      gate.push(frame)
      continue
    }
    try {
      subscriber.deliver(frame)
    } catch (defect) {
      onDefect(defect)
    }
  }
}

/**
 * The `position` frame that ends a history channel's recovery for a subscriber
 * (`recovered` only when it asked since a position; without a recovery: no history).
 */
const positionFrame = (channel: Channel.ChannelId, recovery: History.Recovery | undefined, asked: boolean): string => {
  const headers = new Map<string, string>([[History.Header.channel, channel]])
  if (recovery !== undefined) {
    headers.set(History.Header.epoch, recovery.position.epoch)
    headers.set(History.Header.offset, String(recovery.position.offset))
  }
  const reason = recovery === undefined ? "NoHistory" : recovery.reason
  if (asked) headers.set(History.Header.recovered, reason === undefined ? "yes" : "no")
  if (reason !== undefined) headers.set(History.Header.reason, reason)
  return Frame.render(Frame.make(History.positionCommand, headers))
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
  const history = Option.getOrUndefined(yield* Effect.serviceOption(History.History))
  const maxSubscriptions = options?.maxSubscriptions ?? defaultMaxSubscriptions
  const table = new Map<Channel.ChannelId, Entry>()
  const context = yield* Effect.context<never>()
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
      const exit = yield* bus.subscribe(channel, (payload) => fanOut(entry, payload, onDefect)).pipe(
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
    closeGate(entry, subscriber)
    const connection = subscriber.connection
    const left = connection !== undefined && entry.members.delete(connection) && watchers.size > 0
      ? tell({ channel, connection, joined: false })
      : Effect.void
    return entry.subscribers.size === 0 ? Effect.andThen(left, release(channel, entry)) : left
  }

  const deliverSafely = (subscriber: Subscriber, frame: Transport.Outbound) => {
    try {
      subscriber.deliver(frame)
    } catch (defect) {
      onDefect(defect)
    }
  }

  // A history channel's recovery for one subscriber, once the live subscription is in place (what
  // arrives meanwhile waits at its gate): the frames since the position asked for, the position
  // frame, then what waited, less what the recovery already gave.
  const recover = (
    subscriber: Subscriber,
    channel: Channel.ChannelId,
    entry: Entry,
    policy: History.Policy,
    since: History.Position | undefined
  ) =>
    history!.recover(channel, policy, since).pipe(
      Effect.mapError(toHistoryRejection),
      Effect.map((recovery) => {
        const waited = entry.gates?.get(subscriber) ?? []
        closeGate(entry, subscriber)
        if (!entry.subscribers.has(subscriber)) return
        for (const text of recovery.frames) deliverSafely(subscriber, new Outbound(text))
        deliverSafely(subscriber, new Outbound(positionFrame(channel, recovery, since !== undefined)))
        const last = recovery.position.offset
        for (const frame of waited) {
          // a frame from a node without the policy has no offset: it is delivered as it is
          if (!(History.offsetOf(frame.text) <= last)) deliverSafely(subscriber, frame)
        }
      })
    )

  // a subscription asking for positions on a channel without history: said so only when it asked since a position
  const noHistory = (subscriber: Subscriber, channel: Channel.ChannelId) =>
    Effect.sync(() => deliverSafely(subscriber, new Outbound(positionFrame(channel, undefined, true))))

  const subscribe = (subscriber: Subscriber, channels: ReadonlyArray<Channel.ChannelId>, options?: SubscribeOptions) =>
    Effect.suspend(() => {
      const fresh = channels.filter((channel) => !subscriber.channels.has(channel))
      if (fresh.length === 0) return Effect.void
      if (subscriber.channels.size + fresh.length > maxSubscriptions) {
        return Effect.fail(Rejection.tooManySubscriptions(maxSubscriptions))
      }
      const opening: Array<readonly [Channel.ChannelId, Entry]> = []
      const waiting: Array<Entry> = []
      const positions: Array<Effect.Effect<void, Rejection.Rejection>> = []
      const since = options?.since
      for (const channel of fresh) {
        subscriber.channels.add(channel)
        let entry = table.get(channel)
        if (entry === undefined) {
          entry = { subscribers: new Set(), members: new Set(), gates: undefined, scope: undefined, ready: Deferred.makeUnsafe() }
          table.set(channel, entry)
          opening.push([channel, entry])
        } else if (entry.scope === undefined) {
          waiting.push(entry)
        }
        entry.subscribers.add(subscriber)
        if (options?.positions === true) {
          const policy = history?.policyOf(channel)
          if (policy !== undefined) {
            ;(entry.gates ??= new Map()).set(subscriber, [])
            positions.push(recover(subscriber, channel, entry, policy, since))
          } else if (since !== undefined) {
            positions.push(noHistory(subscriber, channel))
          }
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

  // a channel with a history policy: appended first, then published with its position
  const publishOne = (channel: Channel.ChannelId, text: string): Effect.Effect<void, Rejection.Rejection> => {
    const policy = history?.policyOf(channel)
    if (policy === undefined) return Effect.mapError(bus.publish(channel, text), toRejection)
    return history!.append(channel, policy, text).pipe(
      Effect.mapError(toHistoryRejection),
      Effect.flatMap((appended) => Effect.mapError(bus.publish(channel, appended.text), toRejection))
    )
  }

  const publishText = (channels: ReadonlyArray<Channel.ChannelId>, text: string) =>
    history === undefined
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
