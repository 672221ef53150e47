import { NodeWS } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Scope, Stream } from "effect"
import * as Socket from "effect/socket/Socket"
import * as Echo from "../src/demo/Echo.ts"
import * as LhttpClient from "../src/LhttpClient.ts"
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

const opened = (c: LhttpClient.LhttpClient) => until(Effect.map(c.state, (state) => state === "open"), "5 seconds")

/** Collects the next `n` messages of a stream in the background. */
const take = <A>(stream: Stream.Stream<A>, n: number) =>
  stream.pipe(Stream.take(n), Stream.runCollect, Effect.forkChild)

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
      yield* Effect.sleep("50 millis")
      yield* alice.publish(["room"], "chat", { "content-type": "text/plain" }, "hi bob")
      const [message] = Array.from(yield* Fiber.join(received))
      assert.deepInclude<object>(message!, { _tag: "Notify", command: "chat", body: "hi bob", publish: ["room"] })
      yield* bob.unsubscribe(["room"])
      assert.deepStrictEqual(Array.from(bob.channels()), [])
      const more = yield* take(bob.messages, 1)
      yield* Effect.sleep("50 millis")
      yield* alice.publish(["room"], "chat", {}, "gone")
      yield* alice.publish(["other"], "chat", {}, "x")
      yield* Effect.sleep("150 millis")
      assert.isUndefined(more.pollUnsafe())
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
      assert.deepStrictEqual(replies.map((reply) => reply._tag === "Failure" ? "" : reply.body), ["one", "two", "three"])
      const timeout = yield* c.request("silent", "", { timeout: "200 millis" }).pipe(Effect.flip)
      assert.strictEqual(timeout.reason, "Timeout")
      const denied = yield* c.request("deny").pipe(Effect.flip)
      assert.deepInclude(denied, { reason: "Rejected", status: 403, serverReason: "Forbidden", message: "not for you" })
      const unknown = yield* c.request("nosuch").pipe(Effect.flip)
      assert.deepInclude(unknown, { reason: "Rejected", status: 404, serverReason: "UnknownCommand" })
      const invalid = yield* c.subscribe(["a..b"]).pipe(Effect.flip)
      assert.strictEqual(invalid.reason, "InvalidFrame")
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
      yield* until(Effect.map(c.state, (state) => state === "reconnecting"))
      yield* opened(c)
      assert.deepStrictEqual(Array.from(yield* Fiber.join(states)), ["connecting", "open", "reconnecting", "open"])
      const received = yield* take(c.channel("news"), 1)
      yield* Effect.sleep("100 millis")
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
      const publisher = yield* rawConnect(url)
      const received = yield* take(c.messages, 2)
      yield* Effect.sleep("100 millis")
      yield* publisher.send(frame("x", { publish: "a" }, "to a"))
      yield* publisher.send(frame("x", { publish: "b" }, "to b"))
      const bodies = Array.from(yield* Fiber.join(received)).map((m) => m._tag === "Failure" ? "" : m.body)
      assert.deepStrictEqual(bodies, ["to a", "to b"])
    }))

  it.live("a bounded send buffer keeps frames while disconnected; without reconnect the client ends closed", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(freePort)
      const first = yield* Scope.make()
      const { url } = yield* server(port).pipe(Scope.provide(first))
      const buffering = yield* client(url, { sendBuffer: 1 })
      const once = yield* client(url, { reconnect: false })
      yield* opened(buffering)
      yield* opened(once)
      yield* Scope.close(first, Exit.void)
      yield* until(Effect.map(buffering.state, (state) => state !== "open"))
      yield* until(Effect.map(once.state, (state) => state === "closed"))
      yield* buffering.subscribe(["kept"])
      assert.strictEqual((yield* buffering.command("echo", {}, "overflow").pipe(Effect.flip)).reason, "NotConnected")
      assert.strictEqual((yield* once.command("echo").pipe(Effect.flip)).reason, "Closed")
      yield* server(port)
      yield* opened(buffering)
      const publisher = yield* rawConnect(url)
      const received = yield* take(buffering.channel("kept"), 1)
      yield* Effect.sleep("100 millis")
      yield* publisher.send(frame("x", { publish: "kept" }, "buffered subscribe worked"))
      assert.strictEqual(Array.from(yield* Fiber.join(received)).length, 1)
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
      yield* Effect.sleep("50 millis")
      yield* c.publish(["g"], "chat", {}, "via the global WebSocket")
      const [message] = Array.from(yield* Fiber.join(received))
      assert.deepInclude(message, { body: "via the global WebSocket" })
      const reply = yield* c.request("echo", "é\r\n\r\nbody")
      assert.deepInclude(reply, { _tag: "Request", body: "é\r\n\r\nbody" })
    }))
})
