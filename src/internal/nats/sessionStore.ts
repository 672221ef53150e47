/**
 * The NATS KV session store's implementation (the public face, its Layers
 * and its environment, is `NatsSessionStore.ts`): its options, and the store
 * with its states, from the first attempt to reach NATS to the bucket (or
 * sessions in memory on a NATS without JetStream).
 */
import { type KV, Kvm } from "@nats-io/kv"
import type { NatsConnection } from "@nats-io/transport-node"
import { Deferred, Duration, Effect, Option, Schedule, Scope } from "effect"
import { makeMemory, SessionStore, SessionStoreError, type StoredSession } from "../../SessionStore.ts"
import { type ClientOptions, dial, noJetStream, serversShown } from "./client.ts"

/** Options of the NATS KV store: how to reach NATS, the bucket and the sessions' time to live. */
export interface Options extends ClientOptions {
  /** The bucket (default `lhttp-sessions`). */
  readonly bucket?: string | undefined
  /** How long a session lives after it was last written (default 24 hours): the bucket's maximum age. */
  readonly ttl?: Duration.Input | undefined
  /** How many servers of a NATS cluster keep the bucket (default 1; 3 outlive one server). */
  readonly replicas?: number | undefined
  /** The client name NATS shows in its monitoring (default `effect-lhttp-sessions`). */
  readonly name?: string | undefined
  /** The wait between attempts to reach NATS, and to open the bucket (default 1 s). */
  readonly connectRetry?: Duration.Input | undefined
}

/** The store's `limitation` when NATS has no JetStream. */
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

/** Makes the store. It does not fail, and waits for one attempt only: see `NatsSessionStore.ts`'s notes. */
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
  const reach = dial(
    options,
    { name },
    (cause) => unavailable(`the session store cannot reach NATS at ${servers}`, cause)
  ).pipe(
    Effect.tapError(() =>
      Effect.andThen(
        Effect.suspend(() => {
          if (toldUnreachable) return Effect.void
          toldUnreachable = true
          return Effect.logInfo(
            `sessions: NATS unreachable at ${servers}; retrying, sessions are unavailable until it answers`
          )
        }),
        attempted
      )
    ),
    Effect.retry(retry)
  )

  let toldUnopened = false
  // the bucket, or none when that NATS has no JetStream; other failures are retried
  const open = (nc: NatsConnection) =>
    Effect.tryPromise({
      try: () => new Kvm(nc).create(bucket, { ttl, replicas: options.replicas ?? 1 }),
      catch: (cause) => cause
    }).pipe(
      Effect.map(Option.some),
      Effect.catchIf(noJetStream, () => Effect.succeed(Option.none<KV>())),
      Effect.tapError((cause) =>
        Effect.andThen(
          Effect.suspend(() => {
            if (toldUnopened) return Effect.void
            toldUnopened = true
            return Effect.logWarning(
              `sessions: cannot open the NATS KV bucket ${JSON.stringify(bucket)} at ${servers} (${
                String(cause)
              }); retrying`
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

  const failed = (what: string) => (cause: unknown) =>
    unavailable(`the session store failed to ${what}: ${String(cause)}`, cause)

  return SessionStore.of({
    get: (key) =>
      serve(
        (store) => store.get(key),
        (kv) =>
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
          )
      ),
    set: (key, session) =>
      serve((store) => store.set(key, session), (kv) =>
        Effect.asVoid(
          Effect.tryPromise({
            try: () => kv.put(key, encoder.encode(JSON.stringify(session))),
            catch: failed("write a session")
          })
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
