/**
 * Publish from a backend: a program (not a server) that sends a message to
 * the subscribers of a channel through a running server's `POST /publish`.
 * This is how an application backend (a job, a web app, a webhook) pushes to
 * connected clients without holding a WebSocket itself.
 *
 * The body of `POST /publish` is one LHTTP message; the server reads its
 * `publish` header and delivers the message, verbatim, to every subscriber of
 * those channels. Here the message is (`\r\n` spelled out):
 *
 *   LHTTP/1.0 <command>\r\npublish:<channel>\r\n\r\n<text>
 *
 * The server answers 204 when the message was handed to the bus, 400 for a
 * message it cannot read (no `publish` header, an invalid channel), 401/403
 * without the right token, 413 for a message that is too big.
 *
 * What it shows:
 * - Effect's `HttpClient` (from `effect/http`, on Node's `undici` through
 *   `NodeHttpClient`) posting a text body and checking the status;
 * - building the message with the codec (`Frame.make`, `Frame.render`) and
 *   checking the channel locally (`Channel.parseList`) before sending;
 * - exit codes: 0 after a 204, 1 otherwise (an error status, a server that
 *   does not answer, bad arguments), with the reason logged.
 *
 * Run it against any server of these examples, e.g. the echo server:
 *
 *   PORT=8081 node examples/echo-server.ts
 *   # a subscriber, listening for a minute:
 *   wscat -c ws://127.0.0.1:8081/ -w 60 -x "$(printf 'LHTTP/1.0 echo\r\nsubscribe:news\r\n\r\n')"
 *   # the backend:
 *   node examples/publish-from-backend.ts news "hello from the backend"
 *
 * The subscriber receives `LHTTP/1.0 notify\r\npublish:news\r\n\r\nhello from the backend`.
 *
 * Usage: node examples/publish-from-backend.ts <channel> <text> [command]
 *   (command defaults to `notify`)
 *
 * Environment:
 * - LHTTP_URL: the server's base URL (default http://127.0.0.1:8081); the
 *   message is posted to `<LHTTP_URL>/publish`;
 * - LHTTP_PUBLISH_TOKEN: the bearer token, when the server requires one
 *   (without a token, a server only takes publishes from loopback peers).
 */
import { NodeHttpClient, NodeRuntime } from "@effect/platform-node"
import { Config, Data, Duration, Effect, Option, Result } from "effect"
import { HttpClient, HttpClientRequest } from "effect/http"
import { Buffer } from "node:buffer"
import { Channel, Frame } from "../src/index.ts"

/** Wrong arguments. */
class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

/** The server answered, but not with 204. */
class PublishRefused extends Data.TaggedError("PublishRefused")<{
  readonly status: number
  readonly message: string
}> {}

const usage = "usage: node examples/publish-from-backend.ts <channel> <text> [command]"

const program = Effect.gen(function*() {
  const [channel, text, command = "notify"] = process.argv.slice(2)
  if (channel === undefined || text === undefined) return yield* new UsageError({ message: usage })

  // Check the channel here for a clear message; the server checks it again.
  const channels = Channel.parseList(channel)
  if (Result.isFailure(channels)) return yield* new UsageError({ message: channels.failure.message })

  // The LHTTP message; the server delivers exactly this text.
  const frame = Frame.validate(Frame.make(command, { publish: channel }, text))
  if (Result.isFailure(frame)) return yield* new UsageError({ message: frame.failure.message })
  const message = Frame.render(frame.success)

  const base = yield* Config.String("LHTTP_URL").pipe(Config.withDefault("http://127.0.0.1:8081"))
  const token = yield* Config.option(Config.Redacted("LHTTP_PUBLISH_TOKEN"))
  const url = new URL("publish", base.endsWith("/") ? base : `${base}/`)

  let request = HttpClientRequest.post(url).pipe(HttpClientRequest.bodyText(message, "text/plain; charset=utf-8"))
  if (Option.isSome(token)) request = request.pipe(HttpClientRequest.bearerToken(token.value))

  const client = yield* HttpClient.HttpClient
  const response = yield* client.execute(request).pipe(Effect.timeout(Duration.seconds(10)))
  if (response.status !== 204) {
    const reason = yield* response.text.pipe(Effect.orElseSucceed(() => ""))
    return yield* new PublishRefused({ status: response.status, message: `${response.status}: ${reason.trim()}` })
  }
  yield* Effect.logInfo(`published ${Buffer.byteLength(message)} bytes to ${channel} via ${url.href}`)
})

program.pipe(
  Effect.provide(NodeHttpClient.layerUndici),
  NodeRuntime.runMain
)
