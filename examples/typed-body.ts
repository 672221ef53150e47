/**
 * Typed body: a processor whose body is decoded with a Schema before it runs.
 * `move` takes a JSON body `{"x": <number>, "y": <number>}`, adds it to the
 * connection's position and answers with the new position.
 *
 * What it shows:
 * - `Processor.make(command, { body })` with `Schema.fromJsonString`: the
 *   server parses the JSON text and checks its shape, and `onMessage`
 *   receives a typed `exchange.body` (here `{ readonly x: number; readonly
 *   y: number }`), with no parsing or validation in the handler;
 * - a body that does not decode never reaches the handler: the server answers
 *   with a `400 InvalidBody` error frame (with the request's `id`), and the
 *   connection stays open;
 * - per-connection state kept with `Connection.key`.
 *
 * The exchange (`\r\n` spelled out):
 *
 *   > LHTTP/1.0 move\r\nid:1\r\n\r\n{"x":3,"y":4}
 *   < LHTTP/1.0 move\r\nid:1\r\n\r\n{"x":3,"y":4}
 *   > LHTTP/1.0 move\r\nid:2\r\n\r\n{"x":1,"y":-1}
 *   < LHTTP/1.0 move\r\nid:2\r\n\r\n{"x":4,"y":3}
 *   > LHTTP/1.0 move\r\nid:3\r\n\r\n{"x":"left"}
 *   < LHTTP/1.0 error\r\nstatus:400\r\nreason:InvalidBody\r\nid:3\r\n\r\n<what did not decode>
 *
 * Run it:
 *
 *   PORT=8081 node examples/typed-body.ts
 *
 * Try it with wscat (`npm i -g wscat`); `printf` writes the CRLFs:
 *
 *   wscat -c ws://127.0.0.1:8081/ -w 1 -x "$(printf 'LHTTP/1.0 move\r\nid:1\r\n\r\n{"x":3,"y":4}')"
 *   wscat -c ws://127.0.0.1:8081/ -w 1 -x "$(printf 'LHTTP/1.0 move\r\nid:3\r\n\r\n{"x":"left"}')"
 *
 * Environment: PORT (default 8081), HOST (default 127.0.0.1).
 */
import { Config, Effect, Layer, Schema } from "effect"
import { Bus, Connection, Hub, Processor } from "../src/index.ts"
import * as NodeLhttpServer from "../src/NodeLhttpServer.ts"

// The body's Schema: a JSON string that decodes to this struct.
const Move = Schema.Struct({ x: Schema.Finite, y: Schema.Finite })

const MoveProcessor = Processor.make("move", { body: Schema.fromJsonString(Move) })

// Per-connection state: where this connection is.
const Position = Connection.key<{ readonly x: number; readonly y: number }>("typed-body/position")

const MoveLive = MoveProcessor.toLayer({
  onMessage: (exchange) => {
    // `exchange.body` is typed: { readonly x: number; readonly y: number }
    const { x, y } = exchange.body
    const from = exchange.connection.get(Position) ?? { x: 0, y: 0 }
    const to = { x: from.x + x, y: from.y + y }
    exchange.connection.set(Position, to)
    return exchange.send(JSON.stringify(to))
  }
})

const Server = Layer.unwrap(Effect.gen(function*() {
  const port = yield* Config.Port("PORT").pipe(Config.withDefault(8081))
  const host = yield* Config.String("HOST").pipe(Config.withDefault("127.0.0.1"))
  return NodeLhttpServer.layer({ port, host, processors: [MoveProcessor] })
}))

const Main = Server.pipe(
  Layer.provide(MoveLive),
  Layer.provideMerge(Hub.layer()),
  Layer.provide(Bus.layerMemory())
)

NodeLhttpServer.launch(Main)
