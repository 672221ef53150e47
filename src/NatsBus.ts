/**
 * The NATS bus: many server processes on one NATS (cluster) form one LHTTP
 * cluster. The only module that imports `@nats-io/transport-node`.
 *
 * - A channel is the subject `<prefix><channel>` (prefix `lhttp.` by default;
 *   an empty prefix interoperates with original lhttp nodes, whose subject is
 *   the channel id). Channels are validated before any subject is built.
 * - One NATS subscription per channel per process (the Hub refcounts), never
 *   a wildcard; the payload is the frame's text, delivered verbatim.
 * - NATS unreachable at start: the server starts anyway, `isReady` is false,
 *   and the first connection is retried until it succeeds. Connection lost:
 *   the client reconnects (to another server of the NATS cluster when there is
 *   one) and restores its subscriptions; what is published meanwhile waits in
 *   the client's buffer up to `maxPendingBytes`, then publishing fails with a
 *   `BusError`. Each state change is logged once.
 * - Delivery is at most once, as core NATS is.
 *
 * @since 0.1.0
 */
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node"
import { Config, Duration, Effect, Layer, Option, Redacted, Result, Schedule } from "effect"
import { Bus, BusError } from "./Bus.ts"
import * as Channel from "./Channel.ts"

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
  /** Bytes that may be published while disconnected before publishing fails (default 8 MiB). */
  readonly maxPendingBytes?: number | undefined
}

/**
 * The default subject prefix.
 *
 * @since 0.1.0
 */
export const defaultSubjectPrefix = "lhttp."

const reveal = (value: Redacted.Redacted<string> | string | undefined): string =>
  value === undefined ? "" : typeof value === "string" ? value : Redacted.value(value)

const validPrefix = (prefix: string): boolean =>
  prefix === "" || (prefix.endsWith(".") && Result.isSuccess(Channel.validate(prefix.slice(0, -1))))

interface Entry {
  readonly handlers: Set<(payload: string) => void>
  subscription: Subscription | undefined
}

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
  const maxPendingBytes = options.maxPendingBytes ?? 8 * 1024 * 1024
  const context = yield* Effect.context<never>()
  const log = (message: string) => {
    Effect.runForkWith(context)(Effect.logInfo(message))
  }
  const channels = new Map<string, Entry>()
  const decoder = new TextDecoder()
  let connection: NatsConnection | undefined
  let connected = false
  let pendingBytes = 0

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

  const watch = async (nc: NatsConnection) => {
    for await (const status of nc.status()) {
      switch (status.type) {
        case "disconnect":
          if (connected) log(`NATS: disconnected from ${status.server}`)
          connected = false
          break
        case "reconnect":
          connected = true
          pendingBytes = 0
          log(`NATS: reconnected to ${status.server}`)
          break
        case "close":
          connected = false
          break
      }
    }
  }

  const dial = Effect.tryPromise({
    try: () =>
      connect({
        servers,
        name: options.name ?? "effect-lhttp",
        reconnect: true,
        maxReconnectAttempts: options.maxReconnectAttempts ?? -1,
        reconnectTimeWait: Duration.toMillis(Duration.fromInputUnsafe(options.reconnectTimeWait ?? "1 second")),
        ...(options.token === undefined ? {} : { token: reveal(options.token) }),
        ...(options.user === undefined ? {} : { user: options.user, pass: reveal(options.pass) })
      }),
    catch: (cause) => new BusError({ reason: "Unavailable", message: "NATS is unreachable", cause })
  })

  yield* dial.pipe(
    Effect.tapError(() =>
      Effect.sync(() => {
        if (!connected && connection === undefined) log(`NATS: unreachable at ${servers.join(", ")}, retrying`)
      })
    ),
    Effect.retry(Schedule.spaced(options.connectRetry ?? "1 second")),
    Effect.tap((nc) =>
      Effect.sync(() => {
        connection = nc
        connected = true
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
      connection = undefined
      connected = false
      if (nc !== undefined && !nc.isClosed()) await nc.drain().catch(() => nc.close())
    })
  )

  const invalid = (channel: string) => {
    const checked = Channel.validate(channel)
    return Result.isFailure(checked)
      ? new BusError({ reason: "PublishFailed", message: checked.failure.message })
      : undefined
  }

  return Bus.of({
    publish: (channel, payload) =>
      Effect.suspend(() => {
        const error = invalid(channel)
        if (error !== undefined) return Effect.fail(error)
        if (connection === undefined || connection.isClosed()) {
          return Effect.fail(new BusError({ reason: "Unavailable", message: "not connected to NATS" }))
        }
        if (!connected) {
          const size = payload.length * 3
          if (pendingBytes + size > maxPendingBytes) {
            return Effect.fail(
              new BusError({ reason: "Unavailable", message: "NATS is disconnected and the reconnect buffer is full" })
            )
          }
          pendingBytes += size
        }
        try {
          connection.publish(prefix + channel, payload)
          return Effect.void
        } catch (cause) {
          return Effect.fail(new BusError({ reason: "PublishFailed", message: "NATS refused the publish", cause }))
        }
      }),
    subscribe: (channel, onMessage) =>
      Effect.acquireRelease(
        Effect.suspend(() => {
          const checked = Channel.validate(channel)
          if (Result.isFailure(checked)) {
            return Effect.fail(new BusError({ reason: "SubscribeFailed", message: checked.failure.message }))
          }
          let entry = channels.get(channel)
          if (entry === undefined) {
            entry = { handlers: new Set(), subscription: undefined }
            channels.set(channel, entry)
            entry.handlers.add(onMessage)
            open(channel, entry)
          } else {
            entry.handlers.add(onMessage)
          }
          return Effect.void
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
    isReady: Effect.sync(() => connected)
  })
})

/**
 * The NATS bus as a Layer. Closing it drains the NATS connection.
 *
 * @since 0.1.0
 */
export const layer = (options: Options): Layer.Layer<Bus, BusError> => Layer.effect(Bus, make(options))

/**
 * The NATS bus's settings read from the environment: `LHTTP_NATS_URL`
 * (comma-separated servers), `LHTTP_NATS_PREFIX` (`lhttp.`),
 * `LHTTP_NATS_NAME`, `LHTTP_NATS_TOKEN`, `LHTTP_NATS_USER` and
 * `LHTTP_NATS_PASS`.
 *
 * @since 0.1.0
 */
export const config = Config.all({
  servers: Config.String("LHTTP_NATS_URL").pipe(
    Config.map((value) => value.split(",").map((server) => server.trim()).filter((server) => server !== ""))
  ),
  subjectPrefix: Config.String("LHTTP_NATS_PREFIX").pipe(Config.withDefault(defaultSubjectPrefix)),
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
