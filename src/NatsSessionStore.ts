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
import { Kvm, type KV } from "@nats-io/kv"
import type { NatsConnection } from "@nats-io/transport-node"
import { Config, Deferred, Duration, Effect, Layer, Option, Schedule, Scope } from "effect"
import { checkedOr, natsServersOption, parseNatsName } from "./internal/server/config.ts"
import { clientConfig, type ClientOptions, dial, noJetStream, serversShown } from "./internal/nats/client.ts"
import { makeMemory, SessionStore, SessionStoreError, type StoredSession } from "./SessionStore.ts"

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
  /** The wait between attempts to reach NATS, and to open the bucket (default 1 s). */
  readonly connectRetry?: Duration.Input | undefined
}

/**
 * The store's {@link SessionStore} `limitation` when NATS has no JetStream.
 *
 * @since 0.1.0
 * @category constants
 */
export const noJetStreamLimitation = "sessions on this node only: NATS has no JetStream"

const unavailable = (message: string, cause?: unknown) =>
  new SessionStoreError({ reason: "Unavailable", message, cause })

const encoder = new TextEncoder()

/**
 * Where the store stands:
 * - `connecting`: NATS has not answered yet; operations fail.
 * - `opening`: connected, opening the bucket; operations fail.
 * - `kv`: sessions in the bucket; operations fail while the connection is lost.
 * - `memory`: NATS has no JetStream; sessions in memory, on this node only.
 * - `closed`: the Layer is closed; operations fail.
 */
type State = "connecting" | "opening" | "kv" | "memory" | "closed"

/**
 * Makes the store. It does not fail, and waits for one attempt only: see the
 * module's notes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function*(options: Options) {
  const servers = serversShown(options)
  const ttl = Duration.toMillis(Duration.fromInputUnsafe(options.ttl ?? Duration.hours(24)))
  const bucket = options.bucket ?? "lhttp-sessions"
  const name = options.name ?? "effect-lhttp-sessions"
  const retry = Schedule.spaced(options.connectRetry ?? "1 second")
  const scope = yield* Effect.scope
  let state: State = "connecting"
  let connection: NatsConnection | undefined
  // whether the connection is up (false from a disconnect to the reconnect)
  let connected = false
  let kv: KV | undefined
  let memory: SessionStore["Service"] | undefined
  // the first attempt ended, whatever its outcome: the Layer is built then
  const firstAttempt = yield* Deferred.make<void>()
  const attempted = Deferred.succeed(firstAttempt, undefined)

  // added before the fiber below is forked, so it runs after that fiber was interrupted
  yield* Effect.addFinalizer(() =>
    Effect.promise(async () => {
      const nc = connection
      const wasConnected = connected
      state = "closed"
      connection = undefined
      connected = false
      kv = undefined
      if (nc === undefined || nc.isClosed()) return
      // draining waits for the server: only when there is one
      if (wasConnected) await nc.drain().catch(() => nc.close()).catch(() => undefined)
      else await nc.close().catch(() => undefined)
    })
  )

  const watch = async (nc: NatsConnection) => {
    for await (const status of nc.status()) {
      if (connection !== nc) return
      if (status.type === "disconnect" || status.type === "close") connected = false
      else if (status.type === "reconnect") connected = true
    }
  }

  let toldUnreachable = false
  const reach = dial(options, name, (_, cause) => unavailable(`the session store cannot reach NATS at ${servers}`, cause)).pipe(
    Effect.tapError(() =>
      Effect.andThen(
        Effect.suspend(() => {
          if (toldUnreachable) return Effect.void
          toldUnreachable = true
          return Effect.logInfo(`sessions: NATS unreachable at ${servers}; retrying, sessions are unavailable until it answers`)
        }),
        attempted
      )
    ),
    Effect.retry(retry)
  )

  let toldUnopened = false
  // the bucket, or none when that NATS has no JetStream; other failures are retried
  const open = (nc: NatsConnection) =>
    Effect.tryPromise({ try: () => new Kvm(nc).create(bucket, { ttl }), catch: (cause) => cause }).pipe(
      Effect.map(Option.some),
      Effect.catchIf(noJetStream, () => Effect.succeed(Option.none<KV>())),
      Effect.tapError((cause) =>
        Effect.andThen(
          Effect.suspend(() => {
            if (toldUnopened) return Effect.void
            toldUnopened = true
            return Effect.logWarning(
              `sessions: cannot open the NATS KV bucket ${JSON.stringify(bucket)} at ${servers} (${String(cause)}); retrying`
            )
          }),
          attempted
        )
      ),
      Effect.retry(retry)
    )

  const run = Effect.gen(function*() {
    const nc = yield* reach
    if (state === "closed") return yield* Effect.promise(() => nc.close().catch(() => undefined))
    connection = nc
    connected = true
    state = "opening"
    void watch(nc)
    const opened = yield* open(nc)
    if (Option.isSome(opened)) {
      kv = opened.value
      state = "kv"
      yield* Effect.logInfo(`sessions: in the NATS KV bucket ${JSON.stringify(bucket)} at ${servers}`)
      return
    }
    memory = yield* makeMemory().pipe(Scope.provide(scope))
    state = "memory"
    connection = undefined
    connected = false
    yield* Effect.logWarning(`sessions: NATS at ${servers} has no JetStream; sessions are kept on this node only`)
    yield* Effect.promise(() => nc.close().catch(() => undefined))
  })

  yield* Effect.forkScoped(Effect.ensuring(run, attempted))
  yield* Deferred.await(firstAttempt)

  const notReady = () =>
    unavailable(
      state === "connecting"
        ? "the session store has not reached NATS yet"
        : state === "opening"
        ? "the session store has not opened its NATS KV bucket yet"
        : state === "closed"
        ? "the session store is closed"
        : "the session store lost its NATS connection and is reconnecting"
    )

  /** Runs an operation on the store that serves now, or fails at once when none does. */
  const serve = <A>(
    inMemory: (store: SessionStore["Service"]) => Effect.Effect<A, SessionStoreError>,
    inKv: (kv: KV) => Effect.Effect<A, SessionStoreError>
  ): Effect.Effect<A, SessionStoreError> =>
    Effect.suspend(() => {
      if (state === "memory" && memory !== undefined) return inMemory(memory)
      if (state === "kv" && kv !== undefined && connected) return inKv(kv)
      return Effect.fail(notReady())
    })

  const failed = (what: string) => (cause: unknown) => unavailable(`the session store failed to ${what}: ${String(cause)}`, cause)

  return SessionStore.of({
    get: (key) =>
      serve((store) => store.get(key), (kv) =>
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
        )),
    set: (key, session) =>
      serve((store) => store.set(key, session), (kv) =>
        Effect.asVoid(
          Effect.tryPromise({ try: () => kv.put(key, encoder.encode(JSON.stringify(session))), catch: failed("write a session") })
        )),
    delete: (key) =>
      serve(
        (store) => store.delete(key),
        (kv) => Effect.asVoid(Effect.tryPromise({ try: () => kv.delete(key), catch: failed("delete a session") }))
      ),
    isReady: Effect.sync(() => state === "memory" || (state === "kv" && connected)),
    limitation: Effect.sync(() => state === "memory" ? noJetStreamLimitation : undefined)
  })
})

/**
 * The NATS KV store as a Layer. It does not fail: NATS unreachable, the store
 * is not ready until NATS answers; NATS without JetStream, sessions are kept
 * on this node (see the module's notes). Closing it drains the connection.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<SessionStore> =>
  Layer.effect(SessionStore, make(options))

// LHTTP_SESSION_BUCKET: a KV bucket's name
const bucketConfig = checkedOr("LHTTP_SESSION_BUCKET", "lhttp-sessions", parseNatsName)

/**
 * The store's settings from the environment, as the NATS bus reads them:
 * `LHTTP_NATS_URL` (comma-separated), `LHTTP_NATS_TOKEN`, `LHTTP_NATS_USER`,
 * `LHTTP_NATS_PASS`, and `LHTTP_SESSION_BUCKET` (default `lhttp-sessions`;
 * letters, digits, `_` and `-`).
 *
 * @since 0.1.0
 * @category config
 */
export const config = Config.all([
  clientConfig,
  bucketConfig
]).pipe(Config.map(([client, bucket]) => ({ ...client, bucket })))

/**
 * {@link layer} with the settings of {@link config} and `ttl`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options?: { readonly ttl?: Duration.Input | undefined }
): Layer.Layer<SessionStore, Config.ConfigError> =>
  Layer.unwrap(Effect.map(config, (env) => layer({ ...env, ttl: options?.ttl })))

/**
 * The store of the main job: NATS KV when `LHTTP_NATS_URL` is set (on a NATS
 * without JetStream, sessions on this node only, with one warning line; NATS
 * not up yet, not ready until it is), `otherwise` (in memory) when not.
 * `LHTTP_NATS_URL` and `LHTTP_SESSION_BUCKET` are checked either way.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFromEnv = (
  otherwise: Layer.Layer<SessionStore>
): Layer.Layer<SessionStore, Config.ConfigError> =>
  Layer.unwrap(
    Effect.map(
      // the bucket is checked without NATS too: a bad value is a mistake either way
      Config.all([natsServersOption, bucketConfig]),
      ([url]) => Option.isSome(url) ? layerConfig() : otherwise
    )
  )
