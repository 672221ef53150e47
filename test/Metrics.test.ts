/**
 * `GET /metrics` from the start: every family with `# HELP` and `# TYPE`, and
 * the series of known label values at 0 before anything happened (the
 * connection gauges of the transports, the error frames of every reason the
 * server sends, the bus reconnections), read with a Prometheus text parser
 * (`parse-prometheus-text-format`, a port of Prometheus' own).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { PrometheusMetrics } from "effect/observability"
import { fileURLToPath } from "node:url"
import parsePrometheusTextFormat, { type Family } from "parse-prometheus-text-format"
import * as NatsBus from "../src/NatsBus.ts"
import * as Processor from "../src/Processor.ts"
import * as ProtocolError from "../src/ProtocolError.ts"
import * as Rejection from "../src/Rejection.ts"
import * as Sessions from "../src/Sessions.ts"
import * as SessionStore from "../src/SessionStore.ts"
import * as Upstream from "../src/Upstream.ts"
import { getJson } from "./utils/http.ts"
import { connect, frame, request, startServer } from "./utils/lhttp.ts"
import { startMemoryServer } from "./utils/memory.ts"
import { natsServer } from "./utils/nats.ts"
import { freePort, start } from "./utils/process.ts"
import { until } from "./utils/wait.ts"

const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))

// the families of the core, whatever the bus and the transports (docs/operations.md)
const coreFamilies = [
  "lhttp_bus_ready",
  "lhttp_bus_reconnects_total",
  "lhttp_bytes_out_total",
  "lhttp_channels",
  "lhttp_connections",
  "lhttp_error_frames_total",
  "lhttp_frames_out_total",
  "lhttp_limited",
  "lhttp_messages_in_total",
  "lhttp_rate_limited_total",
  "lhttp_slow_consumer_closes_total",
  "lhttp_subscriptions"
]

// every reason of an error frame the server itself sends, written out here (not read from the code)
const serverReasons = [
  // ProtocolError
  "NotLhttp",
  "UnsupportedVersion",
  "MalformedStartLine",
  "MalformedHeader",
  "TooManyHeaders",
  "InvalidUtf8",
  "InvalidChannel",
  "InvalidMultipart",
  "InvalidUpstream",
  // Rejection
  "UnknownCommand",
  "TooManySubscriptions",
  "InvalidBody",
  "InternalError",
  "UpstreamNotConfigured",
  "Forbidden",
  "ShuttingDown",
  "BusUnavailable",
  "PublishUnconfirmed",
  "HistoryUnavailable",
  "InvalidSince",
  // the message rate
  "RateLimited",
  // UpstreamError
  "UpstreamNotAllowed",
  "UpstreamInvalidTarget",
  "UpstreamMethodNotAllowed",
  "UpstreamTransport",
  "UpstreamTimeout",
  "UpstreamStatus",
  "UpstreamTooLarge",
  "UpstreamTooMany",
  // SessionError
  "SessionNotFound",
  "SessionStoreUnavailable",
  "InvalidSessionData"
]

// a processor that refuses with a reason of the app's own
const Refuse = Processor.make("refuse")
const RefuseLive = Refuse.toLayer({
  onMessage: () => Effect.fail(new Rejection.Rejection({ status: 409, reason: "OutOfStock", message: "none left" }))
})

const prometheusTypes = ["COUNTER", "GAUGE", "HISTOGRAM", "SUMMARY"]

/**
 * Parses the whole text with the parser and checks what it does not: one
 * family per name, HELP and TYPE on each, every sample line read as a sample
 * of its family (none merged with another of the same labels).
 */
const parse = (text: string): ReadonlyMap<string, Family> => {
  const families = parsePrometheusTextFormat(text)
  const byName = new Map<string, Family>()
  for (const family of families) {
    assert.isFalse(byName.has(family.name), `${family.name} is one family`)
    byName.set(family.name, family)
    assert.notStrictEqual(family.help, "", `${family.name} has # HELP`)
    assert.include(prometheusTypes, family.type, `${family.name} has # TYPE`)
  }
  const sampleLines = text.split("\n").filter((line) => line !== "" && !line.startsWith("#"))
  for (const line of sampleLines) {
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0] ?? ""
    const family = byName.get(name) ??
      byName.get(name.replace(/_(bucket|sum|count)$/, ""))
    assert.isDefined(family, `the sample line ${JSON.stringify(line)} belongs to a family`)
  }
  for (const family of families) {
    if (family.type !== "COUNTER" && family.type !== "GAUGE") continue
    const lines = sampleLines.filter((line) => line.startsWith(`${family.name}{`) || line.startsWith(`${family.name} `))
    assert.strictEqual(family.metrics.length, lines.length, `each sample line of ${family.name} is a series of its own`)
  }
  return byName
}

// the value of each series of a family, by the value of one label ("" for a series without labels)
const series = (families: ReadonlyMap<string, Family>, name: string, label?: string): Record<string, string> => {
  const family = families.get(name)
  assert.isDefined(family, `${name} is there`)
  const values: Record<string, string> = {}
  for (const sample of family?.metrics ?? []) {
    const key = label === undefined ? "" : sample.labels?.[label]
    assert.isDefined(key, `${name} has the label ${label}`)
    values[key ?? ""] = sample.value ?? ""
  }
  return values
}

const zeros = (keys: ReadonlyArray<string>): Record<string, string> => Object.fromEntries(keys.map((key) => [key, "0"]))

// what a fresh node shows, whatever else it has: the families of the core, the series at 0
const assertFresh = (families: ReadonlyMap<string, Family>) => {
  for (const name of coreFamilies) assert.isTrue(families.has(name), `${name} is there from the start`)
  assert.deepStrictEqual(series(families, "lhttp_connections", "transport"), zeros(["websocket", "sse", "poll"]))
  assert.deepStrictEqual(series(families, "lhttp_error_frames_total", "reason"), zeros(serverReasons))
  assert.deepStrictEqual(series(families, "lhttp_bus_reconnects_total"), { "": "0" })
  assert.strictEqual(families.get("lhttp_bus_reconnects_total")?.type, "COUNTER")
  assert.strictEqual(families.get("lhttp_connections")?.type, "GAUGE")
  assert.strictEqual(families.get("lhttp_error_frames_total")?.type, "COUNTER")
}

describe("GET /metrics from the start", () => {
  it.live("a fresh Node server shows every family with HELP and TYPE, and the known series at 0", () =>
    Effect.gen(function*() {
      const { http } = yield* startServer({})
      const response = yield* request(`${http}/metrics`)
      assert.strictEqual(response.status, 200)
      const families = parse(response.body)
      assert.deepStrictEqual(Array.from(families.keys()).sort(), coreFamilies)
      assertFresh(families)
      for (const name of coreFamilies) {
        if (name === "lhttp_bus_ready") assert.deepStrictEqual(series(families, name), { "": "1" })
        else if (name === "lhttp_limited") {
          assert.deepStrictEqual(series(families, name, "feature"), zeros(["history", "sessions"]))
        } else if (name === "lhttp_connections" || name === "lhttp_error_frames_total") continue
        else assert.deepStrictEqual(series(families, name), { "": "0" }, name)
      }
    }))

  it.live("the error frames at 0 are every reason the code declares: ProtocolError, Rejection, UpstreamError, SessionError", () =>
    Effect.gen(function*() {
      const declared = new Set<string>([
        ...ProtocolError.Reason.literals,
        ...Upstream.Reason.literals.map((reason) => `Upstream${reason}`),
        ...Sessions.SessionError.fields.reason.literals
      ])
      // every Rejection the module exports, or makes from one argument
      for (const value of Object.values(Rejection)) {
        const made: unknown = typeof value === "function" && value !== Rejection.Rejection
          ? Reflect.apply(value, undefined, [""])
          : value
        if (made instanceof Rejection.Rejection) declared.add(made.reason)
      }
      assert.isAtLeast(declared.size, 30)
      const { http } = yield* startServer({})
      const shown = series(parse((yield* request(`${http}/metrics`)).body), "lhttp_error_frames_total", "reason")
      for (const reason of declared) assert.strictEqual(shown[reason], "0", reason)
    }))

  it.live("a reason at 0 counts its error frames in the same series; an app's own reason gets its series when sent", () =>
    Effect.gen(function*() {
      const { http, url } = yield* startServer({ processors: [Refuse] }, RefuseLive)
      const client = yield* connect(url)
      yield* client.send("bad")
      assert.match(yield* client.next(), /^LHTTP\/1\.0 error\r\nstatus:400\r\nreason:NotLhttp\r\n/)
      yield* client.send(frame("nothing-here", { id: "7" }))
      assert.match(yield* client.next(), /^LHTTP\/1\.0 error\r\nstatus:404\r\nreason:UnknownCommand\r\nid:7\r\n/)
      yield* client.send(frame("refuse", {}))
      assert.match(yield* client.next(), /^LHTTP\/1\.0 error\r\nstatus:409\r\nreason:OutOfStock\r\n/)
      yield* client.send(frame("refuse", {}))
      assert.match(yield* client.next(), /^LHTTP\/1\.0 error\r\nstatus:409\r\nreason:OutOfStock\r\n/)
      const families = parse((yield* request(`${http}/metrics`)).body)
      assert.deepStrictEqual(series(families, "lhttp_error_frames_total", "reason"), {
        ...zeros(serverReasons),
        NotLhttp: "1",
        UnknownCommand: "1",
        OutOfStock: "2"
      })
      assert.deepStrictEqual(series(families, "lhttp_connections", "transport"), {
        websocket: "1",
        sse: "0",
        poll: "0"
      })
    }))

  it.live("the in-memory transport gets its gauge with its first connection, at 0 once it is gone", () =>
    Effect.gen(function*() {
      const { connect: connectMemory } = yield* startMemoryServer({})
      assertFresh(parse(yield* PrometheusMetrics.format()))
      const client = yield* connectMemory()
      assert.deepStrictEqual(
        series(parse(yield* PrometheusMetrics.format()), "lhttp_connections", "transport"),
        { websocket: "0", sse: "0", poll: "0", memory: "1" }
      )
      yield* client.transport.close
      yield* client.closed
      // the connection ends after its close: wait for the gauge to drop
      yield* until(
        Effect.map(PrometheusMetrics.format(), (text) => text.includes("lhttp_connections{transport=\"memory\"} 0"))
      )
      assert.deepStrictEqual(
        series(parse(yield* PrometheusMetrics.format()), "lhttp_connections", "transport"),
        { websocket: "0", sse: "0", poll: "0", memory: "0" }
      )
    }))

  it.live("the main job (npm start), fresh: every family with HELP and TYPE, the known series at 0", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(() => freePort())
      const program = start(main, { env: { LHTTP_PORT: String(port), LHTTP_HOST: "127.0.0.1" } })
      yield* Effect.addFinalizer(() => Effect.promise(() => program.stop("SIGTERM", 3_000)))
      yield* Effect.promise(() => program.waitFor(/listening on/, 15_000))
      const response = yield* request(`http://127.0.0.1:${port}/metrics`)
      assert.strictEqual(response.status, 200)
      const families = parse(response.body)
      assertFresh(families)
      // the main job's sessions: every operation and outcome at 0
      const sessions = families.get("lhttp_session_operations_total")
      assert.isDefined(sessions)
      const keys = (sessions?.metrics ?? []).map((sample) =>
        `${sample.labels?.operation}/${sample.labels?.outcome}=${sample.value}`
      )
      assert.deepStrictEqual(
        keys.sort(),
        ["close", "create", "restore", "update"].flatMap((operation) =>
          ["failed", "ok"].map((outcome) => `${operation}/${outcome}=0`)
        ).sort()
      )
    }))

  it.live("the main job with upstream calls allowed: the calls' counter and the duration histogram from the start, empty", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(() => freePort())
      const program = start(main, {
        env: { LHTTP_PORT: String(port), LHTTP_HOST: "127.0.0.1", LHTTP_UPSTREAM_ALLOW: "http://127.0.0.1:1/" }
      })
      yield* Effect.addFinalizer(() => Effect.promise(() => program.stop("SIGTERM", 3_000)))
      yield* Effect.promise(() => program.waitFor(/listening on/, 15_000))
      const families = parse((yield* request(`http://127.0.0.1:${port}/metrics`)).body)
      assert.deepStrictEqual(series(families, "lhttp_upstream_calls_total", "outcome"), { ok: "0" })
      const duration = families.get("lhttp_upstream_duration_seconds")
      assert.isDefined(duration)
      assert.strictEqual(duration?.type, "HISTOGRAM")
    }))

  it.live("on the NATS bus: lhttp_bus_reconnects_total at 0 from the start, then each reconnection in the same series", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      const { http } = yield* startServer({}, undefined, {
        bus: NatsBus.layer({ servers: nats.url, reconnectTimeWait: "250 millis", connectRetry: "100 millis" })
      })
      const metrics = Effect.map(request(`${http}/metrics`), (response) => parse(response.body))
      const fresh = yield* metrics
      assertFresh(fresh)
      yield* until(Effect.map(metrics, (families) => series(families, "lhttp_bus_ready")[""] === "1"), "10 seconds")
      assert.deepStrictEqual(series(yield* metrics, "lhttp_bus_reconnects_total"), { "": "0" })
      yield* Effect.promise(() => nats.kill())
      yield* until(Effect.map(metrics, (families) => series(families, "lhttp_bus_ready")[""] === "0"))
      yield* Effect.promise(() => nats.restart())
      yield* until(Effect.map(metrics, (families) => series(families, "lhttp_bus_ready")[""] === "1"), "10 seconds")
      assert.deepStrictEqual(series(yield* metrics, "lhttp_bus_reconnects_total"), { "": "1" })
    }))
})

// the value of a series without labels, from the process's metrics (all the servers of this test file)
const counterValue = (name: string) =>
  Effect.map(PrometheusMetrics.format(), (text) => Number(parse(text).get(name)?.metrics[0]?.value ?? "NaN"))

describe("the counters of events move with them", () => {
  it.live("lhttp_slow_consumer_closes_total: one more for each connection closed 4001, none for one that reads", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({ maxOutboundBytes: 4096 })
      const before = yield* counterValue("lhttp_slow_consumer_closes_total")
      const reader = yield* connect()
      const stalled = yield* connect()
      yield* stalled.transport.setReading(false)
      for (const client of [reader, stalled]) yield* client.send("LHTTP/1.0 s\r\nsubscribe:flood\r\n\r\n")
      yield* reader.nothing()
      const publisher = yield* connect()
      for (let i = 0; i < 10; i++) yield* publisher.send(`LHTTP/1.0 m\r\npublish:flood\r\n\r\n${"x".repeat(1000)}`)
      assert.strictEqual((yield* stalled.closed).code, 4001)
      for (let i = 0; i < 10; i++) yield* reader.next()
      assert.strictEqual((yield* counterValue("lhttp_slow_consumer_closes_total")) - before, 1)
    }))

  it.live("lhttp_rate_limited_total: one more for each message refused 429 RateLimited", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({ messageRate: { perSecond: 0.001, burst: 2, closeAfter: 100 } })
      const before = yield* counterValue("lhttp_rate_limited_total")
      const client = yield* connect()
      for (let i = 0; i < 5; i++) yield* client.send(`LHTTP/1.0 m\r\npublish:x\r\nid:m${i}\r\n\r\n`)
      for (let i = 2; i < 5; i++) {
        assert.match(
          yield* client.next(),
          new RegExp(`^LHTTP/1\\.0 error\\r\\nstatus:429\\r\\nreason:RateLimited\\r\\nid:m${i}\\r\\n`)
        )
      }
      assert.strictEqual((yield* counterValue("lhttp_rate_limited_total")) - before, 3)
    }))
})

// a session app: login creates, rename updates the session under `key`, logout closes it
const Login = Processor.make("login")
const Rename = Processor.make("rename")
const Logout = Processor.make("logout")
const SessionAppLive = Layer.mergeAll(
  Login.toLayer(Effect.gen(function*() {
    const sessions = yield* Sessions.Sessions
    return { onMessage: (exchange) => Effect.asVoid(sessions.create(exchange.connection, { name: exchange.text })) }
  })),
  Rename.toLayer(Effect.gen(function*() {
    const sessions = yield* Sessions.Sessions
    return { onMessage: (exchange) => sessions.update(exchange.header("key") ?? "", { name: exchange.text }) }
  })),
  Logout.toLayer(Effect.gen(function*() {
    const sessions = yield* Sessions.Sessions
    return { onMessage: (exchange) => sessions.close(exchange.header("key") ?? "") }
  }))
)

// the value of each series of lhttp_session_operations_total, as `operation/outcome`
const sessionOperations = Effect.map(PrometheusMetrics.format(), (text) => {
  const values: Record<string, number> = {}
  for (const sample of parse(text).get("lhttp_session_operations_total")?.metrics ?? []) {
    values[`${sample.labels?.operation}/${sample.labels?.outcome}`] = Number(sample.value)
  }
  return values
})

describe("lhttp_session_operations_total and the poll gauge move with them", () => {
  it.live("lhttp_session_operations_total: one more in the series of each operation and its outcome (update, close and failures too)", () =>
    Effect.gen(function*() {
      // the memory store, down while `down` holds: every operation fails (503 SessionStoreUnavailable)
      let down = false
      const store = Layer.effect(
        SessionStore.SessionStore,
        Effect.map(SessionStore.makeMemory(), (memory) => {
          const failing = <A>(effect: Effect.Effect<A, SessionStore.SessionStoreError>) =>
            Effect.suspend(() =>
              down
                ? Effect.fail(new SessionStore.SessionStoreError({ reason: "Unavailable", message: "down" }))
                : effect
            )
          return SessionStore.SessionStore.of({
            get: (key) => failing(memory.get(key)),
            set: (key, session) => failing(memory.set(key, session)),
            delete: (key) => failing(memory.delete(key))
          })
        })
      )
      const { connect } = yield* startMemoryServer(
        { processors: [Sessions.SessionProcessor, Login, Rename, Logout] },
        SessionAppLive.pipe(Layer.provideMerge(Sessions.layer()), Layer.provide(store))
      )
      const client = yield* connect()
      const before = yield* sessionOperations
      const delta = Effect.map(
        sessionOperations,
        (now) => Object.fromEntries(Object.keys(now).sort().map((key) => [key, now[key]! - (before[key] ?? 0)]))
      )
      const answer = (text: string) => Effect.andThen(client.send(text), client.next())
      const key = /session-key:([^\r]+)/.exec(yield* answer("LHTTP/1.0 login\r\n\r\nalice"))?.[1] ?? ""
      assert.match(yield* answer(`LHTTP/1.0 rename\r\nkey:${key}\r\nid:u1\r\n\r\nbob`), /^LHTTP\/1\.0 session\r\n/)
      assert.match(
        yield* answer("LHTTP/1.0 rename\r\nkey:unknown\r\nid:u2\r\n\r\nbob"),
        /^LHTTP\/1\.0 error\r\nstatus:404\r\nreason:SessionNotFound\r\nid:u2\r\n/
      )
      down = true
      assert.match(
        yield* answer(`LHTTP/1.0 logout\r\nkey:${key}\r\nid:c1\r\n\r\n`),
        /^LHTTP\/1\.0 error\r\nstatus:503\r\nreason:SessionStoreUnavailable\r\nid:c1\r\n/
      )
      down = false
      assert.match(
        yield* answer(`LHTTP/1.0 logout\r\nkey:${key}\r\nid:c2\r\n\r\n`),
        new RegExp(`^LHTTP/1\\.0 session\\r\\nclosed:${key}\\r\\n`)
      )
      const other = yield* connect()
      yield* other.send(`LHTTP/1.0 session\r\nrestore:${key}\r\nid:r1\r\n\r\n`)
      assert.match(yield* other.next(), /^LHTTP\/1\.0 error\r\nstatus:404\r\nreason:SessionNotFound\r\nid:r1\r\n/)
      assert.deepStrictEqual(yield* delta, {
        "close/failed": 1,
        "close/ok": 1,
        "create/failed": 0,
        "create/ok": 1,
        "restore/failed": 1,
        "restore/ok": 0,
        "update/failed": 1,
        "update/ok": 1
      })
    }))

  it.live("lhttp_connections{transport=\"poll\"}: 1 while a long-poll connection is open, 0 again once it is closed", () =>
    Effect.gen(function*() {
      const { http } = yield* startServer({})
      const gauge = Effect.map(
        request(`${http}/metrics`),
        (response) => series(parse(response.body), "lhttp_connections", "transport")
      )
      assert.deepStrictEqual(yield* gauge, { websocket: "0", sse: "0", poll: "0" })
      const opened = yield* getJson(`${http}/poll`)
      assert.strictEqual(opened.status, 200)
      assert.deepStrictEqual(yield* gauge, { websocket: "0", sse: "0", poll: "1" })
      const closed = yield* Effect.promise(() =>
        fetch(`${http}/send?connection=${encodeURIComponent(opened.body.connection)}`, { method: "DELETE" })
      )
      assert.strictEqual(closed.status, 204)
      yield* until(Effect.map(gauge, (values) => values.poll === "0"))
      assert.deepStrictEqual(yield* gauge, { websocket: "0", sse: "0", poll: "0" })
    }))
})
