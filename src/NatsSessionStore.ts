/**
 * The session store in a NATS KV bucket (JetStream): sessions outlive the
 * node that created them, and every node of a cluster restores them. Import
 * it as `effect-lhttp/NatsSessionStore`; it needs `@nats-io/transport-node`
 * and `@nats-io/kv`, and a nats-server with JetStream (`nats-server -js`).
 *
 * A session is one key of the bucket (its value: the data and the expiry, as
 * JSON); the bucket's maximum age is the sessions' ttl, so NATS removes what
 * nobody refreshed.
 *
 * The store starts on any NATS, at any time:
 * - Building the Layer makes one attempt: when NATS answers, the store opens
 *   the bucket (or falls back, below) before the Layer is built. When it does
 *   not, the Layer is built anyway and the store retries every
 *   `connectRetry` in the background, logging once that it does.
 * - Until NATS answered and the bucket is open, `isReady` is false and every
 *   operation fails at once with a `SessionStoreError` (reason
 *   `Unavailable`): nothing is accepted that could be lost. The same holds
 *   while a connection that was open is lost (the client reconnects for
 *   ever); an operation already sent when the connection drops fails after
 *   the JetStream request timeout (5 seconds).
 * - A NATS without JetStream: the store keeps sessions in memory, on this
 *   node only (as `SessionStore.layerMemory`), says so in one warning line
 *   (`sessions: NATS at … has no JetStream; sessions are kept on this node
 *   only`), and `limitation` says it too. It closes its NATS connection and
 *   does not look again: a restart of the node uses JetStream once NATS has
 *   it.
 * - Closing the Layer drains the connection (closes it when NATS is away),
 *   and closes one that a pending attempt opens after that.
 *
 * @since 0.1.0
 */
import { Config, type Duration, Effect, Layer, type Scope } from "effect"
import * as NatsConfig from "./internal/nats/config.ts"
import * as internal from "./internal/nats/sessionStore.ts"
import { checkedOr } from "./internal/server/config.ts"
import { layerMemory, SessionStore } from "./SessionStore.ts"

/**
 * Options of the NATS KV store: how to reach NATS (`servers`, and `token` or
 * `user` and `pass`, as every NATS module takes them), the `bucket`, the
 * sessions' `ttl`, the client `name` and `connectRetry`; each field says its
 * default.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends internal.Options {}

/**
 * The store's {@link SessionStore} `limitation` when NATS has no JetStream.
 *
 * @since 0.1.0
 * @category constants
 */
export const noJetStreamLimitation: string = internal.noJetStreamLimitation

/**
 * Makes the store. It does not fail, and waits for one attempt only: see the
 * module's notes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options: Options) => Effect.Effect<SessionStore["Service"], never, Scope.Scope> = internal.make

/**
 * The NATS KV store as a Layer. It does not fail: NATS unreachable, the store
 * is not ready until NATS answers; NATS without JetStream, sessions are kept
 * on this node (see the module's notes). Closing it drains the connection.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<SessionStore> => Layer.effect(SessionStore, make(options))

/**
 * `LHTTP_SESSION_BUCKET`, the KV bucket (default `lhttp-sessions`; letters,
 * digits, `_` and `-`).
 *
 * @since 0.1.0
 * @category config
 */
export const bucketConfig: Config.Config<string> = checkedOr(
  "LHTTP_SESSION_BUCKET",
  "lhttp-sessions",
  NatsConfig.parseName
)

/**
 * The store's settings from the environment: how to reach NATS, as every
 * NATS module reads it (`LHTTP_NATS_URL`, comma-separated and required;
 * `LHTTP_NATS_TOKEN`; `LHTTP_NATS_USER` and `LHTTP_NATS_PASS`), and the
 * bucket of {@link bucketConfig}.
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = Config.all([
  NatsConfig.clientConfig,
  bucketConfig,
  NatsConfig.replicasConfig
]).pipe(Config.map(([client, bucket, replicas]) => ({ ...client, bucket, replicas })))

/**
 * {@link layer} with the settings of {@link config} and `ttl`:
 * `LHTTP_NATS_URL` is required.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options?: { readonly ttl?: Duration.Input | undefined }
): Layer.Layer<SessionStore, Config.ConfigError> =>
  Layer.unwrap(Effect.map(config, (env) => layer({ ...env, ttl: options?.ttl })))

/**
 * The store of a program configured by the environment: {@link layerConfig}
 * (with the default ttl) when `LHTTP_NATS_URL` is set (on a NATS without
 * JetStream, sessions on this node only, with one warning line; NATS not up
 * yet, not ready until it is), the memory store (`SessionStore.layerMemory`)
 * when it is not. `LHTTP_NATS_URL` and `LHTTP_SESSION_BUCKET` are checked
 * either way.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFromEnv: Layer.Layer<SessionStore, Config.ConfigError> = NatsConfig.layerWhenNats(
  bucketConfig,
  layerConfig(),
  layerMemory
)
