import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Result } from "effect"
import * as Bus from "../src/Bus.ts"
import * as Channel from "../src/Channel.ts"
import * as Hub from "../src/Hub.ts"
import type { Rejection } from "../src/Rejection.ts"

const ids = (...channels: Array<string>): ReadonlyArray<Channel.ChannelId> =>
  Result.getOrThrow(Channel.validateAll(channels))

const recorder = (name: string, delivered: Array<string>): Hub.Subscriber => ({
  channels: new Set(),
  deliver: (frame) => delivered.push(`${name}:${frame.text}`)
})

// the memory bus, counting its live subscriptions and refusing the channels in `refuse`
const countingBus = Effect.gen(function*() {
  const bus = yield* Bus.makeMemory()
  const state = { subscriptions: 0, refuse: new Set<string>() }
  const service = Bus.Bus.of({
    ...bus,
    subscribe: (channel, onMessage) =>
      state.refuse.has(channel)
        ? Effect.fail(new Bus.BusError({ reason: "SubscribeFailed", message: `no ${channel}` }))
        : Effect.acquireRelease(Effect.sync(() => state.subscriptions++), () =>
          Effect.sync(() => {
            state.subscriptions--
          })).pipe(Effect.andThen(bus.subscribe(channel, onMessage)))
  })
  return { service, state }
})

describe("Hub", () => {
  it.effect("holds one bus subscription per channel, whatever the local subscribers", () =>
    Effect.gen(function*() {
      const { service, state } = yield* countingBus
      const hub = yield* Hub.make().pipe(Effect.provideService(Bus.Bus, service))
      const delivered: Array<string> = []
      const one = recorder("one", delivered)
      const two = recorder("two", delivered)
      yield* hub.subscribe(one, ids("c"))
      yield* hub.subscribe(two, ids("c"))
      assert.strictEqual(state.subscriptions, 1)
      yield* hub.publishText(ids("c"), "m")
      assert.deepStrictEqual(delivered.sort(), ["one:m", "two:m"])
      yield* hub.unsubscribe(one, ["c"])
      assert.strictEqual(state.subscriptions, 1)
      yield* hub.unsubscribeAll(two)
      assert.strictEqual(state.subscriptions, 0)
      assert.strictEqual(hub.channelCount(), 0)
    }))

  it.effect("fans one frame out to every subscriber: the same rendered text and the same bytes", () =>
    Effect.gen(function*() {
      const bus = yield* Bus.makeMemory()
      const hub = yield* Hub.make().pipe(Effect.provideService(Bus.Bus, bus))
      const frames: Array<{ text: string; bytes: Uint8Array }> = []
      const subscriber = (): Hub.Subscriber => ({ channels: new Set(), deliver: (frame) => frames.push(frame) })
      for (let i = 0; i < 3; i++) yield* hub.subscribe(subscriber(), ids("fan"))
      yield* hub.publish("fan", "news", { a: "1" }, "body é")
      assert.strictEqual(frames.length, 3)
      assert.strictEqual(frames[0]!.text, "LHTTP/1.0 news\r\na:1\r\n\r\nbody é")
      assert.strictEqual(frames[1], frames[0])
      assert.strictEqual(frames[2]!.bytes, frames[0]!.bytes)
      assert.strictEqual(new TextDecoder().decode(frames[0]!.bytes), frames[0]!.text)
    }))

  it.effect("a subscriber that throws is logged and the others still get the frame", () =>
    Effect.gen(function*() {
      const bus = yield* Bus.makeMemory()
      const hub = yield* Hub.make().pipe(Effect.provideService(Bus.Bus, bus))
      const got: Array<string> = []
      const good = (name: string): Hub.Subscriber => ({ channels: new Set(), deliver: (frame) => got.push(`${name}:${frame.text}`) })
      const broken: Hub.Subscriber = {
        channels: new Set(),
        deliver: () => {
          throw new Error("a listener's bug")
        }
      }
      yield* hub.subscribe(good("first"), ids("t"))
      yield* hub.subscribe(broken, ids("t"))
      yield* hub.subscribe(good("last"), ids("t"))
      yield* hub.publishText(ids("t"), "one")
      yield* hub.publishText(ids("t"), "two")
      assert.deepStrictEqual(got, ["first:one", "last:one", "first:two", "last:two"])
    }))

  it.effect("a subscription of several channels is all or none when the bus refuses one", () =>
    Effect.gen(function*() {
      const { service, state } = yield* countingBus
      const hub = yield* Hub.make().pipe(Effect.provideService(Bus.Bus, service))
      state.refuse.add("b")
      const delivered: Array<string> = []
      const first = recorder("first", delivered)
      const exit = yield* Effect.exit(hub.subscribe(first, ids("a", "b", "c")))
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? (exit.cause.reasons[0] as { error: Rejection }).error : undefined
      assert.strictEqual(error?.reason, "BusUnavailable")
      assert.strictEqual(error?.status, 503)
      // nothing of that call is held: not by the subscriber, not by the hub, not on the bus
      assert.deepStrictEqual(Array.from(first.channels), [])
      assert.strictEqual(hub.channelCount(), 0)
      assert.strictEqual(state.subscriptions, 0)
      // a later subscriber to the channels that did not fail gets a bus subscription and deliveries
      const later = recorder("later", delivered)
      yield* hub.subscribe(later, ids("a", "c"))
      assert.strictEqual(state.subscriptions, 2)
      yield* hub.publishText(ids("a", "c"), "x")
      assert.deepStrictEqual(delivered, ["later:x", "later:x"])
      // once the bus takes "b", it works too
      state.refuse.clear()
      yield* hub.subscribe(first, ids("b"))
      yield* hub.publishText(ids("b"), "y")
      assert.deepStrictEqual(delivered, ["later:x", "later:x", "first:y"])
    }))

  it.live("when one channel of a call fails to open, the others it was opening are settled: a joiner does not hang", () =>
    Effect.gen(function*() {
      const bus = yield* Bus.makeMemory()
      // a bus whose subscriptions take a moment; "a" fails
      const slow = Bus.Bus.of({
        ...bus,
        subscribe: (channel, onMessage) =>
          Effect.sleep("20 millis").pipe(
            Effect.andThen(
              channel === "a"
                ? Effect.fail(new Bus.BusError({ reason: "SubscribeFailed", message: "no a" }))
                : bus.subscribe(channel, onMessage)
            )
          )
      })
      const hub = yield* Hub.make().pipe(Effect.provideService(Bus.Bus, slow))
      const delivered: Array<string> = []
      const first = recorder("first", delivered)
      const joiner = recorder("joiner", delivered)
      const opening = yield* Effect.forkChild(Effect.exit(hub.subscribe(first, ids("a", "b"))))
      yield* Effect.yieldNow
      // joins "b" while the first call is still opening it
      const joined = yield* Effect.forkChild(hub.subscribe(joiner, ids("b")))
      assert.isTrue(Exit.isFailure(yield* Fiber.join(opening)))
      yield* Fiber.join(joined).pipe(
        Effect.timeoutOrElse({ duration: "2 seconds", orElse: () => Effect.die(new Error("the joiner hung")) })
      )
      yield* hub.publishText(ids("b"), "x")
      assert.deepStrictEqual(delivered, ["joiner:x"])
      assert.deepStrictEqual(Array.from(first.channels), [])
    }))

  it.effect("subscriptions per subscriber are bounded: 429, none of the list applied", () =>
    Effect.gen(function*() {
      const bus = yield* Bus.makeMemory()
      const hub = yield* Hub.make({ maxSubscriptions: 2 }).pipe(Effect.provideService(Bus.Bus, bus))
      const subscriber = recorder("s", [])
      yield* hub.subscribe(subscriber, ids("a"))
      const refused = yield* Effect.flip(hub.subscribe(subscriber, ids("b", "c")))
      assert.strictEqual(refused.status, 429)
      assert.deepStrictEqual(Array.from(subscriber.channels), ["a"])
      yield* hub.subscribe(subscriber, ids("a", "b"))
      assert.deepStrictEqual(Array.from(subscriber.channels), ["a", "b"])
    }))

  it.effect("the server-side publish validates channels and the frame", () =>
    Effect.gen(function*() {
      const bus = yield* Bus.makeMemory()
      const hub = yield* Hub.make().pipe(Effect.provideService(Bus.Bus, bus))
      const wildcard = yield* Effect.flip(hub.publish("a.*", "c"))
      assert.strictEqual(wildcard.reason, "InvalidChannel")
      const badCommand = yield* Effect.flip(hub.publish(["ok"], "bad\r\ncommand"))
      assert.strictEqual(badCommand._tag, "ProtocolError")
    }))
})
