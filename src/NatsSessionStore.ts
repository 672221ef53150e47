/**
 * The session store in a NATS KV bucket (JetStream): sessions outlive the
 * node that created them, and every node of a cluster restores them. Import
 * it as `effect-lhttp/NatsSessionStore`; it needs `@nats-io/transport-node`
 * and `@nats-io/kv`, and a nats-server with JetStream (`nats-server -js`).
 *
 * A session is one key of the bucket (its value: the data and the expiry, as
 * JSON); the bucket's maximum age is the sessions' ttl, so NATS removes what
 * nobody refreshed. A nats-server without JetStream fails the Layer when it
 * is built, with a message saying so.
 *
 * @since 0.1.0
 */
import { Kvm, type KV } from "@nats-io/kv"
import { Config, Duration, Effect, Layer, Option } from "effect"
import { clientConfig, type ClientOptions, connectScoped, noJetStream, serversOf } from "./internal/natsClient.ts"
import { SessionStore, SessionStoreError, type StoredSession } from "./SessionStore.ts"

/**
 * Options of the NATS KV store.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends ClientOptions {
  /** The bucket (default `lhttp-sessions`). */
  readonly bucket?: string | undefined
  /** How long a session lives after it was last written (default 24 hours): the bucket's maximum age. */
  readonly ttl?: Duration.Input | undefined
  /** The client name NATS shows in its monitoring (default `effect-lhttp-sessions`). */
  readonly name?: string | undefined
}

const unavailable = (message: string, cause?: unknown) =>
  new SessionStoreError({ reason: "Unavailable", message, cause })

const encoder = new TextEncoder()

/**
 * Makes the store: connects to NATS and opens (or creates) the bucket. Fails
 * when NATS is unreachable or has no JetStream.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function*(options: Options) {
  const servers = serversOf(options).join(", ")
  const ttl = Duration.toMillis(Duration.fromInputUnsafe(options.ttl ?? Duration.hours(24)))
  const bucket = options.bucket ?? "lhttp-sessions"
  const nc = yield* connectScoped(
    options,
    options.name ?? "effect-lhttp-sessions",
    (at, cause) => unavailable(`the session store cannot reach NATS at ${at}`, cause)
  )
  const kv: KV = yield* Effect.tryPromise({
    try: () => new Kvm(nc).create(bucket, { ttl }),
    catch: (cause) =>
      unavailable(
        noJetStream(cause)
          ? `NATS at ${servers} has no JetStream: sessions need it (start nats-server with -js)`
          : `the session store cannot open the NATS KV bucket ${JSON.stringify(bucket)}: ${String(cause)}`,
        cause
      )
  })

  const failed = (what: string) => (cause: unknown) => unavailable(`the session store failed to ${what}: ${String(cause)}`, cause)

  return SessionStore.of({
    get: (key) =>
      Effect.tryPromise({ try: () => kv.get(key), catch: failed("read a session") }).pipe(
        Effect.map((entry) => {
          if (entry === null || entry.operation !== "PUT" || entry.value.length === 0) return Option.none()
          try {
            const session = entry.json<StoredSession>()
            return session.expiresAt > Date.now() ? Option.some(session) : Option.none()
          } catch {
            return Option.none()
          }
        })
      ),
    set: (key, session) =>
      Effect.asVoid(
        Effect.tryPromise({ try: () => kv.put(key, encoder.encode(JSON.stringify(session))), catch: failed("write a session") })
      ),
    delete: (key) => Effect.asVoid(Effect.tryPromise({ try: () => kv.delete(key), catch: failed("delete a session") }))
  })
})

/**
 * The NATS KV store as a Layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<SessionStore, SessionStoreError> =>
  Layer.effect(SessionStore, make(options))

/**
 * The store's settings from the environment, as the NATS bus reads them:
 * `LHTTP_NATS_URL` (comma-separated), `LHTTP_NATS_TOKEN`, `LHTTP_NATS_USER`,
 * `LHTTP_NATS_PASS`, and `LHTTP_SESSION_BUCKET` (default `lhttp-sessions`).
 *
 * @since 0.1.0
 * @category config
 */
export const config = Config.all([
  clientConfig,
  Config.String("LHTTP_SESSION_BUCKET").pipe(Config.withDefault("lhttp-sessions"))
]).pipe(Config.map(([client, bucket]) => ({ ...client, bucket })))

/**
 * {@link layer} with the settings of {@link config} and `ttl`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options?: { readonly ttl?: Duration.Input | undefined }
): Layer.Layer<SessionStore, SessionStoreError | Config.ConfigError> =>
  Layer.unwrap(Effect.map(config, (env) => layer({ ...env, ttl: options?.ttl })))

/**
 * The store of the main job: NATS KV when `LHTTP_NATS_URL` is set (failing
 * at start when that NATS has no JetStream), `otherwise` (in memory) when not.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFromEnv = (
  otherwise: Layer.Layer<SessionStore>
): Layer.Layer<SessionStore, SessionStoreError | Config.ConfigError> =>
  Layer.unwrap(
    Effect.map(
      Config.option(Config.String("LHTTP_NATS_URL")),
      (url) => Option.isSome(url) ? layerConfig() : otherwise
    )
  )
