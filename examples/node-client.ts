/**
 * A Node program that talks to an LHTTP server with the Effect client: it
 * joins a chat room, says hello, asks the `echo` processor a question
 * (request/reply, correlated by `id`), waits for its own message to come back
 * through the room, and exits.
 *
 *   npm start                                  # in another terminal
 *   LHTTP_URL=ws://127.0.0.1:8081/ node examples/node-client.ts alice
 *
 * The client reconnects by itself (with backoff and jitter) and subscribes
 * again to its channels after a reconnect; `client.states` shows it.
 */
import { NodeWS } from "@effect/platform-node"
import { Console, Effect, Fiber, Stream } from "effect"
import { LhttpClient } from "../src/index.ts"

const url = process.env.LHTTP_URL ?? "ws://127.0.0.1:8081/"
const name = process.argv[2] ?? "node-client"

const program = Effect.gen(function*() {
  const client = yield* LhttpClient.connect(url)
  yield* client.states.pipe(
    Stream.takeUntil((state) => state === "open"),
    Stream.runForEach((state) => Console.log(`connection: ${state}`))
  )

  // hear the room: our own message comes back through it
  const heard = yield* client.channel("lobby").pipe(
    Stream.filter((message) => message._tag !== "Failure" && message.body !== ""),
    Stream.take(1),
    Stream.runCollect,
    Effect.forkChild
  )
  // join with the chat processor, then speak
  yield* client.command("chat", { subscribe: "lobby", name })
  yield* Effect.sleep("100 millis")
  yield* client.publish(["lobby"], "chat", {}, `hello from ${name}`)

  const reply = yield* client.request("echo", "are you there?", { timeout: "2 seconds" })
  yield* Console.log(`echo replied: ${reply._tag === "Failure" ? reply.message : reply.body}`)

  for (const message of yield* Fiber.join(heard)) {
    if (message._tag !== "Failure") yield* Console.log(`lobby: ${message.headers.get("from")}: ${message.body}`)
  }
})

Effect.runPromise(
  program.pipe(Effect.scoped, Effect.timeout("10 seconds"), Effect.provide(NodeWS.layerWebSocketConstructor))
).then(
  () => process.exit(0),
  (error) => {
    console.error(String(error))
    process.exit(1)
  }
)
