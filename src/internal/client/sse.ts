/**
 * The Server-Sent Events transport of the client (docs/transports.md):
 * `GET /sse` read as a stream with `fetch` (no `EventSource`: Node has none,
 * and it could not say when the connection is new), `POST /send` for what
 * the client sends.
 *
 * A stream that breaks is resumed with `Last-Event-ID`: the server still
 * holds the connection, its subscriptions and the frames since that event.
 * When the server no longer knows it (`event: reset`), or it ended
 * (`event: close`, `204`, a send answered `404` or `410`), the next open is
 * a new connection, which the client subscribes again.
 */
import { Deferred, Effect, type Scope } from "effect"
import { type Event, eventId, itemOf, Parser } from "../wire/eventStream.ts"
import { HttpHeader, HttpQuery } from "../wire/protocol.ts"
import {
  describeCause,
  endpointOf,
  NetworkError,
  openingQuery,
  release,
  sender,
  type Settings,
  withOpenTimeout
} from "./http.ts"
import { type Link, OpenError, type Transport } from "./transport.ts"

/** The events of a streaming response, one at a time. */
interface Events {
  /** The next event; undefined once the stream ended. */
  readonly next: Effect.Effect<Event | undefined, NetworkError>
}

const eventsOf = (body: ReadableStream<Uint8Array>): Events => {
  const reader = body.getReader()
  const parser = new Parser()
  let ready: Array<Event> = []
  let index = 0
  let done = false
  const read = Effect.tryPromise({
    try: () => reader.read(),
    catch: (cause) => new NetworkError({ message: "the event stream broke", cause })
  })
  return {
    next: Effect.gen(function*() {
      while (index === ready.length) {
        if (done) return undefined
        const chunk = yield* read
        index = 0
        if (chunk.done) {
          done = true
          ready = parser.end()
        } else {
          ready = parser.push(chunk.value)
        }
      }
      return ready[index++]
    })
  }
}

/** The connection the client has, and where its stream is. */
interface Held {
  readonly key: string
  /** `<key>:<n>`, the id of the last frame read (`<key>:0` before the first). */
  lastEventId: string
}

interface Opened {
  readonly key: string
  readonly events: Events
  /** The server took the `Last-Event-ID`: the same connection goes on. */
  readonly resumed: boolean
}

/** An SSE transport to the server of `settings.url`. */
export const make = (settings: Settings): Transport => {
  // the connection to resume when the stream breaks
  let held: Held | undefined

  /** One `GET /sse`, up to its `event: connected`; "ended" when the server says the connection to resume ended. */
  const stream = (resume: Held | undefined): Effect.Effect<Opened | "ended", OpenError, Scope.Scope> =>
    Effect.gen(function*() {
      // every GET /sse is admitted (a resume too): each carries the token
      const url = yield* endpointOf(settings.url, settings.ssePath, yield* openingQuery(settings))
      const controller = yield* Effect.acquireRelease(
        Effect.sync(() => new AbortController()),
        (controller) => Effect.sync(() => controller.abort())
      )
      const headers: Record<string, string> = { accept: "text/event-stream" }
      if (resume !== undefined) headers[HttpHeader.lastEventId] = resume.lastEventId
      const response = yield* Effect.tryPromise({
        try: () => fetch(url, { headers, signal: controller.signal }),
        catch: (cause) => new OpenError({ message: `GET ${url} failed: ${describeCause(cause)}`, cause })
      })
      // 204: the connection ended and the server said so before
      if (response.status === 204) return "ended"
      if (response.status !== 200 || response.body === null) {
        const body = yield* Effect.promise(() => response.text().catch(() => ""))
        return yield* new OpenError({ message: `GET ${url} answered ${response.status}: ${body.trim()}` })
      }
      const events = eventsOf(response.body)
      let reset = false
      while (true) {
        const event = yield* events.next.pipe(
          Effect.mapError((error) => new OpenError({ message: error.message, cause: error.cause }))
        )
        if (event === undefined) {
          return yield* new OpenError({ message: `GET ${url}: the stream ended before the connection opened` })
        }
        const item = itemOf(event)
        if (item._tag === "Reset") reset = true
        else if (item._tag === "Close") return "ended"
        else if (item._tag === "Connected") {
          const key = item.connection
          return { key, events, resumed: resume !== undefined && !reset && key === resume.key }
        }
      }
    })

  const open = Effect.gen(function*() {
    let opened = yield* stream(held)
    // the connection to resume ended: a new one at once
    if (opened === "ended") {
      held = undefined
      opened = yield* stream(undefined)
    }
    if (opened === "ended") return yield* new OpenError({ message: "the server ended the stream at once" })
    const { events, key, resumed } = opened
    const current: Held = resumed && held !== undefined ? held : { key, lastEventId: eventId(key, 0) }
    held = current
    const forget = () => {
      if (held === current) held = undefined
    }
    const gone = Deferred.makeUnsafe<void>()
    const sendUrl = yield* endpointOf(settings.url, settings.sendPath, { [HttpQuery.connection]: key })
    const send = yield* sender(sendUrl, settings.backoff, () => {
      forget()
      Deferred.doneUnsafe(gone, Effect.void)
    })
    const read = (onFrame: (frame: string) => void) =>
      Effect.gen(function*() {
        while (true) {
          const event = yield* events.next
          // the stream ended without a word: it broke, the connection is resumed
          if (event === undefined) return undefined
          const item = itemOf(event)
          if (item._tag === "Frame") {
            onFrame(item.text)
            if (event.lastEventId !== "") current.lastEventId = event.lastEventId
          } else if (item._tag === "Close") {
            // the connection ended (closed by the server, drained, a slow consumer)
            forget()
            return item.ended
          }
          // `gap`: frames the server no longer held, lost for good
        }
      }).pipe(
        Effect.catch(() => Effect.succeed(undefined)),
        Effect.raceFirst(Effect.as(Deferred.await(gone), undefined))
      )
    return { resumed, send, read } satisfies Link
  }).pipe(withOpenTimeout(settings.openTimeout))

  return {
    open,
    close: Effect.suspend(() => {
      const last = held
      held = undefined
      return last === undefined ? Effect.void : release(settings.url, settings.sendPath, last.key)
    })
  }
}
