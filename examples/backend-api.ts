/**
 * A backend and a token-authenticated client: the server takes JWT
 * connection tokens (`tokens: { secret }`) and serves the server API
 * (`apiKey`); the backend signs a token for `alice` (with `jose`, as an
 * identity provider would), and the Effect client connects with it
 * (`getToken`). Then the backend acts through `POST /api/<operation>` and the
 * client sees each effect:
 *
 * - `publish` to `news`, a channel the token's `channels` claim subscribed
 *   the connection to: the client gets the message;
 * - `send` to the user `alice`: every connection of hers gets the frame;
 * - `presence_stats` of `news`: one connection, one user;
 * - `disconnect` of `alice` (code 4500 by default): the client is told, and
 *   does not reconnect.
 *
 * Runs to completion: node examples/backend-api.ts (docs/tokens.md, docs/api.md).
 */
import { NodeWS } from "@effect/platform-node"
import { Console, Context, Effect, Fiber, Layer, Stream } from "effect"
import { HttpServer } from "effect/http"
import * as Jose from "jose"
import { Bus, Hub, LhttpClient, type Message, Presence } from "../src/index.ts"
import * as NodeLhttpServer from "../src/NodeLhttpServer.ts"

// shared by the identity provider (which signs) and the server (which verifies); at least 32 bytes
const secret = "an-example-secret-of-32-bytes-or-more"
const apiKey = "an-example-api-key"

// ---- the server: tokens, the server API, presence ----

const serve = Effect.gen(function*() {
  const context = yield* Layer.build(
    NodeLhttpServer.layer({
      port: 0,
      host: "127.0.0.1",
      processors: [Presence.PresenceProcessor],
      tokens: { secret, audience: "example" },
      apiKey
    }).pipe(
      Layer.provideMerge(Presence.layer()),
      Layer.provideMerge(Hub.layer()),
      Layer.provide(Bus.layerMemory())
    )
  )
  const address = Context.get(context, HttpServer.HttpServer).address
  return address._tag === "UnixPathAddress" ? 0 : address.port
})

// ---- the backend: tokens for users, calls to the API ----

const tokenFor = (user: string) =>
  Effect.promise(() =>
    new Jose.SignJWT({ channels: ["news"], info: { name: user } })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(user)
      .setAudience("example")
      .setExpirationTime("10 minutes")
      .sign(new TextEncoder().encode(secret))
  )

const api = (port: number, operation: string, request: object) =>
  Effect.promise(async () => {
    const response = await fetch(`http://127.0.0.1:${port}/api/${operation}`, {
      method: "POST",
      headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
      body: JSON.stringify(request)
    })
    return await response.json() as Record<string, unknown>
  })

// ---- the story ----

const program = Effect.gen(function*() {
  const port = yield* serve
  const client = yield* LhttpClient.connect(`ws://127.0.0.1:${port}/`, { getToken: tokenFor("alice") })
  const closes = yield* client.disconnects.pipe(Stream.take(1), Stream.runCollect, Effect.forkScoped)
  yield* client.states.pipe(Stream.filter((state) => state === "open"), Stream.take(1), Stream.runDrain)
  // the token's channels are subscribed as the connection opens, before it handles anything: once a request
  // of its is answered, the subscription is in place
  yield* client.request("presence", "", { headers: { channel: "news" } })
  yield* Console.log("alice is connected with her token")

  // the backend calls an operation; the client shows the first message of `seen` that comes of it
  const effectOf = (operation: string, request: object, seen: Stream.Stream<Message.Message>) =>
    Effect.gen(function*() {
      const first = yield* seen.pipe(Stream.take(1), Stream.runCollect, Effect.forkScoped)
      yield* Effect.yieldNow
      yield* Console.log(`backend ${operation}: ${JSON.stringify(yield* api(port, operation, request))}`)
      for (const message of yield* Fiber.join(first)) {
        if (message._tag !== "Failure") yield* Console.log(`alice got ${message.command}: ${message.body}`)
      }
    })
  yield* effectOf("publish", { channel: "news", command: "headline", body: "tokens landed" }, client.channel("news"))
  yield* effectOf(
    "send",
    { user: "alice", command: "dm", body: "your order shipped" },
    client.messages.pipe(Stream.filter((message) => message._tag !== "Failure" && message.command === "dm"))
  )

  yield* Console.log(
    `backend presence_stats: ${JSON.stringify(yield* api(port, "presence_stats", { channel: "news" }))}`
  )
  yield* Console.log(`backend disconnect: ${JSON.stringify(yield* api(port, "disconnect", { user: "alice" }))}`)
  for (const close of yield* Fiber.join(closes)) {
    yield* Console.log(`alice was disconnected: ${close.code} ${close.reason}, reconnect: ${close.reconnect}`)
  }
  yield* client.states.pipe(Stream.filter((state) => state === "closed"), Stream.take(1), Stream.runDrain)
  yield* Console.log("alice's client is closed")
})

Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(NodeWS.layerWebSocketConstructor))).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
