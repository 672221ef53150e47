/**
 * The server API: its HTTP face on the main job (`POST /api/<operation>`,
 * behind `LHTTP_API_KEY`), two main-job nodes on a real NATS with users
 * connected to both, every operation cluster-wide with `complete`, a node
 * that does not answer; and the Effect service on two in-process nodes.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Stream } from "effect"
import { fileURLToPath } from "node:url"
import type * as Authorization from "../src/Authorization.ts"
import type * as Bus from "../src/Bus.ts"
import * as Connection from "../src/Connection.ts"
import { version } from "../src/internal/server/version.ts"
import * as NatsBus from "../src/NatsBus.ts"
import type * as Presence from "../src/Presence.ts"
import * as Processor from "../src/Processor.ts"
import * as Rejection from "../src/Rejection.ts"
import * as ServerApi from "../src/ServerApi.ts"
import { connect, frame, request, startServer } from "./utils/lhttp.ts"
import { startMemoryServer } from "./utils/memory.ts"
import { natsServer, natsServerWith } from "./utils/nats.ts"
import { freePort, start } from "./utils/process.ts"
import { until } from "./utils/wait.ts"

const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))
const key = "api-k3y"

/** The main job on a free port until the scope closes, with the API key and the environment given. */
const node = (env: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const port = yield* Effect.promise(() => freePort())
    const program = start(main, {
      env: { LHTTP_PORT: String(port), LHTTP_HOST: "127.0.0.1", LHTTP_API_KEY: key, ...env }
    })
    yield* Effect.addFinalizer(() => Effect.promise(() => program.stop("SIGTERM", 3_000)))
    yield* Effect.promise(() => program.waitFor(/listening on/, 15_000))
    const base = `http://127.0.0.1:${port}`
    return { program, ws: `ws://127.0.0.1:${port}/`, base }
  })

/** Calls an operation over HTTP: its status and JSON answer. */
const call = (base: string, operation: string, body: unknown, bearer: string | null = key) =>
  Effect.map(
    request(`${base}/api/${operation}`, {
      method: "POST",
      headers: bearer === null ? {} : { authorization: `Bearer ${bearer}` },
      body: typeof body === "string" ? body : JSON.stringify(body)
    }),
    (response) => ({ status: response.status, json: JSON.parse(response.body) as Record<string, unknown> })
  )

/** A WebSocket client logged in as `user` (the demo's login makes the name the connection's user). */
const user = (url: string, name: string, channels: ReadonlyArray<string> = []) =>
  Effect.gen(function*() {
    const client = yield* connect(url)
    yield* client.send(frame("login", { id: "l" }, JSON.stringify({ name })))
    assert.include(yield* client.next("5 seconds"), "LHTTP/1.0 session")
    if (channels.length > 0) yield* client.send(frame("join", { subscribe: channels.join(" ") }))
    yield* client.nothing()
    return client
  })

describe("ServerApi over HTTP: the key, the sizes, bad requests", () => {
  it.live("without LHTTP_API_KEY the API is off for everyone, loopback too: 403 ApiDisabled", () =>
    Effect.gen(function*() {
      const { base } = yield* node({ LHTTP_API_KEY: "" })
      const off = yield* call(base, "info", {})
      assert.deepStrictEqual([off.status, off.json.reason], [403, "ApiDisabled"])
    }))

  it.live("a missing or wrong key is 401; bad JSON, a non-object, an unknown operation, a bad request, an oversize body, GET", () =>
    Effect.gen(function*() {
      const { base } = yield* node()
      const missing = yield* call(base, "info", {}, null)
      assert.deepStrictEqual([missing.status, missing.json.reason], [401, "Unauthorized"])
      const wrong = yield* call(base, "info", {}, "api-k3x")
      assert.deepStrictEqual([wrong.status, wrong.json.reason], [401, "Unauthorized"])
      const notJson = yield* call(base, "info", "{nope")
      assert.deepStrictEqual([notJson.status, notJson.json.reason], [400, "InvalidJson"])
      const array = yield* call(base, "info", [1])
      assert.deepStrictEqual([array.status, array.json.reason], [400, "InvalidJson"])
      const unknown = yield* call(base, "teleport", {})
      assert.deepStrictEqual([unknown.status, unknown.json.reason], [404, "UnknownOperation"])
      const noChannel = yield* call(base, "publish", { command: "x", body: "y" })
      assert.deepStrictEqual([noChannel.status, noChannel.json.reason], [400, "InvalidRequest"])
      const badChannel = yield* call(base, "publish", { channel: "has space", command: "x" })
      assert.deepStrictEqual([badChannel.status, badChannel.json.reason], [400, "InvalidRequest"])
      const badCommand = yield* call(base, "publish", { channel: "ok", command: "two\r\nlines" })
      assert.deepStrictEqual([badCommand.status, badCommand.json.reason], [400, "InvalidRequest"])
      const noTarget = yield* call(base, "disconnect", {})
      assert.deepStrictEqual([noTarget.status, noTarget.json.reason], [400, "InvalidRequest"])
      const badCode = yield* call(base, "disconnect", { user: "a", code: 1000 })
      assert.deepStrictEqual([badCode.status, badCode.json.reason], [400, "InvalidRequest"])
      const huge = yield* call(base, "publish", { channel: "ok", command: "x", body: "x".repeat(1024 * 1024) })
      assert.deepStrictEqual([huge.status, huge.json.reason], [413, "TooLarge"])
      const get = yield* request(`${base}/api/info`, { headers: { authorization: `Bearer ${key}` } })
      assert.strictEqual(get.status, 405)
    }))
})

describe("ServerApi over HTTP: the rate", () => {
  it.live("past the node's rate (apiRate; 100 a second, 200 at once by default) a call is 429 RateLimited with Retry-After", () =>
    Effect.gen(function*() {
      const { http } = yield* startServer({ apiKey: key, apiRate: { perSecond: 0.001, burst: 2 } })
      const statuses = []
      for (let i = 0; i < 3; i++) statuses.push(yield* call(http, "info", {}))
      assert.deepStrictEqual(statuses.map(({ json, status }) => [status, json.reason]), [
        [200, undefined],
        [200, undefined],
        [429, "RateLimited"]
      ])
      const limited = yield* request(`${http}/api/info`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}` },
        body: "{}"
      })
      assert.strictEqual(limited.headers.get("retry-after"), "1")
    }))
})

describe("ServerApi over HTTP on two nodes (NATS): every operation, cluster-wide", () => {
  it.live(
    "users on both nodes: publish, broadcast, subscribe, unsubscribe, presence, stats, channels, info, history, batch, send (from a backend and from a user), disconnect",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerWith({ jetstream: true })
        const env = { LHTTP_NATS_URL: nats.url, LHTTP_HISTORY: "h-" }
        const one = yield* node(env)
        const two = yield* node(env)
        // both nodes see each other: info lists two, every node answered
        yield* until(Effect.map(call(one.base, "info", {}), ({ json }) => (json.nodes as Array<unknown>).length === 2))
        const alice1 = yield* user(one.ws, "alice", ["room-1", "h-log"])
        const alice2 = yield* user(two.ws, "alice", ["room-1"])
        const bob = yield* user(two.ws, "bob", ["room-1"])

        const info = yield* call(two.base, "info", {})
        assert.strictEqual(info.status, 200)
        assert.isTrue(info.json.complete)
        const nodes = info.json.nodes as Array<ServerApi.NodeInfo>
        assert.deepStrictEqual(nodes.map((n) => n.connections).sort(), [1, 2])
        for (const n of nodes) {
          assert.strictEqual(n.version, version)
          assert.strictEqual(n.transports.websocket, n.connections)
          assert.isTrue(n.ready)
          // each connection sent its login and its join; each got its login's answer
          assert.isAtLeast(n.messagesIn, 2 * n.connections)
          assert.isAtLeast(n.framesOut, n.connections)
          assert.isAbove(n.memory!, 10 * 1024 * 1024)
        }

        // publish: the frame as asked, to every subscriber on both nodes; a history channel answers its position
        const published = yield* call(one.base, "publish", {
          channel: "room-1",
          command: "news",
          headers: { from: "backend" },
          body: "hello"
        })
        assert.deepStrictEqual([published.status, published.json], [200, {}])
        for (const client of [alice1, alice2, bob]) {
          assert.strictEqual(
            yield* client.next("5 seconds"),
            "LHTTP/1.0 news\r\nfrom:backend\r\npublish:room-1\r\n\r\nhello"
          )
        }
        const logged = yield* call(two.base, "publish", { channel: "h-log", command: "log", body: "entry 1" })
        assert.strictEqual(logged.status, 200)
        assert.isNumber(logged.json.offset)
        assert.isString(logged.json.epoch)
        assert.include(yield* alice1.next("5 seconds"), "entry 1")

        // broadcast: one frame, each channel's position when it keeps history
        const broadcast = yield* call(one.base, "broadcast", {
          channels: ["room-2", "h-log"],
          command: "b",
          body: "all"
        })
        assert.strictEqual(broadcast.status, 200)
        assert.deepStrictEqual(Object.keys(broadcast.json.positions as object), ["h-log"])
        assert.strictEqual(yield* alice1.next("5 seconds"), "LHTTP/1.0 b\r\npublish:room-2 h-log\r\n\r\nall")

        // subscribe a user's connections on both nodes, server-side; then they get room-2
        const subscribed = yield* call(two.base, "subscribe", { user: "alice", channels: ["room-2"] })
        assert.deepStrictEqual(subscribed.json, { subscribed: 2, complete: true })
        yield* call(one.base, "publish", { channel: "room-2", command: "r2", body: "to alice" })
        assert.strictEqual(yield* alice1.next("5 seconds"), "LHTTP/1.0 r2\r\npublish:room-2\r\n\r\nto alice")
        assert.strictEqual(yield* alice2.next("5 seconds"), "LHTTP/1.0 r2\r\npublish:room-2\r\n\r\nto alice")
        yield* bob.nothing()

        // channels across nodes, by pattern
        const channels = yield* call(one.base, "channels", { pattern: "room-*" })
        assert.deepStrictEqual(channels.json, {
          channels: { "room-1": { subscribers: 3 }, "room-2": { subscribers: 2 } },
          complete: true
        })

        // presence shows users; the stats count connections and users
        const presence = yield* call(one.base, "presence", { channel: "room-1" })
        assert.isTrue(presence.json.complete)
        assert.deepStrictEqual(
          (presence.json.members as Array<Presence.Member>).map((member) => member.user).sort(),
          ["alice", "alice", "bob"]
        )
        const stats = yield* call(two.base, "presence_stats", { channel: "room-1" })
        assert.deepStrictEqual(stats.json, { connections: 3, users: 2, complete: true })

        // unsubscribe one connection of alice's, by its id
        const aliceOnTwo = (presence.json.members as Array<Presence.Member>).find((member) =>
          member.user === "alice" && member.node === nodes.find((n) => n.connections === 2)!.id
        )!
        const unsubscribed = yield* call(one.base, "unsubscribe", {
          connection: aliceOnTwo.connection,
          channels: ["room-2"]
        })
        assert.deepStrictEqual(unsubscribed.json, { unsubscribed: 1, complete: true })
        yield* call(one.base, "publish", { channel: "room-2", command: "r2", body: "again" })
        assert.include(yield* alice1.next("5 seconds"), "again")
        yield* alice2.nothing()

        // history: the latest first with reverse and a limit; then removed
        const history = yield* call(one.base, "history", { channel: "h-log", limit: 1, reverse: true })
        assert.strictEqual(history.status, 200)
        const messages = history.json.messages as Array<ServerApi.HistoryMessage>
        assert.deepStrictEqual(messages.map((m) => [m.command, m.body]), [["b", "all"]])
        const all = yield* call(two.base, "history", { channel: "h-log" })
        assert.deepStrictEqual((all.json.messages as Array<ServerApi.HistoryMessage>).map((m) => m.body), [
          "entry 1",
          "all"
        ])
        const noHistory = yield* call(one.base, "history", { channel: "room-1" })
        assert.deepStrictEqual([noHistory.status, noHistory.json.reason], [404, "NoHistory"])
        assert.deepStrictEqual((yield* call(one.base, "history_remove", { channel: "h-log" })).json, {})
        const removed = yield* call(one.base, "history", { channel: "h-log" })
        assert.deepStrictEqual(removed.json.messages, [])

        // batch: each answered or refused on its own
        const batch = yield* call(two.base, "batch", {
          commands: [{ operation: "presence_stats", request: { channel: "room-1" } }, { operation: "nope" }]
        })
        assert.deepStrictEqual(batch.json.replies, [
          { reply: { connections: 3, users: 2, complete: true } },
          { error: { reason: "UnknownOperation", message: "no operation nope" } }
        ])

        // send: one frame to a user's connections on both nodes, from a backend and from another user
        const sent = yield* call(two.base, "send", {
          user: "alice",
          command: "dm",
          headers: { from: "backend" },
          body: "psst"
        })
        assert.deepStrictEqual(sent.json, { delivered: 2, complete: true })
        for (const client of [alice1, alice2]) {
          assert.strictEqual(yield* client.next("5 seconds"), "LHTTP/1.0 dm\r\nfrom:backend\r\n\r\npsst")
        }
        yield* bob.send(frame("send", { id: "s", user: "alice", command: "dm" }, "hi alice"))
        assert.strictEqual(
          yield* bob.next("5 seconds"),
          "LHTTP/1.0 send\r\nid:s\r\ndelivered:2\r\ncomplete:yes\r\n\r\n"
        )
        for (const client of [alice1, alice2]) {
          assert.strictEqual(yield* client.next("5 seconds"), "LHTTP/1.0 dm\r\nfrom:bob\r\n\r\nhi alice")
        }
        yield* bob.send(frame("send", { id: "n", user: "nobody" }, "anyone?"))
        assert.strictEqual(
          yield* bob.next("5 seconds"),
          "LHTTP/1.0 send\r\nid:n\r\ndelivered:0\r\ncomplete:yes\r\n\r\n"
        )
        const anonymous = yield* connect(one.ws)
        yield* anonymous.send(frame("send", { id: "a", user: "alice" }, "hi"))
        assert.include(yield* anonymous.next("5 seconds"), "reason:UserRequired")
        yield* alice1.nothing()

        // disconnect a user everywhere, with a code and a reason the client sees
        const disconnected = yield* call(one.base, "disconnect", { user: "alice", code: 4003, reason: "bye" })
        assert.deepStrictEqual(disconnected.json, { disconnected: 2, complete: true })
        for (const client of [alice1, alice2]) {
          assert.deepStrictEqual(yield* client.closed, { code: 4003, reason: "bye" })
        }
        yield* bob.nothing()
      }),
    { timeout: 60_000 }
  )

  it.live(
    "a node that does not answer: complete is false within the timeout, the other node's answer is there",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServer
        const one = yield* node({ LHTTP_NATS_URL: nats.url })
        const two = yield* node({ LHTTP_NATS_URL: nats.url })
        yield* until(Effect.map(call(one.base, "info", {}), ({ json }) => (json.nodes as Array<unknown>).length === 2))
        yield* user(one.ws, "carol")
        // the other node stops answering (its process paused), still counted as a node of the cluster
        two.program.child.kill("SIGSTOP")
        yield* Effect.addFinalizer(() => Effect.sync(() => two.program.child.kill("SIGCONT")))
        const started = Date.now()
        const info = yield* call(one.base, "info", {})
        const disconnected = yield* call(one.base, "disconnect", { user: "carol" })
        assert.isBelow(Date.now() - started, 6_000)
        assert.isFalse(info.json.complete)
        assert.strictEqual((info.json.nodes as Array<unknown>).length, 1)
        assert.deepStrictEqual(disconnected.json, { disconnected: 1, complete: false })
      }),
    { timeout: 60_000 }
  )
})

// `as` makes the connection's user what its body says, as an authenticate hook would from a token
const As = Processor.make("as")
const AsLive = As.toLayer({
  onMessage: (exchange) => Effect.sync(() => exchange.connection.set(Connection.user, exchange.text))
})

describe("ServerApi as an Effect service, on two in-process nodes (NATS)", () => {
  it.live(
    "every operation, typed: subscribe, publish, broadcast, channels, unsubscribe, send, batch and disconnect reach a user's connections on both nodes; info lists both",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServer
        const node = (bus: Layer.Layer<Bus.Bus, unknown>) =>
          startMemoryServer({ processors: [As] }, AsLive, { bus, api: true })
        const one = yield* node(NatsBus.layer({ servers: nats.url }))
        const two = yield* node(NatsBus.layer({ servers: nats.url }))
        const api = one.api!
        // (until both nodes reach NATS and hear each other)
        yield* until(api.info().pipe(Effect.map(({ nodes }) => nodes.length === 2), Effect.orElseSucceed(() => false)))
        const dave = [yield* one.connect(), yield* two.connect()]
        for (const client of dave) {
          yield* client.send("LHTTP/1.0 as\r\n\r\ndave")
          yield* client.nothing()
        }
        assert.deepStrictEqual(yield* api.subscribe({ user: "dave", channels: ["d"] }), {
          subscribed: 2,
          complete: true
        })
        // the tail of a user: the frames sent to his connections on both nodes, each with its node
        const tailed = yield* api.tailUser("dave").pipe(Stream.take(2), Stream.runCollect, Effect.forkScoped)
        // (the tail's lease reaches both nodes over the bus: a round trip, well within this)
        yield* Effect.sleep("1 second")
        yield* api.publish({ channel: "d", command: "hi", body: "dave" })
        for (const client of dave) {
          assert.strictEqual(yield* client.next("5 seconds"), "LHTTP/1.0 hi\r\npublish:d\r\n\r\ndave")
        }
        const frames = Array.from(yield* Fiber.join(tailed).pipe(Effect.timeout("5 seconds")))
        assert.deepStrictEqual(
          frames.map((frame) => frame.text),
          Array(2).fill("LHTTP/1.0 hi\r\npublish:d\r\n\r\ndave")
        )
        assert.strictEqual(new Set(frames.map((frame) => frame.node)).size, 2)
        const refused = yield* Effect.flip(api.publish({ channel: "$nope", command: "x" }))
        assert.strictEqual(refused.reason, "InvalidRequest")
        // the other operations, typed: broadcast, channels across both nodes, unsubscribe, batch by name
        const broadcast = yield* api.broadcast({ channels: ["d", "e"], command: "all", body: "both" })
        assert.deepStrictEqual(broadcast, { positions: {} })
        for (const client of dave) {
          assert.strictEqual(yield* client.next("5 seconds"), "LHTTP/1.0 all\r\npublish:d e\r\n\r\nboth")
        }
        assert.deepStrictEqual(yield* api.channels({ pattern: "d" }), {
          channels: { d: { subscribers: 2 } },
          complete: true
        })
        assert.deepStrictEqual(yield* api.unsubscribe({ user: "dave", channels: ["d"] }), {
          unsubscribed: 2,
          complete: true
        })
        assert.deepStrictEqual(yield* api.channels({ pattern: "d" }), { channels: {}, complete: true })
        assert.deepStrictEqual(
          yield* api.call("batch", {
            commands: [{ operation: "info" }, { operation: "presence", request: { channel: "d" } }]
          })
            .pipe(
              Effect.map((answer) =>
                (answer as { replies: Array<{ reply?: { complete: boolean }; error?: unknown }> }).replies.map((r) =>
                  r.error ?? r.reply?.complete
                )
              )
            ),
          [true, { reason: "PresenceOff", message: "this server runs no presence" }]
        )
        // what this node runs without, said by the typed failures
        assert.strictEqual((yield* Effect.flip(api.presenceStats({ channel: "d" }))).reason, "PresenceOff")
        assert.strictEqual((yield* Effect.flip(api.history({ channel: "d" }))).reason, "NoHistory")
        assert.strictEqual((yield* Effect.flip(api.historyRemove({ channel: "d" }))).reason, "NoHistory")
        assert.deepStrictEqual(yield* api.send({ user: "dave", command: "note", body: "for dave" }), {
          delivered: 2,
          complete: true
        })
        for (const client of dave) {
          assert.strictEqual(yield* client.next("5 seconds"), "LHTTP/1.0 note\r\n\r\nfor dave")
        }
        // without a code: 4500, which tells the clients not to come back
        assert.deepStrictEqual(yield* api.disconnect({ user: "dave" }), { disconnected: 2, complete: true })
        for (const client of dave) {
          assert.deepStrictEqual(yield* client.closed, { code: 4500, reason: "disconnected" })
        }
      }),
    { timeout: 30_000 }
  )
})

describe("ServerApi: the send command", () => {
  it.live("its authorize option decides on each send; the target is a user or a connection, not both", () =>
    Effect.gen(function*() {
      const authorize = (request: Authorization.Authorization) =>
        request.user === "ceo" ? Effect.fail(Rejection.forbidden("no one writes to the ceo")) : Effect.void
      const { connect } = yield* startMemoryServer(
        { processors: [As, ServerApi.SendProcessor] },
        Layer.mergeAll(AsLive, ServerApi.layerSendProcessor({ authorize })),
        { api: true }
      )
      const [erin, ceo] = [yield* connect(), yield* connect()]
      yield* erin.send("LHTTP/1.0 as\r\n\r\nerin")
      yield* ceo.send("LHTTP/1.0 as\r\n\r\nceo")
      yield* ceo.nothing()
      yield* erin.send("LHTTP/1.0 send\r\nid:1\r\nuser:ceo\r\n\r\nraise?")
      assert.include(yield* erin.next(), "status:403\r\nreason:Forbidden")
      yield* erin.send("LHTTP/1.0 send\r\nid:2\r\nuser:ceo\r\nconnection:x\r\n\r\n?")
      assert.include(yield* erin.next(), "reason:InvalidRequest")
      yield* erin.send("LHTTP/1.0 send\r\nid:3\r\nuser:erin\r\n\r\nnote to self")
      assert.strictEqual(yield* erin.next(), "LHTTP/1.0 send\r\nfrom:erin\r\n\r\nnote to self")
      assert.strictEqual(yield* erin.next(), "LHTTP/1.0 send\r\nid:3\r\ndelivered:1\r\ncomplete:yes\r\n\r\n")
      yield* ceo.nothing()
    }))
})

describe("ServerApi: what info says of a node", () => {
  it("the version is the package's", async () => {
    const { readFile } = await import("node:fs/promises")
    const pkg = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8")) as { version: string }
    assert.strictEqual(version, pkg.version)
  })
})
