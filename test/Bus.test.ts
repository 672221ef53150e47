import { assert, describe, it } from "@effect/vitest"
import { connect as natsConnect } from "@nats-io/transport-node"
import { Effect, Exit, Scope } from "effect"
import * as Bus from "../src/Bus.ts"
import * as NatsBus from "../src/NatsBus.ts"
import { natsServer, natsServerLater } from "./utils/nats.ts"
import { eventually, until } from "./utils/wait.ts"

/** Waits until the bus says it is ready. */
const ready = (bus: Bus.Bus["Service"]) => until(bus.isReady, "10 seconds")

const backends: ReadonlyArray<readonly [string, Effect.Effect<Bus.Bus["Service"], unknown, Scope.Scope>]> = [
  ["memory", Bus.makeMemory()],
  ["nats", Effect.gen(function*() {
    const nats = yield* natsServer
    const bus = yield* NatsBus.make({ servers: nats.url })
    yield* ready(bus)
    return bus
  })]
]

// The same suite for every bus.
for (const [name, makeBus] of backends) {
  describe(`Bus (${name})`, () => {
    it.live("delivers every payload verbatim and in order to each subscription of the channel", () =>
      Effect.gen(function*() {
        const bus = yield* makeBus
        const one: Array<string> = []
        const two: Array<string> = []
        yield* bus.subscribe("room", (payload) => one.push(payload))
        yield* bus.subscribe("room", (payload) => two.push(payload))
        const payloads = ["LHTTP/1.0 chat\r\npublish:room\r\n\r\nhé\r\n\r\n✓", ...Array.from({ length: 50 }, (_, i) => `m${i}`)]
        for (const payload of payloads) yield* bus.publish("room", payload)
        yield* eventually(() => one.length === payloads.length && two.length === payloads.length)
        assert.deepStrictEqual(one, payloads)
        assert.deepStrictEqual(two, payloads)
      }))

    it.live("keeps channels apart", () =>
      Effect.gen(function*() {
        const bus = yield* makeBus
        const got: Array<string> = []
        yield* bus.subscribe("a.b", (payload) => got.push(`a.b:${payload}`))
        yield* bus.subscribe("a", (payload) => got.push(`a:${payload}`))
        yield* bus.publish("a.c", "other")
        yield* bus.publish("a", "1")
        yield* bus.publish("a.b", "2")
        yield* eventually(() => got.length === 2)
        yield* Effect.sleep("50 millis")
        assert.deepStrictEqual(got.sort(), ["a.b:2", "a:1"])
      }))

    it.live("stops delivering when the subscription's scope closes", () =>
      Effect.gen(function*() {
        const bus = yield* makeBus
        const kept: Array<string> = []
        const gone: Array<string> = []
        yield* bus.subscribe("s", (payload) => kept.push(payload))
        const scope = yield* Scope.make()
        yield* bus.subscribe("s", (payload) => gone.push(payload)).pipe(Scope.provide(scope))
        yield* bus.publish("s", "before")
        yield* eventually(() => gone.length === 1 && kept.length === 1)
        yield* Scope.close(scope, Exit.void)
        yield* bus.publish("s", "after")
        yield* eventually(() => kept.length === 2)
        yield* Effect.sleep("50 millis")
        assert.deepStrictEqual(gone, ["before"])
      }))

    it.live("is ready", () =>
      Effect.gen(function*() {
        const bus = yield* makeBus
        assert.isTrue(yield* bus.isReady)
      }))
  })
}

describe("NatsBus", () => {
  it.live("a subject is <prefix><channel>: raw NATS publishes reach subscribers verbatim", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      const bus = yield* NatsBus.make({ servers: nats.url })
      const plain = yield* NatsBus.make({ servers: nats.url, subjectPrefix: "" })
      yield* ready(bus)
      yield* ready(plain)
      const prefixed: Array<string> = []
      const original: Array<string> = []
      yield* bus.subscribe("news", (payload) => prefixed.push(payload))
      yield* plain.subscribe("news", (payload) => original.push(payload))
      const nc = yield* Effect.acquireRelease(
        Effect.promise(() => natsConnect({ servers: nats.url })),
        (nc) => Effect.promise(() => nc.close())
      )
      yield* Effect.promise(() => nc.flush())
      nc.publish("lhttp.news", "LHTTP/1.0 a\r\n\r\nprefixed")
      nc.publish("news", "LHTTP/1.0 a\r\n\r\noriginal")
      yield* eventually(() => prefixed.length === 1 && original.length === 1)
      assert.deepStrictEqual([prefixed, original], [["LHTTP/1.0 a\r\n\r\nprefixed"], ["LHTTP/1.0 a\r\n\r\noriginal"]])
    }))

  it.live("refuses invalid channels before building a subject, and a bad prefix", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      const bus = yield* NatsBus.make({ servers: nats.url })
      yield* ready(bus)
      for (const channel of [">", "a.*", "a..b", "", "a\tb", "$SYS.x", "_INBOX.x"]) {
        assert.strictEqual((yield* bus.publish(channel, "x").pipe(Effect.flip))._tag, "BusError")
        assert.strictEqual((yield* bus.subscribe(channel, () => {}).pipe(Effect.flip))._tag, "BusError")
      }
      const bad = yield* NatsBus.make({ servers: nats.url, subjectPrefix: "lhttp" }).pipe(Effect.flip)
      assert.strictEqual(bad._tag, "BusError")
    }))

  it.live("unreachable at start: not ready, publishes fail, then ready and delivering once NATS appears", () =>
    Effect.gen(function*() {
      const nats = yield* natsServerLater
      const bus = yield* NatsBus.make({ servers: nats.url, connectRetry: "100 millis" })
      const got: Array<string> = []
      yield* bus.subscribe("later", (payload) => got.push(payload))
      assert.isFalse(yield* bus.isReady)
      const refused = yield* bus.publish("later", "too early").pipe(Effect.flip)
      assert.strictEqual(refused.reason, "Unavailable")
      yield* Effect.promise(() => nats.restart())
      yield* ready(bus)
      yield* bus.publish("later", "now")
      yield* eventually(() => got.length === 1)
      assert.deepStrictEqual(got, ["now"])
    }))
})
