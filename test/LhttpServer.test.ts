import { assert, describe, it } from "@effect/vitest"
import { NodeHttpServer } from "@effect/platform-node"
import { Cause, Context, Effect, Exit, Fiber, Layer, Schema } from "effect"
import { HttpRouter, HttpServer, HttpServerResponse } from "effect/http"
import { createServer } from "node:http"
import * as Bus from "../src/Bus.ts"
import * as Connection from "../src/Connection.ts"
import * as Echo from "../src/demo/Echo.ts"
import * as Filter from "../src/Filter.ts"
import * as Hub from "../src/Hub.ts"
import * as LhttpServer from "../src/LhttpServer.ts"
import * as Processor from "../src/Processor.ts"
import { isLoopback } from "../src/internal/websocket.ts"
import { Rejection } from "../src/Rejection.ts"
import { connect, frame, request, startServer } from "./utils/lhttp.ts"
import { until } from "./utils/wait.ts"

// A processor that steers the built-in headers the way the original's WsHandler allowed.
const Steer = Processor.make("steer")
const SteerLive = Steer.toLayer({
  onMessage: (exchange) =>
    Effect.gen(function*() {
      switch (exchange.header("mode")) {
        case "cancel":
          return exchange.setHeader("publish", undefined)
        case "redirect":
          return exchange.setHeader("subscribe", exchange.header("to"))
        case "rename":
          return exchange.setCommand("renamed")
        case "reply":
          exchange.addHeader("a", "1")
          exchange.addHeader("b", "2")
          yield* exchange.send("one")
          return yield* exchange.send("two")
        case "rebody":
          return exchange.setBody("changed")
        case "drop":
          return exchange.drop()
      }
    })
})

const Slow = Processor.make("slow")
const SlowLive = Slow.toLayer({
  onMessage: (exchange) => Effect.sleep("300 millis").pipe(Effect.andThen(exchange.send("done")))
})

const Move = Processor.make("move", {
  body: Schema.fromJsonString(Schema.Struct({ x: Schema.Number, y: Schema.Number }))
})
const MoveLive = Move.toLayer({
  onMessage: (exchange) => exchange.send(`moved to ${exchange.body.x + 1},${exchange.body.y + 1}`)
})

const Fail = Processor.make("fail")
const FailLive = Fail.toLayer({
  onMessage: (exchange) =>
    exchange.header("how") === "reject"
      ? Effect.fail(new Rejection({ status: 403, reason: "Forbidden", message: "not you" }))
      : exchange.header("how") === "die"
      ? Effect.die(new Error("boom"))
      : Effect.fail("a plain failure")
})

const events: Array<string> = []
const Lifecycle = Processor.make("life")
const LifecycleLive = Lifecycle.toLayer({
  onOpen: (connection) => connection.send({ command: "hello", headers: new Map(), body: connection.url }),
  onMessage: (exchange) => exchange.send(exchange.connection.id),
  onClose: (connection) => Effect.sync(() => events.push(`closed ${connection.id}`))
})

const Visits = Connection.key<number>("visits")
const Who = Processor.make("who")
const WhoLive = Who.toLayer({
  onMessage: (exchange) =>
    Effect.gen(function*() {
      const { connection } = exchange
      connection.set(Visits, (connection.get(Visits) ?? 0) + 1)
      switch (exchange.text) {
        case "join":
          return yield* connection.subscribe(["from-code"])
        case "leave":
          return yield* connection.unsubscribe(["from-code"])
        case "bye":
          return yield* connection.close(4321, "bye now")
      }
      yield* exchange.send(JSON.stringify({
        url: connection.url,
        agent: connection.requestHeaders["user-agent"],
        remote: connection.remoteAddress,
        visits: connection.get(Visits),
        channels: Array.from(connection.channels)
      }))
    })
})

// A filter that drops messages marked drop:yes and stamps every other one.
const Gate = Filter.make("gate")
const GateLive = Gate.toLayer({
  before: (exchange) =>
    Effect.sync(() => {
      if (exchange.header("drop") === "yes") exchange.drop()
      else exchange.setHeader("stamped", "yes")
    })
})

const processors = [Echo.Echo, Steer, Slow, Move, Fail, Lifecycle, Who] as const
const implementations = Layer.mergeAll(Echo.layer, SteerLive, SlowLive, MoveLive, FailLive, LifecycleLive, WhoLive)
const server = (options: Omit<LhttpServer.NodeOptions, "processors"> = {}) =>
  startServer({ processors, ...options }, implementations)

describe("LhttpServer: processors", () => {
  it.live("echo answers with the body unchanged, echoing the id", () =>
    Effect.gen(function*() {
      const { url } = yield* server()
      const client = yield* connect(url)
      yield* client.next() // the greeting of the life processor's onOpen
      yield* client.send(frame("echo", { id: "7" }, "a\r\n\r\nb"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 echo\r\nid:7\r\n\r\na\r\n\r\nb")
      yield* client.send("LHTTP/1.0 echo\r\n\r\nline1\r\nline2")
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 echo\r\n\r\nline1\r\nline2")
    }))

  it.live("replies carry the headers added since the last reply", () =>
    Effect.gen(function*() {
      const { url } = yield* server()
      const client = yield* connect(url)
      yield* client.next()
      yield* client.send(frame("steer", { mode: "reply", publish: "nobody" }))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 steer\r\na:1\r\nb:2\r\n\r\none")
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 steer\r\n\r\ntwo")
    }))

  it.live("a typed body is decoded; an invalid one gets 400 InvalidBody and the processor does not run", () =>
    Effect.gen(function*() {
      const { url } = yield* server()
      const client = yield* connect(url)
      yield* client.next()
      yield* client.send(frame("move", {}, "{\"x\":1,\"y\":2}"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 move\r\n\r\nmoved to 2,3")
      yield* client.send(frame("move", { id: "m1", publish: "moves" }, "{\"x\":\"one\"}"))
      const error = yield* client.next()
      assert.match(error, /^LHTTP\/1\.0 error\r\nstatus:400\r\nreason:InvalidBody\r\nid:m1\r\n\r\n/)
      yield* client.send(frame("move", {}, "not json"))
      assert.match(yield* client.next(), /reason:InvalidBody/)
    }))

  it.live("a Rejection becomes its error frame; other failures and defects become 500 InternalError", () =>
    Effect.gen(function*() {
      const { url } = yield* server()
      const client = yield* connect(url)
      yield* client.next()
      yield* client.send(frame("fail", { how: "reject", id: "r" }))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 error\r\nstatus:403\r\nreason:Forbidden\r\nid:r\r\n\r\nnot you")
      yield* client.send(frame("fail", { how: "die" }))
      assert.match(yield* client.next(), /^LHTTP\/1\.0 error\r\nstatus:500\r\nreason:InternalError\r\n/)
      yield* client.send(frame("fail", { how: "plain" }))
      assert.match(yield* client.next(), /status:500/)
      yield* client.send(frame("echo", {}, "still here"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 echo\r\n\r\nstill here")
    }))

  it.live("onOpen runs at connect, onClose always runs", () =>
    Effect.gen(function*() {
      const { url } = yield* server()
      const client = yield* connect(`${url}/room?x=1`)
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 hello\r\n\r\n/room?x=1")
      yield* client.send(frame("life"))
      const id = (yield* client.next()).split("\r\n\r\n")[1]!
      client.ws.terminate()
      yield* Effect.sleep("200 millis")
      assert.include(events, `closed ${id}`)
    }))

  it.live("the connection handle: request URL and headers, remote address, data, subscribe and close from code", () =>
    Effect.gen(function*() {
      const { url } = yield* server()
      const client = yield* connect(`${url}/who?me=1`, { headers: { "user-agent": "test-agent" } })
      yield* client.next() // the Lifecycle greeting
      yield* client.send(frame("who", {}, "join"))
      yield* client.send(frame("who"))
      const who = JSON.parse((yield* client.next()).split("\r\n\r\n")[1]!)
      assert.deepStrictEqual(who, {
        url: "/who?me=1",
        agent: "test-agent",
        remote: "127.0.0.1",
        visits: 2,
        channels: ["from-code"]
      })
      yield* client.send(frame("anything", { publish: "from-code" }, "via code"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 anything\r\npublish:from-code\r\n\r\nvia code")
      yield* client.send(frame("who", {}, "leave"))
      yield* client.send(frame("anything", { publish: "from-code" }, "gone"))
      yield* client.nothing()
      yield* client.send(frame("who", {}, "bye"))
      assert.deepStrictEqual(yield* client.closed, { code: 4321, reason: "bye now" })
    }))

  it.live("an onOpen that fails sends its error frame and closes with 1008", () =>
    Effect.gen(function*() {
      const Picky = Processor.make("picky")
      const PickyLive = Picky.toLayer({
        onOpen: () => Effect.fail(new Rejection({ status: 401, reason: "Unauthorized", message: "who are you?" }))
      })
      const { url } = yield* startServer({ processors: [Picky] }, PickyLive)
      const client = yield* connect(url)
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 error\r\nstatus:401\r\nreason:Unauthorized\r\n\r\nwho are you?")
      assert.strictEqual((yield* client.closed).code, 1008)
    }))

  it.live("the same command twice is refused when the Layer is built", () =>
    Effect.gen(function*() {
      const Again = Processor.make("echo")
      const exit = yield* startServer(
        { processors: [Echo.Echo, Again] },
        Layer.mergeAll(Echo.layer, Again.toLayer({}))
      ).pipe(Effect.exit)
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? Cause.findErrorOption(exit.cause) : undefined
      assert.isTrue(error?._tag === "Some" && error.value instanceof LhttpServer.LhttpServerError)
      if (error?._tag === "Some" && error.value instanceof LhttpServer.LhttpServerError) {
        assert.strictEqual(error.value.reason, "DuplicateCommand")
      }
    }))

  it.live("a command without a processor or built-in header gets 404; with pub/sub headers it works", () =>
    Effect.gen(function*() {
      const { url } = yield* server()
      const client = yield* connect(url)
      yield* client.next()
      yield* client.send(frame("nosuch", { id: "x" }))
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 error\r\nstatus:404\r\nreason:UnknownCommand\r\nid:x\r\n\r\nno processor for the command \"nosuch\""
      )
      yield* client.send(frame("nosuch", { subscribe: "s", publish: "s" }, "works"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 nosuch\r\nsubscribe:s\r\npublish:s\r\n\r\nworks")
    }))
})

describe("LhttpServer: subscribe, publish, unsubscribe (reference §4.1, §4.2)", () => {
  it.live("subscribers receive the whole message re-serialized, the publisher too when subscribed", () =>
    Effect.gen(function*() {
      const { url } = yield* startServer({})
      const a = yield* connect(url)
      const b = yield* connect(url)
      yield* a.send(frame("chat", { subscribe: "room1" }))
      yield* Effect.sleep("50 millis")
      const sent = "LHTTP/1.0 chat\r\ncontent-type:text/plain\r\npublish:room1\r\n\r\nhello"
      yield* b.send(sent)
      assert.strictEqual(yield* a.next(), sent)
      yield* b.nothing()
      yield* a.send(frame("chat", { publish: "room1" }, "mine"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 chat\r\npublish:room1\r\n\r\nmine")
    }))

  it.live("subscribing twice, or twice in one list, delivers once; one unsubscribe stops it (B8, issue #12)", () =>
    Effect.gen(function*() {
      const { url, hub } = yield* startServer({})
      const a = yield* connect(url)
      yield* a.send(frame("c", { subscribe: "x x" }))
      yield* a.send(frame("c", { subscribe: "x" }))
      yield* a.send(frame("c", { publish: "x" }, "1"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 c\r\npublish:x\r\n\r\n1")
      yield* a.nothing()
      yield* a.send(frame("c", { unsubscribe: "x" }))
      yield* a.send(frame("c", { publish: "x" }, "2"))
      yield* a.nothing()
      assert.strictEqual(hub.channelCount(), 0)
    }))

  it.live("unsubscribing an unknown channel is a no-op and the connection stays (B8)", () =>
    Effect.gen(function*() {
      const { url } = yield* startServer({})
      const a = yield* connect(url)
      yield* a.send(frame("c", { unsubscribe: "never" }))
      yield* a.nothing()
      yield* a.send(frame("c", { subscribe: "y", publish: "y" }, "alive"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 c\r\nsubscribe:y\r\npublish:y\r\n\r\nalive")
    }))

  it.live("in one message: subscribe, then publish, then unsubscribe, whatever the header order", () =>
    Effect.gen(function*() {
      const { url } = yield* startServer({})
      const a = yield* connect(url)
      const text = "LHTTP/1.0 c\r\nunsubscribe:z\r\npublish:z\r\nsubscribe:z\r\n\r\nonce"
      yield* a.send(text)
      assert.strictEqual(yield* a.next(), text)
      yield* a.send(frame("c", { publish: "z" }, "after"))
      yield* a.nothing()
    }))

  it.live("publishing to two channels delivers once per (channel, subscriber)", () =>
    Effect.gen(function*() {
      const { url } = yield* startServer({})
      const a = yield* connect(url)
      yield* a.send(frame("c", { subscribe: "p q" }))
      yield* a.send(frame("c", { publish: "p q" }, "twice"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 c\r\npublish:p q\r\n\r\ntwice")
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 c\r\npublish:p q\r\n\r\ntwice")
      yield* a.nothing()
    }))

  it.live("disconnecting removes every subscription (B9)", () =>
    Effect.gen(function*() {
      const { url, hub } = yield* startServer({})
      const a = yield* connect(url)
      yield* a.send(frame("c", { subscribe: "k1 k2 k3" }))
      yield* Effect.sleep("50 millis")
      assert.strictEqual(hub.channelCount(), 3)
      a.ws.terminate()
      yield* Effect.sleep("150 millis")
      assert.strictEqual(hub.channelCount(), 0)
    }))

  it.live("a processor steers the built-ins: cancel a publish, redirect a subscribe, rename, change the body", () =>
    Effect.gen(function*() {
      const { url } = yield* server()
      const a = yield* connect(url)
      yield* a.next()
      yield* a.send(frame("steer", { mode: "redirect", subscribe: "asked", to: "given" }))
      yield* a.send(frame("steer", { mode: "cancel", publish: "given" }, "cancelled"))
      yield* a.send(frame("x", { publish: "asked" }, "not subscribed"))
      yield* a.nothing()
      yield* a.send(frame("steer", { mode: "rename", publish: "given" }, "renamed"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 renamed\r\nmode:rename\r\npublish:given\r\n\r\nrenamed")
      yield* a.send(frame("steer", { mode: "rebody", publish: "given" }, "original"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 steer\r\nmode:rebody\r\npublish:given\r\n\r\nchanged")
      yield* a.send(frame("steer", { mode: "drop", publish: "given" }, "dropped"))
      yield* a.nothing()
    }))

  it.live("subscriptions per connection are bounded: 429 TooManySubscriptions, none of the list applied", () =>
    Effect.gen(function*() {
      const { url, hub } = yield* startServer({}, undefined, { hub: { maxSubscriptions: 2 } })
      const a = yield* connect(url)
      yield* a.send(frame("c", { subscribe: "s1 s2" }))
      yield* a.send(frame("c", { subscribe: "s3", id: "q" }))
      assert.strictEqual(
        yield* a.next(),
        "LHTTP/1.0 error\r\nstatus:429\r\nreason:TooManySubscriptions\r\nid:q\r\n\r\na connection holds at most 2 subscriptions"
      )
      assert.strictEqual(hub.channelCount(), 2)
    }))

  it.live("the server-side publish API reaches subscribers", () =>
    Effect.gen(function*() {
      const { url, hub } = yield* startServer({})
      const a = yield* connect(url)
      yield* a.send(frame("c", { subscribe: "news" }))
      yield* Effect.sleep("50 millis")
      yield* hub.publish("news", "flash", { "content-type": "text/plain" }, "from the app")
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 flash\r\ncontent-type:text/plain\r\n\r\nfrom the app")
      const invalid = yield* hub.publish(">", "x").pipe(Effect.flip)
      assert.strictEqual(invalid._tag, "ProtocolError")
    }))
})

describe("LhttpServer: filters", () => {
  it.live("a filter drops a message or alters it before the processor and the publish", () =>
    Effect.gen(function*() {
      const { url } = yield* startServer({ processors: [Echo.Echo], filters: [Gate] }, Layer.merge(Echo.layer, GateLive))
      const a = yield* connect(url)
      yield* a.send(frame("c", { subscribe: "f" }))
      yield* a.send(frame("c", { publish: "f", drop: "yes" }, "dropped"))
      yield* a.send(frame("echo", { drop: "yes" }, "dropped too"))
      yield* a.nothing()
      yield* a.send(frame("c", { publish: "f" }, "kept"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 c\r\npublish:f\r\nstamped:yes\r\n\r\nkept")
    }))

  it.live("the multipart filter cuts parts before the processor; bad offsets get 400 InvalidMultipart", () =>
    Effect.gen(function*() {
      const Upload = Processor.make("upload")
      const UploadLive = Upload.toLayer({
        onMessage: (exchange) => exchange.send(exchange.parts.map((part) => `${part.headers.get("k")}=${part.body}`).join(","))
      })
      const { url } = yield* startServer({ processors: [Upload] }, UploadLive)
      const a = yield* connect(url)
      yield* a.send("LHTTP/1.0 upload\r\nmultipart:0 13\r\n\r\nk:v1\r\n\r\nbody1k:v2\r\n\r\nbody2")
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 upload\r\n\r\nv1=body1,v2=body2")
      yield* a.send("LHTTP/1.0 upload\r\nmultipart:13 0\r\n\r\nk:v1\r\n\r\nbody1k:v2\r\n\r\nbody2")
      assert.match(yield* a.next(), /^LHTTP\/1\.0 error\r\nstatus:400\r\nreason:InvalidMultipart\r\n/)
      yield* a.send("LHTTP/1.0 upload\r\n\r\nno parts")
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 upload\r\n\r\n")
    }))
})

describe("LhttpServer: malformed input (reference §9) gets an error frame and the connection stays", () => {
  const cases: ReadonlyArray<readonly [string, string, string]> = [
    ["too short", "LHTTP", "NotLhttp"],
    ["not LHTTP", "hello there", "NotLhttp"],
    ["another version", "LHTTP/1.1 chat\r\n\r\n", "UnsupportedVersion"],
    ["no space after the version", "LHTTP/1.0Xchat\r\n\r\n", "MalformedStartLine"],
    ["a start line too short", "LHTTP/1.0\r\nx:y\r\n\r\n", "MalformedStartLine"],
    ["LF line endings", "LHTTP/1.0 chat\nx:y\n\nb", "MalformedStartLine"],
    ["a header without a colon", "LHTTP/1.0 chat\r\nnocolon\r\n\r\n", "MalformedHeader"],
    ["an invalid channel", "LHTTP/1.0 chat\r\nsubscribe:a..b\r\n\r\n", "InvalidChannel"],
    ["an empty channel", "LHTTP/1.0 chat\r\nsubscribe:a  b\r\n\r\n", "InvalidChannel"],
    ["a wildcard", "LHTTP/1.0 chat\r\nsubscribe:>\r\n\r\n", "InvalidChannel"],
    ["a tab in a channel", "LHTTP/1.0 chat\r\npublish:a\tb\r\n\r\n", "InvalidChannel"],
    ["a system subject", "LHTTP/1.0 chat\r\nsubscribe:$SYS.x\r\n\r\n", "InvalidChannel"],
    ["decreasing multipart offsets", "LHTTP/1.0 chat\r\nmultipart:5 1\r\npublish:m\r\n\r\nxxxxxx", "InvalidMultipart"],
    ["too many headers", `LHTTP/1.0 chat\r\n${Array.from({ length: 70 }, (_, i) => `h${i}:v\r\n`).join("")}\r\n`, "TooManyHeaders"]
  ]
  for (const [name, input, reason] of cases) {
    it.live(name, () =>
      Effect.gen(function*() {
        const { url } = yield* startServer({})
        const a = yield* connect(url)
        yield* a.send(input)
        assert.match(yield* a.next(), new RegExp(`^LHTTP/1\\.0 error\\r\\nstatus:\\d{3}\\r\\nreason:${reason}\\r\\n`))
        yield* a.send(frame("c", { subscribe: "ok", publish: "ok" }, "alive"))
        assert.strictEqual(yield* a.next(), "LHTTP/1.0 c\r\nsubscribe:ok\r\npublish:ok\r\n\r\nalive")
      }))
  }

  it.live("a binary frame is read as UTF-8; invalid UTF-8 gets InvalidUtf8", () =>
    Effect.gen(function*() {
      const { url } = yield* startServer({})
      const a = yield* connect(url)
      a.ws.send(Buffer.from(frame("c", { subscribe: "b", publish: "b" }, "binary é")))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 c\r\nsubscribe:b\r\npublish:b\r\n\r\nbinary é")
      a.ws.send(Buffer.from([0x4c, 0x48, 0xff, 0xfe]))
      assert.match(yield* a.next(), /reason:InvalidUtf8/)
    }))

  it.live("upstream before it is configured: 501 after the publish went out", () =>
    Effect.gen(function*() {
      const { url } = yield* startServer({})
      const a = yield* connect(url)
      yield* a.send(frame("c", { subscribe: "u" }))
      yield* a.send(frame("c", { publish: "u", upstream: "POST http://127.0.0.1:1/x", id: "up" }, "rec"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 c\r\npublish:u\r\nupstream:POST http://127.0.0.1:1/x\r\nid:up\r\n\r\nrec")
      assert.strictEqual(
        yield* a.next(),
        "LHTTP/1.0 error\r\nstatus:501\r\nreason:UpstreamNotConfigured\r\nid:up\r\n\r\nupstream is not configured on this server"
      )
    }))
})

describe("LhttpServer: limits and safety", () => {
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

  it.live("a slow consumer is closed with 4001 while others keep receiving", () =>
    Effect.gen(function*() {
      const { url } = yield* startServer({})
      const slow = yield* connect(url)
      const fast = yield* connect(url)
      const publisher = yield* connect(url)
      yield* slow.send(frame("c", { subscribe: "flood" }))
      yield* fast.send(frame("c", { subscribe: "flood" }))
      yield* Effect.sleep("50 millis")
      ;(slow.ws as unknown as { _socket: { pause(): void } })._socket.pause()
      let received = 0
      fast.ws.on("message", () => received++)
      // 20 MB, far past the 1 MiB outbox and what the kernel's socket buffers absorb
      const body = "y".repeat(32 * 1024)
      for (let i = 0; i < 640; i++) {
        yield* publisher.send(frame("c", { publish: "flood" }, body))
        if (i % 16 === 0) yield* Effect.sleep("5 millis")
      }
      yield* Effect.sleep("1500 millis")
      ;(slow.ws as unknown as { _socket: { resume(): void } })._socket.resume()
      const closed = yield* slow.closed
      assert.strictEqual(closed.code, 4001)
      assert.strictEqual(closed.reason, "slow consumer")
      assert.strictEqual(received, 640)
    }))

  it.live("under the drop policy a slow consumer stays connected and misses what did not fit", () =>
    Effect.gen(function*() {
      const { url } = yield* startServer({ slowConsumer: "drop" })
      const slow = yield* connect(url)
      const publisher = yield* connect(url)
      yield* slow.send(frame("c", { subscribe: "flood" }))
      yield* Effect.sleep("50 millis")
      const socket = (slow.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket
      socket.pause()
      let received = 0
      let after = false
      slow.ws.on("message", (data) => {
        if (String(data).endsWith("still here")) after = true
        else received++
      })
      const body = "y".repeat(32 * 1024)
      for (let i = 0; i < 640; i++) {
        yield* publisher.send(frame("c", { publish: "flood" }, body))
        if (i % 16 === 0) yield* Effect.sleep("5 millis")
      }
      yield* Effect.sleep("500 millis")
      socket.resume()
      yield* Effect.sleep("1500 millis")
      assert.strictEqual(slow.ws.readyState, slow.ws.OPEN)
      assert.isAbove(received, 0)
      assert.isBelow(received, 640)
      // once it reads again, what comes next is delivered
      yield* slow.send(frame("c", { subscribe: "after", publish: "after" }, "still here"))
      yield* until(Effect.sync(() => after))
    }))

  it.live("a connection that does not answer pings is closed with 4000; one that does stays", () =>
    Effect.gen(function*() {
      const { url } = yield* startServer({ heartbeatInterval: "100 millis", heartbeatTimeout: "100 millis" })
      const silent = yield* connect(url, { autoPong: false })
      const alive = yield* connect(url)
      assert.strictEqual((yield* silent.closed).code, 4000)
      yield* alive.send(frame("c", { subscribe: "h", publish: "h" }, "alive"))
      assert.strictEqual(yield* alive.next(), "LHTTP/1.0 c\r\nsubscribe:h\r\npublish:h\r\n\r\nalive")
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

describe("LhttpServer: POST /publish", () => {
  it.live("delivers the raw body byte for byte to each channel", () =>
    Effect.gen(function*() {
      const { url, http } = yield* startServer({})
      const a = yield* connect(url)
      yield* a.send(frame("c", { subscribe: "mike other" }))
      yield* Effect.sleep("50 millis")
      const raw = "LHTTP/1.0 chat\r\nz-last:1\r\npublish:mike other\r\na-first:2\r\n\r\nhello mike\r\n\r\n"
      const response = yield* request(`${http}/publish`, { method: "POST", body: raw })
      assert.strictEqual(response.status, 204)
      assert.strictEqual(yield* a.next(), raw)
      assert.strictEqual(yield* a.next(), raw)
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
    }))
})

describe("LhttpServer: who may publish without a token", () => {
  it("only loopback peers", () => {
    for (const address of ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"]) assert.isTrue(isLoopback(address))
    for (const address of ["10.0.0.1", "192.168.1.2", "::ffff:10.0.0.1", "2001:db8::1", "1.2.3.4", undefined]) {
      assert.isFalse(isLoopback(address))
    }
  })
})

describe("LhttpServer: graceful shutdown", () => {
  it.live("readiness off, new upgrades 503, in-flight work finishes, then 1001", () =>
    Effect.gen(function*() {
      const { url, http, server: lhttp } = yield* server()
      const busy = yield* connect(url)
      const idle = yield* connect(url)
      yield* busy.next()
      yield* idle.next()
      yield* busy.send(frame("slow"))
      yield* Effect.sleep("50 millis")
      const draining = yield* Effect.forkChild(lhttp.drain)
      yield* Effect.sleep("50 millis")
      assert.strictEqual((yield* request(`${http}/readyz`)).status, 503)
      const refused = yield* connect(url).pipe(Effect.flip)
      assert.include(String(refused), "503")
      assert.strictEqual((yield* idle.closed).code, 1001)
      assert.strictEqual(yield* busy.next(), "LHTTP/1.0 slow\r\n\r\ndone")
      assert.deepStrictEqual(yield* busy.closed, { code: 1001, reason: "server shutting down" })
      yield* Fiber.join(draining)
      assert.strictEqual(lhttp.connectionCount(), 0)
    }))
})

describe("Bus (memory)", () => {
  it.live("delivers in order to every subscription of a channel until its scope closes", () =>
    Effect.gen(function*() {
      const bus = yield* Bus.makeMemory()
      const got: Array<string> = []
      const scope = yield* Effect.scope
      yield* bus.subscribe("a", (payload) => got.push(`1:${payload}`))
      const inner = yield* Effect.scoped(Effect.gen(function*() {
        yield* bus.subscribe("a", (payload) => got.push(`2:${payload}`))
        yield* bus.publish("a", "x")
        yield* bus.publish("b", "not mine")
        yield* Effect.sleep("20 millis")
        return got.slice()
      }))
      yield* bus.publish("a", "y")
      yield* Effect.sleep("20 millis")
      assert.deepStrictEqual(inner, ["1:x", "2:x"])
      assert.deepStrictEqual(got, ["1:x", "2:x", "1:y"])
      assert.isTrue(yield* bus.isReady)
      assert.isDefined(scope)
    }))

  it.live("the hub holds one bus subscription per channel, whatever the local subscribers", () =>
    Effect.gen(function*() {
      const bus = yield* Bus.makeMemory()
      let subscriptions = 0
      const counting: Bus.Bus["Service"] = Bus.Bus.of({
        ...bus,
        subscribe: (channel, onMessage) =>
          Effect.acquireRelease(Effect.sync(() => subscriptions++), () => Effect.sync(() => subscriptions--)).pipe(
            Effect.andThen(bus.subscribe(channel, onMessage))
          )
      })
      const hub = yield* Hub.make().pipe(Effect.provideService(Bus.Bus, counting))
      const delivered: Array<string> = []
      const subscriber = (name: string): Hub.Subscriber => ({
        channels: new Set(),
        deliver: (delivery) => delivered.push(`${name}:${delivery.text}`)
      })
      const one = subscriber("one")
      const two = subscriber("two")
      yield* hub.subscribe(one, ["c"])
      yield* hub.subscribe(two, ["c"])
      assert.strictEqual(subscriptions, 1)
      yield* hub.publishText(["c"], "m")
      yield* Effect.sleep("20 millis")
      assert.deepStrictEqual(delivered.sort(), ["one:m", "two:m"])
      yield* hub.unsubscribe(one, ["c"])
      assert.strictEqual(subscriptions, 1)
      yield* hub.unsubscribeAll(two)
      assert.strictEqual(subscriptions, 0)
      assert.strictEqual(hub.channelCount(), 0)
    }))
})

describe("LhttpServer: mounted into an Effect HTTP app", () => {
  it.live("serves the WebSocket endpoint at the app's paths beside the app's own routes", () =>
    Effect.gen(function*() {
      const hello = HttpRouter.add("GET", "/hello", HttpServerResponse.text("hello from the app"))
      const app = HttpRouter.serve(
        Layer.mergeAll(hello, LhttpServer.routes({ paths: ["/live/*"] })),
        { disableListenLog: true, disableLogger: true }
      ).pipe(
        Layer.provideMerge(NodeHttpServer.layer(() => createServer(), { port: 0, host: "127.0.0.1" })),
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
