import { assert, describe, it } from "@effect/vitest"
import { connect as natsConnect } from "@nats-io/transport-node"
import { Effect, Exit, Result, Scope } from "effect"
import * as Bus from "../src/Bus.ts"
import * as Channel from "../src/Channel.ts"
import * as NatsBus from "../src/NatsBus.ts"
import { natsServer, natsServerLater } from "./utils/nats.ts"
import { eventually, until } from "./utils/wait.ts"

/** A channel id, validated as the Hub does before any bus sees it. */
const id = (channel: string): Channel.ChannelId => Result.getOrThrow(Channel.validate(channel))

/** Waits until the bus says it is ready. */
const ready = (bus: Bus.Bus["Service"]) => until(bus.isReady, "10 seconds")

const backends: ReadonlyArray<readonly [string, Effect.Effect<Bus.Bus["Service"], unknown, Scope.Scope>]> = [
  ["memory", Bus.makeMemory()],
  [
    "nats",
    Effect.gen(function*() {
      const nats = yield* natsServer
      const bus = yield* NatsBus.make({ servers: nats.url })
      yield* ready(bus)
      return bus
    })
  ]
]

// The same suite for every bus.
for (const [name, makeBus] of backends) {
  describe(`Bus (${name})`, () => {
    it.live("delivers every payload verbatim and in order to each subscription of the channel", () =>
      Effect.gen(function*() {
        const bus = yield* makeBus
        const one: Array<string> = []
        const two: Array<string> = []
        yield* bus.subscribe(id("room"), (payload) => one.push(payload))
        yield* bus.subscribe(id("room"), (payload) => two.push(payload))
        const payloads = [
          "LHTTP/1.0 chat\r\npublish:room\r\n\r\nhé\r\n\r\n✓",
          ...Array.from({ length: 50 }, (_, i) => `m${i}`)
        ]
        for (const payload of payloads) yield* bus.publish(id("room"), payload)
        yield* eventually(() => one.length === payloads.length && two.length === payloads.length)
        assert.deepStrictEqual(one, payloads)
        assert.deepStrictEqual(two, payloads)
      }))

    it.live("keeps channels apart", () =>
      Effect.gen(function*() {
        const bus = yield* makeBus
        const got: Array<string> = []
        yield* bus.subscribe(id("a.b"), (payload) => got.push(`a.b:${payload}`))
        yield* bus.subscribe(id("a"), (payload) => got.push(`a:${payload}`))
        yield* bus.publish(id("a.c"), "other")
        yield* bus.publish(id("a"), "1")
        yield* bus.publish(id("a.b"), "2")
        // one publisher, one connection: what was published before the marker arrives before it
        yield* bus.publish(id("a"), "marker")
        yield* eventually(() => got.includes("a:marker"))
        assert.deepStrictEqual(got.sort(), ["a.b:2", "a:1", "a:marker"])
      }))

    it.live("stops delivering when the subscription's scope closes", () =>
      Effect.gen(function*() {
        const bus = yield* makeBus
        const kept: Array<string> = []
        const gone: Array<string> = []
        yield* bus.subscribe(id("s"), (payload) => kept.push(payload))
        const scope = yield* Scope.make()
        yield* bus.subscribe(id("s"), (payload) => gone.push(payload)).pipe(Scope.provide(scope))
        yield* bus.publish(id("s"), "before")
        yield* eventually(() => gone.length === 1 && kept.length === 1)
        yield* Scope.close(scope, Exit.void)
        yield* bus.publish(id("s"), "after")
        // "after" reaches the kept subscription, so it was delivered: not to the closed one
        yield* eventually(() => kept.length === 2)
        assert.deepStrictEqual(gone, ["before"])
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
      yield* bus.subscribe(id("news"), (payload) => prefixed.push(payload))
      yield* plain.subscribe(id("news"), (payload) => original.push(payload))
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

  it.live("refuses a bad prefix (channels arrive validated: the Bus takes only ChannelIds)", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      for (const subjectPrefix of ["lhttp", ".", "a..", ">.", "*.", "$SYS.", "_INBOX.", "a b."]) {
        const bad = yield* NatsBus.make({ servers: nats.url, subjectPrefix }).pipe(Effect.flip)
        assert.strictEqual(bad._tag, "BusError")
      }
    }))

  it.live("unreachable at start: not ready, publishes fail, then ready and delivering once NATS appears", () =>
    Effect.gen(function*() {
      const nats = yield* natsServerLater
      const bus = yield* NatsBus.make({ servers: nats.url, connectRetry: "100 millis" })
      const got: Array<string> = []
      yield* bus.subscribe(id("later"), (payload) => got.push(payload))
      assert.isFalse(yield* bus.isReady)
      const refused = yield* bus.publish(id("later"), "too early").pipe(Effect.flip)
      assert.strictEqual(refused.reason, "Unavailable")
      yield* Effect.promise(() => nats.restart())
      yield* ready(bus)
      yield* bus.publish(id("later"), "now")
      yield* eventually(() => got.length === 1)
      assert.deepStrictEqual(got, ["now"])
    }))
})
