/**
 * The NATS bus: many server processes on one NATS (cluster) form one LHTTP
 * cluster. The only module that imports `@nats-io/transport-node`.
 *
 * - A channel is the subject `<prefix><channel>` (prefix `lhttp.` by default;
 *   an empty prefix interoperates with original lhttp nodes, whose subject is
 *   the channel id). The Bus takes channel ids the Hub has already validated,
 *   so no client can name a wildcard or a system subject.
 * - One NATS subscription per channel per process (the Hub refcounts), never
 *   a wildcard; the payload is the frame's text, delivered verbatim.
 * - NATS unreachable at start: the server starts anyway, `isReady` is false,
 *   publishes fail with a `BusError`, and the first connection is retried
 *   until it succeeds.
 * - Connection lost: the client reconnects (to another server of the NATS
 *   cluster when there is one) and restores its subscriptions. Publishes made
 *   from the moment the bus sees the disconnection wait in the bus's own
 *   buffer (the NATS client's buffer is reset on every reconnect attempt, so
 *   it loses them), bounded by `maxPendingBytes` and `maxPendingMessages`;
 *   past the bound, publishing fails with a `BusError` (reason `Unavailable`)
 *   and nothing of that publish is kept. After the reconnect the buffer keeps
 *   filling for `replayDelay`, long enough for the other nodes that lost the
 *   same server to have re-subscribed; then it is sent, in publish order,
 *   before anything published later, and flushed.
 * - Delivery is at most once otherwise, as core NATS is: what was handed to a
 *   connection that then died, before the bus saw it die, can be lost.
 * - Each state change is logged once.
 *
 * @since 0.1.0
 */
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node"
import { Config, Duration, Effect, Layer, Metric, Option, Redacted, Result, Schedule } from "effect"
import { Bus, BusError } from "./Bus.ts"
import * as Channel from "./Channel.ts"
import { stringKeepingEmpty } from "./internal/config.ts"

/**
 * Options of the NATS bus.
 *
 * @since 0.1.0
 */
export interface Options {
  /** The NATS server(s): `nats://host:port`, one or a list. */
  readonly servers: string | ReadonlyArray<string>
  /** The client name NATS shows in its monitoring (default `effect-lhttp`). */
  readonly name?: string | undefined
  /** Prepended to a channel to make its subject (default `lhttp.`; `""` for original lhttp nodes). */
  readonly subjectPrefix?: string | undefined
  /** A token, for servers that require one. */
  readonly token?: Redacted.Redacted<string> | string | undefined
  /** A user and password, for servers that require them. */
  readonly user?: string | undefined
  readonly pass?: Redacted.Redacted<string> | string | undefined
  /** The wait between reconnect attempts (default 1 s). */
  readonly reconnectTimeWait?: Duration.Input | undefined
  /** Reconnect attempts per server before giving up; -1 never gives up (default). */
  readonly maxReconnectAttempts?: number | undefined
  /** The wait between attempts of the first connection (default 1 s). */
  readonly connectRetry?: Duration.Input | undefined
  /**
   * Bytes that may wait in the buffer while disconnected before publishing
   * fails (default 8 MiB). A message counts its payload's UTF-8 bytes, its
   * subject and {@link messageOverhead}.
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
}

/**
 * The default subject prefix.
 *
 * @since 0.1.0
 */
export const defaultSubjectPrefix = "lhttp."

/**
 * The default bound, in bytes, of what waits while NATS is disconnected.
 *
 * @since 0.1.0
 */
export const defaultMaxPendingBytes = 8 * 1024 * 1024

/**
 * The default bound, in messages, of what waits while NATS is disconnected.
 *
 * @since 0.1.0
 */
export const defaultMaxPendingMessages = 100_000

/**
 * What a buffered message costs beyond its subject and payload, in bytes (the
 * protocol line, and the buffer's own bookkeeping).
 *
 * @since 0.1.0
 */
export const messageOverhead = 32

// reconnections of the bus, in the metrics
const reconnects = Metric.counter("lhttp_bus_reconnects_total", {
  description: "reconnections of the NATS bus",
  incremental: true
})

const reveal = (value: Redacted.Redacted<string> | string | undefined): string =>
  value === undefined ? "" : typeof value === "string" ? value : Redacted.value(value)

const validPrefix = (prefix: string): boolean =>
  prefix === "" || (prefix.endsWith(".") && Result.isSuccess(Channel.validate(prefix.slice(0, -1))))

interface Entry {
  readonly handlers: Set<(payload: string) => void>
  subscription: Subscription | undefined
}

/** A publish waiting for the connection. */
interface Pending {
  readonly subject: string
  readonly data: Uint8Array
}

/**
 * Where the bus stands:
 * - `connecting`: never connected yet; publishes fail.
 * - `connected`: publishes go to NATS at once.
 * - `disconnected`: the connection is lost and the client is reconnecting; publishes wait in the buffer.
 * - `holding`: reconnected, subscriptions restored; publishes still wait in the buffer until `replayDelay` has passed.
 * - `closed`: the bus is shut down, or the client gave up; publishes fail.
 */
type State = "connecting" | "connected" | "disconnected" | "holding" | "closed"

/**
 * Makes the NATS bus. It does not wait for NATS: see the module's notes.
 *
 * @since 0.1.0
 */
export const make = Effect.fnUntraced(function*(options: Options) {
  const prefix = options.subjectPrefix ?? defaultSubjectPrefix
  if (!validPrefix(prefix)) {
    return yield* new BusError({
      reason: "Unavailable",
      message: `the subject prefix ${JSON.stringify(prefix)} must be empty or valid channel tokens ending with "."`
    })
  }
  const servers = typeof options.servers === "string" ? [options.servers] : Array.from(options.servers)
  const maxPendingBytes = options.maxPendingBytes ?? defaultMaxPendingBytes
  const maxPendingMessages = options.maxPendingMessages ?? defaultMaxPendingMessages
  const reconnectTimeWait = Duration.fromInputUnsafe(options.reconnectTimeWait ?? "1 second")
  const replayDelay = Duration.toMillis(
    options.replayDelay === undefined
      ? Duration.sum(reconnectTimeWait, Duration.millis(250))
      : Duration.fromInputUnsafe(options.replayDelay)
  )
  const context = yield* Effect.context<never>()
  const log = (message: string) => {
    Effect.runForkWith(context)(Effect.logInfo(message))
  }
  const channels = new Map<string, Entry>()
  const decoder = new TextDecoder()
  const encoder = new TextEncoder()
  let connection: NatsConnection | undefined
  let state: State = "connecting"
  let pending: Array<Pending> = []
  let pendingBytes = 0
  // whether a publish was refused since the last replay (logged once)
  let full = false
  let replayTimer: ReturnType<typeof setTimeout> | undefined

  const open = (channel: string, entry: Entry) => {
    if (connection === undefined || connection.isClosed()) return
    entry.subscription = connection.subscribe(prefix + channel, {
      callback: (error, message) => {
        if (error !== null) return
        const payload = decoder.decode(message.data)
        for (const handler of entry.handlers) handler(payload)
      }
    })
  }

  const cancelReplay = () => {
    if (replayTimer !== undefined) clearTimeout(replayTimer)
    replayTimer = undefined
  }

  // Sends the buffer, in order, then flushes. Synchronous up to the flush: nothing published later can
  // overtake it, since the state becomes `connected` only once every buffered message is with the client.
  const replay = () => {
    cancelReplay()
    const nc = connection
    if (state !== "holding" || nc === undefined) return
    const batch = pending
    pending = []
    pendingBytes = 0
    full = false
    state = "connected"
    if (batch.length === 0) return
    let refused = 0
    for (const message of batch) {
      try {
        nc.publish(message.subject, message.data)
      } catch {
        refused++
      }
    }
    log(`NATS: sent ${batch.length - refused} messages published while disconnected`)
    if (refused > 0) log(`NATS: the client refused ${refused} buffered messages`)
    nc.flush().catch(() => log("NATS: the connection dropped while sending the buffer; some of it may be lost"))
  }

  const watch = async (nc: NatsConnection) => {
    for await (const status of nc.status()) {
      switch (status.type) {
        case "disconnect":
          if (state === "connected" || state === "holding") {
            log(`NATS: disconnected from ${status.server}; buffering publishes`)
            cancelReplay()
            state = "disconnected"
          }
          break
        case "reconnect":
          reconnects.updateUnsafe(1, context)
          if (state === "disconnected") {
            log(`NATS: reconnected to ${status.server}`)
            state = "holding"
            replayTimer = setTimeout(replay, replayDelay)
          }
          break
        case "close":
          cancelReplay()
          if (state !== "closed" && pending.length > 0) {
            log(`NATS: connection closed; ${pending.length} buffered messages dropped`)
          }
          state = "closed"
          pending = []
          pendingBytes = 0
          break
      }
    }
  }

  // a connection that opens after the bus was closed (the dial interrupted) is closed at once
  const dial = Effect.callback<NatsConnection, BusError>((resume, signal) => {
    connect({
      servers,
      name: options.name ?? "effect-lhttp",
      reconnect: true,
      maxReconnectAttempts: options.maxReconnectAttempts ?? -1,
      reconnectTimeWait: Duration.toMillis(reconnectTimeWait),
      ...(options.token === undefined ? {} : { token: reveal(options.token) }),
      ...(options.user === undefined ? {} : { user: options.user, pass: reveal(options.pass) })
    }).then(
      (nc) => {
        if (signal.aborted) void nc.close()
        else resume(Effect.succeed(nc))
      },
      (cause) => resume(Effect.fail(new BusError({ reason: "Unavailable", message: "NATS is unreachable", cause })))
    )
  })

  yield* dial.pipe(
    Effect.tapError(() =>
      Effect.sync(() => {
        if (state === "connecting" && connection === undefined) log(`NATS: unreachable at ${servers.join(", ")}, retrying`)
      })
    ),
    Effect.retry(Schedule.spaced(options.connectRetry ?? "1 second")),
    Effect.tap((nc) =>
      Effect.sync(() => {
        connection = nc
        state = "connected"
        log(`NATS: connected to ${nc.getServer()}`)
        for (const [channel, entry] of channels) open(channel, entry)
        void watch(nc)
      })
    ),
    Effect.forkScoped
  )

  yield* Effect.addFinalizer(() =>
    Effect.promise(async () => {
      const nc = connection
      // what waits for the replay goes out now; what waits for a reconnect cannot
      if (state === "holding") replay()
      const wasConnected = state === "connected"
      cancelReplay()
      if (pending.length > 0) log(`NATS: shutting down while disconnected; ${pending.length} buffered messages dropped`)
      state = "closed"
      pending = []
      pendingBytes = 0
      connection = undefined
      if (nc === undefined || nc.isClosed()) return
      // draining waits for the server: only when there is one
      if (wasConnected) await nc.drain().catch(() => nc.close())
      else await nc.close()
    })
  )

  const unavailable = (message: string) => Effect.fail(new BusError({ reason: "Unavailable", message }))

  const buffer = (subject: string, payload: string) => {
    const data = encoder.encode(payload)
    const maxPayload = connection?.info?.max_payload
    if (maxPayload !== undefined && data.length > maxPayload) {
      return Effect.fail(
        new BusError({ reason: "PublishFailed", message: `the payload exceeds NATS's max_payload (${maxPayload} bytes)` })
      )
    }
    const cost = data.length + subject.length + messageOverhead
    if (pendingBytes + cost > maxPendingBytes || pending.length >= maxPendingMessages) {
      if (!full) log(`NATS: the reconnect buffer is full (${pending.length} messages); publishes fail until it is sent`)
      full = true
      return unavailable("NATS is disconnected and the reconnect buffer is full")
    }
    pending.push({ subject, data })
    pendingBytes += cost
    return Effect.void
  }

  return Bus.of({
    publish: (channel, payload) =>
      Effect.suspend(() => {
        const subject = prefix + channel
        if (state === "disconnected" || state === "holding") return buffer(subject, payload)
        if (state !== "connected" || connection === undefined) {
          return unavailable(state === "closed" ? "the NATS connection is closed" : "not connected to NATS")
        }
        try {
          connection.publish(subject, payload)
          return Effect.void
        } catch (cause) {
          return Effect.fail(new BusError({ reason: "PublishFailed", message: "NATS refused the publish", cause }))
        }
      }),
    subscribe: (channel, onMessage) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          let entry = channels.get(channel)
          if (entry === undefined) {
            entry = { handlers: new Set(), subscription: undefined }
            channels.set(channel, entry)
            entry.handlers.add(onMessage)
            open(channel, entry)
          } else {
            entry.handlers.add(onMessage)
          }
        }),
        () =>
          Effect.sync(() => {
            const entry = channels.get(channel)
            if (entry === undefined) return
            entry.handlers.delete(onMessage)
            if (entry.handlers.size > 0) return
            channels.delete(channel)
            if (entry.subscription !== undefined && !entry.subscription.isClosed()) entry.subscription.unsubscribe()
          })
      ),
    isReady: Effect.sync(() => state === "connected" || state === "holding")
  })
})

/**
 * The NATS bus as a Layer. Closing it drains the NATS connection.
 *
 * @since 0.1.0
 */
export const layer = (options: Options): Layer.Layer<Bus, BusError> => Layer.effect(Bus, make(options))

/**
 * `LHTTP_NATS_PREFIX`, where set and empty means the empty prefix. Effect's
 * environment providers read a set-but-empty variable as missing (so a plain
 * `withDefault` would turn `LHTTP_NATS_PREFIX=` into `lhttp.`); when the
 * current provider has no value, the environment is read again keeping empty
 * strings, and only a variable that is not set at all gives the default.
 *
 * @since 0.1.0
 */
export const subjectPrefixConfig: Config.Config<string> = stringKeepingEmpty("LHTTP_NATS_PREFIX", defaultSubjectPrefix)

/**
 * The NATS bus's settings read from the environment: `LHTTP_NATS_URL`
 * (comma-separated servers), `LHTTP_NATS_PREFIX` (`lhttp.` when unset; set
 * and empty, the empty prefix: see {@link subjectPrefixConfig}),
 * `LHTTP_NATS_NAME`, `LHTTP_NATS_TOKEN`, `LHTTP_NATS_USER` and
 * `LHTTP_NATS_PASS`.
 *
 * @since 0.1.0
 */
export const config = Config.all({
  servers: Config.String("LHTTP_NATS_URL").pipe(
    Config.map((value) => value.split(",").map((server) => server.trim()).filter((server) => server !== ""))
  ),
  subjectPrefix: subjectPrefixConfig,
  name: Config.option(Config.String("LHTTP_NATS_NAME")),
  token: Config.option(Config.Redacted("LHTTP_NATS_TOKEN")),
  user: Config.option(Config.String("LHTTP_NATS_USER")),
  pass: Config.option(Config.Redacted("LHTTP_NATS_PASS"))
})

/**
 * {@link layer} with the settings of {@link config}.
 *
 * @since 0.1.0
 */
export const layerConfig: Layer.Layer<Bus, BusError | Config.ConfigError> = Layer.unwrap(
  Effect.map(config, (env) =>
    layer({
      servers: env.servers,
      subjectPrefix: env.subjectPrefix,
      name: Option.getOrUndefined(env.name),
      token: Option.getOrUndefined(env.token),
      user: Option.getOrUndefined(env.user),
      pass: Option.getOrUndefined(env.pass)
    }))
)

/**
 * The bus of the main job: NATS when `LHTTP_NATS_URL` is set, in memory
 * otherwise.
 *
 * @since 0.1.0
 */
export const layerFromEnv = (memory: Layer.Layer<Bus>): Layer.Layer<Bus, BusError | Config.ConfigError> =>
  Layer.unwrap(
    Effect.map(Config.option(Config.String("LHTTP_NATS_URL")), (url) => Option.isSome(url) ? layerConfig : memory)
  )
