/**
 * The SSE transport on Node: `GET /sse` opens a connection as a Server-Sent
 * Events stream, or resumes one (`Last-Event-ID`). Writing a batch of frames
 * is one `write` of the response (docs/transports.md).
 */
import { Duration } from "effect"
import type * as Http from "node:http"
import type * as LhttpServer from "../../LhttpServer.ts"
import { controlEvent, HttpConnection, type Sink } from "../server/httpConnection.ts"
import { eventIdOf } from "../wire/eventStream.ts"
import { CloseCode, HttpHeader, HttpQuery, StreamEvent } from "../wire/protocol.ts"
import * as Admission from "./admission.ts"
import type { RequestHandler } from "./dispatcher.ts"
import type { HttpConnections } from "./httpConnections.ts"
import * as Url from "./urlSubscriptions.ts"

/** Options of the SSE transport (`GET /sse`). */
export interface Options extends Url.Options {
  /** The path of the SSE endpoint (default `/sse`). */
  readonly ssePath?: string | undefined
  /** The `retry:` hint: how long an `EventSource` waits before it reconnects (default 1 s). */
  readonly sseRetry?: Duration.Input | undefined
  /** Bytes of frames an SSE connection keeps, once written, for a reconnect's `Last-Event-ID` (default 64 KiB). */
  readonly sseReplayBytes?: number | undefined
}

/** The defaults of {@link Options}. */
export const defaults = {
  sseRetry: Duration.seconds(1),
  sseReplayBytes: 64 * 1024
} as const

// the subscriptions of a stream's URL, each history channel the expired connection had received
// from since its last position there
const resumeFrom = (subscriptions: Url.Subscriptions, expired: HttpConnection, upTo: number): Url.Subscriptions => {
  const positions = expired.positionsUpTo(upTo)
  if (positions.size === 0) return subscriptions
  const named = new Set([...subscriptions.channels, ...subscriptions.since.map((entry) => entry.channel)])
  const since = subscriptions.since.filter((entry) => !positions.has(entry.channel))
  for (const channel of named) {
    const position = positions.get(channel)
    if (position !== undefined) since.push({ channel, position })
  }
  return { channels: subscriptions.channels, since }
}

/** The handler of `GET /sse` over the HTTP connections. */
export const make = (connections: HttpConnections, options: Options | undefined): RequestHandler => {
  const admission = connections.admission
  const retry = Duration.toMillis(Duration.fromInputUnsafe(options?.sseRetry ?? defaults.sseRetry))
  const replayBytes = options?.sseReplayBytes ?? defaults.sseReplayBytes
  const maxUrlChannels = options?.maxUrlChannels ?? Url.defaults.maxUrlChannels
  const recoveryBytes = options?.urlRecoveryBytes ?? Url.defaults.urlRecoveryBytes
  // connections whose end was told to a reconnecting stream: the next reconnect gets 204 (stop)
  const told = new WeakSet<HttpConnection>()

  const stream = (request: Http.IncomingMessage, response: Http.ServerResponse, cors: Record<string, string>) => {
    const url = new URL(request.url ?? "/", "http://lhttp.invalid")
    const header = request.headers[HttpHeader.lastEventId]
    const value = typeof header === "string" ? header : url.searchParams.get(HttpQuery.lastEventId)
    const lastEvent = value === null ? undefined : eventIdOf(value)
    const known = lastEvent === undefined ? undefined : connections.find(lastEvent.key)
    // an expired connection is gone: its reconnect gets a reset and a new connection, as an unknown one
    const resumed = known?.kind === "sse" && known.ended?.code !== CloseCode.expired ? known : undefined
    if (resumed?.ended !== undefined) {
      if (told.has(resumed)) return Admission.respond(response, 204, "", cors)
      told.add(resumed)
    }
    let subscriptions = Url.none
    if (resumed === undefined) {
      const closed = admission.closed()
      if (closed !== undefined) return Admission.refuse(response, closed, cors)
      const parsed = Url.parse(url, maxUrlChannels)
      if (parsed._tag === "Failure") return Admission.refuse(response, parsed.failure, cors)
      subscriptions = parsed.success
      // a stream whose connection expired goes on from the positions of the history channels it had
      // received (its Last-Event-ID), rather than from the URL's since or from now
      if (known?.kind === "sse" && lastEvent !== undefined) {
        subscriptions = resumeFrom(subscriptions, known, lastEvent.n)
      }
      const refused = connections.refusal(request, subscriptions)
      if (refused !== undefined) return Admission.refuse(response, refused, cors)
    }
    const begin = (admitted: LhttpServer.Admitted) => {
      if (response.destroyed) return
      response.writeHead(200, {
        ...cors,
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache, no-transform",
        "x-accel-buffering": "no"
      })
      let head = `retry: ${retry}\n\n`
      if (resumed?.ended !== undefined) {
        // it ended while no stream was attached: say how, once
        response.end(head + controlEvent(StreamEvent.close, JSON.stringify(resumed.ended)))
        return
      }
      if (lastEvent !== undefined && resumed === undefined) head += controlEvent(StreamEvent.reset, lastEvent.key)
      const connection = resumed ?? new HttpConnection("sse", Admission.peerOf(request), replayBytes)
      response.write(head + controlEvent(StreamEvent.connected, connection.key))
      const sink: Sink = {
        write: (chunk) => {
          response.write(chunk)
          // the response corks its socket until the next tick: uncorked now, the bytes go to the kernel,
          // so what the outbox bound judges is what the peer has not taken, as over a WebSocket
          response.socket?.uncork()
        },
        end: () => void response.end(),
        bufferedBytes: () => response.writableLength
      }
      response.on("close", () => connection.detach(sink))
      connection.attach(sink, resumed === undefined ? 0 : lastEvent!.n)
      if (resumed === undefined) connections.open(connection, subscriptions, admitted, recoveryBytes)
    }
    // a stream that resumes its connection was admitted when the connection opened
    if (resumed !== undefined) return begin(undefined)
    admission.admit(Admission.peerOf(request), (result) => {
      if (result._tag === "Failure") return Admission.refuse(response, result.failure, cors)
      begin(result.success)
    })
  }

  return (request, response) => {
    const cors = Admission.door(admission, request, response, ["GET"])
    if (cors !== undefined) stream(request, response, cors)
  }
}
