/**
 * Where sessions live: a key-value service with expiry. `layerMemory` keeps
 * them in this process (the default); `effect-lhttp/NatsSessionStore` keeps
 * them in a NATS KV bucket, so that a session outlives the node that created
 * it. An app with a store of its own (a database) provides this service: its
 * `get` and `set` are the load and save hooks of sessions.
 *
 * @since 0.1.0
 */
import { Clock, Context, Data, Duration, Effect, Layer, Option } from "effect"

/**
 * A stored session: its data (any JSON value) and when it expires (ms since
 * the epoch).
 *
 * @since 0.1.0
 * @category models
 */
export interface StoredSession {
  readonly data: unknown
  readonly expiresAt: number
}

/**
 * A store that could not be read or written.
 *
 * @since 0.1.0
 * @category errors
 */
export class SessionStoreError extends Data.TaggedError("SessionStoreError")<{
  readonly reason: "Unavailable" | "Invalid"
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * The session store.
 *
 * @since 0.1.0
 * @category services
 */
export class SessionStore extends Context.Service<SessionStore, {
  /** The session under `key`, unless it is unknown or expired. */
  readonly get: (key: string) => Effect.Effect<Option.Option<StoredSession>, SessionStoreError>
  /** Writes the session under `key`. */
  readonly set: (key: string, session: StoredSession) => Effect.Effect<void, SessionStoreError>
  /** Removes the session under `key`; an unknown key is ignored. */
  readonly delete: (key: string) => Effect.Effect<void, SessionStoreError>
  /**
   * Whether the store can serve now: false while it cannot yet (or for the
   * moment), e.g. the NATS store before NATS answered, or while its
   * connection is lost; its operations then fail with a
   * `SessionStoreError` (reason `Unavailable`). A store without it is always
   * ready (the in-memory store).
   *
   * @since 0.1.0
   */
  readonly isReady?: Effect.Effect<boolean> | undefined
  /**
   * One line saying what the store cannot do here, e.g. `sessions on this
   * node only: NATS has no JetStream` when the NATS store fell back to
   * memory; `undefined` when nothing is limited. It names no server and no
   * credential: the server may show it on its health routes and metrics. A
   * store without it has no limitation.
   *
   * @since 0.1.0
   */
  readonly limitation?: Effect.Effect<string | undefined> | undefined
}>()("effect-lhttp/SessionStore") {}

/**
 * Makes an in-memory store. Expired sessions are dropped when read, and by a
 * sweep once a minute.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory = Effect.fnUntraced(function*() {
  const sessions = new Map<string, StoredSession>()
  const sweep = Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    for (const [key, session] of sessions) if (session.expiresAt <= now) sessions.delete(key)
  })
  yield* Effect.forkScoped(Effect.forever(Effect.andThen(Effect.sleep(Duration.minutes(1)), sweep)))
  return SessionStore.of({
    get: (key) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const session = sessions.get(key)
        if (session === undefined) return Option.none()
        if (session.expiresAt <= now) {
          sessions.delete(key)
          return Option.none()
        }
        return Option.some(session)
      }),
    set: (key, session) => Effect.sync(() => void sessions.set(key, session)),
    delete: (key) => Effect.sync(() => void sessions.delete(key))
  })
})

/**
 * The in-memory store as a Layer: sessions live as long as this process.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<SessionStore> = Layer.effect(SessionStore, makeMemory())
