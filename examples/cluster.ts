/**
 * Two effect-lhttp nodes on one NATS: a message published on one node reaches
 * a subscriber on the other.
 *
 *   nats-server -a 127.0.0.1 -p 4222 &                   # any NATS (apt-get install nats-server)
 *   LHTTP_NATS_URL=nats://127.0.0.1:4222 node examples/cluster.ts
 *
 * It starts two server nodes in this process (each with its own NATS
 * connection, as two machines would have), subscribes a WebSocket client to
 * `lobby` on node A, publishes from a client on node B, prints what A
 * receives, and exits. The same two nodes could be two `npm start` processes
 * with LHTTP_NATS_URL set.
 */
import { Context, Effect, Layer } from "effect"
import { HttpServer } from "effect/http"
import WebSocket from "ws"
import { Hub, LhttpServer } from "../src/index.ts"
import * as NatsBus from "../src/NatsBus.ts"
import * as NodeLhttpServer from "../src/NodeLhttpServer.ts"

const natsUrl = process.env.LHTTP_NATS_URL ?? "nats://127.0.0.1:4222"

// One node: a stand-alone server on a free port over its own NATS connection.
const startNode = Effect.gen(function*() {
  const context = yield* Layer.build(
    NodeLhttpServer.layer({ port: 0, host: "127.0.0.1" }).pipe(
      Layer.provideMerge(Hub.layer()),
      Layer.provide(NatsBus.layer({ servers: natsUrl }))
    )
  )
  const address = Context.get(context, HttpServer.HttpServer).address
  const server = Context.get(context, LhttpServer.LhttpServer)
  // wait until the node is connected to NATS
  while (!(yield* server.isReady)) yield* Effect.sleep("50 millis")
  return `ws://127.0.0.1:${address._tag === "UnixPathAddress" ? 0 : address.port}/`
})

const open = (url: string) =>
  Effect.acquireRelease(
    Effect.callback<WebSocket>((resume) => {
      const ws = new WebSocket(url)
      ws.once("open", () => resume(Effect.succeed(ws)))
      ws.once("error", (error) => resume(Effect.die(error)))
    }),
    (ws) => Effect.sync(() => ws.close())
  )

const program = Effect.gen(function*() {
  const nodeA = yield* startNode
  const nodeB = yield* startNode
  yield* Effect.logInfo(`node A on ${nodeA}, node B on ${nodeB}, both on NATS ${natsUrl}`)

  const alice = yield* open(nodeA)
  const bob = yield* open(nodeB)
  const received = Effect.callback<string>((resume) => {
    alice.once("message", (data) => resume(Effect.succeed(String(data))))
  })
  alice.send("LHTTP/1.0 chat\r\nsubscribe:lobby\r\n\r\n")
  // the subscription reaches NATS asynchronously: publish until it crosses
  const publishing = Effect.gen(function*() {
    while (true) {
      bob.send("LHTTP/1.0 chat\r\npublish:lobby\r\n\r\nhello from node B")
      yield* Effect.sleep("100 millis")
    }
  })
  const frame = yield* received.pipe(
    Effect.raceFirst(Effect.andThen(publishing, Effect.never)),
    Effect.timeout("10 seconds")
  )
  yield* Effect.logInfo(`node A received: ${JSON.stringify(frame)}`)
})

Effect.runPromise(Effect.scoped(program)).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
