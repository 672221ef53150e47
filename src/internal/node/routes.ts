/**
 * The server's HTTP routes, for an `HttpRouter`: `POST /publish` and
 * `GET /metrics` for backends (a bearer token, or loopback peers only),
 * `POST /api/<operation>` (the server API, behind its key),
 * `GET /healthz`, `GET /readyz`, the browser SDK at `GET /lhttp.js`, and on
 * the WebSocket paths, for requests that are not upgrades, the page (at `/`)
 * or `426 Upgrade Required`.
 */
import { ByteSize, Effect, Option, Redacted, Result } from "effect"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import { PrometheusMetrics } from "effect/observability"
import { readFileSync } from "node:fs"
import * as Channel from "../../Channel.ts"
import * as Hub from "../../Hub.ts"
import * as LhttpServer from "../../LhttpServer.ts"
import type { Rejection } from "../../Rejection.ts"
import * as ServerApi from "../../ServerApi.ts"
import { renderAckPositions } from "../wire/positions.ts"
import { Header, HttpHeader } from "../wire/protocol.ts"
import * as Admin from "./admin.ts"
import * as Admission from "./admission.ts"
import * as Api from "./api.ts"
import { tokenMatches } from "./token.ts"

/** Options of the HTTP routes. */
export interface Options {
  /** The paths of the WebSocket endpoint: exact, or a prefix ending in `/*` (default `["/*"]`: any path). */
  readonly paths?: ReadonlyArray<string> | undefined
  /** The path of the publish endpoint (default `/publish`). */
  readonly publishPath?: string | undefined
  /** An HTML page served at `GET /` to requests that are not WebSocket upgrades (default: none, 426). */
  readonly page?: string | undefined
  /** Whether `GET /lhttp.js` serves the browser SDK (default true). */
  readonly sdk?: boolean | undefined
  /**
   * The bearer key of the server API's HTTP face, `POST /api/<operation>`
   * (served when a `ServerApi` is in context); without one it answers
   * `403 ApiDisabled`.
   */
  readonly apiKey?: Redacted.Redacted<string> | string | undefined
  /** The server API's calls a second on this node (default 100 a second, 200 at once). */
  readonly apiRate?: Api.Options["rate"]
  /**
   * The password of the operator's page, `GET /admin` (docs/operations.md;
   * default: the API key; without either the page is off).
   */
  readonly adminPassword?: Redacted.Redacted<string> | string | undefined
}

// the browser SDK, beside the compiled or the source tree alike
const sdkFile = new URL("../../browser/lhttp.js", import.meta.url)

/** Whether a peer address is on the loopback network (IPv4, IPv6, or IPv4-mapped). */
export const isLoopback = (address: string | undefined): boolean =>
  address !== undefined &&
  (address === "::1" || address.startsWith("127.") || address.startsWith("::ffff:127."))

const plain = (status: number, body: string, headers?: Record<string, string>) =>
  HttpServerResponse.text(body, { status, ...(headers === undefined ? {} : { headers }) })

const refused = (refusal: Admission.Refusal) => plain(refusal.status, refusal.body, Admission.headersOf(refusal))

/** The routes, over the server and the hub in context. */
export const make = (options: Options | undefined) =>
  HttpRouter.use(Effect.fnUntraced(function*(router) {
    const server = yield* LhttpServer.LhttpServer
    const hub = yield* Hub.Hub
    const limits = server.settings
    const tooLarge = Admission.tooLarge(limits.maxMessageBytes)

    // the backends' endpoints (/publish, /metrics): the bearer token when one is set, else loopback peers only
    const guard = (request: HttpServerRequest.HttpServerRequest, what: string) => {
      if (limits.publishToken !== undefined) {
        return tokenMatches(request.headers["authorization"], limits.publishToken)
          ? undefined
          : plain(401, "a bearer token is required\n", { "www-authenticate": "Bearer" })
      }
      return isLoopback(Option.getOrUndefined(request.remoteAddress))
        ? undefined
        : plain(403, `without a publish token, only loopback peers may ${what}\n`)
    }

    const notUpgraded = (request: HttpServerRequest.HttpServerRequest) =>
      Effect.succeed(
        options?.page !== undefined && request.url.split("?")[0] === "/"
          ? HttpServerResponse.html(options?.page)
          : plain(426, "LHTTP runs over WebSocket: connect with a WebSocket client\n", { upgrade: "websocket" })
      )

    const publish = (request: HttpServerRequest.HttpServerRequest) =>
      Effect.gen(function*() {
        if (request.method !== "POST") {
          return plain(405, "POST an LHTTP message with a publish header\n", { allow: "POST" })
        }
        const guarded = guard(request, "publish")
        if (guarded !== undefined) return guarded
        if (Number(request.headers["content-length"] ?? 0) > limits.maxMessageBytes) return refused(tooLarge)
        const bytes = yield* request.arrayBuffer.pipe(
          Effect.provideService(HttpServerRequest.MaxBodySize, ByteSize.bytes(limits.maxMessageBytes)),
          Effect.result
        )
        if (Result.isFailure(bytes)) return refused(tooLarge)
        const checked = Admission.checkFrame(bytes.success, limits.maxHeaders)
        if (Result.isFailure(checked)) return refused(checked.failure)
        const value = checked.success.frame.headers.get(Header.publish)
        if (!value) return plain(400, "the message has no publish header\n")
        const channels = Channel.parseList(value)
        if (Result.isFailure(channels)) return plain(400, `${channels.failure.reason}: ${channels.failure.message}\n`)
        return yield* server.authorize({ action: "publish", channels: channels.success, connection: undefined }).pipe(
          // answered once the bus has taken it, with the positions of its history channels
          Effect.andThen(hub.publishTextAcknowledged(channels.success, checked.success.text)),
          Effect.map((positions) =>
            HttpServerResponse.empty({
              status: 204,
              ...(positions.size === 0 ? {} : { headers: { [HttpHeader.positions]: renderAckPositions(positions) } })
            })
          ),
          Effect.catch((rejection: Rejection) =>
            Effect.succeed(
              plain(
                rejection.status,
                `${rejection.message}\n`,
                rejection.status === 503 ? { [HttpHeader.retryAfter]: "1" } : undefined
              )
            )
          )
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
        const guarded = guard(request, "read the metrics")
        if (guarded !== undefined) return guarded
        return HttpServerResponse.text(yield* PrometheusMetrics.format(), {
          contentType: "text/plain; version=0.0.4; charset=utf-8"
        })
      }))
    // the server API's HTTP face, when there is a server API
    const api = yield* Effect.serviceOption(ServerApi.ServerApi)
    if (Option.isSome(api)) {
      const key = typeof options?.apiKey === "string" ? Redacted.make(options.apiKey) : options?.apiKey
      yield* Api.add(router, api.value, { key, rate: options?.apiRate })
      // the operator's page, on the same operations
      const password = options?.adminPassword ?? key
      yield* Admin.add(router, api.value, hub, {
        password: typeof password === "string" ? Redacted.make(password) : password
      })
    }
    yield* router.add("GET", "/healthz", Effect.succeed(plain(200, "ok\n")))
    yield* router.add(
      "GET",
      "/readyz",
      // each limitation on a line of its own after the answer
      Effect.map(Effect.all([server.isReady, server.limitations]), ([ready, limitations]) => {
        const notes = limitations.map((limitation) => `limited: ${limitation.feature}: ${limitation.message}\n`).join(
          ""
        )
        return ready ? plain(200, `ready\n${notes}`) : plain(503, `not ready\n${notes}`)
      })
    )
  }))
