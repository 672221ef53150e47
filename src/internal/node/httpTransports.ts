/**
 * The HTTP transports on Node: `GET /sse` (a Server-Sent Events stream),
 * `GET /poll` (long-poll) and `POST /send` (what their peers send), each
 * connection a `Session` of the core. Requests are taken before the Effect
 * app, as WebSocket upgrades are: a stream holds no fiber, and writing a
 * batch of frames is one `write` of the response.
 */
import { Buffer } from "node:buffer"
import type * as Http from "node:http"
import { Result } from "effect"
import * as Channel from "../../Channel.ts"
import * as Frame from "../../Frame.ts"
import * as History from "../../History.ts"
import type * as LhttpServer from "../../LhttpServer.ts"
import type { Rejection } from "../../Rejection.ts"
import type * as Transport from "../../Transport.ts"
import { Buckets, type Rate } from "../server/rate.ts"
import { CloseCode } from "../wire/protocol.ts"
import { closedBody, controlEvent, pollBody, type Reply, Session, type Sink } from "../server/httpConnection.ts"

/** The settings of the HTTP transports, defaults filled in. */
export interface Settings {
  readonly sse: boolean
  readonly poll: boolean
  readonly ssePath: string
  readonly pollPath: string
  readonly sendPath: string
  /** Milliseconds a poll waits for frames. */
  readonly pollTimeout: number
  /** Milliseconds a session with no stream and no poll lives on. */
  readonly sessionTimeout: number
  /** Milliseconds an `EventSource` waits before it reconnects (the `retry:` hint). */
  readonly retry: number
  /** Milliseconds between the comment heartbeats of a stream (none when not finite). */
  readonly heartbeat: number
  /** Bytes of written frames an SSE connection keeps for a reconnect. */
  readonly replayBytes: number
  /** Milliseconds a new session lives before its first poll or stream, then `sessionTimeout`. */
  readonly startTimeout: number
  /** Sessions of one address that no request holds (no stream, no poll waiting) at most; new ones get 503. */
  readonly maxDetachedPerAddress: number
  /** New SSE and long-poll connections a second from one address (none: no limit). */
  readonly connectionRate: Rate | undefined
  /** Channels (`subscribe` and `since` together) one URL may name. */
  readonly maxUrlChannels: number
  /** Bytes of history the `since` positions of one URL may recover; past it, `recovered:no`. */
  readonly recoveryBytes: number
}

/** The close code of a session that nobody polled or streamed for `sessionTimeout`. */

/** A request's headers as one string per name. */
export const flatHeaders = (headers: Http.IncomingHttpHeaders): Record<string, string | undefined> => {
  const out: Record<string, string | undefined> = {}
  for (const name in headers) {
    const value = headers[name]
    out[name] = Array.isArray(value) ? value.join(", ") : value
  }
  return out
}

const json = "application/json; charset=utf-8"

// a 503 is a moment's refusal: say when to come back
const retryOf = (status: number, headers: Record<string, string>): Record<string, string> =>
  status === 503 ? { ...headers, "retry-after": "1" } : headers
const text = "text/plain; charset=utf-8"

/** The subscribe list of a query: channel ids separated by spaces or commas. */
const channelsOf = (url: URL) => {
  const value = (url.searchParams.get("subscribe") ?? "").trim()
  if (value === "") return Channel.validateAll([])
  return Channel.validateAll(value.split(/[ ,]+/))
}

/** What a query subscribes to: its `subscribe` channels, and the channels it recovers since a position. */
interface Subscriptions {
  readonly channels: ReadonlyArray<Channel.ChannelId>
  readonly since: ReadonlyArray<{ readonly channel: Channel.ChannelId; readonly position: string }>
}

/**
 * The subscriptions of a query: `subscribe` (see {@link channelsOf}) and each
 * `since=<channel>:<epoch>:<offset>`, which subscribes to that history channel
 * since that position, or `since=<channel>:now`, which subscribes to it with
 * positions from now on (docs/history-and-presence.md).
 */
const subscriptionsOf = (
  url: URL,
  maxChannels: number
): Result.Result<Subscriptions, { readonly reason: string; readonly message: string }> => {
  const tooMany = Result.fail({
    reason: "TooManyChannels",
    message: `one URL names at most ${maxChannels} channels (subscribe and since together): ` +
      "subscribe to more with POST /send, or over several requests"
  })
  const values = url.searchParams.getAll("since")
  if (values.length > maxChannels) return tooMany
  const channels = channelsOf(url)
  if (channels._tag === "Failure") return Result.fail(channels.failure)
  if (channels.success.length + values.length > maxChannels) return tooMany
  const since: Array<Subscriptions["since"][number]> = []
  for (const value of values) {
    const match = /^(.+):(now|[^:]+:[^:]+)$/.exec(value)
    if (match === null || History.parseSince(match[2]!) === undefined) {
      return Result.fail({ reason: "InvalidSince", message: "since is <channel>:now or <channel>:<epoch>:<offset>" })
    }
    const channel = Channel.validate(match[1]!)
    if (channel._tag === "Failure") return Result.fail(channel.failure)
    // a channel named twice: its last position
    const twice = since.findIndex((entry) => entry.channel === channel.success)
    if (twice !== -1) since.splice(twice, 1)
    since.push({ channel: channel.success, position: match[2]! })
  }
  return Result.succeed({ channels: channels.success, since })
}

/**
 * The frames that subscribe a URL's channels: the plain ones in one, those
 * `since:now` in another, one per channel recovered since a position.
 */
const framesOf = (subscriptions: Subscriptions): Array<string> => {
  const recovering = new Set(subscriptions.since.map((entry) => entry.channel))
  const plain = subscriptions.channels.filter((channel) => !recovering.has(channel))
  const frames: Array<string> = []
  if (plain.length > 0) frames.push(`LHTTP/1.0 subscribe\r\nsubscribe:${plain.join(" ")}\r\n\r\n`)
  const now = subscriptions.since.filter((entry) => entry.position === "now").map((entry) => entry.channel)
  if (now.length > 0) frames.push(`LHTTP/1.0 subscribe\r\nsubscribe:${now.join(" ")}\r\nsince:now\r\n\r\n`)
  for (const { channel, position } of subscriptions.since) {
    if (position !== "now") frames.push(`LHTTP/1.0 subscribe\r\nsubscribe:${channel}\r\nsince:${position}\r\n\r\n`)
  }
  return frames
}

/** `<key>:<sequence>`, the id of an SSE event, read back from `Last-Event-ID`. */
const lastEventOf = (value: string | undefined): { readonly key: string; readonly after: number } | undefined => {
  if (value === undefined) return undefined
  const colon = value.lastIndexOf(":")
  if (colon <= 0) return undefined
  const after = Number(value.slice(colon + 1))
  return Number.isSafeInteger(after) && after >= 0 ? { key: value.slice(0, colon), after } : undefined
}

/** Runs the server's `authenticate` hook for a peer, then calls back with the data to admit it with, or the refusal. */
export type Admit = (
  peer: Transport.Peer,
  then: (result: Result.Result<LhttpServer.Admitted, Rejection>) => void
) => void

/** The endpoints, over the server's core. */
export const make = (server: LhttpServer.LhttpServer["Service"], settings: Settings, admit: Admit) => {
  const limits = server.settings
  const sessions = new Map<string, Session>()
  // sessions whose end was told to a reconnecting stream: the next reconnect gets 204 (stop)
  const told = new WeakSet<Session>()
  // the sessions of each address that no request holds, and the rate of new ones
  const detachedBy = new Map<string, number>()
  const onDetached = (session: Session, detached: boolean) => {
    const address = session.peer.remoteAddress ?? ""
    const count = (detachedBy.get(address) ?? 0) + (detached ? 1 : -1)
    if (count > 0) detachedBy.set(address, count)
    else detachedBy.delete(address)
  }
  const rate = settings.connectionRate === undefined ? undefined : new Buckets(settings.connectionRate)

  const sweep = setInterval(() => {
    const now = Date.now()
    for (const [key, session] of sessions) {
      if (session.ended !== undefined) {
        if (now - session.endedAt > settings.sessionTimeout) sessions.delete(key)
      } else if (
        !session.attached &&
        now - session.lastActive > (session.started ? settings.sessionTimeout : settings.startTimeout)
      ) {
        session.close(CloseCode.expired, "expired")
      }
    }
  }, Math.max(50, Math.min(Math.min(settings.sessionTimeout, settings.startTimeout) / 4, 5_000))).unref()
  const heartbeat = Number.isFinite(settings.heartbeat) && settings.heartbeat > 0
    ? setInterval(() => {
      for (const session of sessions.values()) session.heartbeat()
    }, settings.heartbeat).unref()
    : undefined

  const respond = (
    response: Http.ServerResponse,
    status: number,
    body: string,
    headers: Record<string, string>,
    type = text
  ) => {
    if (response.headersSent || response.writableEnded) return
    response.writeHead(status, { ...headers, "content-type": type, "cache-control": "no-store" })
    response.end(body)
  }

  const peerOf = (request: Http.IncomingMessage): Transport.Peer => ({
    url: request.url ?? "/",
    requestHeaders: flatHeaders(request.headers),
    remoteAddress: request.socket.remoteAddress
  })

  /**
   * Opens a session: accepted by the core, then subscribed to the query's
   * channels through the pipeline, what they recover within the budget of
   * one request.
   */
  const open = (session: Session, subscriptions: Subscriptions, admitted: LhttpServer.Admitted) => {
    sessions.set(session.key, session)
    session.watch(onDetached)
    const inbound = server.accept(session, admitted)
    session.inbound = inbound
    session.recover(
      subscriptions.since.filter((entry) => entry.position !== "now").map((entry) => entry.channel),
      settings.recoveryBytes
    )
    for (const frame of framesOf(subscriptions)) inbound.receive(frame)
  }

  /**
   * Why a new connection from this request's address is refused before it is
   * admitted: the URL needs more messages than the message rate's burst
   * takes at once (400), the address holds too many detached sessions, or
   * opens them too fast (503); undefined when it may go on.
   */
  const refusal = (
    request: Http.IncomingMessage,
    subscriptions: Subscriptions
  ): { readonly status: number; readonly body: string } | undefined => {
    const burst = limits.messageRate?.burst
    if (burst !== undefined && framesOf(subscriptions).length > burst) {
      return {
        status: 400,
        body: `TooManyChannels: this server takes ${burst} messages at once from a connection: ` +
          "recover fewer channels since a position in one URL, or subscribe to the rest with POST /send\n"
      }
    }
    const address = request.socket.remoteAddress ?? ""
    if ((detachedBy.get(address) ?? 0) >= settings.maxDetachedPerAddress) {
      return {
        status: 503,
        body: "TooManyDetached: this address holds as many connections without a stream or a poll as it may: " +
          "close some (DELETE /send) or try again later\n"
      }
    }
    if (rate !== undefined && !rate.take(address)) {
      return { status: 503, body: "ConnectingTooFast: too many new connections from this address: try again later\n" }
    }
    return undefined
  }

  // the subscriptions of a stream's URL, each history channel the expired connection had received
  // from since its last position there
  const resumeFrom = (subscriptions: Subscriptions, expired: Session, upTo: number): Subscriptions => {
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

  const stream = (
    request: Http.IncomingMessage,
    response: Http.ServerResponse,
    url: URL,
    cors: Record<string, string>
  ) => {
    const header = request.headers["last-event-id"]
    const lastEvent = lastEventOf(typeof header === "string" ? header : url.searchParams.get("lastEventId") ?? undefined)
    const known = lastEvent === undefined ? undefined : sessions.get(lastEvent.key)
    // an expired connection is gone: its reconnect gets a reset and a new connection, as an unknown one
    const resumed = known?.kind === "sse" && known.ended?.code !== CloseCode.expired ? known : undefined
    if (resumed?.ended !== undefined) {
      if (told.has(resumed)) return respond(response, 204, "", cors)
      told.add(resumed)
    }
    let subscriptions: Subscriptions = { channels: [], since: [] }
    if (resumed === undefined) {
      if (server.isDraining()) return respond(response, 503, "the server is shutting down\n", cors)
      const parsed = subscriptionsOf(url, settings.maxUrlChannels)
      if (parsed._tag === "Failure") {
        return respond(response, 400, `${parsed.failure.reason}: ${parsed.failure.message}\n`, cors)
      }
      subscriptions = parsed.success
      // a stream whose connection expired goes on from the positions of the history channels it had
      // received (its Last-Event-ID), rather than from the URL's since or from now
      if (known?.kind === "sse" && lastEvent !== undefined) subscriptions = resumeFrom(subscriptions, known, lastEvent.after)
      const refused = refusal(request, subscriptions)
      if (refused !== undefined) return respond(response, refused.status, refused.body, retryOf(refused.status, cors))
    }
    const begin = (admitted: LhttpServer.Admitted) => {
      if (response.destroyed) return
      response.writeHead(200, {
        ...cors,
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache, no-transform",
        "x-accel-buffering": "no"
      })
      let head = `retry: ${settings.retry}\n\n`
      if (resumed?.ended !== undefined) {
        // it ended while no stream was attached: say how, once
        response.end(head + controlEvent("close", JSON.stringify(resumed.ended)))
        return
      }
      if (lastEvent !== undefined && resumed === undefined) head += controlEvent("reset", lastEvent.key)
      const session = resumed ?? new Session("sse", peerOf(request), settings.replayBytes)
      response.write(head + controlEvent("connected", session.key))
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
      response.on("close", () => session.detach(sink))
      session.attach(sink, resumed === undefined ? 0 : lastEvent!.after)
      if (resumed === undefined) open(session, subscriptions, admitted)
    }
    // a stream that resumes its connection was admitted when the connection opened
    if (resumed !== undefined) return begin(undefined)
    admitted(request, response, cors, begin)
  }

  // runs the authenticate hook for a new connection: a refusal is answered with its status
  const admitted = (
    request: Http.IncomingMessage,
    response: Http.ServerResponse,
    cors: Record<string, string>,
    then: (admitted: LhttpServer.Admitted) => void
  ) =>
    admit(peerOf(request), (result) => {
      if (result._tag === "Success") return then(result.success)
      const retry: Record<string, string> = result.failure.status === 503 ? { "retry-after": "1" } : {}
      respond(response, result.failure.status, `${result.failure.message}\n`, { ...cors, ...retry })
    })

  const poll = (request: Http.IncomingMessage, response: Http.ServerResponse, url: URL, cors: Record<string, string>) => {
    const key = url.searchParams.get("connection")
    if (key === null) {
      if (server.isDraining()) return respond(response, 503, "the server is shutting down\n", cors)
      const parsed = subscriptionsOf(url, settings.maxUrlChannels)
      if (parsed._tag === "Failure") {
        return respond(response, 400, `${parsed.failure.reason}: ${parsed.failure.message}\n`, cors)
      }
      const refused = refusal(request, parsed.success)
      if (refused !== undefined) return respond(response, refused.status, refused.body, retryOf(refused.status, cors))
      return admitted(request, response, cors, (data) => {
        if (response.destroyed) return
        const session = new Session("poll", peerOf(request), 0)
        open(session, parsed.success, data)
        respond(response, 200, pollBody(session.key, 0, []), cors, json)
      })
    }
    const session = sessions.get(key)
    if (session?.kind !== "poll") return respond(response, 404, "no such connection\n", cors)
    const cursor = Number(url.searchParams.get("cursor") ?? "0")
    if (!Number.isSafeInteger(cursor) || cursor < 0 || cursor > session.sequence) {
      return respond(response, 400, `the cursor is a frame number from 0 to ${session.sequence}\n`, cors)
    }
    const reply: Reply = (status, body) => respond(response, status, body, cors, json)
    response.on("close", () => session.abandon(reply))
    session.poll(cursor, reply, settings.pollTimeout)
  }

  const send = (request: Http.IncomingMessage, response: Http.ServerResponse, url: URL, cors: Record<string, string>) => {
    const session = sessions.get(url.searchParams.get("connection") ?? "")
    if (session === undefined) return respond(response, 404, "no such connection\n", cors)
    if (session.ended !== undefined) return respond(response, 410, closedBody(session.key, session.ended), cors, json)
    if (request.method === "DELETE") {
      // gone at once: the core's connection ends now, and what it kept for the peer goes
      session.close(1000, "closed by the client")
      session.forget()
      return respond(response, 204, "", cors)
    }
    if (server.isDraining()) return respond(response, 503, "the server is shutting down\n", cors)
    if (session.paused) {
      return respond(response, 429, "the connection is behind: send again later\n", { ...cors, "retry-after": "1" })
    }
    const max = limits.maxMessageBytes
    const tooLarge = () => respond(response, 413, `a message is at most ${max} bytes\n`, { ...cors, connection: "close" })
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
      const text = Frame.decodeUtf8(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks))
      if (text._tag === "Failure") return respond(response, 400, "InvalidUtf8: the message is not valid UTF-8\n", cors)
      const body = text.success
      const frame = Frame.parse(body, { maxHeaders: limits.maxHeaders })
      if (frame._tag === "Failure") return respond(response, 400, `${frame.failure.reason}: ${frame.failure.message}\n`, cors)
      if (session.ended !== undefined) return respond(response, 410, closedBody(session.key, session.ended), cors, json)
      session.inbound?.receive(body)
      respond(response, 202, "", cors)
    })
  }

  const allowed = (method: string | undefined, path: string): string | undefined =>
    path === settings.sendPath
      ? (method === "POST" || method === "DELETE" ? undefined : "POST, DELETE")
      : method === "GET"
      ? undefined
      : "GET"

  return {
    /** Serves a request when it is for one of the HTTP transports; false otherwise. */
    handle: (request: Http.IncomingMessage, response: Http.ServerResponse): boolean => {
      const target = request.url ?? "/"
      const query = target.indexOf("?")
      const path = query === -1 ? target : target.slice(0, query)
      const isSse = settings.sse && path === settings.ssePath
      const isPoll = settings.poll && path === settings.pollPath
      const isSend = (settings.sse || settings.poll) && path === settings.sendPath
      if (!isSse && !isPoll && !isSend) return false
      const origin = request.headers.origin
      if (origin !== undefined && limits.allowedOrigins !== undefined && !limits.allowedOrigins.has(origin)) {
        respond(response, 403, "origin not allowed\n", {})
        return true
      }
      const cors: Record<string, string> = origin === undefined
        ? {}
        : { "access-control-allow-origin": origin, vary: "origin" }
      if (request.method === "OPTIONS") {
        respond(response, 204, "", {
          ...cors,
          "access-control-allow-methods": isSend ? "POST, DELETE" : "GET",
          "access-control-allow-headers": "content-type, last-event-id",
          "access-control-max-age": "600"
        })
        return true
      }
      const allow = allowed(request.method, path)
      if (allow !== undefined) {
        respond(response, 405, `use ${allow}\n`, { ...cors, allow })
        return true
      }
      const url = new URL(target, "http://lhttp.invalid")
      if (isSse) stream(request, response, url, cors)
      else if (isPoll) poll(request, response, url, cors)
      else send(request, response, url, cors)
      return true
    },
    /** Stops the timers and ends what is still attached (after the server's drain). */
    close: () => {
      clearInterval(sweep)
      if (heartbeat !== undefined) clearInterval(heartbeat)
      for (const session of sessions.values()) session.detachAll()
      sessions.clear()
    }
  }
}
