/**
 * The long-poll transport on Node: `GET /poll` opens a connection, and
 * `GET /poll?connection=<key>&cursor=<n>` acknowledges the frames up to `n`
 * and waits for those after it (docs/transports.md).
 */
import { Duration } from "effect"
import type * as Http from "node:http"
import { HttpConnection, pollBody, type Reply } from "../server/httpConnection.ts"
import { HttpQuery } from "../wire/protocol.ts"
import * as Admission from "./admission.ts"
import type { RequestHandler } from "./dispatcher.ts"
import type { HttpConnections } from "./httpConnections.ts"
import * as Url from "./urlSubscriptions.ts"

/** Options of the long-poll transport (`GET /poll`). */
export interface Options extends Url.Options {
  /** The path of the long-poll endpoint (default `/poll`). */
  readonly pollPath?: string | undefined
  /** How long a poll waits for frames before it answers an empty list (default 25 s). */
  readonly pollTimeout?: Duration.Input | undefined
}

/** The defaults of {@link Options}. */
export const defaults = {
  pollTimeout: Duration.seconds(25)
} as const

const json = "application/json; charset=utf-8"

/** The handler of `GET /poll` over the HTTP connections. */
export const make = (connections: HttpConnections, options: Options | undefined): RequestHandler => {
  const admission = connections.admission
  const timeout = Duration.toMillis(Duration.fromInputUnsafe(options?.pollTimeout ?? defaults.pollTimeout))
  const maxUrlChannels = options?.maxUrlChannels ?? Url.defaults.maxUrlChannels
  const recoveryBytes = options?.urlRecoveryBytes ?? Url.defaults.urlRecoveryBytes

  // a new connection: admitted, opened, and answered at once with its key
  const start = (
    request: Http.IncomingMessage,
    response: Http.ServerResponse,
    url: URL,
    cors: Record<string, string>
  ) => {
    const closed = admission.closed()
    if (closed !== undefined) return Admission.refuse(response, closed, cors)
    const parsed = Url.parse(url, maxUrlChannels)
    if (parsed._tag === "Failure") return Admission.refuse(response, parsed.failure, cors)
    const refused = connections.refusal(request, parsed.success)
    if (refused !== undefined) return Admission.refuse(response, refused, cors)
    admission.admit(Admission.peerOf(request), (result) => {
      if (result._tag === "Failure") return Admission.refuse(response, result.failure, cors)
      if (response.destroyed) return
      const connection = new HttpConnection("poll", Admission.peerOf(request), 0)
      connections.open(connection, parsed.success, result.success, recoveryBytes)
      Admission.respond(response, 200, pollBody(connection.key, 0, []), cors, json)
    })
  }

  const poll = (request: Http.IncomingMessage, response: Http.ServerResponse, cors: Record<string, string>) => {
    const url = new URL(request.url ?? "/", "http://lhttp.invalid")
    const key = url.searchParams.get(HttpQuery.connection)
    if (key === null) return start(request, response, url, cors)
    const connection = connections.find(key)
    if (connection?.kind !== "poll") return Admission.respond(response, 404, "no such connection\n", cors)
    const cursor = Number(url.searchParams.get(HttpQuery.cursor) ?? "0")
    if (!Number.isSafeInteger(cursor) || cursor < 0 || cursor > connection.sequence) {
      return Admission.respond(response, 400, `the cursor is a frame number from 0 to ${connection.sequence}\n`, cors)
    }
    const reply: Reply = (status, body) => Admission.respond(response, status, body, cors, json)
    response.on("close", () => connection.abandon(reply))
    connection.poll(cursor, reply, timeout)
  }

  return (request, response) => {
    const cors = Admission.door(admission, request, response, ["GET"])
    if (cors !== undefined) poll(request, response, cors)
  }
}
