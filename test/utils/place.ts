/**
 * A typed processor for the tests of typed requests (server and Effect
 * client): `place` takes a point, answers where it was placed, and declares
 * two tagged errors. `x: 9` fails with a `Rejection` (403) and `x: 7` dies:
 * neither is declared.
 */
import { Effect, Schema } from "effect"
import * as Processor from "../../src/Processor.ts"
import { Rejection } from "../../src/Rejection.ts"

/** A declared error: the point is off the board. */
export class OffBoard extends Schema.TaggedError<OffBoard>()("OffBoard", { x: Schema.Number, y: Schema.Number }) {}

/** A declared error with its own status (409). */
export class Occupied
  extends Schema.TaggedError<Occupied>()("Occupied", { by: Schema.String, status: Schema.Number })
{}

/** A point on the board. */
export const Point = Schema.Struct({ x: Schema.Number, y: Schema.Number })

/** The definition, shared by server and client. */
export const Place = Processor.make("place", {
  body: Schema.fromJsonString(Point),
  reply: Schema.fromJsonString(Schema.Struct({ placed: Point, at: Schema.Number })),
  error: Schema.Union([OffBoard, Occupied])
})

/** Its implementation. */
export const PlaceLive = Place.toLayer({
  onMessage: ({ body: { x, y } }) => {
    if (x < 0 || y < 0) return Effect.fail(new OffBoard({ x, y }))
    if (x === 1 && y === 1) return Effect.fail(new Occupied({ by: "bob", status: 409 }))
    if (x === 9) return Effect.fail(new Rejection({ status: 403, reason: "Forbidden", message: "not there" }))
    if (x === 7) return Effect.die(new Error("secret"))
    return Effect.succeed({ placed: { x, y }, at: x * 10 + y })
  }
})
