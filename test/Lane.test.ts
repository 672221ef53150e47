/**
 * The lane a connection's upstream calls run in (src/internal/server/lane.ts): one
 * at a time, in order, surviving a defect, and restarted after its fiber was
 * interrupted from outside.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import { Lane } from "../src/internal/server/lane.ts"
import { eventually } from "./utils/wait.ts"

/** A lane whose fibers are forked with the test's services, and the fibers it forked. */
const makeLane = Effect.gen(function*() {
  const context = yield* Effect.context<never>()
  const fibers: Array<Fiber.Fiber<void>> = []
  const lane = new Lane((effect) => {
    const fiber = Effect.runForkWith(context)(effect)
    fibers.push(fiber)
    return fiber
  })
  return { lane, fibers }
})

describe("Lane", () => {
  it.live("runs effects one at a time, in the order offered; a defect is logged and the lane goes on", () =>
    Effect.gen(function*() {
      const { lane } = yield* makeLane
      const log: Array<string> = []
      const gate = yield* Deferred.make<void>()
      lane.offer(
        Effect.sync(() => log.push("1 start")).pipe(
          Effect.andThen(Deferred.await(gate)),
          Effect.andThen(Effect.sync(() => log.push("1 end")))
        )
      )
      lane.offer(Effect.die(new Error("boom")))
      lane.offer(Effect.sync(() => void log.push("3")))
      assert.strictEqual(lane.size, 3)
      yield* eventually(() => log.length === 1)
      assert.deepStrictEqual(log, ["1 start"])
      yield* Deferred.succeed(gate, undefined)
      yield* eventually(() => lane.size === 0)
      assert.deepStrictEqual(log, ["1 start", "1 end", "3"])
    }))

  it.live("a lane whose fiber was interrupted from outside runs what is offered next", () =>
    Effect.gen(function*() {
      const { lane, fibers } = yield* makeLane
      const log: Array<string> = []
      lane.offer(Effect.never)
      lane.offer(Effect.sync(() => void log.push("queued")))
      assert.strictEqual(fibers.length, 1)
      yield* Fiber.interrupt(fibers[0]!)
      lane.offer(Effect.sync(() => void log.push("after")))
      yield* eventually(() => lane.size === 0)
      // a new fiber ran what was still queued, then the new effect
      assert.strictEqual(fibers.length, 2)
      assert.deepStrictEqual(log, ["queued", "after"])
    }))

  it.live("stop drops what is queued and interrupts what runs; later offers are ignored", () =>
    Effect.gen(function*() {
      const { lane, fibers } = yield* makeLane
      const log: Array<string> = []
      lane.offer(Effect.never)
      lane.offer(Effect.sync(() => void log.push("queued")))
      lane.stop()
      yield* Fiber.await(fibers[0]!)
      lane.offer(Effect.sync(() => void log.push("late")))
      assert.strictEqual(lane.size, 0)
      assert.strictEqual(fibers.length, 1)
      assert.deepStrictEqual(log, [])
    }))
})
