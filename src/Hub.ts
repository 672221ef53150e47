/**
 * The hub keeps channel -> local subscribers, holds one bus subscription per
 * channel for this process (refcounted: taken on the first local subscriber,
 * released after the last), and fans each delivered frame out to the local
 * subscribers: the frame's text is rendered once and encoded once, and the
 * same bytes go to every subscriber. Subscriptions are idempotent per
 * subscriber and bounded in number.
 *
 * It is also the server-side publish API: `publish(channels, command,
 * headers, body)` for processors and apps.
 *
 * @since 0.1.0
 */
import { Context, Effect, Exit, Layer, Result, Scope } from "effect"
import { Bus, type BusError } from "./Bus.ts"
import * as Channel from "./Channel.ts"
import * as Frame from "./Frame.ts"
import { Outbound } from "./internal/outbound.ts"
import type { ProtocolError } from "./ProtocolError.ts"
import * as Rejection from "./Rejection.ts"

/**
 * A frame delivered from a channel.
 *
 * @since 0.1.0
 */
export interface Delivery {
  /** The frame's text, as published. */
  readonly text: string
}

/**
 * What the hub delivers to: a connection, or any local listener.
 *
 * @since 0.1.0
 */
export interface Subscriber {
  /** The channels the subscriber holds; the hub keeps it up to date. */
  readonly channels: Set<string>
  /** Receives a delivery; called synchronously during fan-out, must not block or throw. */
  readonly deliver: (delivery: Delivery) => void
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
  /** Subscribes to validated channels; fails when the subscriber would pass the limit. */
  readonly subscribe: (subscriber: Subscriber, channels: ReadonlyArray<string>) => Effect.Effect<void, Rejection.Rejection>
  /** Unsubscribes from channels; channels not held are ignored. */
  readonly unsubscribe: (subscriber: Subscriber, channels: Iterable<string>) => Effect.Effect<void>
  /** Drops every subscription of a subscriber (at disconnect). */
  readonly unsubscribeAll: (subscriber: Subscriber) => Effect.Effect<void>
  /** Publishes a frame's text, byte for byte, to validated channels. */
  readonly publishText: (channels: ReadonlyArray<string>, text: string) => Effect.Effect<void, Rejection.Rejection>
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
  /** How many channels have local subscribers. */
  readonly channelCount: () => number
}>()("effect-lhttp/Hub") {}

interface Entry {
  readonly subscribers: Set<Subscriber>
  scope: Scope.Closeable | undefined
}

const fanOut = (entry: Entry, payload: string): void => {
  const delivery = new Outbound(payload)
  for (const subscriber of entry.subscribers) subscriber.deliver(delivery)
}

const toRejection = (error: BusError) => Rejection.busUnavailable(error.message)

/**
 * Makes a hub over the `Bus` in context.
 *
 * @since 0.1.0
 */
export const make = Effect.fnUntraced(function*(options?: Options) {
  const bus = yield* Bus
  const maxSubscriptions = options?.maxSubscriptions ?? defaultMaxSubscriptions
  const table = new Map<string, Entry>()

  const release = (channel: string, entry: Entry) => {
    if (table.get(channel) === entry) table.delete(channel)
    const scope = entry.scope
    entry.scope = undefined
    return scope === undefined ? Effect.void : Scope.close(scope, Exit.void)
  }

  // Takes the bus subscription of a channel that just got its first subscriber.
  const open = (channel: string, entry: Entry) =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const exit = yield* bus.subscribe(channel, (payload) => fanOut(entry, payload)).pipe(
        Scope.provide(scope),
        Effect.exit
      )
      if (Exit.isFailure(exit)) {
        yield* Scope.close(scope, exit)
        if (table.get(channel) === entry) table.delete(channel)
        for (const subscriber of entry.subscribers) subscriber.channels.delete(channel)
        return yield* exit
      }
      // the last subscriber left while the subscription was being taken
      if (table.get(channel) !== entry) return yield* Scope.close(scope, Exit.void)
      entry.scope = scope
    })

  const leave = (subscriber: Subscriber, channel: string) => {
    if (!subscriber.channels.delete(channel)) return Effect.void
    const entry = table.get(channel)
    if (entry === undefined) return Effect.void
    entry.subscribers.delete(subscriber)
    return entry.subscribers.size === 0 ? release(channel, entry) : Effect.void
  }

  const subscribe = (subscriber: Subscriber, channels: ReadonlyArray<string>) =>
    Effect.suspend(() => {
      const fresh = channels.filter((channel) => !subscriber.channels.has(channel))
      if (fresh.length === 0) return Effect.void
      if (subscriber.channels.size + fresh.length > maxSubscriptions) {
        return Effect.fail(Rejection.tooManySubscriptions(maxSubscriptions))
      }
      const opening: Array<readonly [string, Entry]> = []
      for (const channel of fresh) {
        subscriber.channels.add(channel)
        let entry = table.get(channel)
        if (entry === undefined) {
          entry = { subscribers: new Set(), scope: undefined }
          table.set(channel, entry)
          opening.push([channel, entry])
        }
        entry.subscribers.add(subscriber)
      }
      return opening.length === 0
        ? Effect.void
        : Effect.forEach(opening, ([channel, entry]) => open(channel, entry), { discard: true }).pipe(
          Effect.mapError(toRejection)
        )
    })

  const unsubscribe = (subscriber: Subscriber, channels: Iterable<string>) =>
    Effect.suspend(() => Effect.forEach(Array.from(channels), (channel) => leave(subscriber, channel), { discard: true }))

  const publishText = (channels: ReadonlyArray<string>, text: string) =>
    Effect.forEach(channels, (channel) => bus.publish(channel, text), { discard: true }).pipe(
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
        const list = typeof channels === "string" ? Channel.parseList(channels) : validateAll(channels)
        if (Result.isFailure(list)) return Effect.fail(list.failure)
        const frame = Frame.validate(Frame.make(command, headers, body))
        if (Result.isFailure(frame)) return Effect.fail(frame.failure)
        return publishText(list.success, Frame.render(frame.success))
      }),
    channelCount: () => table.size
  })
})

const validateAll = (channels: Iterable<string>): Result.Result<ReadonlyArray<string>, ProtocolError> => {
  const list = Array.from(new Set(channels))
  for (const channel of list) {
    const checked = Channel.validate(channel)
    if (Result.isFailure(checked)) return Result.fail(checked.failure)
  }
  return Result.succeed(list)
}

/**
 * The hub as a Layer over the `Bus` in context.
 *
 * @since 0.1.0
 */
export const layer = (options?: Options): Layer.Layer<Hub, never, Bus> => Layer.effect(Hub, make(options))
