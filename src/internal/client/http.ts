/**
 * What the HTTP transports of the client share (docs/transports.md): the
 * server's HTTP address from the client's URL, requests with the global
 * `fetch`, `POST /send` one frame at a time in order (its answers read by the
 * rules both clients share: internal/wire/sendAnswer.ts), and `DELETE /send`.
 */
import { Cause, Data, Deferred, Duration, Effect, Exit, Queue, type Scope } from "effect"
import type { Ended } from "../wire/eventStream.ts"
import { HttpHeader, HttpQuery } from "../wire/protocol.ts"
import { Attempts, maxServerErrorRetries } from "../wire/sendAnswer.ts"
import { notConnected, OpenError, SendError } from "./transport.ts"

/** The settings of an HTTP transport, defaults filled in. */
export interface Settings {
  /** The client's URL: `ws(s)://` (the same host over `http(s)://`) or `http(s)://`. */
  readonly url: string
  /** The wait after the nth failure in a row of a `POST /send`, in ms (the reconnect backoff). */
  readonly backoff: (attempt: number) => number
  readonly openTimeout: Duration.Input
  readonly ssePath: string
  readonly pollPath: string
  readonly sendPath: string
  /** The connection token for the request that opens a connection, if the client has one. */
  readonly token: Effect.Effect<string | undefined>
}

/**
 * An endpoint of the server: `path` on the host of the client's URL (`ws:` → `http:`, `wss:` →
 * `https:`), with a query.
 */
const endpoint = (url: string, path: string, query: Readonly<Record<string, string>> = {}): string => {
  const parsed = new URL(url)
  const protocol = parsed.protocol === "ws:" ? "http:" : parsed.protocol === "wss:" ? "https:" : parsed.protocol
  const target = new URL(path, `${protocol}//${parsed.host}`)
  for (const name in query) target.searchParams.set(name, query[name]!)
  return target.toString()
}

/** The query of a request that opens a connection: its token, if any. */
export const openingQuery = (settings: Settings): Effect.Effect<Record<string, string>> =>
  Effect.map(settings.token, (token): Record<string, string> => token === undefined ? {} : { [HttpQuery.token]: token })

/** `endpoint`, failing the open when the URL is not one. */
export const endpointOf = (url: string, path: string, query?: Readonly<Record<string, string>>) =>
  Effect.try({
    try: () => endpoint(url, path, query),
    catch: (cause) => new OpenError({ message: `not a URL: ${url}`, cause })
  })

/** An answer, read whole. */
interface Answer {
  readonly status: number
  readonly headers: Headers
  readonly body: string
}

/** A request that could not be made or whose answer could not be read. */
export class NetworkError extends Data.TaggedError("NetworkError")<{
  readonly message: string
  readonly cause: unknown
}> {}

/** An error's message, with its cause's (fetch says "fetch failed" and puts the reason in the cause). */
export const describeCause = (cause: unknown): string => {
  if (!(cause instanceof Error)) return String(cause)
  const inner = cause.cause instanceof Error ? `: ${cause.cause.message}` : ""
  return `${cause.message}${inner}`
}

/** A request with the global `fetch`, its answer read whole; interrupting it aborts it. */
export const request = (url: string, init: RequestInit = {}): Effect.Effect<Answer, NetworkError> =>
  Effect.tryPromise({
    try: async (signal) => {
      const response = await fetch(url, { ...init, signal })
      return { status: response.status, headers: response.headers, body: await response.text() }
    },
    catch: (cause) =>
      new NetworkError({ message: `${init.method ?? "GET"} ${url} failed: ${describeCause(cause)}`, cause })
  })

/** Fails the open after the open timeout. */
export const withOpenTimeout = (timeout: Duration.Input) => <A, R>(open: Effect.Effect<A, OpenError, R>) =>
  Effect.timeoutOrElse(open, {
    duration: Duration.fromInputUnsafe(timeout),
    orElse: () =>
      Effect.fail(
        new OpenError({
          message: `the connection did not open within ${Duration.format(Duration.fromInputUnsafe(timeout))}`
        })
      )
  })

/** How a connection ended, in words. */
const describeEnded = (ended: Ended): string => `${ended.code} ${ended.reason}`

interface Outgoing {
  readonly text: string
  readonly done: Deferred.Deferred<void, SendError>
}

/**
 * `POST /send?connection=<id>` for one connection until the scope closes:
 * one request at a time, in the order of the sends (the server processes
 * frames in the order it gets the requests). The answers are read by the
 * shared rules (internal/wire/sendAnswer.ts): a send succeeds on `2xx`; the
 * answers that mean the connection is gone (`404`, `410`) call `gone`;
 * `429`, a `5xx` (at most 3 times) and no answer send the same frame again
 * after a wait, before any other, so that the order holds. What is still
 * waiting when the scope closes fails `NotConnected`.
 */
export const sender = (
  sendUrl: string,
  backoff: (attempt: number) => number,
  gone: (why: string) => void
): Effect.Effect<(text: string) => Effect.Effect<void, SendError>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<Outgoing>()
    let closed = false
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closed = true
        return Queue.clear(queue)
      }).pipe(
        Effect.map((left) => {
          for (const item of left) Deferred.doneUnsafe(item.done, Effect.fail(notConnected()))
        }),
        Effect.ignore
      )
    )

    // set by an answer that says the connection is gone; told once the send is answered
    let goneWhy: string | undefined
    const post = (text: string): Effect.Effect<void, SendError> =>
      Effect.gen(function*() {
        const attempts = new Attempts(backoff)
        while (true) {
          const answer = yield* Effect.result(request(sendUrl, {
            method: "POST",
            body: text,
            headers: { "content-type": "text/plain; charset=utf-8" }
          }))
          if (answer._tag === "Failure") {
            // not known to be taken: the same frame again, for as long as the connection lasts
            yield* Effect.sleep(Duration.millis(attempts.unanswered()))
            continue
          }
          const { body, headers, status } = answer.success
          const verdict = attempts.answered(status, headers.get(HttpHeader.retryAfter), body)
          switch (verdict._tag) {
            case "Taken":
              return
            case "Wait":
              // the server is behind on this connection, or failed: the same frame again, later, before any other
              yield* Effect.sleep(Duration.millis(verdict.delay))
              continue
            case "Gone": {
              if (verdict.ended === undefined) {
                goneWhy = "no such connection"
                return yield* notConnected("the connection is gone (404: the server does not know it)")
              }
              goneWhy = describeEnded(verdict.ended)
              return yield* notConnected(`the connection ended (410: ${goneWhy})`)
            }
            case "TooLarge":
              return yield* new SendError({
                reason: "TooLarge",
                message: `the frame is over the server's limit (413: ${verdict.message})`
              })
            case "Refused":
              return yield* new SendError({
                reason: "Rejected",
                message: verdict.message,
                status: verdict.status,
                ...(verdict.reason === undefined ? {} : { serverReason: verdict.reason })
              })
            case "Failed":
              return yield* new SendError({
                reason: "NotConnected",
                message: `POST ${sendUrl} answered ${verdict.status} ${
                  1 + maxServerErrorRetries
                } times: ${verdict.message}`,
                status: verdict.status
              })
          }
        }
      })

    // one frame at a time; a frame taken is always answered, also when the scope closes meanwhile
    const serveOne = Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(restore(Queue.take(queue)), (item) =>
        Effect.flatMap(Effect.exit(restore(post(item.text))), (exit) =>
          Effect.sync(() => {
            const interrupted = Exit.isFailure(exit) && Cause.hasInterrupts(exit.cause)
            Deferred.doneUnsafe(item.done, interrupted ? Effect.fail(notConnected()) : exit)
            if (goneWhy !== undefined) {
              gone(goneWhy)
            }
          })))
    )
    yield* Effect.forkScoped(Effect.forever(serveOne))

    return (text: string) =>
      Effect.suspend(() => {
        if (closed) {
          return Effect.fail(notConnected())
        }
        const done = Deferred.makeUnsafe<void, SendError>()
        Queue.offerUnsafe(queue, { text, done })
        return Deferred.await(done)
      })
  })

/**
 * `DELETE /send?connection=<id>`: the server closes the connection as a
 * WebSocket close would. At most 2 s; its failures are ignored (the
 * connection expires on the server anyway).
 */
export const release = (url: string, sendPath: string, connection: string): Effect.Effect<void> =>
  endpointOf(url, sendPath, { [HttpQuery.connection]: connection }).pipe(
    Effect.flatMap((target) => request(target, { method: "DELETE" })),
    Effect.timeout("2 seconds"),
    Effect.ignore
  )
