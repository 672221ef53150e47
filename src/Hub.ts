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
import { Context, Deferred, Effect, Exit, Layer, Metric, Option, Queue, Result, Scope, Stream } from "effect"
import { Bus, type BusError } from "./Bus.ts"
import * as Channel from "./Channel.ts"
import type { Connection } from "./Connection.ts"
import * as Frame from "./Frame.ts"
import * as History from "./History.ts"
import { type Entry, fanOut, makeEntry } from "./internal/hub/fanOut.ts"
import * as Immediate from "./internal/hub/immediate.ts"
import * as Members from "./internal/hub/members.ts"
import * as Recovery from "./internal/hub/recovery.ts"
import * as Message from "./Message.ts"
import type { ProtocolError } from "./ProtocolError.ts"
import * as Rejection from "./Rejection.ts"
import type * as Transport from "./Transport.ts"

/**
 * What the hub delivers to: a connection, or any local listener.
 *
 * @since 0.1.0
 * @category models
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
 * @category models
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
 * @category models
 */
export interface Options {
  /** Most channels one subscriber may hold (default {@link defaultMaxSubscriptions}). */
  readonly maxSubscriptions?: number | undefined
  /**
   * The most bytes of messages one recovery hands a subscriber (default
   * {@link defaultMaxRecoveryBytes}, half of a connection's default outbound
   * bound): a channel whose messages since the position would take more gets
   * none of them, and its `position` frame says `recovered:no` with
   * `reason:RecoveryLimit` and the channel's position. Without it, a client
   * far behind would be closed as a slow consumer by its own recovery, again
   * at every reconnect (found by the fault campaign).
   */
  readonly maxRecoveryBytes?: number | undefined
}

/**
 * The default of `maxRecoveryBytes`: 512 KiB.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultMaxRecoveryBytes = 512 * 1024

/**
 * The default cap on subscriptions per subscriber.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultMaxSubscriptions = 128

/**
 * The hub.
 *
 * @since 0.1.0
 * @category services
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
  readonly unsubscribe: (subscriber: Subscriber, channels: Iterable<Channel.ChannelId>) => Effect.Effect<void>
  /** Drops every subscription of a subscriber (at disconnect). */
  readonly unsubscribeAll: (subscriber: Subscriber) => Effect.Effect<void>
  /** Publishes a frame's text, byte for byte, to validated channels. */
  readonly publishText: (
    channels: ReadonlyArray<Channel.ChannelId>,
    text: string
  ) => Effect.Effect<void, Rejection.Rejection>
  /**
   * Publishes a frame's text as `publishText` does and answers once the bus
   * has taken it on every channel (`Bus.publishAcknowledged`), with the
   * position of each channel that keeps history: what a publish with an `id`
   * is acknowledged with. It fails `503 BusUnavailable` when the bus could not
   * take it, `504 PublishUnconfirmed` when the bus took it but did not
   * confirm it in time.
   */
  readonly publishTextAcknowledged: (
    channels: ReadonlyArray<Channel.ChannelId>,
    text: string
  ) => Effect.Effect<ReadonlyMap<Channel.ChannelId, History.Position>, Rejection.Rejection>
  /**
   * Publishes a frame's text as `publishText` does, at once and outside any
   * fiber, when the bus (and, for a channel with history, the store) can
   * (the in-memory ones): true when it did; false, having done nothing, when
   * `publishText` must. With `positions`, the position of each channel that
   * keeps history is set there (what `publishTextAcknowledged` answers).
   */
  readonly publishTextNow: (
    channels: ReadonlyArray<Channel.ChannelId>,
    text: string,
    positions?: Map<Channel.ChannelId, History.Position>
  ) => boolean
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
  /** The channels connections hold on this process (internal `$` ones aside), each with how many. */
  readonly channels: () => Iterable<readonly [Channel.ChannelId, number]>
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
 * @category models
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
 * @category models
 */
export interface SubscribeOptions {
  readonly since?: History.Since | undefined
  /**
   * Where the recoveries of `since` run. Without it the subscribe waits for
   * them. With it the subscribe returns once the live subscriptions are in
   * place (what arrives waits at the subscriber's gate) and hands their
   * recovery here, to run while the subscriber goes on: the server runs it
   * beside the connection's next messages, as a request, so that a client
   * back after a restart has its session restored while its channels'
   * histories are read. A recovery that fails undoes the subscription.
   */
  readonly recoverBeside?: ((recovering: Effect.Effect<void, Rejection.Rejection>) => Effect.Effect<void>) | undefined
}

const toRejection = (error: BusError) =>
  error.reason === "Unconfirmed" ? Rejection.publishUnconfirmed(error.message) : Rejection.busUnavailable(error.message)

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
 * @category constructors
 */
export const make = Effect.fnUntraced(function*(options?: Options) {
  const bus = yield* Bus
  // the clock of the Hub's context, for the publishes done outside any fiber
  const clockService = yield* Effect.clockWith(Effect.succeed)
  const clock = () => clockService.currentTimeMillisUnsafe()
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
      `channel history is off: the History store numbers messages by ${store.numbering}, the bus by ${
        bus.numbering ?? "none"
      }`
    ))
    return undefined
  }
  const maxSubscriptions = options?.maxSubscriptions ?? defaultMaxSubscriptions
  const table = new Map<Channel.ChannelId, Entry<Subscriber>>()
  const onDefect = (defect: unknown) => {
    Effect.runForkWith(context)(Effect.logError("a hub subscriber threw while a frame was delivered", defect))
  }
  // with a store, the recoveries' histogram there from the start, empty (reading a metric registers it)
  if (history !== undefined) yield* Metric.value(Recovery.recoveryDuration)
  const recovery = Recovery.make<Subscriber>({
    history,
    context,
    onDefect,
    maxBytes: options?.maxRecoveryBytes ?? defaultMaxRecoveryBytes
  })
  const members = Members.make<Subscriber>((channel) => table.get(channel), onDefect)

  const release = (entry: Entry<Subscriber>) => {
    if (table.get(entry.channel) === entry) table.delete(entry.channel)
    const scope = entry.scope
    entry.scope = undefined
    return scope === undefined ? Effect.void : Scope.close(scope, Exit.void)
  }

  // Takes the bus subscription of a channel that just got its first subscriber. On failure the
  // entry leaves the table and every subscriber that joined it meanwhile is failed too.
  const open = (entry: Entry<Subscriber>) =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const exit = yield* bus.subscribe(
        entry.channel,
        (payload, position, previous) => fanOut(entry, payload, position, previous, onDefect, recovery.heal),
        {
          positions: entry.policy !== undefined,
          // back from a lost connection: the positioned subscribers look for what they missed meanwhile
          onResume: () => {
            if (entry.last !== undefined && entry.lastEpoch !== undefined && entry.positioned.size > 0) {
              recovery.heal(entry, { epoch: entry.lastEpoch, offset: entry.last })
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
        if (table.get(entry.channel) === entry) table.delete(entry.channel)
        for (const subscriber of entry.subscribers) subscriber.channels.delete(entry.channel)
        entry.subscribers.clear()
        yield* Deferred.done(entry.ready, exit)
        return yield* exit
      }
      // the last subscriber left while the subscription was being taken
      if (table.get(entry.channel) !== entry) yield* Scope.close(scope, Exit.void)
      else entry.scope = scope
      yield* Deferred.done(entry.ready, Exit.void)
    })

  const leave = (subscriber: Subscriber, channel: Channel.ChannelId) => {
    if (!subscriber.channels.delete(channel)) return Effect.void
    const entry = table.get(channel)
    if (entry === undefined || !entry.subscribers.delete(subscriber)) return Effect.void
    entry.positioned.delete(subscriber)
    Recovery.removeGate(entry, subscriber)
    const left = members.left(subscriber, entry)
    return entry.subscribers.size === 0 ? Effect.andThen(left, release(entry)) : left
  }

  const subscribe = (subscriber: Subscriber, channels: ReadonlyArray<Channel.ChannelId>, options?: SubscribeOptions) =>
    Effect.suspend(() => {
      const since = options?.since
      const fresh = channels.filter((channel) => !subscriber.channels.has(channel))
      if (fresh.length === 0 && since === undefined) return Effect.void
      if (subscriber.channels.size + fresh.length > maxSubscriptions) {
        return Effect.fail(Rejection.tooManySubscriptions(maxSubscriptions))
      }
      const opening: Array<Entry<Subscriber>> = []
      const waiting: Array<Entry<Subscriber>> = []
      const positions: Array<Effect.Effect<void, Rejection.Rejection>> = []
      for (const channel of fresh) {
        let entry = table.get(channel)
        if (entry === undefined) {
          entry = makeEntry(channel, policyOf(channel), Deferred.makeUnsafe())
          table.set(channel, entry)
          opening.push(entry)
        } else if (entry.scope === undefined) {
          waiting.push(entry)
        }
        // the entry's own string: every subscriber holds that one, not the copy its message was parsed into
        // (an idle subscription costs a Set slot, not a string too)
        subscriber.channels.add(entry.channel)
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
            positions.push(recovery.noHistory(subscriber, channel, after !== undefined))
            continue
          }
          entry.positioned.add(subscriber)
          // (a gate already there, for a recovery still running, is kept: what waits at it is not lost)
          Recovery.raiseGate(entry, subscriber)
          positions.push(recovery.recover(subscriber, entry, policy, after))
        }
      }
      if (opening.length === 0 && waiting.length === 0 && positions.length === 0) {
        return members.joined(subscriber, fresh)
      }
      // all or none: a channel that failed leaves the others of this call released too
      const recovering = Effect.forEach(positions, (recovered) => recovered, { discard: true }).pipe(
        Effect.onError(() => unsubscribe(subscriber, fresh))
      )
      const beside = options?.recoverBeside
      // every entry this call opens is settled, whatever the others do: later joiners wait on it
      return Effect.forEach(opening, (entry) => Effect.exit(open(entry))).pipe(
        Effect.flatMap((exits) => {
          const failure = exits.find(Exit.isFailure)
          return failure === undefined ? Effect.void : failure
        }),
        Effect.andThen(Effect.forEach(waiting, (entry) => Deferred.await(entry.ready), { discard: true })),
        Effect.onError(() => unsubscribe(subscriber, fresh)),
        Effect.andThen(
          beside === undefined || positions.length === 0
            ? Effect.andThen(recovering, members.joined(subscriber, fresh))
            : Effect.andThen(members.joined(subscriber, fresh), beside(recovering))
        )
      )
    })

  function unsubscribe(subscriber: Subscriber, channels: Iterable<Channel.ChannelId>): Effect.Effect<void> {
    return Effect.suspend(() =>
      Effect.forEach(Array.from(channels), (channel) => leave(subscriber, channel), { discard: true })
    )
  }

  // a store that numbers what the bus carries (JetStream) adds nothing on the publishing side; one that
  // numbers what is published here appends a history channel's message first, then publishes it with
  // its position beside the text
  const appendThenPublish = (channel: Channel.ChannelId, policy: History.Policy, text: string) =>
    history!.append!(channel, policy, text).pipe(
      Effect.mapError(Recovery.toHistoryRejection),
      Effect.tap((position) => Effect.mapError(bus.publish(channel, text, position), toRejection))
    )
  const publishOne: (channel: Channel.ChannelId, text: string) => Effect.Effect<void, Rejection.Rejection> =
    history === undefined || history.numbering !== "publisher"
      ? (channel, text) => Effect.mapError(bus.publish(channel, text), toRejection)
      : (channel, text) => {
        const policy = policyOf(channel)
        if (policy === undefined) return Effect.mapError(bus.publish(channel, text), toRejection)
        return Effect.asVoid(appendThenPublish(channel, policy, text))
      }

  // the same without a fiber, when both the bus and the store can: all channels or none
  const publishNow = Immediate.of<(channel: Channel.ChannelId, payload: string, position?: History.Position) => void>(
    bus.publish
  )
  const appendNow = Immediate.of<
    (channel: Channel.ChannelId, policy: History.Policy, text: string, now: number) => History.Position
  >(
    history?.append
  )
  const publishTextNow = (
    channels: ReadonlyArray<Channel.ChannelId>,
    text: string,
    positions?: Map<Channel.ChannelId, History.Position>
  ): boolean => {
    if (publishNow === undefined) return false
    if (history !== undefined) {
      if (appendNow === undefined) return false
      for (const channel of channels) {
        const policy = policyOf(channel)
        const position = policy === undefined ? undefined : appendNow(channel, policy, text, clock())
        publishNow(channel, text, position)
        if (position !== undefined) positions?.set(channel, position)
      }
      return true
    }
    for (const channel of channels) publishNow(channel, text)
    return true
  }

  const publishText = (channels: ReadonlyArray<Channel.ChannelId>, text: string) =>
    channels.length === 1
      ? publishOne(channels[0]!, text)
      : Effect.forEach(channels, (channel) => publishOne(channel, text), { discard: true })

  // a publish the bus confirms: the store that numbers what is published here appends first (its position
  // is the answer); a bus that numbers what it carries answers with the position it gave
  const acknowledge = bus.publishAcknowledged
  const publishOneAcknowledged = (
    channel: Channel.ChannelId,
    text: string
  ): Effect.Effect<History.Position | undefined, Rejection.Rejection> => {
    const policy = policyOf(channel)
    if (history?.numbering === "publisher" && policy !== undefined) return appendThenPublish(channel, policy, text)
    if (acknowledge === undefined) return Effect.as(Effect.mapError(bus.publish(channel, text), toRejection), undefined)
    return Effect.mapBoth(acknowledge(channel, text), {
      onFailure: toRejection,
      onSuccess: (position) => policy === undefined || history === undefined ? undefined : position
    })
  }
  const publishTextAcknowledged = (channels: ReadonlyArray<Channel.ChannelId>, text: string) =>
    Effect.suspend(() => {
      const positions = new Map<Channel.ChannelId, History.Position>()
      if (publishTextNow(channels, text, positions)) return Effect.succeed(positions)
      // every channel's message is sent before any confirmation is awaited (in the order of the list)
      return Effect.forEach(channels, (channel) =>
        Effect.map(publishOneAcknowledged(channel, text), (position) => {
          if (position !== undefined) positions.set(channel, position)
        }), { concurrency: "unbounded", discard: true }).pipe(Effect.as(positions))
    })

  // a subscription without a socket: the delivered frames, decoded, into the stream's queue
  const stream = (channels: string | Iterable<string>, options?: StreamOptions) =>
    Stream.callback<Message.Message, ProtocolError | Rejection.Rejection>(
      (queue) =>
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
          return Effect.acquireRelease(subscribe(subscriber, list.success), () =>
            unsubscribe(subscriber, subscriber.channels))
        }),
      { bufferSize: options?.capacity ?? 1024, strategy: options?.strategy ?? "dropping" }
    )

  yield* Effect.addFinalizer(() => Effect.forEach(Array.from(table.values()), release, { discard: true }))

  return Hub.of({
    subscribe,
    unsubscribe,
    unsubscribeAll: (subscriber) => Effect.suspend(() => unsubscribe(subscriber, Array.from(subscriber.channels))),
    publishText,
    publishTextAcknowledged,
    publishTextNow,
    publish: (channels, command, headers, body) =>
      Effect.suspend((): Effect.Effect<void, ProtocolError | Rejection.Rejection> => {
        const list = typeof channels === "string" ? Channel.parseList(channels) : Channel.validateAll(channels)
        if (Result.isFailure(list)) return Effect.fail(list.failure)
        const frame = Frame.validate(Frame.make(command, headers, body))
        if (Result.isFailure(frame)) return Effect.fail(frame.failure)
        return publishText(list.success, Frame.render(frame.success))
      }),
    stream,
    channelCount: () => table.size,
    members: (channel) => {
      const entry = table.get(channel)
      return entry === undefined ? [] : Array.from(entry.members)
    },
    *channels() {
      for (const [channel, entry] of table) {
        if (entry.members.size > 0 && !channel.startsWith("$")) yield [channel, entry.members.size] as const
      }
    },
    watch: members.watch
  })
})

/**
 * The hub as a Layer over the `Bus` in context.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: Options): Layer.Layer<Hub, never, Bus> => Layer.effect(Hub, make(options))
