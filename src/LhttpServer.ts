/**
 * The LHTTP server: the service that runs connections through the pipeline
 * (filters, processors, hub), its Layers, and the routes that mount it into an
 * Effect HTTP app.
 *
 * - `layer(options)`: the server's core over the `Hub` and `Bus` in context
 *   and the processors and filters it serves.
 * - `routes(options)`: the HTTP routes (the WebSocket endpoint at any paths,
 *   `POST /publish`, `/healthz`, `/readyz`) for an `HttpRouter`; provide
 *   `layer(...)` outside `HttpRouter.serve` so routes and app share one hub.
 * - `layerNode(options)`: a stand-alone Node server on a port, all in one.
 * - `layerNodeConfig(options)`: the same, reading `LHTTP_*` variables.
 *
 * @since 0.1.0
 */
import { Config, Context, Data, Duration, Effect, Exit, Layer, Option, Redacted, Scope } from "effect"
import type { HttpRouter, HttpServer } from "effect/http"
import { Buffer } from "node:buffer"
import { Bus } from "./Bus.ts"
import type * as Filter from "./Filter.ts"
import * as Hub from "./Hub.ts"
import { LiveConnection, type Peer } from "./internal/connection.ts"
import type { Transport } from "./internal/outbound.ts"
import { type SlowConsumerPolicy, slowConsumerCloseCode } from "./internal/outbox.ts"
import * as Pipeline from "./internal/pipeline.ts"
import * as WebSocketAdapter from "./internal/websocket.ts"
import type * as Processor from "./Processor.ts"
import { Upstream } from "./Upstream.ts"

/**
 * The close codes the server uses.
 *
 * @since 0.1.0
 */
export const CloseCode = {
  /** The server is shutting down. */
  goingAway: 1001,
  /** An `onOpen` hook refused the connection. */
  policyViolation: 1008,
  /** An inbound message was larger than `maxMessageBytes`. */
  messageTooBig: 1009,
  /** No pong within `heartbeatTimeout` of a ping. */
  heartbeatTimeout: 4000,
  /** The connection's outbound queue passed `maxOutboundBytes` (policy "close"). */
  slowConsumer: slowConsumerCloseCode
} as const

/**
 * The server's settings; every one has a documented default.
 *
 * @since 0.1.0
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
}

/**
 * The settings with their defaults filled in.
 *
 * @since 0.1.0
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
}

/**
 * The defaults.
 *
 * @since 0.1.0
 */
export const defaults = {
  maxMessageBytes: 64 * 1024,
  maxHeaders: 64,
  maxOutboundBytes: 1024 * 1024,
  slowConsumer: "close",
  heartbeatInterval: Duration.seconds(25),
  heartbeatTimeout: Duration.seconds(10),
  shutdownTimeout: Duration.seconds(30)
} as const

/**
 * Fills in the defaults.
 *
 * @since 0.1.0
 */
export const settings = (options: Options<any, any>): Settings => ({
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
  shutdownTimeout: Duration.fromInputUnsafe(options.shutdownTimeout ?? defaults.shutdownTimeout)
})

/**
 * A server that cannot be built as configured.
 *
 * @since 0.1.0
 */
export class LhttpServerError extends Data.TaggedError("LhttpServerError")<{
  readonly reason: "DuplicateCommand" | "DuplicateFilter"
  readonly message: string
}> {}

/**
 * The running server.
 *
 * @since 0.1.0
 */
export class LhttpServer extends Context.Service<LhttpServer, {
  readonly settings: Settings
  /** True from the start of a shutdown. */
  readonly isDraining: () => boolean
  /** Whether the server takes new connections and its bus works. */
  readonly isReady: Effect.Effect<boolean>
  /** How many connections are open. */
  readonly connectionCount: () => number
  /**
   * Runs one connection from open to close: `onOpen` hooks, then each message
   * `pull` yields, in order, then `onClose` hooks and unsubscription, however
   * it ends. Transport adapters call it.
   */
  readonly run: (
    peer: Peer,
    transport: Transport,
    pull: Effect.Effect<ReadonlyArray<string | Uint8Array>, unknown>
  ) => Effect.Effect<void>
  /**
   * Shuts down gracefully: readiness off, new connections refused, each
   * connection closed with 1001 once the message in progress is done, bounded
   * by `shutdownTimeout`.
   */
  readonly drain: Effect.Effect<void>
}>()("effect-lhttp/LhttpServer") {}

/**
 * Makes the server over the Hub and Bus in context and the implementations of
 * its processors and filters.
 *
 * @since 0.1.0
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
  const upstream = Option.getOrUndefined(yield* Effect.serviceOption(Upstream))
  const pipeline = Pipeline.make({ processors, filters, hub, upstream, maxHeaders: config.maxHeaders })
  const connections = new Set<LiveConnection>()
  const limits = { maxOutboundBytes: config.maxOutboundBytes, slowConsumer: config.slowConsumer }
  let draining = false

  const tooBig = (data: string | Uint8Array): boolean =>
    typeof data === "string"
      ? data.length > config.maxMessageBytes ||
        (data.length * 3 > config.maxMessageBytes && Buffer.byteLength(data) > config.maxMessageBytes)
      : data.byteLength > config.maxMessageBytes

  const run = (peer: Peer, transport: Transport, pull: Effect.Effect<ReadonlyArray<string | Uint8Array>, unknown>) =>
    Effect.flatMap(Scope.make(), (scope) => {
      const connection = new LiveConnection(peer, transport, hub, limits, scope)
      connections.add(connection)
      const loop = Effect.gen(function*() {
        if (!(yield* pipeline.open(connection))) return
        while (!connection.outbox.isClosed) {
          const batch = yield* pull
          for (const data of batch) {
            // the WebSocket layer refuses these before buffering; this guards other transports
            if (tooBig(data)) return connection.closeNow(CloseCode.messageTooBig, "message too big")
            connection.busy = true
            yield* pipeline.handle(connection, data)
            connection.busy = false
            if (connection.pendingClose !== undefined) {
              return connection.closeNow(connection.pendingClose.code, connection.pendingClose.reason)
            }
          }
        }
      })
      return loop.pipe(
        Effect.ignore,
        Effect.ensuring(
          pipeline.close(connection).pipe(
            Effect.andThen(hub.unsubscribeAll(connection)),
            Effect.andThen(Scope.close(scope, Exit.void)),
            Effect.andThen(Effect.sync(() => {
              connection.closeNow(1000, "")
              connections.delete(connection)
            }))
          )
        )
      )
    })

  const drain = Effect.gen(function*() {
    if (draining) return
    draining = true
    for (const connection of connections) connection.closeWhenIdle(CloseCode.goingAway, "server shutting down")
    const deadline = Date.now() + Duration.toMillis(config.shutdownTimeout)
    while (connections.size > 0 && Date.now() < deadline) yield* Effect.sleep(Duration.millis(20))
  })

  return LhttpServer.of({
    settings: config,
    isDraining: () => draining,
    isReady: Effect.suspend(() => draining ? Effect.succeed(false) : bus.isReady),
    connectionCount: () => connections.size,
    run,
    drain
  })
})

/**
 * The server's core as a Layer, over the Hub and Bus in context and the
 * implementations of its processors and filters. The Hub is a requirement
 * rather than a part, so that processors can publish through the same one.
 *
 * @since 0.1.0
 */
export const layer = <const P extends Processor.Any = never, const F extends Filter.Any = never>(
  options: Options<P, F>
): Layer.Layer<LhttpServer, LhttpServerError, Hub.Hub | Bus | Processor.Services<P> | Filter.Services<F>> =>
  Layer.effect(LhttpServer, make(options)) as any

/**
 * Options of the routes.
 *
 * @since 0.1.0
 */
export interface RouteOptions {
  /** The paths of the WebSocket endpoint (default `["/*"]`: any path). */
  readonly paths?: ReadonlyArray<string> | undefined
  /** The path of the publish endpoint (default `/publish`). */
  readonly publishPath?: string | undefined
  /** An HTML page served at `GET /` to requests that are not WebSocket upgrades (default: none, 426). */
  readonly page?: string | undefined
  /** Whether `GET /lhttp.js` serves the browser SDK (default true). */
  readonly sdk?: boolean | undefined
}

/**
 * The server's HTTP routes, for an `HttpRouter`: the WebSocket endpoint at
 * `paths`, `POST /publish`, `GET /healthz`, `GET /readyz`, the browser SDK at
 * `GET /lhttp.js` and, when given, a page at `GET /`.
 *
 * @since 0.1.0
 */
export const routes = (options?: RouteOptions): Layer.Layer<never, never, HttpRouter.HttpRouter | LhttpServer | Hub.Hub> =>
  Layer.unwrap(Effect.gen(function*() {
    return WebSocketAdapter.routes(yield* LhttpServer, yield* Hub.Hub, options)
  }))

/**
 * Options of the stand-alone server.
 *
 * @since 0.1.0
 */
export interface NodeOptions<P extends Processor.Any = never, F extends Filter.Any = never>
  extends Options<P, F>, RouteOptions
{
  /** The port (default 8081; 0 picks a free one). */
  readonly port?: number | undefined
  /** The host to listen on (default all interfaces). */
  readonly host?: string | undefined
}

/**
 * A stand-alone Node server: the core, the routes and a Node HTTP server on
 * `port`, with graceful shutdown when the Layer's scope closes (as
 * `NodeRuntime.runMain` does on SIGTERM and SIGINT). It logs one line with the
 * address it listens on.
 *
 * @since 0.1.0
 */
export const layerNode = <const P extends Processor.Any = never, const F extends Filter.Any = never>(
  options: NodeOptions<P, F>
): Layer.Layer<
  LhttpServer | HttpServer.HttpServer,
  LhttpServerError | WebSocketAdapter.ServeError,
  Hub.Hub | Bus | Processor.Services<P> | Filter.Services<F>
> => {
  // built after the HTTP server, so released before it: the drain runs while it still answers
  const drainOnShutdown = Layer.effectDiscard(Effect.gen(function*() {
    const server = yield* LhttpServer
    yield* Effect.addFinalizer(() => server.drain)
  }))
  const http = WebSocketAdapter.serve(routes(options), {
    port: options.port ?? 8081,
    host: options.host,
    maxMessageBytes: settings(options).maxMessageBytes
  })
  return drainOnShutdown.pipe(
    Layer.provideMerge(http),
    Layer.provideMerge(layer(options))
  )
}

/**
 * The stand-alone server's settings read from the environment:
 * `LHTTP_PORT` (8081), `LHTTP_HOST`, `LHTTP_PUBLISH_TOKEN`,
 * `LHTTP_MAX_MESSAGE_BYTES` (65536) and `LHTTP_ALLOWED_ORIGINS`
 * (comma-separated).
 *
 * @since 0.1.0
 */
export const config = Config.all({
  port: Config.Port("LHTTP_PORT").pipe(Config.withDefault(8081)),
  host: Config.option(Config.String("LHTTP_HOST")),
  publishToken: Config.option(Config.Redacted("LHTTP_PUBLISH_TOKEN")),
  maxMessageBytes: Config.Int("LHTTP_MAX_MESSAGE_BYTES").pipe(Config.withDefault(defaults.maxMessageBytes)),
  allowedOrigins: Config.option(Config.String("LHTTP_ALLOWED_ORIGINS"))
})

/**
 * {@link layerNode} with the settings of {@link config} over `options`.
 *
 * @since 0.1.0
 */
export const layerNodeConfig = <const P extends Processor.Any = never, const F extends Filter.Any = never>(
  options: NodeOptions<P, F>
) =>
  Layer.unwrap(Effect.gen(function*() {
    const env = yield* config
    return layerNode({
      ...options,
      port: env.port,
      host: Option.getOrUndefined(env.host),
      publishToken: Option.getOrUndefined(env.publishToken),
      maxMessageBytes: env.maxMessageBytes,
      allowedOrigins: Option.match(env.allowedOrigins, {
        onNone: () => options.allowedOrigins,
        onSome: (list) => list.split(",").map((origin) => origin.trim()).filter((origin) => origin !== "")
      })
    })
  }))

/**
 * Runs a server Layer as the program (`NodeRuntime.runMain`) until SIGTERM or
 * SIGINT. The Layer's scope then closes, which drains the server, and the
 * process exits with 0; a failure exits with 1.
 *
 * ```ts
 * LhttpServer.launch(Main)
 * ```
 *
 * @since 0.1.0
 */
export const launch: <A, E>(layer: Layer.Layer<A, E>) => void = WebSocketAdapter.launch
