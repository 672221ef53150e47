/**
 * The NATS bus against real nats-server processes killed and restarted on the
 * same port: what is published while NATS is down waits in the bus's own
 * bounded buffer and is delivered once, in order, after the reconnect; past
 * the bound, publishing fails.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Net from "node:net"
import { Config, ConfigProvider, Effect, Exit, Fiber, Result, Scope } from "effect"
import type * as Bus from "../src/Bus.ts"
import * as Channel from "../src/Channel.ts"
import * as NatsBus from "../src/NatsBus.ts"
import { natsServer } from "./utils/nats.ts"
import { eventually, until } from "./utils/wait.ts"

/** A channel id, validated as the Hub does before any bus sees it. */
const id = (channel: string): Channel.ChannelId => Result.getOrThrow(Channel.validate(channel))

const options = { reconnectTimeWait: "250 millis", connectRetry: "100 millis" } as const

/** A NATS bus on `url`, ready. */
const readyBus = (url: string, more?: Partial<NatsBus.Options>) =>
  Effect.gen(function*() {
    const bus = yield* NatsBus.make({ servers: url, ...options, ...more })
    yield* until(bus.isReady, "10 seconds")
    return bus
  })

/** What the publisher saw for message `n`: whether the bus was ready just before, and whether the publish succeeded. */
interface Sent {
  readonly ready: boolean
  readonly ok: boolean
}

/** Publishes "0", "1", … to `channel` every 5 ms (about 200/s), recording each outcome in `sent`. */
const publishForever = (bus: Bus.Bus["Service"], channel: Channel.ChannelId, sent: Array<Sent>) =>
  Effect.gen(function*() {
    while (true) {
      const ready = yield* bus.isReady
      const exit = yield* Effect.exit(bus.publish(channel, String(sent.length)))
      sent.push({ ready, ok: Exit.isSuccess(exit) })
      yield* Effect.sleep("5 millis")
    }
  })

/** Asserts that every number in `received` is larger than the one before: in order, none twice. */
const assertIncreasing = (received: ReadonlyArray<number>) => {
  received.forEach((n, i) => {
    if (i > 0 && n <= received[i - 1]!) assert.fail(`out of order or twice at ${i}: ${received[i - 1]} then ${n}`)
  })
}

describe("NatsBus: shutdown", () => {
  it.live("closing the bus's scope flushes what was published before it: every message is delivered, in order", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      const subscriber = yield* readyBus(nats.url)
      const received: Array<string> = []
      yield* subscriber.subscribe(id("d"), (payload) => received.push(payload.slice(0, 8)))
      const scope = yield* Scope.make()
      const publisher = yield* readyBus(nats.url).pipe(Scope.provide(scope))
      yield* publisher.publish(id("d"), "probe")
      yield* eventually(() => received.length === 1)
      // 2,000 messages of 4 KiB: more than the client's outbound buffer holds at once
      const body = "x".repeat(4096)
      const count = 2000
      for (let n = 0; n < count; n++) yield* publisher.publish(id("d"), String(n).padStart(8, "0") + body)
      yield* Scope.close(scope, Exit.void)
      yield* eventually(() => received.length === count + 1, "10 seconds")
      assert.deepStrictEqual(received.slice(1), Array.from({ length: count }, (_, n) => String(n).padStart(8, "0")))
    }))
  it.live("a NATS connection that opens only after the bus was closed is closed at once, not left running", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      const target = new URL(nats.url.replace("nats://", "http://"))
      // a TCP relay in front of nats-server that holds each connection until the gate opens
      const sockets: Array<Net.Socket> = []
      const closed: Array<Net.Socket> = []
      let open: () => void = () => {}
      const gate = new Promise<void>((resolve) => open = resolve)
      const relay = Net.createServer((socket) => {
        sockets.push(socket)
        socket.on("close", () => closed.push(socket))
        socket.on("error", () => {})
        void gate.then(() => {
          const upstream = Net.connect(Number(target.port), target.hostname)
          upstream.on("error", () => socket.destroy())
          socket.pipe(upstream).pipe(socket)
          socket.on("close", () => upstream.destroy())
        })
      })
      yield* Effect.acquireRelease(
        Effect.callback<void>((resume) => void relay.listen(0, "127.0.0.1", () => resume(Effect.void))),
        () => Effect.sync(() => relay.close())
      )
      const port = (relay.address() as Net.AddressInfo).port
      const scope = yield* Scope.make()
      yield* NatsBus.make({ servers: `nats://127.0.0.1:${port}`, ...options }).pipe(Scope.provide(scope))
      yield* eventually(() => sockets.length === 1)
      // the bus closes while its first dial waits; then the dial completes
      yield* Scope.close(scope, Exit.void)
      open()
      yield* eventually(() => closed.length === sockets.length, "5 seconds")
    }))
})

describe("NatsBus: NATS killed and restarted on the same port", () => {
  it.live("every message published during a 3 s outage is delivered exactly once, in order, after the reconnect", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      // two processes' buses on one NATS server: both lose it, both reconnect
      const subscriber = yield* readyBus(nats.url)
      const publisher = yield* readyBus(nats.url)
      const received: Array<number> = []
      let probed = false
      yield* subscriber.subscribe(id("load"), (payload) => {
        if (payload === "probe") probed = true
        else received.push(Number(payload))
      })
      // the subscription has reached NATS once a probe published on the same subject arrives
      yield* until(publisher.publish(id("load"), "probe").pipe(Effect.andThen(Effect.sync(() => probed))))
      const sent: Array<Sent> = []
      const fiber = yield* Effect.forkChild(publishForever(publisher, id("load"), sent))
      yield* eventually(() => received.length >= 50)

      const deliveredAtKill = received.length
      yield* Effect.promise(() => nats.kill())
      yield* until(Effect.map(publisher.isReady, (ready) => !ready))
      // the outage: 3 s of publishing at about 200/s while NATS is gone
      yield* Effect.sleep("3 seconds")
      yield* Effect.promise(() => nats.restart())
      yield* until(publisher.isReady, "10 seconds")
      const restartedAt = sent.length
      // keep publishing until messages published after the reconnect arrive
      yield* eventually(() => received.some((n) => n >= restartedAt + 100), "15 seconds")
      yield* Fiber.interrupt(fiber)
      const total = sent.length
      yield* eventually(() => received.includes(total - 1), "5 seconds")

      const during = sent.flatMap((s, n) => (s.ready ? [] : [n]))
      const got = new Set(received)
      const lost = Array.from({ length: total }, (_, n) => n).filter((n) => !got.has(n))
      console.log(
        `outage: ${during.length} published while NATS was down, ${total} in all, ` +
          `${lost.length} lost: ${JSON.stringify(lost)}`
      )
      assert.isAbove(during.length, 300)
      // every publish was acknowledged, and none is acknowledged and then lost
      assert.deepStrictEqual(sent.filter((s) => !s.ok).length, 0)
      assert.deepStrictEqual(during.filter((n) => !got.has(n)), [])
      // in order, exactly once
      assertIncreasing(received)
      // only messages handed to NATS before the bus saw the outage, and not delivered before the kill, can be lost
      for (const n of lost) assert.isTrue(n >= deliveredAtKill && sent[n]?.ready === true, `message ${n} lost`)
    }), 60_000)

  it.live("past maxPendingBytes, publishes fail with BusError; what was accepted arrives, what was refused never does", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      const subscriber = yield* readyBus(nats.url)
      const publisher = yield* readyBus(nats.url, { maxPendingBytes: 2_000 })
      const received: Array<string> = []
      yield* subscriber.subscribe(id("tiny"), (payload) => received.push(payload))
      // interest has crossed NATS once a probe arrives
      yield* until(
        publisher.publish(id("tiny"), "probe").pipe(
          Effect.andThen(Effect.sleep("20 millis")),
          Effect.andThen(Effect.sync(() => received.length > 0))
        )
      )

      yield* Effect.promise(() => nats.kill())
      yield* until(Effect.map(publisher.isReady, (ready) => !ready))
      const body = (n: number) => `${n}:${"x".repeat(200)}`
      const accepted: Array<string> = []
      const refused: Array<Bus.BusError> = []
      for (let n = 0; n < 20; n++) {
        const result = yield* Effect.result(publisher.publish(id("tiny"), body(n)))
        if (Result.isSuccess(result)) accepted.push(body(n))
        else refused.push(result.failure)
      }
      // 2000 bytes hold 8 messages of 205 bytes + subject + overhead; the 9th and the rest are refused
      assert.isAbove(accepted.length, 5)
      assert.isBelow(accepted.length, 10)
      assert.strictEqual(accepted.length + refused.length, 20)
      assert.deepStrictEqual(accepted, Array.from({ length: accepted.length }, (_, n) => body(n)))
      for (const error of refused) {
        assert.strictEqual(error._tag, "BusError")
        assert.strictEqual(error.reason, "Unavailable")
      }

      yield* Effect.promise(() => nats.restart())
      yield* until(publisher.isReady, "10 seconds")
      // a marker published after the reconnect comes after everything buffered: once it arrives, all has
      yield* publisher.publish(id("tiny"), "marker")
      yield* eventually(() => received.includes("marker"), "10 seconds")
      assert.deepStrictEqual(received.filter((payload) => payload !== "probe"), [...accepted, "marker"])
    }), 30_000)
})

/** Sets (or, with undefined, unsets) an environment variable until the scope closes. */
const withEnv = (name: string, value: string | undefined) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const before = process.env[name]
      if (value === undefined) delete process.env[name]
      else process.env[name] = value
      return before
    }),
    (before) =>
      Effect.sync(() => {
        if (before === undefined) delete process.env[name]
        else process.env[name] = before
      })
  )

describe("NatsBus.config", () => {
  const url = "nats://127.0.0.1:4222"

  it.effect("from the environment: LHTTP_NATS_PREFIX unset is lhttp., set is its value, set and empty is empty", () =>
    Effect.gen(function*() {
      yield* withEnv("LHTTP_NATS_URL", `${url}, nats://b:4222`)
      // the provider the main job uses: Effect's default, which reads X= as missing
      const prefix = Effect.suspend(() => NatsBus.config.parse(ConfigProvider.fromEnv())).pipe(
        Effect.map((settings) => settings.subjectPrefix)
      )
      yield* withEnv("LHTTP_NATS_PREFIX", undefined)
      assert.strictEqual(yield* prefix, "lhttp.")
      yield* withEnv("LHTTP_NATS_PREFIX", "x.")
      assert.strictEqual(yield* prefix, "x.")
      yield* withEnv("LHTTP_NATS_PREFIX", "")
      assert.strictEqual(yield* prefix, "")
      assert.deepStrictEqual((yield* NatsBus.config.parse(ConfigProvider.fromEnv())).servers, [url, "nats://b:4222"])
    }))

  it.effect("from another provider: its value wins, and one that keeps empty strings gives the empty prefix", () =>
    Effect.gen(function*() {
      yield* withEnv("LHTTP_NATS_PREFIX", undefined)
      const parse = (values: Record<string, string>) =>
        NatsBus.config.parse(ConfigProvider.fromUnknown(values, { preserveEmptyStrings: true }))
      assert.strictEqual((yield* parse({ LHTTP_NATS_URL: url })).subjectPrefix, "lhttp.")
      assert.strictEqual((yield* parse({ LHTTP_NATS_URL: url, LHTTP_NATS_PREFIX: "x." })).subjectPrefix, "x.")
      assert.strictEqual((yield* parse({ LHTTP_NATS_URL: url, LHTTP_NATS_PREFIX: "" })).subjectPrefix, "")
      assert.isTrue(Config.isConfig(NatsBus.config))
    }))
})
