/**
 * The LHTTP server's core, independent of any transport: the service that
 * runs connections through the pipeline (filters, processors, hub), their
 * outboxes and limits, and the graceful drain. Transports give it
 * connections with `accept` (see `Transport`): the Node WebSocket transport
 * and the HTTP endpoints live in `effect-lhttp/NodeLhttpServer`, the
 * in-memory transport for tests in `MemoryTransport`.
 *
 * @since 0.1.0
 */
import { Context, Data, Deferred, Duration, Effect, Exit, Fiber, Layer, Option, Redacted } from "effect"
import type * as Auth from "./Authorization.ts"
import { Bus } from "./Bus.ts"
import type { Connection } from "./Connection.ts"
import type * as Filter from "./Filter.ts"
import { History } from "./History.ts"
import * as Hub from "./Hub.ts"
import { type Core, LiveConnection } from "./internal/server/connection.ts"
import { Connections } from "./internal/server/connections.ts"
import { registerMetrics } from "./internal/server/metrics.ts"
import type { SlowConsumerPolicy } from "./internal/server/outbox.ts"
import * as Pipeline from "./internal/server/pipeline.ts"
import type { Rate as RateLimit } from "./internal/server/rate.ts"
import { Stats } from "./internal/server/stats.ts"
import * as ServerTokens from "./internal/server/tokens.ts"
import { Users } from "./internal/server/users.ts"
import { hintReason } from "./internal/wire/backoff.ts"
import * as Protocol from "./internal/wire/protocol.ts"
import type * as Message from "./Message.ts"
import type * as Processor from "./Processor.ts"
import type { Rejection } from "./Rejection.ts"
import { SessionStore } from "./SessionStore.ts"
import * as Tokens from "./Tokens.ts"
import type * as Transport from "./Transport.ts"
import { Upstream } from "./Upstream.ts"

/**
 * The close codes the server uses.
 *
 * @since 0.1.0
 * @category constants
 */
export const CloseCode: typeof Protocol.CloseCode = Protocol.CloseCode

/**
 * The server's settings; every one has a documented default.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options<P extends Processor.Any = never, F extends Filter.Any = never> {
  /** The processors served, one per command. */
  readonly processors?: ReadonlyArray<P> | undefined
  /** The user's filters, run after the built-in ones in this order. */
  readonly filters?: ReadonlyArray<F> | undefined
  /** The largest inbound message, in bytes (default 64 KiB); larger ones close the connection with 1009. */
  readonly maxMessageBytes?: number | undefined
  /** Most distinct headers per message (default 64). */
  readonly maxHeaders?: number | undefined
  /** Bytes a connection may hold queued or unsent (default 1 MiB). */
  readonly maxOutboundBytes?: number | undefined
  /** What happens past `maxOutboundBytes`: close with 4001 (default) or drop new frames. */
  readonly slowConsumer?: SlowConsumerPolicy | undefined
  /** How often connections are pinged (default 25 s). */
  readonly heartbeatInterval?: Duration.Input | undefined
  /** How long a ping may go without a pong before the connection is closed with 4000 (default 10 s). */
  readonly heartbeatTimeout?: Duration.Input | undefined
  /** Origins allowed to open a WebSocket; requests without an Origin always pass. Default: all. */
  readonly allowedOrigins?: ReadonlyArray<string> | undefined
  /** The bearer token `POST /publish` requires; without one, only loopback peers may publish. */
  readonly publishToken?: Redacted.Redacted<string> | string | undefined
  /** How long a shutdown waits for connections to finish their work (default 30 s). */
  readonly shutdownTimeout?: Duration.Input | undefined
  /**
   * Requests (messages with an `id` for a processor) of one connection that
   * run at once, beside its other messages (default 16); past it, the
   * connection's next messages wait for one to finish.
   */
  readonly maxConcurrentRequests?: number | undefined
  /**
   * Runs before a connection is accepted (before the WebSocket upgrade, or
   * the opening of an SSE or long-poll connection), with who asks (URL,
   * headers, cookies in them, address): fail with a `Rejection` to refuse it
   * with that HTTP status and message, no connection made; or set
   * per-connection data (the principal) that processors and filters read
   * with `connection.get(key)`.
   */
  readonly authenticate?: ((peer: Transport.Peer, data: Admission) => Effect.Effect<void, Rejection>) | undefined
  /**
   * Decides who may subscribe, publish and unsubscribe where: it sees the
   * action, the channels and the connection (with its principal; `undefined`
   * for `POST /publish`, a backend). Failing with a `Rejection` (e.g.
   * `Rejection.forbidden(...)`, 403) refuses the message's built-in part:
   * nothing of it is applied, and the sender gets the error frame (or the
   * HTTP status). It runs for every transport, before the bus sees anything.
   */
  readonly authorize?: ((request: Authorization) => Effect.Effect<void, Rejection>) | undefined
  /**
   * Authentication by the first message, for clients that cannot put a
   * token in the request (headers, cookies, query): when set, a connection's
   * first message goes to this hook instead of the pipeline, and nothing
   * else is processed (nor `onOpen` run) until it succeeds. It may set the
   * principal (`data.set`); a first message with an `id` is answered with
   * an empty frame of its command and that `id`. A refusal is answered with
   * its error frame, then the connection is closed with 1008.
   */
  readonly authenticateMessage?:
    | ((message: Message.Notify | Message.Request, data: Admission) => Effect.Effect<void, Rejection>)
    | undefined
  /** How long a connection may stay without its authenticating first message (default 10 s): then 1008. */
  readonly authenticationTimeout?: Duration.Input | undefined
  /**
   * Spans for each message's path with Effect's tracer: `lhttp.message` (the
   * whole message, its command and connection), inside it `lhttp.processor`,
   * `lhttp.publish` (the built-in headers) and `lhttp.upstream` (the call,
   * with the HTTP client's span inside). Plug in an exporter (OpenTelemetry)
   * to see them. Default false: a span costs each message even without one.
   */
  readonly tracing?: boolean | undefined
  /** Connections open at once, over all transports (default 100,000); past it, new ones get 503. */
  readonly maxConnections?: number | undefined
  /**
   * Connections open at once from one address, over all transports
   * (default: a tenth of `maxConnections`, at least 100; `Infinity`: no
   * limit); past it, new ones from that address get 503 `TooManyFromAddress`.
   * Behind a proxy every client has the proxy's address: raise it, or limit
   * at the proxy.
   */
  readonly maxConnectionsPerAddress?: number | undefined
  /**
   * New connections a second from one address, with a burst (default: no
   * limit); past it, 503 with `Retry-After`. Behind a proxy every client has
   * the proxy's address: set it there instead.
   */
  readonly connectionRate?: Rate | undefined
  /**
   * Messages a second per connection, with a burst (default: no limit). A
   * message past it is answered `429 RateLimited` and not processed. More
   * than `closeAfter` refusals (default: the burst) within 10 seconds close
   * the connection with 1008, once every message admitted before is
   * processed (what arrives meanwhile is refused the same way): a flood at
   * any multiple of the rate is closed, a client a little over it is not.
   */
  readonly messageRate?: (Rate & { readonly closeAfter?: number | undefined }) | undefined
  /**
   * New connections a second on this node, from every address, with a burst
   * (default 2,000 a second, 4,000 at once; `false`: no limit); past it, 503
   * `NodeConnectingTooFast` with `Retry-After`. What keeps a node from being
   * swamped when another node's clients come over at once (a restart, a
   * deploy).
   */
  readonly admissionRate?: Rate | false | undefined
  /**
   * A drain closes the connections spread over this window at most
   * (default 10 s, and at most half of `shutdownTimeout`), in a random
   * order, each with 1012 and `reconnect:<ms>`, a wait within the window
   * its client takes before reconnecting. Fewer connections take less:
   * `drainRate` a second at least.
   */
  readonly drainWindow?: Duration.Input | undefined
  /** The fewest connections a second a drain closes (default 1,000): 500 connections take half a second. */
  readonly drainRate?: number | undefined
  /**
   * JWT connection and subscription tokens (default: none; see `Tokens` and
   * docs/tokens.md): a request's token (`?token=`, `authorization: Bearer`)
   * is checked before any connection exists (401 when refused), else the
   * first message is one (`token` command); its `sub` is the connection's
   * user, its `channels` are subscribed, its `info` is what presence shows;
   * before its `exp` the client is asked for a fresh one (`refresh` frame)
   * and closed with 4003 without it. Channels under `privatePrefixes` need a
   * subscription token.
   */
  readonly tokens?: Tokens.Options | undefined
  /**
   * User-limited channels (default false): a channel whose name ends in
   * `#<user>,<user>...` (e.g. `chat#42,43`) takes subscribes and publishes
   * from connections of those users only (`Connection.user`); others get
   * 403 `NotChannelUser`. Backends (`POST /publish`, the server API) may
   * always publish.
   */
  readonly userLimitedChannels?: boolean | undefined
}

/**
 * The server's counters since it started.
 *
 * @since 0.1.0
 * @category models
 */
export interface Counters {
  /** Messages taken from transports. */
  readonly messagesIn: number
  /** Frames written to transports. */
  readonly framesOut: number
  /** Their bytes. */
  readonly bytesOut: number
}

/**
 * A rate limit: `perSecond` on average, `burst` at once (a token bucket).
 *
 * @since 0.1.0
 * @category models
 */
export type Rate = RateLimit

/**
 * What `authorize` decides on (see the `Authorization` module).
 *
 * @since 0.1.0
 * @category models
 */
export type Authorization = Auth.Authorization

/**
 * What `authenticate` may set on the connection it admits (see the
 * `Authorization` module).
 *
 * @since 0.1.0
 * @category models
 */
export type Admission = Auth.Admission

/**
 * The per-connection data `authenticate` set for a connection it admitted
 * (see the `Authorization` module).
 *
 * @since 0.1.0
 * @category models
 */
export type Admitted = Auth.Admitted

/**
 * The settings with their defaults filled in.
 *
 * @since 0.1.0
 * @category models
 */
export interface Settings {
  readonly maxMessageBytes: number
  readonly maxHeaders: number
  readonly maxOutboundBytes: number
  readonly slowConsumer: SlowConsumerPolicy
  readonly heartbeatInterval: Duration.Duration
  readonly heartbeatTimeout: Duration.Duration
  readonly allowedOrigins: ReadonlySet<string> | undefined
  readonly publishToken: Redacted.Redacted<string> | undefined
  readonly shutdownTimeout: Duration.Duration
  readonly maxConcurrentRequests: number
  readonly maxConnections: number
  readonly maxConnectionsPerAddress: number
  readonly connectionRate: Rate | undefined
  readonly messageRate: (Rate & { readonly closeAfter: number }) | undefined
  readonly admissionRate: Rate | undefined
  readonly drainWindow: Duration.Duration
  readonly drainRate: number
}

/**
 * The defaults.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  maxMessageBytes: 64 * 1024,
  maxHeaders: 64,
  maxOutboundBytes: 1024 * 1024,
  slowConsumer: "close",
  heartbeatInterval: Duration.seconds(25),
  heartbeatTimeout: Duration.seconds(10),
  shutdownTimeout: Duration.seconds(30),
  maxConcurrentRequests: 16,
  maxConnections: 100_000,
  admissionRate: { perSecond: 2_000, burst: 4_000 },
  drainWindow: Duration.seconds(10),
  drainRate: 1_000
} as const

/**
 * The default of `maxConnectionsPerAddress`: a tenth of `maxConnections`, at
 * least 100 (10,000 with the default cap).
 *
 * @since 0.1.0
 * @category utils
 */
export const perAddressDefault = (maxConnections: number): number => Math.max(100, Math.ceil(maxConnections / 10))

/**
 * Fills in the defaults.
 *
 * @since 0.1.0
 * @category constructors
 */
export const settings = (options: Options<Processor.Any, Filter.Any>): Settings => ({
  maxMessageBytes: options.maxMessageBytes ?? defaults.maxMessageBytes,
  maxHeaders: options.maxHeaders ?? defaults.maxHeaders,
  maxOutboundBytes: options.maxOutboundBytes ?? defaults.maxOutboundBytes,
  slowConsumer: options.slowConsumer ?? defaults.slowConsumer,
  heartbeatInterval: Duration.fromInputUnsafe(options.heartbeatInterval ?? defaults.heartbeatInterval),
  heartbeatTimeout: Duration.fromInputUnsafe(options.heartbeatTimeout ?? defaults.heartbeatTimeout),
  allowedOrigins: options.allowedOrigins === undefined ? undefined : new Set(options.allowedOrigins),
  publishToken: typeof options.publishToken === "string"
    ? Redacted.make(options.publishToken)
    : options.publishToken,
  shutdownTimeout: Duration.fromInputUnsafe(options.shutdownTimeout ?? defaults.shutdownTimeout),
  maxConcurrentRequests: Math.max(1, options.maxConcurrentRequests ?? defaults.maxConcurrentRequests),
  maxConnections: options.maxConnections ?? defaults.maxConnections,
  maxConnectionsPerAddress: options.maxConnectionsPerAddress ??
    perAddressDefault(options.maxConnections ?? defaults.maxConnections),
  connectionRate: options.connectionRate,
  messageRate: options.messageRate === undefined
    ? undefined
    : { ...options.messageRate, closeAfter: options.messageRate.closeAfter ?? options.messageRate.burst },
  admissionRate: options.admissionRate === false ? undefined : options.admissionRate ?? defaults.admissionRate,
  drainWindow: Duration.fromInputUnsafe(options.drainWindow ?? defaults.drainWindow),
  drainRate: Math.max(1, options.drainRate ?? defaults.drainRate)
})

/**
 * A server that cannot be built as configured.
 *
 * @since 0.1.0
 * @category errors
 */
export class LhttpServerError extends Data.TaggedError("LhttpServerError")<{
  readonly reason: "DuplicateCommand" | "DuplicateFilter" | "InvalidTokens"
  readonly message: string
}> {}

/**
 * A feature the server runs without, or with less of, and why.
 *
 * @since 0.1.0
 * @category models
 */
export interface Limitation {
  readonly feature: "history" | "sessions"
  readonly message: string
}

/**
 * The running server.
 *
 * @since 0.1.0
 * @category services
 */
export class LhttpServer extends Context.Service<LhttpServer, {
  readonly settings: Settings
  /** True from the start of a shutdown. */
  readonly isDraining: () => boolean
  /**
   * Whether the server takes new connections and its bus works (and the
   * channel history and the session store in context, when they say).
   */
  readonly isReady: Effect.Effect<boolean>
  /**
   * What the services in context cannot do here, one line each, by feature
   * (`history`, `sessions`): e.g. a NATS without JetStream. Shown by
   * `/readyz` and `/metrics` (`lhttp_limited`).
   */
  readonly limitations: Effect.Effect<ReadonlyArray<Limitation>>
  /** How many connections are open. */
  readonly connectionCount: () => number
  /** The open connection with this id here, if any. */
  readonly connection: (id: string) => Connection | undefined
  /** The open connections here of a user (`Connection.user`). */
  readonly connectionsOf: (user: string) => ReadonlyArray<Connection>
  /** The open connections here by transport (`websocket`, `sse`, `poll`, ...). */
  readonly transports: () => Readonly<Record<string, number>>
  /** The subscriptions the open connections here hold. */
  readonly subscriptionCount: () => number
  /** The server's counters since it started: messages in, frames and bytes out (a rate is two readings apart). */
  readonly counters: () => Counters
  /**
   * Taps the frames sent to a user's connections here (by the hub, a
   * processor, the server itself), each told with its connection's id, until
   * the returned function is called: the operator's live tail of a user.
   */
  readonly tapUser: (user: string, tap: (connection: string, text: string) => void) => () => void
  /**
   * Takes a connection from a transport: `onOpen` hooks run, then each
   * message the transport hands to the returned `Inbound`, one at a time, in
   * order; when the transport reports the connection closed, `onClose` hooks
   * run and its subscriptions go. While draining, the connection is closed
   * with 1001 at once.
   */
  readonly accept: (transport: Transport.Transport, admitted?: Admitted) => Transport.Inbound
  /**
   * Runs the `authenticate` hook for who asks to connect: the data to give
   * `accept`, or the `Rejection` to answer instead (its status is the HTTP
   * status of the refusal). Without a hook, admits everyone.
   */
  readonly admit: (peer: Transport.Peer) => Effect.Effect<Admitted, Rejection>
  /** Runs the `authorize` hook (a publish of `POST /publish` has no connection); without one, allows all. */
  readonly authorize: (request: Authorization) => Effect.Effect<void, Rejection>
  /**
   * Shuts down gracefully: readiness off, new connections refused, each
   * connection closed with 1001 once the message in progress is done, bounded
   * by `shutdownTimeout`.
   */
  readonly drain: Effect.Effect<void>
}>()("effect-lhttp/LhttpServer") {}

const refused: Transport.Inbound = { receive: () => {}, closed: () => {} }

/** How often (ms) a drain closes the connections that are due: a window shorter than this closes all at once. */
const drainTick = 20

/**
 * Makes the server over the Hub and Bus in context and the implementations of
 * its processors and filters.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function*<P extends Processor.Any, F extends Filter.Any>(
  options: Options<P, F>
) {
  const config = settings(options)
  const hub = yield* Hub.Hub
  const bus = yield* Bus
  const processors = new Map<string, Processor.Implementation>()
  for (const definition of options.processors ?? []) {
    if (processors.has(definition.command)) {
      return yield* new LhttpServerError({
        reason: "DuplicateCommand",
        message: `two processors for the command ${JSON.stringify(definition.command)}`
      })
    }
    processors.set(definition.command, yield* definition.key)
  }
  const filters: Array<Filter.Implementation> = []
  for (const definition of options.filters ?? []) {
    if (filters.some((filter) => filter.name === definition.name)) {
      return yield* new LhttpServerError({
        reason: "DuplicateFilter",
        message: `two filters named ${JSON.stringify(definition.name)}`
      })
    }
    filters.push(yield* definition.key)
  }
  const tokens = options.tokens === undefined ? undefined : yield* Tokens.make(options.tokens).pipe(
    Effect.mapError((error) => new LhttpServerError({ reason: "InvalidTokens", message: error.message }))
  )
  if (tokens !== undefined && processors.has(Protocol.Command.token)) {
    return yield* new LhttpServerError({
      reason: "DuplicateCommand",
      message: `the command "token" is the server's own when it takes tokens`
    })
  }
  const serverTokens = ServerTokens.make({
    tokens,
    userLimitedChannels: options.userLimitedChannels === true,
    hub
  })
  const upstream = Option.getOrUndefined(yield* Effect.serviceOption(Upstream))
  const history = Option.getOrUndefined(yield* Effect.serviceOption(History))
  const sessionStore = Option.getOrUndefined(yield* Effect.serviceOption(SessionStore))
  const readiness = [bus.isReady, history?.isReady, sessionStore?.isReady].filter((check) => check !== undefined)
  const isReady = Effect.suspend(() =>
    draining ? Effect.succeed(false) : Effect.map(Effect.all(readiness), (answers) => answers.every((ready) => ready))
  )
  const limitations = Effect.map(
    Effect.all([history?.limitation ?? Effect.undefined, sessionStore?.limitation ?? Effect.undefined]),
    ([ofHistory, ofSessions]) => {
      const found: Array<Limitation> = []
      if (ofHistory !== undefined) found.push({ feature: "history", message: ofHistory })
      if (ofSessions !== undefined) found.push({ feature: "sessions", message: ofSessions })
      return found
    }
  )
  // the fibers of connections run with the server's services, in the server's scope
  const context = yield* Effect.context<never>()
  const scope = yield* Effect.scope
  const fork = (effect: Effect.Effect<void>) => Fiber.runIn(Effect.runForkWith(context)(effect), scope)
  const pipeline = Pipeline.make({
    processors,
    filters,
    hub,
    upstream,
    maxHeaders: config.maxHeaders,
    authorize: options.authorize,
    tracing: options.tracing,
    authenticateMessage: options.authenticateMessage,
    tokens: serverTokens
  })
  const connections = new Connections(config)
  const users = new Users<LiveConnection>()
  const stats = new Stats()
  const metrics = registerMetrics(stats, connections.open, hub, { isReady: bus.isReady, limitations }, context, scope)
  let draining = false
  const drained = Deferred.makeUnsafe<void>()

  const core: Core = {
    hub,
    limits: {
      maxMessageBytes: config.maxMessageBytes,
      maxOutboundBytes: config.maxOutboundBytes,
      slowConsumer: config.slowConsumer,
      maxConcurrentRequests: config.maxConcurrentRequests,
      messageRate: config.messageRate
    },
    hasOpenHooks: pipeline.hasOpenHooks,
    open: pipeline.open,
    handle: pipeline.handle,
    close: pipeline.close,
    fork,
    scope,
    stats,
    authentication: options.authenticateMessage === undefined && tokens === undefined ? undefined : {
      timeout: Duration.toMillis(Duration.fromInputUnsafe(options.authenticationTimeout ?? Duration.seconds(10))),
      // a connection that came with a token needs no first message; without one, the hook's or a token
      needed: options.authenticateMessage === undefined
        ? serverTokens.needsToken
        : (connection) => connection.get(ServerTokens.claimsKey) === undefined,
      check: pipeline.authenticate
    },
    ended: (connection) => {
      connections.delete(connection)
      if (draining && connections.open.size === 0) Deferred.doneUnsafe(drained, Exit.void)
    },
    users
  }

  const authenticate = options.authenticate
  const admit = (peer: Transport.Peer): Effect.Effect<Admitted, Rejection> => {
    const refusal = connections.refusal(peer.remoteAddress)
    if (refusal !== undefined) return Effect.fail(refusal)
    if (authenticate === undefined && tokens === undefined) return Effect.succeed(undefined)
    const { admission, data } = Pipeline.admission()
    // the request's token first: the hook sees what it said (the user)
    const admitted = serverTokens.admit(peer, admission)
    return (authenticate === undefined ? admitted : Effect.andThen(admitted, authenticate(peer, admission))).pipe(
      Effect.as(data)
    )
  }

  const accept = (transport: Transport.Transport, admitted?: Admitted): Transport.Inbound => {
    if (draining) {
      transport.close(CloseCode.goingAway, "server shutting down")
      return refused
    }
    // the cap holds for transports that accept without asking first
    if (connections.isFull(transport.peer.remoteAddress)) {
      transport.close(CloseCode.tryAgainLater, "too many connections")
      return refused
    }
    const connection = new LiveConnection(transport, core, admitted)
    metrics.sawTransport(transport.kind ?? "other")
    connections.add(connection)
    return connection
  }

  const drain = Effect.suspend(() => {
    if (draining) return Deferred.await(drained)
    draining = true
    if (connections.open.size === 0) Deferred.doneUnsafe(drained, Exit.void)
    return Effect.andThen(closePaced(Array.from(connections.open)), Deferred.await(drained))
  }).pipe(
    Effect.timeoutOption(config.shutdownTimeout),
    // past the timeout, what is still busy is closed and ended now: onClose hooks, subscriptions, scopes
    Effect.flatMap((done) =>
      Option.isSome(done)
        ? Effect.void
        : Effect.forEach(Array.from(connections.open), (connection) => connection.end(), { discard: true })
    )
  )

  // the drain's closes, spread over its window in a random order, each telling its client a wait within the
  // window before it reconnects (1012, reconnect:<ms>): the clients come back spread, not as one herd
  const closePaced = (open: Array<LiveConnection>) =>
    Effect.gen(function*() {
      const windowMs = Math.min(
        Duration.toMillis(config.drainWindow),
        Duration.toMillis(config.shutdownTimeout) / 2,
        (open.length * 1000) / config.drainRate
      )
      for (let i = open.length - 1; i > 0; i--) {
        const j = Math.floor(Math.random() * (i + 1))
        ;[open[i], open[j]] = [open[j]!, open[i]!]
      }
      const started = Date.now()
      let closed = 0
      while (closed < open.length) {
        const due = windowMs < drainTick
          ? open.length
          : Math.min(open.length, Math.floor(((Date.now() - started) / windowMs) * open.length) + 1)
        for (; closed < due; closed++) {
          open[closed]!.closeWhenIdle(Protocol.CloseCode.serviceRestart, hintReason(Math.random() * windowMs))
        }
        if (closed < open.length) yield* Effect.sleep(drainTick)
      }
    })

  return LhttpServer.of({
    settings: config,
    isDraining: () => draining,
    isReady,
    limitations,
    connectionCount: () => connections.open.size,
    connection: (id) => connections.byId.get(id),
    connectionsOf: (user) => users.of(user),
    transports: () => {
      const counts: Record<string, number> = {}
      for (const connection of connections.open) {
        const kind = connection.transport.kind ?? "other"
        counts[kind] = (counts[kind] ?? 0) + 1
      }
      return counts
    },
    counters: () => ({ messagesIn: stats.messagesIn, framesOut: stats.framesOut, bytesOut: stats.bytesOut }),
    tapUser: (user, tap) => users.tap(user, tap),
    subscriptionCount: () => {
      let count = 0
      for (const connection of connections.open) count += connection.channels.size
      return count
    },
    accept,
    admit,
    authorize: options.authorize ?? (() => Effect.void),
    drain
  })
})

/**
 * The server's core as a Layer, over the Hub and Bus in context and the
 * implementations of its processors and filters. The Hub is a requirement
 * rather than a part, so that processors can publish through the same one.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <const P extends Processor.Any = never, const F extends Filter.Any = never>(
  options: Options<P, F>
): Layer.Layer<LhttpServer, LhttpServerError, Hub.Hub | Bus | Processor.Services<P> | Filter.Services<F>> =>
  Layer.effect(LhttpServer, make(options)) as Layer.Layer<
    LhttpServer,
    LhttpServerError,
    Hub.Hub | Bus | Processor.Services<P> | Filter.Services<F>
  >
