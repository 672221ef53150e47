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
import { Config, type Duration, Effect, Layer, Option, type Redacted, type Scope } from "effect"
import { Bus, type BusError } from "./Bus.ts"
import { natsServersConfig, natsServersOption, parseSubjectPrefix, refine, stringKeepingEmpty } from "./internal/server/config.ts"
import * as internal from "./internal/nats/bus.ts"

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
export const defaultSubjectPrefix: string = internal.defaultSubjectPrefix

/**
 * The default bound, in bytes, of what waits while NATS is disconnected.
 *
 * @since 0.1.0
 */
export const defaultMaxPendingBytes: number = internal.defaultMaxPendingBytes

/**
 * The default bound, in messages, of what waits while NATS is disconnected.
 *
 * @since 0.1.0
 */
export const defaultMaxPendingMessages: number = internal.defaultMaxPendingMessages

/**
 * What a buffered message costs beyond its subject and payload, in bytes (the
 * protocol line, and the buffer's own bookkeeping).
 *
 * @since 0.1.0
 */
export const messageOverhead: number = internal.messageOverhead

/**
 * Makes the NATS bus. It does not wait for NATS: see the module's notes.
 *
 * @since 0.1.0
 */
export const make = (options: Options): Effect.Effect<Bus["Service"], BusError, Scope.Scope> =>
  Effect.map(internal.make(options), (made) => made.bus)

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
 * A prefix must be empty or channel name tokens ending with `.` (a
 * `ConfigError` at `LHTTP_NATS_PREFIX` otherwise).
 *
 * @since 0.1.0
 */
export const subjectPrefixConfig: Config.Config<string> = stringKeepingEmpty("LHTTP_NATS_PREFIX", defaultSubjectPrefix)
  .pipe(refine("LHTTP_NATS_PREFIX", parseSubjectPrefix))

/**
 * The NATS bus's settings read from the environment: `LHTTP_NATS_URL`
 * (comma-separated servers such as `nats://127.0.0.1:4222`, each checked:
 * `nats:`, `tls:`, `ws:` or `wss:`, or `host[:port]`), `LHTTP_NATS_PREFIX` (`lhttp.` when unset; set
 * and empty, the empty prefix: see {@link subjectPrefixConfig}),
 * `LHTTP_NATS_NAME`, `LHTTP_NATS_TOKEN`, `LHTTP_NATS_USER` and
 * `LHTTP_NATS_PASS`.
 *
 * @since 0.1.0
 */
export const config = Config.all({
  servers: natsServersConfig,
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
    // the prefix is checked without NATS too: a bad value is a mistake either way
    Effect.map(Config.all([natsServersOption, subjectPrefixConfig]), ([url]) => Option.isSome(url) ? layerConfig : memory)
  )
