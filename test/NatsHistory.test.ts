import { assert, describe, it } from "@effect/vitest"
import { jetstream, type JetStreamManager, jetstreamManager } from "@nats-io/jetstream"
import { connect as natsConnect, type NatsConnection } from "@nats-io/transport-node"
import { Duration, Effect, Exit, Result, Scope } from "effect"
import * as Net from "node:net"
import * as Frame from "../src/Frame.ts"
import * as History from "../src/History.ts"
import { recover } from "../src/internal/nats/history.ts"
import * as NatsHistory from "../src/NatsHistory.ts"
import { type MemoryClient, startMemoryServer } from "./utils/memory.ts"
import { natsServerLaterWith, natsServerWith } from "./utils/nats.ts"
import { freePort } from "./utils/process.ts"
import { until } from "./utils/wait.ts"

const headersOf = (text: string): Record<string, string | undefined> =>
  Object.fromEntries(Result.getOrThrow(Frame.parse(text)).headers)
const bodyOf = (text: string) => Result.getOrThrow(Frame.parse(text)).body
const isPosition = (text: string) => text.startsWith("LHTTP/1.0 position\r\n")

/** A node: a server core with the NATS bus and the JetStream history, until its scope closes. */
const starting = (url: string, size = 1000, subjectPrefix?: string) =>
  startMemoryServer({}, undefined, {
    bus: NatsHistory.layer({
      servers: url,
      subjectPrefix,
      connectRetry: "100 millis",
      streamCheckInterval: "200 millis",
      policies: [{ prefix: "h-", size, ttl: Duration.minutes(5) }]
    })
  })

/** A node, once it is ready (connected, its stream set up). */
const node = (url: string, size = 1000, subjectPrefix?: string) =>
  Effect.tap(starting(url, size, subjectPrefix), (started) => until(started.server.isReady, "10 seconds"))

/**
 * A TCP proxy in front of a nats-server, until the scope closes: `cut` drops its connections and refuses
 * new ones (the node behind it loses NATS while the others keep it), `mend` lets them through again.
 */
const proxy = (target: number) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const port = await freePort()
      const sockets = new Set<Net.Socket>()
      let open = true
      const server = Net.createServer((socket) => {
        if (!open) return socket.destroy()
        const upstream = Net.connect(target, "127.0.0.1")
        sockets.add(socket).add(upstream)
        socket.pipe(upstream).pipe(socket)
        const end = () => {
          socket.destroy()
          upstream.destroy()
          sockets.delete(socket)
          sockets.delete(upstream)
        }
        socket.on("error", end).on("close", end)
        upstream.on("error", end).on("close", end)
      })
      await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve))
      return {
        url: `nats://127.0.0.1:${port}`,
        server,
        cut: () => {
          open = false
          for (const socket of sockets) socket.destroy()
        },
        mend: () => {
          open = true
        }
      }
    }),
    ({ server, cut }) =>
      Effect.promise(() =>
        new Promise<void>((resolve) => {
          cut()
          server.close(() => resolve())
        })
      )
  )

/** A plain NATS client, as an original lhttp node (or any other program on the bus) is, until the scope closes. */
const raw = (url: string) =>
  Effect.acquireRelease(Effect.promise(() => natsConnect({ servers: url })), (nc) => Effect.promise(() => nc.close()))

/** Subscribes a plain NATS client to a subject and answers what it receives, as it arrives. */
const rawInbox = (nc: NatsConnection, subject: string) =>
  Effect.promise(async () => {
    const inbox: Array<string> = []
    nc.subscribe(subject, { callback: (_, message) => void inbox.push(message.string()) })
    await nc.flush()
    return inbox
  })

const publish = (client: MemoryClient, channel: string, body: string) =>
  client.send(`LHTTP/1.0 chat\r\npublish:${channel}\r\n\r\n${body}`)

/** Subscribes and answers the position frame's headers. */
const subscribe = (
  client: MemoryClient,
  channel: string,
  since?: { epoch?: string | undefined; offset?: string | undefined }
) =>
  Effect.gen(function*() {
    yield* client.send(
      `LHTTP/1.0 chat\r\nsubscribe:${channel}\r\n` +
        (since === undefined ? "since:now\r\n" : `since:${since.epoch}:${since.offset}\r\n`) + "\r\n"
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
  it.live(
    "a new leader of the stream: the node looks for what the old one may have stored and not republished (found by the fault campaign)",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerWith({ jetstream: true })
        const one = yield* node(nats.url)
        const reader = yield* one.connect()
        yield* subscribe(reader, "h-lead")
        const { epoch } = (yield* recovered(reader)).position
        const writer = yield* one.connect()
        yield* publish(writer, "h-lead", "seen")
        const seen = headersOf(yield* reader.next("10 seconds"))
        yield* reader.nothing()
        // JetStream says the stream has a new leader: every positioned subscriber is recovered since its last
        // position (here nothing was missing: the recovery's position frame says so)
        const nc = yield* raw(nats.url)
        nc.publish("$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.LHTTP_HISTORY", "{}")
        const looked = headersOf(yield* reader.next("10 seconds"))
        assert.deepStrictEqual([looked.channel, looked.epoch, looked.offset, looked.recovered], [
          "h-lead",
          epoch,
          seen.offset,
          "yes"
        ])
      }),
    { timeout: 60_000 }
  )

  it.live(
    "a publish with an id while the node has lost NATS is refused 503, nothing sent: a message replayed later may not be stored (found by the fault campaign)",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerWith({ jetstream: true })
        const path = yield* proxy(nats.port)
        const cut = yield* node(path.url)
        const other = yield* node(nats.url)
        const reader = yield* other.connect()
        yield* subscribe(reader, "h-cut")
        const { epoch } = (yield* recovered(reader)).position
        const writer = yield* cut.connect()
        path.cut()
        yield* until(Effect.map(cut.server.isReady, (ready) => !ready), "10 seconds")
        yield* writer.send("LHTTP/1.0 m\r\npublish:h-cut\r\nid:w1\r\n\r\nduring")
        assert.match(
          yield* writer.next("10 seconds"),
          /^LHTTP\/1\.0 error\r\nstatus:503\r\nreason:BusUnavailable\r\nid:w1\r\n/
        )
        path.mend()
        yield* until(cut.server.isReady, "10 seconds")
        // back: acknowledged with its position (once the buffer's hold is over), and the reader gets it there
        let ack = ""
        for (let i = 2; !ack.startsWith("LHTTP/1.0 m\r\nid:"); i++) {
          yield* writer.send(`LHTTP/1.0 m\r\npublish:h-cut\r\nid:w${i}\r\n\r\nafter`)
          ack = yield* writer.next("10 seconds")
          if (!ack.startsWith("LHTTP/1.0 m\r\nid:")) {
            assert.match(ack, /^LHTTP\/1\.0 error\r\nstatus:503\r\nreason:BusUnavailable\r\n/)
            yield* Effect.sleep("100 millis")
          }
        }
        const offset = Number(new RegExp(`\r\npositions:h-cut:${epoch}:(\\d+)\r\n`).exec(ack)![1])
        const delivered = yield* reader.next("10 seconds")
        assert.deepStrictEqual([bodyOf(delivered), History.offsetOf(delivered)], ["after", offset])
        // nothing of the refused one
        yield* reader.nothing()
      }),
    { timeout: 60_000 }
  )

  it.live(
    "a publish with an id is acknowledged once the stream stored it, with the position its subscribers see",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerWith({ jetstream: true })
        const one = yield* node(nats.url)
        const two = yield* node(nats.url)
        const reader = yield* one.connect()
        yield* subscribe(reader, "h-acked")
        const { epoch } = (yield* recovered(reader)).position
        const writer = yield* two.connect()
        const acks: Array<string> = []
        for (let i = 0; i < 20; i++) {
          yield* writer.send(`LHTTP/1.0 chat\r\npublish:h-acked plain-acked\r\nid:a${i}\r\n\r\nm${i}`)
        }
        for (let i = 0; i < 20; i++) acks.push(yield* writer.next("10 seconds"))
        // in the order sent; only the history channel has a position, the stream's sequence
        const offsets = acks.map((ack, i) => {
          const match = new RegExp(`^LHTTP/1\\.0 chat\r\nid:a${i}\r\npositions:h-acked:${epoch}:(\\d+)\r\n\r\n$`)
            .exec(ack)
          assert.isNotNull(match, ack)
          return Number(match![1])
        })
        const seen: Array<number> = []
        for (let i = 0; i < 20; i++) seen.push(History.offsetOf(yield* reader.next("10 seconds")))
        assert.deepStrictEqual(seen, offsets)
      }),
    { timeout: 60_000 }
  )

  it.live(
    "a client away while 100 messages are published gets exactly those, in order, on another node, then live ones",
    () =>
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
        assert.deepStrictEqual([position.recovered, position.offset, position.epoch], [
          "yes",
          String(offsets[99]),
          seen.epoch
        ])
        yield* publish(publisher, "h-room", "live")
        const live = yield* back.next("10 seconds")
        assert.strictEqual(bodyOf(live), "live")
        assert.isAbove(History.offsetOf(live), offsets[99]!)
      }),
    { timeout: 60_000 }
  )

  it.live(
    "after every node and nats-server restarted, a client still recovers what it missed",
    () =>
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
      }),
    { timeout: 60_000 }
  )

  it.live(
    "a history past its size says recovered:no, Trimmed, with what it kept and the current position",
    () =>
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
      }),
    { timeout: 60_000 }
  )

  it.live(
    "two nodes publishing to one channel and a subscriber recovering meanwhile: every message once, none missing, in the stream's order",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerWith({ jetstream: true })
        const one = yield* node(nats.url)
        const two = yield* node(nats.url)
        const watcher = yield* one.connect()
        yield* subscribe(watcher, "h-race")
        const start = (yield* recovered(watcher)).position
        const publishers = [yield* one.connect(), yield* two.connect()]
        let sent = 0
        const send = Effect.suspend(() => {
          const n = sent++
          return publish(publishers[n % 2]!, "h-race", `${n}`)
        })
        // 200 before the recovery: it reads them one JetStream request each
        for (let i = 0; i < 200; i++) yield* send
        yield* Effect.forEach(publishers, (publisher) => publisher.nothing(), { discard: true })
        // all 200 in the stream before the subscription (the nodes append them one JetStream request each,
        // and under load that lags): the watcher has them, numbered, only once they are
        for (let i = 0; i < 200; i++) yield* watcher.next("20 seconds")
        const back = yield* one.connect()
        // back's frames, as they arrive
        const frames: Array<string> = []
        yield* Effect.forkChild(
          Effect.forever(Effect.flatMap(back.next("60 seconds"), (frame) => Effect.sync(() => frames.push(frame))))
        )
        const positionSeen = () => frames.some(isPosition)
        yield* subscribe(back, "h-race", start)
        // the barrier: publishing goes on until the position frame is here, then 20 more
        const sentAtSubscribe = sent
        let sentAtPosition = -1
        while (sentAtPosition < 0 || sent < sentAtPosition + 20) {
          yield* send
          if (sentAtPosition < 0 && positionSeen()) sentAtPosition = sent
          yield* Effect.sleep("1 millis")
        }
        // the recovery overlapped the publishing: messages were published after the subscription was sent and before
        // its position frame came
        assert.isAbove(sentAtPosition - sentAtSubscribe, 0)
        const total = sent
        // a marker from each node after the loop: once both are here, anything sent twice would be here too
        yield* publish(publishers[0]!, "h-race", "end 0")
        yield* publish(publishers[1]!, "h-race", "end 1")
        yield* until(
          Effect.sync(() =>
            frames.some((f) => !isPosition(f) && bodyOf(f) === "end 0") &&
            frames.some((f) => !isPosition(f) && bodyOf(f) === "end 1")
          ),
          "15 seconds"
        )
        const delivered = frames.filter((frame) => !isPosition(frame))
        const bodies = delivered.map(bodyOf)
        assert.strictEqual(frames.filter(isPosition).length, 1)
        // every message once, none missing
        assert.sameMembers(bodies, [...Array.from({ length: total }, (_, n) => `${n}`), "end 0", "end 1"])
        assert.strictEqual(new Set(bodies).size, bodies.length)
        // in the stream's order, the recovered part and the live part alike: offsets only grow
        const offsets = delivered.map(History.offsetOf)
        offsets.forEach((offset, i) => {
          if (i > 0 && !(offset > offsets[i - 1]!)) assert.fail(`offset ${offset} after ${offsets[i - 1]} at ${i}`)
        })
        // the position frame sits between the recovered part and the live part, at the recovery's offset
        const at = frames.findIndex(isPosition)
        const position = headersOf(frames[at]!)
        assert.strictEqual(position.recovered, "yes")
        assert.isTrue(frames.slice(0, at).every((f) => History.offsetOf(f) <= Number(position.offset)))
        assert.isTrue(frames.slice(at + 1).every((f) => History.offsetOf(f) > Number(position.offset)))
        assert.isAtLeast(at, 200)
      }),
    { timeout: 60_000 }
  )

  it.live(
    "the stream holds 1 GiB by default; with a small maxBytes the oldest messages go, and a recovery says Trimmed with what is kept",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerWith({ jetstream: true })
        const nc = yield* raw(nats.url)
        const jsm = yield* Effect.promise(() => jetstreamManager(nc))
        yield* node(nats.url)
        assert.strictEqual((yield* Effect.promise(() => jsm.streams.info("LHTTP_HISTORY"))).config.max_bytes, 2 ** 30)
        const small = yield* startMemoryServer({}, undefined, {
          bus: NatsHistory.layer({
            servers: nats.url,
            connectRetry: "100 millis",
            stream: "SMALL",
            republishPrefix: "small-positions.",
            subjectPrefix: "small.",
            maxBytes: 8 * 1024,
            policies: [{ prefix: "h-", size: 1000, ttl: Duration.minutes(5) }]
          })
        })
        yield* until(small.server.isReady, "10 seconds")
        assert.strictEqual((yield* Effect.promise(() => jsm.streams.info("SMALL"))).config.max_bytes, 8 * 1024)
        const client = yield* small.connect()
        yield* subscribe(client, "h-big")
        const start = (yield* recovered(client)).position
        const publisher = yield* small.connect()
        const body = (i: number) => `${String(i).padStart(3, "0")}${"x".repeat(1000)}`
        for (let i = 0; i < 30; i++) yield* publish(publisher, "h-big", body(i))
        yield* publisher.nothing()
        // all 30 live frames came: the stream stored each before it dropped the oldest
        for (let i = 0; i < 30; i++) assert.strictEqual(bodyOf(yield* client.next("10 seconds")), body(i))
        const back = yield* small.connect()
        yield* subscribe(back, "h-big", start)
        const { frames, position } = yield* recovered(back)
        // 30 KB do not fit in 8 KiB: the oldest went; what is kept is the newest, in order
        const kept = frames.map(bodyOf)
        assert.isAbove(kept.length, 0)
        assert.isBelow(kept.length, 30)
        assert.deepStrictEqual(kept, Array.from({ length: kept.length }, (_, i) => body(30 - kept.length + i)))
        assert.deepStrictEqual([position.recovered, position.reason], ["no", "Trimmed"])
      }),
    { timeout: 60_000 }
  )

  it.live(
    "positions travel beside the text: the NATS payload and a plain subscriber get the published text, forged positions never pass",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerWith({ jetstream: true })
        const one = yield* node(nats.url)
        const two = yield* node(nats.url)
        const nc = yield* raw(nats.url)
        const onTheBus = yield* rawInbox(nc, "lhttp.h-room")
        const positioned = yield* one.connect()
        yield* subscribe(positioned, "h-room")
        const { epoch } = (yield* recovered(positioned)).position
        const plain = yield* two.connect()
        yield* plain.send("LHTTP/1.0 chat\r\nsubscribe:h-room\r\n\r\n")
        yield* plain.nothing()
        const publisher = yield* two.connect()
        const forged = `LHTTP/1.0 chat\r\nx-order:2\r\npublish:h-room\r\noffset:5\r\nepoch:${epoch}\r\n\r\nhello`
        yield* publisher.send(forged)
        yield* until(Effect.sync(() => onTheBus.length === 1))
        // a program on the bus (an original lhttp node, another app) publishes too
        nc.publish("lhttp.h-room", "LHTTP/1.0 chat\r\npublish:h-room\r\n\r\nfrom the bus")
        assert.deepStrictEqual([yield* plain.next("10 seconds"), yield* plain.next("10 seconds")], [
          forged,
          "LHTTP/1.0 chat\r\npublish:h-room\r\n\r\nfrom the bus"
        ])
        yield* until(Effect.sync(() => onTheBus.length >= 2))
        assert.deepStrictEqual(onTheBus[0], forged)
        const [first, second] = [yield* positioned.next("10 seconds"), yield* positioned.next("10 seconds")]
        const offsets = [History.offsetOf(first), History.offsetOf(second)]
        assert.deepStrictEqual(headersOf(first), {
          channel: "h-room",
          offset: String(offsets[0]),
          epoch,
          "x-order": "2",
          publish: "h-room"
        })
        assert.notStrictEqual(offsets[0], 5)
        assert.isAbove(offsets[1]!, offsets[0]!)
        assert.deepStrictEqual(bodyOf(second), "from the bus")
      }),
    { timeout: 60_000 }
  )

  it.live(
    "what anyone published on the bus while a client was away is recovered: nothing missing behind recovered:yes",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerWith({ jetstream: true })
        const server = yield* node(nats.url)
        const nc = yield* raw(nats.url)
        const scope = yield* Scope.make()
        const away = yield* server.connect().pipe(Scope.provide(scope))
        yield* subscribe(away, "h-gone")
        const start = (yield* recovered(away)).position
        yield* Scope.close(scope, Exit.void)
        const publisher = yield* server.connect()
        const onTheBus = yield* rawInbox(nc, "lhttp.h-gone")
        yield* publish(publisher, "h-gone", "ours")
        yield* until(Effect.sync(() => onTheBus.length === 1))
        nc.publish("lhttp.h-gone", "LHTTP/1.0 chat\r\npublish:h-gone\r\n\r\ntheirs")
        yield* Effect.promise(() => nc.flush())
        yield* publish(publisher, "h-gone", "ours again")
        const watcher = yield* server.connect()
        yield* subscribe(watcher, "h-gone", start)
        // what the stream had stored when the recovery read it comes before the position frame, the rest live after it
        const { frames, position } = yield* recovered(watcher)
        while (frames.length < 3) frames.push(yield* watcher.next("10 seconds"))
        assert.deepStrictEqual(frames.map(bodyOf), ["ours", "theirs", "ours again"])
        assert.strictEqual(position.recovered, "yes")
        yield* watcher.nothing()
      }),
    { timeout: 60_000 }
  )

  it.live(
    "with the empty prefix of original lhttp nodes, a message an original node put on the channel's subject is recorded and positioned",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerWith({ jetstream: true })
        const server = yield* node(nats.url, 1000, "")
        const nc = yield* raw(nats.url)
        const onTheBus = yield* rawInbox(nc, "h-go")
        const client = yield* server.connect()
        yield* subscribe(client, "h-go")
        const { epoch } = (yield* recovered(client)).position
        nc.publish("h-go", "LHTTP/1.0 chat\r\npublish:h-go\r\noffset:1\r\n\r\nfrom go")
        const got = yield* client.next("10 seconds")
        assert.deepStrictEqual([headersOf(got).epoch, bodyOf(got)], [epoch, "from go"])
        assert.isAbove(History.offsetOf(got), 0)
        // and what our node publishes reaches an original node's subscriber as it was published
        const publisher = yield* server.connect()
        yield* publish(publisher, "h-go", "to go")
        yield* until(Effect.sync(() => onTheBus.includes("LHTTP/1.0 chat\r\npublish:h-go\r\n\r\nto go")))
        assert.strictEqual(bodyOf(yield* client.next("10 seconds")), "to go")
        // a channel with a dot is not on a one-token subject: no history there
        yield* client.send("LHTTP/1.0 chat\r\nsubscribe:h-a.b\r\nsince:now\r\n\r\n")
        assert.deepStrictEqual(headersOf(yield* client.next("10 seconds")), { channel: "h-a.b", reason: "NoHistory" })
      }),
    { timeout: 60_000 }
  )

  it.live(
    "on a NATS without JetStream the bus works, no channel keeps history, and the history says why",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerWith()
        const server = yield* node(nats.url)
        const client = yield* server.connect()
        yield* subscribe(client, "h-room")
        assert.deepStrictEqual(headersOf(yield* client.next("10 seconds")), { channel: "h-room", reason: "NoHistory" })
        const publisher = yield* server.connect()
        yield* publish(publisher, "h-room", "still delivered")
        assert.strictEqual(yield* client.next("10 seconds"), "LHTTP/1.0 chat\r\npublish:h-room\r\n\r\nstill delivered")
      }),
    { timeout: 60_000 }
  )

  it.live(
    "a node started before NATS is not ready, then ready with its history once NATS comes",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerLaterWith({ jetstream: true })
        const server = yield* starting(nats.url)
        const client = yield* server.connect()
        // subscribed before NATS: plain, waiting for the bus
        yield* client.send("LHTTP/1.0 chat\r\nsubscribe:h-early\r\n\r\n")
        yield* client.nothing()
        assert.isFalse(yield* server.server.isReady)
        yield* Effect.promise(() => nats.restart())
        yield* until(server.server.isReady, "10 seconds")
        const positioned = yield* server.connect()
        yield* subscribe(positioned, "h-early")
        const start = (yield* recovered(positioned)).position
        const publisher = yield* server.connect()
        yield* publish(publisher, "h-early", "after")
        assert.strictEqual(yield* client.next("10 seconds"), "LHTTP/1.0 chat\r\npublish:h-early\r\n\r\nafter")
        assert.strictEqual(bodyOf(yield* positioned.next("10 seconds")), "after")
        const back = yield* server.connect()
        yield* subscribe(back, "h-early", start)
        const again = yield* recovered(back)
        assert.deepStrictEqual([again.frames.map(bodyOf), again.position.recovered], [["after"], "yes"])
      }),
    { timeout: 60_000 }
  )

  it.live(
    "a node that lost NATS a while fills the gap for its positioned subscribers once back: the missed messages, a position frame, then live",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerWith({ jetstream: true })
        const path = yield* proxy(nats.port)
        const far = yield* node(path.url)
        const near = yield* node(nats.url)
        const positioned = yield* far.connect()
        yield* subscribe(positioned, "h-gap")
        yield* recovered(positioned)
        const publisher = yield* near.connect()
        yield* publish(publisher, "h-gap", "before")
        assert.strictEqual(bodyOf(yield* positioned.next("10 seconds")), "before")
        path.cut()
        yield* until(Effect.map(far.server.isReady, (ready) => !ready), "10 seconds")
        for (const body of ["missed 1", "missed 2", "missed 3"]) yield* publish(publisher, "h-gap", body)
        yield* publisher.nothing()
        path.mend()
        // back on NATS, the node looks for what its positioned subscribers missed: those, then the position frame
        const { frames, position } = yield* recovered(positioned)
        assert.deepStrictEqual(frames.map(bodyOf), ["missed 1", "missed 2", "missed 3"])
        assert.deepStrictEqual([position.recovered, position.offset], ["yes", String(History.offsetOf(frames[2]!))])
        yield* publish(publisher, "h-gap", "live")
        assert.strictEqual(bodyOf(yield* positioned.next("10 seconds")), "live")
        yield* positioned.nothing()
      }),
    { timeout: 60_000 }
  )

  it.live(
    "during a NATS outage a history channel's publishes wait in the bus's bounded buffer, stall nothing, and are recorded after",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerWith({ jetstream: true })
        const server = yield* node(nats.url)
        const watcher = yield* server.connect()
        yield* subscribe(watcher, "h-out")
        const start = (yield* recovered(watcher)).position
        const publisher = yield* server.connect()
        yield* Effect.promise(() => nats.kill())
        yield* until(Effect.map(server.server.isReady, (ready) => !ready), "10 seconds")
        for (let i = 0; i < 5; i++) yield* publish(publisher, "h-out", `m${i}`)
        // accepted at once (no error frame), and the connection's next message is answered right after them
        yield* publisher.nothing()
        yield* Effect.promise(() => nats.restart())
        yield* until(server.server.isReady, "15 seconds")
        // the watcher's live frames arrive once the buffer is sent (after the position frame that says the node,
        // back on NATS, found nothing missing); a client back since the start gets all five
        const live: Array<string> = []
        while (live.length < 5) {
          const frame = yield* watcher.next("15 seconds")
          if (isPosition(frame)) assert.strictEqual(headersOf(frame).recovered, "yes")
          else live.push(bodyOf(frame))
        }
        assert.deepStrictEqual(live, ["m0", "m1", "m2", "m3", "m4"])
        const back = yield* server.connect()
        yield* subscribe(back, "h-out", start)
        const again = yield* recovered(back)
        assert.deepStrictEqual([again.frames.map(bodyOf), again.position.recovered], [
          ["m0", "m1", "m2", "m3", "m4"],
          "yes"
        ])
      }),
    { timeout: 60_000 }
  )

  it.live(
    "a stream deleted while NATS stays up is made again: delivery goes on, with a new epoch that recoveries report",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerWith({ jetstream: true })
        const server = yield* node(nats.url)
        const nc = yield* raw(nats.url)
        const watcher = yield* server.connect()
        yield* subscribe(watcher, "h-del")
        const start = (yield* recovered(watcher)).position
        yield* Effect.promise(async () => (await jetstreamManager(nc)).streams.delete("LHTTP_HISTORY"))
        // published until one arrives: the stream is back
        const publisher = yield* server.connect()
        let got: string | undefined
        for (let i = 0; got === undefined && i < 100; i++) {
          yield* publish(publisher, "h-del", `probe ${i}`)
          got = yield* watcher.next("100 millis").pipe(Effect.orElseSucceed(() => undefined))
        }
        assert.isDefined(got)
        assert.notStrictEqual(headersOf(got!).epoch, start.epoch)
        const back = yield* server.connect()
        yield* subscribe(back, "h-del", start)
        assert.deepStrictEqual([(yield* recovered(back)).position.reason], ["EpochChanged"])
      }),
    { timeout: 60_000 }
  )
})

describe("NatsHistory: a recovery's reads interleaved with the stream", () => {
  // a stream of its own on a real nats-server, the recovery's JetStream manager wrapped so that the test can act
  // between two of its requests (a message stored meanwhile, a replica that lags)
  const setUp = Effect.gen(function*() {
    const nats = yield* natsServerWith({ jetstream: true })
    const connection = yield* Effect.acquireRelease(
      Effect.promise(() => natsConnect({ servers: nats.url })),
      (nc) => Effect.promise(() => nc.close())
    )
    const jsm = yield* Effect.promise(() => jetstreamManager(connection))
    yield* Effect.promise(() =>
      jsm.streams.add({ name: "T", subjects: ["t.>"], allow_direct: true, max_msgs_per_subject: 100 })
    )
    const js = jetstream(connection)
    const publish = (subject: string, body: string) =>
      Effect.promise(() => js.publish(subject, Frame.render(Frame.make("chat", { publish: subject }, body))))
    return { jsm, publish }
  })
  const policy: History.Policy = { prefix: "t.", size: 100, ttl: Duration.minutes(5) }
  const bodies = (recovery: History.Recovery) => recovery.messages.map((message) => bodyOf(message.text))

  it.live("finding 6: a message stored between the channel's last and the stream's state is recovered", () =>
    Effect.gen(function*() {
      const { jsm, publish } = yield* setUp
      yield* publish("t.a", "one") // 1
      const other = yield* publish("t.b", "x") // 2: the subscriber's position (a since:now answer) is the stream's
      // the stream's state is asked after the channel's last (1, before the position): a message of the channel
      // stored in between (3) is at or before the state's position
      let stored = false
      const interleaved = new Proxy(jsm, {
        get: (target, name) =>
          name !== "streams" ? Reflect.get(target, name) : new Proxy(target.streams, {
            get: (streams, method) => {
              const real = Reflect.get(streams, method) as (...args: Array<unknown>) => Promise<unknown>
              if (method !== "info") return real.bind(streams)
              return async (...args: Array<unknown>) => {
                if (!stored) {
                  stored = true
                  await Effect.runPromise(publish("t.a", "two"))
                }
                return real.apply(streams, args)
              }
            }
          })
      }) as JetStreamManager
      const recovery = yield* Effect.promise(() =>
        recover(interleaved, "T", "e", "t.a", policy, { epoch: "e", offset: other.seq }, 1 << 20, undefined)
      )
      assert.isTrue(stored)
      assert.deepStrictEqual(bodies(recovery), ["two"])
      assert.deepStrictEqual(recovery.position, { epoch: "e", offset: 3 })
      assert.isUndefined(recovery.reason)
    }))

  it.live("finding 5: a replica behind what the node delivered live does not set the position; the leader does", () =>
    Effect.gen(function*() {
      const { jsm, publish } = yield* setUp
      const first = yield* publish("t.a", "one") // 1
      yield* publish("t.a", "two") // 2
      yield* publish("t.a", "three") // 3: delivered live on this node
      // a direct get of the channel's last answered by a replica that lags: the channel's first message
      const stale = yield* Effect.promise(() => jsm.direct.getMessage("T", { seq: first.seq }))
      const lagging = new Proxy(jsm, {
        get: (target, name) =>
          name !== "direct" ? Reflect.get(target, name) : new Proxy(target.direct, {
            get: (direct, method) => {
              const real = Reflect.get(direct, method) as (...args: Array<unknown>) => Promise<unknown>
              if (method !== "getMessage") return real.bind(direct)
              return (stream: string, query: { readonly last_by_subj?: string }) =>
                query.last_by_subj === undefined ? real.call(direct, stream, query) : Promise.resolve(stale)
            }
          })
      }) as JetStreamManager
      const recovery = yield* Effect.promise(() =>
        recover(lagging, "T", "e", "t.a", policy, { epoch: "e", offset: first.seq }, 1 << 20, {
          epoch: "e",
          offset: 3
        })
      )
      assert.deepStrictEqual(bodies(recovery), ["two", "three"])
      assert.deepStrictEqual(recovery.position, { epoch: "e", offset: 3 })
    }))
})
