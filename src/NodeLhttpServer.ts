/**
 * The LHTTP server on Node: the WebSocket transport, the HTTP endpoints and
 * the Node HTTP server they run on. The one module of the package that
 * touches `@effect/platform-node` and `ws`; import it as
 * `effect-lhttp/NodeLhttpServer`.
 *
 * - `layer(options)`: a stand-alone server on a port: the core
 *   (`LhttpServer.layer`), the routes and the Node HTTP server, with a
 *   graceful drain when the Layer's scope closes.
 * - `layerConfig(options)`: the same, with the `LHTTP_*` environment variables.
 * - `layerHttpServer(evaluate, options)`: an `HttpServer` for Effect apps (in
 *   place of `NodeHttpServer.layer`) that serves the app's `HttpRouter` and
 *   takes LHTTP WebSocket upgrades at `paths` itself; other upgrades go to
 *   the app.
 * - `routes(options)`: `POST /publish`, `/healthz`, `/readyz`, the browser
 *   SDK at `/lhttp.js` and an optional page at `/`, for an `HttpRouter`.
 * - `launch(layer)`: runs a server Layer as the program until a signal.
 *
 * The WebSocket transport owns its `ws` server and each `WebSocket`: a
 * message goes from the socket straight into its connection, writes are
 * corked batches of shared bytes, and an idle connection holds no fiber, no
 * Effect `Socket` and no HTTP request.
 *
 * @since 0.1.0
 */
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import * as NodeWS from "@effect/platform-node/NodeWS"
import {
  ByteSize,
  Cause,
  Config,
  Duration,
  Effect,
  Exit,
  Layer,
  Option,
  Redacted,
  Result,
  Runtime,
  Scope
} from "effect"
import { HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "effect/http"
import { ServeError } from "effect/http/HttpServerError"
import { PrometheusMetrics } from "effect/observability"
import * as NetAddress from "effect/net/NetAddress"
import { Buffer } from "node:buffer"
import { timingSafeEqual } from "node:crypto"
import { readFileSync } from "node:fs"
import * as Http from "node:http"
import type { Duplex } from "node:stream"
import type { Bus } from "./Bus.ts"
import * as Channel from "./Channel.ts"
import type * as Filter from "./Filter.ts"
import * as Frame from "./Frame.ts"
import * as Hub from "./Hub.ts"
import * as StartupConfig from "./internal/server/config.ts"
import * as HttpTransports from "./internal/node/httpTransports.ts"
import * as LhttpServer from "./LhttpServer.ts"
import { Header } from "./Message.ts"
import type * as Processor from "./Processor.ts"
import type { Rejection } from "./Rejection.ts"
import type * as Transport from "./Transport.ts"

/**
 * Options of the WebSocket endpoint and the HTTP routes.
 *
 * @since 0.1.0
 * @category models
 */
export interface RouteOptions {
  /** The paths of the WebSocket endpoint: exact, or a prefix ending in `/*` (default `["/*"]`: any path). */
  readonly paths?: ReadonlyArray<string> | undefined
  /** The path of the publish endpoint (default `/publish`). */
  readonly publishPath?: string | undefined
  /** An HTML page served at `GET /` to requests that are not WebSocket upgrades (default: none, 426). */
  readonly page?: string | undefined
  /** Whether `GET /lhttp.js` serves the browser SDK (default true). */
  readonly sdk?: boolean | undefined
}

/**
 * Options of the HTTP transports, for clients that cannot hold a WebSocket:
 * Server-Sent Events (`GET /sse`), long-poll (`GET /poll`) and `POST /send`
 * for what their clients send. See docs/transports.md.
 *
 * @since 0.1.0
 * @category models
 */
export interface HttpTransportOptions {
  /** Whether `GET /sse` serves Server-Sent Events streams (default true). */
  readonly sse?: boolean | undefined
  /** Whether `GET /poll` serves long-polls (default true). */
  readonly poll?: boolean | undefined
  /** The path of the SSE endpoint (default `/sse`). */
  readonly ssePath?: string | undefined
  /** The path of the long-poll endpoint (default `/poll`). */
  readonly pollPath?: string | undefined
  /** The path where SSE and long-poll clients send frames (default `/send`). */
  readonly sendPath?: string | undefined
  /** How long a poll waits for frames before it answers an empty list (default 25 s). */
  readonly pollTimeout?: Duration.Input | undefined
  /** How long a connection with no stream and no poll lives on before it expires (default 60 s). */
  readonly sessionTimeout?: Duration.Input | undefined
  /** The `retry:` hint: how long an `EventSource` waits before it reconnects (default 1 s). */
  readonly sseRetry?: Duration.Input | undefined
  /** Bytes of frames an SSE connection keeps, once written, for a reconnect's `Last-Event-ID` (default 64 KiB). */
  readonly sseReplayBytes?: number | undefined
  /**
   * How long a new connection lives before its first poll or stream (default
   * 10 s; `sessionTimeout` once it had one): a `GET /poll` that is never
   * polled goes soon.
   */
  readonly sessionStartTimeout?: Duration.Input | undefined
  /**
   * SSE and long-poll connections of one address that no request holds (no
   * stream attached, no poll waiting) at most (default 1,000; `Infinity`: no
   * limit); past it, new SSE and long-poll connections from that address get
   * 503 `TooManyDetached`.
   */
  readonly maxDetachedPerAddress?: number | undefined
  /**
   * New SSE and long-poll connections a second from one address, with a
   * burst (default `{ perSecond: 100, burst: 5_000 }`; `null`: no limit);
   * past it, 503 `ConnectingTooFast`. Beside the server's `connectionRate`,
   * which counts every transport.
   */
  readonly httpConnectionRate?: LhttpServer.Rate | null | undefined
  /**
   * Channels one SSE or long-poll URL may name, `subscribe` and `since`
   * together (default 32); past it, 400 `TooManyChannels`.
   */
  readonly maxUrlChannels?: number | undefined
  /**
   * Bytes of history the `since` positions of one SSE or long-poll URL may
   * recover (default 256 KiB); past it, the rest is not sent and those
   * channels' `position` frames say `recovered:no` with `reason:RecoveryLimit`.
   */
  readonly urlRecoveryBytes?: number | undefined
}

/**
 * Options of the stand-alone server.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options<P extends Processor.Any = never, F extends Filter.Any = never>
  extends LhttpServer.Options<P, F>, RouteOptions, HttpTransportOptions
{
  /** The port (default 8081; 0 picks a free one). */
  readonly port?: number | undefined
  /** The host to listen on (default all interfaces). */
  readonly host?: string | undefined
  /** How long a peer gets to answer a close frame before its socket is destroyed (default 5 s). */
  readonly closeGrace?: Duration.Input | undefined
  /**
   * How long a request (a WebSocket upgrade included) may take to send its
   * headers before its socket is closed (default 10 s; Node's own is 60 s,
   * checked every 30 s): a slowloris on the upgrade holds a socket no longer.
   */
  readonly headersTimeout?: Duration.Input | undefined
}

// ---------------------------------------------------------------------------
// The WebSocket transport
// ---------------------------------------------------------------------------

const OPEN = 1
const text = { binary: false } as const

// how long a peer gets to answer a close frame before its socket is destroyed, unless `closeGrace` says otherwise
const defaultCloseGrace = Duration.seconds(5)

// how long a request may take to send its headers, unless `headersTimeout` says otherwise
const defaultHeadersTimeout = Duration.seconds(10)

/** One WebSocket as a transport of the core. */
class WebSocketTransport implements Transport.Transport {
  readonly kind = "websocket"
  readonly peer: Transport.Peer
  readonly ws: NodeWS.WebSocket
  readonly socket: Duplex
  /** Milliseconds the peer gets to answer a close frame. */
  readonly closeGrace: number
  /** A ping is waiting for its pong. */
  awaitingPong = false
  /** The core asked to stop reading: pongs are not read either, so the heartbeat waits. */
  paused = false

  constructor(ws: NodeWS.WebSocket, socket: Duplex, peer: Transport.Peer, closeGrace: number) {
    this.ws = ws
    this.socket = socket
    this.peer = peer
    this.closeGrace = closeGrace
  }

  write(frames: ReadonlyArray<Transport.Outbound>): void {
    if (this.ws.readyState !== OPEN) return
    if (frames.length === 1) return this.ws.send(frames[0]!.bytes, text)
    this.socket.cork()
    for (let i = 0; i < frames.length; i++) this.ws.send(frames[i]!.bytes, text)
    this.socket.uncork()
  }

  bufferedBytes(): number {
    return this.ws.bufferedAmount
  }

  isOpen(): boolean {
    return this.ws.readyState === OPEN
  }

  close(code: number, reason: string): void {
    if (this.ws.readyState !== OPEN) return
    try {
      this.ws.close(code, reason)
    } catch {
      // the core gives valid codes and reasons; should ws refuse one anyway, the connection still ends
      return this.ws.terminate()
    }
    const ws = this.ws
    setTimeout(() => ws.terminate(), this.closeGrace).unref()
  }

  pause(): void {
    this.paused = true
    this.ws.pause()
  }

  resume(): void {
    this.paused = false
    this.ws.resume()
  }
}

const pathMatcher = (paths: ReadonlyArray<string>) => {
  const exact = new Set<string>()
  const prefixes: Array<string> = []
  for (const path of paths) {
    if (path.endsWith("/*")) prefixes.push(path.slice(0, -1))
    else exact.add(path)
  }
  return (url: string | undefined): boolean => {
    const path = (url ?? "/").split("?")[0]!
    return exact.has(path) || prefixes.some((prefix) => path.startsWith(prefix) || path === prefix.slice(0, -1))
  }
}

const refuseUpgrade = (socket: Duplex, status: number, statusText: string, body: string) => {
  socket.on("error", () => socket.destroy())
  // a 503 is a moment's refusal (shutting down, too many connections): say when to come back
  const retry = status === 503 ? "retry-after: 1\r\n" : ""
  socket.end(
    `HTTP/1.1 ${status} ${statusText}\r\nconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\n${retry}` +
      `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  )
}

/**
 * The WebSocket endpoint: takes the upgrades at its paths into the server's
 * core, pings every connection, and closes those that do not answer.
 */
/**
 * Admits who asks to connect (the server's connection cap and rate, its
 * `authenticate` hook), then calls back with the data to accept them with, or
 * the refusal to answer.
 */
const makeAdmit = Effect.fnUntraced(function*() {
  const server = yield* LhttpServer.LhttpServer
  const context = yield* Effect.context<never>()
  const admit: HttpTransports.Admit = (peer, then) =>
    Effect.runForkWith(context)(Effect.flatMap(Effect.result(server.admit(peer)), (result) => Effect.sync(() => then(result))))
  return admit
})

const makeEndpoint = Effect.fnUntraced(function*(
  paths: ReadonlyArray<string>,
  closeGrace: Duration.Input,
  admit: HttpTransports.Admit
) {
  const server = yield* LhttpServer.LhttpServer
  const closeGraceMillis = Duration.toMillis(Duration.fromInputUnsafe(closeGrace))
  const context = yield* Effect.context<never>()
  const settings = server.settings
  const wss = new NodeWS.WebSocketServer({
    noServer: true,
    clientTracking: false,
    maxPayload: settings.maxMessageBytes,
    perMessageDeflate: false
  })
  const open = new Set<WebSocketTransport>()

  const heartbeatTimeout = Duration.toMillis(settings.heartbeatTimeout)
  const heartbeatInterval = Duration.toMillis(settings.heartbeatInterval)
  const ping = () => {
    for (const transport of open) {
      // a connection the core paused is not read, so its pong would not be seen: it waits
      if (transport.paused) continue
      transport.awaitingPong = true
      transport.ws.ping()
    }
    setTimeout(() => {
      for (const transport of open) {
        if (transport.awaitingPong && !transport.paused) {
          transport.close(LhttpServer.CloseCode.heartbeatTimeout, "heartbeat timeout")
        }
      }
    }, Math.min(heartbeatTimeout, heartbeatInterval)).unref()
  }
  // an infinite interval turns the heartbeat off
  const heartbeat = Number.isFinite(heartbeatInterval) && heartbeatInterval > 0
    ? setInterval(ping, heartbeatInterval).unref()
    : undefined
  // after the server's drain: what is still open (a drain past its timeout) is cut, so the process can exit
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      if (heartbeat !== undefined) clearInterval(heartbeat)
      for (const transport of open) transport.ws.terminate()
    })
  )

  const connect = (ws: NodeWS.WebSocket, socket: Duplex, peer: Transport.Peer, admitted: LhttpServer.Admitted) => {
    const transport = new WebSocketTransport(ws, socket, peer, closeGraceMillis)
    open.add(transport)
    const inbound = server.accept(transport, admitted)
    ws.on("message", (data: Buffer, isBinary: boolean) => inbound.receive(isBinary ? data : data.toString()))
    ws.on("pong", () => {
      transport.awaitingPong = false
    })
    // a protocol error (1002), an oversized message (1009) or invalid UTF-8 (1007): the peer's fault,
    // ws closes the connection with that code; logged at debug level
    ws.on("error", (error) => {
      Effect.runForkWith(context)(Effect.logDebug(`WebSocket closed by the server: ${error.message}`))
    })
    ws.on("close", () => {
      open.delete(transport)
      inbound.closed()
    })
  }

  const matches = pathMatcher(paths)
  return {
    /** Takes an upgrade request when it is a WebSocket one at the endpoint's paths; false otherwise. */
    upgrade: (request: Http.IncomingMessage, socket: Duplex, head: Buffer): boolean => {
      if (request.headers.upgrade?.toLowerCase() !== "websocket" || !matches(request.url)) return false
      if (server.isDraining()) {
        refuseUpgrade(socket, 503, "Service Unavailable", "the server is shutting down\n")
        return true
      }
      const origin = request.headers.origin
      if (origin !== undefined && settings.allowedOrigins !== undefined && !settings.allowedOrigins.has(origin)) {
        refuseUpgrade(socket, 403, "Forbidden", "origin not allowed\n")
        return true
      }
      const peer: Transport.Peer = {
        url: request.url ?? "/",
        requestHeaders: HttpTransports.flatHeaders(request.headers),
        remoteAddress: request.socket.remoteAddress
      }
      // admitted first (the cap, the rate, the authenticate hook): a refusal is an HTTP answer, and no WebSocket
      admit(peer, (result) => {
        if (socket.destroyed) return
        if (result._tag === "Success") {
          return wss.handleUpgrade(request, socket, head, (ws) => connect(ws, socket, peer, result.success))
        }
        const status = result.failure.status
        refuseUpgrade(socket, status, Http.STATUS_CODES[status] ?? "Refused", `${result.failure.message}\n`)
      })
      return true
    }
  }
})

/** The HTTP transports (SSE, long-poll, send) over the server in context, stopped with the scope. */
const makeHttpTransports = Effect.fnUntraced(function*(options: HttpTransportOptions, admit: HttpTransports.Admit) {
  const server = yield* LhttpServer.LhttpServer
  const millis = (input: Duration.Input | undefined, fallback: Duration.Input) =>
    Duration.toMillis(Duration.fromInputUnsafe(input ?? fallback))
  const transports = HttpTransports.make(server, {
    sse: options.sse ?? true,
    poll: options.poll ?? true,
    ssePath: options.ssePath ?? "/sse",
    pollPath: options.pollPath ?? "/poll",
    sendPath: options.sendPath ?? "/send",
    pollTimeout: millis(options.pollTimeout, httpTransportDefaults.pollTimeout),
    sessionTimeout: millis(options.sessionTimeout, httpTransportDefaults.sessionTimeout),
    retry: millis(options.sseRetry, httpTransportDefaults.sseRetry),
    heartbeat: Duration.toMillis(server.settings.heartbeatInterval),
    replayBytes: options.sseReplayBytes ?? httpTransportDefaults.sseReplayBytes,
    startTimeout: millis(options.sessionStartTimeout, httpTransportDefaults.sessionStartTimeout),
    maxDetachedPerAddress: options.maxDetachedPerAddress ?? httpTransportDefaults.maxDetachedPerAddress,
    connectionRate: options.httpConnectionRate === null
      ? undefined
      : options.httpConnectionRate ?? httpTransportDefaults.httpConnectionRate,
    maxUrlChannels: options.maxUrlChannels ?? httpTransportDefaults.maxUrlChannels,
    recoveryBytes: options.urlRecoveryBytes ?? httpTransportDefaults.urlRecoveryBytes
  }, admit)
  yield* Effect.addFinalizer(() => Effect.sync(transports.close))
  return transports
})

/**
 * The defaults of the HTTP transports' timings and limits.
 *
 * @since 0.1.0
 */
export const httpTransportDefaults = {
  pollTimeout: Duration.seconds(25),
  sessionTimeout: Duration.seconds(60),
  sseRetry: Duration.seconds(1),
  sseReplayBytes: 64 * 1024,
  sessionStartTimeout: Duration.seconds(10),
  maxDetachedPerAddress: 1_000,
  httpConnectionRate: { perSecond: 100, burst: 5_000 },
  maxUrlChannels: 32,
  urlRecoveryBytes: 256 * 1024
} as const

/**
 * An `HttpServer` on a Node HTTP server, in place of `NodeHttpServer.layer`:
 * it serves the Effect app (`HttpRouter.serve`) and takes the LHTTP
 * WebSocket upgrades at `paths` (default any path) into the `LhttpServer` in
 * context; other upgrades go to the app. A peer that does not answer a close
 * frame within `closeGrace` (default 5 s) has its socket destroyed. Released,
 * it stops listening and destroys the connections left (run the server's
 * drain first).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerHttpServer = (
  evaluate: () => Http.Server,
  options: HttpTransportOptions & {
    readonly port?: number | undefined
    readonly host?: string | undefined
    readonly paths?: ReadonlyArray<string> | undefined
    readonly closeGrace?: Duration.Input | undefined
  }
): Layer.Layer<HttpServer.HttpServer, ServeError, LhttpServer.LhttpServer> =>
  Layer.effect(
    HttpServer.HttpServer,
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const admit = yield* makeAdmit()
      const endpoint = yield* makeEndpoint(options.paths ?? ["/*"], options.closeGrace ?? defaultCloseGrace, admit)
      const httpTransports = yield* makeHttpTransports(options, admit)
      const server = evaluate()
      yield* Effect.callback<void, ServeError>((resume) => {
        const onError = (cause: unknown) => resume(Effect.fail(new ServeError({ cause })))
        server.once("error", onError)
        server.listen({ port: options.port ?? 8081, host: options.host }, () => {
          server.off("error", onError)
          resume(Effect.void)
        })
      })
      yield* Scope.addFinalizer(
        scope,
        Effect.sync(() => {
          server.close()
          server.closeAllConnections()
        })
      )
      const bound = server.address()
      const address = typeof bound === "string" || bound === null
        ? NetAddress.unixPathAddress(String(bound))
        : yield* Effect.fromResult(NetAddress.inetAddressFromIpString(bound.address, bound.port)).pipe(
          Effect.mapError((cause) => new ServeError({ cause }))
        )
      // the app's own WebSocket routes, made on first use
      const appWss = yield* Effect.acquireRelease(
        Effect.sync(() => new NodeWS.WebSocketServer({ noServer: true })),
        (wss) => Effect.callback<void>((resume) => wss.close(() => resume(Effect.void)))
      ).pipe(Scope.provide(scope), Effect.cached)
      return HttpServer.make({
        address,
        serve: Effect.fnUntraced(function*(app, middleware) {
          const serveScope = Scope.forkUnsafe(yield* Effect.scope, "parallel")
          const onRequest = yield* NodeHttpServer.makeHandler(app, { middleware, scope: serveScope })
          const onAppUpgrade = yield* NodeHttpServer.makeUpgradeHandler(appWss, app, {
            middleware,
            scope: serveScope
          })
          const onUpgrade = (request: Http.IncomingMessage, socket: Duplex, head: Buffer) => {
            if (!endpoint.upgrade(request, socket, head)) onAppUpgrade(request, socket, head)
          }
          const onHttp = (request: Http.IncomingMessage, response: Http.ServerResponse) => {
            if (!httpTransports.handle(request, response)) onRequest(request, response)
          }
          server.on("request", onHttp)
          server.on("upgrade", onUpgrade)
          yield* Effect.addFinalizer(() =>
            Effect.sync(() => {
              server.off("request", onHttp)
              server.off("upgrade", onUpgrade)
            })
          )
        })
      })
    })
  )

// ---------------------------------------------------------------------------
// HTTP routes
// ---------------------------------------------------------------------------

// the browser SDK, beside the compiled or the source tree alike
const sdkFile = new URL("./browser/lhttp.js", import.meta.url)

/**
 * Whether a peer address is on the loopback network (IPv4, IPv6, or IPv4-mapped).
 *
 * @since 0.1.0
 * @category utils
 */
export const isLoopback = (address: string | undefined): boolean =>
  address !== undefined &&
  (address === "::1" || address.startsWith("127.") || address.startsWith("::ffff:127."))

// the scheme is case-insensitive (RFC 7235 §2.1)
const tokenMatches = (header: string | undefined, token: Redacted.Redacted<string>): boolean => {
  if (header === undefined || header.length < 7 || header.slice(0, 7).toLowerCase() !== "bearer ") return false
  const given = Buffer.from(header.slice(7))
  const expected = Buffer.from(Redacted.value(token))
  return given.length === expected.length && timingSafeEqual(given, expected)
}

const plain = (status: number, body: string, headers?: Record<string, string>) =>
  HttpServerResponse.text(body, { status, ...(headers === undefined ? {} : { headers }) })

/**
 * The server's HTTP routes, for an `HttpRouter`: `POST /publish`,
 * `GET /healthz`, `GET /readyz`, the browser SDK at `GET /lhttp.js`, and on
 * the WebSocket paths, for requests that are not upgrades, the page (at `/`)
 * or `426 Upgrade Required`. Provide `LhttpServer.layer(...)` and the `Hub`
 * outside `HttpRouter.serve` so that routes and app share them.
 *
 * @since 0.1.0
 * @category layers
 */
export const routes = (
  options?: RouteOptions
): Layer.Layer<never, never, HttpRouter.HttpRouter | LhttpServer.LhttpServer | Hub.Hub> =>
  HttpRouter.use(Effect.fnUntraced(function*(router) {
    const server = yield* LhttpServer.LhttpServer
    const hub = yield* Hub.Hub
    const settings = server.settings
    const page = options?.page

    // the backends' endpoints (/publish, /metrics): the bearer token when one is set, else loopback peers only
    const guard = (request: HttpServerRequest.HttpServerRequest, what: string) => {
      if (settings.publishToken !== undefined) {
        return tokenMatches(request.headers["authorization"], settings.publishToken)
          ? undefined
          : plain(401, "a bearer token is required\n", { "www-authenticate": "Bearer" })
      }
      return isLoopback(Option.getOrUndefined(request.remoteAddress))
        ? undefined
        : plain(403, `without a publish token, only loopback peers may ${what}\n`)
    }

    const notUpgraded = (request: HttpServerRequest.HttpServerRequest) =>
      Effect.succeed(
        page !== undefined && request.url.split("?")[0] === "/"
          ? HttpServerResponse.html(page)
          : plain(426, "LHTTP runs over WebSocket: connect with a WebSocket client\n", { upgrade: "websocket" })
      )

    const publish = (request: HttpServerRequest.HttpServerRequest) =>
      Effect.gen(function*() {
        if (request.method !== "POST") return plain(405, "POST an LHTTP message with a publish header\n", { allow: "POST" })
        const refused = guard(request, "publish")
        if (refused !== undefined) return refused
        const length = Number(request.headers["content-length"] ?? 0)
        if (length > settings.maxMessageBytes) return plain(413, `a message is at most ${settings.maxMessageBytes} bytes\n`)
        const bytes = yield* request.arrayBuffer.pipe(
          Effect.provideService(HttpServerRequest.MaxBodySize, ByteSize.bytes(settings.maxMessageBytes)),
          Effect.result
        )
        if (Result.isFailure(bytes)) return plain(413, `a message is at most ${settings.maxMessageBytes} bytes\n`)
        // refused as over WebSocket, rather than delivered with U+FFFD in place of the bad bytes
        const text = Frame.decodeUtf8(bytes.success)
        if (Result.isFailure(text)) return plain(400, "InvalidUtf8: the message is not valid UTF-8\n")
        const body = text.success
        const frame = Frame.parse(body, { maxHeaders: settings.maxHeaders })
        if (Result.isFailure(frame)) return plain(400, `${frame.failure.reason}: ${frame.failure.message}\n`)
        const value = frame.success.headers.get(Header.publish)
        if (!value) return plain(400, "the message has no publish header\n")
        const channels = Channel.parseList(value)
        if (Result.isFailure(channels)) return plain(400, `${channels.failure.reason}: ${channels.failure.message}\n`)
        return yield* server.authorize({ action: "publish", channels: channels.success, connection: undefined }).pipe(
          Effect.andThen(hub.publishText(channels.success, body)),
          Effect.as(HttpServerResponse.empty({ status: 204 })),
          Effect.catch((rejection: Rejection) => Effect.succeed(plain(rejection.status, `${rejection.message}\n`)))
        )
      })

    if (options?.sdk !== false) {
      const sdk = HttpServerResponse.text(readFileSync(sdkFile, "utf8"), {
        contentType: "text/javascript; charset=utf-8",
        headers: { "cache-control": "no-cache" }
      })
      yield* router.add("GET", "/lhttp.js", Effect.succeed(sdk))
    }
    for (const path of options?.paths ?? ["/*"]) yield* router.add("GET", path as HttpRouter.PathInput, notUpgraded)
    yield* router.add("*", (options?.publishPath ?? "/publish") as HttpRouter.PathInput, publish)
    // the metrics, in Prometheus text, guarded as /publish is: the token, or loopback without one
    yield* router.add("GET", "/metrics", (request: HttpServerRequest.HttpServerRequest) =>
      Effect.gen(function*() {
        const refused = guard(request, "read the metrics")
        if (refused !== undefined) return refused
        return HttpServerResponse.text(yield* PrometheusMetrics.format(), {
          contentType: "text/plain; version=0.0.4; charset=utf-8"
        })
      }))
    yield* router.add("GET", "/healthz", Effect.succeed(plain(200, "ok\n")))
    yield* router.add(
      "GET",
      "/readyz",
      // each limitation on a line of its own after the answer
      Effect.map(Effect.all([server.isReady, server.limitations]), ([ready, limitations]) => {
        const notes = limitations.map((limitation) => `limited: ${limitation.feature}: ${limitation.message}\n`).join("")
        return ready ? plain(200, `ready\n${notes}`) : plain(503, `not ready\n${notes}`)
      })
    )
  }))

// ---------------------------------------------------------------------------
// The stand-alone server
// ---------------------------------------------------------------------------

/**
 * A stand-alone Node server: the core, the routes and a Node HTTP server on
 * `port`, with a graceful drain when the Layer's scope closes (as
 * `NodeRuntime.runMain` does on SIGTERM and SIGINT). It logs one line with
 * the address it listens on.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <const P extends Processor.Any = never, const F extends Filter.Any = never>(
  options: Options<P, F>
): Layer.Layer<
  LhttpServer.LhttpServer | HttpServer.HttpServer,
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
    Layer.provideMerge(LhttpServer.layer(options))
  )
}

/** The largest `LHTTP_MAX_MESSAGE_BYTES`: 16 MiB. */
const maxMessageBytesLimit = 16 * 1024 * 1024

/** The largest `LHTTP_MAX_CONNECTIONS`. */
const maxConnectionsLimit = 10_000_000

/**
 * The stand-alone server's settings read from the environment, each checked
 * (a bad one fails with a `ConfigError` at its name saying what is
 * expected): `LHTTP_PORT` (1 to 65535, default 8081), `LHTTP_HOST` (an IP
 * address or a host name), `LHTTP_PUBLISH_TOKEN` (visible ASCII, no spaces),
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
export const config = Config.all({
  port: StartupConfig.checkedOr("LHTTP_PORT", 8081, StartupConfig.parsePort),
  host: StartupConfig.checked("LHTTP_HOST", StartupConfig.parseHost),
  publishToken: StartupConfig.checked("LHTTP_PUBLISH_TOKEN", StartupConfig.parseSecret).pipe(
    Config.map(Option.map(Redacted.make))
  ),
  maxMessageBytes: StartupConfig.checkedOr(
    "LHTTP_MAX_MESSAGE_BYTES",
    LhttpServer.defaults.maxMessageBytes,
    StartupConfig.parseWholeNumber(1, maxMessageBytesLimit)
  ),
  allowedOrigins: StartupConfig.checked(
    "LHTTP_ALLOWED_ORIGINS",
    StartupConfig.parseList(
      "comma-separated origins such as https://chat.example.com (scheme, host, optional port; no path)",
      StartupConfig.parseOrigin
    )
  ),
  maxConnections: StartupConfig.checkedOr(
    "LHTTP_MAX_CONNECTIONS",
    LhttpServer.defaults.maxConnections,
    StartupConfig.parseWholeNumber(1, maxConnectionsLimit)
  ),
  maxConnectionsPerAddress: StartupConfig.checked(
    "LHTTP_MAX_CONNECTIONS_PER_ADDRESS",
    StartupConfig.parseWholeNumber(1, maxConnectionsLimit)
  ),
  maxDetachedPerAddress: StartupConfig.checked(
    "LHTTP_MAX_DETACHED_PER_ADDRESS",
    StartupConfig.parseWholeNumber(1, maxConnectionsLimit)
  ),
  maxUrlChannels: StartupConfig.checked("LHTTP_MAX_URL_CHANNELS", StartupConfig.parseWholeNumber(1, 10_000)),
  urlRecoveryBytes: StartupConfig.checked("LHTTP_URL_RECOVERY_BYTES", StartupConfig.parseWholeNumber(0, 2 ** 30)),
  connectionsPerSecond: StartupConfig.checked("LHTTP_CONNECTIONS_PER_SECOND", StartupConfig.parseRate),
  messagesPerSecond: StartupConfig.checked("LHTTP_MESSAGES_PER_SECOND", StartupConfig.parseRate)
})

// a rate from the environment: that many a second, twice as many at once
const rateOf = (perSecond: number) => ({ perSecond, burst: Math.max(1, Math.ceil(2 * perSecond)) })

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
    const host = Option.getOrUndefined(env.host)
    return layer({
      ...options,
      port: env.port,
      host,
      publishToken: Option.getOrUndefined(env.publishToken),
      maxMessageBytes: env.maxMessageBytes,
      allowedOrigins: Option.getOrElse(env.allowedOrigins, () => options.allowedOrigins),
      maxConnections: env.maxConnections,
      maxConnectionsPerAddress: Option.getOrElse(env.maxConnectionsPerAddress, () => options.maxConnectionsPerAddress),
      maxDetachedPerAddress: Option.getOrElse(env.maxDetachedPerAddress, () => options.maxDetachedPerAddress),
      maxUrlChannels: Option.getOrElse(env.maxUrlChannels, () => options.maxUrlChannels),
      urlRecoveryBytes: Option.getOrElse(env.urlRecoveryBytes, () => options.urlRecoveryBytes),
      connectionRate: Option.match(env.connectionsPerSecond, { onNone: () => options.connectionRate, onSome: rateOf }),
      messageRate: Option.match(env.messagesPerSecond, { onNone: () => options.messageRate, onSome: rateOf })
    }).pipe(
      Layer.catchTag("ServeError", (error) =>
        Layer.effectDiscard(Effect.fail(StartupConfig.listenError(error.cause, {
          port: env.port,
          host,
          portVariable: "LHTTP_PORT",
          hostVariable: "LHTTP_HOST"
        }))))
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
