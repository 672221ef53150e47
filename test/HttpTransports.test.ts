/**
 * The HTTP transports (docs/transports.md) over real sockets: Server-Sent
 * Events, long-poll and `POST /send`, beside WebSocket clients, on one core.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Layer, Result } from "effect"
import * as Http from "node:http"
import * as Connection from "../src/Connection.ts"
import * as Echo from "../src/demo/Echo.ts"
import * as Frame from "../src/Frame.ts"
import * as History from "../src/History.ts"
import type * as LhttpServer from "../src/LhttpServer.ts"
import * as Processor from "../src/Processor.ts"
import { Rejection } from "../src/Rejection.ts"
import type * as Transport from "../src/Transport.ts"
import { getJson, send, sse, type SseClient } from "./utils/http.ts"
import { connect, frame, request, startServer } from "./utils/lhttp.ts"
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
          assert.deepStrictEqual(mine, expected.filter((text) => text.includes(`\r\n\r\n${from} `)), `${who} from ${from}`)
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
      assert.deepStrictEqual([event.id, event.text], [`${connected.data}:2`, frame("chat", { publish: "fresh" }, "hello")])
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
        [(yield* nextFrame(plain.stream)).text, (yield* nextFrame(plain.stream)).text, (yield* nextFrame(plain.stream)).text],
        ["m1", "m2", "m3"].map((body) => frame("chat", { publish: "h-room" }, body))
      )
      // since=<channel>:now: the current position, then positioned frames
      const now = yield* openSse(http, `?since=${encodeURIComponent("h-room:now")}`)
      assert.strictEqual((yield* nextFrame(now.stream)).text, frame("position", { channel: "h-room", epoch, offset: "3" }))
      const position = frame("position", { channel: "h-room", epoch, offset: "3", recovered: "yes" })
      // SSE since offset 1: the frames after it as the WebSocket client got them, then the position
      const { stream } = yield* openSse(http, `?since=${encodeURIComponent(`h-room:${epoch}:1`)}`)
      assert.deepStrictEqual([(yield* nextFrame(stream)).text, (yield* nextFrame(stream)).text, (yield* nextFrame(stream)).text], [
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
      const { http, server: running, url } = yield* startServer({ processors: [Echo.Echo], sessionTimeout: "300 millis" }, Echo.layer, {
        history: History.layerMemory({ policies: [{ prefix: "h-", size: 10, ttl: Duration.minutes(1) }] })
      })
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
      assert.deepStrictEqual(texts.slice(0, 2).map((text) => text.slice(text.indexOf("\r\n\r\n") + 4)), ["missed 1", "missed 2"])
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
      assert.deepStrictEqual(yield* poll(http, key, 1), { status: 200, body: { connection: key, cursor: 1, frames: [] } })
    }))

  it.live("one poll waits at a time: of two polls, one is answered at once, empty, the other gets the frame", () =>
    Effect.gen(function*() {
      const { http } = yield* server()
      const key = yield* openPoll(http)
      const first = yield* Effect.forkChild(poll(http, key, 0))
      const second = yield* Effect.forkChild(poll(http, key, 0))
      // whichever came second answered the other; the frame goes to the one still waiting
      const answered = yield* Fiber.join(yield* Effect.raceFirst(
        Effect.map(Fiber.join(first), (answer) => ({ answer, waiting: second })),
        Effect.map(Fiber.join(second), (answer) => ({ answer, waiting: first }))
      ).pipe(Effect.forkChild))
      assert.deepStrictEqual(answered.answer.body, { connection: key, cursor: 0, frames: [] })
      yield* send(http, key, frame("echo", {}, "to the one waiting"))
      assert.deepStrictEqual((yield* Fiber.join(answered.waiting)).body.frames, [frame("echo", {}, "to the one waiting")])
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
      assert.deepStrictEqual((yield* poll(http, key, 1)).body, { connection: key, code: 1000, reason: "closed by the client" })
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
    }))

  it.live("a connection with 1,024 frames waiting to be processed answers 429 to the next POST /send", () =>
    Effect.gen(function*() {
      gate = Deferred.makeUnsafe()
      const { http } = yield* server()
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
      yield* Deferred.succeed(gate, undefined)
      // all that was taken is processed, then sending works again
      const done = yield* pollFrames(http, key, 0, sent)
      assert.isTrue(done.frames.every((text) => text === frame("slow", {}, "done")))
      yield* until202(http, key)
    }))

  it.live("the drain: a stream gets its close event (1001), a waiting poll 410 1001, new connections 503", () =>
    Effect.gen(function*() {
      const { http, server: lhttp } = yield* server()
      const { stream } = yield* openSse(http)
      const key = yield* openPoll(http)
      const waiting = yield* Effect.forkChild(poll(http, key, 0))
      yield* eventually(() => lhttp.connectionCount() === 2)
      const draining = yield* Effect.forkChild(lhttp.drain)
      const close = yield* stream.next
      assert.deepStrictEqual([close.event, JSON.parse(close.data)], ["close", { code: 1001, reason: "server shutting down" }])
      assert.deepStrictEqual(yield* Fiber.join(waiting), {
        status: 410,
        body: { connection: key, code: 1001, reason: "server shutting down" }
      })
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
    if (user === undefined) return Effect.fail(new Rejection({ status: 401, reason: "Unauthorized", message: "who are you?" }))
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
        assert.deepStrictEqual([answer.status, answer.body], [401, "who are you?\n"], path)
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
      assert.deepStrictEqual((yield* pollFrames(http, polled.body.connection, 0, 1)).frames, ["LHTTP/1.0 me\r\n\r\nbob"])
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
      const detached = "TooManyDetached: this address holds as many connections without a stream or a poll as it may: " +
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
        for (const query of [`?subscribe=${names(33, "c").join(",")}`, `?subscribe=${names(20, "c").join(",")}${since(names(13, "h"))}`]) {
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
      const since = channels.map((channel) => `since=${encodeURIComponent(`${channel}:${epochs.get(channel)}:0`)}`).join("&")
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
      const { http, url } = yield* startServer({ processors: [Echo.Echo], messageRate: { perSecond: 1, burst: 3 } }, Echo.layer, {
        history: History.layerMemory({ policies: [{ prefix: "h-", size: 10, ttl: Duration.minutes(1) }] })
      })
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
      assert.deepStrictEqual(live.frames.map((text) => [headerOf(text, "channel"), headerOf(text, "offset")]), [["h-b", "1"]])
    }))
})
