import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Result, Stream } from "effect"
import * as Bus from "../src/Bus.ts"
import * as Channel from "../src/Channel.ts"
import * as Filter from "../src/Filter.ts"
import * as History from "../src/History.ts"
import * as Hub from "../src/Hub.ts"
import type * as LhttpServer from "../src/LhttpServer.ts"
import type * as Message from "../src/Message.ts"
import * as NatsBus from "../src/NatsBus.ts"
import type { Rejection } from "../src/Rejection.ts"
import type * as Transport from "../src/Transport.ts"
import { frame } from "./utils/lhttp.ts"
import { startMemoryServer } from "./utils/memory.ts"
import { natsServer } from "./utils/nats.ts"
import { eventually, until } from "./utils/wait.ts"

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
      yield* hub.unsubscribe(one, ids("c"))
      assert.strictEqual(state.subscriptions, 1)
      yield* hub.unsubscribeAll(two)
      assert.strictEqual(state.subscriptions, 0)
      assert.strictEqual(hub.channelCount(), 0)
    }))

  it.effect("a history channel's message is rendered at most twice: one frame for the plain subscribers, one for the positioned", () =>
    Effect.gen(function*() {
      const bus = yield* Bus.makeMemory()
      const history = History.makeMemory({ policies: [{ prefix: "h-", size: 10, ttl: Duration.minutes(1) }] })
      const hub = yield* Hub.make().pipe(
        Effect.provideService(Bus.Bus, bus),
        Effect.provideService(History.History, history)
      )
      const frames = new Map<string, Array<Transport.Outbound>>()
      const subscriber = (name: string): Hub.Subscriber => ({
        channels: new Set(),
        deliver: (frame) => void frames.set(name, [...(frames.get(name) ?? []), frame])
      })
      const plain = ["p1", "p2", "p3"].map(subscriber)
      const positioned = ["q1", "q2", "q3"].map(subscriber)
      for (const one of plain) yield* hub.subscribe(one, ids("h-room"))
      for (const one of positioned) yield* hub.subscribe(one, ids("h-room"), { since: "now" })
      yield* hub.publishText(ids("h-room"), "LHTTP/1.0 chat\r\npublish:h-room\r\n\r\nhi")
      const last = (name: string) => frames.get(name)!.at(-1)!
      assert.strictEqual(last("p1").text, "LHTTP/1.0 chat\r\npublish:h-room\r\n\r\nhi")
      assert.match(
        last("q1").text,
        /^LHTTP\/1\.0 chat\r\nchannel:h-room\r\noffset:1\r\nepoch:[\w-]+\r\npublish:h-room\r\n\r\nhi$/
      )
      for (const name of ["p2", "p3"]) assert.strictEqual(last(name), last("p1"))
      for (const name of ["q2", "q3"]) assert.strictEqual(last(name), last("q1"))
      assert.deepStrictEqual(last("q1").position, { channel: "h-room", epoch: last("q1").position!.epoch, offset: 1 })
      assert.isUndefined(last("p1").position)
      // the plain ones got nothing else
      for (const name of ["p1", "p2", "p3"]) assert.strictEqual(frames.get(name)!.length, 1)
    }))

  it.effect("publishTextNow: at once on the memory bus and store, numbered in one order with publishText", () =>
    Effect.gen(function*() {
      const bus = yield* Bus.makeMemory()
      const history = History.makeMemory({ policies: [{ prefix: "h-", size: 10, ttl: Duration.minutes(1) }] })
      const hub = yield* Hub.make().pipe(
        Effect.provideService(Bus.Bus, bus),
        Effect.provideService(History.History, history)
      )
      const texts: Array<string> = []
      const positions: Array<number | undefined> = []
      const subscriber: Hub.Subscriber = {
        channels: new Set(),
        deliver: (frame) => {
          texts.push(frame.text)
          positions.push(frame.position?.offset)
        }
      }
      yield* hub.subscribe(subscriber, ids("h-a", "plain"), { since: "now" })
      const before = texts.length
      yield* hub.publishText(ids("h-a"), "LHTTP/1.0 m\r\npublish:h-a\r\n\r\n1")
      // no effect to run: delivered when the call returns
      assert.isTrue(hub.publishTextNow(ids("h-a", "plain"), "LHTTP/1.0 m\r\npublish:h-a plain\r\n\r\n2"))
      yield* hub.publishText(ids("h-a"), "LHTTP/1.0 m\r\npublish:h-a\r\n\r\n3")
      assert.deepStrictEqual(positions.slice(before), [1, 2, undefined, 3])
      assert.strictEqual(texts.at(-2), "LHTTP/1.0 m\r\npublish:h-a plain\r\n\r\n2")
      // what a recovery gives: the three, the one published at once in its place
      const recovered = yield* history.recover(ids("h-a")[0]!, history.policyOf(ids("h-a")[0]!)!, {
        epoch: (yield* history.recover(ids("h-a")[0]!, history.policyOf(ids("h-a")[0]!)!, undefined)).position.epoch,
        offset: 0
      })
      assert.deepStrictEqual(recovered.messages.map((m) => m.position.offset), [1, 2, 3])
    }))

  it.effect("publishTextNow: false, and nothing published, on a bus that wraps the memory bus's publish", () =>
    Effect.gen(function*() {
      const memory = yield* Bus.makeMemory()
      // a wrapper that replaces publish: the hub must not go around it
      const waiting = Bus.Bus.of({ ...memory, publish: (channel, payload) => memory.publish(channel, payload) })
      const hub = yield* Hub.make().pipe(Effect.provideService(Bus.Bus, waiting))
      const delivered: Array<string> = []
      yield* hub.subscribe(recorder("one", delivered), ids("c"))
      assert.isFalse(hub.publishTextNow(ids("c"), "m"))
      assert.deepStrictEqual(delivered, [])
      yield* hub.publishText(ids("c"), "m")
      assert.deepStrictEqual(delivered, ["one:m"])
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
      const good = (name: string): Hub.Subscriber => ({
        channels: new Set(),
        deliver: (frame) => got.push(`${name}:${frame.text}`)
      })
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

describe("Hub: stream", () => {
  // the bodies of the messages a stream gives
  const bodyOf = (message: Message.Message) => message._tag === "Failure" ? message.message : message.body

  it.live("a stream of channels gets what is published to them, decoded, in order; it unsubscribes when it ends", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.make().pipe(Effect.provideService(Bus.Bus, yield* Bus.makeMemory()))
      const taking = yield* Effect.forkChild(Stream.runCollect(Stream.take(hub.stream("news sport"), 3)))
      yield* eventually(() => hub.channelCount() === 2)
      yield* hub.publish("news", "flash", { a: "1" }, "one")
      yield* hub.publish("weather", "flash", {}, "not subscribed")
      yield* hub.publish("sport", "score", {}, "two")
      yield* hub.publish("news sport", "both", {}, "three")
      const messages = yield* Fiber.join(taking)
      assert.deepStrictEqual(messages.map((m) => [m._tag, m._tag === "Failure" ? "" : m.command, bodyOf(m)]), [
        ["Notify", "flash", "one"],
        ["Notify", "score", "two"],
        ["Notify", "both", "three"]
      ])
      assert.strictEqual(hub.channelCount(), 0)
      // an invalid channel fails the stream with the protocol error
      const refused = yield* Stream.runDrain(hub.stream("a..b")).pipe(Effect.flip)
      assert.strictEqual(refused._tag, "ProtocolError")
    }))

  for (const [strategy, kept] of [["dropping", ["m2", "m3"]], ["sliding", ["m5", "m6"]]] as const) {
    it.live(`a stream whose reader is behind keeps ${strategy === "dropping" ? "the first" : "the last"} frames ("${strategy}")`, () =>
      Effect.gen(function*() {
        const hub = yield* Hub.make().pipe(Effect.provideService(Bus.Bus, yield* Bus.makeMemory()))
        const gate = yield* Deferred.make<void>()
        const seen: Array<string> = []
        const reading = yield* Effect.forkChild(
          Stream.runForEach(
            hub.stream("busy", { capacity: 2, strategy }),
            (message) =>
              Effect.sync(() => seen.push(bodyOf(message))).pipe(
                Effect.andThen(seen.length === 1 ? Deferred.await(gate) : Effect.void)
              )
          ).pipe(Effect.timeoutOption("5 seconds"))
        )
        yield* eventually(() => hub.channelCount() === 1)
        yield* hub.publish("busy", "m", {}, "first")
        yield* eventually(() => seen.length === 1)
        // the reader waits at the gate: five frames for a buffer of two
        for (const body of ["m2", "m3", "m4", "m5", "m6"]) yield* hub.publish("busy", "m", {}, body)
        yield* Deferred.succeed(gate, undefined)
        yield* eventually(() => seen.length === 3)
        yield* hub.publish("busy", "m", {}, "end")
        yield* eventually(() => seen.includes("end"))
        assert.deepStrictEqual(seen, ["first", ...kept, "end"])
        yield* Fiber.interrupt(reading)
      }))
  }
})

describe("Hub: stream over NATS", () => {
  it.live("a service's stream on one node gets what another node publishes", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      const node = Effect.gen(function*() {
        const bus = yield* NatsBus.make({ servers: nats.url })
        yield* until(bus.isReady, "10 seconds")
        return yield* Hub.make().pipe(Effect.provideService(Bus.Bus, bus))
      })
      const one = yield* node
      const two = yield* node
      const received: Array<string> = []
      yield* Effect.forkChild(Stream.runForEach(one.stream("orders"), (message) =>
        Effect.sync(() => {
          if (message._tag !== "Failure") received.push(message.body)
        })))
      // interest has crossed NATS once a probe published on the other node arrives
      yield* until(two.publish("orders", "probe").pipe(Effect.andThen(Effect.sync(() => received.length > 0))))
      yield* two.publish("orders", "order", { "content-type": "application/json" }, "{\"n\":1}")
      yield* eventually(() => received.includes("{\"n\":1}"))
    }))
})

// The pipeline's built-in after filter in front of the hub (src/internal/server/builtins.ts pubSub and
// src/internal/server/exchange.ts publishedText), pinned where mutation testing (docs/testing.md
// "Mutation testing") found it untested
describe("Hub: the built-in subscribe / publish / unsubscribe of a message", () => {
  it.live("a since header that cannot be served is refused 400 InvalidSince, each with its own message, nothing applied", () =>
    Effect.gen(function*() {
      const { connect, hub } = yield* startMemoryServer({})
      const client = yield* connect()
      const refused = (headers: Record<string, string>, message: string) =>
        Effect.gen(function*() {
          yield* client.send(frame("c", { ...headers, id: "s" }))
          assert.strictEqual(
            yield* client.next(),
            `LHTTP/1.0 error\r\nstatus:400\r\nreason:InvalidSince\r\nid:s\r\n\r\n${message}`
          )
        })
      yield* refused({ subscribe: "a", since: "yesterday" }, "a since header is now or <epoch>:<offset>")
      yield* refused({ publish: "a", since: "now" }, "a since header goes with a subscribe header")
      yield* refused({ subscribe: "a b", since: "e:1" }, "a since position goes with exactly one subscribed channel")
      assert.strictEqual(hub.channelCount(), 0)
    }))

  it.live("authorize is asked about the actions a message has, and only those", () =>
    Effect.gen(function*() {
      const asked: Array<string> = []
      const authorize = (request: LhttpServer.Authorization) =>
        Effect.sync(() => void asked.push(`${request.action}:${request.channels.join(" ")}`))
      const { connect } = yield* startMemoryServer({ authorize })
      const client = yield* connect()
      yield* client.send(frame("c", { publish: "p" }, "x"))
      yield* client.nothing()
      assert.deepStrictEqual(asked.splice(0), ["publish:p"])
      yield* client.send(frame("c", { subscribe: "s" }))
      yield* client.nothing()
      assert.deepStrictEqual(asked.splice(0), ["subscribe:s"])
      yield* client.send(frame("c", { unsubscribe: "s" }))
      yield* client.nothing()
      assert.deepStrictEqual(asked.splice(0), ["unsubscribe:s"])
      yield* client.send(frame("c", { subscribe: "a", publish: "b", unsubscribe: "c" }, "x"))
      yield* client.nothing()
      assert.deepStrictEqual(asked.splice(0), ["subscribe:a", "publish:b", "unsubscribe:c"])
    }))

  it.live("a message a filter changed is validated before it is published: a header a filter broke is refused, nothing published", () =>
    Effect.gen(function*() {
      const Inject = Filter.make("inject")
      const InjectLive = Inject.toLayer({
        before: (exchange) =>
          Effect.sync(() => {
            const value = exchange.header("inject")
            if (value !== undefined) exchange.setHeader("x", value.replace("|", "\r\n"))
          })
      })
      const { connect } = yield* startMemoryServer({ filters: [Inject] }, InjectLive)
      const listener = yield* connect()
      const client = yield* connect()
      yield* listener.send(frame("c", { subscribe: "room" }))
      yield* listener.nothing()
      yield* client.send(frame("c", { publish: "room", inject: "a|evil:1", id: "i" }, "x"))
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 error\r\nstatus:400\r\nreason:MalformedHeader\r\nid:i\r\n\r\na header value cannot hold CR or LF"
      )
      yield* listener.nothing()
      // a change that keeps the frame valid goes out as changed
      yield* client.send(frame("c", { publish: "room", inject: "fine" }, "y"))
      assert.strictEqual(yield* listener.next(), "LHTTP/1.0 c\r\npublish:room\r\ninject:fine\r\nx:fine\r\n\r\ny")
    }))
})

// The hub's positions and gates (src/Hub.ts), pinned where mutation testing found them untested
describe("Hub: positions and gates", () => {
  const policy = { prefix: "h-", size: 10, ttl: Duration.minutes(1) }

  it.effect("a message the bus could not number reaches a positioned subscriber without any position a publisher wrote", () =>
    Effect.gen(function*() {
      const bus = yield* Bus.makeMemory()
      const history = History.makeMemory({ policies: [policy] })
      const hub = yield* Hub.make().pipe(
        Effect.provideService(Bus.Bus, bus),
        Effect.provideService(History.History, history)
      )
      const frames: Array<Transport.Outbound> = []
      const plain: Array<Transport.Outbound> = []
      yield* hub.subscribe({ channels: new Set(), deliver: (frame) => void frames.push(frame) }, ids("h-room"), {
        since: "now"
      })
      yield* hub.subscribe({ channels: new Set(), deliver: (frame) => void plain.push(frame) }, ids("h-room"))
      assert.strictEqual(frames.length, 1) // the position frame
      const forged = "LHTTP/1.0 chat\r\noffset:99\r\nepoch:forged\r\nchannel:h-room\r\n\r\nhi"
      yield* bus.publish("h-room" as Channel.ChannelId, forged) // straight to the bus: no position
      assert.strictEqual(frames.length, 2)
      assert.strictEqual(frames[1]!.text, "LHTTP/1.0 chat\r\n\r\nhi")
      assert.isUndefined(frames[1]!.position)
      assert.deepStrictEqual(plain.map((frame) => frame.text), [forged])
    }))

  it.effect("the position frame carries its position beside the text; one for a channel without history carries none", () =>
    Effect.gen(function*() {
      const bus = yield* Bus.makeMemory()
      const history = History.makeMemory({ policies: [policy] })
      const hub = yield* Hub.make().pipe(
        Effect.provideService(Bus.Bus, bus),
        Effect.provideService(History.History, history)
      )
      yield* hub.publishText(ids("h-room"), "LHTTP/1.0 chat\r\n\r\none")
      const frames: Array<Transport.Outbound> = []
      yield* hub.subscribe(
        { channels: new Set(), deliver: (frame) => void frames.push(frame) },
        ids("h-room", "plain"),
        { since: "now" }
      )
      const [room, plain] = frames
      const epoch = room!.position!.epoch
      assert.strictEqual(room!.text, `LHTTP/1.0 position\r\nchannel:h-room\r\nepoch:${epoch}\r\noffset:1\r\n\r\n`)
      assert.deepStrictEqual(room!.position, { channel: "h-room", epoch, offset: 1 })
      assert.strictEqual(plain!.text, "LHTTP/1.0 position\r\nchannel:plain\r\nreason:NoHistory\r\n\r\n")
      assert.isUndefined(plain!.position)
    }))

  it.live("a subscriber joining a channel whose bus subscription is still being taken waits for it", () =>
    Effect.gen(function*() {
      const inner = yield* Bus.makeMemory()
      const taken = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const bus = Bus.Bus.of({
        ...inner,
        subscribe: (channel, onMessage, options) =>
          Deferred.succeed(taken, undefined).pipe(
            Effect.andThen(Deferred.await(release)),
            Effect.andThen(inner.subscribe(channel, onMessage, options))
          )
      })
      const hub = yield* Hub.make().pipe(Effect.provideService(Bus.Bus, bus))
      const got: Array<string> = []
      const first = yield* Effect.forkChild(hub.subscribe(recorder("a", got), ids("slow")))
      yield* Deferred.await(taken)
      const second = yield* Effect.forkChild(hub.subscribe(recorder("b", got), ids("slow")))
      yield* Effect.yieldNow
      // the second joiner is not done while the channel's subscription is not in place
      assert.isUndefined(second.pollUnsafe())
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(first)
      yield* Fiber.join(second)
      yield* hub.publishText(ids("slow"), "m")
      assert.deepStrictEqual(got, ["a:m", "b:m"])
    }))
})
