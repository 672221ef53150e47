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
 * @since 0.1.0
 */
import { Context, Deferred, Effect, Exit, Layer, Queue, Result, Scope, Stream } from "effect"
import { Bus, type BusError } from "./Bus.ts"
import * as Channel from "./Channel.ts"
import * as Frame from "./Frame.ts"
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
    channels: ReadonlyArray<Channel.ChannelId>
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

interface Entry {
  readonly subscribers: Set<Subscriber>
  /** The bus subscription, once taken. */
  scope: Scope.Closeable | undefined
  /** Completed when the bus subscription is taken (or failed): later joiners wait on it. */
  readonly ready: Deferred.Deferred<void, Rejection.Rejection>
}

// one subscriber that throws does not cost the others their frame
const fanOut = (entry: Entry, payload: string, onDefect: (defect: unknown) => void): void => {
  const frame = new Outbound(payload)
  for (const subscriber of entry.subscribers) {
    try {
      subscriber.deliver(frame)
    } catch (defect) {
      onDefect(defect)
    }
  }
}

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

  const leave = (subscriber: Subscriber, channel: Channel.ChannelId) => {
    if (!subscriber.channels.delete(channel)) return Effect.void
    const entry = table.get(channel)
    if (entry === undefined || !entry.subscribers.delete(subscriber)) return Effect.void
    return entry.subscribers.size === 0 ? release(channel, entry) : Effect.void
  }

  const subscribe = (subscriber: Subscriber, channels: ReadonlyArray<Channel.ChannelId>) =>
    Effect.suspend(() => {
      const fresh = channels.filter((channel) => !subscriber.channels.has(channel))
      if (fresh.length === 0) return Effect.void
      if (subscriber.channels.size + fresh.length > maxSubscriptions) {
        return Effect.fail(Rejection.tooManySubscriptions(maxSubscriptions))
      }
      const opening: Array<readonly [Channel.ChannelId, Entry]> = []
      const waiting: Array<Entry> = []
      for (const channel of fresh) {
        subscriber.channels.add(channel)
        let entry = table.get(channel)
        if (entry === undefined) {
          entry = { subscribers: new Set(), scope: undefined, ready: Deferred.makeUnsafe() }
          table.set(channel, entry)
          opening.push([channel, entry])
        } else if (entry.scope === undefined) {
          waiting.push(entry)
        }
        entry.subscribers.add(subscriber)
      }
      if (opening.length === 0 && waiting.length === 0) return Effect.void
      // every entry this call opens is settled, whatever the others do: later joiners wait on it
      return Effect.forEach(opening, ([channel, entry]) => Effect.exit(open(channel, entry))).pipe(
        Effect.flatMap((exits) => {
          const failure = exits.find(Exit.isFailure)
          return failure === undefined ? Effect.void : failure
        }),
        Effect.andThen(Effect.forEach(waiting, (entry) => Deferred.await(entry.ready), { discard: true })),
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

  const publishText = (channels: ReadonlyArray<Channel.ChannelId>, text: string) =>
    (channels.length === 1
      ? bus.publish(channels[0]!, text)
      : Effect.forEach(channels, (channel) => bus.publish(channel, text), { discard: true })).pipe(
        Effect.mapError(toRejection)
      )

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
    channelCount: () => table.size
  })
})

/**
 * The hub as a Layer over the `Bus` in context.
 *
 * @since 0.1.0
 */
export const layer = (options?: Options): Layer.Layer<Hub, never, Bus> => Layer.effect(Hub, make(options))
