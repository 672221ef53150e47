import { NodeWS } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Layer, Option, Schema, Scope, Stream } from "effect"
import * as Socket from "effect/socket/Socket"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import * as Net from "node:net"
import * as Echo from "../src/demo/Echo.ts"
import * as Login from "../src/demo/Login.ts"
import * as Filter from "../src/Filter.ts"
import * as Frame from "../src/Frame.ts"
import * as History from "../src/History.ts"
import { eventOf } from "../src/internal/server/httpConnection.ts"
import { type Event, itemOf, Parser } from "../src/internal/wire/eventStream.ts"
import { Outbound } from "../src/internal/wire/outbound.ts"
import * as LhttpClient from "../src/LhttpClient.ts"
import type * as Message from "../src/Message.ts"
import type * as NodeLhttpServer from "../src/NodeLhttpServer.ts"
import * as Processor from "../src/Processor.ts"
import { Rejection } from "../src/Rejection.ts"
import * as Sessions from "../src/Sessions.ts"
import * as SessionStore from "../src/SessionStore.ts"
import { connect as rawConnect, frame, startServer } from "./utils/lhttp.ts"
import { Occupied, OffBoard, Place, PlaceLive, Point } from "./utils/place.ts"
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

/** `hold` keeps its connection's processing until the test opens the gate (`holdGate`). */
const Hold = Processor.make("hold")
let holdGate: Promise<void> = Promise.resolve()
const HoldLive = Hold.toLayer({ onMessage: () => Effect.promise(() => holdGate) })

/** `tally` writes its body down, in the order the server processes them. */
const Tally = Processor.make("tally")
const tallied: Array<string> = []
const TallyLive = Tally.toLayer({ onMessage: (exchange) => Effect.sync(() => void tallied.push(exchange.text)) })

/** `gated` answers `{ n }` once the test opens the gate of its `n` (a Deferred in `gates`). */
const Gated = Processor.make("gated", {
  body: Schema.fromJsonString(Schema.Struct({ n: Schema.Int })),
  reply: Schema.fromJsonString(Schema.Struct({ n: Schema.Int }))
})
const gates = new Map<number, Deferred.Deferred<void>>()
const GatedLive = Gated.toLayer({
  onMessage: ({ body: { n } }) =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      gates.set(n, gate)
      yield* Deferred.await(gate)
      return { n }
    })
})

/** `whoami` writes down the name of its connection's session (or "nobody"), and answers it to a request. */
const Whoami = Processor.make("whoami")
const whoamis: Array<string> = []
/**
 * `rename` sets the name of its connection's session (every connection of it
 * gets the session frame); `logout` closes it.
 */
const Rename = Processor.make("rename")
const Logout = Processor.make("logout")
const SessionsLive = Layer.mergeAll(
  Login.layer,
  Whoami.toLayer(Effect.gen(function*() {
    const sessions = yield* Sessions.Sessions
    return {
      onMessage: (exchange) =>
        Effect.gen(function*() {
          const session = yield* sessions.current(exchange.connection)
          const name = Option.match(session, {
            onNone: () => "nobody",
            onSome: (s) => (s.data as { readonly name: string }).name
          })
          whoamis.push(name)
          if (exchange.id !== undefined) yield* exchange.send(name)
        })
    }
  })),
  Rename.toLayer(Effect.gen(function*() {
    const sessions = yield* Sessions.Sessions
    return { onMessage: (exchange) => sessions.update(sessions.keyOf(exchange.connection)!, { name: exchange.text }) }
  })),
  Logout.toLayer(Effect.gen(function*() {
    const sessions = yield* Sessions.Sessions
    return { onMessage: (exchange) => sessions.close(sessions.keyOf(exchange.connection)!) }
  }))
).pipe(Layer.provideMerge(Sessions.layer()))

const processors = [
  Echo.Echo,
  Kick,
  Deny,
  Silent,
  Hold,
  Tally,
  Place,
  Gated,
  Login.Login,
  Sessions.SessionProcessor,
  Whoami,
  Rename,
  Logout
] as const
const implementations = (store: Layer.Layer<SessionStore.SessionStore>) =>
  Layer.mergeAll(Echo.layer, KickLive, DenyLive, SilentLive, HoldLive, TallyLive, PlaceLive, GatedLive, SessionsLive)
    .pipe(
      Layer.provide(store)
    )
type ServerOptions = Omit<NodeLhttpServer.Options<(typeof processors)[number]>, "processors">
/** A server of the test; its sessions in a store of its own, or in `store` (one that outlives it). */
const server = (
  options: ServerOptions = {},
  store: Layer.Layer<SessionStore.SessionStore> = SessionStore.layerMemory
) => startServer({ processors, ...options }, implementations(store))

/**
 * `heard` writes down the head of every message that subscribes (its command line and headers,
 * as it arrived), in the order the server takes them: what a client asked for.
 */
const Heard = Filter.make("heard")
const heard: Array<string> = []
const HeardLive = Heard.toLayer({
  before: (exchange) =>
    Effect.sync(() => {
      if (exchange.headers.has("subscribe")) {
        heard.push(Frame.render(Frame.make(exchange.command, new Map(exchange.headers))))
      }
    })
})

/** A server of the test with a history for the channels starting with `h-`, and `heard`. */
const historyServer = () =>
  Effect.gen(function*() {
    heard.length = 0
    return yield* startServer(
      { processors, filters: [Heard] },
      Layer.mergeAll(implementations(SessionStore.layerMemory), HeardLive),
      { history: History.layerMemory({ policies: [{ prefix: "h-", size: 100, ttl: Duration.minutes(1) }] }) }
    )
  })

/** The value of a header of a message (undefined for an error frame). */
const headerOf = (message: Message.Message | undefined, name: string) =>
  message === undefined || message._tag === "Failure" ? undefined : message.headers.get(name)

/** A session store that outlives the servers of a test (built in the test's scope). */
const sharedStore = Effect.map(Layer.build(SessionStore.layerMemory), (context) => Layer.succeedContext(context))

const client = (url: string, options?: LhttpClient.Options) =>
  LhttpClient.connect(url, { reconnect: { initialDelay: "50 millis", maxDelay: "200 millis" }, ...options }).pipe(
    Effect.provide(NodeWS.layerWebSocketConstructor)
  )

/** Waits until the client is in `state` (a condition on its state stream: no clock involved). */
const reached = (c: LhttpClient.Service, state: LhttpClient.State) =>
  c.states.pipe(Stream.filter((now) => now === state), Stream.take(1), Stream.runDrain)

const opened = (c: LhttpClient.Service) => reached(c, "open")

/**
 * Collects the next `n` messages of a stream in the background. The fiber starts at once, so
 * the stream's subscription exists when this returns: nothing sent afterwards can be missed.
 */
const take = <A>(stream: Stream.Stream<A>, n: number) =>
  stream.pipe(Stream.take(n), Stream.runCollect, Effect.forkChild({ startImmediately: true }))

/** Joins a `take`, dying after 5 s (a message that never comes fails the test, not the run). */
const within = <A, E>(fiber: Fiber.Fiber<A, E>) =>
  Fiber.join(fiber).pipe(Effect.timeoutOrElse({
    duration: "5 seconds",
    orElse: () => Effect.die(new Error("the messages did not arrive in time"))
  }))

/** Every state the client goes through from now on (the first is the state now). */
const recordStates = (c: LhttpClient.Service) =>
  Effect.gen(function*() {
    const seen: Array<LhttpClient.State> = []
    yield* c.states.pipe(
      Stream.runForEach((state) => Effect.sync(() => void seen.push(state))),
      Effect.forkChild({ startImmediately: true })
    )
    return seen
  })

/**
 * A barrier: the server has processed everything this client sent before, as a connection's
 * messages are processed in order and this echo's reply comes after them.
 */
const processed = (c: LhttpClient.Service) =>
  Effect.gen(function*() {
    const reply = yield* c.request("echo", "barrier", { timeout: "5 seconds" })
    assert.deepInclude(reply, { _tag: "Request", command: "echo", body: "barrier" })
  })

/** An error's own fields and its message (an Error's message is not an own enumerable field). */
const fieldsOf = (error: { readonly message: string }): object => ({ ...error, message: error.message })

const bodyOf = (message: Message.Message) => message._tag === "Failure" ? `failure: ${message.message}` : message.body

const bodies = (messages: Iterable<Message.Message>) => Array.from(messages, bodyOf)

/** A TCP relay in front of a server: its connections can be cut, and new ones held until released. */
interface Relay {
  readonly port: number
  /** Connections accepted so far. */
  readonly accepted: () => number
  /** Polls (`GET /poll?connection=`) sent to the server and not answered yet. */
  readonly pollsWaiting: () => number
  /** Destroys every connection it carries. */
  readonly cut: () => void
  /** Holds new connections (not forwarded) until `release`. */
  readonly hold: () => void
  /** Forwards the held connections and the new ones. */
  readonly release: () => void
  /**
   * From now on, drops what the server sends on the connections that carry a stream (`GET /sse`)
   * or a poll (`GET /poll?connection=`) now, and keeps them open when the server closes its side:
   * only the client ends them.
   */
  readonly freezeStreams: () => void
  /** Holds the next `POST /send` (and what follows on its connection) until `releaseSend`; others pass. */
  readonly holdNextSend: () => void
  /** Whether a `POST /send` is held. */
  readonly sendHeld: () => boolean
  /** Forwards the held `POST /send`. */
  readonly releaseSend: () => void
  /** Answers `504` on every connection it carries, as a proxy that gave up, and ends them. */
  readonly gatewayTimeout: () => void
}

const relay = (target: number) =>
  Effect.acquireRelease(
    Effect.callback<Relay & { readonly server: Net.Server; readonly sockets: Set<Net.Socket> }>((resume) => {
      const sockets = new Set<Net.Socket>()
      const pairs = new Map<Net.Socket, Net.Socket>()
      const polls = new Set<Net.Socket>()
      // the connections whose last request is a stream or a poll
      const streams = new Set<Net.Socket>()
      const waiting: Array<Net.Socket> = []
      let holding = false
      const frozen = new Set<Net.Socket>()
      let holdSend = false
      let heldSend: { readonly socket: Net.Socket; readonly chunks: Array<Buffer> } | undefined
      let accepted = 0
      const track = (socket: Net.Socket) => {
        sockets.add(socket)
        socket.on("close", () => sockets.delete(socket))
        socket.on("error", () => socket.destroy())
      }
      const forward = (downstream: Net.Socket) => {
        if (downstream.destroyed) return
        const upstream = Net.connect(target, "127.0.0.1")
        track(upstream)
        pairs.set(downstream, upstream)
        downstream.on("data", (chunk: Buffer) => {
          const head = chunk.toString("latin1")
          if (/^[A-Z]+ \//.test(head)) {
            // a stream, or a poll until its answer starts
            if (head.startsWith("GET /poll?connection=")) polls.add(downstream)
            if (polls.has(downstream) || head.startsWith("GET /sse")) streams.add(downstream)
            else streams.delete(downstream)
            if (holdSend && head.startsWith("POST /send")) {
              holdSend = false
              heldSend = { socket: downstream, chunks: [] }
            }
          }
          if (heldSend?.socket === downstream) heldSend.chunks.push(chunk)
          else upstream.write(chunk)
        })
        upstream.on("data", (chunk: Buffer) => {
          if (polls.delete(downstream)) streams.delete(downstream)
          if (!frozen.has(downstream)) downstream.write(chunk)
        })
        downstream.on("close", () => {
          pairs.delete(downstream)
          polls.delete(downstream)
          streams.delete(downstream)
          frozen.delete(downstream)
          upstream.destroy()
        })
        upstream.on("close", () => {
          if (!frozen.has(downstream)) downstream.destroy()
        })
      }
      const server = Net.createServer((downstream) => {
        accepted++
        track(downstream)
        if (holding) waiting.push(downstream)
        else forward(downstream)
      })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({
          server,
          sockets,
          port: (server.address() as Net.AddressInfo).port,
          accepted: () => accepted,
          pollsWaiting: () => polls.size,
          cut: () => {
            for (const socket of sockets) socket.destroy()
          },
          hold: () => {
            holding = true
          },
          release: () => {
            holding = false
            for (const socket of waiting.splice(0)) forward(socket)
          },
          holdNextSend: () => {
            holdSend = true
          },
          sendHeld: () => heldSend !== undefined,
          releaseSend: () => {
            const held = heldSend
            heldSend = undefined
            if (held !== undefined) { for (const chunk of held.chunks) pairs.get(held.socket)?.write(chunk) }
          },
          freezeStreams: () => {
            for (const downstream of streams) frozen.add(downstream)
          },
          gatewayTimeout: () => {
            for (const [downstream, upstream] of pairs) {
              pairs.delete(downstream)
              upstream.removeAllListeners("close")
              upstream.destroy()
              downstream.end("HTTP/1.1 504 Gateway Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            }
          }
        })))
    }),
    (relay) =>
      Effect.callback<void>((resume) => {
        for (const socket of relay.sockets) socket.destroy()
        relay.server.close(() => resume(Effect.void))
      })
  )

const transports: ReadonlyArray<LhttpClient.TransportKind> = ["websocket", "sse", "poll"]

for (const transport of transports) {
  /** A client over the transport of this suite. */
  const over = (url: string, options?: LhttpClient.Options) => client(url, { transport, ...options })

  describe(`LhttpClient over ${transport}`, () => {
    it.live("subscribes, publishes and unsubscribes through a real server", () =>
      Effect.gen(function*() {
        const { url } = yield* server()
        const alice = yield* client(url) // a WebSocket client publishes
        const bob = yield* over(url)
        yield* opened(alice)
        yield* opened(bob)
        const received = yield* take(bob.channel("room"), 1)
        yield* bob.subscribe(["room"])
        yield* processed(bob)
        yield* alice.publish(["room"], "chat", { "content-type": "text/plain" }, "hi bob")
        const [message] = Array.from(yield* within(received))
        assert.deepInclude<object>(message!, { _tag: "Notify", command: "chat", body: "hi bob", publish: ["room"] })
        assert.strictEqual(message!._tag === "Notify" ? message!.headers.get("content-type") : undefined, "text/plain")
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
        const [first] = Array.from(yield* within(next))
        assert.deepInclude<object>(first!, { _tag: "Notify", body: "marker", publish: ["marker"] })
      }))

    it.live("a frame whose command is close (or connected, reset, gap) is a message: the connection goes on (over SSE it is not the control event)", () =>
      Effect.gen(function*() {
        const { url } = yield* server()
        const ws = yield* client(url)
        const c = yield* over(url)
        yield* opened(ws)
        yield* opened(c)
        const states = yield* recordStates(c)
        yield* c.subscribe(["t1"])
        yield* processed(c)
        const commands = ["close", "connected", "reset", "gap"]
        const received = yield* take(c.channel("t1"), commands.length + 1)
        for (const command of commands) yield* ws.publish(["t1"], command, {}, `{"code":1000,"reason":"${command}"}`)
        yield* ws.publish(["t1"], "chat", {}, "marker")
        const messages = Array.from(yield* within(received))
        assert.deepStrictEqual(
          messages.map((message) => [message._tag === "Failure" ? "failure" : message.command, bodyOf(message)]),
          [...commands.map((command) => [command, `{"code":1000,"reason":"${command}"}`]), ["chat", "marker"]]
        )
        // the same connection, never closed nor reopened
        yield* processed(c)
        assert.deepStrictEqual(states, ["open"])
      }))

    it.live(`a client over ${transport} and a WebSocket client on one channel: each gets every message of both exactly once, in order`, () =>
      Effect.gen(function*() {
        const { url } = yield* server()
        const c = yield* over(url)
        const ws = yield* client(url)
        yield* opened(c)
        yield* opened(ws)
        yield* c.subscribe(["mix"])
        yield* ws.subscribe(["mix"])
        yield* processed(c)
        yield* processed(ws)
        const fromC = Array.from({ length: 25 }, (_, i) => `${transport} ${i}\nline two`)
        const fromWs = Array.from({ length: 25 }, (_, i) => `websocket ${i}`)
        // one more than expected: the last is the end marker, so a duplicate or a stray would show
        const atC = yield* take(c.channel("mix"), fromC.length + fromWs.length + 1)
        const atWs = yield* take(ws.channel("mix"), fromC.length + fromWs.length + 1)
        for (const body of fromC) yield* c.publish(["mix"], "chat", { from: transport }, body)
        yield* processed(c) // c's publishes are all through before the WebSocket client's
        for (const body of fromWs) yield* ws.publish(["mix"], "chat", { from: "websocket" }, body)
        yield* processed(ws)
        yield* ws.publish(["mix"], "chat", {}, "end")
        const expected = [...fromC, ...fromWs, "end"]
        assert.deepStrictEqual(bodies(yield* within(atC)), expected)
        assert.deepStrictEqual(bodies(yield* within(atWs)), expected)
      }))

    it.live("sends made at once, from many fibers, reach the server in the order they were made", () =>
      Effect.gen(function*() {
        const { port } = yield* server()
        const front = yield* relay(port)
        const c = yield* over(`ws://127.0.0.1:${front.port}`)
        yield* opened(c)
        tallied.length = 0
        const sent = Array.from({ length: 50 }, (_, i) => `${transport} ${i}`)
        // over HTTP the first POST is held in the relay: a send that did not wait for it would overtake it
        if (transport !== "websocket") front.holdNextSend()
        // each send starts (and is made) before the next: none waits for another's answer
        const fibers: Array<Fiber.Fiber<void, LhttpClient.ClientError>> = []
        for (const body of sent) {
          fibers.push(yield* c.command("tally", {}, body).pipe(Effect.forkChild({ startImmediately: true })))
        }
        if (transport !== "websocket") {
          yield* until(Effect.sync(front.sendHeld))
          front.releaseSend()
        }
        yield* Fiber.joinAll(fibers)
        yield* processed(c)
        assert.deepStrictEqual(tallied, sent)
      }))

    it.live("request/reply by id, multiplexed; timeouts and error frames are typed errors", () =>
      Effect.gen(function*() {
        const { url } = yield* server()
        const c = yield* over(url)
        yield* opened(c)
        const replies = yield* Effect.all(
          ["one", "two", "three"].map((body) => c.request("echo", body)),
          { concurrency: "unbounded" }
        )
        assert.deepStrictEqual(replies.map(bodyOf), ["one", "two", "three"])
        const headed = yield* c.request("echo", "é\r\n\r\nbody\nend", { headers: { a: "1" } })
        assert.deepInclude<object>(headed, {
          _tag: "Request",
          command: "echo",
          // SSE cannot tell CRLF from LF in a body (docs/transports.md); WebSocket and long-poll are exact
          body: transport === "sse" ? "é\n\nbody\nend" : "é\r\n\r\nbody\nend"
        })
        const timeout = yield* c.request("silent", "", { timeout: "200 millis" }).pipe(Effect.flip)
        assert.deepInclude(timeout, { reason: "Timeout", message: "no reply to silent within 200ms" })
        const denied = yield* c.request("deny").pipe(Effect.flip)
        assert.deepInclude(denied, {
          reason: "Rejected",
          status: 403,
          serverReason: "Forbidden",
          message: "not for you"
        })
        const unknown = yield* c.request("nosuch").pipe(Effect.flip)
        assert.deepInclude(unknown, { reason: "Rejected", status: 404, serverReason: "UnknownCommand" })
        const invalid = yield* c.subscribe(["a..b"]).pipe(Effect.flip)
        assert.strictEqual(invalid.reason, "InvalidFrame")
      }))

    it.live("call: a typed reply; each declared error as its typed value; other error frames Rejected", () =>
      Effect.gen(function*() {
        const { url } = yield* server()
        const c = yield* over(url)
        yield* opened(c)
        const placed = yield* c.call(Place, { x: 2, y: 3 })
        assert.deepStrictEqual(placed, { placed: { x: 2, y: 3 }, at: 23 })

        const offBoard = yield* c.call(Place, { x: -1, y: 0 }).pipe(Effect.flip)
        assert.instanceOf(offBoard, OffBoard)
        assert.deepStrictEqual({ ...offBoard }, { _tag: "OffBoard", x: -1, y: 0 })
        const occupied = yield* c.call(Place, { x: 1, y: 1 }).pipe(Effect.flip)
        assert.instanceOf(occupied, Occupied)
        assert.deepStrictEqual({ ...occupied }, { _tag: "Occupied", by: "bob", status: 409 })
        // the error channel is typed: catchTag takes a declared error by its tag
        const caught = yield* c.call(Place, { x: 3, y: -4 }).pipe(
          Effect.map((reply) => `placed at ${reply.at}`),
          Effect.catchTag("OffBoard", (error) => Effect.succeed(`off the board at ${error.x},${error.y}`))
        )
        assert.strictEqual(caught, "off the board at 3,-4")

        // not declared: a Respondable error's frame, a defect's 500, an unknown command
        const forbidden = yield* c.call(Place, { x: 9, y: 0 }).pipe(Effect.flip)
        assert.instanceOf(forbidden, LhttpClient.ClientError)
        assert.deepStrictEqual(fieldsOf(forbidden), {
          _tag: "ClientError",
          reason: "Rejected",
          message: "not there",
          status: 403,
          serverReason: "Forbidden"
        })
        const failed = yield* c.call(Place, { x: 7, y: 0 }).pipe(Effect.flip)
        assert.deepInclude(failed, {
          _tag: "ClientError",
          reason: "Rejected",
          status: 500,
          serverReason: "InternalError"
        })
        const unknown = yield* c.call(Processor.make("nosuch"), "").pipe(Effect.flip)
        assert.deepInclude(unknown, {
          _tag: "ClientError",
          reason: "Rejected",
          status: 404,
          serverReason: "UnknownCommand"
        })

        // without Schemas: the text goes as it is, the answer is awaited (void)
        assert.isUndefined(yield* c.call(Echo.Echo, "plain text"))
        const timeout = yield* c.call(Silent, "", { timeout: "200 millis" }).pipe(Effect.flip)
        assert.deepInclude(timeout, { reason: "Timeout", message: "no reply to silent within 200ms" })
        const denied = yield* c.call(Deny, "").pipe(Effect.flip)
        assert.deepInclude(denied, {
          reason: "Rejected",
          status: 403,
          serverReason: "Forbidden",
          message: "not for you"
        })
      }))

    it.live("call: a reply or a declared error that does not decode fails InvalidReply; a body that does not encode InvalidBody, and nothing is sent", () =>
      Effect.gen(function*() {
        const { url } = yield* server()
        const c = yield* over(url)
        yield* opened(c)
        // the client's idea of `place` differs from the server's
        class OffBoardText extends Schema.TaggedError<OffBoardText>()("OffBoard", { x: Schema.String }) {}
        const Drifted = Processor.make("place", {
          body: Schema.fromJsonString(Point),
          reply: Schema.fromJsonString(Schema.Struct({ placed: Point, at: Schema.String })),
          error: OffBoardText
        })
        const reply = yield* c.call(Drifted, { x: 2, y: 3 }).pipe(Effect.flip)
        assert.deepStrictEqual(fieldsOf(reply), {
          _tag: "ClientError",
          reason: "InvalidReply",
          message: `the reply to place does not decode: Expected string\n  at ["at"]`
        })
        const error = yield* c.call(Drifted, { x: -1, y: 0 }).pipe(Effect.flip)
        assert.deepStrictEqual(fieldsOf(error), {
          _tag: "ClientError",
          reason: "InvalidReply",
          message: `the error OffBoard answering place does not decode: Expected string\n  at ["x"]`
        })
        // a declared tag the client does not know is not its typed error
        const occupied = yield* c.call(Drifted, { x: 1, y: 1 }).pipe(Effect.flip)
        assert.deepInclude(occupied, { reason: "Rejected", status: 409, serverReason: "Occupied" })

        const Positive = Processor.make("place", {
          body: Schema.fromJsonString(
            Schema.Struct({ x: Schema.Number.check(Schema.isGreaterThan(0)), y: Schema.Number })
          ),
          reply: Schema.fromJsonString(Schema.Struct({ placed: Point, at: Schema.Number }))
        })
        const next = yield* take(c.messages, 1)
        const body = yield* c.call(Positive, { x: -5, y: 0 }).pipe(Effect.flip)
        assert.deepStrictEqual(fieldsOf(body), {
          _tag: "ClientError",
          reason: "InvalidBody",
          message: `the body of place does not encode: Expected a value greater than 0\n  at ["x"]`
        })
        // nothing went out: the marker's answer is the first frame back
        const marker = yield* c.request("echo", "marker")
        assert.deepStrictEqual(Array.from(yield* within(next)), [marker])
      }))

    it.live("100 calls in flight on one connection complete in the order the server answers them; plain messages keep their order meanwhile", () =>
      Effect.gen(function*() {
        const { url } = yield* server({ maxConcurrentRequests: 128 })
        const c = yield* over(url)
        yield* opened(c)
        yield* c.subscribe(["plain"])
        yield* processed(c)
        gates.clear()
        tallied.length = 0
        const count = 100
        const completed: Array<number> = []
        const calls = yield* Effect.forEach(
          Array.from({ length: count }, (_, n) => n),
          (n) =>
            c.call(Gated, { n }).pipe(
              Effect.tap((reply) => Effect.sync(() => void completed.push(reply.n))),
              Effect.forkChild({ startImmediately: true })
            )
        )
        // every call is waiting on the server, each in its own fiber
        yield* until(Effect.sync(() => gates.size === count))

        // plain messages (no id) meanwhile: processed one after another, in order, and delivered in order
        const plain = Array.from({ length: 50 }, (_, i) => `plain ${i}`)
        const heard = yield* take(c.channel("plain"), plain.length)
        for (const body of plain) yield* c.publish(["plain"], "tally", {}, body)
        assert.deepStrictEqual(bodies(yield* within(heard)), plain)
        assert.deepStrictEqual(tallied, plain)
        assert.deepStrictEqual(completed, [])

        // the server answers in another order than the calls were made: each call gets its own reply
        const order = Array.from({ length: count }, (_, i) => (i * 37 + 11) % count)
        for (const n of order) {
          yield* Deferred.succeed(gates.get(n)!, undefined)
          assert.deepStrictEqual(yield* Fiber.join(calls[n]!), { n })
        }
        assert.deepStrictEqual(completed, order)
      }))

    it.live("sessions: a login is kept; after the server closes the connection the new one restores it before anything queued is sent", () =>
      Effect.gen(function*() {
        const { port } = yield* server()
        const front = yield* relay(port)
        const c = yield* over(`ws://127.0.0.1:${front.port}`, {
          sendBuffer: 4,
          reconnect: { initialDelay: "200 millis", maxDelay: "200 millis", jitter: 0 }
        })
        yield* opened(c)
        assert.isTrue(Option.isNone(yield* c.session))
        const events = yield* take(c.sessions, 2)
        const frames = yield* take(
          c.messages.pipe(Stream.filter((m) => m._tag === "Request" && m.command === "session")),
          2
        )

        yield* c.call(Login.Login, { name: "alice" })
        // the session is in place when the call returns
        const session = Option.getOrThrow(yield* c.session)
        assert.match(session.key, /^[A-Za-z0-9_-]{22}$/)
        assert.deepStrictEqual(session, { key: session.key, data: { name: "alice" } })
        assert.deepInclude(yield* c.request("whoami"), { body: "alice" })

        // the server closes the connection; the next one waits in the relay while a message is queued
        front.hold()
        yield* c.command("kick")
        yield* reached(c, "reconnecting")
        front.cut() // the HTTP transports' pooled connections too: every new one is held
        const accepted = front.accepted()
        yield* until(Effect.sync(() => front.accepted() > accepted)) // the next connection waits in the relay
        assert.strictEqual(yield* c.state, "reconnecting")
        assert.deepStrictEqual(yield* c.session, Option.some(session)) // kept while down
        whoamis.length = 0
        yield* c.command("whoami") // queued (sendBuffer)
        front.release()
        yield* opened(c)
        yield* processed(c)
        // the queued message ran on the restored session: the restore went first, and was answered first
        assert.deepStrictEqual(whoamis, ["alice"])
        assert.deepStrictEqual(yield* c.session, Option.some(session))
        assert.deepStrictEqual(Array.from(yield* within(events)), [
          { _tag: "Created", session },
          { _tag: "Restored", session }
        ])
        // both session frames (the login's answer, the restore's) are in `messages` too
        const [created, restored] = Array.from(yield* within(frames))
        for (const frame of [created, restored]) {
          assert.deepInclude(frame, { _tag: "Request", command: "session", body: `{"name":"alice"}` })
          assert.strictEqual(frame?._tag === "Request" ? frame.headers.get("session-key") : undefined, session.key)
        }
        assert.notStrictEqual(created?._tag === "Request" && created.id, restored?._tag === "Request" && restored.id)
      }))

    it.live("sessions: restored after a server restart on the same port, the store outliving the server", () =>
      Effect.gen(function*() {
        const store = yield* sharedStore
        const port = yield* Effect.promise(freePort)
        const first = yield* Scope.make()
        const { url } = yield* server({ port }, store).pipe(Scope.provide(first))
        const c = yield* over(url)
        yield* opened(c)
        yield* c.call(Login.Login, { name: "bob" })
        const session = Option.getOrThrow(yield* c.session)
        yield* Scope.close(first, Exit.void)
        yield* until(Effect.map(c.state, (state) => state !== "open"))
        const events = yield* take(c.sessions, 1)
        yield* server({ port }, store)
        yield* opened(c)
        assert.deepStrictEqual(Array.from(yield* within(events)), [{ _tag: "Restored", session }])
        // the new server has the connection in the session
        assert.deepInclude(yield* c.request("whoami"), { body: "bob" })
        assert.deepStrictEqual(yield* c.session, Option.some(session))
      }))

    it.live("sessions: after a restart with a store that forgot it, the session is cleared (Closed, NotFound) and not restored again", () =>
      Effect.gen(function*() {
        const port = yield* Effect.promise(freePort)
        const first = yield* Scope.make()
        const { url } = yield* server({ port }).pipe(Scope.provide(first))
        const c = yield* over(url)
        yield* opened(c)
        yield* c.call(Login.Login, { name: "carol" })
        const { key } = Option.getOrThrow(yield* c.session)
        yield* Scope.close(first, Exit.void)
        yield* until(Effect.map(c.state, (state) => state !== "open"))
        const events = yield* take(c.sessions, 1)
        yield* server({ port }) // a store of its own: empty
        yield* opened(c)
        assert.deepStrictEqual(Array.from(yield* within(events)), [{ _tag: "Closed", key, reason: "NotFound" }])
        assert.isTrue(Option.isNone(yield* c.session))
        assert.deepInclude(yield* c.request("whoami"), { body: "nobody" })
        // the next connection restores nothing: no session frame or error frame before it opens
        const seen: Array<Message.Message> = []
        yield* c.messages.pipe(
          Stream.runForEach((message) => Effect.sync(() => void seen.push(message))),
          Effect.forkChild({ startImmediately: true })
        )
        yield* c.command("kick")
        yield* reached(c, "reconnecting")
        yield* opened(c)
        yield* processed(c)
        assert.deepStrictEqual(seen.map((message) => message._tag === "Failure" ? message.reason : message.command), [
          "echo"
        ])
      }))

    it.live("sessions: a key given as the session option is restored on the first connection; updates and the close reach every connection of it", () =>
      Effect.gen(function*() {
        const { url } = yield* server()
        const alice = yield* over(url)
        yield* opened(alice)
        yield* alice.call(Login.Login, { name: "alice" })
        const session = Option.getOrThrow(yield* alice.session)

        // another client (a reloaded page, a restarted process) with the key
        const again = yield* over(url, { session: session.key })
        const events = yield* take(again.sessions, 3)
        const aliceEvents = yield* take(alice.sessions, 2)
        yield* opened(again)
        // restored before the state is open
        assert.deepStrictEqual(yield* again.session, Option.some(session))
        assert.deepInclude(yield* again.request("whoami"), { body: "alice" })

        // an update on the server reaches both; so does the close
        yield* alice.command("rename", {}, "alicia")
        const renamed = { key: session.key, data: { name: "alicia" } }
        const nameOf = (now: Option.Option<LhttpClient.Session>) =>
          Option.isSome(now) ? (now.value.data as { readonly name: string }).name : undefined
        yield* until(Effect.map(again.session, (now) => nameOf(now) === "alicia"))
        assert.deepStrictEqual(yield* again.session, Option.some(renamed))
        yield* alice.command("logout")
        assert.deepStrictEqual(Array.from(yield* within(events)), [
          { _tag: "Restored", session },
          { _tag: "Updated", session: renamed },
          { _tag: "Closed", key: session.key, reason: "Closed" }
        ])
        assert.deepStrictEqual(Array.from(yield* within(aliceEvents)), [
          { _tag: "Updated", session: renamed },
          { _tag: "Closed", key: session.key, reason: "Closed" }
        ])
        assert.isTrue(Option.isNone(yield* again.session))
        assert.isTrue(Option.isNone(yield* alice.session))
        assert.deepInclude(yield* again.request("whoami"), { body: "nobody" })
      }))

    it.live("sessions: an unknown key given as the session option is cleared (Closed, NotFound)", () =>
      Effect.gen(function*() {
        const { url } = yield* server()
        const c = yield* over(url, { session: "no-such-session" })
        const events = yield* take(c.sessions, 1)
        yield* opened(c)
        assert.deepStrictEqual(Array.from(yield* within(events)), [{
          _tag: "Closed",
          key: "no-such-session",
          reason: "NotFound"
        }])
        assert.isTrue(Option.isNone(yield* c.session))
        assert.deepInclude(yield* c.request("whoami"), { body: "nobody" })
        // a login after it is a session like any other
        const created = yield* take(c.sessions, 1)
        yield* c.call(Login.Login, { name: "dave" })
        const [event] = Array.from(yield* within(created))
        assert.deepInclude(event, { _tag: "Created" })
        assert.deepStrictEqual(Option.map(yield* c.session, (s) => s.data), Option.some({ name: "dave" }))
      }))

    it.live("a frame that would not read back fails InvalidFrame and nothing is sent", () =>
      Effect.gen(function*() {
        const { url } = yield* server()
        const c = yield* over(url)
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
        const [first] = Array.from(yield* within(next))
        assert.deepStrictEqual(first, marker)
        assert.strictEqual(bodyOf(first!), "marker")
      }))

    it.live("reconnects after the server closes the connection and subscribes again", () =>
      Effect.gen(function*() {
        const { server: running, url } = yield* server()
        const c = yield* over(url)
        const publisher = yield* rawConnect(url)
        const states = yield* take(c.states, 4)
        yield* opened(c)
        yield* c.subscribe(["news"])
        yield* c.command("kick")
        yield* reached(c, "reconnecting")
        yield* opened(c)
        assert.deepStrictEqual(Array.from(yield* within(states)), ["connecting", "open", "reconnecting", "open"])
        yield* processed(c) // the subscription sent again on the new connection is in place
        const received = yield* take(c.channel("news"), 1)
        yield* publisher.send(frame("flash", { publish: "news" }, "after the reconnect"))
        const [message] = Array.from(yield* within(received))
        assert.deepInclude(message, { command: "flash", body: "after the reconnect" })
        // the kicked connection is gone: the publisher and the new connection are left
        yield* until(Effect.sync(() => running.connectionCount() === 2))
      }))

    it.live("recovers a history channel after a reconnect: what was published meanwhile, in order, then the position, then live ones", () =>
      Effect.gen(function*() {
        const { url } = yield* startServer({ processors }, implementations(SessionStore.layerMemory), {
          history: History.layerMemory({ policies: [{ prefix: "h-", size: 100, ttl: Duration.minutes(1) }] })
        })
        const c = yield* over(url, { reconnect: { initialDelay: "400 millis", maxDelay: "400 millis", jitter: 0 } })
        yield* opened(c)
        const publisher = yield* rawConnect(url)
        // the channel's frames and its position frames (both name the channel), not the barriers' replies
        const ofChannel = c.messages.pipe(
          Stream.filter((m) => m._tag !== "Failure" && m.headers.get("channel") === "h-news")
        )
        const first = yield* take(ofChannel, 2)
        yield* c.subscribe(["h-news"])
        yield* processed(c)
        yield* publisher.send(frame("flash", { publish: "h-news" }, "before"))
        const [position, before] = Array.from(yield* within(first))
        assert.deepInclude(position, { command: "position" })
        assert.strictEqual(bodyOf(before!), "before")
        assert.deepStrictEqual(Option.map(c.position("h-news"), (p) => p.offset), Option.some(1))
        // away: the server closes the connection, and five messages go by before the client is back
        const back = yield* take(ofChannel, 7)
        yield* c.command("kick")
        yield* reached(c, "reconnecting")
        for (let i = 1; i <= 5; i++) yield* publisher.send(frame("flash", { publish: "h-news" }, `missed ${i}`))
        yield* opened(c)
        yield* processed(c)
        yield* publisher.send(frame("flash", { publish: "h-news" }, "live"))
        const messages = Array.from(yield* within(back))
        assert.deepStrictEqual(messages.map((m) => m._tag === "Failure" ? "" : m.command), [
          "flash",
          "flash",
          "flash",
          "flash",
          "flash",
          "position",
          "flash"
        ])
        assert.deepStrictEqual(bodies(messages.filter((m) => m._tag !== "Failure" && m.command === "flash")), [
          "missed 1",
          "missed 2",
          "missed 3",
          "missed 4",
          "missed 5",
          "live"
        ])
        const recovered = messages[5]!
        assert.strictEqual(recovered._tag === "Failure" ? undefined : recovered.headers.get("recovered"), "yes")
        assert.deepStrictEqual(Option.map(c.position("h-news"), (p) => p.offset), Option.some(7))
      }))

    it.live("asks for positions by itself: since:now on a first subscription and on a new connection's, since its position for a history channel whose position it knows", () =>
      Effect.gen(function*() {
        const { url } = yield* historyServer()
        const c = yield* over(url)
        yield* opened(c)
        const publisher = yield* rawConnect(url)
        // the position frame of the history channel, then the barrier's reply: the channel without
        // history is answered NoHistory, which is not given to the app (it did not ask)
        const answers = yield* take(c.messages, 2)
        yield* c.subscribe(["h-a", "plain"])
        yield* processed(c)
        const [position, barrier] = Array.from(yield* within(answers))
        assert.strictEqual(headerOf(position, "channel"), "h-a")
        assert.deepInclude(position, { _tag: "Notify", command: "position" })
        assert.strictEqual(headerOf(position, "recovered"), undefined)
        assert.strictEqual(headerOf(position, "offset"), "0")
        const epoch = headerOf(position, "epoch")!
        assert.isString(epoch)
        assert.strictEqual(bodyOf(barrier!), "barrier")
        assert.deepStrictEqual(heard, ["LHTTP/1.0 subscribe\r\nsubscribe:h-a plain\r\nsince:now\r\n\r\n"])
        // known at once, before anything is published; none for the channel without history
        assert.deepStrictEqual(c.position("h-a"), Option.some({ epoch, offset: 0 }))
        assert.deepStrictEqual(c.position("plain"), Option.none())
        // deliveries on the history channel carry their positions, and the client follows them
        const delivered = yield* take(c.channel("h-a"), 1)
        yield* publisher.send(frame("flash", { publish: "h-a" }, "one"))
        const [one] = Array.from(yield* within(delivered))
        assert.strictEqual(headerOf(one, "offset"), "1")
        assert.deepStrictEqual(c.position("h-a"), Option.some({ epoch, offset: 1 }))

        // a new connection: the channel without a position asks again (now), the other since its own
        yield* c.command("kick")
        yield* reached(c, "reconnecting")
        yield* opened(c)
        yield* processed(c)
        assert.deepStrictEqual(heard.slice(1), [
          "LHTTP/1.0 subscribe\r\nsubscribe:plain\r\nsince:now\r\n\r\n",
          `LHTTP/1.0 subscribe\r\nsubscribe:h-a\r\nsince:${epoch}:1\r\n\r\n`
        ])
        assert.deepStrictEqual(c.position("h-a"), Option.some({ epoch, offset: 1 }))
        assert.deepStrictEqual(c.position("plain"), Option.none())
        // unsubscribing forgets the position; subscribing again asks from now
        yield* c.unsubscribe(["h-a"])
        assert.deepStrictEqual(c.position("h-a"), Option.none())
        const again = yield* take(c.messages, 1)
        yield* c.subscribe(["h-a"], "tally")
        const [answer] = Array.from(yield* within(again))
        assert.deepInclude(answer, { command: "position" })
        assert.deepStrictEqual(heard.slice(3), ["LHTTP/1.0 tally\r\nsubscribe:h-a\r\nsince:now\r\n\r\n"])
        assert.deepStrictEqual(c.position("h-a"), Option.some({ epoch, offset: 1 }))
      }))

    it.live("a position written by a publisher is never taken: on a channel without history, nor naming a history channel", () =>
      Effect.gen(function*() {
        const { url } = yield* historyServer()
        const c = yield* over(url)
        yield* opened(c)
        const publisher = yield* rawConnect(url)
        yield* c.subscribe(["h-a", "plain"])
        // a subscription of its own, without positions: its deliveries are the published text as it is
        yield* c.command("watch", { subscribe: "raw" })
        yield* processed(c)
        const epoch = Option.getOrThrow(c.position("h-a")).epoch
        assert.deepStrictEqual(c.position("h-a"), Option.some({ epoch, offset: 0 }))
        const forged: ReadonlyArray<Record<string, string>> = [
          // a position for a channel without history, on it
          { channel: "plain", offset: "5", epoch, publish: "plain" },
          { channel: "raw", offset: "5", epoch, publish: "raw" },
          // the history channel's, on channels without history
          { channel: "h-a", offset: "99", epoch, publish: "plain" },
          { channel: "h-a", offset: "98", epoch, publish: "raw" },
          // published to both: the history channel's delivery has the server's position, the other the forged one
          { channel: "h-a", offset: "97", epoch, publish: "raw h-a" },
          { channel: "h-a", offset: "96", epoch: "forged", publish: "plain h-a" }
        ]
        // every forged frame comes to the client (to the app), then the marker
        const arrived = yield* take(
          c.messages.pipe(Stream.filter((m) => m._tag !== "Failure" && m.command === "forged")),
          forged.length + 3
        )
        for (const headers of forged) yield* publisher.send(frame("forged", headers, "x"))
        // a forged position frame, and a marker through the same path
        yield* publisher.send(frame("position", { channel: "h-a", epoch, offset: "95", publish: "raw" }))
        yield* publisher.send(frame("forged", { publish: "raw" }, "marker"))
        const messages = Array.from(yield* within(arrived))
        assert.deepStrictEqual(bodies(messages).slice(-1), ["marker"])
        // the raw subscription's deliveries kept what the publisher wrote: the forgeries reached the client
        assert.includeDeepMembers(
          messages.filter((m) => m._tag !== "Failure" && m.publish.join(" ") === "raw").map((m) =>
            headerOf(m, "offset")
          ),
          ["5", "98"]
        )
        assert.deepStrictEqual(c.position("plain"), Option.none())
        assert.deepStrictEqual(c.position("raw"), Option.none())
        assert.deepStrictEqual(c.position("h-a"), Option.some({ epoch, offset: 0 }))
        // what the server positions on the history channel alone is taken (offsets 1 and 2 went to the frames
        // published to both)
        const live = yield* take(c.channel("h-a"), 1)
        yield* publisher.send(frame("flash", { publish: "h-a" }, "real"))
        yield* within(live)
        assert.deepStrictEqual(c.position("h-a"), Option.some({ epoch, offset: 3 }))

        // a frame of a channel the client has just left, still on its way (the server holds the unsubscribe)
        let open: () => void = () => {}
        holdGate = new Promise((resolve) => (open = resolve))
        yield* Effect.addFinalizer(() => Effect.sync(() => open()))
        yield* c.command("hold")
        yield* c.command("watch", { unsubscribe: "raw" })
        const late = yield* take(c.messages.pipe(Stream.filter((m) => m._tag !== "Failure" && m.command === "late")), 1)
        yield* publisher.send(frame("late", { channel: "h-a", offset: "94", epoch, publish: "raw" }, "x"))
        const [lateOne] = Array.from(yield* within(late))
        assert.strictEqual(headerOf(lateOne, "offset"), "94")
        open()
        yield* processed(c)
        assert.deepStrictEqual(c.position("h-a"), Option.some({ epoch, offset: 3 }))
      }))

    it.live("reconnects after a server restart on the same port, with its subscriptions", () =>
      Effect.gen(function*() {
        const port = yield* Effect.promise(freePort)
        const first = yield* Scope.make()
        const { url } = yield* server({ port }).pipe(Scope.provide(first))
        const c = yield* over(url)
        yield* opened(c)
        yield* c.subscribe(["a", "b"])
        yield* processed(c)
        yield* Scope.close(first, Exit.void)
        yield* until(Effect.map(c.state, (state) => state !== "open"))
        const sendWhileDown = yield* c.command("echo", {}, "x").pipe(Effect.flip)
        assert.strictEqual(sendWhileDown.reason, "NotConnected")
        yield* server({ port })
        yield* opened(c)
        yield* processed(c)
        const publisher = yield* rawConnect(url)
        const received = yield* take(c.messages, 2)
        yield* publisher.send(frame("x", { publish: "a" }, "to a"))
        yield* publisher.send(frame("x", { publish: "b" }, "to b"))
        assert.deepStrictEqual(bodies(yield* within(received)), ["to a", "to b"])
      }))

    it.live("a bounded send buffer keeps a publish and a request made while disconnected and sends them after the reconnect", () =>
      Effect.gen(function*() {
        const port = yield* Effect.promise(freePort)
        const first = yield* Scope.make()
        const { url } = yield* server({ port }).pipe(Scope.provide(first))
        const c = yield* over(url, { sendBuffer: 2 })
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

        const { server: second } = yield* server({ port })
        yield* opened(c)
        assert.deepInclude(yield* Fiber.join(reply), { _tag: "Request", body: "asked while down" })
        // the publish reached the new server: it came back through the channel, subscribed again
        const [note] = Array.from(yield* within(delivered))
        assert.deepInclude<object>(note!, {
          _tag: "Notify",
          command: "note",
          body: "published while down",
          publish: ["kept"]
        })
        // and the overflowing frame did not: the marker's echo is the next frame
        const next = yield* take(c.messages, 1)
        const marker = yield* c.request("echo", "marker")
        assert.deepStrictEqual(Array.from(yield* within(next)), [marker])
        assert.strictEqual(second.connectionCount(), 1)
      }))

    it.live("without reconnect the client ends closed when the connection ends, and sends fail Closed", () =>
      Effect.gen(function*() {
        const { url } = yield* server()
        const once = yield* over(url, { reconnect: false })
        yield* opened(once)
        yield* once.command("kick")
        yield* reached(once, "closed")
        assert.deepInclude(yield* once.command("echo").pipe(Effect.flip), { reason: "Closed" })
        assert.deepInclude(yield* once.request("echo").pipe(Effect.flip), { reason: "Closed" })
      }))

    it.live("close: pending requests fail Closed, the state is closed, later calls fail Closed, the server's connection ends", () =>
      Effect.gen(function*() {
        const { server: running, url } = yield* server()
        const c = yield* over(url)
        yield* opened(c)
        const pending = yield* c.request("silent", "", { timeout: "5 seconds" }).pipe(
          Effect.flip,
          Effect.forkChild({ startImmediately: true })
        )
        const pendingCall = yield* c.call(Silent, "", { timeout: "5 seconds" }).pipe(
          Effect.flip,
          Effect.forkChild({ startImmediately: true })
        )
        yield* processed(c)
        assert.strictEqual(running.connectionCount(), 1)
        yield* c.close
        assert.deepInclude(yield* Fiber.join(pending), { reason: "Closed", message: "the client is closed" })
        assert.deepInclude(yield* Fiber.join(pendingCall), { reason: "Closed", message: "the client is closed" })
        assert.strictEqual(yield* c.state, "closed")
        const laterCalls: ReadonlyArray<Effect.Effect<unknown, unknown>> = [
          c.command("echo"),
          c.request("echo"),
          c.call(Place, { x: 2, y: 3 }),
          c.subscribe(["room"]),
          c.publish(["room"], "chat")
        ]
        for (const later of laterCalls) {
          assert.deepInclude(yield* Effect.flip(later), { reason: "Closed" })
        }
        // over HTTP the connection outlives its requests: the client ends it (DELETE /send)
        yield* until(Effect.sync(() => running.connectionCount() === 0), "3 seconds")
      }))

    it.live("layer(url, options) gives the client as the Client service, closed with the layer's scope", () =>
      Effect.gen(function*() {
        const { server: running, url } = yield* server()
        const used = yield* Effect.gen(function*() {
          const c = yield* LhttpClient.LhttpClient
          yield* opened(c)
          assert.deepInclude(yield* c.request("echo", "through the layer"), { body: "through the layer" })
          return c
        }).pipe(Effect.provide(LhttpClient.layer(url, { transport })))
        assert.strictEqual(yield* used.state, "closed")
        assert.deepInclude(yield* used.command("echo").pipe(Effect.flip), { reason: "Closed" })
        yield* until(Effect.sync(() => running.connectionCount() === 0), "3 seconds")

        // the options reach the client: without reconnect, a kick ends it
        yield* Effect.gen(function*() {
          const c = yield* LhttpClient.LhttpClient
          yield* opened(c)
          yield* c.command("kick")
          yield* until(Effect.map(c.state, (state) => state === "closed"), "2 seconds")
        }).pipe(Effect.provide(LhttpClient.layer(url, { transport, reconnect: false })))
      }).pipe(Effect.provide(NodeWS.layerWebSocketConstructor)))
  })

  describe(`LhttpClient over ${transport}: timeouts and their defaults (TestClock)`, () => {
    it.effect("requestTimeout: 10 s by default, or as set", () =>
      Effect.gen(function*() {
        const { url } = yield* TestClock.withLive(server())
        const byDefault = yield* over(url)
        const set = yield* over(url, { requestTimeout: "2 seconds" })
        yield* opened(byDefault)
        yield* opened(set)
        const silent = (c: LhttpClient.Service) =>
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

    it.effect("openTimeout: 10 s by default, or as set, against a server that never answers", () =>
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
        const byDefault = yield* over(url, { reconnect: false })
        const set = yield* over(url, { reconnect: false, openTimeout: "2 seconds" })
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
}

describe("LhttpClient over HTTP", () => {
  for (const transport of ["sse", "poll"] as const) {
    it.live(`${transport}: connect and layer need no WebSocket constructor; an http:// URL and other paths work`, () =>
      Effect.gen(function*() {
        const paths = { ssePath: "/lhttp/events", pollPath: "/lhttp/poll", sendPath: "/lhttp/send" }
        const { http } = yield* server(paths)
        // nothing provides a WebSocketConstructor here: this compiles and runs only if none is needed
        const c = yield* LhttpClient.connect(`${http}/some/page`, { transport, ...paths })
        yield* opened(c)
        assert.deepInclude(yield* c.request("echo", "over other paths"), { body: "over other paths" })
        const reply = yield* Effect.gen(function*() {
          const fromLayer = yield* LhttpClient.LhttpClient
          yield* opened(fromLayer)
          return yield* fromLayer.request("echo", "from the layer")
        }).pipe(Effect.provide(LhttpClient.layer(http, { transport, ...paths })))
        assert.deepInclude(reply, { body: "from the layer" })
      }))

    it.live(`${transport}: a frame over the server's maxMessageBytes fails TooLarge (413) and the connection stays`, () =>
      Effect.gen(function*() {
        const { server: running, url } = yield* server({ maxMessageBytes: 1024 })
        const c = yield* client(url, { transport })
        yield* opened(c)
        const states = yield* recordStates(c)
        const error = yield* c.command("echo", {}, "x".repeat(2000)).pipe(Effect.flip)
        assert.deepInclude(error, {
          reason: "TooLarge",
          message: "the frame is over the server's limit (413: a message is at most 1024 bytes)"
        })
        yield* processed(c)
        assert.deepStrictEqual(seenOnce(states), ["open"])
        assert.strictEqual(running.connectionCount(), 1)
      }))

    it.live(`${transport}: a frame POST /send refuses (400) fails Rejected with its status and reason`, () =>
      Effect.gen(function*() {
        const { url } = yield* server({ maxHeaders: 4 })
        const c = yield* client(url, { transport })
        yield* opened(c)
        const headers = Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`h${i}`, String(i)]))
        const error = yield* c.command("echo", headers, "x").pipe(Effect.flip)
        assert.deepInclude(error, {
          reason: "Rejected",
          status: 400,
          serverReason: "TooManyHeaders",
          message: "a frame carries at most 4 headers"
        })
        yield* processed(c)
      }))

    it.live(
      `${transport}: a connection the server is behind on (429) gets its frames later, all of them, in order`,
      () =>
        Effect.gen(function*() {
          const { url } = yield* server()
          const c = yield* client(url, { transport })
          yield* opened(c)
          // count the 429s: the real fetch, watched
          const original = globalThis.fetch
          let behind = 0
          yield* Effect.acquireRelease(
            Effect.sync(() => {
              globalThis.fetch = async (input, init) => {
                const response = await original(input, init)
                if (response.status === 429) behind++
                return response
              }
            }),
            () => Effect.sync(() => void (globalThis.fetch = original))
          )
          let open: () => void = () => {}
          holdGate = new Promise((resolve) => (open = resolve))
          yield* Effect.addFinalizer(() => Effect.sync(() => open()))
          tallied.length = 0
          const count = 1100
          yield* c.command("hold")
          const sent = yield* Effect.forEach(
            Array.from({ length: count }, (_, i) => String(i)),
            (body) => c.command("tally", {}, body)
          ).pipe(Effect.forkChild({ startImmediately: true }))
          // the server stops taking frames past 1024 waiting ones
          yield* until(Effect.sync(() => behind > 0), "20 seconds")
          open()
          yield* Fiber.join(sent)
          yield* processed(c)
          assert.deepStrictEqual(tallied, Array.from({ length: count }, (_, i) => String(i)))
          assert.strictEqual(yield* c.state, "open")
        }),
      40_000
    )
  }

  for (const transport of ["sse", "poll"] as const) {
    it.live(`${transport}: a send answered 410 (the connection ended, the stream did not say) fails NotConnected and the client opens a new connection`, () =>
      Effect.gen(function*() {
        const { port, server: running, url } = yield* server()
        const front = yield* relay(port)
        const c = yield* client(`ws://127.0.0.1:${front.port}`, { transport })
        yield* opened(c)
        yield* c.subscribe(["after-410"])
        yield* processed(c)
        const states = yield* recordStates(c)
        // what the server says on the stream (or to the waiting poll) is lost from now on: its close event, its 410
        if (transport === "poll") yield* until(Effect.sync(() => front.pollsWaiting() === 1))
        front.freezeStreams()
        yield* c.command("kick")
        yield* until(Effect.sync(() => running.connectionCount() === 0))
        assert.strictEqual(yield* c.state, "open")
        const error = yield* c.command("echo", {}, "x").pipe(Effect.flip)
        assert.deepInclude(error, { reason: "NotConnected", message: "the connection ended (410: 4100 kicked)" })
        yield* reached(c, "reconnecting")
        yield* opened(c)
        yield* processed(c)
        assert.strictEqual(running.connectionCount(), 1)
        const received = yield* take(c.channel("after-410"), 1)
        const publisher = yield* rawConnect(url)
        yield* publisher.send(frame("flash", { publish: "after-410" }, "to the new connection"))
        assert.deepStrictEqual(bodies(yield* within(received)), ["to the new connection"])
        assert.deepStrictEqual(seenOnce(states), ["open", "reconnecting", "open"])
      }))
  }

  it.live("sse: a broken stream resumes the same connection with Last-Event-ID, with what came meanwhile", () =>
    Effect.gen(function*() {
      const { port, server: running, url } = yield* server()
      const front = yield* relay(port)
      const c = yield* client(`ws://127.0.0.1:${front.port}`, { transport: "sse" })
      const publisher = yield* rawConnect(url)
      yield* opened(c)
      yield* c.subscribe(["resume", "dropped"])
      yield* processed(c)
      const states = yield* recordStates(c)
      // every frame without an id (the replies to the barriers have one)
      const received = yield* take(c.messages.pipe(Stream.filter((message) => message._tag === "Notify")), 4)
      const first = yield* take(c.channel("resume"), 1)
      yield* publisher.send(frame("flash", { publish: "resume" }, "before"))
      assert.deepStrictEqual(bodies(yield* within(first)), ["before"]) // read before the break: not to be read again

      front.hold()
      front.cut()
      yield* reached(c, "reconnecting")
      // published while no stream is attached: the server keeps it for the resumed stream
      yield* publisher.send(frame("flash", { publish: "resume" }, "while down"))
      yield* publisher.nothing()
      // changed while down (the sends fail, the channels held change), as over a WebSocket
      assert.deepInclude(yield* c.subscribe(["later"]).pipe(Effect.flip), { reason: "NotConnected" })
      assert.deepInclude(yield* c.unsubscribe(["dropped"]).pipe(Effect.flip), { reason: "NotConnected" })
      front.release()
      yield* opened(c)
      yield* processed(c)
      // the same connection: a new one would be a second (the old one waits for its stream 60 s)
      assert.strictEqual(running.connectionCount(), 2) // c and the publisher
      // what changed while down is in place on the resumed connection: "dropped" is gone, "later" is there
      yield* publisher.send(frame("flash", { publish: "dropped" }, "not for c"))
      yield* publisher.send(frame("flash", { publish: "resume" }, "after"))
      yield* publisher.send(frame("flash", { publish: "later" }, "later"))
      assert.deepStrictEqual(bodies(yield* within(received)), ["before", "while down", "after", "later"])
      assert.deepStrictEqual(seenOnce(states), ["open", "reconnecting", "open"])
    }))

  it.live("sse: a stream that comes back to a connection the server no longer has (event: reset) is a new connection, subscribed again", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(freePort)
      const first = yield* Scope.make()
      yield* server({ port }).pipe(Scope.provide(first))
      const front = yield* relay(port)
      const c = yield* client(`ws://127.0.0.1:${front.port}`, { transport: "sse" })
      yield* opened(c)
      yield* c.subscribe(["again"])
      yield* processed(c)
      const states = yield* recordStates(c)
      front.hold()
      front.cut()
      yield* reached(c, "reconnecting")
      // the server restarts while the stream is away: the new one never heard of the connection
      yield* Scope.close(first, Exit.void)
      const { server: running, url } = yield* server({ port })
      front.release()
      yield* opened(c)
      yield* processed(c)
      assert.strictEqual(running.connectionCount(), 1)
      const received = yield* take(c.channel("again"), 1)
      const publisher = yield* rawConnect(url)
      yield* publisher.send(frame("flash", { publish: "again" }, "to the new connection"))
      assert.deepStrictEqual(bodies(yield* within(received)), ["to the new connection"])
      assert.deepStrictEqual(seenOnce(states), ["open", "reconnecting", "open"])
    }))

  it.live("poll: a poll whose answer is lost (a proxy dropped it and gave up: 504) is asked again with the same cursor: the same connection, nothing lost", () =>
    Effect.gen(function*() {
      const { port, server: running, url } = yield* server()
      const front = yield* relay(port)
      const c = yield* client(`ws://127.0.0.1:${front.port}`, { transport: "poll" })
      const publisher = yield* rawConnect(url)
      yield* opened(c)
      yield* c.subscribe(["lossless"])
      yield* processed(c)
      const states = yield* recordStates(c)
      const received = yield* take(c.channel("lossless"), 2)
      yield* until(Effect.sync(() => front.pollsWaiting() === 1))
      // the server answers the waiting poll with "before"; the relay drops the answer, then gives up
      front.freezeStreams()
      yield* publisher.send(frame("flash", { publish: "lossless" }, "before"))
      yield* until(Effect.sync(() => front.pollsWaiting() === 0))
      front.gatewayTimeout()
      // the poll asked again with the same cursor gets "before" again, then "after" comes
      yield* until(Effect.sync(() => front.pollsWaiting() === 1))
      yield* publisher.send(frame("flash", { publish: "lossless" }, "after"))
      assert.deepStrictEqual(bodies(yield* within(received)), ["before", "after"])
      yield* processed(c)
      assert.strictEqual(running.connectionCount(), 2) // c and the publisher
      assert.deepStrictEqual(seenOnce(states), ["open"])
    }))

  it.live("poll: a connection the server no longer knows (404) is replaced by a new one, subscribed again", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(freePort)
      const first = yield* Scope.make()
      yield* server({ port }).pipe(Scope.provide(first))
      const front = yield* relay(port)
      const c = yield* client(`ws://127.0.0.1:${front.port}`, { transport: "poll" })
      yield* opened(c)
      yield* c.subscribe(["again"])
      yield* processed(c)
      const states = yield* recordStates(c)
      const accepted = front.accepted()
      front.hold()
      front.cut()
      // the poll made again waits in the relay while the server restarts
      yield* until(Effect.sync(() => front.accepted() > accepted))
      yield* Scope.close(first, Exit.void)
      const { server: running, url } = yield* server({ port })
      front.release()
      yield* reached(c, "reconnecting")
      yield* opened(c)
      yield* processed(c)
      assert.strictEqual(running.connectionCount(), 1)
      const received = yield* take(c.channel("again"), 1)
      const publisher = yield* rawConnect(url)
      yield* publisher.send(frame("flash", { publish: "again" }, "to the new connection"))
      assert.deepStrictEqual(bodies(yield* within(received)), ["to the new connection"])
      assert.deepStrictEqual(seenOnce(states), ["open", "reconnecting", "open"])
    }))
})

/** The states seen, each run of one state once (a state set twice in a row reads as one). */
const seenOnce = (states: ReadonlyArray<LhttpClient.State>) =>
  states.filter((state, i) => i === 0 || states[i - 1] !== state)

describe("the SSE event stream, as the client reads it", () => {
  const parse = (chunks: ReadonlyArray<Uint8Array>): Array<Event> => {
    const parser = new Parser()
    return [...chunks.flatMap((chunk) => parser.push(chunk)), ...parser.end()]
  }
  const utf8 = (text: string) => new TextEncoder().encode(text)

  it("reads fields, comments, CR, LF and CRLF line ends, a CRLF cut between chunks, and drops an unfinished event", () => {
    const stream = utf8(
      "retry: 1000\r\n\r\n:\r\nevent: connected\rdata: key\r\rid: key:1\nevent: chat\ndata:no space\ndata:  two spaces\r\ndata\n\n" +
        "event: lost\ndata: never ended"
    )
    const expected: Array<Event> = [
      { lastEventId: "", type: "connected", data: "key" },
      { lastEventId: "key:1", type: "chat", data: "no space\n two spaces\n" }
    ]
    assert.deepStrictEqual(parse([stream]), expected)
    // every cut, one byte at a time included, reads the same
    for (let cut = 1; cut < stream.length; cut++) {
      assert.deepStrictEqual(parse([stream.subarray(0, cut), stream.subarray(cut)]), expected, `cut at ${cut}`)
    }
    assert.deepStrictEqual(parse(Array.from(stream, (byte) => Uint8Array.of(byte))), expected)
  })

  it("gives back every frame the server writes, its head with CRLF, its body with LF for each line break, in chunks cut anywhere", () => {
    const text = fc.string({
      unit: fc.constantFrom("a", "é", "😀", " ", ":", "\r", "\n", "\r\n", "LHTTP/1.0 "),
      maxLength: 12
    })
    const token = fc.string({ unit: fc.constantFrom("a", "b", "-", "é"), minLength: 1, maxLength: 5 })
    const frames = fc.array(
      fc.record({
        command: token,
        headers: fc.dictionary(token, fc.string({ unit: fc.constantFrom("x", ":", " ", "é"), maxLength: 5 }), {
          maxKeys: 3
        }),
        body: text
      }),
      { minLength: 1, maxLength: 4 }
    )
    fc.assert(
      fc.property(frames, fc.array(fc.nat(), { maxLength: 6 }), (list, cuts) => {
        const texts = list.map((f) => Frame.render(Frame.make(f.command, f.headers, f.body)))
        const written = `retry: 1000\n\nevent: connected\ndata: k\n\n${
          texts.map((t, i) => `id: k:${i + 1}\n${eventOf(new Outbound(t))}:\n\n`).join("")
        }event: close\ndata: {"code":1000,"reason":"bye"}\n\n`
        const bytes = utf8(written)
        const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b)
        const chunks = [0, ...points].map((start, i) => bytes.subarray(start, [...points, bytes.length][i]))
        const events = parse(chunks)
        assert.deepStrictEqual(events.map((e) => e.type), ["connected", ...list.map((f) => f.command), "close"])
        const frameOf = (event: Event) => {
          const item = itemOf(event)
          return item._tag === "Frame" ? item.text : undefined
        }
        assert.deepStrictEqual(events.map(frameOf), [
          undefined,
          ...texts.map((t) => {
            const blank = t.indexOf("\r\n\r\n")
            return t.slice(0, blank + 4) + t.slice(blank + 4).replace(/\r\n|\r/g, "\n")
          }),
          undefined
        ])
        assert.deepStrictEqual(events.slice(1, -1).map((e) => e.lastEventId), texts.map((_, i) => `k:${i + 1}`))
      }),
      { numRuns: 300 }
    )
  })
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
