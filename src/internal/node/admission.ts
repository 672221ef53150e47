/**
 * Admission, written once for every transport of the Node server: the
 * origin check, the peer a request makes, the server's own admission (its
 * connection caps and rate, the `authenticate` hook), the refusals (a 503
 * says when to come back), the door of the HTTP transports' requests
 * (CORS, preflight, method), their per-address caps, and the checks of a
 * posted frame (UTF-8, then LHTTP).
 */
import { Effect, Result } from "effect"
import { Buffer } from "node:buffer"
import * as Http from "node:http"
import type { Duplex } from "node:stream"
import * as Frame from "../../Frame.ts"
import * as LhttpServer from "../../LhttpServer.ts"
import type * as Transport from "../../Transport.ts"
import { Buckets, type Rate } from "../server/rate.ts"
import { HttpHeader } from "../wire/protocol.ts"

/** Why a request gets no connection: the HTTP status and the body (one line of text) to answer with. */
export interface Refusal {
  readonly status: number
  readonly body: string
}

/** The answer to a new connection while the server drains. */
const shuttingDown: Refusal = { status: 503, body: "the server is shutting down\n" }

/** The answer to a request from an origin not in `allowedOrigins`. */
const originNotAllowed: Refusal = { status: 403, body: "origin not allowed\n" }

/** The answer to a posted message over `maxMessageBytes`. */
export const tooLarge = (max: number): Refusal => ({ status: 413, body: `a message is at most ${max} bytes\n` })

/** The headers of a refusal: a 503 is a moment's refusal (shutting down, too many), so it says when to come back. */
export const headersOf = (refusal: Refusal, headers: Record<string, string> = {}): Record<string, string> =>
  refusal.status === 503 ? { ...headers, [HttpHeader.retryAfter]: "1" } : headers

const textType = "text/plain; charset=utf-8"

/** Answers an upgrade request with a refusal, on the raw socket, and closes it. */
export const refuseUpgrade = (socket: Duplex, refusal: Refusal): void => {
  socket.on("error", () => socket.destroy())
  let head = `HTTP/1.1 ${refusal.status} ${Http.STATUS_CODES[refusal.status] ?? "Refused"}\r\n` +
    `connection: close\r\ncontent-type: ${textType}\r\n`
  for (const [name, value] of Object.entries(headersOf(refusal))) head += `${name}: ${value}\r\n`
  socket.end(`${head}content-length: ${Buffer.byteLength(refusal.body)}\r\n\r\n${refusal.body}`)
}

/** Answers a request, unless it was answered already (or its peer left); never cached. */
export const respond = (
  response: Http.ServerResponse,
  status: number,
  body: string,
  headers: Record<string, string>,
  type = textType
): void => {
  if (response.headersSent || response.writableEnded) return
  response.writeHead(status, { ...headers, "content-type": type, "cache-control": "no-store" })
  response.end(body)
}

/** Answers a request with a refusal, beside `headers` (the CORS ones). */
export const refuse = (response: Http.ServerResponse, refusal: Refusal, headers: Record<string, string> = {}): void =>
  respond(response, refusal.status, refusal.body, headersOf(refusal, headers))

// what only the HTTP hop or the WebSocket handshake used: a connection does not keep them (each idle
// connection holds its request's headers; these were about 150 bytes of it: docs/benchmarks.md, issue 23)
const notKept: ReadonlySet<string> = new Set([
  "connection",
  "upgrade",
  "sec-websocket-key",
  "sec-websocket-version",
  "sec-websocket-extensions"
])

/** A request's headers as one string per name, without the hop's and the handshake's own. */
const flatHeaders = (headers: Http.IncomingHttpHeaders): Record<string, string | undefined> => {
  const out: Record<string, string | undefined> = {}
  for (const name in headers) {
    if (notKept.has(name)) continue
    const value = headers[name]
    out[name] = Array.isArray(value) ? value.join(", ") : value
  }
  return out
}

/** Who asks to connect, as the core sees them. */
export const peerOf = (request: Http.IncomingMessage): Transport.Peer => ({
  url: request.url ?? "/",
  requestHeaders: flatHeaders(request.headers),
  remoteAddress: request.socket.remoteAddress
})

/** What the server's admission gives: the data to accept the connection with, or the refusal to answer. */
type AdmitResult = Result.Result<LhttpServer.Admitted, Refusal>

/** The admission of one server: the transports' way in. */
export interface Admission {
  readonly server: LhttpServer.LhttpServer["Service"]
  /** Why no new connection may open now (the server drains); undefined when one may. */
  readonly closed: () => Refusal | undefined
  /** Why a request's `Origin` is refused (not in `allowedOrigins`); undefined when it may go on. */
  readonly origin: (request: Http.IncomingMessage) => Refusal | undefined
  /**
   * Runs the server's admission for a peer (its connection caps and rate,
   * the `authenticate` hook) and calls back with the data to accept it
   * with, or the refusal to answer.
   */
  readonly admit: (peer: Transport.Peer, then: (result: AdmitResult) => void) => void
}

/** The admission of the server in context. */
export const make = Effect.fnUntraced(function*() {
  const server = yield* LhttpServer.LhttpServer
  const context = yield* Effect.context<never>()
  const allowed = server.settings.allowedOrigins
  const admission: Admission = {
    server,
    closed: () => server.isDraining() ? shuttingDown : undefined,
    origin: (request) => {
      const origin = request.headers.origin
      return origin !== undefined && allowed !== undefined && !allowed.has(origin) ? originNotAllowed : undefined
    },
    admit: (peer, then) =>
      Effect.runForkWith(context)(
        Effect.flatMap(Effect.result(server.admit(peer)), (result) =>
          Effect.sync(() =>
            then(Result.mapError(result, (rejection): Refusal => ({
              status: rejection.status,
              body: `${rejection.reason}: ${rejection.message}\n`
            })))
          ))
      )
  }
  return admission
})

/**
 * The door of an HTTP transport's request: another origin gets 403, a
 * preflight (`OPTIONS`) its answer, a method not in `methods` 405; each
 * answered here. Otherwise the CORS headers to answer the request with.
 */
export const door = (
  admission: Admission,
  request: Http.IncomingMessage,
  response: Http.ServerResponse,
  methods: ReadonlyArray<string>
): Record<string, string> | undefined => {
  const refused = admission.origin(request)
  if (refused !== undefined) {
    refuse(response, refused)
    return undefined
  }
  const origin = request.headers.origin
  const cors: Record<string, string> = origin === undefined
    ? {}
    : { "access-control-allow-origin": origin, vary: "origin" }
  const allow = methods.join(", ")
  if (request.method === "OPTIONS") {
    respond(response, 204, "", {
      ...cors,
      "access-control-allow-methods": allow,
      "access-control-allow-headers": `content-type, ${HttpHeader.lastEventId}`,
      "access-control-max-age": "600"
    })
    return undefined
  }
  if (!methods.includes(request.method ?? "")) {
    respond(response, 405, `use ${allow}\n`, { ...cors, allow })
    return undefined
  }
  return cors
}

/**
 * The per-address caps of the connections that outlive their requests (SSE
 * and long-poll): how many of an address no request holds, and how fast an
 * address opens new ones.
 */
export class AddressCaps {
  readonly #detached = new Map<string, number>()
  readonly #max: number
  readonly #rate: Buckets | undefined

  /** @param rate new connections a second from one address (none: no limit) */
  constructor(maxDetached: number, rate: Rate | undefined) {
    this.#max = maxDetached
    this.#rate = rate === undefined ? undefined : new Buckets(rate)
  }

  /** Counts a connection of `address` in (true) or out of the detached ones. */
  detached(address: string, detached: boolean): void {
    const count = (this.#detached.get(address) ?? 0) + (detached ? 1 : -1)
    if (count > 0) this.#detached.set(address, count)
    else this.#detached.delete(address)
  }

  /** Why a new connection from `address` is refused (503); undefined when it may open (a rate token is taken). */
  refusal(address: string): Refusal | undefined {
    if ((this.#detached.get(address) ?? 0) >= this.#max) {
      return {
        status: 503,
        body: "TooManyDetached: this address holds as many connections without a stream or a poll as it may: " +
          "close some (DELETE /send) or try again later\n"
      }
    }
    if (this.#rate !== undefined && !this.#rate.take(address)) {
      return { status: 503, body: "ConnectingTooFast: too many new connections from this address: try again later\n" }
    }
    return undefined
  }
}

/**
 * A posted frame's bytes as its text: valid UTF-8 (refused as over
 * WebSocket, rather than taken with U+FFFD in place of the bad bytes), then
 * an LHTTP frame; else a 400 with the reason, as the error frame would say.
 */
export const checkFrame = (
  bytes: Uint8Array | ArrayBuffer,
  maxHeaders: number
): Result.Result<{ readonly text: string; readonly frame: Frame.Frame }, Refusal> => {
  const text = Frame.decodeUtf8(bytes)
  if (Result.isFailure(text)) return Result.fail({ status: 400, body: "InvalidUtf8: the message is not valid UTF-8\n" })
  const frame = Frame.parse(text.success, { maxHeaders })
  if (Result.isFailure(frame)) {
    return Result.fail({ status: 400, body: `${frame.failure.reason}: ${frame.failure.message}\n` })
  }
  return Result.succeed({ text: text.success, frame: frame.success })
}
