/**
 * Sessions that follow a client across reconnects and nodes. A processor or
 * hook creates a session for its connection (any JSON data, under an
 * unguessable key) and can update or close it; the client learns of it from
 * a `session` frame, keeps the key, and restores the session on its next
 * connection, to this node or another one:
 *
 * ```text
 * server -> client   LHTTP/1.0 session\r\nsession-key:<key>\r\n\r\n{"name":"alice"}
 * client -> server   LHTTP/1.0 session\r\nrestore:<key>\r\nid:7\r\n\r\n
 * server -> client   LHTTP/1.0 session\r\nsession-key:<key>\r\nid:7\r\n\r\n{"name":"alice"}
 *                    (or an error frame, 404 SessionNotFound)
 * server -> client   LHTTP/1.0 session\r\nclosed:<key>\r\n\r\n      (closed by the server)
 * ```
 *
 * Serve the `session` command by listing {@link SessionProcessor} with the
 * server's processors and providing {@link layer} (over a `SessionStore` and
 * the `Hub`). Every connection of a session, on every node, gets its updates,
 * its close and its signals: they travel on an internal channel of the bus.
 *
 * @since 0.1.0
 */
import { Clock, Context, Duration, Effect, Exit, Layer, Metric, Option, Result, Schema, Scope } from "effect"
import * as Channel from "./Channel.ts"
import * as Connection from "./Connection.ts"
import * as ErrorFrame from "./ErrorFrame.ts"
import * as Frame from "./Frame.ts"
import { Hub, type Subscriber } from "./Hub.ts"
import { secretKey } from "./internal/wire/ids.ts"
import * as Protocol from "./internal/wire/protocol.ts"
import * as Processor from "./Processor.ts"
import type { ProtocolError } from "./ProtocolError.ts"
import type { Rejection } from "./Rejection.ts"
import { SessionStore } from "./SessionStore.ts"

/**
 * The command of session frames.
 *
 * @since 0.1.0
 * @category constants
 */
export const command: typeof Protocol.Command.session = Protocol.Command.session

/**
 * The headers of session frames.
 *
 * @since 0.1.0
 * @category constants
 */
export const Header: typeof Protocol.SessionHeader = Protocol.SessionHeader

/**
 * A session as its connections see it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Session {
  readonly key: string
  readonly data: unknown
}

/**
 * Why a session operation failed; an error frame when it answers a message
 * (`404 SessionNotFound`, `503 SessionStoreUnavailable` when the store
 * failed, `503 BusUnavailable` when the bus that carries a session's frames
 * between nodes did, `400 InvalidSessionData`). `cause` is the failure
 * underneath, when there is one; it is never sent.
 *
 * @since 0.1.0
 * @category errors
 */
export class SessionError extends Schema.TaggedError<SessionError>()("SessionError", {
  reason: Schema.Literals(["SessionNotFound", "SessionStoreUnavailable", "BusUnavailable", "InvalidSessionData"]),
  message: Schema.String,
  cause: Schema.optionalKey(Schema.Defect())
}) implements ErrorFrame.Respondable {
  /** The status of the error frame for this error. */
  get status(): number {
    return this.reason === "SessionNotFound" ? 404 : this.reason === "InvalidSessionData" ? 400 : 503
  }

  /** Marks the error as one that becomes an error frame. */
  get [ErrorFrame.TypeId](): ErrorFrame.TypeId {
    return ErrorFrame.TypeId
  }

  /** The error frame for this error, echoing the request's `id` when given. */
  toFrame(id?: string): Frame.Frame {
    return ErrorFrame.make({ status: this.status, reason: this.reason, message: this.message, id })
  }
}

const notFound = new SessionError({
  reason: "SessionNotFound",
  message: "no such session: unknown, closed or expired"
})

/**
 * Options of the sessions.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * How long a session lives after it was last created or updated (default
   * 24 hours), and at least 99 % of it after it was last restored (a restore
   * renews it once a hundredth of it has passed since it last was).
   */
  readonly ttl?: Duration.Input | undefined
  /**
   * Makes a session key (default: 128 random bits, base64url). It must be
   * unguessable, and a valid channel token (the session's connections share
   * the channel `$lhttp.session.<key>`: `Channel.validate` rules, e.g. no
   * whitespace, `*` or `>`): a key that is not one fails `create` as a defect.
   */
  readonly generateKey?: (() => string) | undefined
  /** Runs after a session was created, with the connection that created it (audit, metrics). */
  readonly onCreated?: ((session: Session, connection: Connection.Connection) => Effect.Effect<void>) | undefined
  /** Runs after a session was closed by `close` (not when it expires). */
  readonly onClosed?: ((key: string) => Effect.Effect<void>) | undefined
}

/**
 * The sessions service.
 *
 * @since 0.1.0
 * @category services
 */
export class Sessions extends Context.Service<Sessions, {
  /**
   * Creates a session holding `data` for the connection, which gets its
   * `session` frame (carrying `options.id`, the id of the request it answers).
   */
  readonly create: (
    connection: Connection.Connection,
    data: unknown,
    options?: { readonly id?: string | undefined }
  ) => Effect.Effect<Session, SessionError>
  /** The session of a connection, if it has one. */
  readonly current: (connection: Connection.Connection) => Effect.Effect<Option.Option<Session>, SessionError>
  /** Replaces a session's data; every connection of the session, on every node, gets the new `session` frame. */
  readonly update: (key: string, data: unknown) => Effect.Effect<void, SessionError>
  /** Closes a session; every connection of it gets `LHTTP/1.0 session` with `closed:<key>`. */
  readonly close: (key: string) => Effect.Effect<void, SessionError>
  /** Attaches a connection to an existing session (what the `session` command with `restore` does). */
  readonly restore: (connection: Connection.Connection, key: string) => Effect.Effect<Session, SessionError>
  /** The key of the session a connection is attached to. */
  readonly keyOf: (connection: Connection.Connection) => string | undefined
  /** Sends a frame to every connection of a session, on every node (a signal). */
  readonly signal: (
    key: string,
    command: string,
    headers?: ReadonlyMap<string, string> | Readonly<Record<string, string>>,
    body?: string
  ) => Effect.Effect<void, ProtocolError | Rejection>
}>()("effect-lhttp/Sessions") {}

/**
 * The processor of the `session` command: `restore:<key>` attaches the
 * connection to that session and answers its `session` frame (with the
 * request's `id`); without `restore`, it answers the connection's current
 * session. `404 SessionNotFound` when there is none.
 *
 * @since 0.1.0
 * @category processors
 */
export const SessionProcessor = Processor.make(command)

/**
 * The frame that announces a session's data (with the `id` of the request it
 * answers, if any).
 *
 * @since 0.1.0
 * @category constructors
 */
export const sessionFrame = (session: Session, id?: string): Frame.Frame => {
  const headers = new Map<string, string>([[Header.key, session.key]])
  if (id !== undefined) headers.set(Protocol.Header.id, id)
  return { command, headers, body: JSON.stringify(session.data) }
}

// the internal channel of a session's connections: clients cannot name it ($ is refused in channel ids); a
// key that cannot name a channel has none (no session can live under it: keys are made to)
const channelOf = (key: string) => Channel.internal(`lhttp.session.${key}`)

/** The channel of a session's key; a key that cannot name one is a defect of `generateKey`. */
const keyChannel = (key: string): Effect.Effect<Channel.ChannelId> => {
  const channel = channelOf(key)
  return Result.isFailure(channel)
    ? Effect.die(new Error(`a session key must name a channel (see generateKey): ${channel.failure.message}`))
    : Effect.succeed(channel.success)
}

const attached = Connection.key<string | undefined>("effect-lhttp/Sessions/key")

const operations = Metric.counter("lhttp_session_operations_total", {
  description: "session operations, by operation (create, update, close, restore) and outcome",
  incremental: true
})

const durations = Metric.histogram("lhttp_session_duration_seconds", {
  description:
    "how long session operations took, by operation (create, update, close, restore), the store's reads and writes included",
  boundaries: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
})

// counts an operation in the metrics, by its outcome, and how long it took
const counted = (operation: string) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(
    Clock.currentTimeMillis,
    (started) =>
      Effect.onExit(
        effect,
        (exit) =>
          Effect.flatMap(Clock.currentTimeMillis, (ended) =>
            Metric.update(operations, 1).pipe(
              Effect.provideService(Metric.CurrentMetricAttributes, {
                operation,
                outcome: exit._tag === "Success" ? "ok" : "failed"
              }),
              Effect.andThen(
                Metric.update(durations, (ended - started) / 1000).pipe(
                  Effect.provideService(Metric.CurrentMetricAttributes, { operation })
                )
              )
            ))
      )
  )

const storeFailed = (error: { readonly message: string }) =>
  new SessionError({
    reason: "SessionStoreUnavailable",
    message: `the session store failed: ${error.message}`,
    cause: error
  })

const busFailed = (error: { readonly message: string }) =>
  new SessionError({ reason: "BusUnavailable", message: `the bus failed: ${error.message}`, cause: error })

/**
 * Makes the sessions service over the `SessionStore` and the `Hub` in context.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function*(options?: Options) {
  const store = yield* SessionStore
  const hub = yield* Hub
  // every operation's series there from the start, at 0
  for (const operation of ["create", "update", "close", "restore"]) {
    for (const outcome of ["ok", "failed"]) {
      yield* Metric.update(operations, 0).pipe(
        Effect.provideService(Metric.CurrentMetricAttributes, { operation, outcome })
      )
    }
    // reading a metric registers it: each operation's histogram there from the start, empty
    yield* Metric.value(durations).pipe(Effect.provideService(Metric.CurrentMetricAttributes, { operation }))
  }
  const ttl = Duration.toMillis(Duration.fromInputUnsafe(options?.ttl ?? Duration.hours(24)))
  const generateKey = options?.generateKey ?? secretKey
  const onCreated = options?.onCreated
  const onClosed = options?.onClosed
  const context = yield* Effect.context<never>()
  const serverScope = yield* Effect.scope

  // the connections of each session on this node, and the subscription that brings them its frames
  const local = new Map<string, { readonly connections: Set<Connection.Connection>; readonly scope: Scope.Closeable }>()

  const detach = (connection: Connection.Connection): Effect.Effect<void> =>
    Effect.suspend(() => {
      const key = connection.get(attached)
      if (key === undefined) return Effect.void
      connection.set(attached, undefined)
      const entry = local.get(key)
      if (entry === undefined) return Effect.void
      entry.connections.delete(connection)
      if (entry.connections.size > 0) return Effect.void
      local.delete(key)
      return Scope.close(entry.scope, Exit.void)
    })

  // what arrives on a session's channel goes to its connections here; a close detaches them
  const subscriberOf = (key: string): Subscriber => ({
    channels: new Set(),
    deliver: (outbound) => {
      const entry = local.get(key)
      const frame = Frame.parse(outbound.text)
      if (entry === undefined || Result.isFailure(frame)) return
      const connections = Array.from(entry.connections)
      const closing = frame.success.command === command && frame.success.headers.get(Header.closed) === key
      Effect.runForkWith(context)(
        Effect.forEach(connections, (connection) => Effect.ignore(connection.send(frame.success)), { discard: true })
          .pipe(
            Effect.andThen(closing ? Effect.forEach(connections, detach, { discard: true }) : Effect.void)
          )
      )
    }
  })

  const attach = (connection: Connection.Connection, key: string) =>
    Effect.gen(function*() {
      if (connection.get(attached) === key) return
      yield* detach(connection)
      let entry = local.get(key)
      if (entry === undefined) {
        const channel = yield* keyChannel(key)
        const scope = Scope.forkUnsafe(serverScope)
        entry = { connections: new Set(), scope }
        local.set(key, entry)
        const subscriber = subscriberOf(key)
        yield* Effect.acquireRelease(
          hub.subscribe(subscriber, [channel]),
          () => hub.unsubscribeAll(subscriber)
        ).pipe(
          Scope.provide(scope),
          Effect.mapError(busFailed),
          Effect.tapError(() =>
            Effect.suspend(() => {
              local.delete(key)
              return Scope.close(scope, Exit.void)
            })
          )
        )
      }
      entry.connections.add(connection)
      connection.set(attached, key)
    })

  const json = (data: unknown): Result.Result<unknown, SessionError> => {
    try {
      const text = JSON.stringify(data)
      if (text === undefined) throw new Error("not JSON")
      return Result.succeed(JSON.parse(text))
    } catch {
      return Result.fail(new SessionError({ reason: "InvalidSessionData", message: "session data must be JSON" }))
    }
  }

  const save = (key: string, data: unknown) =>
    Effect.flatMap(
      Clock.currentTimeMillis,
      (now) => store.set(key, { data, expiresAt: now + ttl }).pipe(Effect.mapError(storeFailed))
    )

  const load = (key: string) =>
    store.get(key).pipe(
      Effect.mapError(storeFailed),
      Effect.flatMap(Option.match({ onNone: () => Effect.fail(notFound), onSome: Effect.succeed }))
    )

  // what goes to every connection of a session, on every node (none can be attached under a key that names no channel)
  const publish = (key: string, frame: Frame.Frame): Effect.Effect<void, Rejection> => {
    const channel = channelOf(key)
    return Result.isFailure(channel) ? Effect.void : hub.publishText([channel.success], Frame.render(frame))
  }

  const service = Sessions.of({
    create: (connection, data, options) =>
      Effect.gen(function*() {
        const value = yield* Effect.fromResult(json(data))
        const key = generateKey()
        yield* keyChannel(key)
        yield* save(key, value)
        yield* attach(connection, key)
        const session = { key, data: value }
        yield* Effect.orDie(connection.send(sessionFrame(session, options?.id)))
        if (onCreated !== undefined) yield* onCreated(session, connection)
        return session
      }).pipe(counted("create")),
    current: (connection) =>
      Effect.suspend(() => {
        const key = connection.get(attached)
        if (key === undefined) return Effect.succeed(Option.none())
        return store.get(key).pipe(
          Effect.mapError(storeFailed),
          Effect.map(Option.map((stored) => ({ key, data: stored.data })))
        )
      }),
    update: (key, data) =>
      Effect.gen(function*() {
        const value = yield* Effect.fromResult(json(data))
        yield* load(key)
        yield* save(key, value)
        yield* publish(key, sessionFrame({ key, data: value })).pipe(Effect.mapError(busFailed))
      }).pipe(counted("update")),
    close: (key) =>
      Effect.gen(function*() {
        yield* store.delete(key).pipe(Effect.mapError(storeFailed))
        yield* publish(key, { command, headers: new Map([[Header.closed, key]]), body: "" }).pipe(
          Effect.mapError(busFailed)
        )
        if (onClosed !== undefined) yield* onClosed(key)
      }).pipe(counted("close")),
    restore: (connection, key) =>
      Effect.gen(function*() {
        const stored = yield* load(key)
        // renewed once a hundredth of its lifetime has passed since it last was: a herd of clients back after
        // a restart reads the store and writes little of it
        if (stored.expiresAt - (yield* Clock.currentTimeMillis) < ttl - ttl / 100) yield* save(key, stored.data)
        yield* attach(connection, key)
        return { key, data: stored.data }
      }).pipe(counted("restore")),
    keyOf: (connection) => connection.get(attached),
    signal: (key, signalCommand, headers, body) =>
      Effect.suspend((): Effect.Effect<void, ProtocolError | Rejection> => {
        const frame = Frame.validate(Frame.make(signalCommand, headers, body))
        return Result.isFailure(frame) ? Effect.fail(frame.failure) : publish(key, frame.success)
      })
  })

  const processor = SessionProcessor.toLayer({
    onMessage: (exchange) =>
      Effect.gen(function*() {
        const key = exchange.header(Header.restore)
        const session = key !== undefined
          ? yield* service.restore(exchange.connection, key)
          : yield* Effect.flatMap(
            service.current(exchange.connection),
            Option.match({ onNone: () => Effect.fail(notFound), onSome: Effect.succeed })
          )
        yield* Effect.orDie(exchange.connection.send(sessionFrame(session, exchange.id)))
      }),
    onClose: (connection) => detach(connection)
  })

  return { service, processor }
})

/**
 * The sessions service and the implementation of {@link SessionProcessor},
 * over a `SessionStore` and the `Hub`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options?: Options
): Layer.Layer<Sessions | Processor.Service<typeof command>, never, SessionStore | Hub> =>
  Layer.unwrap(
    Effect.map(make(options), ({ processor, service }) => Layer.merge(Layer.succeed(Sessions, service), processor))
  )
