import { NodeWS } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Scope, Stream } from "effect"
import * as Socket from "effect/socket/Socket"
import { TestClock } from "effect/testing"
import * as Net from "node:net"
import * as Echo from "../src/demo/Echo.ts"
import * as Frame from "../src/Frame.ts"
import * as LhttpClient from "../src/LhttpClient.ts"
import type * as Message from "../src/Message.ts"
import * as Processor from "../src/Processor.ts"
import { Rejection } from "../src/Rejection.ts"
import { connect as rawConnect, frame, startServer } from "./utils/lhttp.ts"
import { freePort } from "./utils/process.ts"
import { until } from "./utils/wait.ts"

const Kick = Processor.make("kick")
const KickLive = Kick.toLayer({ onMessage: (exchange) => exchange.connection.close(4100, "kicked") })

const Deny = Processor.make("deny")
const DenyLive = Deny.toLayer({
  onMessage: () => Effect.fail(new Rejection({ status: 403, reason: "Forbidden", message: "not for you" }))
})

const Silent = Processor.make("silent")
const SilentLive = Silent.toLayer({ onMessage: () => Effect.void })

const processors = [Echo.Echo, Kick, Deny, Silent] as const
const implementations = Layer.mergeAll(Echo.layer, KickLive, DenyLive, SilentLive)
const server = (port?: number) => startServer({ processors, ...(port === undefined ? {} : { port }) }, implementations)

const client = (url: string, options?: LhttpClient.Options) =>
  LhttpClient.connect(url, { reconnect: { initialDelay: "50 millis", maxDelay: "200 millis" }, ...options }).pipe(
    Effect.provide(NodeWS.layerWebSocketConstructor)
  )

/** Waits until the client is in `state` (a condition on its state stream: no clock involved). */
const reached = (c: LhttpClient.LhttpClient, state: LhttpClient.State) =>
  c.states.pipe(Stream.filter((now) => now === state), Stream.take(1), Stream.runDrain)

const opened = (c: LhttpClient.LhttpClient) => reached(c, "open")

/**
 * Collects the next `n` messages of a stream in the background. The fiber starts at once, so
 * the stream's subscription exists when this returns: nothing sent afterwards can be missed.
 */
const take = <A>(stream: Stream.Stream<A>, n: number) =>
  stream.pipe(Stream.take(n), Stream.runCollect, Effect.forkChild({ startImmediately: true }))

/**
 * A barrier: the server has processed everything this client sent before, as a connection's
 * messages are processed in order and this echo's reply comes after them.
 */
const processed = (c: LhttpClient.LhttpClient) =>
  Effect.gen(function*() {
    const reply = yield* c.request("echo", "barrier", { timeout: "5 seconds" })
    assert.deepInclude(reply, { _tag: "Request", command: "echo", body: "barrier" })
  })

const bodyOf = (message: Message.Message) =>
  message._tag === "Failure" ? `failure: ${message.message}` : message.body

describe("LhttpClient", () => {
  it.live("subscribes, publishes and unsubscribes through a real server", () =>
    Effect.gen(function*() {
      const { url } = yield* server()
      const alice = yield* client(url)
      const bob = yield* client(url)
      yield* opened(alice)
      yield* opened(bob)
      const received = yield* take(bob.channel("room"), 1)
      yield* bob.subscribe(["room"])
      yield* processed(bob)
      yield* alice.publish(["room"], "chat", { "content-type": "text/plain" }, "hi bob")
      const [message] = Array.from(yield* Fiber.join(received))
      assert.deepInclude<object>(message!, { _tag: "Notify", command: "chat", body: "hi bob", publish: ["room"] })
      assert.deepStrictEqual(Array.from(bob.channels()), ["room"])

      yield* bob.unsubscribe(["room"])
      assert.deepStrictEqual(Array.from(bob.channels()), [])
      // the negative case, then a marker through the same path (alice's publishes to bob)
      yield* bob.subscribe(["marker"])
      yield* processed(bob)
      const next = yield* take(bob.messages, 1)
      yield* alice.publish(["room"], "chat", {}, "gone")
      yield* alice.publish(["other"], "chat", {}, "x")
      yield* alice.publish(["marker"], "chat", {}, "marker")
      const [first] = Array.from(yield* Fiber.join(next))
      assert.deepInclude<object>(first!, { _tag: "Notify", body: "marker", publish: ["marker"] })
    }))

  it.live("request/reply by id, multiplexed; timeouts and error frames are typed errors", () =>
    Effect.gen(function*() {
      const { url } = yield* server()
      const c = yield* client(url)
      yield* opened(c)
      const replies = yield* Effect.all(
        ["one", "two", "three"].map((body) => c.request("echo", body)),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(replies.map(bodyOf), ["one", "two", "three"])
      const timeout = yield* c.request("silent", "", { timeout: "200 millis" }).pipe(Effect.flip)
      assert.deepInclude(timeout, { reason: "Timeout", message: "no reply to silent within 200ms" })
      const denied = yield* c.request("deny").pipe(Effect.flip)
      assert.deepInclude(denied, { reason: "Rejected", status: 403, serverReason: "Forbidden", message: "not for you" })
      const unknown = yield* c.request("nosuch").pipe(Effect.flip)
      assert.deepInclude(unknown, { reason: "Rejected", status: 404, serverReason: "UnknownCommand" })
      const invalid = yield* c.subscribe(["a..b"]).pipe(Effect.flip)
      assert.strictEqual(invalid.reason, "InvalidFrame")
    }))

  it.live("a frame that would not read back fails InvalidFrame and nothing is sent", () =>
    Effect.gen(function*() {
      const { url } = yield* server()
      const c = yield* client(url)
      yield* opened(c)
      yield* c.subscribe(["room"]) // a publish that got through would come back to c
      yield* processed(c)
      const next = yield* take(c.messages, 1)
      const attempts: ReadonlyArray<readonly [string, Effect.Effect<unknown, LhttpClient.ClientError>]> = [
        ["CRLF in a header value", c.command("echo", { x: "1\r\npublish:room" }, "injected")],
        ["LF in a header value", c.command("echo", new Map([["x", "a\nb"]]))],
        ["CR in a header value", c.publish(["room"], "chat", { x: "a\rb" }, "injected")],
        ["CRLF in the command", c.command("echo\r\npublish:room", {}, "injected")],
        ["LF in a header name", c.send(Frame.make("echo", { "x\ny": "1" }))],
        ["a colon in a header name", c.command("echo", { "a:b": "1" })],
        ["an empty header name", c.command("echo", { "": "1" })],
        ["CRLF in a request's header", c.request("echo", "injected", { headers: { x: "1\r\n" } })]
      ]
      for (const [what, attempt] of attempts) {
        const error = yield* Effect.flip(attempt)
        assert.strictEqual(error.reason, "InvalidFrame", what)
      }
      // nothing reached the server: the echo of a marker is the first frame back
      const marker = yield* c.request("echo", "marker")
      const [first] = Array.from(yield* Fiber.join(next))
      assert.deepStrictEqual(first, marker)
      assert.strictEqual(bodyOf(first!), "marker")
    }))

  it.live("reconnects after the server closes the connection and subscribes again", () =>
    Effect.gen(function*() {
      const { url } = yield* server()
      const c = yield* client(url)
      const publisher = yield* rawConnect(url)
      const states = yield* take(c.states, 4)
      yield* opened(c)
      yield* c.subscribe(["news"])
      yield* c.command("kick")
      yield* reached(c, "reconnecting")
      yield* opened(c)
      assert.deepStrictEqual(Array.from(yield* Fiber.join(states)), ["connecting", "open", "reconnecting", "open"])
      yield* processed(c) // the subscription sent again on the new connection is in place
      const received = yield* take(c.channel("news"), 1)
      yield* publisher.send(frame("flash", { publish: "news" }, "after the reconnect"))
      const [message] = Array.from(yield* Fiber.join(received))
      assert.deepInclude(message, { command: "flash", body: "after the reconnect" })
    }))

  it.live("reconnects after a server restart on the same port, with its subscriptions", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(freePort)
      const first = yield* Scope.make()
      const { url } = yield* server(port).pipe(Scope.provide(first))
      const c = yield* client(url)
      yield* opened(c)
      yield* c.subscribe(["a", "b"])
      yield* Scope.close(first, Exit.void)
      yield* until(Effect.map(c.state, (state) => state !== "open"))
      const sendWhileDown = yield* c.command("echo", {}, "x").pipe(Effect.flip)
      assert.strictEqual(sendWhileDown.reason, "NotConnected")
      yield* server(port)
      yield* opened(c)
      yield* processed(c)
      const publisher = yield* rawConnect(url)
      const received = yield* take(c.messages, 2)
      yield* publisher.send(frame("x", { publish: "a" }, "to a"))
      yield* publisher.send(frame("x", { publish: "b" }, "to b"))
      assert.deepStrictEqual(Array.from(yield* Fiber.join(received)).map(bodyOf), ["to a", "to b"])
    }))

  it.live("a bounded send buffer keeps a publish and a request made while disconnected and sends them after the reconnect", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(freePort)
      const first = yield* Scope.make()
      const { url } = yield* server(port).pipe(Scope.provide(first))
      const c = yield* client(url, { sendBuffer: 2 })
      yield* opened(c)
      yield* c.subscribe(["kept"])
      yield* processed(c)
      yield* Scope.close(first, Exit.void)
      yield* until(Effect.map(c.state, (state) => state !== "open"))

      const delivered = yield* take(c.channel("kept"), 1)
      yield* c.publish(["kept"], "note", {}, "published while down")
      const reply = yield* c.request("echo", "asked while down", { timeout: "5 seconds" }).pipe(
        Effect.forkChild({ startImmediately: true })
      )
      // the buffer holds two frames: the third send fails at once
      const overflow = yield* c.command("echo", {}, "overflow").pipe(Effect.flip)
      assert.strictEqual(overflow.reason, "NotConnected")

      const { server: second } = yield* server(port)
      yield* opened(c)
      assert.deepInclude(yield* Fiber.join(reply), { _tag: "Request", body: "asked while down" })
      // the publish reached the new server: it came back through the channel, subscribed again
      const [note] = Array.from(yield* Fiber.join(delivered))
      assert.deepInclude<object>(note!, { _tag: "Notify", command: "note", body: "published while down", publish: ["kept"] })
      // and the overflowing frame did not: the marker's echo is the next frame
      const next = yield* take(c.messages, 1)
      const marker = yield* c.request("echo", "marker")
      assert.deepStrictEqual(Array.from(yield* Fiber.join(next)), [marker])
      assert.strictEqual(second.connectionCount(), 1)
    }))

  it.live("without reconnect the client ends closed when the connection ends, and sends fail Closed", () =>
    Effect.gen(function*() {
      const { url } = yield* server()
      const once = yield* client(url, { reconnect: false })
      yield* opened(once)
      yield* once.command("kick")
      yield* reached(once, "closed")
      assert.deepInclude(yield* once.command("echo").pipe(Effect.flip), { reason: "Closed" })
      assert.deepInclude(yield* once.request("echo").pipe(Effect.flip), { reason: "Closed" })
    }))

  it.live("close: pending requests fail Closed, the state is closed, later calls fail Closed", () =>
    Effect.gen(function*() {
      const { server: running, url } = yield* server()
      const c = yield* client(url)
      yield* opened(c)
      const pending = yield* c.request("silent", "", { timeout: "5 seconds" }).pipe(
        Effect.flip,
        Effect.forkChild({ startImmediately: true })
      )
      yield* processed(c)
      yield* c.close
      assert.deepInclude(yield* Fiber.join(pending), { reason: "Closed", message: "the client is closed" })
      assert.strictEqual(yield* c.state, "closed")
      for (const later of [c.command("echo"), c.request("echo"), c.subscribe(["room"]), c.publish(["room"], "chat")]) {
        assert.deepInclude(yield* Effect.flip(later), { reason: "Closed" })
      }
      yield* until(Effect.sync(() => running.connectionCount() === 0))
    }))

  it.live("layer(url, options) gives the client as the Client service, closed with the layer's scope", () =>
    Effect.gen(function*() {
      const { server: running, url } = yield* server()
      const used = yield* Effect.gen(function*() {
        const c = yield* LhttpClient.Client
        yield* opened(c)
        assert.deepInclude(yield* c.request("echo", "through the layer"), { body: "through the layer" })
        return c
      }).pipe(Effect.provide(LhttpClient.layer(url)))
      assert.strictEqual(yield* used.state, "closed")
      assert.deepInclude(yield* used.command("echo").pipe(Effect.flip), { reason: "Closed" })
      yield* until(Effect.sync(() => running.connectionCount() === 0))

      // the options reach the client: without reconnect, a kick ends it
      yield* Effect.gen(function*() {
        const c = yield* LhttpClient.Client
        yield* opened(c)
        yield* c.command("kick")
        yield* until(Effect.map(c.state, (state) => state === "closed"), "2 seconds")
      }).pipe(Effect.provide(LhttpClient.layer(url, { reconnect: false })))
    }).pipe(Effect.provide(NodeWS.layerWebSocketConstructor)))
})

describe("LhttpClient timeouts and their defaults (TestClock)", () => {
  it.effect("requestTimeout: 10 s by default, or as set", () =>
    Effect.gen(function*() {
      const { url } = yield* TestClock.withLive(server())
      const byDefault = yield* client(url)
      const set = yield* client(url, { requestTimeout: "2 seconds" })
      yield* opened(byDefault)
      yield* opened(set)
      const silent = (c: LhttpClient.LhttpClient) =>
        c.request("silent").pipe(Effect.flip, Effect.forkChild({ startImmediately: true }))
      const waiting = yield* silent(byDefault)
      const short = yield* silent(set)
      yield* processed(byDefault)
      yield* processed(set)

      yield* TestClock.adjust("1999 millis")
      assert.isUndefined(short.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      assert.deepInclude(yield* Fiber.join(short), { reason: "Timeout", message: "no reply to silent within 2s" })
      yield* TestClock.adjust("7999 millis")
      assert.isUndefined(waiting.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      assert.deepInclude(yield* Fiber.join(waiting), { reason: "Timeout", message: "no reply to silent within 10s" })
    }))

  it.effect("openTimeout: 10 s by default, or as set, against a server that never completes the handshake", () =>
    Effect.gen(function*() {
      const held: Array<Net.Socket> = []
      const tcp = yield* Effect.acquireRelease(
        Effect.callback<Net.Server>((resume) => {
          const listening = Net.createServer((socket) => void held.push(socket))
          listening.listen(0, "127.0.0.1", () => resume(Effect.succeed(listening)))
        }),
        (listening) =>
          Effect.callback<void>((resume) => {
            for (const socket of held) socket.destroy()
            listening.close(() => resume(Effect.void))
          })
      )
      const url = `ws://127.0.0.1:${(tcp.address() as Net.AddressInfo).port}/`
      const byDefault = yield* client(url, { reconnect: false })
      const set = yield* client(url, { reconnect: false, openTimeout: "2 seconds" })
      // both handshakes are under way (the clock of each started before its TCP connection)
      yield* TestClock.withLive(until(Effect.sync(() => held.length === 2)))

      yield* TestClock.adjust("1999 millis")
      assert.deepStrictEqual([yield* byDefault.state, yield* set.state], ["connecting", "connecting"])
      yield* TestClock.adjust("1 millis")
      yield* reached(set, "closed")
      assert.strictEqual(yield* byDefault.state, "connecting")
      yield* TestClock.adjust("7999 millis")
      assert.strictEqual(yield* byDefault.state, "connecting")
      yield* TestClock.adjust("1 millis")
      yield* reached(byDefault, "closed")
    }))
})

describe("LhttpClient on the global WebSocket (the browser's constructor)", () => {
  it.live("publishes and gets replies through globalThis.WebSocket", () =>
    Effect.gen(function*() {
      const { url } = yield* server()
      const c = yield* LhttpClient.connect(url).pipe(Effect.provide(Socket.layerWebSocketConstructorGlobal))
      yield* opened(c)
      const received = yield* take(c.channel("g"), 1)
      yield* c.subscribe(["g"])
      yield* processed(c)
      yield* c.publish(["g"], "chat", {}, "via the global WebSocket")
      const [message] = Array.from(yield* Fiber.join(received))
      assert.deepInclude(message, { body: "via the global WebSocket" })
      const reply = yield* c.request("echo", "é\r\n\r\nbody")
      assert.deepInclude(reply, { _tag: "Request", body: "é\r\n\r\nbody" })
    }))
})
