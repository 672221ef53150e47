/**
 * Typed requests, end to end: one processor definition, shared by the server
 * and the Effect client, with a Schema for its body, its reply and its
 * errors. The server implements it; the client calls it with `client.call`
 * and gets a typed reply, or a typed error it can catch by its tag.
 *
 * `forecast` takes `{"city": …, "delayMs": …}`, waits `delayMs` (a slow
 * backend) and answers `{"city": …, "celsius": …}`, or fails with the
 * declared error `UnknownCity` (an error frame `404 UnknownCity` whose body is
 * the error as JSON).
 *
 * What it shows:
 * - `Processor.make(command, { body, reply, error })`, the one definition;
 * - `client.call(Forecast, { city, delayMs })`: the body encoded, a fresh
 *   `id`, the reply decoded: `Effect<{ city; celsius }, UnknownCity |
 *   ClientError>`;
 * - `Effect.catchTag("UnknownCity", …)` on the declared error;
 * - several calls in flight on one connection at once: the server runs each
 *   request in a fiber of its own, so they complete in the order they are
 *   answered (the fastest first), each with its own reply.
 *
 * The exchange (`\r\n` spelled out):
 *
 *   > LHTTP/1.0 forecast\r\nid:r1\r\n\r\n{"city":"Paris","delayMs":0}
 *   < LHTTP/1.0 forecast\r\nid:r1\r\n\r\n{"city":"Paris","celsius":18}
 *   > LHTTP/1.0 forecast\r\nid:r2\r\n\r\n{"city":"Atlantis","delayMs":0}
 *   < LHTTP/1.0 error\r\nstatus:404\r\nreason:UnknownCity\r\nid:r2\r\n\r\n{"_tag":"UnknownCity","city":"Atlantis","status":404}
 *
 * Run it (it starts its own server on a free port, calls it and exits):
 *
 *   node examples/typed-request.ts
 */
import { NodeWS } from "@effect/platform-node"
import { Console, Context, Effect, Layer, Schema, Stream } from "effect"
import { HttpServer } from "effect/http"
import { Bus, Hub, LhttpClient, Processor } from "../src/index.ts"
import * as NodeLhttpServer from "../src/NodeLhttpServer.ts"

// ---- the definition, shared by the server and the client ----

// a declared error: its `status` field is the error frame's status
class UnknownCity extends Schema.TaggedError<UnknownCity>()("UnknownCity", {
  city: Schema.String,
  status: Schema.Literal(404)
}) {}

const Forecast = Processor.make("forecast", {
  body: Schema.fromJsonString(Schema.Struct({ city: Schema.String, delayMs: Schema.Int })),
  reply: Schema.fromJsonString(Schema.Struct({ city: Schema.String, celsius: Schema.Number })),
  error: UnknownCity
})

// ---- the server ----

const temperatures: Record<string, number> = { Paris: 18, Oslo: 7, Lima: 22, Cairo: 31 }

const ForecastLive = Forecast.toLayer({
  // the body is decoded; the reply is encoded by the server; UnknownCity becomes its error frame
  onMessage: ({ body: { city, delayMs } }) =>
    Effect.gen(function*() {
      yield* Effect.sleep(delayMs)
      const celsius = temperatures[city]
      if (celsius === undefined) return yield* new UnknownCity({ city, status: 404 })
      return { city, celsius }
    })
})

// a server on a free port of 127.0.0.1, in this process, until the scope closes
const serve = Effect.gen(function*() {
  const context = yield* Layer.build(
    NodeLhttpServer.layer({ port: 0, host: "127.0.0.1", processors: [Forecast] }).pipe(
      Layer.provide(ForecastLive),
      Layer.provideMerge(Hub.layer()),
      Layer.provide(Bus.layerMemory())
    )
  )
  const address = Context.get(context, HttpServer.HttpServer).address
  return `ws://127.0.0.1:${address._tag === "UnixPathAddress" ? 0 : address.port}/`
})

// ---- the client ----

const program = Effect.gen(function*() {
  const url = yield* serve
  const client = yield* LhttpClient.connect(url)
  // it connects in the background: wait until it is open (or pass `sendBuffer` to queue the first sends)
  yield* client.states.pipe(Stream.filter((state) => state === "open"), Stream.take(1), Stream.runDrain)

  // one call: the reply is typed ({ readonly city: string; readonly celsius: number })
  const paris = yield* client.call(Forecast, { city: "Paris", delayMs: 0 })
  yield* Console.log(`forecast: ${paris.city} ${paris.celsius}°C`)

  // a declared error, caught by its tag (a ClientError, for a timeout or a lost connection, goes on)
  yield* client.call(Forecast, { city: "Atlantis", delayMs: 0 }).pipe(
    Effect.flatMap((reply) => Console.log(`forecast: ${reply.city} ${reply.celsius}°C`)),
    Effect.catchTag(
      "UnknownCity",
      (error) => Console.log(`declared error: ${error._tag} ${error.city} (${error.status})`)
    )
  )

  // three calls in flight at once on the one connection: each completes when the server answers it
  const asked = [
    { city: "Oslo", delayMs: 600 },
    { city: "Lima", delayMs: 100 },
    { city: "Cairo", delayMs: 350 }
  ]
  yield* Console.log(`asked: ${asked.map(({ city, delayMs }) => `${city} (${delayMs} ms)`).join(", ")}`)
  const replies = yield* Effect.forEach(
    asked,
    (body) =>
      client.call(Forecast, body).pipe(
        Effect.tap((reply) => Console.log(`answered: ${reply.city} ${reply.celsius}°C`))
      ),
    { concurrency: "unbounded" }
  )
  // the results, in the order asked
  yield* Console.log(`in the order asked: ${replies.map((reply) => reply.city).join(", ")}`)
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
