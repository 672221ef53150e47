/**
 * Testing processors without a port: the in-memory transport connects
 * clients to the server's core in the same process. Everything the core does
 * runs as over a WebSocket (parsing, filters, the processor, pub/sub, the
 * outbox and its limits); only the socket is missing.
 *
 * This program defines a `shout` processor, connects two in-memory clients,
 * and checks what each receives; it exits 0 when every check holds:
 *
 *   node examples/memory-transport.ts
 */
import { Effect, Layer } from "effect"
import { Bus, Hub, LhttpServer, MemoryTransport, Processor } from "../src/index.ts"

// a processor that upper-cases what it publishes
const Shout = Processor.make("shout")
const ShoutLive = Shout.toLayer({
  onMessage: (exchange) => Effect.sync(() => exchange.setBody(exchange.text.toUpperCase()))
})

const Server = LhttpServer.layer({ processors: [Shout] }).pipe(
  Layer.provide(ShoutLive),
  Layer.provideMerge(Hub.layer()),
  Layer.provide(Bus.layerMemory())
)

const check = (what: string, got: string, expected: string) =>
  got === expected
    ? Effect.log(`ok: ${what}`)
    : Effect.die(new Error(`${what}: got ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`))

const program = Effect.gen(function*() {
  const alice = yield* MemoryTransport.connect({ url: "/room" })
  const bob = yield* MemoryTransport.connect({ url: "/room" })
  yield* bob.send("LHTTP/1.0 join\r\nsubscribe:room\r\n\r\n")
  yield* alice.send("LHTTP/1.0 shout\r\npublish:room\r\n\r\nhello")
  yield* check("bob hears alice, shouted", yield* bob.next, "LHTTP/1.0 shout\r\npublish:room\r\n\r\nHELLO")
  yield* alice.send("LHTTP/1.0 shout\r\npublish:no..room\r\nid:7\r\n\r\nhi")
  yield* check(
    "a bad channel is refused with an error frame",
    yield* alice.next,
    "LHTTP/1.0 error\r\nstatus:400\r\nreason:InvalidChannel\r\nid:7\r\n\r\nchannel \"no..room\" has an empty dot-separated token"
  )
})

Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(Server))).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
