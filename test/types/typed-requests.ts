/**
 * Type test (checked by `tsc`, never run): a typed request's handler —
 * docs/requests-and-sessions.md "Typed requests": "A handler that returns
 * another type, or fails with an error that is neither declared nor
 * `Respondable`, does not compile", and docs/server.md "Typed requests".
 * Each `@ts-expect-error` fails the check when its line compiles; each
 * refused case has a twin that compiles.
 */
import { Effect, Schema } from "effect"
import * as Processor from "../../src/Processor.ts"
import * as Rejection from "../../src/Rejection.ts"

class OffBoard extends Schema.TaggedError<OffBoard>()("OffBoard", { x: Schema.Number, y: Schema.Number }) {}
class Occupied extends Schema.TaggedError<Occupied>()("Occupied", { by: Schema.String, status: Schema.Number }) {}
// declared by no processor, and not Respondable
class Elsewhere extends Schema.TaggedError<Elsewhere>()("Elsewhere", { where: Schema.String }) {}

const Point = Schema.Struct({ x: Schema.Number, y: Schema.Number })

// the definition of docs/requests-and-sessions.md
const Place = Processor.make("place", {
  body: Schema.fromJsonString(Point),
  reply: Schema.fromJsonString(Schema.Struct({ placed: Point, at: Schema.Number })),
  error: Schema.Union([OffBoard, Occupied])
})

/** What compiles: the declared reply, a declared error, a Respondable error not declared. */
export const compiles = [
  Place.toLayer({ onMessage: ({ body: { x, y } }) => Effect.succeed({ placed: { x, y }, at: x * 10 + y }) }),
  Place.toLayer({ onMessage: ({ body: { x, y } }) => Effect.fail(new OffBoard({ x, y })) }),
  Place.toLayer({ onMessage: () => Effect.fail(new Occupied({ by: "bob", status: 409 })) }),
  Place.toLayer({ onMessage: () => Effect.fail(Rejection.forbidden("not your turn")) })
]

/** What does not. */
export const refused = [
  // @ts-expect-error a reply of another type (at is a number)
  Place.toLayer({ onMessage: ({ body: { x, y } }) => Effect.succeed({ placed: { x, y }, at: "23" }) }),
  // @ts-expect-error a reply that misses a field
  Place.toLayer({ onMessage: ({ body: { x, y } }) => Effect.succeed({ placed: { x, y } }) }),
  // @ts-expect-error an error neither declared nor Respondable
  Place.toLayer({ onMessage: () => Effect.fail(new Elsewhere({ where: "there" })) })
]

// docs/server.md's definition: one declared error, a reply
const Put = Processor.make("put", {
  body: Schema.fromJsonString(Schema.Struct({ x: Schema.Number })),
  reply: Schema.fromJsonString(Schema.Struct({ placed: Schema.Number })),
  error: OffBoard
})

/** docs/server.md: "a handler that returns the wrong type or fails with an undeclared error does not compile". */
export const serverDoc = [
  Put.toLayer({
    onMessage: ({ body }) =>
      body.x < 0 ? Effect.fail(new OffBoard({ x: body.x, y: 0 })) : Effect.succeed({ placed: body.x })
  }),
  // @ts-expect-error the wrong type
  Put.toLayer({ onMessage: ({ body }) => Effect.succeed({ placed: String(body.x) }) }),
  // @ts-expect-error an error declared by another processor (Place's Occupied), not this one's
  Put.toLayer({ onMessage: () => Effect.fail(new Occupied({ by: "bob", status: 409 })) })
]
