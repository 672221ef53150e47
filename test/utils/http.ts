/**
 * Test clients of the HTTP transports (docs/transports.md), written from the
 * contract: an SSE reader over `node:http` (whose reading a test can stop, so
 * that TCP backpressure reaches the server), a long-poll client, and
 * `POST /send`.
 */
import { Effect } from "effect"
import * as Http from "node:http"

/** One event of an event stream, as the SSE format defines it. */
export interface SseEvent {
  readonly id: string | undefined
  readonly event: string
  readonly data: string
}

/** An open event stream. */
export interface SseClient {
  readonly status: number
  readonly headers: Http.IncomingHttpHeaders
  /** Every byte of the stream so far, as text. */
  readonly raw: () => string
  /** The next event (comments and `retry:` are not events), failing after 3 s. */
  readonly next: Effect.Effect<SseEvent, Error>
  /** Whether the server ended the stream. */
  readonly ended: () => boolean
  /** Stops or restarts reading the socket. */
  readonly reading: (on: boolean) => void
  /** Drops the stream. */
  readonly abort: () => void
}

/**
 * Opens `GET <url>` as an event stream until the test's scope closes; the
 * `retry:` field and comments are parsed and skipped.
 */
export const sse = (url: string, headers: Record<string, string> = {}) =>
  Effect.acquireRelease(
    Effect.callback<SseClient, Error>((resume) => {
      const request = Http.get(url, { headers })
      request.on("error", (error) => resume(Effect.fail(error)))
      request.on("response", (response) => {
        let raw = ""
        let buffer = ""
        let ended = false
        const events: Array<SseEvent> = []
        const waiters: Array<(event: SseEvent | undefined) => void> = []
        let id: string | undefined
        let event = ""
        let data: Array<string> = []
        const dispatch = () => {
          if (data.length > 0 || event !== "") {
            const value = { id, event: event === "" ? "message" : event, data: data.join("\n") }
            const waiter = waiters.shift()
            if (waiter) waiter(value)
            else events.push(value)
          }
          event = ""
          data = []
        }
        response.setEncoding("utf8")
        response.on("data", (chunk: string) => {
          raw += chunk
          buffer += chunk
          const lines = buffer.split(/\r\n|\r|\n/)
          buffer = lines.pop()!
          for (const line of lines) {
            if (line === "") dispatch()
            else if (line.startsWith(":")) continue
            else {
              const colon = line.indexOf(":")
              const field = colon === -1 ? line : line.slice(0, colon)
              let value = colon === -1 ? "" : line.slice(colon + 1)
              if (value.startsWith(" ")) value = value.slice(1)
              if (field === "id") id = value
              else if (field === "event") event = value
              else if (field === "data") data.push(value)
            }
          }
        })
        const finish = () => {
          ended = true
          for (const waiter of waiters.splice(0)) waiter(undefined)
        }
        response.on("end", finish)
        response.on("close", finish)
        response.on("error", () => {})
        resume(Effect.succeed({
          status: response.statusCode ?? 0,
          headers: response.headers,
          raw: () => raw,
          ended: () => ended,
          next: Effect.callback<SseEvent, Error>((resumeNext) => {
            const first = events.shift()
            if (first !== undefined) return resumeNext(Effect.succeed(first))
            if (ended) return resumeNext(Effect.fail(new Error("the stream ended")))
            const waiter = (value: SseEvent | undefined) =>
              resumeNext(value === undefined ? Effect.fail(new Error("the stream ended")) : Effect.succeed(value))
            waiters.push(waiter)
            return Effect.sync(() => {
              const index = waiters.indexOf(waiter)
              if (index !== -1) waiters.splice(index, 1)
            })
          }).pipe(Effect.timeoutOrElse({
            duration: "3 seconds",
            orElse: () => Effect.fail(new Error("no event arrived in time"))
          })),
          reading: (on) => {
            if (on) response.resume()
            else response.pause()
          },
          abort: () => request.destroy()
        }))
      })
      return Effect.sync(() => request.destroy())
    }),
    (client) => Effect.sync(() => client.abort())
  )

/** What a poll answers. */
export interface PollAnswer {
  readonly status: number
  readonly body: {
    readonly connection: string
    readonly cursor?: number
    readonly frames?: ReadonlyArray<string>
    readonly code?: number
    readonly reason?: string
  }
}

/** `GET <url>` answered as JSON (or as text under `text` when it is not JSON). */
export const getJson = (url: string, init?: RequestInit) =>
  Effect.promise(async (): Promise<PollAnswer> => {
    const response = await fetch(url, init)
    const text = await response.text()
    let body: PollAnswer["body"]
    try {
      body = JSON.parse(text)
    } catch {
      body = { connection: "", reason: text }
    }
    return { status: response.status, body }
  })

/** `POST /send?connection=<key>` with `body`; the status and the answer's text. */
export const send = (http: string, key: string, body: string, headers: Record<string, string> = {}) =>
  Effect.promise(async () => {
    const response = await fetch(`${http}/send?connection=${encodeURIComponent(key)}`, {
      method: "POST",
      body,
      headers: { "content-type": "text/plain", ...headers }
    })
    return { status: response.status, body: await response.text() }
  })
