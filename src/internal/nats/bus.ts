/**
 * The NATS bus's implementation (the public face, its Layers and its
 * environment, is `NatsBus.ts`): its options, and `make`, which dials,
 * sets a history's stream up, and puts the bus's parts together: the link
 * (`link.ts`: the connection's states, the publishes, the reconnect buffer
 * of `replayBuffer.ts`), the subscriptions (`subscriptions.ts`) and the
 * numbering of a JetStream history (`numbering.ts`).
 */
import type { NatsConnection } from "@nats-io/transport-node"
import { Duration, Effect, Result, Schedule } from "effect"
import { Bus, BusError } from "../../Bus.ts"
import { busReconnects } from "../server/metrics.ts"
import { type ClientOptions, type Connecting, dial, serversShown } from "./client.ts"
import { defaultSubjectPrefix, parseSubjectPrefix } from "./config.ts"
import { Link } from "./link.ts"
import { type Numbering, type NumberingState, pending, Tracker } from "./numbering.ts"
import { Subscriptions } from "./subscriptions.ts"

/** The default bound, in bytes, of what waits while NATS is disconnected. */
export const defaultMaxPendingBytes = 8 * 1024 * 1024

/** The default bound, in messages, of what waits while NATS is disconnected. */
export const defaultMaxPendingMessages = 100_000

/** Options of the NATS bus: how to reach NATS, and how the bus behaves when it cannot. */
export interface Options extends ClientOptions {
  /** The client name NATS shows in its monitoring (default `effect-lhttp`). */
  readonly name?: string | undefined
  /** Prepended to a channel to make its subject (default `lhttp.`; `""` for original lhttp nodes). */
  readonly subjectPrefix?: string | undefined
  /** The wait between reconnect attempts (default 1 s). */
  readonly reconnectTimeWait?: Duration.Input | undefined
  /** Reconnect attempts per server before giving up; -1 never gives up (default). */
  readonly maxReconnectAttempts?: number | undefined
  /** The wait between attempts of the first connection (default 1 s). */
  readonly connectRetry?: Duration.Input | undefined
  /**
   * Bytes that may wait in the buffer while disconnected before publishing
   * fails (default 8 MiB). A message counts its payload's UTF-8 bytes, its
   * subject and a fixed overhead (`NatsBus.messageOverhead`).
   */
  readonly maxPendingBytes?: number | undefined
  /** Messages that may wait in the buffer while disconnected before publishing fails (default 100 000). */
  readonly maxPendingMessages?: number | undefined
  /**
   * After a reconnect, how long publishes keep waiting in the buffer before it
   * is sent, so that other nodes that lost the same NATS server have
   * reconnected and re-subscribed (default `reconnectTimeWait` + 250 ms: a
   * node with the same settings retries every `reconnectTimeWait`, plus up to
   * 100 ms of the client's jitter).
   */
  readonly replayDelay?: Duration.Input | undefined
  /**
   * How long a publish with an `id` waits for NATS to confirm it (the
   * stream's acknowledgement, or a flush) before it is answered
   * `504 PublishUnconfirmed` (default 5 s).
   */
  readonly acknowledgeTimeout?: Duration.Input | undefined
}

/** The bus, its connection (once there is one) and, with a {@link Numbering}, where that stands. */
interface NatsBus {
  readonly bus: Bus["Service"]
  readonly connection: () => NatsConnection | undefined
  readonly numbering: () => NumberingState
}

/** Makes the NATS bus (with a JetStream history's `numbering`). It does not wait for NATS: see `NatsBus.ts`'s notes. */
export const make = Effect.fnUntraced(function*(options: Options, numbering?: Numbering) {
  const prefix = options.subjectPrefix ?? defaultSubjectPrefix
  if (Result.isFailure(parseSubjectPrefix(prefix))) {
    return yield* new BusError({
      reason: "Unavailable",
      message: `the subject prefix ${JSON.stringify(prefix)} must be empty or valid channel tokens ending with "."`
    })
  }
  const reconnectTimeWait = Duration.fromInputUnsafe(options.reconnectTimeWait ?? "1 second")
  const connecting: Connecting = {
    name: options.name ?? "effect-lhttp",
    reconnectTimeWait,
    maxReconnectAttempts: options.maxReconnectAttempts ?? -1
  }
  const connectRetry = Schedule.spaced(options.connectRetry ?? "1 second")
  const context = yield* Effect.context<never>()
  const log = (message: string) => {
    Effect.runForkWith(context)(Effect.logInfo(message))
  }
  const link = new Link({
    maxPendingBytes: options.maxPendingBytes ?? defaultMaxPendingBytes,
    maxPendingMessages: options.maxPendingMessages ?? defaultMaxPendingMessages,
    replayDelay: Duration.toMillis(
      options.replayDelay === undefined
        ? Duration.sum(reconnectTimeWait, Duration.millis(250))
        : Duration.fromInputUnsafe(options.replayDelay)
    ),
    log
  })
  const subscriptions = new Subscriptions(
    prefix,
    numbering === undefined ? undefined : { republishPrefix: numbering.republishPrefix, epoch: () => tracker?.epoch }
  )
  const tracker = numbering === undefined ? undefined : new Tracker(numbering, (nc) => subscriptions.renumber(nc))
  const checkStream = (nc: NatsConnection): Promise<void> => tracker?.check(nc) ?? Promise.resolve()

  const watch = async (nc: NatsConnection) => {
    for await (const status of nc.status()) {
      if (status.type === "reconnect") {
        busReconnects.updateUnsafe(1, context)
        // a nats-server that restarted may have lost the stream (or its JetStream); once it is checked,
        // the positioned subscriptions are told to look for what they missed meanwhile
        tracker?.check(nc).then(
          () => subscriptions.resume(),
          (cause) => log(`NATS: the history stream could not be checked after a reconnect: ${String(cause)}`)
        )
      }
      link.follow(status)
    }
  }

  // the stream is set up before the bus says it is connected; a setup that fails is tried again
  const checkFirstStream = (nc: NatsConnection) =>
    Effect.tryPromise({
      try: () => checkStream(nc),
      catch: (cause) =>
        new BusError({ reason: "Unavailable", message: "the history stream could not be set up", cause })
    }).pipe(
      Effect.tapError((error) => Effect.sync(() => log(`NATS: ${error.message}: ${String(error.cause)}; retrying`))),
      Effect.retry(connectRetry),
      Effect.as(nc)
    )

  let toldUnreachable = false
  yield* dial(
    options,
    connecting,
    (cause) => new BusError({ reason: "Unavailable", message: "NATS is unreachable", cause })
  ).pipe(
    Effect.tapError(() =>
      Effect.sync(() => {
        if (toldUnreachable) return
        toldUnreachable = true
        log(`NATS: unreachable at ${serversShown(options)}, retrying`)
      })
    ),
    Effect.retry(connectRetry),
    Effect.tap((nc) =>
      Effect.sync(() => {
        link.hold(nc)
        void watch(nc)
      })
    ),
    Effect.flatMap(checkFirstStream),
    Effect.tap((nc) =>
      Effect.sync(() => {
        tracker?.checkEvery(
          nc,
          () => link.connection === nc && link.isReady,
          (cause) => log(`NATS: the history stream could not be checked: ${String(cause)}`)
        )
        link.open(nc)
        subscriptions.attach(nc)
        // a new leader of the stream: a message the old one stored but did not republish is missing for the
        // positioned subscribers until they look (found by the fault campaign: a stream leader killed)
        if (numbering !== undefined) {
          nc.subscribe(numbering.leaderElected, { callback: () => subscriptions.resume() })
        }
      })
    ),
    Effect.forkScoped
  )

  yield* Effect.addFinalizer(() =>
    Effect.promise(() => {
      tracker?.stop()
      subscriptions.detach()
      return link.close()
    })
  )

  const acknowledgeTimeout = Duration.toMillis(Duration.fromInputUnsafe(options.acknowledgeTimeout ?? "5 seconds"))
  const bus = Bus.of({
    publish: (channel, payload) => Effect.suspend(() => link.publish(prefix + channel, payload)),
    // with a stream numbering the bus's messages, the stream's acknowledgement gives the position
    publishAcknowledged: (channel, payload) =>
      Effect.suspend(() => {
        // (with the empty prefix, the stream records one-token subjects only)
        const epoch = prefix === "" && channel.includes(".") ? undefined : tracker?.epoch
        const stored = link.publishAcknowledged(
          prefix + channel,
          payload,
          acknowledgeTimeout,
          epoch === undefined ? undefined : numbering?.store
        )
        return epoch === undefined
          ? Effect.as(stored, undefined)
          : Effect.map(stored, (offset) => offset === undefined ? undefined : { epoch, offset })
      }),
    subscribe: (channel, onMessage, subscribeOptions) => {
      const onResume = subscribeOptions?.onResume
      const positions = subscribeOptions?.positions === true
      return Effect.acquireRelease(
        Effect.sync(() => subscriptions.add(channel, onMessage, onResume, positions)),
        () => Effect.sync(() => subscriptions.remove(channel, onMessage, onResume, positions))
      )
    },
    isReady: Effect.sync(() => link.isReady),
    numbering: numbering === undefined ? "none" : "bus"
  })
  return {
    bus,
    connection: () => link.connection,
    numbering: () => tracker?.state ?? pending
  } satisfies NatsBus
})
