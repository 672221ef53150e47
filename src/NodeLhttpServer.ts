/**
 * The LHTTP server on Node: its transports, its HTTP routes and the Node
 * HTTP server they run on. The one module of the package that touches
 * `@effect/platform-node` and `ws`; import it as
 * `effect-lhttp/NodeLhttpServer`.
 *
 * - `layer(options)`: a stand-alone server on a port: the core
 *   (`LhttpServer.layer`), the three transports, the routes and the Node
 *   HTTP server, with a graceful drain when the Layer's scope closes.
 * - `layerConfig(options)`: the same, with the `LHTTP_*` environment variables.
 * - `layerHttpServer(evaluate, options)`: an `HttpServer` for Effect apps (in
 *   place of `NodeHttpServer.layer`) with the three transports, which takes
 *   LHTTP WebSocket upgrades at `paths` and the SSE and long-poll requests
 *   itself; other requests and upgrades go to the app.
 * - The transports as Layers of their own, over one HTTP dispatcher (as
 *   `RpcServer.layerProtocolWebsocket` / `layerProtocolHttp` over an
 *   `HttpRouter`): `layerWebSocket`, `layerSse` and `layerLongPoll` (the
 *   last two over `layerHttpConnections`, which they share), each adding its
 *   handlers to the `Dispatcher` that `layerServer` consults before the app.
 * - `routes(options)`: `POST /publish`, `/metrics`, `/healthz`, `/readyz`,
 *   the browser SDK at `/lhttp.js` and an optional page at `/`, for an
 *   `HttpRouter`.
 * - `launch(layer)`: runs a server Layer as the program until a signal.
 *
 * @since 0.1.0
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Context, Duration, Effect, Exit, Layer, Runtime } from "effect"
import { HttpRouter, HttpServer } from "effect/http"
import type { ServeError } from "effect/http/HttpServerError"
import * as Http from "node:http"
import type { Bus } from "./Bus.ts"
import type * as Filter from "./Filter.ts"
import type * as Hub from "./Hub.ts"
import * as Dispatch from "./internal/node/dispatcher.ts"
import * as Environment from "./internal/node/environment.ts"
import * as Connections from "./internal/node/httpConnections.ts"
import * as NodeHttp from "./internal/node/httpServer.ts"
import * as LongPoll from "./internal/node/longPoll.ts"
import * as Routes from "./internal/node/routes.ts"
import * as Sse from "./internal/node/sse.ts"
import * as Url from "./internal/node/urlSubscriptions.ts"
import * as WebSocket from "./internal/node/webSocket.ts"
import * as StartupConfig from "./internal/server/config.ts"
import { HttpPath } from "./internal/wire/protocol.ts"
import * as LhttpServer from "./LhttpServer.ts"
import type * as Processor from "./Processor.ts"
import * as ServerApi from "./ServerApi.ts"

/**
 * Options of the HTTP routes ({@link routes}): the WebSocket paths (where a
 * plain GET gets the page or 426), `publishPath`, `page`, `sdk` and the
 * server API's key (`apiKey`).
 *
 * @since 0.1.0
 * @category models
 */
export interface RouteOptions extends Routes.Options {}

/**
 * Options of the WebSocket transport ({@link layerWebSocket}): its `paths`
 * and the `closeGrace` of a peer.
 *
 * @since 0.1.0
 * @category models
 */
export interface WebSocketOptions extends WebSocket.Options {}

/**
 * Options of the connections that SSE and long-poll share
 * ({@link layerHttpConnections}): `sendPath`, `sessionTimeout`,
 * `sessionStartTimeout`, `maxDetachedPerAddress`, `httpConnectionRate`.
 *
 * @since 0.1.0
 * @category models
 */
export interface HttpConnectionOptions extends Connections.Options {}

/**
 * Options of the SSE transport ({@link layerSse}): `ssePath`, `sseRetry`,
 * `sseReplayBytes`, and what one URL may name (`maxUrlChannels`) and
 * recover (`urlRecoveryBytes`).
 *
 * @since 0.1.0
 * @category models
 */
export interface SseOptions extends Sse.Options {}

/**
 * Options of the long-poll transport ({@link layerLongPoll}): `pollPath`,
 * `pollTimeout`, and what one URL may name (`maxUrlChannels`) and recover
 * (`urlRecoveryBytes`).
 *
 * @since 0.1.0
 * @category models
 */
export interface LongPollOptions extends LongPoll.Options {}

/**
 * Options of the HTTP transports, for clients that cannot hold a WebSocket:
 * Server-Sent Events (`GET /sse`), long-poll (`GET /poll`) and `POST /send`
 * for what their clients send; `sse` and `poll` say which of them `layer`
 * and `layerHttpServer` serve. See docs/transports.md.
 *
 * @since 0.1.0
 * @category models
 */
export interface HttpTransportOptions extends HttpConnectionOptions, SseOptions, LongPollOptions {
  /** Whether `GET /sse` serves Server-Sent Events streams (default true): {@link layerSse}. */
  readonly sse?: boolean | undefined
  /** Whether `GET /poll` serves long-polls (default true): {@link layerLongPoll}. */
  readonly poll?: boolean | undefined
}

/**
 * Where the Node HTTP server listens.
 *
 * @since 0.1.0
 * @category models
 */
export interface ServerOptions {
  /** The port (default 8081; 0 picks a free one). */
  readonly port?: number | undefined
  /** The host to listen on (default all interfaces). */
  readonly host?: string | undefined
}

/**
 * Options of the stand-alone server.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options<P extends Processor.Any = never, F extends Filter.Any = never>
  extends LhttpServer.Options<P, F>, RouteOptions, WebSocketOptions, HttpTransportOptions, ServerOptions
{
  /**
   * How long a request (a WebSocket upgrade included) may take to send its
   * headers before its socket is closed (default 10 s; Node's own is 60 s,
   * checked every 30 s): a slowloris on the upgrade holds a socket no longer.
   */
  readonly headersTimeout?: Duration.Input | undefined
}

/**
 * The defaults of the HTTP transports' timings and limits.
 *
 * @since 0.1.0
 * @category constants
 */
export const httpTransportDefaults = {
  ...LongPoll.defaults,
  ...Connections.defaults,
  ...Sse.defaults,
  ...Url.defaults
} as const

// how long a request may take to send its headers, unless `headersTimeout` says otherwise
const defaultHeadersTimeout = Duration.seconds(10)

// ---------------------------------------------------------------------------
// The dispatcher and the Node HTTP server
// ---------------------------------------------------------------------------

/**
 * The HTTP dispatcher of one Node server: each transport Layer adds its
 * handlers of requests and upgrades here, at its paths; the server
 * ({@link layerServer}) offers every request and upgrade to them before the
 * Effect app.
 *
 * @since 0.1.0
 * @category services
 */
export class Dispatcher extends Context.Service<Dispatcher, Dispatch.Dispatcher>()(
  "effect-lhttp/NodeLhttpServer/Dispatcher"
) {}

/**
 * A dispatcher with no transport yet: provide it to {@link layerServer} and
 * to the transport Layers together, once per Node server (a Layer is built
 * once per program: a second server takes `Layer.fresh(layerDispatcher)`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerDispatcher: Layer.Layer<Dispatcher> = Layer.sync(Dispatcher, Dispatch.make)

/**
 * An `HttpServer` on a Node HTTP server, in place of
 * `NodeHttpServer.layer`: each request and upgrade goes to the transports of
 * the {@link Dispatcher} first, and what none takes to the Effect app
 * (`HttpRouter.serve`), its own WebSocket routes included. It listens on
 * `port` (default 8081) and `host`; released, it stops listening and
 * destroys the connections left (run the server's drain first). Build the
 * transports before it, so that they are in place when it listens:
 *
 * ```ts
 * NodeLhttpServer.layerServer(createServer, { port: 3000 }).pipe(
 *   Layer.provide(NodeLhttpServer.layerWebSocket({ paths: ["/live/*"] })),
 *   Layer.provide(NodeLhttpServer.layerDispatcher)
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerServer = (
  evaluate: () => Http.Server,
  options?: ServerOptions
): Layer.Layer<HttpServer.HttpServer, ServeError, Dispatcher> =>
  Layer.effect(
    HttpServer.HttpServer,
    Effect.flatMap(Dispatcher, (dispatcher) =>
      NodeHttp.make(evaluate, { port: options?.port ?? 8081, host: options?.host }, dispatcher))
  )

// ---------------------------------------------------------------------------
// The transports
// ---------------------------------------------------------------------------

/**
 * The WebSocket transport: takes the WebSocket upgrades at `paths` (default
 * any path) into the `LhttpServer` in context, admitted first (a refusal is
 * an HTTP answer), pings every connection at the server's heartbeat interval
 * and closes those that do not answer. A peer that does not answer a close
 * frame within `closeGrace` (default 5 s) has its socket destroyed. Other
 * upgrades go to the app.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWebSocket = (
  options?: WebSocketOptions
): Layer.Layer<never, never, Dispatcher | LhttpServer.LhttpServer> =>
  Layer.effectDiscard(Effect.gen(function*() {
    const dispatcher = yield* Dispatcher
    yield* dispatcher.addUpgrades(options?.paths ?? ["/*"], yield* WebSocket.make(options))
  }))

/**
 * The connections of the SSE and long-poll transports, which both share
 * (by their keys, their expiry, the per-address caps), and
 * `POST /send` / `DELETE /send` at `sendPath`, where their clients send.
 *
 * @since 0.1.0
 * @category services
 */
export class HttpConnections extends Context.Service<HttpConnections, Connections.HttpConnections>()(
  "effect-lhttp/NodeLhttpServer/HttpConnections"
) {}

/**
 * The {@link HttpConnections} of the `LhttpServer` in context, with
 * `POST /send` in the {@link Dispatcher}; their connections end with the
 * Layer (after the server's drain).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerHttpConnections = (
  options?: HttpConnectionOptions
): Layer.Layer<HttpConnections, never, Dispatcher | LhttpServer.LhttpServer> =>
  Layer.effect(
    HttpConnections,
    Effect.gen(function*() {
      const dispatcher = yield* Dispatcher
      const connections = yield* Connections.make(options)
      yield* dispatcher.addRequests(options?.sendPath ?? HttpPath.send, connections.send)
      return connections
    })
  )

/**
 * The SSE transport: `GET /sse` (`ssePath`) opens a connection as a
 * Server-Sent Events stream, or resumes one (`Last-Event-ID`), over the
 * {@link HttpConnections} in context.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerSse = (options?: SseOptions): Layer.Layer<never, never, Dispatcher | HttpConnections> =>
  Layer.effectDiscard(Effect.gen(function*() {
    const dispatcher = yield* Dispatcher
    const connections = yield* HttpConnections
    const handler = Sse.make(connections, options)
    yield* dispatcher.addRequests(options?.ssePath ?? HttpPath.sse, handler)
  }))

/**
 * The long-poll transport: `GET /poll` (`pollPath`) opens a connection, and
 * each poll of it takes the frames after its cursor, over the
 * {@link HttpConnections} in context.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerLongPoll = (options?: LongPollOptions): Layer.Layer<never, never, Dispatcher | HttpConnections> =>
  Layer.effectDiscard(Effect.gen(function*() {
    const dispatcher = yield* Dispatcher
    const connections = yield* HttpConnections
    const handler = LongPoll.make(connections, options)
    yield* dispatcher.addRequests(options?.pollPath ?? HttpPath.poll, handler)
  }))

// the WebSocket transport, and SSE and long-poll over their shared connections unless `sse` / `poll` say no
const layerTransports = (
  options: HttpTransportOptions & WebSocketOptions
): Layer.Layer<never, never, Dispatcher | LhttpServer.LhttpServer> => {
  const webSocket = layerWebSocket(options)
  const sse = options.sse === false ? [] : [layerSse(options)]
  const poll = options.poll === false ? [] : [layerLongPoll(options)]
  const http = [...sse, ...poll]
  if (http.length === 0) return webSocket
  return Layer.mergeAll(webSocket, ...http).pipe(Layer.provide(layerHttpConnections(options)))
}

/**
 * An `HttpServer` for Effect apps, in place of `NodeHttpServer.layer`:
 * {@link layerServer} with the WebSocket transport at `paths` (default any
 * path) and, unless `sse` or `poll` say no, the SSE and long-poll
 * transports, over the `LhttpServer` in context. It serves the Effect app
 * (`HttpRouter.serve`) too; other upgrades go to the app.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerHttpServer = (
  evaluate: () => Http.Server,
  options: HttpTransportOptions & WebSocketOptions & ServerOptions
): Layer.Layer<HttpServer.HttpServer, ServeError, LhttpServer.LhttpServer> =>
  layerServer(evaluate, options).pipe(
    Layer.provide(layerTransports(options)),
    // a dispatcher of its own: two servers in one program do not share one
    Layer.provide(Layer.fresh(layerDispatcher))
  )

// ---------------------------------------------------------------------------
// HTTP routes
// ---------------------------------------------------------------------------

/**
 * Whether a peer address is on the loopback network (IPv4, IPv6, or IPv4-mapped).
 *
 * @since 0.1.0
 * @category utils
 */
export const isLoopback: (address: string | undefined) => boolean = Routes.isLoopback

/**
 * The server's HTTP routes, for an `HttpRouter`: `POST /publish`,
 * `GET /metrics`, `GET /healthz`, `GET /readyz`, the server API at
 * `POST /api/<operation>` (when a `ServerApi` is in context), the browser SDK at
 * `GET /lhttp.js`, and on the WebSocket paths, for requests that are not
 * upgrades, the page (at `/`) or `426 Upgrade Required`. Provide
 * `LhttpServer.layer(...)` and the `Hub` outside `HttpRouter.serve` so that
 * routes and app share them.
 *
 * @since 0.1.0
 * @category layers
 */
export const routes = (
  options?: RouteOptions
): Layer.Layer<never, never, HttpRouter.HttpRouter | LhttpServer.LhttpServer | Hub.Hub> => Routes.make(options)

// ---------------------------------------------------------------------------
// The stand-alone server
// ---------------------------------------------------------------------------

/**
 * A stand-alone Node server: the core, the server API (`ServerApi`, which
 * every node of a cluster answers), the WebSocket transport and (unless
 * `sse` or `poll` say no) the SSE and long-poll transports, the routes and a
 * Node HTTP server on `port`, with a graceful drain when the Layer's scope
 * closes (as `NodeRuntime.runMain` does on SIGTERM and SIGINT). It logs one
 * line with the address it listens on.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <const P extends Processor.Any = never, const F extends Filter.Any = never>(
  options: Options<P, F>
): Layer.Layer<
  LhttpServer.LhttpServer | ServerApi.ServerApi | HttpServer.HttpServer,
  LhttpServer.LhttpServerError | ServeError,
  Hub.Hub | Bus | Processor.Services<P> | Filter.Services<F>
> => {
  // built after the HTTP server, so released before it: the drain runs while it still answers
  const drainOnShutdown = Layer.effectDiscard(Effect.gen(function*() {
    const server = yield* LhttpServer.LhttpServer
    yield* HttpServer.addressFormattedWith((address) => Effect.logInfo(`effect-lhttp listening on ${address}`))
    yield* Effect.addFinalizer(() => server.drain)
  }))
  const headersTimeout = Duration.toMillis(Duration.fromInputUnsafe(options.headersTimeout ?? defaultHeadersTimeout))
  const createServer = () =>
    Http.createServer({
      headersTimeout,
      // the deadline is checked this often: a tenth of it, at least every second
      connectionsCheckingInterval: Math.max(100, Math.min(1_000, headersTimeout / 10))
    })
  const http = HttpRouter.serve(routes(options), { disableLogger: true, disableListenLog: true }).pipe(
    Layer.provideMerge(layerHttpServer(createServer, options))
  )
  return drainOnShutdown.pipe(
    Layer.provideMerge(http),
    // every node answers the server API's questions, whether or not it serves its HTTP face
    Layer.provideMerge(ServerApi.layer()),
    Layer.provideMerge(LhttpServer.layer(options))
  )
}

/**
 * The stand-alone server's settings read from the environment, each checked
 * (a bad one fails with a `ConfigError` at its name saying what is
 * expected): `LHTTP_PORT` (1 to 65535, default 8081), `LHTTP_HOST` (an IP
 * address or a host name), `LHTTP_PUBLISH_TOKEN` and `LHTTP_API_KEY` (visible
 * ASCII, no spaces),
 * `LHTTP_MAX_MESSAGE_BYTES` (1 to 16777216, default 65536),
 * `LHTTP_ALLOWED_ORIGINS` (comma-separated origins such as
 * `https://chat.example.com`), `LHTTP_MAX_CONNECTIONS` (1 to 10,000,000,
 * default 100,000), `LHTTP_MAX_CONNECTIONS_PER_ADDRESS` (default: a tenth
 * of the maximum, at least 100), `LHTTP_MAX_DETACHED_PER_ADDRESS` (SSE and
 * long-poll connections no request holds, default 1,000),
 * `LHTTP_MAX_URL_CHANNELS` (channels on one SSE or long-poll URL, default
 * 32), `LHTTP_URL_RECOVERY_BYTES` (history replayed for one URL, default
 * 262144), `LHTTP_CONNECTIONS_PER_SECOND` (per address; unset: no limit)
 * and `LHTTP_MESSAGES_PER_SECOND` (per connection; unset: no limit), each
 * rate above 0 and at most 1,000,000, with a burst of twice as many.
 *
 * @since 0.1.0
 * @category config
 */
export const config: typeof Environment.config = Environment.config

/**
 * {@link layer} with the settings of {@link config} over `options`. A port
 * that cannot be listened on fails with a `ListenError` whose message is one
 * line naming the port and `LHTTP_PORT` (or `LHTTP_HOST`), e.g.
 * `port 8081 on 127.0.0.1 is in use (LHTTP_PORT)`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = <const P extends Processor.Any = never, const F extends Filter.Any = never>(
  options: Options<P, F>
) =>
  Layer.unwrap(Effect.gen(function*() {
    const env = yield* config
    return layer(Environment.over(options, env)).pipe(
      Layer.catchTag(
        "ServeError",
        (error) => Layer.effectDiscard(Effect.fail(Environment.listenError(error.cause, env)))
      )
    )
  }))

/**
 * Runs a server Layer as the program (`NodeRuntime.runMain`) until SIGTERM or
 * SIGINT. The Layer's scope then closes, which drains the server, and the
 * process exits with 0; a failure exits with 1. A configuration mistake (a
 * `ConfigError`, such as a bad `LHTTP_*` variable) or a port that cannot be
 * listened on prints one line on stderr, e.g.
 * `LHTTP_MAX_MESSAGE_BYTES: expected a whole number from 1 to 16777216, got "-5"`,
 * and no stack trace unless `LHTTP_DEBUG=1` asks for the full cause too;
 * any other failure is logged with its full cause.
 *
 * ```ts
 * NodeLhttpServer.launch(Main)
 * ```
 *
 * @since 0.1.0
 * @category running
 */
export const launch = <A, E>(layer: Layer.Layer<A, E>): void =>
  Effect.flatMap(
    Effect.tapCause(StartupConfig.debugConfig, (cause) => StartupConfig.reportFailure(cause, false)),
    (debug) => Layer.launch(layer).pipe(Effect.tapCause((cause) => StartupConfig.reportFailure(cause, debug)))
  ).pipe(NodeRuntime.runMain({
    disableErrorReporting: true,
    teardown: (exit, onExit) =>
      Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)
  }))
