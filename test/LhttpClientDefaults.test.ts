/**
 * The Effect client's reconnect default (docs/clients.md, "Rules both clients
 * follow"): "500 ms doubling to 10 s, up to half of each wait drawn at random",
 * the browser SDK's too (internal/wire/backoff.ts). The client
 * waits on Effect's clock, so the waits are read off the TestClock: the client
 * dials a loopback port where nothing listens (every attempt is a real
 * WebSocket that fails), and each dial records the TestClock's time.
 */
import { NodeWS } from "@effect/platform-node"
import { afterEach, assert, describe, it, vi } from "@effect/vitest"
import { Effect, Layer, Schedule, Stream } from "effect"
import * as Socket from "effect/socket/Socket"
import { TestClock } from "effect/testing"
import * as LhttpClient from "../src/LhttpClient.ts"
import { freePort } from "./utils/process.ts"
import { until } from "./utils/wait.ts"

afterEach(() => {
  vi.restoreAllMocks()
})

/**
 * Connects with the default options to a port where nothing listens; returns the TestClock times of
 * the dials so far and the number of times the client went "reconnecting" (each after a failed dial,
 * right before its wait starts).
 */
const dialing = Effect.gen(function*() {
  const port = yield* Effect.promise(() => freePort())
  const clock = yield* TestClock.testClockWith(Effect.succeed)
  const real = yield* Effect.service(Socket.WebSocketConstructor).pipe(Effect.provide(NodeWS.layerWebSocketConstructor))
  const dials: Array<number> = []
  const constructor = Layer.succeed(Socket.WebSocketConstructor, (url, options) => {
    dials.push(clock.currentTimeMillisUnsafe())
    return real(url, options)
  })
  const client = yield* LhttpClient.connect(`ws://127.0.0.1:${port}/`).pipe(Effect.provide(constructor))
  let reconnecting = 0
  yield* Stream.runForEach(client.states, (state) =>
    Effect.sync(() => {
      if (state === "reconnecting") reconnecting++
    })).pipe(Effect.forkScoped)
  return { dials, reconnecting: () => reconnecting }
})

/**
 * Checks that the waits between dials are exactly `waits`: after the nth failed dial, nothing at
 * wait - 1 ms (the woken fiber would dial synchronously, on the TestClock), the next dial at wait.
 */
const expectWaits = (waits: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const { dials, reconnecting } = yield* dialing
    // the first dial, in the background, at once
    yield* TestClock.withLive(until(Effect.sync(() => dials.length === 1)))
    assert.deepStrictEqual(dials, [0])
    let now = 0
    for (const [index, wait] of waits.entries()) {
      // the dial failed (real I/O) and the wait began
      yield* TestClock.withLive(until(Effect.sync(() => reconnecting() === index + 1)))
      yield* TestClock.adjust(wait - 1)
      assert.strictEqual(dials.length, index + 1, `no dial before ${wait} ms (wait ${index + 1})`)
      yield* TestClock.adjust(1)
      now += wait
      assert.strictEqual(dials.length, index + 2, `a dial at ${wait} ms (wait ${index + 1})`)
      assert.strictEqual(dials.at(-1), now)
    }
  })

describe("LhttpClient: the reconnect default", () => {
  it.effect("500 ms, doubling, at most 10 s: 500, 1000, ... 8000, 10000, 10000 when the draw is 0", () =>
    Effect.gen(function*() {
      vi.spyOn(Math, "random").mockReturnValue(0)
      yield* expectWaits([500, 1000, 2000, 4000, 8000, 10_000, 10_000])
    }))

  it.effect("half of each wait is drawn at random: a draw of 0.96 takes 48% off each wait", () =>
    Effect.gen(function*() {
      vi.spyOn(Math, "random").mockReturnValue(0.96)
      yield* expectWaits([260, 520, 1040, 2080, 4160, 5200, 5200])
    }))
})

describe("LhttpClient: a reconnect Schedule of one's own", () => {
  it.effect("a finite Schedule is followed to its end: 3 dials 200 ms apart, then the client is closed", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(() => freePort())
      const clock = yield* TestClock.testClockWith(Effect.succeed)
      const real = yield* Effect.service(Socket.WebSocketConstructor).pipe(
        Effect.provide(NodeWS.layerWebSocketConstructor)
      )
      const dials: Array<number> = []
      const constructor = Layer.succeed(Socket.WebSocketConstructor, (url, options) => {
        dials.push(clock.currentTimeMillisUnsafe())
        return real(url, options)
      })
      const client = yield* LhttpClient.connect(`ws://127.0.0.1:${port}/`, {
        reconnect: Schedule.spaced("200 millis").pipe(Schedule.upTo({ times: 2 }))
      }).pipe(Effect.provide(constructor))
      const states: Array<LhttpClient.State> = []
      yield* Stream.runForEach(client.states, (state) => Effect.sync(() => states.push(state))).pipe(Effect.forkScoped)
      for (let attempt = 1; attempt <= 3; attempt++) {
        yield* TestClock.withLive(until(Effect.sync(() => dials.length === attempt)))
        if (attempt < 3) {
          // the dial failed (real I/O) and the 200 ms wait began
          yield* TestClock.withLive(
            until(Effect.sync(() => states.filter((s) => s === "reconnecting").length === attempt))
          )
          yield* TestClock.adjust(200)
        }
      }
      yield* TestClock.withLive(until(Effect.sync(() => states.at(-1) === "closed")))
      assert.deepStrictEqual(dials, [0, 200, 400])
      // nothing after the Schedule's end, however long one waits
      yield* TestClock.adjust(60_000)
      assert.strictEqual(dials.length, 3)
    }))
})
