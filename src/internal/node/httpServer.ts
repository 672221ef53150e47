/**
 * An Effect `HttpServer` on a Node HTTP server that offers each request and
 * upgrade to the transports' dispatcher first: what no transport takes goes
 * to the Effect app (its own WebSocket routes included).
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeWS from "@effect/platform-node/NodeWS"
import { Effect, Scope } from "effect"
import { HttpServer } from "effect/http"
import { ServeError } from "effect/http/HttpServerError"
import * as NetAddress from "effect/net/NetAddress"
import type { Buffer } from "node:buffer"
import type * as Http from "node:http"
import type { Duplex } from "node:stream"
import type { Dispatcher } from "./dispatcher.ts"

/** Listens on `port` and `host`; released, stops listening and destroys the connections left. */
export const make = Effect.fnUntraced(function*(
  evaluate: () => Http.Server,
  options: { readonly port: number; readonly host: string | undefined },
  dispatcher: Dispatcher
) {
  const scope = yield* Effect.scope
  const server = evaluate()
  yield* Effect.callback<void, ServeError>((resume) => {
    const onError = (cause: unknown) => resume(Effect.fail(new ServeError({ cause })))
    server.once("error", onError)
    server.listen({ port: options.port, host: options.host }, () => {
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
      const onAppUpgrade = yield* NodeHttpServer.makeUpgradeHandler(appWss, app, { middleware, scope: serveScope })
      const onUpgrade = (request: Http.IncomingMessage, socket: Duplex, head: Buffer) => {
        if (!dispatcher.upgrade(request, socket, head)) onAppUpgrade(request, socket, head)
      }
      const onHttp = (request: Http.IncomingMessage, response: Http.ServerResponse) => {
        if (!dispatcher.request(request, response)) onRequest(request, response)
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
