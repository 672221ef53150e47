/**
 * Type test (checked by `tsc`, never run): the server requires the Layer of
 * each processor and filter it serves — docs/server.md "forgetting an
 * implementation is a type error". `NodeLhttpServer.launch` takes a Layer
 * with no requirements; with one implementation missing, the launch does not
 * compile, and the requirement left is exactly that implementation.
 */
import { Effect, Layer, Schema } from "effect"
import { expectTypeOf } from "vitest"
import * as Bus from "../../src/Bus.ts"
import * as Filter from "../../src/Filter.ts"
import * as Hub from "../../src/Hub.ts"
import * as LhttpServer from "../../src/LhttpServer.ts"
import * as NodeLhttpServer from "../../src/NodeLhttpServer.ts"
import * as Processor from "../../src/Processor.ts"

const Echo = Processor.make("echo")
const EchoLive = Echo.toLayer({ onMessage: (exchange) => exchange.send(exchange.text) })
const Move = Processor.make("move")
const MoveLive = Move.toLayer({ onMessage: () => Effect.void })
// a typed request: body, reply and error declared
class OffBoard extends Schema.TaggedError<OffBoard>()("OffBoard", { x: Schema.Number }) {}
const Place = Processor.make("place", {
  body: Schema.fromJsonString(Schema.Struct({ x: Schema.Number })),
  reply: Schema.fromJsonString(Schema.Struct({ placed: Schema.Number })),
  error: OffBoard
})
const PlaceLive = Place.toLayer({ onMessage: ({ body }) => Effect.succeed({ placed: body.x }) })
const Auth = Filter.make("auth")
const AuthLive = Auth.toLayer({ before: () => Effect.void })

const server = NodeLhttpServer.layer({ port: 8081, processors: [Echo, Move, Place], filters: [Auth] })

// docs/server.md's Main, complete
const Main = server.pipe(
  Layer.provide([EchoLive, MoveLive, PlaceLive, AuthLive]),
  Layer.provideMerge(Hub.layer()),
  Layer.provide(Bus.layerMemory())
)
// without a processor's Layer
const NoMove = server.pipe(
  Layer.provide([EchoLive, PlaceLive, AuthLive]),
  Layer.provideMerge(Hub.layer()),
  Layer.provide(Bus.layerMemory())
)
// without a typed processor's Layer
const NoPlace = server.pipe(
  Layer.provide([EchoLive, MoveLive, AuthLive]),
  Layer.provideMerge(Hub.layer()),
  Layer.provide(Bus.layerMemory())
)
// without a filter's Layer
const NoAuth = server.pipe(
  Layer.provide([EchoLive, MoveLive, PlaceLive]),
  Layer.provideMerge(Hub.layer()),
  Layer.provide(Bus.layerMemory())
)

expectTypeOf<Layer.Services<typeof Main>>().toEqualTypeOf<never>()
expectTypeOf<Layer.Services<typeof NoMove>>().toEqualTypeOf<Processor.Service<"move">>()
expectTypeOf<Layer.Services<typeof NoPlace>>().toEqualTypeOf<Processor.Service<"place">>()
expectTypeOf<Layer.Services<typeof NoAuth>>().toEqualTypeOf<Filter.Service<"auth">>()

/** Launching: the complete Layer compiles, the others do not (a function, never called). */
export const launch = () => {
  NodeLhttpServer.launch(Main)
  // @ts-expect-error a processor's implementation is missing
  NodeLhttpServer.launch(NoMove)
  // @ts-expect-error a typed processor's implementation is missing
  NodeLhttpServer.launch(NoPlace)
  // @ts-expect-error a filter's implementation is missing
  NodeLhttpServer.launch(NoAuth)
}

/** The core's Layer requires them the same way. */
const _core = LhttpServer.layer({ processors: [Echo, Place], filters: [Auth] })
expectTypeOf<Layer.Services<typeof _core>>().toEqualTypeOf<
  Hub.Hub | Bus.Bus | Processor.Service<"echo"> | Processor.Service<"place"> | Filter.Service<"auth">
>()
