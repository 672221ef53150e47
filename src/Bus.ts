/**
 * The message bus between server processes: publish a rendered frame to a
 * channel, subscribe this process to a channel. The in-memory Layer serves one
 * process; the NATS Layer joins many into a cluster. The Hub refcounts
 * subscriptions, so a bus sees at most one subscription per channel per
 * process, and a published frame crosses the bus once per channel.
 *
 * @since 0.1.0
 */
import { Context, Data, Effect, Layer, type Scope } from "effect"
import type { ChannelId } from "./Channel.ts"
import type { Position } from "./History.ts"
import * as Immediate from "./internal/hub/immediate.ts"

/**
 * A bus operation that failed: the reason says which.
 *
 * @since 0.1.0
 * @category errors
 */
export class BusError extends Data.TaggedError("BusError")<{
  readonly reason: "Unavailable" | "PublishFailed" | "SubscribeFailed" | "Unconfirmed"
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * The bus.
 *
 * @since 0.1.0
 * @category services
 */
export class Bus extends Context.Service<Bus, {
  /**
   * Publishes a frame's text to a validated channel. Delivery is at most
   * once. What crosses the bus is the text alone, byte for byte; `position`
   * (where the publisher's history put the message) reaches subscribers only
   * on a bus with `numbering: "publisher"`.
   */
  readonly publish: (channel: ChannelId, payload: string, position?: Position) => Effect.Effect<void, BusError>
  /**
   * Subscribes this process to a channel until the scope closes: every payload
   * published to it, by any process, is handed to `onMessage`, in order, with
   * its position when the bus knows one, and the offset of the channel's
   * message before it when the bus knows that (so that a gap in delivery
   * shows). With `positions`, a bus that numbers messages
   * (`numbering: "bus"`) delivers the channel as it numbered it.
   */
  readonly subscribe: (
    channel: ChannelId,
    onMessage: (payload: string, position: Position | undefined, previous?: number | undefined) => void,
    options?: {
      readonly positions?: boolean | undefined
      /**
       * Called after the bus lost its connection and has it again (and, with
       * positions, made sure its numbering is there): what was published
       * meanwhile may be missing for this process.
       */
      readonly onResume?: (() => void) | undefined
    }
  ) => Effect.Effect<void, BusError, Scope.Scope>
  /**
   * Publishes as `publish` does and answers once the bus has taken the
   * message: what a publish with an `id` is acknowledged with. A bus without
   * it takes a publish when `publish` is done (the in-memory bus). The NATS
   * bus answers when the NATS server has the message and, with a JetStream
   * history, when the stream stored it, with its position there; while NATS
   * is away, without a history once the message is in the bus's reconnect
   * buffer, as `publish` takes it (no position), with one not at all
   * (`Unavailable`: only the stream's acknowledgement says it is kept). It sends the message when the effect is run,
   * before anything it waits for, so that publishes keep their order; it
   * fails `Unavailable` when it cannot take it (nothing was published),
   * `Unconfirmed` when it sent it but got no confirmation in time (the
   * message may have been published).
   */
  readonly publishAcknowledged?:
    | ((channel: ChannelId, payload: string) => Effect.Effect<Position | undefined, BusError>)
    | undefined
  /** Whether the bus can publish and deliver now (for `/readyz`). */
  readonly isReady: Effect.Effect<boolean>
  /**
   * Where positions come from on this bus: `"publisher"` (the position given
   * to `publish` reaches the subscribers: one process), `"bus"` (the bus
   * numbers what it carries, whoever published it: NATS with a JetStream
   * history) or `"none"` (absent: the default).
   */
  readonly numbering?: "publisher" | "bus" | "none" | undefined
}>()("effect-lhttp/Bus") {}

/**
 * The in-memory bus: one process. A publish hands the payload to the
 * channel's subscriptions at once, in order, in the publisher's fiber (the
 * Hub's fan-out only queues it on each connection's bounded outbox, so this
 * never blocks). An earlier version went through an Effect `PubSub` and a
 * dispatcher fiber; that hop split bursts across writes and halved fan-out
 * throughput with few messages in flight (docs/benchmarks.md).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory = Effect.fnUntraced(function*() {
  const handlers = new Map<string, Set<(payload: string, position: Position | undefined) => void>>()
  yield* Effect.addFinalizer(() => Effect.sync(() => handlers.clear()))
  const publishNow = (channel: ChannelId, payload: string, position?: Position) => {
    const set = handlers.get(channel)
    if (set === undefined) return
    for (const handler of set) {
      handler(payload, position)
    }
  }
  return Bus.of({
    // its synchronous twin lets the hub publish a connection's plain publishes without an effect per
    // message (issue 23); a bus that wraps this one and replaces publish drops the twin with it
    publish: Immediate.attach(
      (channel: ChannelId, payload: string, position?: Position) =>
        Effect.sync(() => publishNow(channel, payload, position)),
      publishNow
    ),
    subscribe: (channel, onMessage) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          let set = handlers.get(channel)
          if (set === undefined) handlers.set(channel, set = new Set())
          set.add(onMessage)
        }),
        () =>
          Effect.sync(() => {
            const set = handlers.get(channel)
            set?.delete(onMessage)
            if (set?.size === 0) handlers.delete(channel)
          })
      ),
    isReady: Effect.succeed(true),
    numbering: "publisher"
  })
})

/**
 * The in-memory bus as a Layer: the embedded default.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory = (): Layer.Layer<Bus> => Layer.effect(Bus, makeMemory())
