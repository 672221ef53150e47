/**
 * The documented defaults of the server (server.md "Limits and close codes"),
 * each tested by its effect on a server built WITHOUT the option where that
 * is cheap: a message of exactly the bound passes and one byte more is
 * refused, and so on. Defaults measured in seconds run on fake timers or
 * Effect's TestClock, never on a wait.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Layer, Schema, Stream } from "effect"
import { PrometheusMetrics } from "effect/observability"
import * as Http from "node:http"
import * as Net from "node:net"
import { vi } from "vitest"
import * as Bus from "../src/Bus.ts"
import * as Echo from "../src/demo/Echo.ts"
import * as Hub from "../src/Hub.ts"
import * as LhttpServer from "../src/LhttpServer.ts"
import * as Processor from "../src/Processor.ts"
import type * as Transport from "../src/Transport.ts"
import { frame, startServer } from "./utils/lhttp.ts"
import { startMemoryServer } from "./utils/memory.ts"
import { eventually } from "./utils/wait.ts"

const utf8 = (text: string) => Buffer.byteLength(text)

// sends back a body of `size` bytes, so that its frame has `size` + 17 bytes ("LHTTP/1.0 big\r\n\r\n")
const Big = Processor.make("big")
const BigLive = Big.toLayer({ onMessage: (exchange) => exchange.send("x".repeat(Number(exchange.header("size")))) })

// requests that wait at their own gate; the order they started in, and how many were let go when each started
const gates = new Map<string, Deferred.Deferred<void>>()
const startedWith: Array<{ readonly id: string; readonly released: number }> = []
let released = 0
const Hold = Processor.make("hold")
const HoldLive = Hold.toLayer({
  onMessage: (exchange) =>
    Effect.suspend(() => {
      const id = exchange.id!
      const gate = Deferred.makeUnsafe<void>()
      gates.set(id, gate)
      startedWith.push({ id, released })
      return Deferred.await(gate)
    }).pipe(Effect.andThen(exchange.send("done")))
})

// a declared error whose status is what the request says
class Judged extends Schema.TaggedError<Judged>()("Judged", { status: Schema.Number }) {}
const Judge = Processor.make("judge", {
  body: Schema.fromJsonString(Schema.Struct({ status: Schema.Number })),
  reply: Schema.String,
  error: Judged
})
const JudgeLive = Judge.toLayer({ onMessage: ({ body }) => Effect.fail(new Judged({ status: body.status })) })

describe("Defaults: the server's limits, with no option set", () => {
  it.live("maxMessageBytes 64 KiB: a message of exactly 65,536 UTF-8 bytes is processed, one of 65,537 closes with 1009", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({ processors: [Echo.Echo] }, Echo.layer)
      const head = "LHTTP/1.0 echo\r\n\r\n"
      // multi-byte characters: the bound is in UTF-8 bytes, not in characters
      const body = "é".repeat(1000) + "x".repeat(65_536 - utf8(head) - 2000)
      assert.strictEqual(utf8(head + body), 65_536)
      const fits = yield* connect()
      yield* fits.send(head + body)
      assert.strictEqual(yield* fits.next(), head + body)
      const over = yield* connect()
      yield* over.send(head + body + "x")
      assert.deepStrictEqual(yield* over.closed, { code: 1009, reason: "message too big" })
    }))

  it.live("maxOutboundBytes 1 MiB: a frame of exactly 1,048,576 bytes is sent, one byte more closes with 4001", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({ processors: [Big] }, BigLive)
      const fits = yield* connect()
      yield* fits.send(frame("big", { size: String(1024 * 1024 - 17) }))
      const sent = yield* fits.next()
      assert.strictEqual(utf8(sent), 1024 * 1024)
      yield* fits.nothing()
      const over = yield* connect()
      yield* over.send(frame("big", { size: String(1024 * 1024 - 16) }))
      assert.deepStrictEqual(yield* over.closed, { code: 4001, reason: "slow consumer" })
    }))

  it.live("maxConcurrentRequests 16: sixteen requests run at once; the seventeenth starts only once one has ended", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({ processors: [Hold] }, HoldLive)
      const client = yield* connect()
      for (let i = 1; i <= 17; i++) yield* client.send(frame("hold", { id: `r${i}` }))
      yield* eventually(() => startedWith.length === 16)
      assert.deepStrictEqual(startedWith.map((start) => start.released), Array(16).fill(0))
      released++
      yield* Deferred.succeed(gates.get("r1")!, undefined)
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 hold\r\nid:r1\r\n\r\ndone")
      yield* eventually(() => startedWith.length === 17)
      // the seventeenth started after the first was let go, not before
      assert.deepStrictEqual(startedWith[16], { id: "r17", released: 1 })
      for (const gate of gates.values()) yield* Deferred.succeed(gate, undefined)
    }))

  it.live("the settings of a server built without options: the documented defaults", () =>
    Effect.gen(function*() {
      const { server } = yield* startMemoryServer({})
      const settings = server.settings
      assert.strictEqual(settings.maxMessageBytes, 64 * 1024)
      assert.strictEqual(settings.maxOutboundBytes, 1024 * 1024)
      assert.strictEqual(settings.maxHeaders, 64)
      assert.strictEqual(settings.slowConsumer, "close")
      assert.strictEqual(Duration.toMillis(settings.heartbeatInterval), 25_000)
      assert.strictEqual(Duration.toMillis(settings.heartbeatTimeout), 10_000)
      assert.strictEqual(Duration.toMillis(settings.shutdownTimeout), 30_000)
      assert.strictEqual(settings.maxConcurrentRequests, 16)
      assert.strictEqual(settings.maxConnections, 100_000)
      assert.strictEqual(settings.maxConnectionsPerAddress, 10_000)
      assert.isUndefined(settings.connectionRate)
      assert.isUndefined(settings.messageRate)
      assert.isUndefined(settings.allowedOrigins)
      assert.deepStrictEqual(LhttpServer.settings({}), settings)
    }))
})

describe("Defaults: past maxConnections", () => {
  it.live("the in-memory connect fails with 503 TooManyConnections; a transport that calls accept without admit is closed with 1013", () =>
    Effect.gen(function*() {
      const { connect, server } = yield* startMemoryServer({ maxConnections: 1 })
      yield* connect()
      const refused = yield* Effect.flip(connect())
      assert.deepStrictEqual([refused.status, refused.reason], [503, "TooManyConnections"])
      const closes: Array<[number, string]> = []
      const own: Transport.Transport = {
        peer: { url: "/", requestHeaders: {}, remoteAddress: "127.0.0.2" },
        write: () => {},
        bufferedBytes: () => 0,
        close: (code, reason) => void closes.push([code, reason]),
        isOpen: () => closes.length === 0
      }
      server.accept(own)
      assert.deepStrictEqual(closes, [[1013, "too many connections"]])
      assert.strictEqual(server.connectionCount(), 1)
    }))
})

describe("Defaults: a declared error's own status", () => {
  it.live("is used only from 400 to 599; any other status field, or a fraction, answers 400", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({ processors: [Judge] }, JudgeLive)
      const client = yield* connect()
      for (
        const [status, answered] of [[400, 400], [409, 409], [599, 599], [399, 400], [600, 400], [200, 400], [
          450.5,
          400
        ]]
      ) {
        const body = JSON.stringify({ status })
        yield* client.send(frame("judge", { id: `j${status}` }, body))
        assert.strictEqual(
          yield* client.next(),
          `LHTTP/1.0 error\r\nstatus:${answered}\r\nreason:Judged\r\nid:j${status}\r\n\r\n{"_tag":"Judged","status":${status}}`
        )
      }
    }))
})

describe("Defaults: Hub.stream", () => {
  it.live("buffers 1,024 frames for a reader that is behind, and drops what comes after (\"dropping\")", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.make().pipe(Effect.provideService(Bus.Bus, yield* Bus.makeMemory()))
      const gate = yield* Deferred.make<void>()
      const seen: Array<string> = []
      const reading = yield* Effect.forkChild(
        Stream.runForEach(
          hub.stream("busy"),
          (message) =>
            Effect.sync(() => seen.push(message._tag === "Failure" ? "failure" : String(message.body))).pipe(
              Effect.andThen(Effect.suspend(() => seen.length === 1 ? Deferred.await(gate) : Effect.void))
            )
        )
      )
      yield* eventually(() => hub.channelCount() === 1)
      yield* hub.publish("busy", "m", {}, "first")
      yield* eventually(() => seen.length === 1)
      // the reader waits at the gate: 3,000 frames for a buffer of 1,024
      for (let i = 1; i <= 3000; i++) yield* hub.publish("busy", "m", {}, `m${i}`)
      yield* Deferred.succeed(gate, undefined)
      yield* hub.publish("busy", "m", {}, "end")
      yield* eventually(() => seen.includes("end"))
      assert.deepStrictEqual(seen, ["first", ...Array.from({ length: 1024 }, (_, i) => `m${i + 1}`), "end"])
      yield* Fiber.interrupt(reading)
    }))
})

// ---------------------------------------------------------------------------
// The WebSocket transport's timers (heartbeat, close grace) run on Node's
// timers, not Effect's clock: they are tested on vitest's fake timers, with
// a raw socket that answers neither pings nor the close frame.
// ---------------------------------------------------------------------------

// captured before any fake timers: the deadlines of the waits below are real
const realSetTimeout = globalThis.setTimeout
const realClearTimeout = globalThis.clearTimeout

/** A WebSocket client on a plain TCP socket: it reads the server's frames and answers nothing. */
const rawSockets = new Set<Net.Socket>()
const rawClient = (port: number, path = "/") =>
  new Promise<{
    readonly frames: Array<{ readonly opcode: number; readonly payload: Buffer }>
    readonly closed: () => boolean
    readonly until: (what: string, check: () => boolean) => Promise<void>
    readonly send: (text: string) => void
    readonly socket: Net.Socket
  }>((resolve, reject) => {
    const socket = Net.connect(port, "127.0.0.1")
    rawSockets.add(socket)
    const frames: Array<{ readonly opcode: number; readonly payload: Buffer }> = []
    let buffer = Buffer.alloc(0)
    let upgraded = false
    let ended = false
    const waiters = new Set<() => void>()
    const changed = () => {
      for (const waiter of waiters) waiter()
    }
    socket.on("data", (chunk) => {
      buffer = Buffer.concat([buffer, chunk])
      if (!upgraded) {
        const end = buffer.indexOf("\r\n\r\n")
        if (end < 0) return
        const head = buffer.subarray(0, end).toString()
        if (!head.startsWith("HTTP/1.1 101")) return reject(new Error(head))
        buffer = buffer.subarray(end + 4)
        upgraded = true
        resolve(client)
      }
      // the server's frames are unmasked and short here
      while (buffer.length >= 2 && buffer.length >= 2 + (buffer[1]! & 0x7f)) {
        const length = buffer[1]! & 0x7f
        if (length >= 126) throw new Error("a long frame")
        frames.push({ opcode: buffer[0]! & 0x0f, payload: buffer.subarray(2, 2 + length) })
        buffer = buffer.subarray(2 + length)
      }
      changed()
    })
    socket.on("close", () => {
      ended = true
      changed()
    })
    socket.on("error", () => {})
    const client = {
      frames,
      socket,
      closed: () => ended,
      until: (what: string, check: () => boolean) =>
        new Promise<void>((done, fail) => {
          if (check()) return done()
          const timer = realSetTimeout(() => {
            waiters.delete(waiter)
            fail(new Error(`${what}: not in time`))
          }, 5_000)
          const waiter = () => {
            if (!check()) return
            realClearTimeout(timer)
            waiters.delete(waiter)
            done()
          }
          waiters.add(waiter)
        }),
      send: (text: string) => {
        // a client's frame is masked (a zero mask leaves the payload as it is)
        const payload = Buffer.from(text)
        if (payload.length >= 126) throw new Error("a long frame")
        socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length, 0, 0, 0, 0]), payload]))
      }
    }
    socket.write(
      `GET ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: websocket\r\nconnection: Upgrade\r\n` +
        "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    )
  })

const ping = 0x9
const close = 0x8
const text = 0x1

// the timers are real again when the test's body ends, before its scope (the server) closes
const withFakeTimers = <A, E, R>(body: Effect.Effect<A, E, R>) =>
  Effect.sync(() =>
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"] })
  ).pipe(
    Effect.andThen(body),
    // the raw sockets go first: a server's timer to destroy one would never fire once the timers are real
    Effect.ensuring(Effect.sync(() => {
      for (const socket of rawSockets) socket.destroy()
      rawSockets.clear()
      vi.useRealTimers()
    }))
  )

describe("Defaults: the WebSocket transport's timers, with no option set (fake timers)", () => {
  it.live("a ping 25 s after the start; 10 s without a pong closes with 4000; 5 s without the peer's close frame destroys the socket", () =>
    withFakeTimers(Effect.gen(function*() {
      const { port } = yield* startServer({ sse: false, poll: false, processors: [Echo.Echo] }, Echo.layer)
      const peer = yield* Effect.promise(() => rawClient(port))
      const opcodes = () => peer.frames.map((frame) => frame.opcode)
      // a marker through the same socket: its answer comes after anything the server wrote before it
      let markers = 0
      const marker = Effect.promise(() => {
        const body = `marker ${++markers}`
        peer.send(`LHTTP/1.0 echo\r\n\r\n${body}`)
        return peer.until(body, () => peer.frames.some((frame) => frame.payload.toString().endsWith(body)))
      })
      vi.advanceTimersByTime(24_999)
      yield* marker
      assert.deepStrictEqual(opcodes(), [text])
      vi.advanceTimersByTime(1)
      yield* Effect.promise(() => peer.until("the ping", () => peer.frames.length === 2))
      assert.deepStrictEqual(opcodes(), [text, ping])
      vi.advanceTimersByTime(9_999)
      yield* marker
      assert.deepStrictEqual(opcodes(), [text, ping, text])
      vi.advanceTimersByTime(1)
      yield* Effect.promise(() => peer.until("the close frame", () => peer.frames.length === 4))
      const closing = peer.frames[3]!
      assert.strictEqual(closing.opcode, close)
      assert.strictEqual(closing.payload.readUInt16BE(0), 4000)
      assert.strictEqual(closing.payload.subarray(2).toString(), "heartbeat timeout")
      // the peer does not answer the close frame: the server's timer to destroy the socket fires 5 s later
      const timers = vi.getTimerCount()
      vi.advanceTimersByTime(4_999)
      assert.strictEqual(vi.getTimerCount(), timers, "a timer fired before the close grace was over")
      assert.isFalse(peer.closed())
      vi.advanceTimersByTime(1)
      assert.strictEqual(vi.getTimerCount(), timers - 1)
      yield* Effect.promise(() => peer.until("the socket destroyed", peer.closed))
    })))

  it.live("heartbeatInterval infinity: no ping ever; the connection stays open", () =>
    withFakeTimers(Effect.gen(function*() {
      const { port } = yield* startServer({
        sse: false,
        poll: false,
        heartbeatInterval: Duration.infinity,
        processors: [Echo.Echo]
      }, Echo.layer)
      const peer = yield* Effect.promise(() => rawClient(port))
      vi.advanceTimersByTime(3600 * 1000)
      // a marker through the same socket: its answer comes after any ping written before it
      peer.send("LHTTP/1.0 echo\r\n\r\nmarker")
      yield* Effect.promise(() => peer.until("the marker's answer", () => peer.frames.length > 0))
      assert.deepStrictEqual(peer.frames.map((frame) => [frame.opcode, frame.payload.toString()]), [[
        text,
        "LHTTP/1.0 echo\r\n\r\nmarker"
      ]])
      assert.isFalse(peer.closed())
    })))
})

// a message that waits at a gate the test opens
let stallGate = Deferred.makeUnsafe<void>()
const Stall = Processor.make("stall")
const StallLive = Stall.toLayer({ onMessage: () => Effect.suspend(() => Deferred.await(stallGate)) })

// the server's count of messages taken from clients (all the servers of this process)
const messagesIn = Effect.map(
  PrometheusMetrics.format(),
  (text) => Number(/^lhttp_messages_in_total(?:\{\})? (\d+)/m.exec(text)?.[1] ?? "0")
)

// waits on a condition without a timer of Effect's (they are fake here): a turn of the event loop each time
const whileFake = <E, R>(what: string, probe: Effect.Effect<boolean, E, R>) =>
  Effect.gen(function*() {
    const deadline = performance.now() + 5_000
    while (!(yield* probe)) {
      if (performance.now() > deadline) return yield* Effect.die(new Error(`${what}: not in time`))
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
    }
  })

describe("Defaults: a paused connection and the heartbeat (fake timers)", () => {
  it.live("a connection the core paused (its inbox long) is not pinged, nor closed by the heartbeat, while another is", () =>
    withFakeTimers(Effect.gen(function*() {
      stallGate = Deferred.makeUnsafe<void>()
      const { port } = yield* startServer(
        { sse: false, poll: false, processors: [Stall, Echo.Echo] },
        Layer.mergeAll(StallLive, Echo.layer)
      )
      const paused = yield* Effect.promise(() => rawClient(port))
      const other = yield* Effect.promise(() => rawClient(port))
      const before = yield* messagesIn
      // one message that waits, then 1,100 behind it: past 1,024 in its inbox, the core stops reading it
      const masked = (text: string) =>
        Buffer.concat([Buffer.from([0x81, 0x80 | Buffer.byteLength(text), 0, 0, 0, 0]), Buffer.from(text)])
      paused.socket.write(
        Buffer.concat([
          masked("LHTTP/1.0 stall\r\n\r\n"),
          ...Array.from({ length: 1100 }, (_, i) => masked(`LHTTP/1.0 echo\r\n\r\n${i}`))
        ])
      )
      yield* whileFake("the inbox past 1,024", Effect.map(messagesIn, (count) => count - before >= 1025))
      vi.advanceTimersByTime(25_000)
      yield* Effect.promise(() => other.until("the other's ping", () => other.frames.length === 1))
      assert.strictEqual(other.frames[0]!.opcode, ping)
      vi.advanceTimersByTime(10_000)
      yield* Effect.promise(() => other.until("the other's close frame", () => other.frames.length === 2))
      assert.strictEqual(other.frames[1]!.payload.readUInt16BE(0), 4000)
      // the paused one: once it is read again, its answers come, and nothing was written to it before them
      yield* Deferred.succeed(stallGate, undefined)
      yield* Effect.promise(() => paused.until("the answers", () => paused.frames.length >= 1100))
      assert.deepStrictEqual(new Set(paused.frames.map((frame) => frame.opcode)), new Set([text]))
      assert.strictEqual(paused.frames[0]!.payload.toString(), "LHTTP/1.0 echo\r\n\r\n0")
      assert.strictEqual(paused.frames.length, 1100)
      assert.isFalse(paused.closed())
    })))
})

describe("Defaults: the Node HTTP server", () => {
  it.live("headersTimeout 10 s: the Node server's own deadline for a request's headers", () =>
    Effect.gen(function*() {
      const { port } = yield* startServer({ sse: false, poll: false })
      const handles = (process as unknown as { _getActiveHandles: () => Array<unknown> })._getActiveHandles()
      const servers = handles.filter((handle): handle is Http.Server =>
        handle instanceof Http.Server && (handle.address() as Net.AddressInfo | null)?.port === port
      )
      assert.strictEqual(servers.length, 1)
      assert.strictEqual(servers[0]!.headersTimeout, 10_000)
    }))
})
