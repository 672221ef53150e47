/**
 * The connections of one server's HTTP transports (SSE and long-poll),
 * which both share: each by its key, the expiry of those no request holds,
 * the comment heartbeat of streams, the per-address caps, and
 * `POST /send` / `DELETE /send`, what their peers send. Requests are taken
 * before the Effect app, as WebSocket upgrades are: a stream holds no fiber.
 */
import { Duration, Effect } from "effect"
import { Buffer } from "node:buffer"
import type * as Http from "node:http"
import type * as LhttpServer from "../../LhttpServer.ts"
import { closedBody, type HttpConnection } from "../server/httpConnection.ts"
import type { Rate } from "../server/rate.ts"
import { CloseCode, HttpHeader, HttpQuery } from "../wire/protocol.ts"
import * as Admission from "./admission.ts"
import type { RequestHandler } from "./dispatcher.ts"
import * as Url from "./urlSubscriptions.ts"

/** Options of the connections that SSE and long-poll share, and of `POST /send`, where their clients send. */
export interface Options {
  /** The path where SSE and long-poll clients send frames (default `/send`). */
  readonly sendPath?: string | undefined
  /** How long a connection with no stream and no poll lives on before it expires (default 60 s). */
  readonly sessionTimeout?: Duration.Input | undefined
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
  readonly httpConnectionRate?: Rate | null | undefined
}

/** The defaults of {@link Options}. */
export const defaults = {
  sessionTimeout: Duration.seconds(60),
  sessionStartTimeout: Duration.seconds(10),
  maxDetachedPerAddress: 1_000,
  httpConnectionRate: { perSecond: 100, burst: 5_000 }
} as const

/** The connections of the HTTP transports, and `POST /send`. */
export interface HttpConnections {
  readonly admission: Admission.Admission
  /** The connection with this key: open, or ended less than `sessionTimeout` ago. */
  readonly find: (key: string) => HttpConnection | undefined
  /**
   * Why a new connection for this request is refused before it is admitted:
   * its URL needs more messages than the message rate's burst takes at once
   * (400), its address holds too many detached connections, or opens them
   * too fast (503); undefined when it may go on.
   */
  readonly refusal: (request: Http.IncomingMessage, subscriptions: Url.Subscriptions) => Admission.Refusal | undefined
  /**
   * Opens a connection: accepted by the core, then subscribed to its URL's
   * channels through the pipeline, what they recover within `recoveryBytes`.
   */
  readonly open: (
    connection: HttpConnection,
    subscriptions: Url.Subscriptions,
    admitted: LhttpServer.Admitted,
    recoveryBytes: number
  ) => void
  /** `POST /send?connection=<key>` (a frame for the connection) and `DELETE /send?connection=<key>` (its end). */
  readonly send: RequestHandler
}

/** The HTTP connections of the server in context, ended with the scope (after the server's drain). */
export const make = Effect.fnUntraced(function*(options: Options | undefined) {
  const admission = yield* Admission.make()
  const server = admission.server
  const limits = server.settings
  const millis = (input: Duration.Input) => Duration.toMillis(Duration.fromInputUnsafe(input))
  const sessionTimeout = millis(options?.sessionTimeout ?? defaults.sessionTimeout)
  const startTimeout = millis(options?.sessionStartTimeout ?? defaults.sessionStartTimeout)
  const connections = new Map<string, HttpConnection>()
  const caps = new Admission.AddressCaps(
    options?.maxDetachedPerAddress ?? defaults.maxDetachedPerAddress,
    options?.httpConnectionRate === null ? undefined : options?.httpConnectionRate ?? defaults.httpConnectionRate
  )
  const onDetached = (connection: HttpConnection, detached: boolean) =>
    caps.detached(connection.peer.remoteAddress ?? "", detached)

  const sweep = setInterval(() => {
    const now = Date.now()
    for (const [key, connection] of connections) {
      if (connection.ended !== undefined) {
        if (now - connection.endedAt > sessionTimeout) connections.delete(key)
      } else if (
        !connection.attached &&
        now - connection.lastActive > (connection.started ? sessionTimeout : startTimeout)
      ) {
        connection.close(CloseCode.expired, "expired")
      }
    }
  }, Math.max(50, Math.min(Math.min(sessionTimeout, startTimeout) / 4, 5_000))).unref()
  // a comment on each stream at every heartbeat interval of the server (none when it is not finite)
  const interval = Duration.toMillis(limits.heartbeatInterval)
  const heartbeat = Number.isFinite(interval) && interval > 0
    ? setInterval(() => {
      for (const connection of connections.values()) connection.heartbeat()
    }, interval).unref()
    : undefined
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      clearInterval(sweep)
      if (heartbeat !== undefined) clearInterval(heartbeat)
      for (const connection of connections.values()) connection.detachAll()
      connections.clear()
    })
  )

  const open: HttpConnections["open"] = (connection, subscriptions, admitted, recoveryBytes) => {
    connections.set(connection.key, connection)
    connection.watch(onDetached)
    const inbound = server.accept(connection, admitted)
    connection.inbound = inbound
    connection.recover(Url.recovered(subscriptions), recoveryBytes)
    for (const frame of Url.framesOf(subscriptions)) inbound.receive(frame)
  }

  const json = "application/json; charset=utf-8"

  const send: RequestHandler = (request, response) => {
    const cors = Admission.door(admission, request, response, ["POST", "DELETE"])
    if (cors === undefined) return
    const url = new URL(request.url ?? "/", "http://lhttp.invalid")
    const connection = connections.get(url.searchParams.get(HttpQuery.connection) ?? "")
    if (connection === undefined) return Admission.respond(response, 404, "no such connection\n", cors)
    const gone = () => Admission.respond(response, 410, closedBody(connection.key, connection.ended!), cors, json)
    if (connection.ended !== undefined) return gone()
    if (request.method === "DELETE") {
      // gone at once: the core's connection ends now, and what it kept for the peer goes
      connection.close(CloseCode.normal, "closed by the client")
      connection.forget()
      return Admission.respond(response, 204, "", cors)
    }
    const closed = admission.closed()
    if (closed !== undefined) return Admission.refuse(response, closed, cors)
    if (connection.paused) {
      return Admission.respond(response, 429, "the connection is behind: send again later\n", {
        ...cors,
        [HttpHeader.retryAfter]: "1"
      })
    }
    const max = limits.maxMessageBytes
    const tooLarge = () => Admission.refuse(response, Admission.tooLarge(max), { ...cors, connection: "close" })
    if (Number(request.headers["content-length"] ?? 0) > max) return tooLarge()
    const chunks: Array<Buffer> = []
    let size = 0
    request.on("data", (chunk: Buffer) => {
      size += chunk.length
      if (size > max) {
        tooLarge()
        request.destroy()
        return
      }
      chunks.push(chunk)
    })
    request.on("end", () => {
      if (size > max) return
      const checked = Admission.checkFrame(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), limits.maxHeaders)
      if (checked._tag === "Failure") return Admission.refuse(response, checked.failure, cors)
      if (connection.ended !== undefined) return gone()
      connection.inbound?.receive(checked.success.text)
      Admission.respond(response, 202, "", cors)
    })
  }

  const connectionsOf: HttpConnections = {
    admission,
    find: (key) => connections.get(key),
    refusal: (request, subscriptions) =>
      Url.burstRefusal(subscriptions, limits.messageRate?.burst) ?? caps.refusal(request.socket.remoteAddress ?? ""),
    open,
    send
  }
  return connectionsOf
})
