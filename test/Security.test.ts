/**
 * The defences of docs/security.md that need the real WebSocket layer, the
 * real HTTP routes or many samples: each test here fails when its defence is
 * gone. What the core does whatever the transport is in LhttpServer.test.ts;
 * the WebSocket transport's plain behaviour in NodeLhttpServer.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Context, Deferred, Effect, Layer, Logger, References } from "effect"
import { HttpRouter, HttpServer } from "effect/http"
import { Buffer } from "node:buffer"
import { execFileSync, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as Http from "node:http"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { inspect } from "node:util"
import * as Bus from "../src/Bus.ts"
import * as Echo from "../src/demo/Echo.ts"
import * as Login from "../src/demo/Login.ts"
import type * as Filter from "../src/Filter.ts"
import * as Hub from "../src/Hub.ts"
import * as LhttpServer from "../src/LhttpServer.ts"
import * as NodeLhttpServer from "../src/NodeLhttpServer.ts"
import * as Processor from "../src/Processor.ts"
import { Rejection } from "../src/Rejection.ts"
import * as Sessions from "../src/Sessions.ts"
import * as SessionStore from "../src/SessionStore.ts"
import { connect, frame, request, startServer } from "./utils/lhttp.ts"
import { startMemoryServer } from "./utils/memory.ts"
import { eventually, until } from "./utils/wait.ts"

// ---------------------------------------------------------------------------
// A WebSocket client on a raw socket: the upgrade written by hand, every frame
// the server sends read as it is on the wire (FIN, RSV, opcode, mask, payload),
// its reading stopped and restarted at will.
// ---------------------------------------------------------------------------

interface WireFrame {
  readonly fin: boolean
  readonly rsv: number
  readonly opcode: number
  readonly masked: boolean
  readonly payload: Buffer
}

interface RawWs {
  readonly socket: Net.Socket
  /** The complete frames received so far. */
  readonly frames: () => ReadonlyArray<WireFrame>
  /** The close frame's code and reason, once it arrived. */
  readonly closeFrame: () => { readonly code: number; readonly reason: string } | undefined
  /** Sends a masked frame (text by default). */
  readonly send: (payload: string | Uint8Array, opcode?: number) => void
}

/** A masked client frame, FIN set. */
const clientFrame = (payload: Uint8Array, opcode: number): Buffer => {
  const length = payload.length
  const extended = length < 126 ? 0 : length < 65536 ? 2 : 8
  const out = Buffer.alloc(2 + extended + 4 + length)
  out[0] = 0x80 | opcode
  if (extended === 0) out[1] = 0x80 | length
  else if (extended === 2) {
    out[1] = 0x80 | 126
    out.writeUInt16BE(length, 2)
  } else {
    out[1] = 0x80 | 127
    out.writeBigUInt64BE(BigInt(length), 2)
  }
  const maskAt = 2 + extended
  randomBytes(4).copy(out, maskAt)
  for (let i = 0; i < length; i++) out[maskAt + 4 + i] = payload[i]! ^ out[maskAt + (i & 3)]!
  return out
}

const upgradeRequest = (path: string, headers: Record<string, string> = {}) =>
  `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
  `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n` +
  Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join("") + "\r\n"

/** Opens a raw WebSocket until the test's scope closes. */
const rawWs = (port: number, path = "/") =>
  Effect.acquireRelease(
    Effect.callback<RawWs, Error>((resume) => {
      const socket = Net.connect({ port, host: "127.0.0.1" }, () => socket.write(upgradeRequest(path)))
      const frames: Array<WireFrame> = []
      let pending: Buffer = Buffer.alloc(0)
      let upgraded = false
      const parse = () => {
        let at = 0
        for (;;) {
          if (pending.length - at < 2) break
          const first = pending[at]!
          const second = pending[at + 1]!
          let length = second & 127
          let head = 2
          if (length === 126) {
            if (pending.length - at < 4) break
            length = pending.readUInt16BE(at + 2)
            head = 4
          } else if (length === 127) {
            if (pending.length - at < 10) break
            length = Number(pending.readBigUInt64BE(at + 2))
            head = 10
          }
          const masked = (second & 0x80) !== 0
          if (masked) head += 4
          if (pending.length - at < head + length) break
          frames.push({
            fin: (first & 0x80) !== 0,
            rsv: (first >> 4) & 7,
            opcode: first & 15,
            masked,
            payload: Buffer.from(pending.subarray(at + head, at + head + length))
          })
          at += head + length
        }
        pending = pending.subarray(at)
      }
      socket.on("data", (chunk: Buffer) => {
        pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
        if (!upgraded) {
          const end = pending.indexOf("\r\n\r\n")
          if (end === -1) return
          const head = pending.subarray(0, end).toString("latin1")
          if (!head.startsWith("HTTP/1.1 101 ")) {
            socket.destroy()
            return resume(Effect.fail(new Error(`the upgrade was refused: ${head}`)))
          }
          upgraded = true
          pending = pending.subarray(end + 4)
          resume(Effect.succeed(client))
        }
        parse()
      })
      socket.on("error", (error) => {
        if (!upgraded) resume(Effect.fail(error))
      })
      const client: RawWs = {
        socket,
        frames: () => frames,
        closeFrame: () => {
          const close = frames.find((wire) => wire.opcode === 8)
          return close === undefined
            ? undefined
            : { code: close.payload.readUInt16BE(0), reason: close.payload.subarray(2).toString("utf8") }
        },
        send: (payload, opcode = 1) =>
          socket.write(clientFrame(typeof payload === "string" ? Buffer.from(payload, "utf8") : payload, opcode))
      }
    }),
    (client) => Effect.sync(() => client.socket.destroy())
  )

const textOf = (wire: WireFrame) => wire.payload.toString("utf8")

/** One counter of `GET /metrics` (from loopback: no token needed). */
const metric = (http: string, name: string) =>
  Effect.map(request(`${http}/metrics`), (response) => {
    const match = new RegExp(`^${name} (\\d+)$`, "m").exec(response.body)
    if (match === null) throw new Error(`no ${name} in /metrics`)
    return Number(match[1])
  })

// a processor that works until the test opens its gate
let gate = Deferred.makeUnsafe<void>()
let gateReached = false
const Slow = Processor.make("slow")
const SlowLive = Slow.toLayer({
  onMessage: (exchange) =>
    Effect.sync(() => {
      gateReached = true
    }).pipe(Effect.andThen(Effect.suspend(() => Deferred.await(gate))), Effect.andThen(exchange.send("done")))
})

describe("Security: slow consumers over WebSocket (security.md, server.md)", () => {
  it.live("a real WebSocket peer that stops reading is closed 4001 \"slow consumer\" once the socket's unsent bytes pass maxOutboundBytes (1 MiB); it got an ordered prefix", () =>
    Effect.gen(function*() {
      // the peer answers the close frame late (it is not reading): the grace is long enough for it to read
      const { port, url, http } = yield* startServer({ processors: [Echo.Echo], closeGrace: "60 seconds" }, Echo.layer)
      const slow = yield* rawWs(port)
      slow.send(frame("c", { subscribe: "flood" }))
      slow.send(frame("echo", {}, "ready"))
      yield* eventually(() => slow.frames().length === 1)
      assert.strictEqual(textOf(slow.frames()[0]!), frame("echo", {}, "ready"))
      // the peer stops reading: what the server writes fills the kernel's buffers, then stays in the
      // server's socket (ws.bufferedAmount), which only the transport's bufferedBytes() shows the outbox
      slow.socket.pause()
      const publisher = yield* connect(url)
      const pad = "z".repeat(32 * 1024)
      let published = 0
      // rounds of 4 frames of 32 KiB, each processed (and flushed) before the next: no round alone
      // comes near the bound, so only the unsent bytes of the socket can pass it
      while ((yield* metric(http, "lhttp_slow_consumer_closes_total")) === 0) {
        assert.isBelow(published, 2048, "64 MiB were published and the peer that does not read was not closed")
        for (let i = 0; i < 4; i++) yield* publisher.send(frame("c", { publish: "flood" }, `${published++} ${pad}`))
        yield* publisher.nothing()
      }
      // it reads again: what was written before the close frame, then the close frame
      slow.socket.resume()
      yield* eventually(() => slow.closeFrame() !== undefined, "20 seconds")
      assert.deepStrictEqual(slow.closeFrame(), { code: 4001, reason: "slow consumer" })
      const deliveries = slow.frames().slice(1, -1)
      assert.isAbove(deliveries.length, 0)
      assert.isBelow(deliveries.length, published)
      deliveries.forEach((wire, i) => assert.strictEqual(textOf(wire), frame("c", { publish: "flood" }, `${i} ${pad}`)))
      assert.strictEqual(slow.frames().at(-1)!.opcode, 8)
    }))
})

/**
 * A server on a Node HTTP server the test makes (`layerHttpServer`), with the
 * routes: the test sees the server side of every socket.
 */
const serverWithSockets = <P extends Processor.Any, F extends Filter.Any, I>(
  options: NodeLhttpServer.Options<P, F>,
  implementations: Layer.Layer<I, unknown>
) =>
  Effect.gen(function*() {
    const sockets: Array<Net.Socket> = []
    const app = HttpRouter.serve(NodeLhttpServer.routes(options), { disableListenLog: true, disableLogger: true }).pipe(
      Layer.provideMerge(NodeLhttpServer.layerHttpServer(() => {
        const server = Http.createServer()
        server.on("connection", (socket: Net.Socket) => sockets.push(socket))
        return server
      }, { ...options, port: 0, host: "127.0.0.1" })),
      Layer.provideMerge(LhttpServer.layer(options)),
      Layer.provide(implementations),
      Layer.provideMerge(Hub.layer()),
      Layer.provide(Bus.layerMemory())
    ) as Layer.Layer<HttpServer.HttpServer, unknown>
    const context = yield* Layer.build(app)
    const address = Context.get(context, HttpServer.HttpServer).address
    const port = address._tag === "UnixPathAddress" ? 0 : address.port
    /** The server's side of the socket whose client side is on `localPort`. */
    const serverSide = (localPort: number) => {
      const found = sockets.find((socket) => socket.remotePort === localPort)
      if (found === undefined) throw new Error(`no server socket for the client port ${localPort}`)
      return found
    }
    return { port, url: `ws://127.0.0.1:${port}`, http: `http://127.0.0.1:${port}`, serverSide }
  })

describe("Security: the WebSocket inbox (security.md \"Message floods\", server.md)", () => {
  it.live("a connection's inbox pauses its socket once 1,024 messages wait, and resumes it when they are processed", () =>
    Effect.gen(function*() {
      gate = Deferred.makeUnsafe()
      gateReached = false
      const { url, http, serverSide } = yield* serverWithSockets(
        { processors: [Echo.Echo, Slow] },
        Layer.mergeAll(Echo.layer, SlowLive)
      )
      const client = yield* connect(url)
      const socket = serverSide((client.ws as unknown as { _socket: Net.Socket })._socket.localPort!)
      // the connection's messages wait behind the slow one (no id: processed one after another)
      yield* client.send(frame("slow"))
      yield* eventually(() => gateReached)
      for (let i = 0; i < 1023; i++) yield* client.send(frame("echo", {}, `m${i}`))
      // all read: 1 in progress, 1,023 waiting, the socket still read
      yield* until(Effect.map(metric(http, "lhttp_messages_in_total"), (count) => count === 1024))
      assert.isFalse(socket.isPaused(), "paused with 1,023 messages waiting")
      yield* client.send(frame("echo", {}, "m1023"))
      yield* until(Effect.map(metric(http, "lhttp_messages_in_total"), (count) => count === 1025))
      // 1,024 waiting: the server stopped reading the socket
      assert.isTrue(socket.isPaused(), "not paused with 1,024 messages waiting")
      for (let i = 1024; i < 1034; i++) yield* client.send(frame("echo", {}, `m${i}`))
      yield* Deferred.succeed(gate, undefined)
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 slow\r\n\r\ndone")
      // everything, what waited while the socket was paused included, in order
      for (let i = 0; i < 1034; i++) assert.strictEqual(yield* client.next(), frame("echo", {}, `m${i}`))
      yield* client.nothing()
      assert.isFalse(socket.isPaused())
    }))
})

describe("Security: invalid UTF-8 and the frames the server writes (protocol.md §1)", () => {
  it.live("a text frame that is not valid UTF-8 is closed 1007 by the WebSocket layer, with no error frame; a binary one gets InvalidUtf8", () =>
    Effect.gen(function*() {
      const { port } = yield* startServer({ processors: [Echo.Echo] }, Echo.layer)
      const binary = yield* rawWs(port)
      binary.send(Buffer.from([0x4c, 0x48, 0xff, 0xfe]), 2)
      yield* eventually(() => binary.frames().length === 1)
      assert.match(textOf(binary.frames()[0]!), /^LHTTP\/1\.0 error\r\nstatus:400\r\nreason:InvalidUtf8\r\n/)
      const text = yield* rawWs(port)
      text.send(Buffer.concat([Buffer.from("LHTTP/1.0 echo\r\n\r\nbad "), Buffer.from([0xff, 0xfe])]), 1)
      yield* eventually(() => text.closeFrame() !== undefined)
      assert.strictEqual(text.closeFrame()!.code, 1007)
      // the close frame is the only frame: no error frame before it
      assert.deepStrictEqual(text.frames().map((wire) => wire.opcode), [8])
      // the binary connection goes on
      binary.send(frame("echo", {}, "still here"))
      yield* eventually(() => binary.frames().length === 2)
      assert.strictEqual(textOf(binary.frames()[1]!), frame("echo", {}, "still here"))
    }))

  const Many = Processor.make("many")
  const ManyLive = Many.toLayer({
    onMessage: (exchange) =>
      Effect.gen(function*() {
        // five replies in one turn (one corked write), then one of 100,000 bytes (a 64-bit length)
        for (let i = 0; i < 5; i++) yield* exchange.send(`part ${i}`)
        yield* exchange.send("b".repeat(100_000))
      })
  })

  it.live("every message the server sends is one unfragmented, unmasked text frame (FIN, opcode 1, no RSV bits)", () =>
    Effect.gen(function*() {
      const { port } = yield* startServer({ processors: [Echo.Echo, Many] }, Layer.mergeAll(Echo.layer, ManyLive))
      const client = yield* rawWs(port)
      const expected: Array<string> = []
      client.send(frame("c", { subscribe: "pr1" }))
      client.send(frame("echo", { id: "1" }, "hé"))
      expected.push(frame("echo", { id: "1" }, "hé"))
      client.send(frame("echo", {}, "x".repeat(60_000)))
      expected.push(frame("echo", {}, "x".repeat(60_000)))
      client.send("not lhttp")
      expected.push(
        "LHTTP/1.0 error\r\nstatus:400\r\nreason:NotLhttp\r\n\r\na frame starts with \"LHTTP/1.0 <command>\""
      )
      client.send(frame("many"))
      for (let i = 0; i < 5; i++) expected.push(frame("many", {}, `part ${i}`))
      expected.push(frame("many", {}, "b".repeat(100_000)))
      // 300 deliveries in one read: written out together
      client.socket.write(
        Buffer.concat(
          Array.from({ length: 300 }, (_, i) => clientFrame(Buffer.from(frame("c", { publish: "pr1" }, `d${i}`)), 1))
        )
      )
      for (let i = 0; i < 300; i++) expected.push(frame("c", { publish: "pr1" }, `d${i}`))
      yield* eventually(() => client.frames().length >= expected.length, "10 seconds")
      const frames = client.frames()
      assert.deepStrictEqual(frames.map(textOf), expected)
      for (const wire of frames) {
        assert.deepStrictEqual([wire.fin, wire.rsv, wire.opcode, wire.masked], [true, 0, 1, false])
      }
    }))
})

describe("Security: ping floods (security.md \"Ping floods\", protocol.md §1)", () => {
  it.live("30 pings in one read are each answered and the connection goes on; 100 in one read end it with no close frame", () =>
    Effect.gen(function*() {
      const { port } = yield* startServer({ processors: [Echo.Echo] }, Echo.layer)
      const pings = (count: number) =>
        Buffer.concat(Array.from({ length: count }, (_, i) => clientFrame(Buffer.from(`p${i}`), 9)))
      const calm = yield* rawWs(port)
      calm.socket.write(pings(30))
      yield* eventually(() => calm.frames().filter((wire) => wire.opcode === 10).length === 30)
      calm.send(frame("echo", {}, "after the pings"))
      yield* eventually(() => calm.frames().some((wire) => wire.opcode === 1))
      assert.strictEqual(textOf(calm.frames().find((wire) => wire.opcode === 1)!), frame("echo", {}, "after the pings"))
      const flood = yield* rawWs(port)
      let ended = false
      flood.socket.once("close", () => {
        ended = true
      })
      flood.socket.write(pings(100))
      yield* eventually(() => ended)
      // dropped by ws: no close frame, fewer pongs than pings
      assert.isUndefined(flood.closeFrame())
      assert.isBelow(flood.frames().filter((wire) => wire.opcode === 10).length, 100)
    }))
})

/**
 * An upgrade (raw, from `localAddress`), an SSE stream and a poll, each answered 503 with
 * `Retry-After: 1` and `message`.
 */
const refusedEverywhere = (port: number, http: string, message: string, localAddress?: string) =>
  Effect.gen(function*() {
    const refused = yield* Effect.callback<string>((resume) => {
      const socket = Net.connect(
        { port, host: "127.0.0.1", ...(localAddress === undefined ? {} : { localAddress }) },
        () => socket.write(upgradeRequest("/"))
      )
      let answer = ""
      socket.on("data", (chunk) => answer += chunk.toString())
      socket.on("close", () => resume(Effect.succeed(answer)))
      socket.on("error", () => {})
      return Effect.sync(() => socket.destroy())
    })
    assert.match(refused, /^HTTP\/1\.1 503 Service Unavailable\r\n/)
    assert.include(refused, "\r\nretry-after: 1\r\n")
    assert.isTrue(refused.endsWith(`\r\n\r\n${message}`), refused)
    for (const path of ["/sse", "/poll"]) {
      const answer = yield* request(`${http}${path}`)
      assert.deepStrictEqual([answer.status, answer.headers.get("retry-after"), answer.body], [503, "1", message], path)
    }
  })

describe("Security: connectionRate over the Node server (security.md, server.md)", () => {
  it.live("past the burst from one address: an upgrade, an SSE stream and a poll get 503 ConnectingTooFast with Retry-After: 1; another address is admitted", () =>
    Effect.gen(function*() {
      const { port, url, http } = yield* startServer({
        processors: [Echo.Echo],
        connectionRate: { perSecond: 1 / 60, burst: 2 }
      }, Echo.layer)
      yield* connect(url)
      yield* connect(url)
      yield* refusedEverywhere(
        port,
        http,
        "ConnectingTooFast: too many new connections from this address: try again later\n"
      )
      const other = yield* connect(url, { localAddress: "127.0.0.2" })
      yield* other.send(frame("echo", {}, "admitted"))
      assert.strictEqual(yield* other.next(), frame("echo", {}, "admitted"))
    }))
})

describe("Security: the node's admission rate (operations.md, server.md)", () => {
  it.live("past its burst, from any address: an upgrade, an SSE stream and a poll get 503 NodeConnectingTooFast with Retry-After", () =>
    Effect.gen(function*() {
      const { port, url, http } = yield* startServer({
        processors: [Echo.Echo],
        admissionRate: { perSecond: 1 / 60, burst: 3 }
      }, Echo.layer)
      yield* connect(url)
      yield* connect(url, { localAddress: "127.0.0.2" })
      yield* connect(url, { localAddress: "127.0.0.3" })
      yield* refusedEverywhere(
        port,
        http,
        "NodeConnectingTooFast: this node is taking as many new connections a second as it may: try again later\n",
        "127.0.0.4"
      )
    }))

  it.live("the default: 4,000 at once, then 2,000 a second", () =>
    Effect.gen(function*() {
      // (the bucket fills from when the server starts)
      const started = performance.now()
      const { server: lhttp } = yield* startServer({})
      assert.deepStrictEqual(lhttp.settings.admissionRate, { perSecond: 2_000, burst: 4_000 })
      const peer = (i: number) => ({ url: "/", requestHeaders: {}, remoteAddress: `10.0.${i >> 8}.${i & 255}` })
      const refusals: Array<string> = []
      let admitted = 0
      for (let i = 0; i < 6_000; i++) {
        const result = yield* Effect.result(lhttp.admit(peer(i)))
        if (result._tag === "Success") admitted++
        else refusals.push(`${result.failure.status} ${result.failure.reason}`)
      }
      const seconds = (performance.now() - started) / 1000
      // the burst, and what the rate added meanwhile; the rest refused
      assert.isAtLeast(admitted, 4_000)
      assert.isAtMost(admitted, 4_000 + Math.ceil(2_000 * seconds) + 1)
      assert.isAbove(refusals.length, 0, `6,000 admissions took ${seconds} s`)
      assert.deepStrictEqual(new Set(refusals), new Set(["503 NodeConnectingTooFast"]))
    }))
})

/** Status and headers of a response, its body dropped unread (an SSE stream does not end). */
const head = (url: string, init?: RequestInit) =>
  Effect.promise(async () => {
    const controller = new AbortController()
    const response = await fetch(url, { ...init, signal: controller.signal })
    controller.abort()
    return { status: response.status, headers: response.headers }
  })

const corsHeaders = (headers: Headers) => {
  const names: Array<string> = []
  headers.forEach((_value, name) => {
    if (name.startsWith("access-control-")) names.push(name)
  })
  return names
}

describe("Security: CORS on the HTTP transports (security.md, transports.md)", () => {
  const requests = (origin: string): ReadonlyArray<readonly [string, RequestInit]> => [
    ["/sse", { headers: { origin } }],
    ["/poll", { headers: { origin } }],
    ["/send?connection=none", { method: "POST", body: "LHTTP/1.0 c\r\n\r\n", headers: { origin } }],
    ["/send?connection=none", { method: "OPTIONS", headers: { origin, "access-control-request-method": "POST" } }],
    ["/poll", { method: "OPTIONS", headers: { origin, "access-control-request-method": "GET" } }]
  ]

  it.live("with an allowlist: a listed origin gets its own origin back; another gets 403 and no CORS header at all", () =>
    Effect.gen(function*() {
      const { http } = yield* startServer({ allowedOrigins: ["https://app.example"] })
      for (const [path, init] of requests("https://evil.example")) {
        const refused = yield* head(`${http}${path}`, init)
        assert.deepStrictEqual(
          [refused.status, corsHeaders(refused.headers)],
          [403, []],
          `${init.method ?? "GET"} ${path}`
        )
      }
      for (const [path, init] of requests("https://app.example")) {
        const allowed = yield* head(`${http}${path}`, init)
        assert.notStrictEqual(allowed.status, 403, path)
        assert.strictEqual(
          allowed.headers.get("access-control-allow-origin"),
          "https://app.example",
          `${init.method ?? "GET"} ${path}`
        )
        assert.strictEqual(allowed.headers.get("vary"), "origin")
      }
      // no Origin (not a cross-origin request): no CORS header
      const plain = yield* head(`${http}/poll`)
      assert.deepStrictEqual([plain.status, corsHeaders(plain.headers)], [200, []])
    }))

  it.live("without an allowlist (the default): every origin is echoed, never a wildcard", () =>
    Effect.gen(function*() {
      const { http } = yield* startServer({})
      for (const origin of ["https://anything.example", "http://localhost:3000", "null"]) {
        for (const [path, init] of requests(origin)) {
          const answer = yield* head(`${http}${path}`, init)
          assert.notStrictEqual(answer.status, 403, path)
          assert.strictEqual(
            answer.headers.get("access-control-allow-origin"),
            origin,
            `${init.method ?? "GET"} ${path}`
          )
        }
      }
    }))
})

/**
 * Whether ids look like 128 independent random bits: each decodes from
 * base64url to exactly 16 bytes, all differ, and every one of the 128 bit
 * positions is set in about half of them (within 6 standard deviations: a
 * false alarm about once in 10^6 runs). A counter, a timestamp or fewer random
 * bits padded out leave positions that never (or always) change.
 */
const assertRandom128 = (ids: ReadonlyArray<string>) => {
  assert.strictEqual(new Set(ids).size, ids.length, "two ids are the same")
  const ones = Array.from({ length: 128 }, () => 0)
  for (const id of ids) {
    assert.match(id, /^[A-Za-z0-9_-]{22}$/)
    const bytes = Buffer.from(id, "base64url")
    assert.strictEqual(bytes.length, 16)
    assert.strictEqual(bytes.toString("base64url"), id, "not canonical base64url")
    for (let bit = 0; bit < 128; bit++) if ((bytes[bit >> 3]! >> (7 - (bit & 7))) & 1) ones[bit]!++
  }
  const half = ids.length / 2
  const bound = 6 * Math.sqrt(ids.length) / 2
  const skewed = ones.flatMap((count, bit) =>
    Math.abs(count - half) > bound ? [`bit ${bit}: ${count}/${ids.length}`] : []
  )
  assert.deepStrictEqual(skewed, [], "bit positions far from half set")
}

describe("Security: unguessable keys (security.md)", () => {
  it.live("HTTP-transport connection ids are 128 random bits", () =>
    Effect.gen(function*() {
      const { http } = yield* startServer({})
      const ids: Array<string> = []
      for (let round = 0; round < 16; round++) {
        const batch = yield* Effect.forEach(
          Array.from({ length: 32 }),
          () => Effect.map(request(`${http}/poll`), (answer) => JSON.parse(answer.body).connection as string),
          { concurrency: 32 }
        )
        ids.push(...batch)
      }
      assertRandom128(ids)
    }))

  it.live("session keys are 128 random bits", () =>
    Effect.gen(function*() {
      const { connect: connectMemory } = yield* startMemoryServer(
        { processors: [Login.Login, Sessions.SessionProcessor] },
        Login.layer.pipe(Layer.provideMerge(Sessions.layer()), Layer.provide(SessionStore.layerMemory))
      )
      const keys: Array<string> = []
      for (let i = 0; i < 512; i++) {
        keys.push(
          yield* Effect.scoped(Effect.gen(function*() {
            const client = yield* connectMemory()
            yield* client.send(frame("login", {}, JSON.stringify({ name: `user${i}` })))
            const session = /^LHTTP\/1\.0 session\r\nsession-key:([^\r]*)\r\n/.exec(yield* client.next())
            if (session === null) return yield* Effect.die(new Error("no session frame"))
            return session[1]!
          }))
        )
      }
      assertRandom128(keys)
    }))
})

describe("Security: what the server logs (security.md \"Token leakage\", operations.md)", () => {
  const Boom = Processor.make("boom")
  const BoomLive = Boom.toLayer({ onMessage: () => Effect.die(new Error("boom")) })

  it.live("no token, header, cookie, URL query or message body reaches the log, at any level, whatever happens", () =>
    Effect.gen(function*() {
      // every secret below holds SECRET; every log entry of the server is kept, Debug and Trace included
      const logged: Array<{ readonly level: string; readonly text: string }> = []
      const logger = Logger.make(({ cause, fiber, logLevel, message }) => {
        const annotations = fiber.getRef(References.CurrentLogAnnotations)
        logged.push({
          level: logLevel,
          text: `${inspect(message, { depth: 20 })}\n${Cause.pretty(cause)}\n${inspect(annotations, { depth: 20 })}`
        })
      })
      const { port, url, http } = yield* startServer({
        processors: [Echo.Echo, Boom],
        publishToken: "tok-SECRET-publish",
        maxMessageBytes: 4096,
        authenticate: (peer) =>
          peer.requestHeaders["x-deny"] !== undefined
            ? Effect.fail(new Rejection({ status: 403, reason: "Forbidden", message: "denied" }))
            : Effect.void
      }, Layer.mergeAll(Echo.layer, BoomLive)).pipe(
        Effect.provide(Logger.layer([logger])),
        Effect.provideService(References.MinimumLogLevel, "All")
      )
      const identity = {
        authorization: "Bearer ws-SECRET-authorization",
        cookie: "sid=ws-SECRET-cookie",
        "x-api-key": "ws-SECRET-header"
      }
      // WebSocket: admitted and refused upgrades, replies, publishes, malformed frames, a defect,
      // invalid UTF-8 (1007) and an oversized message (1009)
      const client = yield* connect(`${url}/?token=ws-SECRET-query`, { headers: identity })
      yield* client.send(frame("c", { subscribe: "room", "x-h": "frame-SECRET-header" }))
      yield* client.send(frame("echo", { "x-h": "frame-SECRET-header" }, "frame-SECRET-echo"))
      assert.strictEqual(yield* client.next(), frame("echo", {}, "frame-SECRET-echo"))
      yield* client.send(frame("c", { publish: "room" }, "frame-SECRET-publish"))
      yield* client.next()
      yield* client.send("LHTTP/1.0 c\r\nframe-SECRET-malformed\r\n\r\n")
      assert.match(yield* client.next(), /reason:MalformedHeader/)
      yield* client.send(frame("boom", { "x-h": "frame-SECRET-boom" }, "frame-SECRET-boom"))
      assert.match(yield* client.next(), /reason:InternalError/)
      const refused = yield* connect(`${url}/?token=denied-SECRET-query`, { headers: { ...identity, "x-deny": "1" } })
        .pipe(Effect.flip)
      assert.include(String(refused), "403")
      const invalid = yield* rawWs(port, "/?token=utf8-SECRET-query")
      invalid.send(Buffer.concat([Buffer.from("LHTTP/1.0 echo\r\n\r\nutf8-SECRET-body "), Buffer.from([0xff])]), 1)
      yield* eventually(() => invalid.closeFrame() !== undefined)
      const big = yield* connect(url, { headers: identity })
      yield* big.send(frame("echo", {}, `big-SECRET-body ${"x".repeat(5000)}`))
      assert.strictEqual((yield* big.closed).code, 1009)
      // the backends' endpoints: with the token, a wrong one, none
      const body = "LHTTP/1.0 c\r\npublish:room\r\nx-h:post-SECRET-header\r\n\r\npost-SECRET-body"
      for (const authorization of ["Bearer tok-SECRET-publish", "Bearer tok-SECRET-wrong", undefined]) {
        const headers = { ...(authorization === undefined ? {} : { authorization }), cookie: "c=post-SECRET-cookie" }
        yield* request(`${http}/publish?q=post-SECRET-query`, { method: "POST", body, headers })
        yield* request(`${http}/metrics`, { headers })
      }
      // the one with the token was delivered
      assert.strictEqual(yield* client.next(), body)
      const malformed = "LHTTP/1.0 c\r\npost-SECRET-malformed\r\n\r\n"
      yield* request(`${http}/publish`, {
        method: "POST",
        body: malformed,
        headers: { authorization: "Bearer tok-SECRET-publish" }
      })
      // the HTTP transports: a poll, a frame sent, a frame too big
      const poll = yield* request(`${http}/poll?subscribe=room`, { headers: identity })
      const key = JSON.parse(poll.body).connection as string
      yield* request(`${http}/send?connection=${key}`, {
        method: "POST",
        body: frame("echo", {}, "send-SECRET-body"),
        headers: identity
      })
      yield* request(`${http}/send?connection=${key}`, {
        method: "POST",
        body: `send-SECRET-big ${"x".repeat(5000)}`,
        headers: identity
      })
      yield* client.nothing()
      // the log was captured, from the paths above: the listening line, the defect, ws's closes
      const levels = new Set(logged.map((entry) => entry.level))
      assert.isTrue(
        logged.some((entry) => entry.text.includes("effect-lhttp listening on")),
        "the log was not captured"
      )
      assert.isTrue(
        logged.some((entry) => entry.level === "Warn" && entry.text.includes("a processor or filter failed")),
        "no warning for the defect"
      )
      yield* eventually(() =>
        logged.filter((entry) => entry.text.includes("WebSocket closed by the server")).length === 2
      )
      assert.isTrue(levels.has("Debug"))
      const leaks = logged.filter((entry) => entry.text.includes("SECRET"))
      assert.deepStrictEqual(leaks, [])
    }))
})

/**
 * Runs `command` in the network namespace `ns`, with its output kept: a
 * program of the test's own in a network of the test's own.
 */
const inNamespace = (ns: string, command: ReadonlyArray<string>, env: Record<string, string> = {}) => {
  const child = spawn("ip", ["netns", "exec", ns, ...command], {
    env: { ...process.env, NO_COLOR: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  child.stdout.on("data", (chunk: Buffer) => output += chunk.toString("utf8"))
  child.stderr.on("data", (chunk: Buffer) => output += chunk.toString("utf8"))
  const exited = new Promise<number | null>((resolve) => {
    child.on("exit", (code) => resolve(code))
    child.on("error", (error) => {
      output += String(error)
      resolve(null)
    })
  })
  return { child, output: () => output, exited }
}

// asks the main job from an address of the namespace's own: each answer's status and body, as JSON
const askScript = `
import * as Http from "node:http"
const ask = (host, method, path, body) => new Promise((resolve) => {
  const request = Http.request({ host, localAddress: host, port: 8081, method, path }, (response) => {
    let text = ""
    response.on("data", (chunk) => text += chunk)
    response.on("end", () => resolve([response.statusCode, text]))
  })
  request.on("error", (error) => resolve([0, String(error)]))
  request.end(body)
})
const body = "LHTTP/1.0 c\\r\\npublish:news\\r\\n\\r\\nfrom " 
const answers = {}
for (const host of ["198.51.100.7", "127.0.0.1"]) {
  answers[host] = {
    publish: await ask(host, "POST", "/publish", body + host),
    metrics: await ask(host, "GET", "/metrics"),
    healthz: await ask(host, "GET", "/healthz")
  }
}
console.log(JSON.stringify(answers))
`

describe("Security: /publish and /metrics without a token, from a peer that is not on loopback (security.md, server.md, operations.md)", () => {
  it.live("the main job answers 403 to a peer at 198.51.100.7 (inside a network namespace the test makes) and serves the same requests from 127.0.0.1", () =>
    Effect.gen(function*() {
      const ns = `lhttp-test-${process.pid}-${Date.now() % 1_000_000}`
      // a network namespace with its loopback up and one more address on it, removed afterwards
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          execFileSync("ip", ["netns", "add", ns])
          execFileSync("ip", ["netns", "exec", ns, "ip", "link", "set", "lo", "up"])
          execFileSync("ip", ["netns", "exec", ns, "ip", "addr", "add", "198.51.100.7/32", "dev", "lo"])
        }),
        () => Effect.sync(() => execFileSync("ip", ["netns", "del", ns]))
      )
      const main = yield* Effect.acquireRelease(
        Effect.sync(() =>
          inNamespace(ns, [process.execPath, fileURLToPath(new URL("../src/main.ts", import.meta.url))], {
            NODE_COMPILE_CACHE: Path.join(Os.tmpdir(), "effect-lhttp-test-compile-cache"),
            LHTTP_PORT: "8081",
            LHTTP_HISTORY: ""
          })
        ),
        (program) =>
          Effect.promise(() => {
            program.child.kill("SIGTERM")
            return program.exited
          })
      )
      yield* until(Effect.sync(() => main.output().includes("listening on")), "30 seconds").pipe(
        Effect.catchDefect(() => Effect.die(new Error(`the main job did not start:\n${main.output()}`)))
      )
      const client = inNamespace(ns, [process.execPath, "--input-type=module", "-e", askScript])
      const code = yield* Effect.promise(() => client.exited)
      assert.strictEqual(code, 0, client.output())
      const answers = JSON.parse(client.output())
      assert.deepStrictEqual(answers["198.51.100.7"].publish, [
        403,
        "without a publish token, only loopback peers may publish\n"
      ])
      assert.deepStrictEqual(answers["198.51.100.7"].metrics, [
        403,
        "without a publish token, only loopback peers may read the metrics\n"
      ])
      // the address reaches the server: only the guard refuses it
      assert.deepStrictEqual(answers["198.51.100.7"].healthz, [200, "ok\n"])
      assert.deepStrictEqual(answers["127.0.0.1"].publish, [204, ""])
      assert.strictEqual(answers["127.0.0.1"].metrics[0], 200)
      assert.include(answers["127.0.0.1"].metrics[1], "# TYPE lhttp_messages_in_total counter")
    }))
})
