/**
 * The HTTP transports (docs/transports.md) over real sockets: Server-Sent
 * Events, long-poll and `POST /send`, beside WebSocket clients, on one core.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Layer, Result } from "effect"
import * as Http from "node:http"
import { vi } from "vitest"
import * as Connection from "../src/Connection.ts"
import * as Echo from "../src/demo/Echo.ts"
import * as Filter from "../src/Filter.ts"
import * as Frame from "../src/Frame.ts"
import * as History from "../src/History.ts"
import type * as LhttpServer from "../src/LhttpServer.ts"
import * as LhttpServerModule from "../src/LhttpServer.ts"
import * as NodeLhttpServer from "../src/NodeLhttpServer.ts"
import * as Processor from "../src/Processor.ts"
import * as Rejections from "../src/Rejection.ts"
import { Rejection } from "../src/Rejection.ts"
import type * as Transport from "../src/Transport.ts"
import { getJson, send, sse, type SseClient } from "./utils/http.ts"
import { connect, frame, request, startServer } from "./utils/lhttp.ts"
import { startMemoryServer } from "./utils/memory.ts"
import { eventually, until } from "./utils/wait.ts"

// the connections whose onClose ran, by the id the processor gave them
const ended: Array<string> = []
const Life = Processor.make("life")
const LifeLive = Life.toLayer({
  onMessage: (exchange) => exchange.send(exchange.connection.id),
  onClose: (connection) => Effect.sync(() => ended.push(connection.id))
})

const Who = Processor.make("who")
const WhoLive = Who.toLayer({
  onMessage: (exchange) =>
    exchange.send(JSON.stringify({
      url: exchange.connection.url,
      agent: exchange.connection.requestHeaders["user-agent"],
      channels: Array.from(exchange.connection.channels)
    }))
})

let gate = Deferred.makeUnsafe<void>()
const Slow = Processor.make("slow")
const SlowLive = Slow.toLayer({
  onMessage: (exchange) => Effect.suspend(() => Deferred.await(gate)).pipe(Effect.andThen(exchange.send("done")))
})

const Bye = Processor.make("bye")
const ByeLive = Bye.toLayer({ onMessage: (exchange) => exchange.connection.close(4100, "bye") })

const server = (options: Parameters<typeof startServer>[0] = {}) =>
  startServer(
    { processors: [Echo.Echo, Life, Who, Slow, Bye], ...options },
    Layer.mergeAll(Echo.layer, LifeLive, WhoLive, SlowLive, ByeLive)
  )

/** A header of a frame's text ("" when it has none). */
const headerOf = (text: string, name: string) => Result.getOrThrow(Frame.parse(text)).headers.get(name) ?? ""

/** Opens an SSE connection and reads its `connected` event: the stream and the connection's key. */
const openSse = (http: string, query = "", headers?: Record<string, string>) =>
  Effect.gen(function*() {
    const stream = yield* sse(`${http}/sse${query}`, headers)
    assert.strictEqual(stream.status, 200)
    const connected = yield* stream.next
    assert.strictEqual(connected.event, "connected")
    return { stream, key: connected.data }
  })

/** The next event that carries a frame, as the frame's text (head CRLF restored, as the docs say). */
const nextFrame = (stream: SseClient) =>
  Effect.map(stream.next, (event) => {
    const blank = event.data.indexOf("\n\n")
    const head = blank === -1 ? event.data : event.data.slice(0, blank)
    const body = blank === -1 ? "" : event.data.slice(blank + 2)
    return { id: event.id, event: event.event, text: `${head.split("\n").join("\r\n")}\r\n\r\n${body}` }
  })

/** Opens a long-poll connection: its key. */
const openPoll = (http: string, query = "") =>
  Effect.gen(function*() {
    const answer = yield* getJson(`${http}/poll${query}`)
    assert.strictEqual(answer.status, 200)
    assert.strictEqual(answer.body.cursor, 0)
    assert.deepStrictEqual(answer.body.frames, [])
    return answer.body.connection
  })

const poll = (http: string, key: string, cursor: number) => getJson(`${http}/poll?connection=${key}&cursor=${cursor}`)

/** Polls from `cursor` until `count` frames came: the frames and the last cursor. */
const pollFrames = (http: string, key: string, cursor: number, count: number) =>
  Effect.gen(function*() {
    const frames: Array<string> = []
    while (frames.length < count) {
      const answer = yield* poll(http, key, cursor)
      assert.strictEqual(answer.status, 200, JSON.stringify(answer.body))
      frames.push(...answer.body.frames!)
      cursor = answer.body.cursor!
    }
    return { frames, cursor }
  })

/** `POST /send` with raw bytes: the status, the body and the headers. */
const sendRaw = (http: string, key: string, body: string | Uint8Array<ArrayBuffer>) =>
  Effect.promise(async () => {
    const response = await fetch(`${http}/send?connection=${encodeURIComponent(key)}`, { method: "POST", body })
    return { status: response.status, body: await response.text(), headers: response.headers }
  })

describe("HTTP transports: one channel, three transports", () => {
  it.live("WebSocket, SSE and long-poll clients on one channel each get every message once, in order", () =>
    Effect.gen(function*() {
      const { http, url } = yield* server()
      const ws = yield* connect(url)
      yield* ws.send(frame("c", { subscribe: "mix" }))
      yield* ws.nothing()
      const { stream, key: sseKey } = yield* openSse(http, "?subscribe=mix")
      const pollKey = yield* openPoll(http, "?subscribe=mix")
      // both HTTP connections have subscribed once an echo sent after the subscription comes back
      assert.strictEqual((yield* send(http, sseKey, frame("echo", {}, "ready"))).status, 202)
      assert.strictEqual((yield* nextFrame(stream)).text, frame("echo", {}, "ready"))
      assert.strictEqual((yield* send(http, pollKey, frame("echo", {}, "ready"))).status, 202)
      const ready = yield* pollFrames(http, pollKey, 0, 1)
      assert.deepStrictEqual(ready.frames, [frame("echo", {}, "ready")])

      const n = 20
      const published = (from: string, i: number) => frame("chat", { publish: "mix" }, `${from} ${i}`)
      const posting = Effect.forEach(
        Array.from({ length: n }, (_, i) => i),
        (i) =>
          Effect.gen(function*() {
            assert.strictEqual((yield* send(http, sseKey, published("sse", i))).status, 202)
            assert.strictEqual((yield* send(http, pollKey, published("poll", i))).status, 202)
          }),
        { discard: true }
      )
      const postingFiber = yield* Effect.forkChild(posting)
      for (let i = 0; i < n; i++) yield* ws.send(published("ws", i))
      yield* Fiber.join(postingFiber)

      const expected = ["ws", "sse", "poll"].flatMap((from) => Array.from({ length: n }, (_, i) => published(from, i)))
      const check = (received: ReadonlyArray<string>, who: string) => {
        assert.strictEqual(received.length, expected.length, who)
        assert.deepStrictEqual([...received].sort(), [...expected].sort(), who)
        // each publisher's messages in the order it sent them
        for (const from of ["ws", "sse", "poll"]) {
          const mine = received.filter((text) => text.includes(`\r\n\r\n${from} `))
          assert.deepStrictEqual(
            mine,
            expected.filter((text) => text.includes(`\r\n\r\n${from} `)),
            `${who} from ${from}`
          )
        }
      }
      const byWs: Array<string> = []
      while (byWs.length < expected.length) byWs.push(yield* ws.next())
      check(byWs, "ws")
      const bySse: Array<string> = []
      while (bySse.length < expected.length) bySse.push((yield* nextFrame(stream)).text)
      check(bySse, "sse")
      const byPoll = yield* pollFrames(http, pollKey, ready.cursor, expected.length)
      check(byPoll.frames, "poll")
      // and nothing more: a marker published after is the next frame everywhere
      yield* ws.send(frame("chat", { publish: "mix" }, "end"))
      assert.strictEqual(yield* ws.next(), frame("chat", { publish: "mix" }, "end"))
      assert.strictEqual((yield* nextFrame(stream)).text, frame("chat", { publish: "mix" }, "end"))
      assert.deepStrictEqual((yield* pollFrames(http, pollKey, byPoll.cursor, 1)).frames, [
        frame("chat", { publish: "mix" }, "end")
      ])
    }))

  it.live("a request sent with POST /send is answered on the connection's stream with its id; error frames too", () =>
    Effect.gen(function*() {
      const { http } = yield* server()
      const { stream, key } = yield* openSse(http)
      yield* send(http, key, frame("echo", { id: "e1" }, "ping"))
      assert.strictEqual((yield* nextFrame(stream)).text, frame("echo", { id: "e1" }, "ping"))
      yield* send(http, key, frame("nothing-here", { id: "e2" }))
      assert.strictEqual(
        (yield* nextFrame(stream)).text,
        "LHTTP/1.0 error\r\nstatus:404\r\nreason:UnknownCommand\r\nid:e2\r\n\r\nno processor for the command \"nothing-here\""
      )
    }))

  it.live("the connection's peer is the request that opened it; the query's channels are subscribed", () =>
    Effect.gen(function*() {
      const { http } = yield* server()
      const { stream, key } = yield* openSse(http, "?subscribe=a,b%20c&x=1", { "user-agent": "sse-agent" })
      yield* send(http, key, frame("who"), { "user-agent": "another" })
      const who = JSON.parse((yield* nextFrame(stream)).text.split("\r\n\r\n")[1]!)
      assert.deepStrictEqual(who, { url: "/sse?subscribe=a,b%20c&x=1", agent: "sse-agent", channels: ["a", "b", "c"] })
    }))
})

describe("HTTP transports: SSE", () => {
  it.live("the stream's format: retry, connected, then one event per frame with id <key>:<n>, the command, a data line per line", () =>
    Effect.gen(function*() {
      const { http, url } = yield* server()
      const publisher = yield* connect(url)
      const { stream, key } = yield* openSse(http, "?subscribe=fmt")
      assert.strictEqual(stream.headers["content-type"], "text/event-stream; charset=utf-8")
      assert.strictEqual(stream.headers["cache-control"], "no-cache, no-transform")
      // no response buffering in proxies that honour it (nginx): docs/operations.md
      assert.strictEqual(stream.headers["x-accel-buffering"], "no")
      assert.match(key, /^[A-Za-z0-9_-]{22}$/)
      yield* send(http, key, frame("echo", {}, ""))
      assert.strictEqual((yield* nextFrame(stream)).id, `${key}:1`)
      const published = frame("chat", { publish: "fmt", k: "v" }, "line 1\r\nline 2\nline 3")
      yield* publisher.send(published)
      const event = yield* nextFrame(stream)
      assert.deepStrictEqual([event.id, event.event], [`${key}:2`, "chat"])
      // CRLF in the head comes back; in the body every line break is LF
      assert.strictEqual(event.text, frame("chat", { publish: "fmt", k: "v" }, "line 1\nline 2\nline 3"))
      assert.strictEqual(
        stream.raw(),
        `retry: 1000\n\nevent: connected\ndata: ${key}\n\n` +
          `id: ${key}:1\nevent: echo\ndata: LHTTP/1.0 echo\ndata: \ndata: \n\n` +
          `id: ${key}:2\nevent: chat\ndata: LHTTP/1.0 chat\ndata: publish:fmt\ndata: k:v\ndata: \n` +
          `data: line 1\ndata: line 2\ndata: line 3\n\n`
      )
    }))

  it.live("a comment line is written at each heartbeat interval, between events", () =>
    Effect.gen(function*() {
      const { http } = yield* server({ heartbeatInterval: "50 millis" })
      const { stream, key } = yield* openSse(http)
      yield* eventually(() => stream.raw().endsWith(":\n\n"))
      // the stream goes on: a frame after the comments
      yield* send(http, key, frame("echo", {}, "after"))
      assert.strictEqual((yield* nextFrame(stream)).text, frame("echo", {}, "after"))
      assert.match(stream.raw(), new RegExp(`^retry: 1000\\n\\nevent: connected\\ndata: ${key}\\n\\n(:\\n\\n)+id: `))
    }))

  it.live("a stream that reconnects with Last-Event-ID resumes its connection: what it missed, then the rest", () =>
    Effect.gen(function*() {
      const { http, url } = yield* server()
      const publisher = yield* connect(url)
      const first = yield* openSse(http, "?subscribe=news")
      const news = (i: number) => frame("chat", { publish: "news" }, `n${i}`)
      yield* send(http, first.key, frame("echo", {}, "subscribed"))
      assert.strictEqual((yield* nextFrame(first.stream)).text, frame("echo", {}, "subscribed"))
      for (let i = 1; i <= 3; i++) yield* publisher.send(news(i))
      for (let i = 1; i <= 3; i++) assert.strictEqual((yield* nextFrame(first.stream)).text, news(i))
      first.stream.abort()
      // published while no stream is attached
      for (let i = 4; i <= 5; i++) yield* publisher.send(news(i))
      yield* send(http, first.key, frame("echo", {}, "marker"))
      // frame 4 (n3) was written to the first stream; the reconnect says it has frames up to 3
      const again = yield* sse(`${http}/sse?subscribe=news`, { "last-event-id": `${first.key}:3` })
      const connected = yield* again.next
      assert.deepStrictEqual([connected.event, connected.data], ["connected", first.key])
      for (const [n, text] of [[4, news(3)], [5, news(4)], [6, news(5)], [7, frame("echo", {}, "marker")]] as const) {
        const event = yield* nextFrame(again)
        assert.deepStrictEqual([event.id, event.text], [`${first.key}:${n}`, text])
      }
      // the same connection, still subscribed once (not twice)
      yield* publisher.send(news(6))
      yield* send(http, first.key, frame("echo", {}, "end"))
      assert.strictEqual((yield* nextFrame(again)).text, news(6))
      assert.strictEqual((yield* nextFrame(again)).text, frame("echo", {}, "end"))
      // a second reconnect asking from further back gets what the buffer holds again
      again.abort()
      const third = yield* sse(`${http}/sse`, { "last-event-id": `${first.key}:7` })
      assert.strictEqual((yield* third.next).data, first.key)
      assert.strictEqual((yield* nextFrame(third)).text, news(6))
      assert.strictEqual((yield* nextFrame(third)).text, frame("echo", {}, "end"))
    }))

  it.live("what the buffer no longer holds is reported as a gap event", () =>
    Effect.gen(function*() {
      // frames of about 1 KB; the connection keeps 4 KiB of written frames
      const { http, url } = yield* server({ sseReplayBytes: 4096 })
      const publisher = yield* connect(url)
      const first = yield* openSse(http, "?subscribe=big")
      yield* send(http, first.key, frame("echo", {}, "subscribed"))
      yield* nextFrame(first.stream)
      const big = (i: number) => frame("chat", { publish: "big" }, `${i}:${"x".repeat(1000)}`)
      for (let i = 2; i <= 10; i++) {
        yield* publisher.send(big(i))
        assert.strictEqual((yield* nextFrame(first.stream)).text, big(i))
      }
      first.stream.abort()
      const again = yield* sse(`${http}/sse`, { "last-event-id": `${first.key}:0` })
      assert.strictEqual((yield* again.next).event, "connected")
      const gap = yield* again.next
      assert.strictEqual(gap.event, "gap")
      const { from, to } = JSON.parse(gap.data) as { from: number; to: number }
      assert.strictEqual(from, 1)
      // what follows the gap is every frame after it, up to the last one
      const kept: Array<string> = []
      for (let n = to + 1; n <= 10; n++) {
        const event = yield* nextFrame(again)
        assert.strictEqual(event.id, `${first.key}:${n}`)
        kept.push(event.text)
      }
      // the connection kept what fits in 4 KiB: three frames of about 1 KB
      assert.strictEqual(to, 7)
      assert.deepStrictEqual(kept, [big(8), big(9), big(10)])
    }))

  it.live("a Last-Event-ID of a connection that is gone gets a reset event and a new connection with the URL's channels", () =>
    Effect.gen(function*() {
      const { http, url } = yield* server()
      const publisher = yield* connect(url)
      const stream = yield* sse(`${http}/sse?subscribe=fresh`, { "last-event-id": "no-such-connection:12" })
      const reset = yield* stream.next
      assert.deepStrictEqual([reset.event, reset.data], ["reset", "no-such-connection"])
      const connected = yield* stream.next
      assert.strictEqual(connected.event, "connected")
      assert.notStrictEqual(connected.data, "no-such-connection")
      yield* send(http, connected.data, frame("echo", {}, "subscribed"))
      yield* nextFrame(stream)
      yield* publisher.send(frame("chat", { publish: "fresh" }, "hello"))
      const event = yield* nextFrame(stream)
      assert.deepStrictEqual([event.id, event.text], [
        `${connected.data}:2`,
        frame("chat", { publish: "fresh" }, "hello")
      ])
    }))

  it.live("a connection closed by a processor ends its stream after a close event; its reconnect is told, then gets 204", () =>
    Effect.gen(function*() {
      const { http } = yield* server()
      const { stream, key } = yield* openSse(http)
      yield* send(http, key, frame("bye"))
      const close = yield* stream.next
      assert.deepStrictEqual([close.event, JSON.parse(close.data)], ["close", { code: 4100, reason: "bye" }])
      yield* eventually(() => stream.ended())
      assert.deepStrictEqual(yield* send(http, key, frame("echo")), {
        status: 410,
        body: JSON.stringify({ connection: key, code: 4100, reason: "bye" })
      })
      // the reconnect an EventSource makes: told once more (it may have missed the event), then 204 stops it
      const told = yield* sse(`${http}/sse`, { "last-event-id": `${key}:1` })
      assert.deepStrictEqual(JSON.parse((yield* told.next).data), { code: 4100, reason: "bye" })
      const stop = yield* request(`${http}/sse`, { headers: { "last-event-id": `${key}:1` } })
      assert.strictEqual(stop.status, 204)
    }))

  it.live("a stream left without a reader expires after sessionTimeout: onClose runs and its subscriptions go", () =>
    Effect.gen(function*() {
      const { http, hub } = yield* server({ sessionTimeout: "300 millis" })
      const { stream, key } = yield* openSse(http, "?subscribe=lonely")
      yield* send(http, key, frame("life"))
      const id = (yield* nextFrame(stream)).text.split("\r\n\r\n")[1]!
      assert.strictEqual(hub.channelCount(), 1)
      stream.abort()
      yield* eventually(() => ended.includes(id))
      assert.strictEqual(hub.channelCount(), 0)
      assert.deepStrictEqual(yield* send(http, key, frame("echo")), {
        status: 410,
        body: JSON.stringify({ connection: key, code: 4002, reason: "expired" })
      })
      // its reconnect is told it is gone and gets a new connection with the URL's channels
      const again = yield* sse(`${http}/sse?subscribe=lonely`, { "last-event-id": `${key}:1` })
      const reset = yield* again.next
      assert.deepStrictEqual([reset.event, reset.data], ["reset", key])
      const connected = yield* again.next
      assert.strictEqual(connected.event, "connected")
      assert.notStrictEqual(connected.data, key)
      yield* eventually(() => hub.channelCount() === 1)
    }))

  it.live("a burst larger than the outbox bound reaches an SSE reader that reads, as it reaches a WebSocket one", () =>
    Effect.gen(function*() {
      const { http, url } = yield* server({ maxOutboundBytes: 4096 })
      const publisher = yield* connect(url)
      const ws = yield* connect(url)
      yield* ws.send(frame("c", { subscribe: "burst" }))
      yield* ws.nothing()
      const { stream, key } = yield* openSse(http, "?subscribe=burst")
      yield* send(http, key, frame("echo", {}, "subscribed"))
      yield* nextFrame(stream)
      const message = (i: number) => frame("chat", { publish: "burst" }, `${i} ${"b".repeat(120)}`)
      // 40 frames of about 150 bytes, sent back to back: about 6 KB within a turn or two
      for (let i = 0; i < 40; i++) publisher.ws.send(message(i))
      for (let i = 0; i < 40; i++) assert.strictEqual(yield* ws.next(), message(i))
      for (let i = 0; i < 40; i++) assert.strictEqual((yield* nextFrame(stream)).text, message(i))
    }))

  it.live("a slow SSE reader is closed at the outbox bound (4001) while the other readers get every frame", () =>
    Effect.gen(function*() {
      const { http, url, hub } = yield* server({ maxOutboundBytes: 64 * 1024 })
      const publisher = yield* connect(url)
      const ws = yield* connect(url)
      yield* ws.send(frame("c", { subscribe: "flood" }))
      yield* ws.nothing()
      const slow = yield* openSse(http, "?subscribe=flood")
      const fast = yield* openSse(http, "?subscribe=flood")
      for (const { stream, key } of [slow, fast]) {
        yield* send(http, key, frame("echo", {}, "subscribed"))
        yield* nextFrame(stream)
      }
      slow.stream.reading(false)
      const message = (i: number) => frame("chat", { publish: "flood" }, `${i} ${"y".repeat(4000)}`)
      // published in steps, each read by the other readers before the next, until the slow one is closed
      // (the socket buffers of both ends take some megabytes first)
      let i = 0
      let refused = { status: 202, body: "" }
      while (refused.status === 202) {
        for (const end = i + 100; i < end; i++) {
          yield* publisher.send(message(i))
          assert.strictEqual(yield* ws.next(), message(i))
          assert.strictEqual((yield* nextFrame(fast.stream)).text, message(i))
        }
        if (i > 10_000) return yield* Effect.die(new Error("the slow reader was never closed"))
        refused = yield* send(http, slow.key, frame("echo"))
      }
      assert.deepStrictEqual(refused, {
        status: 410,
        body: JSON.stringify({ connection: slow.key, code: 4001, reason: "slow consumer" })
      })
      // the others go on
      yield* publisher.send(message(i))
      assert.strictEqual(yield* ws.next(), message(i))
      assert.strictEqual((yield* nextFrame(fast.stream)).text, message(i))
      assert.strictEqual(hub.channelCount(), 1)
      // once it reads again, its stream ends with the close event
      slow.stream.reading(true)
      yield* eventually(() => slow.stream.ended(), "10 seconds")
      assert.include(slow.stream.raw(), `event: close\ndata: {"code":4001,"reason":"slow consumer"}\n\n`)
    }))
})

describe("HTTP transports: long-poll", () => {
  it.live("SSE and long-poll recover a history channel since=<channel>:<epoch>:<offset>, at the positions WebSocket clients see", () =>
    Effect.gen(function*() {
      const { http, url } = yield* startServer({ processors: [Echo.Echo] }, Echo.layer, {
        history: History.layerMemory({ policies: [{ prefix: "h-", size: 10, ttl: Duration.minutes(1) }] })
      })
      const ws = yield* connect(url)
      yield* ws.send(frame("chat", { subscribe: "h-room", since: "now" }))
      const epoch = headerOf(yield* ws.next(), "epoch")
      // a plain SSE subscriber of the same channel: byte for byte, no position frame
      const plain = yield* openSse(http, "?subscribe=h-room")
      for (const body of ["m1", "m2", "m3"]) yield* ws.send(frame("chat", { publish: "h-room" }, body))
      const live = [yield* ws.next(), yield* ws.next(), yield* ws.next()]
      assert.deepStrictEqual(live.map((text) => headerOf(text, "offset")), ["1", "2", "3"])
      assert.deepStrictEqual(
        [
          (yield* nextFrame(plain.stream)).text,
          (yield* nextFrame(plain.stream)).text,
          (yield* nextFrame(plain.stream)).text
        ],
        ["m1", "m2", "m3"].map((body) => frame("chat", { publish: "h-room" }, body))
      )
      // since=<channel>:now: the current position, then positioned frames
      const now = yield* openSse(http, `?since=${encodeURIComponent("h-room:now")}`)
      assert.strictEqual(
        (yield* nextFrame(now.stream)).text,
        frame("position", { channel: "h-room", epoch, offset: "3" })
      )
      const position = frame("position", { channel: "h-room", epoch, offset: "3", recovered: "yes" })
      // SSE since offset 1: the frames after it as the WebSocket client got them, then the position
      const { stream } = yield* openSse(http, `?since=${encodeURIComponent(`h-room:${epoch}:1`)}`)
      assert.deepStrictEqual([
        (yield* nextFrame(stream)).text,
        (yield* nextFrame(stream)).text,
        (yield* nextFrame(stream)).text
      ], [
        live[1],
        live[2],
        position
      ])
      // long-poll since offset 0, beside a plain subscription
      const key = yield* openPoll(http, `?subscribe=other&since=${encodeURIComponent(`h-room:${epoch}:0`)}`)
      assert.deepStrictEqual((yield* pollFrames(http, key, 0, 4)).frames, [...live, position])
      // then live ones, on both
      yield* ws.send(frame("chat", { publish: "h-room" }, "m4"))
      const m4 = yield* ws.next()
      assert.strictEqual((yield* nextFrame(stream)).text, m4)
      assert.strictEqual((yield* nextFrame(now.stream)).text, m4)
      assert.deepStrictEqual((yield* pollFrames(http, key, 4, 1)).frames, [m4])
      assert.strictEqual((yield* nextFrame(plain.stream)).text, frame("chat", { publish: "h-room" }, "m4"))
      for (const bad of ["h-room", "h-room:e", "h-room:e:x", ":e:1", "h room:e:1", "h-room:later", ":now"]) {
        assert.strictEqual((yield* getJson(`${http}/poll?since=${encodeURIComponent(bad)}`)).status, 400, bad)
      }
    }))

  it.live("a stream whose connection expired resets and goes on from its Last-Event-ID's positions: what was published meanwhile, once", () =>
    Effect.gen(function*() {
      const { http, server: running, url } = yield* startServer(
        { processors: [Echo.Echo], sessionTimeout: "300 millis" },
        Echo.layer,
        {
          history: History.layerMemory({ policies: [{ prefix: "h-", size: 10, ttl: Duration.minutes(1) }] })
        }
      )
      const ws = yield* connect(url)
      const { stream, key } = yield* openSse(http, "?since=h-news:now")
      const position = yield* nextFrame(stream)
      assert.strictEqual(headerOf(position.text, "offset"), "0")
      yield* ws.send(frame("chat", { publish: "h-news" }, "seen"))
      const seen = yield* nextFrame(stream)
      assert.strictEqual(seen.id, `${key}:2`)
      // the reader goes away for longer than sessionTimeout; two messages go by
      stream.abort()
      for (const body of ["missed 1", "missed 2"]) yield* ws.send(frame("chat", { publish: "h-news" }, body))
      // (the WebSocket publisher is the one connection left once the stream's has expired)
      yield* until(Effect.sync(() => running.connectionCount() === 1))
      // its EventSource comes back to the same URL with the last id it had
      const back = yield* sse(`${http}/sse?since=h-news:now`, { "last-event-id": seen.id! })
      assert.deepStrictEqual([(yield* back.next).event, (yield* back.next).event], ["reset", "connected"])
      const texts = [(yield* nextFrame(back)).text, (yield* nextFrame(back)).text, (yield* nextFrame(back)).text]
      assert.deepStrictEqual(texts.slice(0, 2).map((text) => text.slice(text.indexOf("\r\n\r\n") + 4)), [
        "missed 1",
        "missed 2"
      ])
      assert.deepInclude(Result.getOrThrow(Frame.parse(texts[2]!)), { command: "position" })
      assert.deepStrictEqual([headerOf(texts[2]!, "recovered"), headerOf(texts[2]!, "offset")], ["yes", "3"])
    }))

  it.live("a poll acknowledges up to its cursor and answers the frames after it; the same cursor gets them again", () =>
    Effect.gen(function*() {
      const { http } = yield* server()
      const key = yield* openPoll(http)
      assert.match(key, /^[A-Za-z0-9_-]{22}$/)
      for (const body of ["a", "b", "c"]) yield* send(http, key, frame("echo", {}, body))
      const all = yield* pollFrames(http, key, 0, 3)
      assert.deepStrictEqual(all, { frames: ["a", "b", "c"].map((body) => frame("echo", {}, body)), cursor: 3 })
      // a lost answer loses nothing: the same cursor again
      assert.deepStrictEqual((yield* poll(http, key, 1)).body, {
        connection: key,
        cursor: 3,
        frames: [frame("echo", {}, "b"), frame("echo", {}, "c")]
      })
      // what was acknowledged is gone
      assert.deepStrictEqual((yield* poll(http, key, 0)).body.frames, [frame("echo", {}, "b"), frame("echo", {}, "c")])
      // a cursor past the last frame is refused
      assert.strictEqual((yield* poll(http, key, 4)).status, 400)
      assert.strictEqual((yield* poll(http, "unknown", 0)).status, 404)
    }))

  it.live("a poll waits for the next frame; with nothing to give it answers an empty list at pollTimeout", () =>
    Effect.gen(function*() {
      const { http } = yield* server({ pollTimeout: "300 millis" })
      const key = yield* openPoll(http)
      const waiting = yield* Effect.forkChild(poll(http, key, 0))
      yield* send(http, key, frame("echo", {}, "while waiting"))
      assert.deepStrictEqual((yield* Fiber.join(waiting)).body, {
        connection: key,
        cursor: 1,
        frames: [frame("echo", {}, "while waiting")]
      })
      assert.deepStrictEqual(yield* poll(http, key, 1), {
        status: 200,
        body: { connection: key, cursor: 1, frames: [] }
      })
    }))

  it.live("one poll waits at a time: of two polls, one is answered at once, empty, the other gets the frame", () =>
    Effect.gen(function*() {
      const { http } = yield* server()
      const key = yield* openPoll(http)
      const first = yield* Effect.forkChild(poll(http, key, 0))
      const second = yield* Effect.forkChild(poll(http, key, 0))
      // whichever came second answered the other; the frame goes to the one still waiting
      const answered = yield* Fiber.join(
        yield* Effect.raceFirst(
          Effect.map(Fiber.join(first), (answer) => ({ answer, waiting: second })),
          Effect.map(Fiber.join(second), (answer) => ({ answer, waiting: first }))
        ).pipe(Effect.forkChild)
      )
      assert.deepStrictEqual(answered.answer.body, { connection: key, cursor: 0, frames: [] })
      yield* send(http, key, frame("echo", {}, "to the one waiting"))
      assert.deepStrictEqual((yield* Fiber.join(answered.waiting)).body.frames, [
        frame("echo", {}, "to the one waiting")
      ])
    }))

  it.live("an abandoned poller expires after sessionTimeout: onClose runs, its subscriptions go, the next poll gets 410", () =>
    Effect.gen(function*() {
      const { http, hub } = yield* server({ sessionTimeout: "300 millis" })
      const key = yield* openPoll(http, "?subscribe=gone")
      yield* send(http, key, frame("life"))
      const id = (yield* pollFrames(http, key, 0, 1)).frames[0]!.split("\r\n\r\n")[1]!
      assert.strictEqual(hub.channelCount(), 1)
      yield* eventually(() => ended.includes(id))
      assert.strictEqual(hub.channelCount(), 0)
      assert.deepStrictEqual(yield* poll(http, key, 1), {
        status: 410,
        body: { connection: key, code: 4002, reason: "expired" }
      })
      // a sessionTimeout after it ended, the connection is forgotten: 404
      yield* until(Effect.map(poll(http, key, 1), (answer) => answer.status === 404))
    }))

  it.live("past the outbox bound the poller is closed as a slow consumer: the frames it holds, then 410 4001", () =>
    Effect.gen(function*() {
      const { http, url } = yield* server({ maxOutboundBytes: 8 * 1024 })
      const publisher = yield* connect(url)
      const key = yield* openPoll(http, "?subscribe=pile")
      yield* send(http, key, frame("echo", {}, "subscribed"))
      yield* pollFrames(http, key, 0, 1)
      const message = (i: number) => frame("chat", { publish: "pile" }, `${i} ${"z".repeat(1000)}`)
      for (let i = 0; i < 20; i++) yield* publisher.send(message(i))
      yield* publisher.send(frame("echo", {}, "marker"))
      assert.strictEqual(yield* publisher.next(), frame("echo", {}, "marker"))
      const held = yield* poll(http, key, 1)
      assert.strictEqual(held.status, 200)
      // the frames up to the bound, in order, from the first
      assert.deepStrictEqual(held.body.frames, Array.from({ length: held.body.frames!.length }, (_, i) => message(i)))
      assert.isBelow(held.body.frames!.length, 20)
      assert.deepStrictEqual(yield* poll(http, key, held.body.cursor!), {
        status: 410,
        body: { connection: key, code: 4001, reason: "slow consumer" }
      })
    }))
})

describe("HTTP transports: POST /send and the rules", () => {
  it.live("POST /send: 400 for what is not LHTTP, 413 over maxMessageBytes (the connection stays), 404, 405", () =>
    Effect.gen(function*() {
      const { http } = yield* server({ maxMessageBytes: 1000 })
      const key = yield* openPoll(http)
      assert.deepStrictEqual(yield* send(http, key, "hello"), {
        status: 400,
        body: "NotLhttp: a frame starts with \"LHTTP/1.0 <command>\"\n"
      })
      assert.deepStrictEqual(yield* send(http, key, frame("echo", {}, "x".repeat(1001))), {
        status: 413,
        body: "a message is at most 1000 bytes\n"
      })
      assert.strictEqual((yield* send(http, "nobody", frame("echo"))).status, 404)
      assert.strictEqual((yield* request(`${http}/send?connection=${key}`)).status, 405)
      assert.strictEqual((yield* request(`${http}/sse`, { method: "POST" })).status, 405)
      // none of it reached the connection: the next frame is what is sent now
      assert.strictEqual((yield* send(http, key, frame("echo", {}, "ok"))).status, 202)
      assert.deepStrictEqual((yield* pollFrames(http, key, 0, 1)).frames, [frame("echo", {}, "ok")])
    }))

  it.live("DELETE /send closes the connection: onClose runs, its subscriptions go, its poll gets 410 1000", () =>
    Effect.gen(function*() {
      const { http, hub } = yield* server()
      const key = yield* openPoll(http, "?subscribe=bye")
      yield* send(http, key, frame("life"))
      const id = (yield* pollFrames(http, key, 0, 1)).frames[0]!.split("\r\n\r\n")[1]!
      assert.strictEqual((yield* request(`${http}/send?connection=${key}`, { method: "DELETE" })).status, 204)
      yield* eventually(() => ended.includes(id))
      assert.strictEqual(hub.channelCount(), 0)
      assert.deepStrictEqual((yield* poll(http, key, 1)).body, {
        connection: key,
        code: 1000,
        reason: "closed by the client"
      })
    }))

  it.live("an invalid channel in ?subscribe= is 400 and opens nothing", () =>
    Effect.gen(function*() {
      const { http, server: lhttp } = yield* server()
      for (const path of ["/sse", "/poll"]) {
        const refused = yield* request(`${http}${path}?subscribe=ok,a..b`)
        assert.strictEqual(refused.status, 400)
        assert.strictEqual(refused.body, "InvalidChannel: channel \"a..b\" has an empty dot-separated token\n")
      }
      assert.strictEqual(lhttp.connectionCount(), 0)
    }))

  it.live("allowedOrigins: other origins get 403; allowed ones get CORS headers and preflights", () =>
    Effect.gen(function*() {
      const { http } = yield* server({ allowedOrigins: ["https://app.example"] })
      for (const path of ["/sse", "/poll", "/send?connection=x"]) {
        const refused = yield* request(`${http}${path}`, { headers: { origin: "https://evil.example" } })
        assert.strictEqual(refused.status, 403, path)
        // CORS headers go to allowed origins only
        assert.isNull(refused.headers.get("access-control-allow-origin"), path)
      }
      const allowed = yield* request(`${http}/poll`, { headers: { origin: "https://app.example" } })
      assert.strictEqual(allowed.status, 200)
      assert.strictEqual(allowed.headers.get("access-control-allow-origin"), "https://app.example")
      const preflight = yield* request(`${http}/send?connection=x`, {
        method: "OPTIONS",
        headers: { origin: "https://app.example", "access-control-request-method": "POST" }
      })
      assert.strictEqual(preflight.status, 204)
      assert.strictEqual(preflight.headers.get("access-control-allow-methods"), "POST, DELETE")
      assert.strictEqual(preflight.headers.get("access-control-allow-origin"), "https://app.example")
      // with no allowlist, every origin is allowed and echoed
      const open = yield* server()
      for (const path of ["/poll", "/send?connection=x"]) {
        const any = yield* request(`${open.http}${path}`, { headers: { origin: "https://any.example" } })
        assert.notStrictEqual(any.status, 403, path)
        assert.strictEqual(any.headers.get("access-control-allow-origin"), "https://any.example", path)
      }
    }))

  it.live("a connection with 1,024 frames waiting to be processed answers 429 to the next POST /send", () =>
    Effect.gen(function*() {
      gate = Deferred.makeUnsafe()
      const { http } = yield* server()
      // a failed assertion must not leave the frames at the gate (the server's drain, first, would wait for them)
      yield* Effect.addFinalizer(() => Effect.asVoid(Deferred.succeed(gate, undefined)))
      const key = yield* openPoll(http)
      // the first waits at the gate; 1,024 more wait behind it
      let status = 202
      let sent = 0
      while (status === 202) {
        status = (yield* send(http, key, frame("slow", {}, String(sent)))).status
        if (status === 202) sent++
      }
      assert.strictEqual(status, 429)
      assert.strictEqual(sent, 1025)
      // and it says when to come back
      const again = yield* sendRaw(http, key, frame("slow", {}, "again"))
      assert.deepStrictEqual([again.status, again.headers.get("retry-after"), again.body], [
        429,
        "1",
        "the connection is behind: send again later\n"
      ])
      yield* Deferred.succeed(gate, undefined)
      // all that was taken is processed, then sending works again
      const done = yield* pollFrames(http, key, 0, sent)
      assert.isTrue(done.frames.every((text) => text === frame("slow", {}, "done")))
      yield* until202(http, key)
    }))

  it.live("the drain: a stream gets its close event (1012 and its wait), a waiting poll 410 1012, new connections 503", () =>
    Effect.gen(function*() {
      const { http, server: lhttp } = yield* server()
      const { stream } = yield* openSse(http)
      const key = yield* openPoll(http)
      const waiting = yield* Effect.forkChild(poll(http, key, 0))
      yield* eventually(() => lhttp.connectionCount() === 2)
      const draining = yield* Effect.forkChild(lhttp.drain)
      const close = yield* stream.next
      const closed = JSON.parse(close.data) as { code: number; reason: string }
      assert.deepStrictEqual([close.event, closed.code], ["close", 1012])
      assert.match(closed.reason, /^reconnect:\d+$/)
      const polled = yield* Fiber.join(waiting)
      const ended = polled.body as { connection: string; code: number; reason: string }
      assert.deepStrictEqual([polled.status, ended.connection, ended.code], [410, key, 1012])
      assert.match(ended.reason, /^reconnect:\d+$/)
      yield* Fiber.join(draining)
      assert.strictEqual((yield* request(`${http}/sse`)).status, 503)
      assert.strictEqual((yield* request(`${http}/poll`)).status, 503)
    }))
})

/** Sends echoes until one is taken (202): the connection reads again. */
const until202 = (http: string, key: string) =>
  until(Effect.map(send(http, key, frame("echo", {}, "again")), (answer) => answer.status === 202))

describe("HTTP transports and WebSocket: authenticate before the connection", () => {
  const User = Connection.key<string>("user")
  const Me = Processor.make("me")
  const MeLive = Me.toLayer({ onMessage: (exchange) => exchange.send(exchange.connection.get(User) ?? "nobody") })
  const authenticate = (peer: Transport.Peer, data: LhttpServer.Admission) => {
    const query = new URL(peer.url, "http://x").searchParams.get("token")
    const cookie = peer.requestHeaders["cookie"]
    const user = query === "t-alice" ? "alice" : cookie === "token=t-bob" ? "bob" : undefined
    if (user === undefined) {
      return Effect.fail(new Rejection({ status: 401, reason: "Unauthorized", message: "who are you?" }))
    }
    data.set(User, user)
    return Effect.void
  }

  it.live("a refused WebSocket upgrade, SSE stream or poll gets the hook's status and no connection; admitted ones carry the principal", () =>
    Effect.gen(function*() {
      const { http, url, server: lhttp } = yield* startServer({ processors: [Me], authenticate }, MeLive)
      // refused: an HTTP answer with the status, no WebSocket
      const refused = yield* connect(`${url}/?token=nope`).pipe(Effect.flip)
      assert.include(String(refused), "Unexpected server response: 401")
      for (const path of ["/sse", "/poll"]) {
        const answer = yield* request(`${http}${path}?token=nope`)
        assert.deepStrictEqual([answer.status, answer.body], [401, "Unauthorized: who are you?\n"], path)
      }
      assert.strictEqual(lhttp.connectionCount(), 0)
      // admitted: by the query over WebSocket and SSE, by a cookie over long-poll
      const ws = yield* connect(`${url}/?token=t-alice`)
      yield* ws.send(frame("me"))
      assert.strictEqual(yield* ws.next(), "LHTTP/1.0 me\r\n\r\nalice")
      const { stream, key } = yield* openSse(http, "?token=t-alice")
      yield* send(http, key, frame("me"))
      assert.strictEqual((yield* nextFrame(stream)).text, "LHTTP/1.0 me\r\n\r\nalice")
      const polled = yield* getJson(`${http}/poll`, { headers: { cookie: "token=t-bob" } })
      assert.strictEqual(polled.status, 200)
      yield* send(http, polled.body.connection, frame("me"))
      assert.deepStrictEqual((yield* pollFrames(http, polled.body.connection, 0, 1)).frames, [
        "LHTTP/1.0 me\r\n\r\nbob"
      ])
    }))
})

// ---------------------------------------------------------------------------
// Defaults that hold against one client (docs/security.md)
// ---------------------------------------------------------------------------

/** Keep-alive sockets from one loopback address, as one client would hold them. */
const from = (localAddress: string) => ({
  agent: new Http.Agent({ keepAlive: true, maxSockets: 8 }),
  localAddress
})
type Client = ReturnType<typeof from>

interface Answer {
  readonly status: number
  readonly body: string
  readonly retry: string | undefined
}

/**
 * A request from the agent's address: the status, `retry-after` and the body
 * (for an event stream, the status alone, then the stream is dropped).
 */
const ask = ({ agent, localAddress }: Client, http: string, path: string, method = "GET") =>
  Effect.callback<Answer, Error>((resume) => {
    const call = Http.request(`${http}${path}`, { agent, method, localAddress }, (response) => {
      const status = response.statusCode ?? 0
      const retry = response.headers["retry-after"]
      if (response.headers["content-type"]?.startsWith("text/event-stream")) {
        call.destroy()
        return resume(Effect.succeed({ status, body: "", retry }))
      }
      let body = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => body += chunk)
      response.on("end", () => resume(Effect.succeed({ status, body, retry })))
    })
    call.on("error", (error) => resume(Effect.fail(error)))
    call.end()
  })

const release = (client: Client) => Effect.addFinalizer(() => Effect.sync(() => client.agent.destroy()))

describe("HTTP transports: defaults that hold against one client", () => {
  it.live("a flood of GET /poll from one address stops at 1,000 detached connections (503 TooManyDetached); other clients are admitted; DELETE frees a place at once", () =>
    Effect.gen(function*() {
      const { http, url, server: lhttp } = yield* server()
      const one = from("127.0.0.1")
      const two = from("127.0.0.2")
      yield* release(one)
      yield* release(two)
      // the flood: connections opened and never polled, over 8 keep-alive sockets
      const opened = yield* Effect.forEach(
        Array.from({ length: 1000 }, (_, i) => i),
        () => ask(one, http, "/poll"),
        { concurrency: 8 }
      )
      assert.deepStrictEqual([...new Set(opened.map((answer) => answer.status))], [200])
      const detached =
        "TooManyDetached: this address holds as many connections without a stream or a poll as it may: " +
        "close some (DELETE /send) or try again later\n"
      for (const path of ["/poll", "/sse"]) {
        const refused = yield* ask(one, http, path)
        assert.deepStrictEqual([refused.status, refused.retry, refused.body], [503, "1", detached], path)
      }
      assert.strictEqual(lhttp.connectionCount(), 1000)
      // a second client, from another address, is admitted over both transports
      assert.strictEqual((yield* ask(two, http, "/poll")).status, 200)
      assert.strictEqual((yield* ask(two, http, "/sse")).status, 200)
      // and a WebSocket from the flooding address: the flood holds detached connections only
      const ws = yield* connect(url)
      yield* ws.send(frame("echo", {}, "still here"))
      assert.strictEqual(yield* ws.next(), frame("echo", {}, "still here"))
      // DELETE ends a connection at once: its place is free for the next one
      const key = (JSON.parse(opened[0]!.body) as { connection: string }).connection
      assert.strictEqual((yield* ask(one, http, `/send?connection=${key}`, "DELETE")).status, 204)
      assert.strictEqual((yield* ask(one, http, "/poll")).status, 200)
      assert.strictEqual((yield* ask(one, http, "/poll")).status, 503)
    }))

  it.live("a connection never polled goes after sessionStartTimeout; one polled lives on to sessionTimeout", () =>
    Effect.gen(function*() {
      const { http, server: lhttp } = yield* server({
        sessionStartTimeout: "300 millis",
        sessionTimeout: "1 minute",
        pollTimeout: "50 millis"
      })
      const never = yield* openPoll(http)
      const polled = yield* openPoll(http)
      assert.deepStrictEqual((yield* poll(http, polled, 0)).body, { connection: polled, cursor: 0, frames: [] })
      yield* until(Effect.sync(() => lhttp.connectionCount() === 1))
      assert.deepStrictEqual((yield* poll(http, never, 0)).body, { connection: never, code: 4002, reason: "expired" })
      assert.deepStrictEqual((yield* poll(http, polled, 0)).body, { connection: polled, cursor: 0, frames: [] })
    }))

  it.live("httpConnectionRate: an address that opens and closes connections in a loop gets 503 ConnectingTooFast past the burst; others do not", () =>
    Effect.gen(function*() {
      const { http, url } = yield* server({ httpConnectionRate: { perSecond: 1 / 60, burst: 5 } })
      const one = from("127.0.0.1")
      const two = from("127.0.0.2")
      yield* release(one)
      yield* release(two)
      for (let i = 0; i < 5; i++) {
        const opened = yield* ask(one, http, "/poll")
        assert.strictEqual(opened.status, 200)
        const key = (JSON.parse(opened.body) as { connection: string }).connection
        assert.strictEqual((yield* ask(one, http, `/send?connection=${key}`, "DELETE")).status, 204)
      }
      for (const path of ["/poll", "/sse"]) {
        const refused = yield* ask(one, http, path)
        assert.deepStrictEqual(
          [refused.status, refused.retry, refused.body],
          [503, "1", "ConnectingTooFast: too many new connections from this address: try again later\n"],
          path
        )
      }
      assert.strictEqual((yield* ask(two, http, "/poll")).status, 200)
      assert.strictEqual((yield* ask(two, http, "/sse")).status, 200)
      // the rate is the HTTP transports': a WebSocket from the same address is admitted
      const ws = yield* connect(url)
      yield* ws.send(frame("echo", {}, "ws"))
      assert.strictEqual(yield* ws.next(), frame("echo", {}, "ws"))
    }))

  it.live("one URL names at most 32 channels, subscribe and since together: past it 400 TooManyChannels and no connection", () =>
    Effect.gen(function*() {
      const { http, server: lhttp } = yield* server()
      const names = (count: number, prefix: string) => Array.from({ length: count }, (_, i) => `${prefix}${i}`)
      const tooMany = "TooManyChannels: one URL names at most 32 channels (subscribe and since together): " +
        "subscribe to more with POST /send, or over several requests\n"
      const since = (channels: Array<string>) => channels.map((channel) => `&since=${channel}:now`).join("")
      for (const path of ["/sse", "/poll"]) {
        for (
          const query of [
            `?subscribe=${names(33, "c").join(",")}`,
            `?subscribe=${names(20, "c").join(",")}${since(names(13, "h"))}`
          ]
        ) {
          const refused = yield* request(`${http}${path}${query}`)
          assert.deepStrictEqual([refused.status, refused.body], [400, tooMany], `${path}${query}`)
        }
      }
      assert.strictEqual(lhttp.connectionCount(), 0)
      const key = yield* openPoll(http, `?subscribe=${names(20, "c").join(",")}${since(names(12, "h"))}`)
      yield* send(http, key, frame("who", { id: "w" }))
      const who = (yield* pollFrames(http, key, 0, 13)).frames.at(-1)!
      assert.strictEqual(JSON.parse(who.split("\r\n\r\n")[1]!).channels.length, 32)
    }))

  it.live("the history one URL recovers is bounded (256 KiB): the channels past it say recovered:no RecoveryLimit, and recover in a request of their own", () =>
    Effect.gen(function*() {
      const { http, url } = yield* startServer({ processors: [Echo.Echo] }, Echo.layer, {
        history: History.layerMemory({ policies: [{ prefix: "h-", size: 100, ttl: Duration.minutes(1) }] })
      })
      const channels = ["h-a", "h-b", "h-c"]
      const ws = yield* connect(url)
      yield* ws.send(frame("subscribe", { subscribe: channels.join(" "), since: "now" }))
      // each channel's epoch, from its position frame
      const epochs = new Map<string, string>()
      for (let i = 0; i < channels.length; i++) {
        const answer = yield* ws.next()
        epochs.set(headerOf(answer, "channel"), headerOf(answer, "epoch"))
      }
      // 100 KiB on each channel: two fit in the budget of a request, the third does not
      const seen = new Map<string, Array<string>>(channels.map((channel) => [channel, []]))
      for (const channel of channels) {
        for (let i = 0; i < 10; i++) yield* ws.send(frame("chat", { publish: channel }, `${i}`.padEnd(10 * 1024, "x")))
        for (let i = 0; i < 10; i++) seen.get(channel)!.push(yield* ws.next())
      }
      const since = channels.map((channel) => `since=${encodeURIComponent(`${channel}:${epochs.get(channel)}:0`)}`)
        .join("&")
      const key = yield* openPoll(http, `?${since}`)
      const position = (channel: string, recovered: Record<string, string>) =>
        frame("position", { channel, epoch: epochs.get(channel)!, offset: "10", ...recovered })
      const { frames, cursor } = yield* pollFrames(http, key, 0, 23)
      assert.deepStrictEqual(frames, [
        ...seen.get("h-a")!,
        position("h-a", { recovered: "yes" }),
        ...seen.get("h-b")!,
        position("h-b", { recovered: "yes" }),
        position("h-c", { recovered: "no", reason: "RecoveryLimit" })
      ])
      // the channel stays subscribed with positions: the next message comes positioned
      yield* ws.send(frame("chat", { publish: "h-c" }, "live"))
      const live = yield* ws.next()
      assert.strictEqual(headerOf(live, "offset"), "11")
      assert.deepStrictEqual((yield* pollFrames(http, key, cursor, 1)).frames, [live])
      // split over another request, the rest is recovered whole
      const rest = yield* openPoll(http, `?since=${encodeURIComponent(`h-c:${epochs.get("h-c")}:0`)}`)
      assert.deepStrictEqual((yield* pollFrames(http, rest, 0, 12)).frames, [
        ...seen.get("h-c")!,
        live,
        frame("position", { channel: "h-c", epoch: epochs.get("h-c")!, offset: "11", recovered: "yes" })
      ])
    }))

  it.live("with a message rate, a URL that needs more messages than its burst is refused 400, one within it recovers and stays open", () =>
    Effect.gen(function*() {
      const { http, url } = yield* startServer(
        { processors: [Echo.Echo], messageRate: { perSecond: 1, burst: 3 } },
        Echo.layer,
        {
          history: History.layerMemory({ policies: [{ prefix: "h-", size: 10, ttl: Duration.minutes(1) }] })
        }
      )
      const channels = ["h-a", "h-b", "h-c", "h-d"]
      const ws = yield* connect(url)
      yield* ws.send(frame("subscribe", { subscribe: channels.join(" "), since: "now" }))
      const epochs = new Map<string, string>()
      for (let i = 0; i < channels.length; i++) {
        const answer = yield* ws.next()
        epochs.set(headerOf(answer, "channel"), headerOf(answer, "epoch"))
      }
      const since = (list: Array<string>) =>
        list.map((channel) => `since=${encodeURIComponent(`${channel}:${epochs.get(channel)}:0`)}`).join("&")
      const refused = yield* request(`${http}/poll?${since(channels)}`)
      assert.deepStrictEqual([refused.status, refused.body], [
        400,
        "TooManyChannels: this server takes 3 messages at once from a connection: " +
        "recover fewer channels since a position in one URL, or subscribe to the rest with POST /send\n"
      ])
      const key = yield* openPoll(http, `?${since(channels.slice(0, 3))}`)
      const { frames, cursor } = yield* pollFrames(http, key, 0, 3)
      assert.deepStrictEqual(
        frames,
        channels.slice(0, 3).map((channel) =>
          frame("position", { channel, epoch: epochs.get(channel)!, offset: "0", recovered: "yes" })
        )
      )
      // not closed for its own subscriptions: the next message on a channel comes, positioned
      yield* ws.send(frame("chat", { publish: "h-b" }, "live"))
      const live = yield* pollFrames(http, key, cursor, 1)
      assert.deepStrictEqual(live.frames.map((text) => [headerOf(text, "channel"), headerOf(text, "offset")]), [[
        "h-b",
        "1"
      ]])
    }))
})

// ---------------------------------------------------------------------------
// Issue 21: the claims of docs/transports.md and docs/security.md about the HTTP transports
// ---------------------------------------------------------------------------

describe("HTTP transports: authorize and authenticateMessage from every transport", () => {
  it.live("authorize decides on the URL's subscriptions of SSE and long-poll (subscribe= and since=); a subscription made by code is not asked", () =>
    Effect.gen(function*() {
      const asked: Array<string> = []
      const Join = Processor.make("join")
      const JoinLive = Join.toLayer({
        onMessage: (exchange) => Effect.orDie(exchange.connection.subscribe([exchange.text]))
      })
      const { http, url } = yield* startServer(
        {
          processors: [Echo.Echo, Join],
          authorize: ({ action, channels }) => {
            asked.push(`${action} ${channels.join(",")}`)
            return action === "subscribe" && channels.some((channel) => channel.endsWith("secret"))
              ? Effect.fail(Rejections.forbidden("nobody hears secret"))
              : Effect.void
          }
        },
        Layer.mergeAll(Echo.layer, JoinLive),
        {
          history: History.layerMemory({ policies: [{ prefix: "h-", size: 10, ttl: Duration.minutes(1) }] })
        }
      )
      const refusal = "LHTTP/1.0 error\r\nstatus:403\r\nreason:Forbidden\r\n\r\nnobody hears secret"
      const publisher = yield* connect(url)
      // SSE: subscribe= (the whole list refused: "open" is not subscribed either), and since=
      const plain = yield* openSse(http, "?subscribe=open+secret")
      assert.strictEqual((yield* nextFrame(plain.stream)).text, refusal)
      const since = yield* openSse(http, "?since=h-secret:now")
      assert.strictEqual((yield* nextFrame(since.stream)).text, refusal)
      // long-poll: the same
      const polled = yield* openPoll(http, "?subscribe=open,secret")
      assert.deepStrictEqual((yield* pollFrames(http, polled, 0, 1)).frames, [refusal])
      assert.deepStrictEqual(asked, ["subscribe open,secret", "subscribe h-secret", "subscribe open,secret"])
      // nothing was subscribed: a marker published after the others is the next frame of each
      for (const key of [plain.key, since.key, polled]) yield* send(http, key, frame("m", { subscribe: "marker" }))
      yield* send(http, plain.key, frame("echo", {}, "subscribed"))
      assert.strictEqual((yield* nextFrame(plain.stream)).text, frame("echo", {}, "subscribed"))
      yield* send(http, since.key, frame("echo", {}, "subscribed"))
      assert.strictEqual((yield* nextFrame(since.stream)).text, frame("echo", {}, "subscribed"))
      yield* send(http, polled, frame("echo", {}, "subscribed"))
      const ready = yield* pollFrames(http, polled, 1, 1)
      for (const channel of ["open", "secret", "h-secret", "marker"]) {
        yield* publisher.send(frame("chat", { publish: channel }, channel))
      }
      assert.strictEqual((yield* nextFrame(plain.stream)).text, frame("chat", { publish: "marker" }, "marker"))
      assert.strictEqual((yield* nextFrame(since.stream)).text, frame("chat", { publish: "marker" }, "marker"))
      assert.deepStrictEqual((yield* pollFrames(http, polled, ready.cursor, 1)).frames, [
        frame("chat", { publish: "marker" }, "marker")
      ])
      // a subscription made by code (connection.subscribe) is the app's own: not asked, and made
      asked.length = 0
      yield* send(http, plain.key, frame("join", {}, "secret"))
      yield* send(http, plain.key, frame("echo", {}, "joined"))
      assert.strictEqual((yield* nextFrame(plain.stream)).text, frame("echo", {}, "joined"))
      yield* publisher.send(frame("chat", { publish: "secret" }, "for code"))
      assert.strictEqual((yield* nextFrame(plain.stream)).text, frame("chat", { publish: "secret" }, "for code"))
      assert.deepStrictEqual(asked, ["publish secret"])
    }))
})

describe("HTTP transports: authentication by the first message", () => {
  const User = Connection.key<string>("user")
  const Me = Processor.make("me")
  const MeLive = Me.toLayer({ onMessage: (exchange) => exchange.send(exchange.connection.get(User) ?? "nobody") })
  const authenticateMessage = (
    message: { readonly command: string; readonly headers: ReadonlyMap<string, string> },
    data: LhttpServer.Admission
  ) => {
    if (message.command !== "auth" || message.headers.get("token") !== "t-alice") {
      return Effect.fail(new Rejection({ status: 401, reason: "Unauthorized", message: "who are you?" }))
    }
    data.set(User, "alice")
    return Effect.void
  }
  const authServer = (timeout?: Duration.Input) =>
    startServer({ processors: [Me], authenticateMessage, authenticationTimeout: timeout }, MeLive)
  const refused = "LHTTP/1.0 error\r\nstatus:401\r\nreason:Unauthorized\r\nid:a\r\n\r\nwho are you?"

  it.live("over SSE and long-poll the first POST /send authenticates: answered with its id, then the principal is set", () =>
    Effect.gen(function*() {
      const { http } = yield* authServer()
      const { stream, key } = yield* openSse(http)
      assert.strictEqual((yield* send(http, key, frame("auth", { token: "t-alice", id: "a" }))).status, 202)
      yield* send(http, key, frame("me"))
      assert.strictEqual((yield* nextFrame(stream)).text, "LHTTP/1.0 auth\r\nid:a\r\n\r\n")
      assert.strictEqual((yield* nextFrame(stream)).text, "LHTTP/1.0 me\r\n\r\nalice")
      const polled = yield* openPoll(http)
      yield* send(http, polled, frame("auth", { token: "t-alice", id: "a" }))
      yield* send(http, polled, frame("me"))
      assert.deepStrictEqual((yield* pollFrames(http, polled, 0, 2)).frames, [
        "LHTTP/1.0 auth\r\nid:a\r\n\r\n",
        "LHTTP/1.0 me\r\n\r\nalice"
      ])
    }))

  it.live("over SSE and long-poll a refused first message is its error frame, then 1008; a ?subscribe= is the first message", () =>
    Effect.gen(function*() {
      const { http } = yield* authServer()
      // the first message is not the authenticating one: refused, the connection closed, nothing after it run
      const { stream, key } = yield* openSse(http)
      yield* send(http, key, frame("me", { id: "a" }))
      assert.strictEqual((yield* nextFrame(stream)).text, refused)
      const close = yield* stream.next
      assert.deepStrictEqual([close.event, JSON.parse(close.data)], ["close", {
        code: 1008,
        reason: "authentication failed"
      }])
      const polled = yield* openPoll(http)
      yield* send(http, polled, frame("auth", { token: "wrong", id: "a" }))
      const held = yield* pollFrames(http, polled, 0, 1)
      assert.deepStrictEqual(held.frames, [refused])
      assert.deepStrictEqual((yield* poll(http, polled, held.cursor)).body, {
        connection: polled,
        code: 1008,
        reason: "authentication failed"
      })
      // the URL's subscription is the connection's first message, so it is refused (docs/server.md)
      const subscribing = yield* openSse(http, "?subscribe=room")
      assert.strictEqual(
        (yield* nextFrame(subscribing.stream)).text,
        "LHTTP/1.0 error\r\nstatus:401\r\nreason:Unauthorized\r\n\r\nwho are you?"
      )
      assert.deepStrictEqual(JSON.parse((yield* subscribing.stream.next).data), {
        code: 1008,
        reason: "authentication failed"
      })
    }))

  it.live("over SSE and long-poll a connection that sends nothing acceptable within authenticationTimeout is closed with 1008", () =>
    Effect.gen(function*() {
      const { http } = yield* authServer("200 millis")
      const { stream } = yield* openSse(http)
      const polled = yield* openPoll(http)
      const close = yield* stream.next
      assert.deepStrictEqual([close.event, JSON.parse(close.data)], ["close", {
        code: 1008,
        reason: "authentication timeout"
      }])
      assert.deepStrictEqual((yield* poll(http, polled, 0)).body, {
        connection: polled,
        code: 1008,
        reason: "authentication timeout"
      })
    }))

  it.live("authenticationTimeout is 10 s by default: open at 9,999 ms, closed 1008 at 10,000 ms (Node's timers faked, in memory)", () =>
    Effect.gen(function*() {
      // the deadline is a Node timer (setTimeout), which TestClock does not drive: vitest's fake timers
      // stand in for setTimeout alone (Effect's scheduler runs on setImmediate, untouched)
      vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] })
      yield* Effect.addFinalizer(() => Effect.sync(() => vi.useRealTimers()))
      const { connect: connectMemory } = yield* startMemoryServer({ processors: [Me], authenticateMessage }, MeLive)
      const client = yield* connectMemory()
      const closed = yield* Effect.forkChild(client.transport.closed, { startImmediately: true })
      // turns of the event loop for what a timer that fired started (the close runs on Effect's scheduler)
      const turns = Effect.promise(async () => {
        for (let i = 0; i < 20 && closed.pollUnsafe() === undefined; i++) {
          await new Promise((resolve) => setImmediate(resolve))
        }
        return closed.pollUnsafe()
      })
      vi.advanceTimersByTime(9_999)
      assert.isUndefined(yield* turns)
      vi.advanceTimersByTime(1)
      assert.deepStrictEqual(yield* turns, Exit.succeed({ code: 1008, reason: "authentication timeout" }))
    }))
})

describe("HTTP transports: control events, POST /send answers, what a detached connection keeps", () => {
  it.live("a frame whose command is close (or connected, reset, gap) is a frame on the stream, not a control event: the connection goes on", () =>
    Effect.gen(function*() {
      const { http, url } = yield* server()
      const publisher = yield* connect(url)
      const { stream, key } = yield* openSse(http, "?subscribe=t1")
      yield* send(http, key, frame("echo", {}, "subscribed"))
      yield* nextFrame(stream)
      const frames = ["close", "connected", "reset", "gap"].map((command) =>
        frame(command, { publish: "t1" }, `{"code":1000}`)
      )
      for (const text of frames) yield* publisher.send(text)
      for (const text of frames) {
        const event = yield* nextFrame(stream)
        assert.deepStrictEqual([event.event, event.text], [Result.getOrThrow(Frame.parse(text)).command, text])
      }
      assert.include(
        stream.raw(),
        `event: close\ndata: LHTTP/1.0 close\ndata: publish:t1\ndata: \ndata: {"code":1000}\n\n`
      )
      // the stream and the connection go on
      assert.strictEqual((yield* send(http, key, frame("echo", {}, "still open"))).status, 202)
      assert.strictEqual((yield* nextFrame(stream)).text, frame("echo", {}, "still open"))
      assert.isFalse(stream.ended())
    }))

  it.live("POST /send: a body that is not UTF-8 is 400 InvalidUtf8 and reaches nothing; the connection goes on", () =>
    Effect.gen(function*() {
      const { http } = yield* server()
      const key = yield* openPoll(http)
      const bytes = new Uint8Array([...new TextEncoder().encode("LHTTP/1.0 echo\r\n\r\n"), 0xff, 0xfe])
      assert.deepStrictEqual(
        yield* sendRaw(http, key, bytes).pipe(Effect.map(({ body, status }) => ({ status, body }))),
        {
          status: 400,
          body: "InvalidUtf8: the message is not valid UTF-8\n"
        }
      )
      assert.strictEqual((yield* send(http, key, frame("echo", {}, "next"))).status, 202)
      assert.deepStrictEqual((yield* pollFrames(http, key, 0, 1)).frames, [frame("echo", {}, "next")])
    }))

  it.live("POST /send while the server drains is 503, on a connection still open with its message in progress", () =>
    Effect.gen(function*() {
      gate = Deferred.makeUnsafe()
      const { http, server: lhttp } = yield* server()
      yield* Effect.addFinalizer(() => Effect.asVoid(Deferred.succeed(gate, undefined)))
      const key = yield* openPoll(http)
      // a message in progress holds the connection open through the drain
      assert.strictEqual((yield* send(http, key, frame("slow", {}, "held"))).status, 202)
      const draining = yield* Effect.forkChild(lhttp.drain)
      yield* until(Effect.sync(() => lhttp.isDraining()))
      assert.deepStrictEqual(yield* send(http, key, frame("echo", {}, "too late")), {
        status: 503,
        body: "the server is shutting down\n"
      })
      yield* Deferred.succeed(gate, undefined)
      // the message in progress is done, then the connection closes with 1012; the 503 one was not run
      const done = yield* pollFrames(http, key, 0, 1)
      assert.deepStrictEqual(done.frames, [frame("slow", {}, "done")])
      const ended = yield* poll(http, key, done.cursor)
      assert.deepStrictEqual([ended.status, (ended.body as { code: number }).code], [410, 1012])
      yield* Fiber.join(draining)
    }))

  it.live("frames that come while no stream is attached are kept, up to maxOutboundBytes: the reconnect gets them; past it, 4001", () =>
    Effect.gen(function*() {
      // one detached connection per address at most: a new poll is refused once the server saw the stream go
      const { http, url } = yield* server({ maxOutboundBytes: 8192, maxDetachedPerAddress: 1 })
      const detached = until(Effect.gen(function*() {
        const probe = yield* getJson(`${http}/poll`)
        if (probe.status === 200) {
          yield* request(`${http}/send?connection=${probe.body.connection}`, { method: "DELETE" })
        }
        return probe.status === 503
      }))
      const publisher = yield* connect(url)
      // a WebSocket subscriber: once it has a frame, the hub has handed it to the detached connection too
      const watcher = yield* connect(url)
      yield* watcher.send(frame("w", { subscribe: "kept" }))
      yield* watcher.nothing()
      const first = yield* openSse(http, "?subscribe=kept")
      yield* send(http, first.key, frame("echo", {}, "subscribed"))
      assert.strictEqual((yield* nextFrame(first.stream)).text, frame("echo", {}, "subscribed"))
      first.stream.abort()
      yield* detached
      // frames of 1,032 bytes: 7 of them (7,224 bytes) fit under 8 KiB, 8 do not
      const message = (i: number) => frame("chat", { publish: "kept" }, `${i}`.padEnd(1000, "k"))
      assert.strictEqual(Buffer.byteLength(message(1)), 1032)
      for (let i = 1; i <= 7; i++) yield* publisher.send(message(i))
      yield* publisher.send(frame("chat", { publish: "kept" }, "marker"))
      for (let i = 1; i <= 7; i++) assert.strictEqual(yield* watcher.next(), message(i))
      assert.strictEqual(yield* watcher.next(), frame("chat", { publish: "kept" }, "marker"))
      assert.strictEqual((yield* send(http, first.key, frame("m"))).status, 202)
      // the reconnect gets every one of them, after the frame it had
      const again = yield* sse(`${http}/sse`, { "last-event-id": `${first.key}:1` })
      assert.strictEqual((yield* again.next).data, first.key)
      for (let i = 1; i <= 7; i++) assert.strictEqual((yield* nextFrame(again)).text, message(i))
      assert.strictEqual((yield* nextFrame(again)).text, frame("chat", { publish: "kept" }, "marker"))
      again.abort()
      yield* detached
      // detached again: the eighth frame passes the bound
      for (let i = 1; i <= 8; i++) yield* publisher.send(message(i))
      yield* until(Effect.map(send(http, first.key, frame("echo")), (answer) => answer.status === 410))
      assert.deepStrictEqual(yield* send(http, first.key, frame("echo")), {
        status: 410,
        body: JSON.stringify({ connection: first.key, code: 4001, reason: "slow consumer" })
      })
      // its next reconnect is told how it ended
      const told = yield* sse(`${http}/sse`, { "last-event-id": `${first.key}:9` })
      const close = yield* told.next
      assert.deepStrictEqual([close.event, JSON.parse(close.data)], ["close", { code: 4001, reason: "slow consumer" }])
    }))
})

describe("HTTP transports: the URL's subscriptions", () => {
  it.live("?subscribe= takes '+' (a space) as a separator and goes through the pipeline as a subscribe frame would: filters see it", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const Seen = Filter.make("seen")
      const SeenLive = Seen.toLayer({
        before: (exchange) =>
          Effect.sync(() => {
            if (exchange.headers.has("subscribe")) {
              seen.push(Frame.render(Frame.make(exchange.command, new Map(exchange.headers))))
            }
          })
      })
      const { http } = yield* startServer(
        { processors: [Who], filters: [Seen] },
        Layer.mergeAll(WhoLive, SeenLive)
      )
      const { stream, key } = yield* openSse(http, "?subscribe=a+b,c")
      yield* send(http, key, frame("who"))
      assert.deepStrictEqual(JSON.parse((yield* nextFrame(stream)).text.split("\r\n\r\n")[1]!).channels, [
        "a",
        "b",
        "c"
      ])
      const polled = yield* openPoll(http, "?subscribe=d+e")
      yield* send(http, polled, frame("who"))
      assert.deepStrictEqual(
        JSON.parse((yield* pollFrames(http, polled, 0, 1)).frames[0]!.split("\r\n\r\n")[1]!).channels,
        ["d", "e"]
      )
      assert.deepStrictEqual(seen, [
        "LHTTP/1.0 subscribe\r\nsubscribe:a b c\r\n\r\n",
        "LHTTP/1.0 subscribe\r\nsubscribe:d e\r\n\r\n"
      ])
    }))
})

describe("HTTP transports: the defaults of the timings and the replay buffer", () => {
  // The timings run on Node timers (setTimeout, setInterval), which TestClock does not drive: their
  // defaults are read from the exported objects and compared with docs/transports.md, and each
  // mechanism is tested with small values (above and here). sseReplayBytes needs no clock: its
  // default is measured on a server with the defaults.
  it("the documented defaults: pollTimeout 25 s, sessionTimeout 60 s, sseRetry 1 s, sseReplayBytes 64 KiB, an SSE comment every 25 s", () => {
    const defaults = NodeLhttpServer.httpTransportDefaults
    assert.deepStrictEqual(
      [defaults.pollTimeout, defaults.sessionTimeout, defaults.sseRetry, defaults.sessionStartTimeout].map(
        Duration.toMillis
      ),
      [25_000, 60_000, 1_000, 10_000]
    )
    assert.strictEqual(defaults.sseReplayBytes, 64 * 1024)
    // the SSE comment is written at the server's heartbeatInterval
    assert.strictEqual(Duration.toMillis(LhttpServerModule.settings({}).heartbeatInterval), 25_000)
  })

  it.live("a default server: an SSE stream keeps the last 64 KiB of written frames for a reconnect, the rest is a gap; its comment interval is the server's heartbeatInterval, 25 s", () =>
    Effect.gen(function*() {
      const { http, url, server: lhttp } = yield* server()
      assert.strictEqual(Duration.toMillis(lhttp.settings.heartbeatInterval), 25_000)
      const publisher = yield* connect(url)
      const first = yield* openSse(http, "?subscribe=replay")
      yield* send(http, first.key, frame("echo", {}, "subscribed"))
      const written = [(yield* nextFrame(first.stream)).text]
      // 100 frames of about 1 KiB, read as they come
      for (let i = 1; i <= 100; i++) {
        const text = frame("chat", { publish: "replay" }, `${i}:`.padEnd(1000 + (i % 7), "r"))
        yield* publisher.send(text)
        assert.strictEqual((yield* nextFrame(first.stream)).text, text)
        written.push(text)
      }
      first.stream.abort()
      // what the connection keeps: the longest run of the last frames within 65,536 bytes
      let bytes = 0
      let oldest = written.length
      while (oldest > 0 && bytes + Buffer.byteLength(written[oldest - 1]!) <= 64 * 1024) {
        bytes += Buffer.byteLength(written[--oldest]!)
      }
      const again = yield* sse(`${http}/sse`, { "last-event-id": `${first.key}:0` })
      assert.strictEqual((yield* again.next).event, "connected")
      const gap = yield* again.next
      assert.deepStrictEqual([gap.event, JSON.parse(gap.data)], ["gap", { from: 1, to: oldest }])
      const event = yield* nextFrame(again)
      assert.deepStrictEqual([event.id, event.text], [`${first.key}:${oldest + 1}`, written[oldest]])
    }))

  it.live("sessionTimeout is counted from the end of the last poll: a poll that waited longer than it leaves the connection a whole sessionTimeout", () =>
    Effect.gen(function*() {
      const { http, server: lhttp } = yield* server({
        sessionTimeout: "1 second",
        pollTimeout: "1200 millis",
        sessionStartTimeout: "100 millis"
      })
      const key = yield* openPoll(http)
      // the poll waits 1.2 s, longer than sessionTimeout: counted from its start, the connection would be gone
      // at its end
      assert.deepStrictEqual((yield* poll(http, key, 0)).body, { connection: key, cursor: 0, frames: [] })
      // a probe that goes after 100 ms: once it has expired, the sweep has run since the poll ended
      const probe = yield* openPoll(http)
      const ended = (which: string) => Effect.map(send(http, which, frame("m")), (answer) => answer.status === 410)
      yield* until(ended(probe))
      assert.isFalse(yield* ended(key))
      // then it expires, a sessionTimeout after the poll
      yield* until(ended(key))
      assert.deepStrictEqual(yield* send(http, key, frame("m")), {
        status: 410,
        body: JSON.stringify({ connection: key, code: 4002, reason: "expired" })
      })
      assert.strictEqual(lhttp.connectionCount(), 0)
    }))
})

describe("HTTP transports: history replay is bounded", () => {
  it.live("a recovery goes through the connection's outbox: past maxOutboundBytes the connection is closed 4001 (long-poll, nobody polling)", () =>
    Effect.gen(function*() {
      const { http, url } = yield* startServer({ processors: [Echo.Echo], maxOutboundBytes: 16 * 1024 }, Echo.layer, {
        history: History.layerMemory({ policies: [{ prefix: "h-", size: 100, ttl: Duration.minutes(1) }] })
      })
      const ws = yield* connect(url)
      yield* ws.send(frame("chat", { subscribe: "h-big", since: "now" }))
      const epoch = headerOf(yield* ws.next(), "epoch")
      // 40 messages of about 1 KiB: 41 KB of history
      for (let i = 1; i <= 40; i++) {
        yield* ws.send(frame("chat", { publish: "h-big" }, `${i}:`.padEnd(1000, "h")))
        yield* ws.next()
      }
      // the last 10 fit under the bound: recovered whole
      const small = yield* openPoll(http)
      yield* send(http, small, frame("chat", { subscribe: "h-big", since: `${epoch}:30`, id: "s" }))
      const fits = yield* pollFrames(http, small, 0, 11)
      assert.deepStrictEqual(fits.frames.map((text) => headerOf(text, "offset")), [
        ...Array.from({ length: 10 }, (_, i) => `${31 + i}`),
        "40"
      ])
      assert.strictEqual(headerOf(fits.frames[10]!, "recovered"), "yes")
      // all 40 do not: the connection is closed as a slow consumer, with what it held
      const big = yield* openPoll(http)
      yield* send(http, big, frame("chat", { subscribe: "h-big", since: `${epoch}:0`, id: "b" }))
      yield* until(Effect.map(send(http, big, frame("echo")), (answer) => answer.status === 410))
      const held = yield* poll(http, big, 0)
      assert.strictEqual(held.status, 200)
      assert.isBelow(held.body.frames!.length, 17)
      assert.deepStrictEqual(
        held.body.frames!.map((text) => headerOf(text, "offset")),
        held.body.frames!.map((_, i) => `${i + 1}`)
      )
      assert.deepStrictEqual(yield* poll(http, big, held.body.cursor!), {
        status: 410,
        body: { connection: big, code: 4001, reason: "slow consumer" }
      })
    }))

  it.live("messageRate bounds how often a connection asks for history: past its burst a recovery is refused 429 and nothing is read", () =>
    Effect.gen(function*() {
      const { url } = yield* startServer(
        { processors: [Echo.Echo], messageRate: { perSecond: 1 / 60, burst: 3, closeAfter: 5 } },
        Echo.layer,
        {
          history: History.layerMemory({ policies: [{ prefix: "h-", size: 10, ttl: Duration.minutes(1) }] })
        }
      )
      const publisher = yield* connect(url)
      yield* publisher.send(frame("chat", { publish: "h-r" }, "one"))
      yield* publisher.send(frame("chat", { subscribe: "h-r", since: "now", id: "p" }))
      const epoch = headerOf(yield* publisher.next(), "epoch")
      const reader = yield* connect(url)
      const ask = (id: string) => reader.send(frame("chat", { subscribe: "h-r", since: `${epoch}:0`, id }))
      for (const id of ["r1", "r2", "r3"]) {
        yield* ask(id)
        assert.strictEqual(
          yield* reader.next(),
          frame("chat", { channel: "h-r", offset: "1", epoch, publish: "h-r" }, "one")
        )
        assert.strictEqual(headerOf(yield* reader.next(), "recovered"), "yes")
      }
      // the fourth ask is the next answer: refused, and nothing recovered before it
      yield* ask("r4")
      assert.strictEqual(
        yield* reader.next(),
        "LHTTP/1.0 error\r\nstatus:429\r\nreason:RateLimited\r\nid:r4\r\n\r\nmore than 0.017 messages a second: this one was not processed"
      )
    }))
})
