/**
 * The long-poll transport of the client (docs/transports.md): `GET /poll`
 * opens a connection, `GET /poll?connection=<id>&cursor=<n>` in a loop
 * takes the frames after `n` (and acknowledges those up to it), `POST /send`
 * carries what the client sends.
 *
 * A poll whose answer is lost loses nothing: the same cursor gets the same
 * frames. So a poll that fails (the network, a proxy) is made again at
 * once, with the same cursor; a second failure in a row, or `404` / `410`,
 * ends the connection, and the client opens a new one (and subscribes
 * again). A connection let go without the server saying it ended is closed
 * with `DELETE /send`.
 */
import { Deferred, Effect, Schema } from "effect"
import { endedOf } from "../wire/eventStream.ts"
import { HttpQuery } from "../wire/protocol.ts"
import { endpointOf, openingQuery, release, request, sender, type Settings, withOpenTimeout } from "./http.ts"
import { type Link, OpenError, type Transport } from "./transport.ts"

/** What a poll answers. */
const Batch = Schema.fromJsonString(Schema.Struct({
  connection: Schema.String,
  cursor: Schema.Int,
  frames: Schema.Array(Schema.String)
}))

const decodeBatch = Schema.decodeUnknownOption(Batch)

/** A long-poll transport to the server of `settings.url`. */
export const make = (settings: Settings): Transport => ({
  open: Effect.gen(function*() {
    const pollUrl = yield* endpointOf(settings.url, settings.pollPath, yield* openingQuery(settings))
    const opened = yield* request(pollUrl).pipe(
      Effect.mapError((error) => new OpenError({ message: error.message, cause: error.cause }))
    )
    const batch = opened.status === 200 ? decodeBatch(opened.body) : undefined
    if (batch === undefined || batch._tag === "None") {
      return yield* new OpenError({ message: `GET ${pollUrl} answered ${opened.status}: ${opened.body.trim()}` })
    }
    const key = batch.value.connection
    let cursor = batch.value.cursor
    // the opening answer has no frames (docs/transports.md); any it had come first
    const first = batch.value.frames
    // whether the server said the connection ended (or no longer knows it)
    let ended = false
    yield* Effect.addFinalizer(() => ended ? Effect.void : release(settings.url, settings.sendPath, key))
    const gone = Deferred.makeUnsafe<void>()
    const sendUrl = yield* endpointOf(settings.url, settings.sendPath, { [HttpQuery.connection]: key })
    const send = yield* sender(sendUrl, settings.backoff, () => {
      ended = true
      Deferred.doneUnsafe(gone, Effect.void)
    })
    const read = (onFrame: (frame: string) => void) =>
      Effect.gen(function*() {
        for (const frame of first) onFrame(frame)
        let failures = 0
        while (true) {
          const url = yield* endpointOf(settings.url, settings.pollPath, {
            [HttpQuery.connection]: key,
            [HttpQuery.cursor]: String(cursor)
          })
          const answer = yield* Effect.result(request(url))
          if (answer._tag === "Failure" || answer.success.status >= 500 && answer.success.status !== 503) {
            // the answer was lost: ask again with the same cursor, once
            if (++failures >= 2) return undefined
            continue
          }
          const { body, status } = answer.success
          const polled = status === 200 ? decodeBatch(body) : undefined
          if (polled === undefined || polled._tag === "None") {
            // 404 (unknown or expired), 410 (ended: its close may ask for a wait), 400 (a cursor it did not
            // give), 503 (shut down)
            ended = true
            return status === 410 ? endedOf(body) : undefined
          }
          failures = 0
          for (const frame of polled.value.frames) onFrame(frame)
          cursor = polled.value.cursor
        }
      }).pipe(
        Effect.catch(() => Effect.succeed(undefined)),
        Effect.raceFirst(Effect.as(Deferred.await(gone), undefined))
      )
    return { resumed: false, send, read } satisfies Link
  }).pipe(withOpenTimeout(settings.openTimeout)),
  // the connection is let go (and deleted) when its scope closes
  close: Effect.void
})
