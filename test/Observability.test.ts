/**
 * What docs/operations.md says the server tells an operator: the attributes
 * of its spans ("Traces") and the level and cause of its log lines ("Logs").
 * Spans are recorded by a Tracer of the test's own; log lines by a Logger of
 * the test's own, with every level let through, so that a line at the wrong
 * level, or without its cause, fails here.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Layer, Logger, References, Result, Tracer } from "effect"
import type * as Net from "node:net"
import * as Bus from "../src/Bus.ts"
import * as Channel from "../src/Channel.ts"
import * as Echo from "../src/demo/Echo.ts"
import * as Filter from "../src/Filter.ts"
import * as Hub from "../src/Hub.ts"
import * as Processor from "../src/Processor.ts"
import * as Rejection from "../src/Rejection.ts"
import { frame, startServer } from "./utils/lhttp.ts"
import { connect as connectWs } from "./utils/lhttp.ts"
import { startMemoryServer } from "./utils/memory.ts"
import { eventually } from "./utils/wait.ts"

interface Logged {
  readonly level: string
  readonly text: string
  readonly cause: Cause.Cause<unknown>
  /** What was logged beside the message, as it was given (an Error stays an Error). */
  readonly parts: ReadonlyArray<unknown>
}

/** A Logger that keeps every line, and the layer that makes it the only one, every level let through. */
const capture = () => {
  const logged: Array<Logged> = []
  const logger = Logger.make(({ cause, logLevel, message }) => {
    const parts: ReadonlyArray<unknown> = Array.isArray(message) ? message : [message]
    logged.push({ level: logLevel, text: String(parts[0]), cause, parts: parts.slice(1) })
  })
  const layer = Layer.merge(Logger.layer([logger]), Layer.succeed(References.MinimumLogLevel, "All"))
  return { logged, layer }
}

/** The message of the Error a cause died with, if it died. */
const diedWith = (cause: Cause.Cause<unknown>): string | undefined => {
  const defect = cause.reasons.find(Cause.isDieReason)
  return defect === undefined
    ? undefined
    : defect.defect instanceof Error
    ? defect.defect.message
    : String(defect.defect)
}

/** A Tracer that records every span it makes (the spans themselves, with their attributes once set). */
const recordingTracer = () => {
  const spans: Array<Tracer.Span> = []
  const tracer = Tracer.make({
    span(options) {
      const span = Tracer.nativeTracer.span(options)
      spans.push(span)
      return span
    }
  })
  return { spans, tracer }
}

const attributesOf = (span: Tracer.Span | undefined) => Object.fromEntries(span?.attributes ?? new Map())

// answers with the id of the connection it runs on
const Whoami = Processor.make("whoami")
const WhoamiLive = Whoami.toLayer({ onMessage: (exchange) => exchange.send(exchange.connection.id) })

// dies with an Error whose message is the message's body
const Broken = Processor.make("broken")
const BrokenLive = Broken.toLayer({ onMessage: (exchange) => Effect.die(new Error(`processor bug: ${exchange.text}`)) })

// fails with a Rejection: the client is answered, nothing is logged
const Refuse = Processor.make("refuse")
const RefuseLive = Refuse.toLayer({
  onMessage: () => Effect.fail(new Rejection.Rejection({ status: 403, reason: "Forbidden", message: "not you" }))
})

// dies before the processor when the message has `trip:yes`
const Trip = Filter.make("trip")
const TripLive = Trip.toLayer({
  before: (exchange) => exchange.header("trip") === "yes" ? Effect.die(new Error("filter bug")) : Effect.void
})

const internalError = (id?: string) =>
  `LHTTP/1.0 error\r\nstatus:500\r\nreason:InternalError\r\n${
    id === undefined ? "" : `id:${id}\r\n`
  }\r\nthe server failed to process the message`

describe("Traces: the attributes of the spans (operations.md, Traces)", () => {
  it.live("lhttp.message has the command and the connection id; lhttp.processor the command; lhttp.publish the channels", () =>
    Effect.gen(function*() {
      const { spans, tracer } = recordingTracer()
      const { connect } = yield* startMemoryServer({ processors: [Whoami], tracing: true }, WhoamiLive).pipe(
        Effect.provideService(Tracer.Tracer, tracer)
      )
      const client = yield* connect()
      yield* client.send(frame("whoami", { subscribe: "p1 s2", publish: "p1 p2" }, "hi"))
      const id = yield* client.next()
      assert.match(id, /^LHTTP\/1\.0 whoami\r\n\r\n\S+$/)
      const connectionId = id.split("\r\n\r\n")[1]!
      // the published copy comes after the reply; by then every span of the message was made
      assert.strictEqual(yield* client.next(), frame("whoami", { subscribe: "p1 s2", publish: "p1 p2" }, "hi"))
      const named = (name: string) => spans.filter((span) => span.name === name)
      assert.strictEqual(named("lhttp.message").length, 1)
      assert.deepStrictEqual(attributesOf(named("lhttp.message")[0]), {
        "lhttp.command": "whoami",
        "lhttp.connection": connectionId
      })
      assert.deepStrictEqual(attributesOf(named("lhttp.processor")[0]), { "lhttp.command": "whoami" })
      assert.deepStrictEqual(attributesOf(named("lhttp.publish")[0]), {
        "lhttp.subscribe": "p1 s2",
        "lhttp.publish": "p1 p2",
        "lhttp.unsubscribe": ""
      })
      // another connection's message: its own id
      const other = yield* connect()
      yield* other.send(frame("whoami", {}, ""))
      const otherId = (yield* other.next()).split("\r\n\r\n")[1]!
      assert.notStrictEqual(otherId, connectionId)
      yield* eventually(() => named("lhttp.message").length === 2)
      assert.deepStrictEqual(attributesOf(named("lhttp.message")[1]), {
        "lhttp.command": "whoami",
        "lhttp.connection": otherId
      })
    }))
})

describe("Logs: levels and causes (operations.md, Logs)", () => {
  it.live("a processor that dies: one warning with the defect as its cause, never sent; the client gets 500 (a Rejection: no line)", () =>
    Effect.gen(function*() {
      const { layer, logged } = capture()
      const { connect } = yield* startMemoryServer(
        { processors: [Broken, Refuse, Echo.Echo] },
        Layer.mergeAll(BrokenLive, RefuseLive, Echo.layer)
      ).pipe(Effect.provide(layer))
      const client = yield* connect()
      // a failure the client is answered with is not logged: the die after it is the only warning
      yield* client.send(frame("refuse", { id: "f" }))
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 error\r\nstatus:403\r\nreason:Forbidden\r\nid:f\r\n\r\nnot you"
      )
      yield* client.send(frame("broken", { id: "b" }, "x1"))
      const error = yield* client.next()
      assert.strictEqual(error, internalError("b"))
      yield* eventually(() => logged.some((line) => line.level === "Warn"))
      const warnings = logged.filter((line) => line.level === "Warn")
      assert.strictEqual(warnings.length, 1)
      assert.strictEqual(warnings[0]!.text, "a processor or filter failed")
      assert.strictEqual(diedWith(warnings[0]!.cause), "processor bug: x1")
      assert.notInclude(error, "processor bug")
      assert.isFalse(logged.some((line) => line.level === "Error" || line.level === "Fatal"))
      yield* client.send(frame("echo", {}, "still here"))
      assert.strictEqual(yield* client.next(), frame("echo", {}, "still here"))
    }))

  it.live("a filter that dies: one warning with the defect as its cause; the client gets 500", () =>
    Effect.gen(function*() {
      const { layer, logged } = capture()
      const { connect } = yield* startMemoryServer(
        { processors: [Echo.Echo], filters: [Trip] },
        Layer.merge(TripLive, Echo.layer)
      ).pipe(
        Effect.provide(layer)
      )
      const client = yield* connect()
      yield* client.send(frame("echo", { trip: "no" }, "fine"))
      assert.strictEqual(yield* client.next(), frame("echo", { trip: "no" }, "fine").replace("trip:no\r\n", ""))
      assert.deepStrictEqual(logged.filter((line) => line.level === "Warn"), [])
      yield* client.send(frame("echo", { trip: "yes", id: "t" }, "boom"))
      assert.strictEqual(yield* client.next(), internalError("t"))
      yield* eventually(() => logged.some((line) => line.level === "Warn"))
      const warnings = logged.filter((line) => line.level === "Warn")
      assert.strictEqual(warnings.length, 1)
      assert.strictEqual(warnings[0]!.text, "a processor or filter failed")
      assert.strictEqual(diedWith(warnings[0]!.cause), "filter bug")
    }))

  it.live("a WebSocket protocol error and an oversized message: logged at debug with ws's reason, nothing above debug", () =>
    Effect.gen(function*() {
      const { layer, logged } = capture()
      const { url } = yield* startServer({ processors: [Echo.Echo], maxMessageBytes: 100 }, Echo.layer).pipe(
        Effect.provide(layer)
      )
      const about = () => logged.filter((line) => line.text.includes("WebSocket"))
      // a frame with the reserved opcode 3 (FIN set, masked, empty): ws closes with 1002
      const invalid = yield* connectWs(`${url}/`)
      const socket = (invalid.ws as unknown as { readonly _socket: Net.Socket })._socket
      socket.write(Buffer.from([0x83, 0x80, 0, 0, 0, 0]))
      assert.strictEqual((yield* invalid.closed).code, 1002)
      yield* eventually(() => about().length === 1)
      assert.deepStrictEqual(about().map((line) => [line.level, line.text]), [
        ["Debug", "WebSocket closed by the server: Invalid WebSocket frame: invalid opcode 3"]
      ])
      // a message over maxMessageBytes: 1009
      const big = yield* connectWs(`${url}/`)
      yield* big.send(frame("echo", {}, "x".repeat(200)))
      assert.strictEqual((yield* big.closed).code, 1009)
      yield* eventually(() => about().length === 2)
      assert.deepStrictEqual(about()[1]!.level, "Debug")
      assert.match(about()[1]!.text, /^WebSocket closed by the server: Max payload size exceeded$/)
      assert.deepStrictEqual(logged.filter((line) => line.level !== "Debug" && line.level !== "Info"), [])
    }))

  it.effect("a hub subscriber that throws: logged at error with the thrown Error; the others still get the frame", () =>
    Effect.gen(function*() {
      const { layer, logged } = capture()
      const bus = yield* Bus.makeMemory()
      const hub = yield* Hub.make().pipe(Effect.provideService(Bus.Bus, bus), Effect.provide(layer))
      const got: Array<string> = []
      const good = (name: string): Hub.Subscriber => ({
        channels: new Set(),
        deliver: (frame) => got.push(`${name}:${frame.text}`)
      })
      const broken: Hub.Subscriber = {
        channels: new Set(),
        deliver: () => {
          throw new Error("a listener's bug")
        }
      }
      const t = Result.getOrThrow(Channel.validateAll(["t"]))
      yield* hub.subscribe(good("first"), t)
      yield* hub.subscribe(broken, t)
      yield* hub.subscribe(good("last"), t)
      yield* hub.publishText(t, "one")
      assert.deepStrictEqual(got, ["first:one", "last:one"])
      yield* eventually(() => logged.length === 1)
      assert.deepStrictEqual([logged[0]!.level, logged[0]!.text], [
        "Error",
        "a hub subscriber threw while a frame was delivered"
      ])
      // the thrown Error itself is logged with the line (Hub logs it as a value, not as a Cause)
      assert.strictEqual(logged[0]!.parts.length, 1)
      const thrown = logged[0]!.parts[0]
      assert.strictEqual(thrown instanceof Error ? thrown.message : undefined, "a listener's bug")
      yield* hub.publishText(t, "two")
      assert.deepStrictEqual(got, ["first:one", "last:one", "first:two", "last:two"])
      yield* eventually(() => logged.length === 2)
    }))
})
