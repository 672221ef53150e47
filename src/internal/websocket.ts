/**
 * The transport adapter: the only module that touches the unstable Effect HTTP
 * and socket modules, `@effect/platform-node` and `ws`. It mounts the
 * WebSocket endpoint and the HTTP endpoints on an `HttpRouter`, and turns an
 * upgraded request into a connection of the server.
 *
 * Reading goes through Effect's upgraded `Socket` (batched, paused while the
 * server is behind). Writing goes around it to the `ws` object, for what the
 * `Socket` writer cannot do: a batch of frames corked into one syscall, the
 * same pre-encoded bytes sent as a text frame to every subscriber, and pings.
 */
import { NodeHttpServer, NodeHttpServerRequest, NodeRuntime } from "@effect/platform-node"
import { ByteSize, Cause, Duration, Effect, Exit, Layer, Option, Redacted, Result, Runtime } from "effect"
import { HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "effect/http"
import type { ServeError as ServeError_ } from "effect/http/HttpServerError"
import { Buffer } from "node:buffer"
import { readFileSync } from "node:fs"
import { createServer } from "node:http"
import type * as Net from "node:net"
import { timingSafeEqual } from "node:crypto"
import type { WebSocket } from "ws"
import * as Channel from "../Channel.ts"
import * as Frame from "../Frame.ts"
import type { Hub } from "../Hub.ts"
import type { LhttpServer, RouteOptions } from "../LhttpServer.ts"
import { Header } from "../Message.ts"
import type { Rejection } from "../Rejection.ts"
import type { Peer } from "./connection.ts"
import type { Outbound, Transport } from "./outbound.ts"

/** The error of a server that cannot listen. */
export type ServeError = ServeError_

// ws keeps its WebSocket on the upgraded net.Socket under Symbol("websocket").
const findWebSocket = (socket: Net.Socket): WebSocket | undefined => {
  for (const symbol of Object.getOwnPropertySymbols(socket)) {
    if (symbol.description === "websocket") return (socket as unknown as Record<symbol, WebSocket>)[symbol]
  }
  return undefined
}

// the browser SDK, beside the compiled or the source tree alike
const sdkFile = new URL("../browser/lhttp.js", import.meta.url)

const OPEN = 1
const text = { binary: false } as const
// how long a peer gets to answer a close frame before its socket is destroyed
const closeGrace = 5_000

const transportOf = (ws: WebSocket, socket: Net.Socket): Transport => ({
  write: (frames: ReadonlyArray<Outbound>) => {
    if (ws.readyState !== OPEN) return
    socket.cork()
    for (let i = 0; i < frames.length; i++) ws.send(frames[i]!.bytes, text)
    socket.uncork()
  },
  bufferedBytes: () => socket.writableLength,
  isOpen: () => ws.readyState === OPEN,
  close: (code, reason) => {
    if (ws.readyState !== OPEN) return
    ws.close(code, reason)
    setTimeout(() => ws.terminate(), closeGrace).unref()
  }
})

/** Pings every open WebSocket each interval; closes those without a pong within the timeout. */
const makeHeartbeat = (interval: Duration.Duration, timeout: Duration.Duration) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const awaiting = new Map<WebSocket, { pending: boolean; transport: Transport }>()
      const check = () => {
        for (const state of awaiting.values()) {
          if (state.pending) state.transport.close(4000, "heartbeat timeout")
        }
      }
      const timer = setInterval(() => {
        for (const [ws, state] of awaiting) {
          if (ws.readyState !== OPEN) continue
          state.pending = true
          ws.ping()
        }
        setTimeout(check, Duration.toMillis(timeout)).unref()
      }, Duration.toMillis(interval))
      timer.unref()
      return {
        timer,
        add: (ws: WebSocket, transport: Transport) => {
          const state = { pending: false, transport }
          awaiting.set(ws, state)
          ws.on("pong", () => {
            state.pending = false
          })
        },
        remove: (ws: WebSocket) => awaiting.delete(ws)
      }
    }),
    (heartbeat) => Effect.sync(() => clearInterval(heartbeat.timer))
  )

/** Whether a peer address is on the loopback network (IPv4, IPv6, or IPv4-mapped). */
export const isLoopback = (address: string | undefined): boolean =>
  address !== undefined &&
  (address === "::1" || address.startsWith("127.") || address.startsWith("::ffff:127."))

const tokenMatches = (header: string | undefined, token: Redacted.Redacted<string>): boolean => {
  if (header === undefined || !header.startsWith("Bearer ")) return false
  const given = Buffer.from(header.slice(7))
  const expected = Buffer.from(Redacted.value(token))
  return given.length === expected.length && timingSafeEqual(given, expected)
}

const plain = (status: number, body: string, headers?: Record<string, string>) =>
  HttpServerResponse.text(body, { status, ...(headers === undefined ? {} : { headers }) })

/** The HTTP routes of a server: the WebSocket endpoint, `/publish`, `/healthz`, `/readyz`. */
export const routes = (
  server: LhttpServer["Service"],
  hub: Hub["Service"],
  options?: RouteOptions
): Layer.Layer<never, never, HttpRouter.HttpRouter> =>
  HttpRouter.use(Effect.fnUntraced(function*(router) {
    const settings = server.settings
    const heartbeat = yield* makeHeartbeat(settings.heartbeatInterval, settings.heartbeatTimeout)

    const page = options?.page
    const connect = (request: HttpServerRequest.HttpServerRequest) =>
      Effect.gen(function*() {
        if (request.headers["upgrade"]?.toLowerCase() !== "websocket") {
          if (page !== undefined && request.url.split("?")[0] === "/") return HttpServerResponse.html(page)
          return plain(426, "LHTTP runs over WebSocket: connect with a WebSocket client\n", { upgrade: "websocket" })
        }
        if (server.isDraining()) return plain(503, "the server is shutting down\n")
        const origin = request.headers["origin"]
        if (origin !== undefined && settings.allowedOrigins !== undefined && !settings.allowedOrigins.has(origin)) {
          return plain(403, "origin not allowed\n")
        }
        const socket = yield* request.upgrade
        const reader = yield* socket.reader
        const netSocket = NodeHttpServerRequest.toIncomingMessage(request).socket as Net.Socket
        const ws = findWebSocket(netSocket)
        if (ws === undefined) return yield* Effect.die(new Error("effect-lhttp: the upgraded socket has no ws WebSocket"))
        const transport = transportOf(ws, netSocket)
        const peer: Peer = {
          url: request.url,
          requestHeaders: request.headers,
          remoteAddress: Option.getOrUndefined(request.remoteAddress)
        }
        heartbeat.add(ws, transport)
        yield* server.run(peer, transport, reader.pull).pipe(Effect.ensuring(Effect.sync(() => heartbeat.remove(ws))))
        return HttpServerResponse.empty()
      }).pipe(
        Effect.scoped,
        Effect.catch(() => Effect.succeed(HttpServerResponse.empty()))
      )

    const publish = (request: HttpServerRequest.HttpServerRequest) =>
      Effect.gen(function*() {
        if (request.method !== "POST") return plain(405, "POST an LHTTP message with a publish header\n", { allow: "POST" })
        if (settings.publishToken !== undefined) {
          if (!tokenMatches(request.headers["authorization"], settings.publishToken)) {
            return plain(401, "a bearer token is required\n", { "www-authenticate": "Bearer" })
          }
        } else if (!isLoopback(Option.getOrUndefined(request.remoteAddress))) {
          return plain(403, "without a publish token, only loopback peers may publish\n")
        }
        const length = Number(request.headers["content-length"] ?? 0)
        if (length > settings.maxMessageBytes) return plain(413, `a message is at most ${settings.maxMessageBytes} bytes\n`)
        const body = yield* request.text.pipe(Effect.provideService(
          HttpServerRequest.MaxBodySize,
          ByteSize.bytes(settings.maxMessageBytes)
        ), Effect.result)
        if (Result.isFailure(body)) return plain(413, `a message is at most ${settings.maxMessageBytes} bytes\n`)
        const frame = Frame.parse(body.success, { maxHeaders: settings.maxHeaders })
        if (Result.isFailure(frame)) return plain(400, `${frame.failure.reason}: ${frame.failure.message}\n`)
        const value = frame.success.headers.get(Header.publish)
        if (!value) return plain(400, "the message has no publish header\n")
        const channels = Channel.parseList(value)
        if (Result.isFailure(channels)) return plain(400, `${channels.failure.reason}: ${channels.failure.message}\n`)
        return yield* hub.publishText(channels.success, body.success).pipe(
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
    for (const path of options?.paths ?? ["/*"]) yield* router.add("GET", path as HttpRouter.PathInput, connect)
    yield* router.add("*", (options?.publishPath ?? "/publish") as HttpRouter.PathInput, publish)
    yield* router.add("GET", "/healthz", Effect.succeed(plain(200, "ok\n")))
    yield* router.add(
      "GET",
      "/readyz",
      Effect.map(server.isReady, (ready) => ready ? plain(200, "ready\n") : plain(503, "not ready\n"))
    )
  }))

/**
 * Serves routes on a Node HTTP server whose WebSocket layer refuses messages
 * over `maxMessageBytes` (1009), and logs the address it listens on. When
 * released (after the server's drain), it stops listening and destroys the
 * connections left: Node's `close()` would otherwise wait for sockets that
 * never sent a request, as browsers keep spare ones open.
 */
export const serve = <E, R>(
  app: Layer.Layer<never, E, R>,
  options: { readonly port: number; readonly host: string | undefined; readonly maxMessageBytes: number }
) =>
  Layer.unwrap(Effect.sync(() => {
    const server = createServer()
    return Layer.effectDiscard(Effect.gen(function*() {
      yield* HttpServer.addressFormattedWith((address) => Effect.logInfo(`effect-lhttp listening on ${address}`))
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          server.close()
          server.closeAllConnections()
        })
      )
    })).pipe(
      Layer.provideMerge(HttpRouter.serve(app, { disableLogger: true, disableListenLog: true })),
      Layer.provideMerge(NodeHttpServer.layer(() => server, {
        port: options.port,
        ...(options.host === undefined ? {} : { host: options.host }),
        websocket: { maxPayload: options.maxMessageBytes, perMessageDeflate: false }
      }))
    )
  }))

/**
 * Runs a server Layer as the program until SIGTERM or SIGINT; a stop by
 * signal, after the Layer's finalizers drained the server, exits with 0.
 */
export const launch = <A, E>(layer: Layer.Layer<A, E>): void =>
  Layer.launch(layer).pipe(NodeRuntime.runMain({
    teardown: (exit, onExit) =>
      Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)
  }))
