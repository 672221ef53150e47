/**
 * The NATS bus against real nats-server processes killed and restarted on the
 * same port: what is published while NATS is down waits in the bus's own
 * bounded buffer and is delivered once, in order, after the reconnect; past
 * the bound, publishing fails.
 */
import { assert, describe, it } from "@effect/vitest"
import { connect as natsConnect, type ConnectionOptions } from "@nats-io/transport-node"
import { Config, ConfigProvider, Effect, Exit, Fiber, Logger, Result, Scope } from "effect"
import * as Net from "node:net"
import type * as Bus from "../src/Bus.ts"
import * as Channel from "../src/Channel.ts"
import * as internalBus from "../src/internal/nats/bus.ts"
import * as NatsBus from "../src/NatsBus.ts"
import { natsServer, natsServerLater } from "./utils/nats.ts"
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

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

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

describe("NatsBus: acknowledged publishes", () => {
  it.live(
    "answered once the server has the message, Unconfirmed when it does not answer in time, taken into the buffer while it is gone",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServer
        const bus = yield* readyBus(nats.url, { acknowledgeTimeout: "300 millis" })
        const received: Array<string> = []
        let probed = false
        yield* bus.subscribe(id("acked"), (payload) => {
          if (payload === "probe") probed = true
          else received.push(payload)
        })
        yield* until(bus.publish(id("acked"), "probe").pipe(Effect.andThen(Effect.sync(() => probed))))
        const acknowledge = bus.publishAcknowledged!
        // no history: taken, without a position, once the server answered a flush after it
        assert.isUndefined(yield* acknowledge(id("acked"), "one"))
        yield* eventually(() => received.includes("one"))
        // a server that answers nothing (stopped): the publish was sent, its fate unknown
        nats.pause()
        const unconfirmed = yield* Effect.flip(acknowledge(id("acked"), "two"))
        nats.resume()
        assert.strictEqual(unconfirmed.reason, "Unconfirmed")
        // the message went out before the wait: once the server runs again it is delivered
        yield* eventually(() => received.includes("two"), "5 seconds")
        // a server that is gone: taken into the reconnect buffer (no position), sent after the reconnect
        yield* Effect.promise(() => nats.kill())
        yield* until(Effect.map(bus.isReady, (ready) => !ready))
        assert.isUndefined(yield* acknowledge(id("acked"), "three"))
        yield* Effect.promise(() => nats.restart())
        yield* until(bus.isReady, "10 seconds")
        assert.isUndefined(yield* acknowledge(id("acked"), "four"))
        yield* eventually(() => received.includes("four"), "5 seconds")
        assert.deepStrictEqual(received, ["one", "two", "three", "four"])
        // a bus that never reached NATS refuses: nothing was taken
        const later = yield* NatsBus.make({ servers: "nats://127.0.0.1:1", ...options })
        assert.strictEqual((yield* Effect.flip(later.publishAcknowledged!(id("acked"), "five"))).reason, "Unavailable")
      }),
    30_000
  )
})

describe("NatsBus: NATS killed and restarted on the same port", () => {
  it.live(
    "every message published during an outage is delivered exactly once, in order, after the reconnect; at most one handed to NATS just before is lost",
    () =>
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
        const killedAt = sent.length
        yield* Effect.promise(() => nats.kill())
        yield* until(Effect.map(publisher.isReady, (ready) => !ready))
        // the outage lasts while 300 more messages are published (several reconnect attempts of 250 ms)
        const noticedAt = sent.length
        yield* eventually(() => sent.length >= noticedAt + 300, "10 seconds")
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
            `${noticedAt - killedAt} between the kill and the bus noticing, ${lost.length} lost: ${
              JSON.stringify(lost)
            }`
        )
        assert.isAbove(during.length, 300)
        // every publish was acknowledged (no BusError); none published after the bus saw the outage is lost
        assert.deepStrictEqual(sent.filter((s) => !s.ok).length, 0)
        assert.deepStrictEqual(during.filter((n) => !got.has(n)), [])
        // in order, exactly once
        assertIncreasing(received)
        // only messages handed to NATS before the bus saw the outage, and not delivered before the kill, can be lost
        for (const n of lost) assert.isTrue(n >= deliveredAtKill && sent[n]?.ready === true, `message ${n} lost`)
        // and of those, at most one (cluster.md, "During a NATS outage", step 2)
        assert.isAtMost(lost.length, 1, JSON.stringify(lost))
      }),
    60_000
  )

  it.live(
    "past maxPendingBytes, publishes fail with BusError; what was accepted arrives, what was refused never does",
    () =>
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
        // a message costs its payload's UTF-8 bytes, its subject and 32 bytes (cluster.md): 202 + 10 + 32 = 244, and
        // 2000 bytes hold 8 of them; the 9th and the rest are refused
        assert.strictEqual(Math.floor(2_000 / (body(0).length + "lhttp.tiny".length + 32)), 8)
        assert.strictEqual(accepted.length, 8)
        assert.strictEqual(refused.length, 12)
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
      }),
    30_000
  )
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

/** A log line: its text and when it was written. */
interface Line {
  readonly text: string
  readonly at: number
}

/** A logger that records every line in `lines`, as a Layer. */
const recording = (lines: Array<Line>) =>
  Logger.layer([
    Logger.make(({ date, message }) => {
      lines.push({ text: (Array.isArray(message) ? message : [message]).map(String).join(" "), at: date.getTime() })
    })
  ])

/** The bus's own lines (`NATS: …`), in order. */
const natsLines = (lines: ReadonlyArray<Line>) =>
  lines.filter((line) => line.text.startsWith("NATS: ")).map((line) => line.text)

/** A plain NATS client (any program on the bus) until the scope closes. */
const rawNats = (url: string) =>
  Effect.acquireRelease(Effect.promise(() => natsConnect({ servers: url })), (nc) => Effect.promise(() => nc.close()))

describe("NatsBus: the defaults", () => {
  it.live("the client reconnects every second (reconnectTimeWait 1 s, the client's 100 ms of jitter), for ever", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      const made = yield* internalBus.make({ servers: nats.url })
      yield* until(made.bus.isReady, "10 seconds")
      // what the bus handed to the NATS client, as the client resolved it (the client's own default wait is 2 s)
      const resolved = (made.connection() as unknown as { readonly options: ConnectionOptions }).options
      assert.deepStrictEqual(
        [resolved.reconnect, resolved.reconnectTimeWait, resolved.reconnectJitter, resolved.maxReconnectAttempts],
        [true, 1000, 100, -1]
      )
    }))

  it.live(
    "replayDelay is reconnectTimeWait + 250 ms: after the reconnect, the buffer waits 1,250 ms; what is published meanwhile waits too, and goes after a marker sent by another client during the hold",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServer
        const lines: Array<Line> = []
        const publisher = yield* NatsBus.make({ servers: nats.url }).pipe(Effect.provide(recording(lines)))
        yield* until(publisher.isReady, "10 seconds")
        yield* Effect.promise(() => nats.kill())
        yield* until(Effect.map(publisher.isReady, (ready) => !ready))
        yield* publisher.publish(id("rd"), "outage")
        yield* Effect.promise(() => nats.restart())
        // reconnected (about a second later: the default wait) and holding: ready, the buffer not sent yet
        yield* eventually(() => natsLines(lines).some((line) => line.startsWith("NATS: reconnected to ")), "10 seconds")
        const nc = yield* rawNats(nats.url)
        const seen: Array<string> = []
        nc.subscribe("lhttp.rd", { callback: (_error, message) => void seen.push(message.string()) })
        yield* Effect.promise(() => nc.flush())
        // published during the hold: it waits in the buffer behind "outage"
        assert.isTrue(yield* publisher.isReady)
        yield* publisher.publish(id("rd"), "held")
        // another client's marker, through the same subject, reaches NATS during the hold
        nc.publish("lhttp.rd", "marker")
        yield* Effect.promise(() => nc.flush())
        yield* eventually(() => seen.length === 3, "10 seconds")
        assert.deepStrictEqual(seen, ["marker", "outage", "held"])
        const reconnected = lines.find((line) => line.text.startsWith("NATS: reconnected to "))!
        const sent = lines.find((line) => line.text.startsWith("NATS: sent "))!
        assert.strictEqual(sent.text, "NATS: sent 2 messages published while disconnected")
        // the wait is at least reconnectTimeWait + 250 ms (a timer may fire a millisecond early); a longer one is
        // CPU noise
        assert.isAtLeast(sent.at - reconnected.at, 1250 - 2, JSON.stringify({ reconnected, sent }))
      }),
    30_000
  )

  it.live(
    "the buffer holds 100,000 messages (maxPendingMessages) and 8 MiB (maxPendingBytes), at the documented cost",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServer
        const counted = yield* NatsBus.make({ servers: nats.url, connectRetry: "100 millis" })
        const weighed = yield* NatsBus.make({ servers: nats.url, connectRetry: "100 millis" })
        yield* until(counted.isReady, "10 seconds")
        yield* until(weighed.isReady, "10 seconds")
        yield* Effect.promise(() => nats.kill())
        yield* until(Effect.map(counted.isReady, (ready) => !ready))
        yield* until(Effect.map(weighed.isReady, (ready) => !ready))
        /** Publishes up to `limit` copies of `payload` and answers how many were accepted before the first refusal. */
        const fill = (bus: Bus.Bus["Service"], channel: string, payload: string, limit: number) =>
          Effect.gen(function*() {
            for (let n = 0; n < limit; n++) {
              const result = yield* Effect.result(bus.publish(id(channel), payload))
              if (Result.isFailure(result)) {
                assert.strictEqual(result.failure.reason, "Unavailable")
                return n
              }
            }
            return limit
          })
        // 1-byte messages cost 1 + 7 ("lhttp.m") + 32 = 40 bytes: 100,000 of them are 4 MB, under 8 MiB: the count
        // bounds
        assert.strictEqual(yield* fill(counted, "m", "x", 100_001), 100_000)
        // 1,000-byte messages cost 1,000 + 7 + 32 = 1,039 bytes: 8 MiB holds 8,073 of them
        const cost = 1000 + "lhttp.b".length + 32
        assert.strictEqual(Math.floor(8 * 1024 * 1024 / cost), 8073)
        assert.strictEqual(yield* fill(weighed, "b", "y".repeat(1000), 10_000), 8073)
      }),
    30_000
  )
})

describe("NatsBus: what it logs", () => {
  it.live(
    "each state change is logged once: unreachable, connected, disconnected, the buffer full, reconnected, sent",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerLater
        // NATS's port answered by a listener that hangs up at once: every dial of the bus fails, and is counted
        const dials: Array<Net.Socket> = []
        const refuser = Net.createServer((socket) => {
          dials.push(socket)
          socket.destroy()
        })
        yield* Effect.callback<void>((resume) => void refuser.listen(nats.port, "127.0.0.1", () => resume(Effect.void)))
        const lines: Array<Line> = []
        const made = yield* internalBus.make({
          servers: nats.url,
          reconnectTimeWait: "100 millis",
          connectRetry: "100 millis",
          maxPendingMessages: 2
        }).pipe(Effect.provide(recording(lines)))
        // several dials failed
        yield* eventually(() => dials.length >= 3, "10 seconds")
        yield* Effect.callback<void>((resume) => void refuser.close(() => resume(Effect.void)))
        yield* Effect.promise(() => nats.restart())
        yield* until(made.bus.isReady, "10 seconds")
        const nc = made.connection()!
        let reconnecting = 0
        void (async () => {
          for await (const status of nc.status()) if (status.type === "reconnecting") reconnecting++
        })()
        yield* Effect.promise(() => nats.kill())
        yield* until(Effect.map(made.bus.isReady, (ready) => !ready))
        // 2 accepted, then 3 refused: the buffer is full
        const results: Array<boolean> = []
        for (let n = 0; n < 5; n++) {
          results.push(Result.isSuccess(yield* Effect.result(made.bus.publish(id("logged"), `m${n}`))))
        }
        assert.deepStrictEqual(results, [true, true, false, false, false])
        // several reconnect attempts failed
        yield* eventually(() => reconnecting >= 3, "10 seconds")
        yield* Effect.promise(() => nats.restart())
        yield* eventually(() => natsLines(lines).some((line) => line.startsWith("NATS: sent ")), "10 seconds")
        // a marker: a publish once the buffer is sent goes straight out, and logs nothing
        yield* made.bus.publish(id("logged"), "marker")
        const server = escape(`127.0.0.1:${nats.port}`)
        const expected = [
          new RegExp(`^NATS: unreachable at nats://${server}, retrying$`),
          new RegExp(`^NATS: connected to ${server}$`),
          new RegExp(`^NATS: disconnected from ${server}; buffering publishes$`),
          /^NATS: the reconnect buffer is full \(2 messages\); publishes fail until it is sent$/,
          new RegExp(`^NATS: reconnected to ${server}$`),
          /^NATS: sent 2 messages published while disconnected$/
        ]
        const logged = natsLines(lines)
        assert.strictEqual(logged.length, expected.length, JSON.stringify(logged))
        expected.forEach((pattern, i) => assert.match(logged[i]!, pattern))
      }),
    30_000
  )

  it.live("shutting down while NATS is down drops the buffer and says how many messages", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      const lines: Array<Line> = []
      const scope = yield* Scope.make()
      const bus = yield* readyBus(nats.url).pipe(Effect.provide(recording(lines)), Scope.provide(scope))
      yield* Effect.promise(() => nats.kill())
      yield* until(Effect.map(bus.isReady, (ready) => !ready))
      for (let n = 0; n < 3; n++) yield* bus.publish(id("gone"), `m${n}`)
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(
        natsLines(lines).filter((line) => line.includes("dropped")),
        ["NATS: shutting down while disconnected; 3 buffered messages dropped"]
      )
      const after = yield* Effect.result(bus.publish(id("gone"), "after"))
      assert.isTrue(Result.isFailure(after))
    }))

  it.live(
    "maxReconnectAttempts: the bus gives up, drops its buffer saying how many messages, and publishing fails",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServer
        const lines: Array<Line> = []
        const bus = yield* readyBus(nats.url, { maxReconnectAttempts: 2, reconnectTimeWait: "100 millis" }).pipe(
          Effect.provide(recording(lines))
        )
        yield* Effect.promise(() => nats.kill())
        yield* until(Effect.map(bus.isReady, (ready) => !ready))
        for (let n = 0; n < 4; n++) yield* bus.publish(id("given-up"), `m${n}`)
        yield* eventually(() => natsLines(lines).some((line) => line.includes("dropped")), "10 seconds")
        assert.deepStrictEqual(
          natsLines(lines).filter((line) => line.includes("dropped")),
          ["NATS: connection closed; 4 buffered messages dropped"]
        )
        const after = yield* Effect.result(bus.publish(id("given-up"), "after"))
        assert.isTrue(Result.isFailure(after) && after.failure.message === "the NATS connection is closed")
        assert.isFalse(yield* bus.isReady)
      }),
    30_000
  )
})
