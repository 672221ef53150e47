/**
 * Channel history and recovery: a client that loses its connection gets what
 * was published while it was away, by itself, when it is back.
 *
 * The server keeps the last 100 messages of every `news-` channel for 10
 * minutes (`History.layerMemory`; `effect-lhttp/NatsHistory` keeps them in
 * JetStream for a cluster). A reader subscribes to `news-1` with the Effect
 * client, reads one message, and the server drops its connection (the `drop`
 * processor, as a network would). While it reconnects, a writer publishes
 * three more. The reader subscribes again since its last position and gets
 * those three, in order, then a `position` frame saying it recovered
 * everything, then the live messages.
 *
 * What it shows:
 * - positions asked for (`since:now`, which the client sends by itself) and
 *   the `channel`, `offset` and `epoch` headers on a history channel's frames;
 * - `client.position(channel)`: the last position the client saw;
 * - the client's resubscription with `since:<epoch>:<offset>` after a
 *   reconnect, and the `position` frame ending the recovery.
 *
 * The frames (`\r\n` spelled out):
 *
 *   > LHTTP/1.0 subscribe\r\nsubscribe:news-1\r\nsince:now\r\n\r\n
 *   < LHTTP/1.0 position\r\nchannel:news-1\r\nepoch:<e>\r\noffset:0\r\n\r\n
 *   < LHTTP/1.0 news\r\nchannel:news-1\r\noffset:1\r\nepoch:<e>\r\npublish:news-1\r\n\r\nfirst
 *   (the connection drops; three are published; the client reconnects)
 *   > LHTTP/1.0 subscribe\r\nsubscribe:news-1\r\nsince:<e>:1\r\n\r\n
 *   < ... offset:2 ... second, offset:3 ... third, offset:4 ... fourth
 *   < LHTTP/1.0 position\r\nchannel:news-1\r\nepoch:<e>\r\noffset:4\r\nrecovered:yes\r\n\r\n
 *
 * Run it (it starts its own server on a free port and exits):
 *
 *   node examples/history.ts
 */
import { NodeWS } from "@effect/platform-node"
import { Console, Context, Duration, Effect, Layer, Option, Queue, Stream } from "effect"
import { HttpServer } from "effect/http"
import type { Message } from "../src/index.ts"
import { Bus, History, Hub, LhttpClient, Processor } from "../src/index.ts"
import * as NodeLhttpServer from "../src/NodeLhttpServer.ts"

// a processor that drops the connection it came on, as a network would
const Drop = Processor.make("drop")
const DropLive = Drop.toLayer({ onMessage: (exchange) => exchange.connection.close(4000, "dropped") })

const serve = Effect.gen(function*() {
  const context = yield* Layer.build(
    NodeLhttpServer.layer({ port: 0, host: "127.0.0.1", processors: [Drop] }).pipe(
      Layer.provide(DropLive),
      Layer.provideMerge(
        Hub.layer().pipe(
          Layer.provide(History.layerMemory({ policies: [{ prefix: "news-", size: 100, ttl: Duration.minutes(10) }] }))
        )
      ),
      Layer.provide(Bus.layerMemory())
    )
  )
  const address = Context.get(context, HttpServer.HttpServer).address
  return `ws://127.0.0.1:${address._tag === "UnixPathAddress" ? 0 : address.port}/`
})

const opened = (client: LhttpClient.Service) =>
  client.states.pipe(Stream.filter((state) => state === "open"), Stream.take(1), Stream.runDrain)

const describe = (message: Message.Message) =>
  message._tag === "Failure"
    ? `error ${message.status} ${message.reason}`
    : message.command === History.positionCommand
    ? `position: offset ${message.headers.get("offset")}, recovered ${message.headers.get("recovered") ?? "-"}`
    : `${message.body} (offset ${message.headers.get("offset")})`

const program = Effect.gen(function*() {
  const url = yield* serve
  const writer = yield* LhttpClient.connect(url)
  // the reader reconnects half a second after its connection drops
  const reader = yield* LhttpClient.connect(url, { reconnect: { initialDelay: "500 millis", jitter: 0 } })
  yield* opened(writer)
  yield* opened(reader)

  // what the reader gets on the channel (its frames and its position frames name it), printed
  const seen = yield* Queue.unbounded<Message.Message>()
  yield* reader.messages.pipe(
    Stream.filter((message) => message._tag !== "Failure" && message.headers.get("channel") === "news-1"),
    Stream.runForEach((message) => Effect.andThen(Console.log(describe(message)), Queue.offer(seen, message))),
    Effect.forkChild({ startImmediately: true })
  )
  const next = (n: number) => Effect.replicateEffect(Queue.take(seen), n)

  yield* reader.subscribe(["news-1"])
  yield* next(1) // the position frame
  yield* writer.publish(["news-1"], "news", {}, "first")
  yield* next(1)

  // the server drops the reader's connection; three messages go by while it is away
  const away = reader.states.pipe(Stream.filter((state) => state === "reconnecting"), Stream.take(1), Stream.runDrain)
  yield* Effect.all([away, reader.command("drop")], { concurrency: "unbounded" })
  yield* Console.log(`away since offset ${Option.getOrThrow(reader.position("news-1")).offset}`)
  for (const text of ["second", "third", "fourth"]) yield* writer.publish(["news-1"], "news", {}, text)

  // back: the three, in order, then the position frame, then the live ones
  yield* next(4)
  yield* writer.publish(["news-1"], "news", {}, "live again")
  yield* next(1)
  yield* Console.log(`last position: ${Option.getOrThrow(reader.position("news-1")).offset}`)
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
