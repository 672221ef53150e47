import { assert, describe, it } from "@effect/vitest"
import { Cause, Context, Data, Deferred, Duration, Effect, Exit, Fiber, Layer, Option, Schema, Tracer } from "effect"
import { TestClock } from "effect/testing"
import * as Connection from "../src/Connection.ts"
import * as Echo from "../src/demo/Echo.ts"
import * as ErrorFrame from "../src/ErrorFrame.ts"
import * as Filter from "../src/Filter.ts"
import * as LhttpServer from "../src/LhttpServer.ts"
import type * as Message from "../src/Message.ts"
import * as Processor from "../src/Processor.ts"
import * as Rejection from "../src/Rejection.ts"
import type * as Transport from "../src/Transport.ts"
import { frame } from "./utils/lhttp.ts"
import { pending, startMemoryServer } from "./utils/memory.ts"
import { Place, PlaceLive } from "./utils/place.ts"
import { eventually } from "./utils/wait.ts"

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

// the connections whose slow message has begun
const started = new Set<string>()

// a processor that works until the test opens its gate
let slowGate = Deferred.makeUnsafe<void>()
const Slow = Processor.make("slow")
const SlowLive = Slow.toLayer({
  onMessage: (exchange) =>
    Effect.sync(() => started.add(exchange.connection.id)).pipe(
      Effect.andThen(Effect.suspend(() => Deferred.await(slowGate))),
      Effect.andThen(exchange.send("done"))
    )
})

const Move = Processor.make("move", {
  body: Schema.fromJsonString(Schema.Struct({ x: Schema.Number, y: Schema.Number }))
})
const MoveLive = Move.toLayer({
  onMessage: (exchange) => exchange.send(`moved to ${exchange.body.x + 1},${exchange.body.y + 1}`)
})

const TallyBody = Schema.fromJsonString(Schema.Record(Schema.String, Schema.Number))
const Tally = Processor.make("tally", { body: TallyBody })
const TallyLive = Tally.toLayer({
  onMessage: (exchange) => exchange.send(String(Object.keys(exchange.body).length))
})

// an error class of the app's own that becomes an error frame
class OutOfStock extends Data.TaggedError("OutOfStock")<{ readonly item: string }> implements ErrorFrame.Respondable {
  get [ErrorFrame.TypeId](): ErrorFrame.TypeId {
    return ErrorFrame.TypeId
  }
  toFrame(id?: string) {
    return ErrorFrame.make({ status: 409, reason: "OutOfStock", message: `no ${this.item} left`, id })
  }
}

const Fail = Processor.make("fail")
const FailLive = Fail.toLayer({
  onMessage: (exchange) =>
    exchange.header("how") === "reject"
      ? Effect.fail(new Rejection.Rejection({ status: 403, reason: "Forbidden", message: "not you" }))
      : exchange.header("how") === "own"
      ? Effect.fail(new OutOfStock({ item: "tea" }))
      : Effect.die(new Error("boom"))
})

// a hook's unmapped error does not compile: it must become an error frame
Processor.make("typed").toLayer({
  // @ts-expect-error a string is not Respondable
  onMessage: () => Effect.fail("a plain failure")
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

const processors = [Echo.Echo, Steer, Slow, Move, Tally, Fail, Lifecycle, Who] as const
const implementations = Layer.mergeAll(
  Echo.layer,
  SteerLive,
  SlowLive,
  MoveLive,
  TallyLive,
  FailLive,
  LifecycleLive,
  WhoLive
)
const server = (options: Omit<LhttpServer.Options, "processors"> = {}) =>
  startMemoryServer({ processors, ...options }, implementations)

describe("LhttpServer: processors", () => {
  it.live("echo answers with the body unchanged, echoing the id", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const client = yield* connect()
      yield* client.next() // the greeting of the life processor's onOpen
      yield* client.send(frame("echo", { id: "7" }, "a\r\n\r\nb"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 echo\r\nid:7\r\n\r\na\r\n\r\nb")
      yield* client.send("LHTTP/1.0 echo\r\n\r\nline1\r\nline2")
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 echo\r\n\r\nline1\r\nline2")
    }))

  it.live("replies carry the headers added since the last reply", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const client = yield* connect()
      yield* client.next()
      yield* client.send(frame("steer", { mode: "reply", publish: "nobody" }))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 steer\r\na:1\r\nb:2\r\n\r\none")
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 steer\r\n\r\ntwo")
    }))

  it.live("a typed body is decoded; an invalid one gets 400 InvalidBody, the processor and the publish do not run", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const client = yield* connect()
      const watcher = yield* connect()
      yield* client.next()
      yield* watcher.next()
      yield* watcher.send(frame("c", { subscribe: "moves" }))
      yield* watcher.nothing()
      yield* client.send(frame("move", { publish: "moves" }, "{\"x\":1,\"y\":2}"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 move\r\n\r\nmoved to 2,3")
      assert.strictEqual(yield* watcher.next(), "LHTTP/1.0 move\r\npublish:moves\r\n\r\n{\"x\":1,\"y\":2}")
      yield* client.send(frame("move", { id: "m1", publish: "moves" }, "{\"x\":\"one\",\"y\":2}"))
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 error\r\nstatus:400\r\nreason:InvalidBody\r\nid:m1\r\n\r\nExpected number\n  at [\"x\"]"
      )
      yield* client.send(frame("move", { publish: "moves" }, "not json"))
      assert.match(yield* client.next(), /^LHTTP\/1\.0 error\r\nstatus:400\r\nreason:InvalidBody\r\n\r\n/)
      // no reply of the processor came after the error frames
      yield* client.nothing()
      // nothing was published: the watcher's next frame is a marker published after the refused messages
      yield* client.send(frame("c", { publish: "moves" }, "marker"))
      assert.strictEqual(yield* watcher.next(), "LHTTP/1.0 c\r\npublish:moves\r\n\r\nmarker")
    }))

  it.live("an InvalidBody explanation names the failing path and is cut at 300 characters (protocol.md §5)", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const client = yield* connect()
      yield* client.next()
      // Schema's explanation quotes the key, 400 characters of it
      const body = JSON.stringify({ ["k".repeat(400)]: "secret value" })
      const full = (yield* Effect.flip(Schema.decodeEffect(TallyBody)(body))).message
      assert.isAbove(full.length, 300)
      yield* client.send(frame("tally", { id: "t" }, body))
      const error = yield* client.next()
      assert.strictEqual(
        error,
        `LHTTP/1.0 error\r\nstatus:400\r\nreason:InvalidBody\r\nid:t\r\n\r\n${full.slice(0, 300)}…`
      )
      assert.notInclude(error, "secret")
      yield* client.send(frame("tally", {}, "{\"a\":1,\"b\":2}"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 tally\r\n\r\n2")
    }))

  it.live("a Respondable error (a Rejection, or the app's own) becomes its error frame; a defect becomes 500", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const client = yield* connect()
      yield* client.next()
      yield* client.send(frame("fail", { how: "reject", id: "r" }))
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 error\r\nstatus:403\r\nreason:Forbidden\r\nid:r\r\n\r\nnot you"
      )
      yield* client.send(frame("fail", { how: "die" }))
      // the cause (an Error "boom") is logged, never sent
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 error\r\nstatus:500\r\nreason:InternalError\r\n\r\nthe server failed to process the message"
      )
      yield* client.send(frame("fail", { how: "own", id: "o" }))
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 error\r\nstatus:409\r\nreason:OutOfStock\r\nid:o\r\n\r\nno tea left"
      )
      yield* client.send(frame("echo", {}, "still here"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 echo\r\n\r\nstill here")
    }))

  it.live("onOpen runs at connect, onClose always runs", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const client = yield* connect("/room?x=1")
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 hello\r\n\r\n/room?x=1")
      yield* client.send(frame("life"))
      const id = (yield* client.next()).split("\r\n\r\n")[1]!
      yield* client.transport.close
      yield* eventually(() => events.includes(`closed ${id}`))
    }))

  it.live("the connection handle: request URL and headers, remote address, data, subscribe and close from code", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const client = yield* connect("/who?me=1", {
        requestHeaders: { "user-agent": "test-agent" },
        remoteAddress: "10.1.2.3"
      })
      yield* client.next() // the Lifecycle greeting
      yield* client.send(frame("who", {}, "join"))
      yield* client.send(frame("who"))
      const who = JSON.parse((yield* client.next()).split("\r\n\r\n")[1]!)
      assert.deepStrictEqual(who, {
        url: "/who?me=1",
        agent: "test-agent",
        remote: "10.1.2.3",
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
        onOpen: () =>
          Effect.fail(new Rejection.Rejection({ status: 401, reason: "Unauthorized", message: "who are you?" }))
      })
      const { connect } = yield* startMemoryServer({ processors: [Picky] }, PickyLive)
      const client = yield* connect()
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 error\r\nstatus:401\r\nreason:Unauthorized\r\n\r\nwho are you?"
      )
      assert.strictEqual((yield* client.closed).code, 1008)
    }))

  it.live("an onOpen that dies sends 500 InternalError without the cause, then closes with 1008", () =>
    Effect.gen(function*() {
      const Broken = Processor.make("broken")
      const BrokenLive = Broken.toLayer({
        onOpen: () => Effect.die(new Error("secret detail of the defect"))
      })
      const { connect } = yield* startMemoryServer({ processors: [Broken] }, BrokenLive)
      const client = yield* connect()
      const error = yield* client.next()
      assert.strictEqual(
        error,
        "LHTTP/1.0 error\r\nstatus:500\r\nreason:InternalError\r\n\r\nthe server failed to process the message"
      )
      assert.notInclude(error, "secret")
      assert.deepStrictEqual(yield* client.closed, { code: 1008, reason: "refused" })
    }))

  it.live("connection.send refuses a frame that would not read back (CR/LF injection): a ProtocolError, nothing written", () =>
    Effect.gen(function*() {
      const forged = "x\r\n\r\nLHTTP/1.0 forged"
      const frames: Record<string, { command: string; headers: Map<string, string>; body: string }> = {
        command: { command: forged, headers: new Map(), body: "" },
        value: { command: "x", headers: new Map([["k", forged]]), body: "" },
        name: { command: "x", headers: new Map([[forged, "v"]]), body: "" },
        lone: { command: "x", headers: new Map([["k", "a\nb"]]), body: "" },
        body: { command: "x", headers: new Map(), body: "a\r\n\r\nb" }
      }
      const Inject = Processor.make("inject")
      const InjectLive = Inject.toLayer({
        onMessage: (exchange) =>
          exchange.connection.send(frames[exchange.text]!).pipe(
            Effect.matchEffect({
              onFailure: (error) => exchange.send(`refused ${error._tag} ${error.reason}`),
              onSuccess: () => exchange.send("sent")
            })
          )
      })
      const { connect } = yield* startMemoryServer({ processors: [Inject] }, InjectLive)
      const client = yield* connect()
      for (
        const [what, reason] of [
          ["command", "MalformedStartLine"],
          ["value", "MalformedHeader"],
          ["name", "MalformedHeader"],
          ["lone", "MalformedHeader"]
        ]
      ) {
        yield* client.send(frame("inject", {}, what))
        // the refusal's reply is the next frame: nothing of the forged frame was written
        assert.strictEqual(yield* client.next(), `LHTTP/1.0 inject\r\n\r\nrefused ProtocolError ${reason}`, what)
      }
      // CR/LF in the body is data
      yield* client.send(frame("inject", {}, "body"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 x\r\n\r\na\r\n\r\nb")
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 inject\r\n\r\nsent")
    }))

  it.live("messages without an id of one connection are processed one after another: a slow one's reply comes first", () =>
    Effect.gen(function*() {
      slowGate = Deferred.makeUnsafe()
      const { connect } = yield* server()
      const client = yield* connect()
      const other = yield* connect()
      yield* client.next()
      yield* other.next()
      const before = started.size
      yield* client.send(frame("slow"))
      yield* client.send(frame("echo", {}, "fast"))
      yield* eventually(() => started.size > before)
      // a round trip on another connection: an echo processed beside the slow message would be out by now
      yield* other.send(frame("echo", {}, "barrier"))
      assert.strictEqual(yield* other.next(), "LHTTP/1.0 echo\r\n\r\nbarrier")
      yield* Deferred.succeed(slowGate, undefined)
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 slow\r\n\r\ndone")
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 echo\r\n\r\nfast")
    }))

  it.live("requests (with an id) run beside each other and the connection's messages, up to maxConcurrentRequests", () =>
    Effect.gen(function*() {
      slowGate = Deferred.makeUnsafe()
      const { connect } = yield* server({ maxConcurrentRequests: 2 })
      const client = yield* connect()
      yield* client.next()
      const before = started.size
      yield* client.send(frame("slow", { id: "s1" }))
      yield* client.send(frame("slow", { id: "s2" }))
      // both slow requests are in flight: a request and a plain message after them are answered first
      yield* client.send(frame("echo", {}, "plain"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 echo\r\n\r\nplain")
      yield* eventually(() => started.size >= before + 1)
      // the bound is reached: the next request waits, and the messages behind it with it
      yield* client.send(frame("echo", { id: "e3" }, "third"))
      yield* client.send(frame("echo", {}, "behind"))
      yield* Deferred.succeed(slowGate, undefined)
      const rest = [yield* client.next(), yield* client.next(), yield* client.next(), yield* client.next()]
      // the two slow replies come before the waiting request and the message behind it
      assert.deepStrictEqual([...rest.slice(2)].sort(), [
        "LHTTP/1.0 echo\r\n\r\nbehind",
        "LHTTP/1.0 echo\r\nid:e3\r\n\r\nthird"
      ])
      assert.deepStrictEqual([...rest.slice(0, 2)].sort(), [
        "LHTTP/1.0 slow\r\nid:s1\r\n\r\ndone",
        "LHTTP/1.0 slow\r\nid:s2\r\n\r\ndone"
      ])
    }))

  it.live("the same command twice is refused when the Layer is built", () =>
    Effect.gen(function*() {
      const Again = Processor.make("echo")
      const exit = yield* startMemoryServer(
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
      const { connect } = yield* server()
      const client = yield* connect()
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

describe("LhttpServer: typed requests", () => {
  it.live("the reply is encoded and sent with the id; a declared error is its tag and its encoded fields", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({ processors: [Place] }, PlaceLive)
      const client = yield* connect()
      yield* client.send(frame("place", { id: "p1" }, "{\"x\":2,\"y\":3}"))
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 place\r\nid:p1\r\n\r\n{\"placed\":{\"x\":2,\"y\":3},\"at\":23}"
      )
      yield* client.send(frame("place", { id: "p2" }, "{\"x\":-1,\"y\":0}"))
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 error\r\nstatus:400\r\nreason:OffBoard\r\nid:p2\r\n\r\n{\"_tag\":\"OffBoard\",\"x\":-1,\"y\":0}"
      )
      // an error's own status field is its status
      yield* client.send(frame("place", { id: "p3" }, "{\"x\":1,\"y\":1}"))
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 error\r\nstatus:409\r\nreason:Occupied\r\nid:p3\r\n\r\n{\"_tag\":\"Occupied\",\"by\":\"bob\",\"status\":409}"
      )
      // undeclared: a Respondable error is its own frame, a defect 500 without its cause, a bad body 400
      yield* client.send(frame("place", { id: "p4" }, "{\"x\":9,\"y\":0}"))
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 error\r\nstatus:403\r\nreason:Forbidden\r\nid:p4\r\n\r\nnot there"
      )
      yield* client.send(frame("place", { id: "p5" }, "{\"x\":7,\"y\":0}"))
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 error\r\nstatus:500\r\nreason:InternalError\r\nid:p5\r\n\r\nthe server failed to process the message"
      )
      yield* client.send(frame("place", { id: "p6" }, "{\"x\":\"a\"}"))
      assert.match(yield* client.next(), /^LHTTP\/1\.0 error\r\nstatus:400\r\nreason:InvalidBody\r\nid:p6\r\n\r\n/)
    }))
})

describe("LhttpServer: subscribe, publish, unsubscribe (reference §4.1, §4.2)", () => {
  it.live("subscribers receive the whole message re-serialized, the publisher too when subscribed", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({})
      const a = yield* connect()
      const b = yield* connect()
      yield* a.send(frame("chat", { subscribe: "room1" }))
      yield* a.nothing()
      const sent = "LHTTP/1.0 chat\r\ncontent-type:text/plain\r\npublish:room1\r\n\r\nhello"
      yield* b.send(sent)
      assert.strictEqual(yield* a.next(), sent)
      yield* b.nothing()
      yield* a.send(frame("chat", { publish: "room1" }, "mine"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 chat\r\npublish:room1\r\n\r\nmine")
    }))

  it.live("a publish without the blank line, or with a header twice, is delivered as rendered, not as sent", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({})
      const a = yield* connect()
      const b = yield* connect()
      yield* a.send(frame("chat", { subscribe: "room1" }))
      yield* a.nothing()
      // the text of a frame goes out as it came only when it is the frame's rendering (rule 5, rule 6)
      yield* b.send("LHTTP/1.0 chat\r\npublish:room1")
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 chat\r\npublish:room1\r\n\r\n")
      yield* b.send("LHTTP/1.0 chat\r\npublish:room1\r\nk:1\r\nk:2\r\n\r\nbody")
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 chat\r\npublish:room1\r\nk:2\r\n\r\nbody")
      yield* b.send("LHTTP/1.0 chat\r\npublish:room1\r\nk:\r\nk:")
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 chat\r\npublish:room1\r\nk:\r\n\r\n")
    }))

  it.live("subscribing twice, or twice in one list, delivers once; one unsubscribe stops it (B8, issue #12)", () =>
    Effect.gen(function*() {
      const { connect, hub } = yield* startMemoryServer({})
      const a = yield* connect()
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
      const { connect } = yield* startMemoryServer({})
      const a = yield* connect()
      yield* a.send(frame("c", { unsubscribe: "never" }))
      yield* a.nothing()
      yield* a.send(frame("c", { subscribe: "y", publish: "y" }, "alive"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 c\r\nsubscribe:y\r\npublish:y\r\n\r\nalive")
    }))

  it.live("in one message: subscribe, then publish, then unsubscribe, whatever the header order", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({})
      const a = yield* connect()
      const text = "LHTTP/1.0 c\r\nunsubscribe:z\r\npublish:z\r\nsubscribe:z\r\n\r\nonce"
      yield* a.send(text)
      assert.strictEqual(yield* a.next(), text)
      yield* a.send(frame("c", { publish: "z" }, "after"))
      yield* a.nothing()
    }))

  it.live("publishing to two channels delivers once per (channel, subscriber)", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({})
      const a = yield* connect()
      yield* a.send(frame("c", { subscribe: "p q" }))
      yield* a.send(frame("c", { publish: "p q" }, "twice"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 c\r\npublish:p q\r\n\r\ntwice")
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 c\r\npublish:p q\r\n\r\ntwice")
      yield* a.nothing()
    }))

  it.live("disconnecting removes every subscription (B9)", () =>
    Effect.gen(function*() {
      const { connect, hub } = yield* startMemoryServer({})
      const a = yield* connect()
      yield* a.send(frame("c", { subscribe: "k1 k2 k3" }))
      yield* a.nothing()
      assert.strictEqual(hub.channelCount(), 3)
      yield* a.transport.close
      yield* eventually(() => hub.channelCount() === 0)
    }))

  it.live("a processor steers the built-ins: cancel a publish, redirect a subscribe, rename, change the body", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const a = yield* connect()
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
      const { connect, hub } = yield* startMemoryServer({}, undefined, { hub: { maxSubscriptions: 2 } })
      const a = yield* connect()
      yield* a.send(frame("c", { subscribe: "s1 s2" }))
      yield* a.send(frame("c", { subscribe: "s3", id: "q" }))
      assert.strictEqual(
        yield* a.next(),
        "LHTTP/1.0 error\r\nstatus:429\r\nreason:TooManySubscriptions\r\nid:q\r\n\r\na connection holds at most 2 subscriptions"
      )
      assert.strictEqual(hub.channelCount(), 2)
    }))

  it.live("maxSubscriptions is 128 by default: 128 are held, the 129th is refused 429 TooManySubscriptions", () =>
    Effect.gen(function*() {
      const { connect, hub } = yield* startMemoryServer({})
      const a = yield* connect()
      const channels = (from: number, to: number) =>
        Array.from({ length: to - from }, (_, i) => `d${from + i}`).join(" ")
      yield* a.send(frame("c", { subscribe: channels(0, 100) }))
      yield* a.send(frame("c", { subscribe: channels(100, 128), id: "fits" }))
      yield* a.nothing()
      assert.strictEqual(hub.channelCount(), 128)
      yield* a.send(frame("c", { subscribe: "d128", id: "over" }))
      assert.strictEqual(
        yield* a.next(),
        "LHTTP/1.0 error\r\nstatus:429\r\nreason:TooManySubscriptions\r\nid:over\r\n\r\na connection holds at most 128 subscriptions"
      )
      assert.strictEqual(hub.channelCount(), 128)
      // one already held is no new subscription
      yield* a.send(frame("c", { subscribe: "d0 d127", id: "again" }))
      yield* a.nothing()
    }))

  it.live("a channel list with one invalid id applies none of it: subscribe, publish, unsubscribe", () =>
    Effect.gen(function*() {
      const { connect, hub } = yield* startMemoryServer({})
      const a = yield* connect()
      const b = yield* connect()
      const refused = (id: string) =>
        `LHTTP/1.0 error\r\nstatus:400\r\nreason:InvalidChannel\r\nid:${id}\r\n\r\nchannel "bad..x" has an empty dot-separated token`
      yield* a.send(frame("c", { subscribe: "mark" }))
      yield* a.send(frame("c", { subscribe: "good bad..x", id: "s" }))
      assert.strictEqual(yield* a.next(), refused("s"))
      assert.strictEqual(hub.channelCount(), 1)
      // "good" was not subscribed: a marker published after a publish to "good" is the next frame
      yield* b.send(frame("c", { publish: "good" }, "leak"))
      yield* b.send(frame("c", { publish: "mark" }, "marker"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 c\r\npublish:mark\r\n\r\nmarker")
      // nor published to
      yield* a.send(frame("c", { subscribe: "good" }))
      yield* a.nothing()
      yield* b.send(frame("c", { publish: "good bad..x", id: "p" }, "leak"))
      assert.strictEqual(yield* b.next(), refused("p"))
      yield* b.send(frame("c", { publish: "good" }, "marker"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 c\r\npublish:good\r\n\r\nmarker")
      // nor unsubscribed from
      yield* a.send(frame("c", { unsubscribe: "good bad..x", id: "u" }))
      assert.strictEqual(yield* a.next(), refused("u"))
      yield* b.send(frame("c", { publish: "good" }, "still subscribed"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 c\r\npublish:good\r\n\r\nstill subscribed")
      assert.strictEqual(hub.channelCount(), 2)
    }))

  it.live("the server-side publish API reaches subscribers", () =>
    Effect.gen(function*() {
      const { connect, hub } = yield* startMemoryServer({})
      const a = yield* connect()
      yield* a.send(frame("c", { subscribe: "news" }))
      yield* a.nothing()
      yield* hub.publish("news", "flash", { "content-type": "text/plain" }, "from the app")
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 flash\r\ncontent-type:text/plain\r\n\r\nfrom the app")
      const invalid = yield* hub.publish(">", "x").pipe(Effect.flip)
      assert.strictEqual(invalid._tag, "ProtocolError")
    }))
})

describe("LhttpServer: publish acknowledgements", () => {
  it.live("a publish with an id is answered once the bus took it, after its subscribers have it; without an id, nothing", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({})
      const a = yield* connect()
      const b = yield* connect()
      yield* a.send(frame("c", { subscribe: "room" }))
      yield* b.send(frame("c", { subscribe: "room" }))
      yield* a.nothing()
      yield* b.nothing()
      const sent = "LHTTP/1.0 chat\r\npublish:room\r\nid:m1\r\n\r\nhello"
      yield* b.send(sent)
      // the publisher, subscribed too, has the message before its acknowledgement
      assert.strictEqual(yield* b.next(), sent)
      assert.strictEqual(yield* b.next(), "LHTTP/1.0 chat\r\nid:m1\r\n\r\n")
      assert.strictEqual(yield* a.next(), sent)
      yield* b.send(frame("chat", { publish: "room" }, "no id"))
      assert.strictEqual(yield* b.next(), "LHTTP/1.0 chat\r\npublish:room\r\n\r\nno id")
      yield* b.nothing()
      // subscribe and publish in one message: acknowledged after both
      const c = yield* connect()
      yield* c.send(frame("chat", { subscribe: "other", publish: "other", id: "m2" }, "x"))
      assert.strictEqual(yield* c.next(), "LHTTP/1.0 chat\r\nsubscribe:other\r\npublish:other\r\nid:m2\r\n\r\nx")
      assert.strictEqual(yield* c.next(), "LHTTP/1.0 chat\r\nid:m2\r\n\r\n")
      yield* c.nothing()
    }))

  it.live("a refused publish with an id gets its error frame and no acknowledgement", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({})
      const a = yield* connect()
      yield* a.send(frame("chat", { publish: "bad*channel", id: "m3" }, "x"))
      assert.match(yield* a.next(), /^LHTTP\/1\.0 error\r\nstatus:400\r\nreason:InvalidChannel\r\nid:m3\r\n/)
      yield* a.nothing()
    }))

  it.live("through a processor: acknowledged unless the processor answered the id itself", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({ processors: [Steer] }, SteerLive)
      const a = yield* connect()
      yield* a.send(frame("steer", { publish: "room", id: "s1" }, "x"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 steer\r\nid:s1\r\n\r\n")
      yield* a.send(frame("steer", { publish: "room", id: "s2", mode: "reply" }, "x"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 steer\r\na:1\r\nb:2\r\nid:s2\r\n\r\none")
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 steer\r\nid:s2\r\n\r\ntwo")
      yield* a.nothing()
    }))
})

describe("LhttpServer: filters", () => {
  it.live("a filter drops a message or alters it before the processor and the publish", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer(
        { processors: [Echo.Echo], filters: [Gate] },
        Layer.merge(Echo.layer, GateLive)
      )
      const a = yield* connect()
      yield* a.send(frame("c", { subscribe: "f" }))
      yield* a.send(frame("c", { publish: "f", drop: "yes" }, "dropped"))
      yield* a.send(frame("echo", { drop: "yes" }, "dropped too"))
      yield* a.nothing()
      yield* a.send(frame("c", { publish: "f" }, "kept"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 c\r\npublish:f\r\nstamped:yes\r\n\r\nkept")
    }))

  it.live("hooks run in order: filters as listed, before and after (after the built-in pub/sub), open and close before the processors'", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const channels = (exchange: { connection: { channels: Iterable<string> } }) =>
        `[${Array.from(exchange.connection.channels).join(",")}]`
      const recording = (name: string): Filter.Hooks => ({
        onOpen: () => Effect.sync(() => log.push(`${name} open`)),
        before: (exchange) =>
          Effect.sync(() => {
            if (exchange.command !== "test-probe") log.push(`${name} before ${exchange.text} ${channels(exchange)}`)
          }),
        after: (exchange) => Effect.sync(() => log.push(`${name} after ${exchange.text} ${channels(exchange)}`)),
        onClose: () => Effect.sync(() => log.push(`${name} close`))
      })
      const Zeta = Filter.make("zeta")
      const Alpha = Filter.make("alpha")
      const Rec = Processor.make("rec")
      const RecLive = Rec.toLayer({
        onOpen: () => Effect.sync(() => log.push("processor open")),
        onMessage: (exchange) => Effect.sync(() => log.push(`processor ${exchange.text} ${channels(exchange)}`)),
        onClose: () => Effect.sync(() => log.push("processor close"))
      })
      const { connect } = yield* startMemoryServer(
        { processors: [Rec], filters: [Zeta, Alpha] },
        Layer.mergeAll(RecLive, Zeta.toLayer(recording("zeta")), Alpha.toLayer(recording("alpha")))
      )
      const client = yield* connect()
      yield* client.send(frame("rec", { subscribe: "r" }, "m1"))
      yield* client.nothing()
      yield* client.transport.close
      yield* eventually(() => log.includes("processor close"))
      assert.deepStrictEqual(log, [
        "zeta open",
        "alpha open",
        "processor open",
        "zeta before m1 []",
        "alpha before m1 []",
        "processor m1 []",
        "zeta after m1 [r]",
        "alpha after m1 [r]",
        "zeta close",
        "alpha close",
        "processor close"
      ])
    }))

  it.live("the multipart filter cuts parts before the processor; bad offsets get 400 InvalidMultipart", () =>
    Effect.gen(function*() {
      const Upload = Processor.make("upload")
      const UploadLive = Upload.toLayer({
        onMessage: (exchange) =>
          exchange.send(exchange.parts.map((part) => `${part.headers.get("k")}=${part.body}`).join(","))
      })
      const { connect } = yield* startMemoryServer({ processors: [Upload] }, UploadLive)
      const a = yield* connect()
      yield* a.send("LHTTP/1.0 upload\r\nmultipart:0 13\r\n\r\nk:v1\r\n\r\nbody1k:v2\r\n\r\nbody2")
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 upload\r\n\r\nv1=body1,v2=body2")
      yield* a.send("LHTTP/1.0 upload\r\nmultipart:13 0\r\n\r\nk:v1\r\n\r\nbody1k:v2\r\n\r\nbody2")
      assert.match(yield* a.next(), /^LHTTP\/1\.0 error\r\nstatus:400\r\nreason:InvalidMultipart\r\n/)
      yield* a.send("LHTTP/1.0 upload\r\n\r\nno parts")
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 upload\r\n\r\n")
    }))
})

describe("LhttpServer: malformed input (reference §9) gets an error frame and the connection stays", () => {
  // the status of each reason is the one of protocol.md §5
  const cases: ReadonlyArray<readonly [string, string, string, number]> = [
    ["too short", "LHTTP", "NotLhttp", 400],
    ["not LHTTP", "hello there", "NotLhttp", 400],
    ["another version", "LHTTP/1.1 chat\r\n\r\n", "UnsupportedVersion", 505],
    ["no space after the version", "LHTTP/1.0Xchat\r\n\r\n", "MalformedStartLine", 400],
    ["a start line too short", "LHTTP/1.0\r\nx:y\r\n\r\n", "MalformedStartLine", 400],
    ["LF line endings", "LHTTP/1.0 chat\nx:y\n\nb", "MalformedStartLine", 400],
    ["a header without a colon", "LHTTP/1.0 chat\r\nnocolon\r\n\r\n", "MalformedHeader", 400],
    ["an invalid channel", "LHTTP/1.0 chat\r\nsubscribe:a..b\r\n\r\n", "InvalidChannel", 400],
    ["an empty channel", "LHTTP/1.0 chat\r\nsubscribe:a  b\r\n\r\n", "InvalidChannel", 400],
    ["a wildcard", "LHTTP/1.0 chat\r\nsubscribe:>\r\n\r\n", "InvalidChannel", 400],
    ["a tab in a channel", "LHTTP/1.0 chat\r\npublish:a\tb\r\n\r\n", "InvalidChannel", 400],
    ["a system subject", "LHTTP/1.0 chat\r\nsubscribe:$SYS.x\r\n\r\n", "InvalidChannel", 400],
    [
      "decreasing multipart offsets",
      "LHTTP/1.0 chat\r\nmultipart:5 1\r\npublish:m\r\n\r\nxxxxxx",
      "InvalidMultipart",
      400
    ],
    ["an upstream value without a space", "LHTTP/1.0 chat\r\nupstream:POST\r\n\r\n", "InvalidUpstream", 400],
    [
      "too many headers",
      `LHTTP/1.0 chat\r\n${Array.from({ length: 70 }, (_, i) => `h${i}:v\r\n`).join("")}\r\n`,
      "TooManyHeaders",
      431
    ]
  ]
  for (const [name, input, reason, status] of cases) {
    it.live(`${name}: ${status} ${reason}`, () =>
      Effect.gen(function*() {
        const { connect } = yield* startMemoryServer({})
        const a = yield* connect()
        yield* a.send(input)
        const error = yield* a.next()
        const head = `LHTTP/1.0 error\r\nstatus:${status}\r\nreason:${reason}\r\n\r\n`
        assert.strictEqual(error.slice(0, head.length), head)
        yield* a.send(frame("c", { subscribe: "ok", publish: "ok" }, "alive"))
        assert.strictEqual(yield* a.next(), "LHTTP/1.0 c\r\nsubscribe:ok\r\npublish:ok\r\n\r\nalive")
      }))
  }

  it.live("a binary frame is read as UTF-8; invalid UTF-8 gets InvalidUtf8", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({})
      const a = yield* connect()
      yield* a.send(new TextEncoder().encode(frame("c", { subscribe: "b", publish: "b" }, "binary é")))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 c\r\nsubscribe:b\r\npublish:b\r\n\r\nbinary é")
      yield* a.send(new Uint8Array([0x4c, 0x48, 0xff, 0xfe]))
      assert.match(yield* a.next(), /^LHTTP\/1\.0 error\r\nstatus:400\r\nreason:InvalidUtf8\r\n\r\n/)
    }))

  it.live("a malformed upstream header is answered 400 InvalidUpstream with the id, and nothing of the message is applied", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({})
      const a = yield* connect()
      const watcher = yield* connect()
      yield* watcher.send(frame("c", { subscribe: "u" }))
      yield* watcher.nothing()
      for (
        const [i, value] of ["POST", "POST  http://127.0.0.1:1/x", "P0ST http://127.0.0.1:1/x", "POST http://a b"]
          .entries()
      ) {
        yield* a.send(frame("c", { publish: "u", upstream: value, id: `u${i}` }, "not published"))
        assert.strictEqual(
          yield* a.next(),
          `LHTTP/1.0 error\r\nstatus:400\r\nreason:InvalidUpstream\r\nid:u${i}\r\n\r\nan upstream header is "<METHOD> <URL>"`,
          value
        )
      }
      yield* a.send(frame("c", { publish: "u" }, "marker"))
      assert.strictEqual(yield* watcher.next(), "LHTTP/1.0 c\r\npublish:u\r\n\r\nmarker")
    }))

  it.live("upstream before it is configured: 501 after the publish went out", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({})
      const a = yield* connect()
      yield* a.send(frame("c", { subscribe: "u" }))
      yield* a.send(frame("c", { publish: "u", upstream: "POST http://127.0.0.1:1/x", id: "up" }, "rec"))
      assert.strictEqual(
        yield* a.next(),
        "LHTTP/1.0 c\r\npublish:u\r\nupstream:POST http://127.0.0.1:1/x\r\nid:up\r\n\r\nrec"
      )
      assert.strictEqual(
        yield* a.next(),
        "LHTTP/1.0 error\r\nstatus:501\r\nreason:UpstreamNotConfigured\r\nid:up\r\n\r\nupstream is not configured on this server"
      )
    }))
})

describe("LhttpServer: limits (the core's, whatever the transport)", () => {
  it.live("a message over maxMessageBytes closes with 1009, counted in UTF-8 bytes; other clients keep receiving", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({ maxMessageBytes: 1024 })
      const big = yield* connect()
      const wide = yield* connect()
      const other = yield* connect()
      yield* other.send(frame("c", { subscribe: "o" }))
      yield* big.send(frame("c", { publish: "o" }, "x".repeat(2000)))
      assert.strictEqual((yield* big.closed).code, 1009)
      // 400 characters, 1,200 bytes
      yield* wide.send(frame("c", { publish: "o" }, "€".repeat(400)))
      assert.strictEqual((yield* wide.closed).code, 1009)
      yield* other.send(frame("c", { publish: "o" }, "fine"))
      assert.strictEqual(yield* other.next(), "LHTTP/1.0 c\r\npublish:o\r\n\r\nfine")
      yield* other.nothing()
    }))

  const flood = (publisher: { send: (text: string) => Effect.Effect<void> }, count: number) =>
    Effect.gen(function*() {
      const body = "y".repeat(32 * 1024)
      for (let i = 0; i < count; i++) yield* publisher.send(frame("c", { publish: "flood" }, body))
    })

  it.live("a slow consumer is closed with 4001 once it holds maxOutboundBytes; others receive everything", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({ maxOutboundBytes: 256 * 1024 })
      const slow = yield* connect()
      const fast = yield* connect()
      const publisher = yield* connect()
      yield* slow.send(frame("c", { subscribe: "flood" }))
      yield* fast.send(frame("c", { subscribe: "flood" }))
      yield* slow.nothing()
      yield* fast.nothing()
      yield* slow.transport.setReading(false)
      // in rounds of 4 frames (128 KiB), each written out before the next
      for (let round = 0; round < 5; round++) {
        yield* flood(publisher, 4)
        yield* publisher.nothing()
      }
      assert.deepStrictEqual(yield* slow.closed, { code: 4001, reason: "slow consumer" })
      for (let i = 0; i < 20; i++) assert.match(yield* fast.next(), /^LHTTP\/1\.0 c\r\npublish:flood\r\n/)
      yield* fast.nothing()
    }))

  it.live("under the drop policy a slow consumer stays connected, misses what did not fit, then gets what follows", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({ slowConsumer: "drop", maxOutboundBytes: 256 * 1024 })
      const slow = yield* connect()
      const publisher = yield* connect()
      yield* slow.send(frame("c", { subscribe: "flood" }))
      yield* slow.nothing()
      yield* slow.transport.setReading(false)
      yield* flood(publisher, 20)
      yield* publisher.nothing()
      const kept = (yield* pending(slow)).length
      // 256 KiB holds 7 frames of 32 KiB and their headers
      assert.strictEqual(kept, 7)
      yield* slow.transport.setReading(true)
      yield* slow.send(frame("c", { subscribe: "after", publish: "after" }, "still here"))
      assert.strictEqual(yield* slow.next(), "LHTTP/1.0 c\r\nsubscribe:after\r\npublish:after\r\n\r\nstill here")
    }))
})

describe("LhttpServer: fairness between connections", () => {
  it.live("a burst from one connection is processed in turns of 256 messages: another connection's message goes in after the first 256", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({})
      const subscriber = yield* connect()
      const burst = yield* connect()
      const other = yield* connect()
      yield* subscriber.send(frame("c", { subscribe: "a" }))
      yield* subscriber.nothing()
      yield* burst.transport.sendAll(Array.from({ length: 2000 }, (_, i) => frame("c", { publish: "a" }, `burst ${i}`)))
      yield* other.send(frame("c", { publish: "a" }, "other"))
      const order: Array<string> = []
      for (let i = 0; i < 2001; i++) order.push((yield* subscriber.next()).split("\r\n\r\n")[1]!)
      // the burst's own order is kept, and the other connection waited for one turn of it: 256 messages
      // (security.md, server.md), then its message went in before the burst's next turn
      assert.deepStrictEqual(
        order.filter((body) => body !== "other"),
        Array.from({ length: 2000 }, (_, i) => `burst ${i}`)
      )
      assert.strictEqual(order.indexOf("other"), 256)
    }))
})

describe("LhttpServer: graceful drain (the core)", () => {
  it.live("new connections are refused with 1001, in-flight work finishes, then every connection gets 1012 and its wait", () =>
    Effect.gen(function*() {
      slowGate = Deferred.makeUnsafe()
      const { connect, server: lhttp } = yield* server()
      const busy = yield* connect()
      const idle = yield* connect()
      yield* busy.next()
      yield* idle.next()
      const before = started.size
      yield* busy.send(frame("slow"))
      yield* eventually(() => started.size > before)
      const draining = yield* Effect.forkChild(lhttp.drain)
      yield* eventually(() => lhttp.isDraining())
      assert.isFalse(yield* lhttp.isReady)
      const late = yield* connect()
      assert.strictEqual((yield* late.closed).code, 1001)
      // a drain's close: 1012, and the wait before the reconnect, within the drain's window
      const idleClosed = yield* idle.closed
      assert.strictEqual(idleClosed.code, 1012)
      assert.match(idleClosed.reason, /^reconnect:\d+$/)
      // the busy connection is closed only once its message is done
      yield* Deferred.succeed(slowGate, undefined)
      assert.strictEqual(yield* busy.next(), "LHTTP/1.0 slow\r\n\r\ndone")
      const busyClosed = yield* busy.closed
      assert.strictEqual(busyClosed.code, 1012)
      assert.match(busyClosed.reason, /^reconnect:\d+$/)
      yield* Fiber.join(draining)
      assert.strictEqual(lhttp.connectionCount(), 0)
    }))

  it.live("requests in flight finish and reply; a request sent meanwhile gets 503 ShuttingDown; then 1012", () =>
    Effect.gen(function*() {
      slowGate = Deferred.makeUnsafe()
      const { connect, server: lhttp } = yield* server()
      const client = yield* connect()
      yield* client.next()
      const before = started.size
      yield* client.send(frame("slow", { id: "in-flight" }))
      yield* eventually(() => started.size > before)
      const draining = yield* Effect.forkChild(lhttp.drain)
      yield* eventually(() => lhttp.isDraining())
      yield* client.send(frame("echo", { id: "late" }, "too late"))
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 error\r\nstatus:503\r\nreason:ShuttingDown\r\nid:late\r\n\r\n" +
          "the server is shutting down: send the request again after reconnecting"
      )
      yield* Deferred.succeed(slowGate, undefined)
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 slow\r\nid:in-flight\r\n\r\ndone")
      assert.strictEqual((yield* client.closed).code, 1012)
      yield* Fiber.join(draining)
    }))

  it.live("a drain spreads its closes over its window in a random order, each with a wait within the window", () =>
    Effect.gen(function*() {
      // 100 connections at 50 a second would take 2 s: drainWindow caps it at 600 ms
      const { connect, server: lhttp } = yield* startMemoryServer({ drainRate: 50, drainWindow: "600 millis" })
      const clients = yield* Effect.forEach(Array.from({ length: 100 }, (_, i) => i), () => connect())
      const closes: Array<
        { readonly at: number; readonly index: number; readonly reason: string; readonly code: number }
      > = []
      yield* Effect.forEach(
        clients,
        (client, index) =>
          Effect.forkChild(
            Effect.map(client.closed, ({ code, reason }) => closes.push({ at: Date.now(), index, reason, code }))
          )
      )
      const started = Date.now()
      yield* lhttp.drain
      const took = Date.now() - started
      assert.strictEqual(closes.length, 100)
      assert.isTrue(closes.every(({ code }) => code === 1012))
      const waits = closes.map(({ reason }) => Number(/^reconnect:(\d+)$/.exec(reason)![1]))
      // within the window, and spread over it
      assert.isTrue(waits.every((wait) => wait >= 0 && wait <= 600), JSON.stringify(waits))
      assert.isAbove(Math.max(...waits) - Math.min(...waits), 300)
      const times = closes.map(({ at }) => at - started)
      assert.isAbove(Math.max(...times) - Math.min(...times), 400)
      assert.isBelow(took, 2_000)
      // in no set order: not the order the connections came in
      const order = closes.map(({ index }) => index)
      assert.notDeepEqual(order, [...order].sort((a, b) => a - b))
    }))

  it.live("a few connections drain at once (drainRate 1,000 a second: 10 take 10 ms)", () =>
    Effect.gen(function*() {
      const { connect, server: lhttp } = yield* startMemoryServer({})
      assert.deepStrictEqual([lhttp.settings.drainRate, Duration.toMillis(lhttp.settings.drainWindow)], [1_000, 10_000])
      const clients = yield* Effect.forEach(Array.from({ length: 10 }, (_, i) => i), () => connect())
      const started = Date.now()
      yield* lhttp.drain
      assert.isBelow(Date.now() - started, 500)
      for (const client of clients) {
        const { code, reason } = yield* client.closed
        assert.strictEqual(code, 1012)
        assert.isAtMost(Number(/^reconnect:(\d+)$/.exec(reason)![1]), 10)
      }
    }))

  it.effect("a drain waits for a busy connection until shutdownTimeout, 30 s by default (TestClock)", () =>
    Effect.gen(function*() {
      let entered = Deferred.makeUnsafe<void>()
      const Hang = Processor.make("hang")
      const HangLive = Hang.toLayer({
        onMessage: () => Effect.suspend(() => Deferred.succeed(entered, undefined)).pipe(Effect.andThen(Effect.never))
      })
      for (const [options, timeout] of [[{}, 30_000], [{ shutdownTimeout: "2 seconds" }, 2_000]] as const) {
        entered = Deferred.makeUnsafe<void>()
        yield* Effect.scoped(Effect.gen(function*() {
          const { connect, server: lhttp } = yield* startMemoryServer({ processors: [Hang], ...options }, HangLive)
          const stuck = yield* connect()
          yield* stuck.send(frame("hang"))
          yield* Deferred.await(entered)
          const draining = yield* Effect.forkChild(lhttp.drain)
          yield* TestClock.adjust(timeout - 1)
          assert.isUndefined(draining.pollUnsafe(), "the drain stopped waiting before shutdownTimeout")
          yield* TestClock.adjust(1)
          // the drain is over now (a guard on the live clock turns a drain that goes on waiting into a failure)
          yield* TestClock.withLive(
            Fiber.join(draining).pipe(Effect.timeoutOrElse({
              duration: "2 seconds",
              orElse: () => Effect.die(new Error("the drain went on waiting past shutdownTimeout"))
            }))
          )
        }))
      }
    }))
})

describe("LhttpServer: scopes and services of handlers", () => {
  it.live("a message's acquireRelease is released when the message is done; onOpen's when the connection ends", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const Res = Processor.make("res")
      const ResLive = Res.toLayer({
        onOpen: () =>
          Effect.acquireRelease(
            Effect.sync(() => log.push("open acquired")),
            () => Effect.sync(() => log.push("open released"))
          ).pipe(Effect.asVoid),
        onMessage: (exchange) =>
          Effect.acquireRelease(
            Effect.sync(() => log.push(`acquired ${exchange.text}`)),
            () => Effect.sync(() => log.push(`released ${exchange.text}`))
          ).pipe(
            Effect.andThen(exchange.send(exchange.text))
          )
      })
      const { connect } = yield* startMemoryServer({ processors: [Res] }, ResLive)
      const client = yield* connect()
      yield* client.send(frame("res", {}, "one"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 res\r\n\r\none")
      yield* client.nothing()
      assert.deepStrictEqual(log, ["open acquired", "acquired one", "released one"])
      yield* client.send(frame("res", {}, "two"))
      yield* client.next()
      yield* client.nothing()
      assert.deepStrictEqual(log.slice(3), ["acquired two", "released two"])
      yield* client.transport.close
      yield* eventually(() => log.length === 6)
      assert.strictEqual(log[5], "open released")
    }))

  it.live("a handler sees its Layer's services, over those of the fiber that runs it", () =>
    Effect.gen(function*() {
      class Greeting extends Context.Service<Greeting, { readonly word: string }>()("test/Greeting") {}
      const Greet = Processor.make("greet")
      const GreetLive = Greet.toLayer(Effect.gen(function*() {
        const greeting = yield* Greeting
        return { onMessage: (exchange) => exchange.send(`${greeting.word} ${exchange.text}`) }
      })).pipe(Layer.provide(Layer.succeed(Greeting, { word: "hello" })))
      const { connect } = yield* startMemoryServer({ processors: [Greet] }, GreetLive)
      const client = yield* connect()
      yield* client.send(frame("greet", {}, "you"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 greet\r\n\r\nhello you")
    }))
})

describe("LhttpServer: the pipeline reads the decoded Message", () => {
  it.live("a built-in header set by a processor is classified again: an invalid channel is refused before the publish", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const a = yield* connect()
      yield* a.next()
      yield* a.send(frame("steer", { mode: "redirect", to: "bad..channel", id: "s1" }))
      assert.match(yield* a.next(), /^LHTTP\/1\.0 error\r\nstatus:400\r\nreason:InvalidChannel\r\nid:s1\r\n/)
      yield* a.send(frame("steer", { mode: "redirect", to: "good" }))
      yield* a.send(frame("c", { publish: "good" }, "redirected"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 c\r\npublish:good\r\n\r\nredirected")
    }))

  it.live("an error frame from a client is no command of the server's: 404 unless a processor takes `error`", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const a = yield* connect()
      yield* a.next()
      yield* a.send("LHTTP/1.0 error\r\nstatus:500\r\nreason:Oops\r\nid:e\r\n\r\nclient side")
      assert.match(yield* a.next(), /^LHTTP\/1\.0 error\r\nstatus:404\r\nreason:UnknownCommand\r\nid:e\r\n/)
    }))
})

describe("LhttpServer: authenticate, before a connection is accepted", () => {
  const User = Connection.key<string>("user")
  const Whoami = Processor.make("whoami")
  const WhoamiLive = Whoami.toLayer({
    onMessage: (exchange) => exchange.send(exchange.connection.get(User) ?? "nobody")
  })
  const Stamp = Filter.make("stamp")
  const StampLive = Stamp.toLayer({
    before: (exchange) => Effect.sync(() => exchange.setHeader("seen-by", exchange.connection.get(User) ?? "nobody"))
  })
  const authenticate = (
    peer: { readonly requestHeaders: Readonly<Record<string, string | undefined>> },
    data: LhttpServer.Admission
  ) => {
    const token = peer.requestHeaders["authorization"]
    if (token !== "Bearer alice-token") {
      return Effect.fail(new Rejection.Rejection({ status: 401, reason: "Unauthorized", message: "who are you?" }))
    }
    data.set(User, "alice")
    return Effect.void
  }

  it.live("a refused peer gets no connection; an admitted one's principal is seen by processors and filters", () =>
    Effect.gen(function*() {
      const { connect, server: lhttp } = yield* startMemoryServer(
        { processors: [Whoami], filters: [Stamp], authenticate },
        Layer.merge(WhoamiLive, StampLive)
      )
      const refused = yield* connect("/", { requestHeaders: { authorization: "Bearer wrong" } }).pipe(Effect.flip)
      assert.deepStrictEqual([refused.status, refused.message], [401, "who are you?"])
      assert.strictEqual(lhttp.connectionCount(), 0)
      const alice = yield* connect("/", { requestHeaders: { authorization: "Bearer alice-token" } })
      yield* alice.send(frame("whoami"))
      assert.strictEqual(yield* alice.next(), "LHTTP/1.0 whoami\r\n\r\nalice")
      yield* alice.send(frame("c", { subscribe: "s", publish: "s" }, "stamped"))
      assert.strictEqual(yield* alice.next(), "LHTTP/1.0 c\r\nsubscribe:s\r\npublish:s\r\nseen-by:alice\r\n\r\nstamped")
    }))
})

describe("LhttpServer: authorize, per channel and action", () => {
  const Role = Connection.key<string>("role")
  const authorize = (request: LhttpServer.Authorization) => {
    const role = request.connection?.get(Role) ?? "backend"
    if (request.action === "subscribe" && request.channels.includes("secret")) {
      return Effect.fail(Rejection.forbidden("nobody hears secret"))
    }
    if (request.action === "publish" && request.channels.includes("announce") && role !== "admin") {
      return Effect.fail(Rejection.forbidden(`${role} may not publish to announce`))
    }
    if (request.action === "unsubscribe" && request.channels.includes("sticky")) {
      return Effect.fail(Rejection.forbidden("sticky stays"))
    }
    return Effect.void
  }
  const authenticate = (peer: Transport.Peer, data: LhttpServer.Admission) =>
    Effect.sync(() => data.set(Role, peer.url === "/admin" ? "admin" : "user"))

  it.live("an authorize hook that throws is a defect: 500 InternalError with the id, nothing applied, the connection goes on", () =>
    Effect.gen(function*() {
      const throwing = (request: LhttpServer.Authorization): Effect.Effect<void, Rejection.Rejection> => {
        if (request.channels.includes("boom")) throw new Error("the hook broke")
        return Effect.void
      }
      const { connect, hub } = yield* startMemoryServer({ authorize: throwing })
      const client = yield* connect()
      yield* client.send(frame("c", { subscribe: "boom", id: "b" }))
      assert.match(yield* client.next(), /^LHTTP\/1\.0 error\r\nstatus:500\r\nreason:InternalError\r\nid:b\r\n\r\n/)
      assert.strictEqual(hub.channelCount(), 0)
      yield* client.send(frame("c", { subscribe: "fine", id: "f" }))
      yield* client.nothing()
      assert.strictEqual(hub.channelCount(), 1)
    }))

  it.live("a refused action is a 403 error frame and nothing of the message is applied; allowed ones go through", () =>
    Effect.gen(function*() {
      const { connect, hub } = yield* startMemoryServer({ authorize, authenticate })
      const user = yield* connect("/")
      const admin = yield* connect("/admin")
      yield* user.send(frame("c", { subscribe: "announce sticky" }))
      yield* user.nothing()
      // subscribe and publish in one message: the publish is refused, so the subscribe is not applied either
      yield* user.send(frame("c", { subscribe: "other", publish: "announce", id: "p" }, "not from a user"))
      assert.strictEqual(
        yield* user.next(),
        "LHTTP/1.0 error\r\nstatus:403\r\nreason:Forbidden\r\nid:p\r\n\r\nuser may not publish to announce"
      )
      assert.strictEqual(hub.channelCount(), 2)
      yield* user.send(frame("c", { subscribe: "secret", id: "s" }))
      assert.strictEqual(
        yield* user.next(),
        "LHTTP/1.0 error\r\nstatus:403\r\nreason:Forbidden\r\nid:s\r\n\r\nnobody hears secret"
      )
      yield* user.send(frame("c", { unsubscribe: "sticky", id: "u" }))
      assert.strictEqual(
        yield* user.next(),
        "LHTTP/1.0 error\r\nstatus:403\r\nreason:Forbidden\r\nid:u\r\n\r\nsticky stays"
      )
      // the admin publishes to announce; the user hears it (and nothing before it)
      yield* admin.send(frame("c", { publish: "announce" }, "from the admin"))
      assert.strictEqual(yield* user.next(), "LHTTP/1.0 c\r\npublish:announce\r\n\r\nfrom the admin")
      assert.strictEqual(hub.channelCount(), 2)
    }))
})

describe("LhttpServer: rate limits and the connection cap", () => {
  it.live("messageRate: past the burst a message is answered 429 RateLimited with its id and not processed; too many close with 1008", () =>
    Effect.gen(function*() {
      // one token a minute: the burst is all there is during the test
      const { connect } = yield* startMemoryServer({ messageRate: { perSecond: 1 / 60, burst: 3, closeAfter: 2 } })
      const client = yield* connect()
      const watcher = yield* connect()
      yield* watcher.send(frame("c", { subscribe: "r" }))
      yield* watcher.nothing()
      for (let i = 1; i <= 3; i++) yield* client.send(frame("c", { publish: "r" }, `m${i}`))
      yield* client.send(frame("c", { publish: "r", id: "x4" }, "m4"))
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 error\r\nstatus:429\r\nreason:RateLimited\r\nid:x4\r\n\r\nmore than 0.017 messages a second: this one was not processed"
      )
      for (let i = 1; i <= 3; i++) assert.strictEqual(yield* watcher.next(), frame("c", { publish: "r" }, `m${i}`))
      yield* client.send(frame("c", { publish: "r" }, "m5"))
      assert.match(yield* client.next(), /^LHTTP\/1\.0 error\r\nstatus:429\r\nreason:RateLimited\r\n\r\n/)
      // the third refusal within the window is answered too, then closes
      yield* client.send(frame("c", { publish: "r", id: "x6" }, "m6"))
      assert.match(yield* client.next(), /^LHTTP\/1\.0 error\r\nstatus:429\r\nreason:RateLimited\r\nid:x6\r\n\r\n/)
      assert.deepStrictEqual(yield* client.closed, { code: 1008, reason: "rate limit exceeded" })
      // none of the refused ones was published: the watcher's next frame is a marker
      const other = yield* connect()
      yield* other.send(frame("c", { publish: "r" }, "marker"))
      assert.strictEqual(yield* watcher.next(), frame("c", { publish: "r" }, "marker"))
    }))

  it.live("messageRate: a burst of 50 at 10 a second: the 20 admitted are all processed and answered before the 1008, the others refused with their frame", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer(
        { processors: [Echo.Echo], messageRate: { perSecond: 10, burst: 20, closeAfter: 20 } },
        Echo.layer
      )
      const client = yield* connect()
      for (let i = 0; i < 50; i++) yield* client.send(frame("echo", { id: `e${i}` }, `m${i}`))
      const answers: Array<string> = []
      const closed = yield* client.closed
      for (;;) {
        const next = yield* client.next("200 millis").pipe(Effect.option)
        if (Option.isNone(next)) break
        answers.push(next.value)
      }
      assert.deepStrictEqual(closed, { code: 1008, reason: "rate limit exceeded" })
      // every message got exactly one answer: an echo (admitted) or a 429 (refused), by its id
      const echoed = answers.filter((text) => text.startsWith("LHTTP/1.0 echo"))
      const refused = answers.filter((text) => text.includes("reason:RateLimited"))
      assert.isAtLeast(echoed.length, 20)
      assert.strictEqual(echoed.length + refused.length, 50, answers.join("\n---\n"))
      const ids = answers.map((text) => /\r\nid:(e\d+)\r\n/.exec(text)?.[1])
      assert.strictEqual(new Set(ids).size, 50)
    }))

  it.live("messageRate: a sustained flood at five times the rate that is admitted now and then is closed all the same", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({ messageRate: { perSecond: 20, burst: 2, closeAfter: 5 } })
      const client = yield* connect()
      const closed = yield* Deferred.make<void>()
      yield* Effect.forkChild(Effect.andThen(client.closed, Deferred.succeed(closed, undefined)))
      // 100 a second (the loop is paced, as a load generator is), never many refusals in a row
      let sent = 0
      while (!(yield* Deferred.isDone(closed)) && sent < 500) {
        yield* client.send(frame("c", { publish: "flood" }, `${sent++}`))
        yield* Effect.sleep("10 millis")
      }
      assert.deepStrictEqual(yield* client.closed, { code: 1008, reason: "rate limit exceeded" })
      assert.isBelow(sent, 500)
    }))

  it.live("maxConnections: past the cap a new connection is refused 503 TooManyConnections; after one leaves, one may come", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({ maxConnections: 2 })
      const one = yield* connect()
      yield* connect()
      const refused = yield* connect().pipe(Effect.flip)
      assert.deepStrictEqual([refused.status, refused.reason], [503, "TooManyConnections"])
      yield* one.transport.close
      yield* Effect.eventually(connect().pipe(Effect.asVoid))
    }))

  it.live("maxConnectionsPerAddress: one address past its share gets 503 TooManyFromAddress; others are admitted", () =>
    Effect.gen(function*() {
      // the default share: a tenth of maxConnections (at least 100)
      const { connect } = yield* startMemoryServer({ maxConnections: 1000 })
      const first = yield* connect("/", { remoteAddress: "10.0.0.1" })
      for (let i = 1; i < 100; i++) yield* connect("/", { remoteAddress: "10.0.0.1" })
      const refused = yield* connect("/", { remoteAddress: "10.0.0.1" }).pipe(Effect.flip)
      assert.deepStrictEqual([refused.status, refused.reason], [503, "TooManyFromAddress"])
      // a second client, from another address, is still admitted
      yield* connect("/", { remoteAddress: "10.0.0.2" })
      // one of the first address's connections leaves: one may come again
      yield* first.transport.close
      yield* Effect.eventually(connect("/", { remoteAddress: "10.0.0.1" }).pipe(Effect.asVoid))
      const again = yield* connect("/", { remoteAddress: "10.0.0.1" }).pipe(Effect.flip)
      assert.deepStrictEqual([again.status, again.reason], [503, "TooManyFromAddress"])
    }))

  it.live("connectionRate: past the burst from one address, 503 ConnectingTooFast; other addresses are not counted", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({ connectionRate: { perSecond: 1 / 60, burst: 2 } })
      yield* connect("/", { remoteAddress: "10.0.0.1" })
      yield* connect("/", { remoteAddress: "10.0.0.1" })
      const refused = yield* connect("/", { remoteAddress: "10.0.0.1" }).pipe(Effect.flip)
      assert.deepStrictEqual([refused.status, refused.reason], [503, "ConnectingTooFast"])
      yield* connect("/", { remoteAddress: "10.0.0.2" })
    }))
})

describe("LhttpServer: authentication by the first message", () => {
  const User = Connection.key<string>("user")
  const Me = Processor.make("me")
  const opened: Array<string> = []
  const MeLive = Me.toLayer({
    onOpen: (connection) => Effect.sync(() => opened.push(connection.get(User) ?? "nobody")),
    onMessage: (exchange) => exchange.send(exchange.connection.get(User) ?? "nobody")
  })
  const authenticateMessage = (message: Message.Notify | Message.Request, data: LhttpServer.Admission) => {
    if (message.command !== "auth" || message.headers.get("token") !== "t-alice") {
      return Effect.fail(new Rejection.Rejection({ status: 401, reason: "Unauthorized", message: "who are you?" }))
    }
    data.set(User, "alice")
    return Effect.void
  }
  const server = (timeout?: Duration.Input) =>
    startMemoryServer({ processors: [Me], authenticateMessage, authenticationTimeout: timeout }, MeLive)

  it.live("the first message authenticates: answered with its id, the principal set, onOpen after it; nothing runs before", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const client = yield* connect()
      yield* client.transport.sendAll([frame("auth", { token: "t-alice", id: "a" }), frame("me")])
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 auth\r\nid:a\r\n\r\n")
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 me\r\n\r\nalice")
      assert.strictEqual(opened.at(-1), "alice")
    }))

  it.live("a refused first message is answered with its error frame, then 1008; what came after is not processed", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const client = yield* connect()
      yield* client.transport.sendAll([frame("auth", { token: "wrong", id: "a" }), frame("me", { id: "m" })])
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 error\r\nstatus:401\r\nreason:Unauthorized\r\nid:a\r\n\r\nwho are you?"
      )
      assert.deepStrictEqual(yield* client.closed, { code: 1008, reason: "authentication failed" })
      assert.isTrue(Option.isNone(yield* client.transport.poll))
    }))

  it.live("a connection that does not authenticate within authenticationTimeout is closed with 1008", () =>
    Effect.gen(function*() {
      const { connect } = yield* server("200 millis")
      const client = yield* connect()
      assert.deepStrictEqual(yield* client.closed, { code: 1008, reason: "authentication timeout" })
    }))
})

describe("LhttpServer: tracing", () => {
  it.live("with tracing, a message's path is spans: lhttp.message, and inside it lhttp.processor and lhttp.publish", () =>
    Effect.gen(function*() {
      const spans: Array<{ readonly name: string; readonly parent: string | undefined }> = []
      const names = new Map<string, string>()
      const recording = Tracer.make({
        span(options) {
          const span = Tracer.nativeTracer.span(options)
          names.set(span.spanId, options.name)
          const parent = Option.getOrUndefined(options.parent)
          spans.push({ name: options.name, parent: parent === undefined ? undefined : names.get(parent.spanId) })
          return span
        }
      })
      const { connect } = yield* startMemoryServer({ processors: [Echo.Echo], tracing: true }, Echo.layer).pipe(
        Effect.provideService(Tracer.Tracer, recording)
      )
      const client = yield* connect()
      yield* client.send(frame("echo", { publish: "t", subscribe: "t" }, "traced"))
      assert.strictEqual(yield* client.next(), frame("echo", {}, "traced"))
      assert.strictEqual(yield* client.next(), frame("echo", { publish: "t", subscribe: "t" }, "traced"))
      const ours = spans.filter((span) => span.name.startsWith("lhttp."))
      assert.deepStrictEqual(ours.map((span) => [span.name, span.parent]), [
        ["lhttp.message", undefined],
        ["lhttp.processor", "lhttp.message"],
        ["lhttp.publish", "lhttp.message"]
      ])
    }))

  it.live("without tracing (the default), no span is made for a message", () =>
    Effect.gen(function*() {
      const names: Array<string> = []
      const recording = Tracer.make({
        span(options) {
          names.push(options.name)
          return Tracer.nativeTracer.span(options)
        }
      })
      const { connect } = yield* startMemoryServer({ processors: [Echo.Echo] }, Echo.layer).pipe(
        Effect.provideService(Tracer.Tracer, recording)
      )
      const client = yield* connect()
      yield* client.send(frame("echo", {}, "untraced"))
      assert.strictEqual(yield* client.next(), frame("echo", {}, "untraced"))
      assert.deepStrictEqual(names.filter((name) => name.startsWith("lhttp.")), [])
    }))
})
