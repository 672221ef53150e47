/**
 * The main job (`src/main.ts`) reads `LHTTP_CONNECTIONS_PER_SECOND`,
 * `LHTTP_PRESENCE_EVENTS`, `LHTTP_SESSION_BUCKET`, `LHTTP_HISTORY_STREAM` and
 * `LHTTP_PORT` (README, "Configuration"; docs/cluster.md), and each has its
 * effect: the tests start the real process with the variable set (or unset,
 * for the default port) and look at what it does, not at what it parsed.
 */
import { assert, describe, it } from "@effect/vitest"
import { jetstreamManager } from "@nats-io/jetstream"
import { Kvm } from "@nats-io/kv"
import * as Nats from "@nats-io/transport-node"
import { Cause, Config, ConfigProvider, Context, Effect, Exit, Layer, Option, Result } from "effect"
import * as Net from "node:net"
import { fileURLToPath } from "node:url"
import * as Bus from "../src/Bus.ts"
import * as Channel from "../src/Channel.ts"
import * as History from "../src/History.ts"
import { configErrorLine } from "../src/internal/server/config.ts"
import * as NatsBus from "../src/NatsBus.ts"
import * as NatsHistory from "../src/NatsHistory.ts"
import * as NatsSessionStore from "../src/NatsSessionStore.ts"
import * as NodeLhttpServer from "../src/NodeLhttpServer.ts"
import * as NodeUpstream from "../src/NodeUpstream.ts"
import * as SessionStore from "../src/SessionStore.ts"
import * as Upstream from "../src/Upstream.ts"
import { connect, frame, type TestClient } from "./utils/lhttp.ts"
import { natsServerWith } from "./utils/nats.ts"
import { freePort, type Options, start } from "./utils/process.ts"

const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))

/** The main job until the test's scope closes, once it listens. */
const mainJob = (env: NonNullable<Options["env"]>) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const program = start(main, { env })
      await program.waitFor(/listening on/, 20_000)
      return program
    }),
    (program) => Effect.promise(() => program.stop("SIGTERM", 3_000))
  )

/** An HTTP upgrade to `/` from `localAddress`, as raw bytes; resolves with the whole answer once the server closes. */
const upgrade = (port: number, localAddress = "127.0.0.1") =>
  Effect.callback<string>((resume) => {
    const socket = Net.connect({ port, host: "127.0.0.1", localAddress }, () =>
      socket.write(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
      ))
    let answer = ""
    socket.on("data", (chunk) => {
      answer += chunk.toString()
      // an accepted upgrade stays open: its 101 head is the answer
      if (answer.startsWith("HTTP/1.1 101 ") && answer.includes("\r\n\r\n")) socket.destroy()
    })
    socket.on("close", () => resume(Effect.succeed(answer)))
    socket.on("error", () => {})
    return Effect.sync(() => socket.destroy())
  })

/** The next `count` frames, in the order they came. */
const take = (client: TestClient, count: number) =>
  Effect.gen(function*() {
    const frames: Array<string> = []
    for (let i = 0; i < count; i++) frames.push(yield* client.next())
    return frames
  })

describe("the main job: LHTTP_CONNECTIONS_PER_SECOND and LHTTP_PRESENCE_EVENTS", () => {
  it.live("LHTTP_CONNECTIONS_PER_SECOND=0.5: one new connection per address at once; the next quick one gets 503 with Retry-After", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(() => freePort())
      yield* mainJob({ LHTTP_PORT: String(port), LHTTP_HOST: "127.0.0.1", LHTTP_CONNECTIONS_PER_SECOND: "0.5" })
      // twice 0.5 at once: one; the next token comes 2 s later
      assert.match(yield* upgrade(port, "127.0.0.2"), /^HTTP\/1\.1 101 /)
      const refused = yield* upgrade(port, "127.0.0.2")
      assert.match(refused, /^HTTP\/1\.1 503 Service Unavailable\r\n/)
      assert.match(refused, /\r\nretry-after: [12]\r\n/)
      assert.isTrue(
        refused.endsWith("\r\n\r\nConnectingTooFast: too many new connections from this address: try again later\n"),
        refused
      )
      // per address: another one is admitted, and served
      const other = yield* connect(`ws://127.0.0.1:${port}/`, { localAddress: "127.0.0.3" })
      yield* other.send(frame("echo", {}, "admitted"))
      assert.strictEqual(yield* other.next(), frame("echo", {}, "admitted"))
    }))

  it.live("unset, there is no connection rate: ten quick connections from one address are all admitted", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(() => freePort())
      yield* mainJob({ LHTTP_PORT: String(port), LHTTP_HOST: "127.0.0.1" })
      for (let i = 0; i < 10; i++) assert.match(yield* upgrade(port, "127.0.0.2"), /^HTTP\/1\.1 101 /)
    }))

  it.live("LHTTP_PRESENCE_EVENTS=room-: join and leave frames on room- channels, none on others", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(() => freePort())
      yield* mainJob({ LHTTP_PORT: String(port), LHTTP_HOST: "127.0.0.1", LHTTP_PRESENCE_EVENTS: "room-" })
      const url = `ws://127.0.0.1:${port}/`
      const alice = yield* connect(url)
      const bob = yield* connect(url)
      yield* alice.send(frame("echo", { subscribe: "room-1 lobby", id: "a" }))
      // her reply, then her own join on room-1 only (lobby has no events)
      const [reply, own] = yield* take(alice, 2)
      assert.strictEqual(reply, frame("echo", { id: "a" }))
      assert.match(
        own!,
        /^LHTTP\/1\.0 presence\r\nchannel:room-1\r\nevent:join\r\nconnection:(\S+)\r\nnode:(\S+)\r\n\r\n\{"connection":"\1","node":"\2"\}$/
      )
      yield* alice.nothing()
      // bob joins lobby: alice gets nothing (her probe's answer is the next frame)
      yield* bob.send(frame("echo", { subscribe: "lobby", id: "b1" }))
      assert.strictEqual(yield* bob.next(), frame("echo", { id: "b1" }))
      yield* bob.nothing()
      yield* alice.nothing()
      // bob joins room-1: alice gets his join
      yield* bob.send(frame("echo", { subscribe: "room-1", id: "b2" }))
      const bobFrames = yield* take(bob, 2)
      const join = bobFrames.find((text) => text.startsWith("LHTTP/1.0 presence\r\n"))!
      assert.match(
        join,
        /^LHTTP\/1\.0 presence\r\nchannel:room-1\r\nevent:join\r\nconnection:(\S+)\r\nnode:(\S+)\r\n\r\n\{"connection":"\1","node":"\2"/
      )
      assert.strictEqual(yield* alice.next(), join)
      // bob leaves lobby: nothing; bob leaves room-1: alice gets his leave
      yield* bob.send(frame("echo", { unsubscribe: "lobby", id: "b3" }))
      assert.strictEqual(yield* bob.next(), frame("echo", { id: "b3" }))
      yield* alice.nothing()
      yield* bob.send(frame("echo", { unsubscribe: "room-1", id: "b4" }))
      assert.strictEqual(yield* bob.next(), frame("echo", { id: "b4" }))
      assert.strictEqual(yield* alice.next(), join.replace("event:join", "event:leave"))
    }))
})

describe("the main job on NATS: LHTTP_SESSION_BUCKET and LHTTP_HISTORY_STREAM", () => {
  it.live("sessions go to the KV bucket named, history to the stream named; the default ones are not made", () =>
    Effect.gen(function*() {
      const nats = yield* natsServerWith({ jetstream: true })
      const port = yield* Effect.promise(() => freePort())
      yield* mainJob({
        LHTTP_PORT: String(port),
        LHTTP_HOST: "127.0.0.1",
        LHTTP_NATS_URL: nats.url,
        LHTTP_SESSION_BUCKET: "env-sessions",
        LHTTP_HISTORY_STREAM: "ENV_HISTORY"
      })
      const client = yield* connect(`ws://127.0.0.1:${port}/`)
      yield* client.send(frame("login", { id: "l" }, "{\"name\":\"alice\"}"))
      const answer = yield* client.next()
      const key = /^LHTTP\/1\.0 session\r\nsession-key:([A-Za-z0-9_-]{22})\r\nid:l\r\n/.exec(answer)?.[1]
      assert.isString(key, answer)
      yield* client.send(frame("echo", { publish: "env-news", id: "p" }, "kept"))
      assert.strictEqual(yield* client.next(), frame("echo", { id: "p" }, "kept"))

      const nc = yield* Effect.acquireRelease(
        Effect.promise(() => Nats.connect({ servers: nats.url })),
        (nc) => Effect.promise(() => nc.close())
      )
      const jsm = yield* Effect.promise(() => jetstreamManager(nc))
      const streams = yield* Effect.promise(async () => (await jsm.streams.names().next()).sort())
      // the KV bucket is the stream KV_<bucket>
      assert.deepStrictEqual(streams, ["ENV_HISTORY", "KV_env-sessions"])
      const bucket = yield* Effect.promise(() => new Kvm(nc).open("env-sessions"))
      const keys = yield* Effect.promise(async () => {
        const found: Array<string> = []
        for await (const k of await bucket.keys()) found.push(k)
        return found
      })
      assert.strictEqual(keys.length, 1)
      const history = yield* Effect.promise(() => jsm.streams.info("ENV_HISTORY", { subjects_filter: ">" }))
      // the published message is in it, on its channel's subject
      assert.strictEqual(history.state.subjects?.["lhttp.env-news"], 1)
      const kept = yield* Effect.promise(() =>
        jsm.streams.getMessage("ENV_HISTORY", { last_by_subj: "lhttp.env-news" })
      )
      assert.include(kept!.string(), "kept")
    }))
})

describe("the main job: LHTTP_PORT", () => {
  it.effect("unset, the port read is 8081", () =>
    Effect.gen(function*() {
      const settings = yield* NodeLhttpServer.config.parse(ConfigProvider.fromEnv({ env: {} }))
      assert.strictEqual(settings.port, 8081)
    }))

  it.live("unset, the main job listens on 8081 (or, when 8081 is taken on this machine, says so naming 8081)", () =>
    Effect.gen(function*() {
      const program = start(main, { env: { LHTTP_HOST: "127.0.0.1" } })
      yield* Effect.addFinalizer(() => Effect.promise(() => program.stop("SIGTERM", 3_000)))
      const line = yield* Effect.promise(() => program.waitFor(/listening on|in use/, 20_000))
      if (/listening on/.test(line)) {
        assert.include(line, "listening on http://127.0.0.1:8081")
        const client = yield* connect("ws://127.0.0.1:8081/")
        yield* client.send(frame("echo", {}, "on 8081"))
        assert.strictEqual(yield* client.next(), frame("echo", {}, "on 8081"))
      } else {
        assert.strictEqual(line.trim(), "port 8081 on 127.0.0.1 is in use (LHTTP_PORT)")
      }
    }))
})

describe("layerFromEnv: one shape for NatsBus, NatsHistory, NatsSessionStore and NodeUpstream", () => {
  /** Builds `layer` with `env` as the environment (variables not named there are unset). */
  const build = <ROut, E>(layer: Layer.Layer<ROut, E>, env: Record<string, string>) =>
    Layer.build(layer).pipe(Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env }))))

  /** The one line of the `ConfigError` building `layer` with `env` fails with. */
  const lineOf = <ROut, E>(layer: Layer.Layer<ROut, E>, env: Record<string, string>) =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(build(layer, env))
      if (Exit.isSuccess(exit)) return assert.fail("built")
      const error = exit.cause.reasons.filter(Cause.isFailReason).map((reason) => reason.error)[0]
      if (!(error instanceof Config.ConfigError)) return assert.fail(`not a ConfigError: ${String(error)}`)
      return configErrorLine(error)
    })

  it.effect("each is a Layer value: without its variable, the documented default (memory, or no upstream)", () =>
    Effect.gen(function*() {
      const bus = Context.get(yield* build(NatsBus.layerFromEnv, {}), Bus.Bus)
      assert.deepStrictEqual([bus.numbering, yield* bus.isReady], ["publisher", true])
      const withHistory = yield* build(NatsHistory.layerFromEnv, {})
      const history = Context.get(withHistory, History.History)
      assert.strictEqual(Context.get(withHistory, Bus.Bus).numbering, "publisher")
      assert.strictEqual(history.numbering, "publisher")
      // LHTTP_HISTORY unset: every channel keeps its last 100 messages for 10 minutes
      assert.strictEqual(history.policyOf(Result.getOrThrow(Channel.validate("news")))?.size, 100)
      const store = Context.get(yield* build(NatsSessionStore.layerFromEnv, {}), SessionStore.SessionStore)
      assert.isUndefined(store.isReady)
      const upstream = yield* build(NodeUpstream.layerFromEnv, {})
      assert.isTrue(Option.isNone(Context.getOption(upstream, Upstream.Upstream)))
    }))

  it.live("with LHTTP_NATS_URL, the NATS ones: not ready while nothing answers there", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(() => freePort())
      const env = { LHTTP_NATS_URL: `nats://127.0.0.1:${port}` }
      const bus = Context.get(yield* build(NatsBus.layerFromEnv, env), Bus.Bus)
      assert.deepStrictEqual([bus.numbering, yield* bus.isReady], ["none", false])
      const withHistory = yield* build(NatsHistory.layerFromEnv, env)
      assert.deepStrictEqual(
        [Context.get(withHistory, Bus.Bus).numbering, Context.get(withHistory, History.History).numbering],
        ["bus", "bus"]
      )
      const store = Context.get(yield* build(NatsSessionStore.layerFromEnv, env), SessionStore.SessionStore)
      assert.isFalse(yield* store.isReady!)
    }))

  it.effect("the variables each reads are checked with or without NATS", () =>
    Effect.gen(function*() {
      for (const url of [{}, { LHTTP_NATS_URL: "nats://127.0.0.1:4222" }]) {
        assert.strictEqual(
          yield* lineOf(NatsBus.layerFromEnv, { ...url, LHTTP_NATS_PREFIX: "app" }),
          "LHTTP_NATS_PREFIX: expected empty or channel name tokens ending with \".\", such as \"lhttp.\", got \"app\""
        )
        assert.match(
          yield* lineOf(NatsHistory.layerFromEnv, { ...url, LHTTP_HISTORY_STREAM: "a.b" }),
          /^LHTTP_HISTORY_STREAM: /
        )
        assert.match(yield* lineOf(NatsHistory.layerFromEnv, { ...url, LHTTP_HISTORY: "::x" }), /^LHTTP_HISTORY: /)
        assert.match(
          yield* lineOf(NatsSessionStore.layerFromEnv, { ...url, LHTTP_SESSION_BUCKET: "a b" }),
          /^LHTTP_SESSION_BUCKET: /
        )
      }
      const badUrl = { LHTTP_NATS_URL: "http://127.0.0.1:4222" }
      assert.match(yield* lineOf(NatsBus.layerFromEnv, badUrl), /^LHTTP_NATS_URL: /)
      assert.match(yield* lineOf(NatsHistory.layerFromEnv, badUrl), /^LHTTP_NATS_URL: /)
      assert.match(yield* lineOf(NatsSessionStore.layerFromEnv, badUrl), /^LHTTP_NATS_URL: /)
      assert.match(
        yield* lineOf(NodeUpstream.layerFromEnv, { LHTTP_UPSTREAM_TIMEOUT: "soon" }),
        /^LHTTP_UPSTREAM_TIMEOUT: /
      )
    }))
})
