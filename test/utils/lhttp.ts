/**
 * Test harness: an in-process server on a free port and real `ws` clients,
 * both scoped to the test.
 */
import type { Duration, Scope } from "effect"
import { Context, Effect, Layer } from "effect"
import { HttpServer } from "effect/http"
import WebSocket from "ws"
import * as Bus from "../../src/Bus.ts"
import type * as Filter from "../../src/Filter.ts"
import type * as History from "../../src/History.ts"
import * as Hub from "../../src/Hub.ts"
import * as LhttpServer from "../../src/LhttpServer.ts"
import * as NodeLhttpServer from "../../src/NodeLhttpServer.ts"
import type * as Processor from "../../src/Processor.ts"

/**
 * Any Layer: what a test passes as `implementations` (the processors' and filters' Layers, whatever they need
 * and fail with). A Layer's output is contravariant, so every Layer is one of these.
 */
type AnyLayer = Layer.Layer<never, unknown, unknown>

/** A running test server. */
export interface TestServer {
  readonly port: number
  readonly url: string
  readonly http: string
  readonly server: LhttpServer.LhttpServer["Service"]
  readonly hub: Hub.Hub["Service"]
}

/**
 * Starts a server with the in-memory bus on a free port until the test's
 * scope closes. `implementations` provides the processors' and filters' Layers;
 * `more` sets the Hub's options, the bus (in memory by default) and a history.
 */
export const startServer = <const P extends Processor.Any = never, const F extends Filter.Any = never>(
  options: NodeLhttpServer.Options<P, F>,
  implementations?: AnyLayer,
  more?: {
    readonly hub?: Hub.Options
    readonly bus?: Layer.Layer<Bus.Bus, unknown>
    readonly history?: Layer.Layer<History.History, unknown>
  }
) =>
  Effect.gen(function*() {
    let app: AnyLayer = NodeLhttpServer.layer({ port: 0, host: "127.0.0.1", ...options })
    if (implementations !== undefined) app = app.pipe(Layer.provide(implementations))
    const hub = more?.history === undefined
      ? Hub.layer(more?.hub)
      : Hub.layer(more.hub).pipe(Layer.provide(more.history))
    const context = yield* Layer.build(
      app.pipe(Layer.provideMerge(hub), Layer.provide(more?.bus ?? Bus.layerMemory()))
    ) as Effect.Effect<Context.Context<LhttpServer.LhttpServer | Hub.Hub | HttpServer.HttpServer>, unknown, Scope.Scope>
    const address = Context.get(context, HttpServer.HttpServer).address
    const port = address._tag === "UnixPathAddress" ? 0 : address.port
    return {
      port,
      url: `ws://127.0.0.1:${port}`,
      http: `http://127.0.0.1:${port}`,
      server: Context.get(context, LhttpServer.LhttpServer),
      hub: Context.get(context, Hub.Hub)
    } satisfies TestServer
  })

/** A `ws` client that queues the text of every frame it receives. */
export interface TestClient {
  readonly ws: WebSocket
  readonly send: (text: string) => Effect.Effect<void>
  /** The next frame, failing after `timeout` (default 2 s). */
  readonly next: (timeout?: Duration.Input) => Effect.Effect<string, Error>
  /**
   * Succeeds when nothing is waiting for this client once the server has
   * processed everything this client sent before: a probe message goes out
   * and its answer (a 404 error frame echoing the probe's id) must be the
   * next frame, as a connection's messages are processed in order. Dies with
   * the frame that arrived instead.
   */
  readonly nothing: () => Effect.Effect<void>
  /** The close code and reason, once closed. */
  readonly closed: Effect.Effect<{ readonly code: number; readonly reason: string }>
}

let probes = 0

/** Opens a client until the test's scope closes. */
export const connect = (url: string, options?: WebSocket.ClientOptions) =>
  Effect.acquireRelease(
    Effect.callback<TestClient, Error>((resume) => {
      const ws = new WebSocket(url, options)
      const frames: Array<string> = []
      const waiters: Array<(frame: string) => void> = []
      let close: { code: number; reason: string } | undefined
      const closeWaiters: Array<(close: { code: number; reason: string }) => void> = []
      ws.on("message", (data) => {
        const text = String(data)
        const waiter = waiters.shift()
        if (waiter) waiter(text)
        else frames.push(text)
      })
      ws.on("close", (code, reason) => {
        close = { code, reason: String(reason) }
        for (const waiter of closeWaiters.splice(0)) waiter(close)
      })
      ws.on("error", (error) => {
        if (ws.readyState !== WebSocket.OPEN) resume(Effect.fail(error))
      })
      const next = (timeout: Duration.Input = "2 seconds") =>
        Effect.callback<string>((resumeNext) => {
          const frame = frames.shift()
          if (frame !== undefined) return resumeNext(Effect.succeed(frame))
          const waiter = (text: string) => resumeNext(Effect.succeed(text))
          waiters.push(waiter)
          // a timed-out wait must not take the next frame
          return Effect.sync(() => {
            const index = waiters.indexOf(waiter)
            if (index !== -1) waiters.splice(index, 1)
          })
        }).pipe(Effect.timeoutOrElse({
          duration: timeout,
          orElse: () => Effect.fail(new Error("no frame arrived in time"))
        }))
      ws.on("open", () =>
        resume(Effect.succeed({
          ws,
          send: (text) => Effect.sync(() => ws.send(text)),
          next,
          nothing: () =>
            Effect.gen(function*() {
              const id = `probe-${++probes}`
              ws.send(`LHTTP/1.0 test-probe\r\nid:${id}\r\n\r\n`)
              const frame = yield* Effect.orDie(next())
              if (!frame.includes(`\r\nid:${id}\r\n`)) {
                return yield* Effect.die(new Error(`unexpected frame: ${JSON.stringify(frame)}`))
              }
            }),
          closed: Effect.callback<{ code: number; reason: string }>((resumeClose) => {
            if (close !== undefined) return resumeClose(Effect.succeed(close))
            closeWaiters.push((value) => resumeClose(Effect.succeed(value)))
          }).pipe(Effect.timeoutOrElse({
            duration: "5 seconds",
            orElse: () => Effect.die(new Error("the connection did not close in time"))
          }))
        })))
    }),
    (client) => Effect.sync(() => client.ws.terminate())
  )

/** A text frame in one line, for readable test code: `frame("chat", { publish: "a" }, "hi")`. */
export const frame = (command: string, headers: Record<string, string> = {}, body = ""): string =>
  `LHTTP/1.0 ${command}\r\n${Object.entries(headers).map(([k, v]) => `${k}:${v}\r\n`).join("")}\r\n${body}`

/** Sends an HTTP request to the test server. */
export const request = (url: string, init?: RequestInit) =>
  Effect.promise(async () => {
    const response = await fetch(url, init)
    return { status: response.status, body: await response.text(), headers: response.headers }
  })
