import { assert, describe, it } from "@effect/vitest"
import { Cause, Context, Deferred, Duration, Effect, Exit, Fiber, Layer } from "effect"
import { HttpRouter, HttpServer, HttpServerResponse } from "effect/http"
import { randomBytes } from "node:crypto"
import * as Http from "node:http"
import { createServer } from "node:http"
import * as Net from "node:net"
import type { Duplex } from "node:stream"
import { RawClient, textFrame } from "../bench/fanout/client.ts"
import * as Bus from "../src/Bus.ts"
import * as Echo from "../src/demo/Echo.ts"
import * as History from "../src/History.ts"
import * as Hub from "../src/Hub.ts"
import * as LhttpServer from "../src/LhttpServer.ts"
import * as NodeLhttpServer from "../src/NodeLhttpServer.ts"
import * as Processor from "../src/Processor.ts"
import * as Rejection from "../src/Rejection.ts"
import { getJson, send, sse } from "./utils/http.ts"
import { connect, frame, request, startServer } from "./utils/lhttp.ts"
import { eventually } from "./utils/wait.ts"

// The WebSocket transport and the HTTP endpoints over real sockets. What the
// core does whatever the transport is tested on the in-memory transport
// (test/LhttpServer.test.ts).

// a processor that works until the test opens its gate
let slowStarted = false
let slowGate = Deferred.makeUnsafe<void>()
const Slow = Processor.make("slow")
const SlowLive = Slow.toLayer({
  onMessage: (exchange) =>
    Effect.sync(() => {
      slowStarted = true
    }).pipe(Effect.andThen(Effect.suspend(() => Deferred.await(slowGate))), Effect.andThen(exchange.send("done")))
})

// answers with the connection's id; records it when the connection ends
const ended: Array<string> = []
const Life = Processor.make("life")
const LifeLive = Life.toLayer({
  onMessage: (exchange) => exchange.send(exchange.connection.id),
  onClose: (connection) => Effect.sync(() => ended.push(connection.id))
})

const Bye = Processor.make("bye")
const ByeLive = Bye.toLayer({
  onMessage: (exchange) => exchange.connection.close(4100, "bye")
})

const Who = Processor.make("who")
const WhoLive = Who.toLayer({
  onMessage: (exchange) =>
    exchange.send(JSON.stringify({
      url: exchange.connection.url,
      agent: exchange.connection.requestHeaders["user-agent"],
      headers: Object.keys(exchange.connection.requestHeaders).sort(),
      remote: exchange.connection.remoteAddress
    }))
})

const server = (options: Omit<NodeLhttpServer.Options, "processors"> = {}) =>
  startServer(
    { processors: [Echo.Echo, Slow, Who, Life, Bye], ...options },
    Layer.mergeAll(Echo.layer, SlowLive, WhoLive, LifeLive, ByeLive)
  )

/**
 * A WebSocket client on a raw socket, upgraded by hand, that answers nothing
 * (no pong, no close frame): the bytes the server sends and whether the
 * socket is gone.
 */
const rawClient = (port: number) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly socket: Duplex; readonly received: () => Buffer; readonly gone: () => boolean }, Error>(
      (resume) => {
        const request = Http.request({
          host: "127.0.0.1",
          port,
          path: "/",
          headers: {
            connection: "Upgrade",
            upgrade: "websocket",
            "sec-websocket-key": randomBytes(16).toString("base64"),
            "sec-websocket-version": "13"
          }
        })
        request.on("upgrade", (_response, socket, head) => {
          const chunks: Array<Buffer> = [head]
          let gone = false
          socket.on("data", (chunk: Buffer) => chunks.push(chunk))
          socket.on("error", () => {})
          socket.on("close", () => {
            gone = true
          })
          resume(Effect.succeed({ socket, received: () => Buffer.concat(chunks), gone: () => gone }))
        })
        request.on("error", (error) => resume(Effect.fail(error)))
        request.end()
      }
    ),
    (client) => Effect.sync(() => client.socket.destroy())
  )

/** The close frame the server sent, once all of it arrived (server frames are not masked). */
const closeFrameIn = (bytes: Buffer): { code: number; reason: string } | undefined =>
  bytes.length >= 4 && bytes[0] === 0x88 && bytes.length >= 2 + bytes[1]!
    ? { code: bytes.readUInt16BE(2), reason: bytes.subarray(4, 2 + bytes[1]!).toString("utf8") }
    : undefined

describe("NodeLhttpServer: the WebSocket transport", () => {
  it.live("messages in, frames out, pub/sub across connections, over real sockets", () =>
    Effect.gen(function*() {
      const { url } = yield* server()
      const a = yield* connect(url)
      const b = yield* connect(`${url}/elsewhere`)
      yield* a.send(frame("echo", { id: "1" }, "hi é"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 echo\r\nid:1\r\n\r\nhi é")
      yield* b.send(frame("c", { subscribe: "room" }))
      yield* b.send(frame("echo", {}, "subscribed"))
      assert.strictEqual(yield* b.next(), "LHTTP/1.0 echo\r\n\r\nsubscribed")
      for (let i = 0; i < 100; i++) yield* a.send(frame("c", { publish: "room" }, `m${i}`))
      for (let i = 0; i < 100; i++) assert.strictEqual(yield* b.next(), `LHTTP/1.0 c\r\npublish:room\r\n\r\nm${i}`)
    }))

  it.live("the peer as the transport saw it: request URL, headers (not the handshake's own) and remote address", () =>
    Effect.gen(function*() {
      const { url } = yield* server()
      const client = yield* connect(`${url}/who?me=1`, { headers: { "user-agent": "test-agent" } })
      yield* client.send(frame("who"))
      const who = JSON.parse((yield* client.next()).split("\r\n\r\n")[1]!)
      // connection, upgrade and sec-websocket-* were the handshake's: a connection does not keep them
      assert.deepStrictEqual(who, {
        url: "/who?me=1",
        agent: "test-agent",
        headers: ["host", "user-agent"],
        remote: "127.0.0.1"
      })
    }))

  it.live("a binary frame is read as UTF-8; invalid UTF-8 gets InvalidUtf8", () =>
    Effect.gen(function*() {
      const { url } = yield* server()
      const a = yield* connect(url)
      a.ws.send(Buffer.from(frame("c", { subscribe: "b", publish: "b" }, "binary é")))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 c\r\nsubscribe:b\r\npublish:b\r\n\r\nbinary é")
      a.ws.send(Buffer.from([0x4c, 0x48, 0xff, 0xfe]))
      assert.match(yield* a.next(), /reason:InvalidUtf8/)
    }))

  // the 4001 of a peer that does not read is in test/Security.test.ts, the turns of 256 messages in
  // test/LhttpServer.test.ts "fairness between connections"
  it.live("frames of each WebSocket length form (7, 16 and 64 bits), alone and several in one write, arrive whole", () =>
    Effect.gen(function*() {
      const { url } = yield* server({ maxMessageBytes: 200_000 })
      const subscriber = yield* connect(url)
      const publisher = yield* connect(url)
      yield* subscriber.send(frame("c", { subscribe: "sizes" }))
      yield* subscriber.send(frame("echo", {}, "ready"))
      assert.strictEqual(yield* subscriber.next(), "LHTTP/1.0 echo\r\n\r\nready")
      const head = "LHTTP/1.0 c\r\npublish:sizes\r\n\r\n"
      // whole frames of 125 and 126 bytes (the 7-bit length's last and the 16-bit one's first), of
      // 65,535 and 65,536 (the 16-bit one's last and the 64-bit one's first), a multi-byte body
      const sizes = [125, 126, 65_535, 65_536, 150_000]
      const texts = [...sizes.map((size) => head + "x".repeat(size - head.length)), head + "é😀".repeat(1000)]
      // one at a time (each flushed alone), then all in one go (one write of several frames)
      for (const text of texts) {
        yield* publisher.send(text)
        assert.strictEqual(yield* subscriber.next(), text)
      }
      for (const text of texts) yield* publisher.send(text)
      for (const text of texts) assert.strictEqual(yield* subscriber.next(), text)
    }))

  it.live("a burst larger than maxOutboundBytes reaches a subscriber that reads: it is not closed as a slow consumer", () =>
    Effect.gen(function*() {
      const { port, url } = yield* server()
      const publisher = yield* Effect.acquireRelease(
        Effect.promise(() => RawClient.connect(port)),
        (client) => Effect.sync(() => client.socket.destroy())
      )
      const subscriber = yield* connect(url)
      yield* subscriber.send(frame("c", { subscribe: "burst" }))
      yield* subscriber.send(frame("echo", {}, "ready"))
      assert.strictEqual(yield* subscriber.next(), "LHTTP/1.0 echo\r\n\r\nready")
      let received = 0
      subscriber.ws.on("message", () => received++)
      // 10,000 frames of about 120 bytes, 1.2 MB, in one write: more than the 1 MiB bound, and all
      // of it readable by the server at once
      const body = "x".repeat(64)
      publisher.send(
        Buffer.concat(Array.from({ length: 10_000 }, () => textFrame(frame("c", { publish: "burst" }, body))))
      )
      yield* eventually(() => received === 10_000, "20 seconds")
      assert.strictEqual(subscriber.ws.readyState, subscriber.ws.OPEN)
      const metrics = yield* request(`http://127.0.0.1:${port}/metrics`)
      assert.match(metrics.body, /^lhttp_slow_consumer_closes_total 0$/m)
    }))

  it.live("a connection that goes away releases its subscriptions", () =>
    Effect.gen(function*() {
      const { url, hub } = yield* server()
      const a = yield* connect(url)
      yield* a.send(frame("c", { subscribe: "k1 k2 k3" }))
      yield* eventually(() => hub.channelCount() === 3)
      a.ws.terminate()
      yield* eventually(() => hub.channelCount() === 0)
    }))

  it.live("onClose runs after a clean close (the client's close frame) as after a dropped socket", () =>
    Effect.gen(function*() {
      const { url } = yield* server()
      const clean = yield* connect(url)
      const dropped = yield* connect(url)
      yield* clean.send(frame("life"))
      const cleanId = (yield* clean.next()).split("\r\n\r\n")[1]!
      yield* dropped.send(frame("life"))
      const droppedId = (yield* dropped.next()).split("\r\n\r\n")[1]!
      clean.ws.close(1000, "done")
      // the server answered the close frame with its own
      assert.deepStrictEqual(yield* clean.closed, { code: 1000, reason: "done" })
      yield* eventually(() => ended.includes(cleanId))
      dropped.ws.terminate()
      yield* eventually(() => ended.includes(droppedId))
    }))

  it.live("a peer that never answers the server's close frame has its socket destroyed after closeGrace", () =>
    Effect.gen(function*() {
      // closeGrace is 5 s by default; the deadline of the wait below is far above the 100 ms set here
      const { port } = yield* server({ closeGrace: "100 millis" })
      const raw = yield* rawClient(port)
      raw.socket.write(textFrame(frame("bye")))
      yield* eventually(() => closeFrameIn(raw.received()) !== undefined)
      assert.deepStrictEqual(closeFrameIn(raw.received()), { code: 4100, reason: "bye" })
      // the client neither answers nor ends its side: the server destroys the socket
      yield* eventually(raw.gone, "3 seconds")
    }))
})

describe("NodeLhttpServer: limits and safety", () => {
  it.live("a message over maxMessageBytes closes with 1009; other clients keep receiving", () =>
    Effect.gen(function*() {
      const { url } = yield* startServer({ maxMessageBytes: 1024 })
      const big = yield* connect(url)
      const other = yield* connect(url)
      yield* other.send(frame("c", { subscribe: "o" }))
      yield* big.send(frame("c", { publish: "o" }, "x".repeat(2000)))
      assert.strictEqual((yield* big.closed).code, 1009)
      yield* other.send(frame("c", { publish: "o" }, "fine"))
      assert.strictEqual(yield* other.next(), "LHTTP/1.0 c\r\npublish:o\r\n\r\nfine")
    }))

  it.live("a connection that does not answer pings is closed with 4000 \"heartbeat timeout\"; one that does stays", () =>
    Effect.gen(function*() {
      const { url } = yield* startServer({ heartbeatInterval: "100 millis", heartbeatTimeout: "100 millis" })
      const silent = yield* connect(url, { autoPong: false })
      const alive = yield* connect(url)
      assert.deepStrictEqual(yield* silent.closed, { code: 4000, reason: "heartbeat timeout" })
      yield* alive.send(frame("c", { subscribe: "h", publish: "h" }, "alive"))
      assert.strictEqual(yield* alive.next(), "LHTTP/1.0 c\r\nsubscribe:h\r\npublish:h\r\n\r\nalive")
    }))

  it.live("a heartbeat reaches every connection of many (it pings them a slice per turn): each silent one is closed", () =>
    Effect.gen(function*() {
      const { port } = yield* startServer({ heartbeatInterval: "300 millis", heartbeatTimeout: "300 millis" })
      // more than two slices of 256, and not a multiple of it
      const clients = yield* Effect.forEach(Array.from({ length: 600 }), () => rawClient(port), { concurrency: 50 })
      yield* eventually(() => clients.every((client) => client.gone()), "15 seconds")
      for (const client of clients) {
        // pings (0x89) came, one or more, then the close frame 4000 (server frames: no mask, short payloads)
        let bytes = client.received()
        let pings = 0
        while (bytes[0] === 0x89) {
          pings++
          bytes = bytes.subarray(2 + bytes[1]!)
        }
        assert.isAtLeast(pings, 1)
        assert.deepStrictEqual(closeFrameIn(bytes), { code: 4000, reason: "heartbeat timeout" })
      }
    }))

  it.live("origins outside the allowlist get 403; listed origins and requests without one pass", () =>
    Effect.gen(function*() {
      const { url } = yield* startServer({ allowedOrigins: ["https://ok.example"] })
      const refused = yield* connect(url, { origin: "https://evil.example" }).pipe(Effect.flip)
      assert.include(String(refused), "403")
      yield* connect(url, { origin: "https://ok.example" })
      yield* connect(url)
    }))

  it.live("a plain GET gets 426, health and readiness answer", () =>
    Effect.gen(function*() {
      const { http } = yield* startServer({})
      assert.strictEqual((yield* request(`${http}/`)).status, 426)
      assert.strictEqual((yield* request(`${http}/healthz`)).status, 200)
      assert.strictEqual((yield* request(`${http}/readyz`)).status, 200)
    }))
})

describe("NodeLhttpServer: GET /metrics", () => {
  it.live("serves the server's metrics in Prometheus text: connections by transport, channels, subscriptions, messages, frames, error frames by reason", () =>
    Effect.gen(function*() {
      const { http, url } = yield* startServer({})
      const client = yield* connect(url)
      yield* client.send(frame("c", { subscribe: "m" }))
      yield* client.send(frame("c", { publish: "m" }, "hi"))
      assert.strictEqual(yield* client.next(), frame("c", { publish: "m" }, "hi"))
      yield* client.send("bad")
      assert.match(yield* client.next(), /^LHTTP\/1\.0 error\r\nstatus:400\r\nreason:NotLhttp\r\n/)
      const controller = new AbortController()
      const stream = yield* Effect.promise(() => fetch(`${http}/sse`, { signal: controller.signal }))
      yield* Effect.addFinalizer(() => Effect.sync(() => controller.abort()))
      assert.strictEqual(stream.status, 200)
      const metrics = yield* request(`${http}/metrics`)
      assert.strictEqual(metrics.status, 200)
      assert.strictEqual(metrics.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8")
      const lines = metrics.body.split("\n").filter((line) => !line.startsWith("#"))
      for (
        const line of [
          "lhttp_connections{transport=\"websocket\"} 1",
          "lhttp_connections{transport=\"sse\"} 1",
          "lhttp_channels 1",
          "lhttp_subscriptions 1",
          "lhttp_messages_in_total 3",
          "lhttp_frames_out_total 2",
          `lhttp_bytes_out_total ${
            Buffer.byteLength(frame("c", { publish: "m" }, "hi")) +
            Buffer.byteLength(
              "LHTTP/1.0 error\r\nstatus:400\r\nreason:NotLhttp\r\n\r\na frame starts with \"LHTTP/1.0 <command>\""
            )
          }`,
          "lhttp_error_frames_total{reason=\"NotLhttp\"} 1",
          "lhttp_slow_consumer_closes_total 0",
          "lhttp_rate_limited_total 0",
          "lhttp_bus_ready 1"
        ]
      ) assert.include(lines, line)
    }))

  it.live("is guarded as /publish: with a token configured, it wants the bearer token", () =>
    Effect.gen(function*() {
      const { http } = yield* startServer({ publishToken: "m3trics" })
      assert.strictEqual((yield* request(`${http}/metrics`)).status, 401)
      const allowed = yield* request(`${http}/metrics`, { headers: { authorization: "Bearer m3trics" } })
      assert.strictEqual(allowed.status, 200)
      assert.include(allowed.body, "# TYPE lhttp_messages_in_total counter")
    }))
})

describe("NodeLhttpServer: the connection cap", () => {
  it.live("past maxConnections an upgrade, an SSE stream and a poll get 503 with Retry-After", () =>
    Effect.gen(function*() {
      const { http, url } = yield* startServer({ maxConnections: 1 })
      yield* connect(url)
      const refused = yield* Effect.promise(() =>
        new Promise<string>((resolve) => {
          const socket = Net.connect(Number(new URL(http).port), "127.0.0.1", () =>
            socket.write(
              "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ))
          let answer = ""
          socket.on("data", (chunk) => answer += chunk.toString())
          socket.on("close", () => resolve(answer))
          socket.on("error", () => {})
        })
      )
      assert.match(refused, /^HTTP\/1\.1 503 Service Unavailable\r\n/)
      assert.include(refused, "\r\nretry-after: 1\r\n")
      for (const path of ["/sse", "/poll"]) {
        const answer = yield* request(`${http}${path}`)
        assert.deepStrictEqual(
          [answer.status, answer.headers.get("retry-after"), answer.body],
          [503, "1", "TooManyConnections: the server holds as many connections as it may: try again later\n"],
          path
        )
      }
    }))
})

describe("NodeLhttpServer: one address's share of the connections", () => {
  it.live("one address past its share (a tenth of maxConnections, at least 100) gets 503 TooManyFromAddress on every transport; another address is admitted", () =>
    Effect.gen(function*() {
      const { http, url, port, server: lhttp } = yield* server({ maxConnections: 1000 })
      // the flood: 100 WebSockets from 127.0.0.1
      for (let i = 0; i < 100; i++) yield* connect(url)
      const refused = yield* Effect.promise(() =>
        new Promise<string>((resolve) => {
          const socket = Net.connect({ port, host: "127.0.0.1", localAddress: "127.0.0.1" }, () =>
            socket.write(
              "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ))
          let answer = ""
          socket.on("data", (chunk) => answer += chunk.toString())
          socket.on("close", () => resolve(answer))
          socket.on("error", () => {})
        })
      )
      const message = "TooManyFromAddress: this address holds as many connections as it may: try again later\n"
      assert.match(refused, /^HTTP\/1\.1 503 Service Unavailable\r\n/)
      assert.include(refused, "\r\nretry-after: 1\r\n")
      assert.isTrue(refused.endsWith(`\r\n\r\n${message}`))
      for (const path of ["/sse", "/poll"]) {
        const answer = yield* request(`${http}${path}`)
        assert.deepStrictEqual(
          [answer.status, answer.headers.get("retry-after"), answer.body],
          [503, "1", message],
          path
        )
      }
      assert.strictEqual(lhttp.connectionCount(), 100)
      // a second client, from another loopback address, is admitted
      const other = yield* connect(url, { localAddress: "127.0.0.2" })
      yield* other.send(frame("echo", {}, "admitted"))
      assert.strictEqual(yield* other.next(), frame("echo", {}, "admitted"))
      const poll = yield* Effect.promise(() =>
        new Promise<number>((resolve, reject) => {
          Http.get(`${http}/poll`, { localAddress: "127.0.0.2" }, (response) => {
            response.resume()
            resolve(response.statusCode ?? 0)
          }).on("error", reject)
        })
      )
      assert.strictEqual(poll, 200)
    }))
})

describe("NodeLhttpServer: the headers deadline", () => {
  it.live("a request that does not finish its headers within headersTimeout has its socket closed", () =>
    Effect.gen(function*() {
      const { port, url } = yield* startServer({ headersTimeout: "300 millis" })
      const closed = yield* Effect.callback<string>((resume) => {
        const socket = Net.connect(port, "127.0.0.1", () => {
          // a slowloris on the upgrade: the request line and one header, then nothing
          socket.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        })
        let answer = ""
        socket.on("data", (chunk) => answer += chunk.toString())
        socket.on("error", () => {})
        socket.on("close", () => resume(Effect.succeed(answer)))
        return Effect.sync(() => socket.destroy())
      }).pipe(
        Effect.timeoutOrElse({ duration: "5 seconds", orElse: () => Effect.die(new Error("the socket was held")) })
      )
      assert.match(closed, /^HTTP\/1\.1 408 Request Timeout\r\n/)
      // the server goes on
      const client = yield* connect(url)
      yield* client.send(frame("c", { subscribe: "x", publish: "x" }, "alive"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 c\r\nsubscribe:x\r\npublish:x\r\n\r\nalive")
    }))
})

describe("NodeLhttpServer: POST /publish", () => {
  it.live("delivers the raw body byte for byte to each channel", () =>
    Effect.gen(function*() {
      const { url, http } = yield* startServer({})
      const a = yield* connect(url)
      yield* a.send(frame("c", { subscribe: "mike other" }))
      yield* a.nothing()
      const raw = "LHTTP/1.0 chat\r\nz-last:1\r\npublish:mike other\r\na-first:2\r\n\r\nhello mike\r\n\r\n"
      const response = yield* request(`${http}/publish`, { method: "POST", body: raw })
      assert.strictEqual(response.status, 204)
      assert.strictEqual(yield* a.next(), raw)
      assert.strictEqual(yield* a.next(), raw)
    }))

  it.live("its 204 says where the channels that keep history put the message (lhttp-positions)", () =>
    Effect.gen(function*() {
      const history = History.layerMemory({ policies: [{ prefix: "h-", size: 10, ttl: Duration.minutes(1) }] })
      const { url, http } = yield* startServer({}, undefined, { history })
      const a = yield* connect(url)
      yield* a.send(frame("c", { subscribe: "h-news", since: "now" }))
      const epoch = /\r\nepoch:([\w-]+)\r\n/.exec(yield* a.next())![1]
      const post = (channels: string) =>
        request(`${http}/publish`, { method: "POST", body: `LHTTP/1.0 chat\r\npublish:${channels}\r\n\r\nx` })
      const first = yield* post("h-news plain")
      assert.deepStrictEqual([first.status, first.headers.get("lhttp-positions")], [204, `h-news:${epoch}:1`])
      const second = yield* post("h-news h-other")
      assert.strictEqual(second.status, 204)
      // (the memory store gives each channel an epoch of its own)
      assert.match(second.headers.get("lhttp-positions")!, new RegExp(`^h-news:${epoch}:2 h-other:[\\w-]+:1$`))
      const plain = yield* post("plain")
      assert.deepStrictEqual([plain.status, plain.headers.get("lhttp-positions")], [204, null])
    }))

  it.live("refuses what it cannot deliver, with a reason", () =>
    Effect.gen(function*() {
      const { http } = yield* startServer({ maxMessageBytes: 1000 })
      const post = (body: string) => request(`${http}/publish`, { method: "POST", body })
      const notLhttp = yield* post("hello")
      assert.deepStrictEqual([notLhttp.status, notLhttp.body.startsWith("NotLhttp")], [400, true])
      assert.strictEqual((yield* post("LHTTP/1.0 chat\r\n\r\nno channel")).status, 400)
      const invalid = yield* post("LHTTP/1.0 chat\r\npublish:a..b\r\n\r\n")
      assert.deepStrictEqual([invalid.status, invalid.body.startsWith("InvalidChannel")], [400, true])
      assert.strictEqual((yield* post(`LHTTP/1.0 chat\r\npublish:a\r\n\r\n${"x".repeat(2000)}`)).status, 413)
      const get = yield* request(`${http}/publish`)
      assert.deepStrictEqual([get.status, get.headers.get("allow")], [405, "POST"])
    }))

  it.live("requires the bearer token when one is configured", () =>
    Effect.gen(function*() {
      const { http } = yield* startServer({ publishToken: "s3cret" })
      const body = "LHTTP/1.0 chat\r\npublish:t\r\n\r\nx"
      assert.strictEqual((yield* request(`${http}/publish`, { method: "POST", body })).status, 401)
      const wrong = { authorization: "Bearer nope" }
      assert.strictEqual((yield* request(`${http}/publish`, { method: "POST", body, headers: wrong })).status, 401)
      const right = { authorization: "Bearer s3cret" }
      assert.strictEqual((yield* request(`${http}/publish`, { method: "POST", body, headers: right })).status, 204)
      // the scheme is case-insensitive (RFC 7235); the token is not
      for (const scheme of ["bearer", "BEARER"]) {
        const headers = { authorization: `${scheme} s3cret` }
        assert.strictEqual((yield* request(`${http}/publish`, { method: "POST", body, headers })).status, 204, scheme)
      }
      const shouting = { authorization: "Bearer S3CRET" }
      assert.strictEqual((yield* request(`${http}/publish`, { method: "POST", body, headers: shouting })).status, 401)
    }))

  it.live("authorize decides on POST /publish too (no connection): a refusal is its HTTP status, nothing delivered", () =>
    Effect.gen(function*() {
      const decided: Array<string> = []
      const { http, url } = yield* startServer({
        authorize: (request) => {
          decided.push(
            `${request.action} ${request.channels.join(",")} ${request.connection === undefined ? "backend" : "client"}`
          )
          return request.connection === undefined && request.channels.includes("closed")
            ? Effect.fail(Rejection.forbidden("closed to backends"))
            : Effect.void
        }
      })
      const subscriber = yield* connect(url)
      yield* subscriber.send(frame("c", { subscribe: "open closed" }))
      yield* subscriber.nothing()
      const refused = yield* request(`${http}/publish`, {
        method: "POST",
        body: "LHTTP/1.0 c\r\npublish:open closed\r\n\r\nx"
      })
      assert.deepStrictEqual([refused.status, refused.body], [403, "closed to backends\n"])
      const body = "LHTTP/1.0 c\r\npublish:open\r\n\r\nallowed"
      assert.strictEqual((yield* request(`${http}/publish`, { method: "POST", body })).status, 204)
      assert.strictEqual(yield* subscriber.next(), body)
      assert.deepStrictEqual(decided.filter((line) => !line.startsWith("subscribe")), [
        "publish open,closed backend",
        "publish open backend"
      ])
    }))

  it.live("refuses a body that is not UTF-8 with 400 InvalidUtf8, as over WebSocket, and delivers nothing", () =>
    Effect.gen(function*() {
      const { http, url } = yield* startServer({})
      const subscriber = yield* connect(url)
      yield* subscriber.send(frame("c", { subscribe: "utf" }))
      yield* subscriber.nothing()
      const bad = new Uint8Array([...new TextEncoder().encode("LHTTP/1.0 c\r\npublish:utf\r\n\r\nbad "), 0xff, 0xfe])
      const refused = yield* request(`${http}/publish`, { method: "POST", body: bad })
      assert.deepStrictEqual([refused.status, refused.body], [400, "InvalidUtf8: the message is not valid UTF-8\n"])
      const good = "LHTTP/1.0 c\r\npublish:utf\r\n\r\ngood é"
      assert.strictEqual((yield* request(`${http}/publish`, { method: "POST", body: good })).status, 204)
      assert.strictEqual(yield* subscriber.next(), good)
    }))
})

// the memory bus, with publishes refused as by a bus that is down
const busDown = Layer.effect(
  Bus.Bus,
  Effect.map(Bus.makeMemory(), (bus) =>
    Bus.Bus.of({
      ...bus,
      publish: () => Effect.fail(new Bus.BusError({ reason: "PublishFailed", message: "the bus is down" }))
    }))
)

describe("NodeLhttpServer: POST /publish while the bus is down", () => {
  it.live("answers 503 with the bus's reason; a publish over WebSocket gets 503 BusUnavailable", () =>
    Effect.gen(function*() {
      const { http, url } = yield* startServer({}, undefined, { bus: busDown })
      const response = yield* request(`${http}/publish`, {
        method: "POST",
        body: "LHTTP/1.0 chat\r\npublish:a\r\n\r\nx"
      })
      assert.deepStrictEqual([response.status, response.body, response.headers.get("retry-after")], [
        503,
        "the bus is down\n",
        "1"
      ])
      const client = yield* connect(url)
      yield* client.send(frame("c", { publish: "a", id: "p" }, "x"))
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 error\r\nstatus:503\r\nreason:BusUnavailable\r\nid:p\r\n\r\nthe bus is down"
      )
    }))
})

describe("NodeLhttpServer: who may publish without a token", () => {
  it("only loopback peers", () => {
    for (const address of ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"]) {
      assert.isTrue(NodeLhttpServer.isLoopback(address))
    }
    for (const address of ["10.0.0.1", "192.168.1.2", "::ffff:10.0.0.1", "2001:db8::1", "1.2.3.4", undefined]) {
      assert.isFalse(NodeLhttpServer.isLoopback(address))
    }
  })
})

describe("NodeLhttpServer: graceful shutdown", () => {
  it.live("readiness off, new upgrades 503, in-flight work finishes, then 1012 and a wait", () =>
    Effect.gen(function*() {
      slowGate = Deferred.makeUnsafe()
      const { url, http, server: lhttp } = yield* server()
      const busy = yield* connect(url)
      const idle = yield* connect(url)
      yield* busy.send(frame("slow"))
      yield* eventually(() => slowStarted)
      const draining = yield* Effect.forkChild(lhttp.drain)
      yield* eventually(() => lhttp.isDraining())
      assert.strictEqual((yield* request(`${http}/readyz`)).status, 503)
      const refused = yield* connect(url).pipe(Effect.flip)
      assert.include(String(refused), "503")
      const idleClosed = yield* idle.closed
      assert.strictEqual(idleClosed.code, 1012)
      assert.match(idleClosed.reason, /^reconnect:\d+$/)
      // the busy connection is closed only once its message is done
      yield* Deferred.succeed(slowGate, undefined)
      assert.strictEqual(yield* busy.next(), "LHTTP/1.0 slow\r\n\r\ndone")
      assert.strictEqual((yield* busy.closed).code, 1012)
      yield* Fiber.join(draining)
      assert.strictEqual(lhttp.connectionCount(), 0)
    }))
})

describe("NodeLhttpServer: mounted into an Effect HTTP app", () => {
  it.live("serves the WebSocket endpoint at the app's paths beside the app's own routes", () =>
    Effect.gen(function*() {
      const hello = HttpRouter.add("GET", "/hello", HttpServerResponse.text("hello from the app"))
      const app = HttpRouter.serve(
        Layer.mergeAll(hello, NodeLhttpServer.routes({ paths: ["/live/*"] })),
        { disableListenLog: true, disableLogger: true }
      ).pipe(
        Layer.provideMerge(
          NodeLhttpServer.layerHttpServer(() => createServer(), { port: 0, host: "127.0.0.1", paths: ["/live/*"] })
        ),
        // shared with the routes: provided outside serve
        Layer.provideMerge(LhttpServer.layer({ processors: [Echo.Echo], maxMessageBytes: 2048 })),
        Layer.provide(Echo.layer),
        Layer.provideMerge(Hub.layer()),
        Layer.provide(Bus.layerMemory())
      )
      const context = yield* Layer.build(app)
      const address = Context.get(context, HttpServer.HttpServer).address
      const port = address._tag === "UnixPathAddress" ? 0 : address.port
      assert.strictEqual((yield* request(`http://127.0.0.1:${port}/hello`)).body, "hello from the app")
      const client = yield* connect(`ws://127.0.0.1:${port}/live/room-1`)
      yield* client.send(frame("echo", {}, "mounted"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 echo\r\n\r\nmounted")
      // without the stand-alone server's WebSocket limit, the server still refuses big messages
      yield* client.send(frame("echo", {}, "x".repeat(4096)))
      assert.strictEqual((yield* client.closed).code, 1009)
      const elsewhere = yield* connect(`ws://127.0.0.1:${port}/other`).pipe(Effect.flip)
      assert.include(String(elsewhere), "404")
    }))
})

/**
 * A Node server with only the given transports over its dispatcher, the
 * core, and an app with one route of its own (`GET /hello`).
 */
const withTransports = (
  transports: Layer.Layer<never, never, NodeLhttpServer.Dispatcher | LhttpServer.LhttpServer>,
  options?: Omit<LhttpServer.Options<typeof Echo.Echo>, "processors">
) =>
  Effect.gen(function*() {
    const hello = HttpRouter.add("GET", "/hello", HttpServerResponse.text("hello from the app"))
    const app = HttpRouter.serve(hello, { disableListenLog: true, disableLogger: true }).pipe(
      Layer.provideMerge(
        NodeLhttpServer.layerServer(() => createServer(), { port: 0, host: "127.0.0.1" }).pipe(
          Layer.provide(transports),
          Layer.provide(NodeLhttpServer.layerDispatcher)
        )
      ),
      Layer.provideMerge(LhttpServer.layer({ processors: [Echo.Echo], ...options })),
      Layer.provide(Echo.layer),
      Layer.provideMerge(Hub.layer()),
      Layer.provide(Bus.layerMemory())
    )
    const context = yield* Layer.build(app)
    const address = Context.get(context, HttpServer.HttpServer).address
    const port = address._tag === "UnixPathAddress" ? 0 : address.port
    return { url: `ws://127.0.0.1:${port}`, http: `http://127.0.0.1:${port}` }
  })

// what the app answers a path it has no route for
const notFound = (http: string, path: string, init?: RequestInit) =>
  Effect.map(request(`${http}${path}`, init), (answer) => answer.status)

describe("NodeLhttpServer: the transports as Layers over one dispatcher", () => {
  it.live("layerWebSocket alone: WebSocket upgrades are served; /sse, /poll and /send are the app's (404)", () =>
    Effect.gen(function*() {
      const { http, url } = yield* withTransports(NodeLhttpServer.layerWebSocket())
      const client = yield* connect(`${url}/anywhere`)
      yield* client.send(frame("echo", {}, "over WebSocket"))
      assert.strictEqual(yield* client.next(), frame("echo", {}, "over WebSocket"))
      assert.strictEqual((yield* request(`${http}/hello`)).body, "hello from the app")
      assert.strictEqual(yield* notFound(http, "/sse"), 404)
      assert.strictEqual(yield* notFound(http, "/poll"), 404)
      assert.strictEqual(yield* notFound(http, "/send?connection=x", { method: "POST", body: frame("echo") }), 404)
    }))

  it.live("layerSse alone (over layerHttpConnections): SSE streams and POST /send are served; a WebSocket upgrade and /poll are the app's (404)", () =>
    Effect.gen(function*() {
      const { http, url } = yield* withTransports(
        NodeLhttpServer.layerSse().pipe(Layer.provide(NodeLhttpServer.layerHttpConnections()))
      )
      const stream = yield* sse(`${http}/sse`)
      assert.strictEqual(stream.status, 200)
      const connected = yield* stream.next
      assert.strictEqual(connected.event, "connected")
      assert.strictEqual((yield* send(http, connected.data, frame("echo", {}, "over SSE"))).status, 202)
      assert.deepStrictEqual(yield* stream.next, {
        id: `${connected.data}:1`,
        event: "echo",
        data: "LHTTP/1.0 echo\n\nover SSE"
      })
      assert.include(String(yield* connect(`${url}/anywhere`).pipe(Effect.flip)), "404")
      assert.strictEqual(yield* notFound(http, "/poll"), 404)
      assert.strictEqual((yield* request(`${http}/hello`)).body, "hello from the app")
    }))

  it.live("layerLongPoll alone (over layerHttpConnections): polls and POST /send are served; a WebSocket upgrade and /sse are the app's (404)", () =>
    Effect.gen(function*() {
      const { http, url } = yield* withTransports(
        NodeLhttpServer.layerLongPoll().pipe(Layer.provide(NodeLhttpServer.layerHttpConnections()))
      )
      const opened = yield* getJson(`${http}/poll`)
      assert.deepStrictEqual(opened.body, { connection: opened.body.connection, cursor: 0, frames: [] })
      const key = opened.body.connection
      assert.strictEqual((yield* send(http, key, frame("echo", {}, "over long-poll"))).status, 202)
      assert.deepStrictEqual(yield* getJson(`${http}/poll?connection=${key}&cursor=0`), {
        status: 200,
        body: { connection: key, cursor: 1, frames: [frame("echo", {}, "over long-poll")] }
      })
      assert.include(String(yield* connect(`${url}/anywhere`).pipe(Effect.flip)), "404")
      assert.strictEqual(yield* notFound(http, "/sse"), 404)
    }))

  it.live("SSE and long-poll over one layerHttpConnections share its connections' caps: a poll connection no request holds counts against a new stream", () =>
    Effect.gen(function*() {
      const { http } = yield* withTransports(
        Layer.mergeAll(NodeLhttpServer.layerSse(), NodeLhttpServer.layerLongPoll()).pipe(
          Layer.provide(NodeLhttpServer.layerHttpConnections({ maxDetachedPerAddress: 1 }))
        )
      )
      const opened = yield* getJson(`${http}/poll`)
      assert.strictEqual(opened.status, 200)
      const refused = yield* request(`${http}/sse`)
      assert.strictEqual(refused.status, 503)
      assert.strictEqual(refused.headers.get("retry-after"), "1")
      assert.match(refused.body, /^TooManyDetached: /)
    }))

  it.live("while the server drains, a new SSE stream and a new poll get 503 with Retry-After: 1, as an upgrade does", () =>
    Effect.gen(function*() {
      const { http, server: lhttp } = yield* startServer({ processors: [Echo.Echo] }, Echo.layer)
      yield* lhttp.drain
      for (const path of ["/sse", "/poll"]) {
        const answer = yield* request(`${http}${path}`)
        assert.deepStrictEqual(
          [answer.status, answer.headers.get("retry-after"), answer.body],
          [503, "1", "the server is shutting down\n"],
          path
        )
      }
    }))

  it.live("two stand-alone servers built with one memo map (one program) each have a dispatcher of their own", () =>
    Effect.gen(function*() {
      const memoMap = yield* Layer.makeMemoMap
      const scope = yield* Effect.scope
      const build = Layer.buildWithMemoMap(memoMap, scope)
      for (let i = 0; i < 2; i++) {
        const context = yield* build(
          NodeLhttpServer.layer({ port: 0, host: "127.0.0.1", processors: [Echo.Echo] }).pipe(
            Layer.provide(Echo.layer),
            Layer.provideMerge(Hub.layer()),
            Layer.provide(Bus.layerMemory())
          )
        )
        const address = Context.get(context, HttpServer.HttpServer).address
        const port = address._tag === "UnixPathAddress" ? 0 : address.port
        const client = yield* connect(`ws://127.0.0.1:${port}`)
        yield* client.send(frame("echo", {}, `server ${i}`))
        assert.strictEqual(yield* client.next(), frame("echo", {}, `server ${i}`))
        assert.strictEqual((yield* getJson(`http://127.0.0.1:${port}/poll`)).status, 200)
      }
    }))

  it.live("two transports at one path: building the server fails with a defect that names the path", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(withTransports(
        Layer.mergeAll(NodeLhttpServer.layerSse({ ssePath: "/x" }), NodeLhttpServer.layerLongPoll({ pollPath: "/x" }))
          .pipe(Layer.provide(NodeLhttpServer.layerHttpConnections()))
      ))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        assert.isTrue(Cause.hasDies(exit.cause))
        assert.include(Cause.pretty(exit.cause), "two transports of one server take requests at /x")
      }
    }))
})
