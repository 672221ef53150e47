/**
 * A connection's life in the core, whatever its transport (on the in-memory
 * transport): its close sequence, its close codes, and what a failing hook or
 * a wrong error frame of user code cannot break.
 */
import { assert, describe, it } from "@effect/vitest"
import { Data, Deferred, Effect, Fiber, Layer } from "effect"
import { TestClock } from "effect/testing"
import * as Connection from "../src/Connection.ts"
import * as ErrorFrame from "../src/ErrorFrame.ts"
import * as Processor from "../src/Processor.ts"
import { frame } from "./utils/lhttp.ts"
import { pending, startMemoryServer } from "./utils/memory.ts"
import { eventually } from "./utils/wait.ts"

const Player = Connection.key<{ readonly name: string }>("player")

describe("Connection: the close sequence", () => {
  it.live("an onClose hook that throws does not stop the others, the unsubscription or the end", () =>
    Effect.gen(function*() {
      const closed: Array<string> = []
      const Careless = Processor.make("careless")
      // onClose reads data an earlier hook never set: a TypeError, thrown, not failed
      const CarelessLive = Careless.toLayer({
        onClose: (connection) => Effect.succeed(connection.get(Player)!.name).pipe(Effect.asVoid)
      })
      const Careful = Processor.make("careful")
      const CarefulLive = Careful.toLayer({ onClose: (connection) => Effect.sync(() => closed.push(connection.id)) })
      const Throwing = Processor.make("throwing")
      const ThrowingLive = Throwing.toLayer({
        onClose: () => {
          throw new Error("thrown before any Effect")
        }
      })
      const { connect, server, hub } = yield* startMemoryServer(
        { processors: [Throwing, Careless, Careful] },
        Layer.mergeAll(ThrowingLive, CarelessLive, CarefulLive)
      )
      const client = yield* connect()
      yield* client.send(frame("c", { subscribe: "room" }))
      yield* client.nothing()
      assert.strictEqual(hub.channelCount(), 1)
      yield* client.transport.close
      yield* eventually(() => server.connectionCount() === 0)
      assert.strictEqual(closed.length, 1)
      assert.strictEqual(hub.channelCount(), 0)
    }))
})

describe("Connection: a drain past shutdownTimeout", () => {
  it.effect("a connection still busy is closed with 1001 and ended: its onClose runs, its subscriptions go (TestClock)", () =>
    Effect.gen(function*() {
      const entered = Deferred.makeUnsafe<void>()
      const ended: Array<string> = []
      const Hang = Processor.make("hang")
      const HangLive = Hang.toLayer({
        onMessage: () => Deferred.succeed(entered, undefined).pipe(Effect.andThen(Effect.never)),
        onClose: (connection) => Effect.sync(() => ended.push(connection.id))
      })
      const { connect, server, hub } = yield* startMemoryServer(
        { processors: [Hang], shutdownTimeout: "2 seconds" },
        HangLive
      )
      const stuck = yield* connect()
      yield* stuck.send(frame("c", { subscribe: "room" }))
      yield* stuck.send(frame("hang"))
      yield* Deferred.await(entered)
      assert.strictEqual(hub.channelCount(), 1)
      const draining = yield* Effect.forkChild(server.drain)
      yield* TestClock.adjust("1999 millis")
      assert.isUndefined(draining.pollUnsafe())
      assert.deepStrictEqual(ended, [])
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(draining)
      assert.deepStrictEqual(yield* stuck.closed, { code: 1001, reason: "server shutting down" })
      assert.strictEqual(ended.length, 1)
      assert.strictEqual(server.connectionCount(), 0)
      assert.strictEqual(hub.channelCount(), 0)
    }))
})

describe("Connection: close codes and reasons from code", () => {
  it.live("connection.close closes after what is queued is sent", () =>
    Effect.gen(function*() {
      const Last = Processor.make("last")
      const LastLive = Last.toLayer({
        onMessage: (exchange) =>
          exchange.send("one").pipe(
            Effect.andThen(exchange.connection.send({ command: "note", headers: new Map(), body: "two" })),
            Effect.andThen(exchange.connection.close(4002, "done"))
          )
      })
      const { connect } = yield* startMemoryServer({ processors: [Last] }, LastLive)
      const client = yield* connect()
      yield* client.send(frame("last", { id: "l" }))
      const closed = yield* client.closed
      // both frames were written before the close
      assert.deepStrictEqual(yield* pending(client), ["LHTTP/1.0 last\r\nid:l\r\n\r\none", "LHTTP/1.0 note\r\n\r\ntwo"])
      assert.deepStrictEqual(closed, { code: 4002, reason: "done" })
    }))

  it.live("a code a peer may not receive becomes 1000; a long reason is cut to 123 UTF-8 bytes", () =>
    Effect.gen(function*() {
      const Kick = Processor.make("kick")
      const KickLive = Kick.toLayer({
        onMessage: (exchange) => exchange.connection.close(Number(exchange.header("code")), exchange.text)
      })
      const { connect } = yield* startMemoryServer({ processors: [Kick] }, KickLive)
      const wrong = yield* connect()
      yield* wrong.send(frame("kick", { code: "5000" }, "bye"))
      assert.deepStrictEqual(yield* wrong.closed, { code: 1000, reason: "bye" })
      const reserved = yield* connect()
      yield* reserved.send(frame("kick", { code: "1006" }, "abnormal"))
      assert.strictEqual((yield* reserved.closed).code, 1000)
      const long = yield* connect()
      yield* long.send(frame("kick", { code: "4003" }, "é".repeat(100)))
      const info = yield* long.closed
      assert.strictEqual(info.code, 4003)
      assert.strictEqual(info.reason, "é".repeat(61))
    }))
})

// an app error whose frame would not read back: a header value with a line break
class Injecting extends Data.TaggedError("Injecting") implements ErrorFrame.Respondable {
  get [ErrorFrame.TypeId](): ErrorFrame.TypeId {
    return ErrorFrame.TypeId
  }
  toFrame(id?: string) {
    const frame = ErrorFrame.make({ status: 400, reason: "Bad", message: "m", id })
    return { ...frame, headers: new Map([...frame.headers, ["x", "1\r\nLHTTP/1.0 injected"]]) }
  }
}

describe("Connection: what user code cannot break", () => {
  it.live("an interrupted handler answers 500 and the connection goes on", () =>
    Effect.gen(function*() {
      const Waits = Processor.make("waits")
      const WaitsLive = Waits.toLayer({
        onMessage: () =>
          Effect.gen(function*() {
            const fiber = yield* Effect.forkChild(Effect.never)
            yield* Fiber.interrupt(fiber)
            yield* Fiber.join(fiber)
          })
      })
      const { connect } = yield* startMemoryServer({ processors: [Waits] }, WaitsLive)
      const client = yield* connect()
      yield* client.send(frame("waits", { id: "w" }))
      assert.match(yield* client.next(), /^LHTTP\/1\.0 error\r\nstatus:500\r\nreason:InternalError\r\nid:w\r\n/)
      yield* client.send(frame("c", { subscribe: "s", publish: "s" }, "still here"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 c\r\nsubscribe:s\r\npublish:s\r\n\r\nstill here")
    }))

  it.live("an error frame of user code that would not read back is not sent: 500 instead", () =>
    Effect.gen(function*() {
      const Bad = Processor.make("bad")
      const BadLive = Bad.toLayer({ onMessage: () => Effect.fail(new Injecting()) })
      const { connect } = yield* startMemoryServer({ processors: [Bad] }, BadLive)
      const client = yield* connect()
      yield* client.send(frame("bad", { id: "b" }))
      assert.match(yield* client.next(), /^LHTTP\/1\.0 error\r\nstatus:500\r\nreason:InternalError\r\nid:b\r\n/)
      yield* client.nothing()
    }))
})
