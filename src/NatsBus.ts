/**
 * The NATS bus: many server processes on one NATS (cluster) form one LHTTP
 * cluster. Import it as `effect-lhttp/NatsBus`; it needs
 * `@nats-io/transport-node`.
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
import { Config, Effect, Layer, Option, type Scope } from "effect"
import { Bus, type BusError, layerMemory } from "./Bus.ts"
import * as internal from "./internal/nats/bus.ts"
import * as NatsConfig from "./internal/nats/config.ts"
import * as ReplayBuffer from "./internal/nats/replayBuffer.ts"

/**
 * Options of the NATS bus: how to reach NATS (`servers`, and `token` or
 * `user` and `pass`, as every NATS module takes them), the client `name`,
 * the `subjectPrefix`, the reconnects (`reconnectTimeWait`,
 * `maxReconnectAttempts`, `connectRetry`) and the reconnect buffer
 * (`maxPendingBytes`, `maxPendingMessages`, `replayDelay`); each field says
 * its default.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends internal.Options {}

/**
 * The default subject prefix.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultSubjectPrefix: string = NatsConfig.defaultSubjectPrefix

/**
 * The default bound, in bytes, of what waits while NATS is disconnected.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultMaxPendingBytes: number = internal.defaultMaxPendingBytes

/**
 * The default bound, in messages, of what waits while NATS is disconnected.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultMaxPendingMessages: number = internal.defaultMaxPendingMessages

/**
 * What a buffered message costs beyond its subject and payload, in bytes (the
 * protocol line, and the buffer's own bookkeeping).
 *
 * @since 0.1.0
 * @category constants
 */
export const messageOverhead: number = ReplayBuffer.messageOverhead

/**
 * Makes the NATS bus. It does not wait for NATS: see the module's notes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Bus["Service"], BusError, Scope.Scope> =>
  Effect.map(internal.make(options), (made) => made.bus)

/**
 * The NATS bus as a Layer. Closing it drains the NATS connection.
 *
 * @since 0.1.0
 * @category layers
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
 * @category config
 */
export const subjectPrefixConfig: Config.Config<string> = NatsConfig.subjectPrefixConfig

/**
 * The NATS bus's settings read from the environment: how to reach NATS, as
 * every NATS module reads it (`LHTTP_NATS_URL`: comma-separated servers such
 * as `nats://127.0.0.1:4222`, each checked: `nats:`, `tls:`, `ws:` or `wss:`,
 * or `host[:port]`; `LHTTP_NATS_TOKEN`; `LHTTP_NATS_USER` and
 * `LHTTP_NATS_PASS`), `LHTTP_NATS_PREFIX` (`lhttp.` when unset; set and
 * empty, the empty prefix: see {@link subjectPrefixConfig}) and
 * `LHTTP_NATS_NAME`.
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = Config.all({
  client: NatsConfig.clientConfig,
  subjectPrefix: subjectPrefixConfig,
  name: Config.option(Config.String("LHTTP_NATS_NAME")).pipe(Config.map(Option.getOrUndefined))
}).pipe(Config.map(({ client, ...bus }) => ({ ...client, ...bus })))

/**
 * {@link layer} with the settings of {@link config}: `LHTTP_NATS_URL` is
 * required.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: Layer.Layer<Bus, BusError | Config.ConfigError> = Layer.unwrap(Effect.map(config, layer))

/**
 * The bus of a program configured by the environment: {@link layerConfig}
 * when `LHTTP_NATS_URL` is set, the memory bus (`Bus.layerMemory()`) when it
 * is not. `LHTTP_NATS_URL` and `LHTTP_NATS_PREFIX` are checked either way.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFromEnv: Layer.Layer<Bus, BusError | Config.ConfigError> = NatsConfig.layerWhenNats(
  subjectPrefixConfig,
  layerConfig,
  layerMemory()
)
