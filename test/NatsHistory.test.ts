import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Result, Scope } from "effect"
import * as Frame from "../src/Frame.ts"
import * as History from "../src/History.ts"
import * as NatsBus from "../src/NatsBus.ts"
import * as NatsHistory from "../src/NatsHistory.ts"
import { type MemoryClient, startMemoryServer } from "./utils/memory.ts"
import { natsServerWith } from "./utils/nats.ts"

const headersOf = (text: string): Record<string, string | undefined> =>
  Object.fromEntries(Result.getOrThrow(Frame.parse(text)).headers)
const bodyOf = (text: string) => Result.getOrThrow(Frame.parse(text)).body
const isPosition = (text: string) => text.startsWith("LHTTP/1.0 position\r\n")

/** A node: a server core with the NATS bus and the JetStream history, until its scope closes. */
const node = (url: string, size = 1000) =>
  startMemoryServer({}, undefined, {
    bus: NatsBus.layer({ servers: url }),
    history: NatsHistory.layer({ servers: url, policies: [{ prefix: "h-", size, ttl: Duration.minutes(5) }] })
  })

const publish = (client: MemoryClient, channel: string, body: string) =>
  client.send(`LHTTP/1.0 chat\r\npublish:${channel}\r\n\r\n${body}`)

/** Subscribes and answers the position frame's headers. */
const subscribe = (client: MemoryClient, channel: string, since?: { epoch?: string | undefined; offset?: string | undefined }) =>
  Effect.gen(function*() {
    yield* client.send(
      `LHTTP/1.0 chat\r\nsubscribe:${channel}\r\n` + (since === undefined ? "" : `since:${since.epoch}:${since.offset}\r\n`) +
        "\r\n"
    )
  })

/** Frames until the position frame: the recovered ones, and the position. */
const recovered = (client: MemoryClient) =>
  Effect.gen(function*() {
    const frames: Array<string> = []
    for (;;) {
      const frame = yield* client.next("10 seconds")
      if (isPosition(frame)) return { frames, position: headersOf(frame) }
      frames.push(frame)
    }
  })

describe("NatsHistory: JetStream history across nodes and restarts", () => {
  it.live("a client away while 100 messages are published gets exactly those, in order, on another node, then live ones", () =>
    Effect.gen(function*() {
      const nats = yield* natsServerWith({ jetstream: true })
      const one = yield* node(nats.url)
      const two = yield* node(nats.url)
      const scope = yield* Scope.make()
      const away = yield* one.connect().pipe(Scope.provide(scope))
      yield* subscribe(away, "h-room")
      const start = (yield* recovered(away)).position
      assert.strictEqual(start.offset, "0")
      const publisher = yield* two.connect()
      yield* publish(publisher, "h-room", "seen")
      const seen = headersOf(yield* away.next("10 seconds"))
      yield* Scope.close(scope, Exit.void)
      for (let i = 0; i < 100; i++) yield* publish(publisher, "h-room", `m${i}`)
      yield* publisher.nothing()
      const back = yield* two.connect()
      yield* subscribe(back, "h-room", seen)
      const { frames, position } = yield* recovered(back)
      assert.deepStrictEqual(frames.map(bodyOf), Array.from({ length: 100 }, (_, i) => `m${i}`))
      const offsets = frames.map(History.offsetOf)
      assert.isTrue(offsets.every((offset, i) => offset > (i === 0 ? Number(seen.offset) : offsets[i - 1]!)))
      assert.deepStrictEqual([position.recovered, position.offset, position.epoch], ["yes", String(offsets[99]), seen.epoch])
      yield* publish(publisher, "h-room", "live")
      const live = yield* back.next("10 seconds")
      assert.strictEqual(bodyOf(live), "live")
      assert.isAbove(History.offsetOf(live), offsets[99]!)
    }), { timeout: 60_000 })

  it.live("after every node and nats-server restarted, a client still recovers what it missed", () =>
    Effect.gen(function*() {
      const nats = yield* natsServerWith({ jetstream: true })
      const scope = yield* Scope.make()
      const first = yield* node(nats.url).pipe(Scope.provide(scope))
      const client = yield* first.connect().pipe(Scope.provide(scope))
      yield* subscribe(client, "h-keep")
      const start = (yield* recovered(client)).position
      const publisher = yield* first.connect().pipe(Scope.provide(scope))
      for (let i = 0; i < 100; i++) yield* publish(publisher, "h-keep", `m${i}`)
      yield* publisher.nothing()
      yield* Scope.close(scope, Exit.void)
      yield* Effect.promise(() => nats.kill())
      yield* Effect.promise(() => nats.restart())
      const again = yield* node(nats.url)
      const back = yield* again.connect()
      yield* subscribe(back, "h-keep", start)
      const { frames, position } = yield* recovered(back)
      assert.deepStrictEqual(frames.map(bodyOf), Array.from({ length: 100 }, (_, i) => `m${i}`))
      assert.deepStrictEqual([position.recovered, position.epoch], ["yes", start.epoch])
    }), { timeout: 60_000 })

  it.live("a history past its size says recovered:no, Trimmed, with what it kept and the current position", () =>
    Effect.gen(function*() {
      const nats = yield* natsServerWith({ jetstream: true })
      const server = yield* node(nats.url, 5)
      const client = yield* server.connect()
      yield* subscribe(client, "h-small")
      const start = (yield* recovered(client)).position
      const publisher = yield* server.connect()
      for (let i = 0; i < 9; i++) yield* publish(publisher, "h-small", `m${i}`)
      yield* publisher.nothing()
      const back = yield* server.connect()
      yield* subscribe(back, "h-small", start)
      const { frames, position } = yield* recovered(back)
      assert.deepStrictEqual(frames.map(bodyOf), ["m4", "m5", "m6", "m7", "m8"])
      assert.deepStrictEqual([position.recovered, position.reason], ["no", "Trimmed"])
      assert.strictEqual(position.offset, String(History.offsetOf(frames[4]!)))
      // from the oldest message kept, nothing is missing
      const again = yield* server.connect()
      yield* subscribe(again, "h-small", { epoch: start.epoch, offset: String(History.offsetOf(frames[0]!)) })
      const rest = yield* recovered(again)
      assert.deepStrictEqual([rest.frames.map(bodyOf), rest.position.recovered], [["m5", "m6", "m7", "m8"], "yes"])
    }), { timeout: 60_000 })

  it.live("two nodes publishing to one channel and a subscriber recovering meanwhile: every message once, none missing", () =>
    Effect.gen(function*() {
      const nats = yield* natsServerWith({ jetstream: true })
      const one = yield* node(nats.url)
      const two = yield* node(nats.url)
      const watcher = yield* one.connect()
      yield* subscribe(watcher, "h-race")
      const start = (yield* recovered(watcher)).position
      const publishers = [yield* one.connect(), yield* two.connect()]
      const total = 200
      const sending = Effect.forEach(
        Array.from({ length: total }, (_, i) => i),
        (i) => Effect.andThen(publish(publishers[i % 2]!, "h-race", `${i}`), Effect.sleep("1 millis")),
        { discard: true }
      )
      const recovering = Effect.gen(function*() {
        yield* Effect.sleep("40 millis")
        const back = yield* one.connect()
        yield* subscribe(back, "h-race", start)
        return back
      })
      const [, back] = yield* Effect.all([sending, recovering], { concurrency: "unbounded" })
      const bodies = new Set<string>()
      const offsets: Array<number> = []
      let positions = 0
      while (bodies.size < total) {
        const frame = yield* back.next("10 seconds")
        if (isPosition(frame)) {
          positions++
          continue
        }
        assert.isFalse(bodies.has(bodyOf(frame)), `twice: ${bodyOf(frame)}`)
        bodies.add(bodyOf(frame))
        offsets.push(History.offsetOf(frame))
      }
      assert.strictEqual(positions, 1)
      // the two publishers' frames may cross on the bus; each one came once, and the recovered part is in order
      assert.strictEqual(new Set(offsets).size, total)
    }), { timeout: 60_000 })
})
