/**
 * Sessions on the in-memory transport: created by a processor, announced by a
 * `session` frame, restored by key on other connections, updated, closed,
 * expired, and signalled, with every connection of a session kept in step.
 */
import { assert, describe, it } from "@effect/vitest"
import { Kvm } from "@nats-io/kv"
import * as Nats from "@nats-io/transport-node"
import { Deferred, Effect, Exit, Fiber, Layer, Option, Schema, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as NatsBus from "../src/NatsBus.ts"
import * as NatsSessionStore from "../src/NatsSessionStore.ts"
import * as Processor from "../src/Processor.ts"
import * as Sessions from "../src/Sessions.ts"
import * as SessionStore from "../src/SessionStore.ts"
import { frame } from "./utils/lhttp.ts"
import { startMemoryServer } from "./utils/memory.ts"
import { natsServer, natsServerWith } from "./utils/nats.ts"
import { eventually, until } from "./utils/wait.ts"

// login creates a session with the body's name; rename updates it; logout closes it; notify signals it
const Login = Processor.make("login", { body: Schema.fromJsonString(Schema.Struct({ name: Schema.String })) })
const Rename = Processor.make("rename")
const Logout = Processor.make("logout")
const Notify = Processor.make("notify")
const Whoami = Processor.make("whoami")
const AppLive = Layer.mergeAll(
  Login.toLayer(Effect.gen(function*() {
    const sessions = yield* Sessions.Sessions
    return {
      onMessage: (exchange) => Effect.asVoid(sessions.create(exchange.connection, { name: exchange.body.name }))
    }
  })),
  Rename.toLayer(Effect.gen(function*() {
    const sessions = yield* Sessions.Sessions
    return { onMessage: (exchange) => sessions.update(exchange.header("key")!, { name: exchange.text }) }
  })),
  Logout.toLayer(Effect.gen(function*() {
    const sessions = yield* Sessions.Sessions
    return { onMessage: (exchange) => sessions.close(sessions.keyOf(exchange.connection)!) }
  })),
  Notify.toLayer(Effect.gen(function*() {
    const sessions = yield* Sessions.Sessions
    return {
      onMessage: (exchange) =>
        Effect.orDie(sessions.signal(sessions.keyOf(exchange.connection)!, "notice", { from: "server" }, exchange.text))
    }
  })),
  Whoami.toLayer(Effect.gen(function*() {
    const sessions = yield* Sessions.Sessions
    return {
      onMessage: (exchange) =>
        Effect.flatMap(
          sessions.current(exchange.connection),
          (session) =>
            exchange.send(Option.match(session, { onNone: () => "nobody", onSome: (s) => JSON.stringify(s.data) }))
        )
    }
  }))
)

// a request that waits at a gate the test opens
let gate = Deferred.makeUnsafe<void>()
let waiting = 0
const Wait = Processor.make("wait")
const WaitLive = Wait.toLayer({
  onMessage: (exchange) =>
    Effect.sync(() => waiting++).pipe(
      Effect.andThen(Effect.suspend(() => Deferred.await(gate))),
      Effect.andThen(exchange.send("done"))
    )
})

const server = (options?: Sessions.Options, store: Layer.Layer<SessionStore.SessionStore> = SessionStore.layerMemory) =>
  startMemoryServer(
    { processors: [Sessions.SessionProcessor, Login, Rename, Logout, Notify, Whoami] },
    AppLive.pipe(Layer.provideMerge(Sessions.layer(options)), Layer.provide(store))
  )

/** The key and data of a `session` frame. */
const sessionOf = (text: string) => {
  const match = /^LHTTP\/1\.0 session\r\nsession-key:([A-Za-z0-9_-]+)\r\n(?:id:([^\r]*)\r\n)?\r\n(.*)$/s.exec(text)
  assert.isNotNull(match, text)
  return { key: match![1]!, id: match![2], data: JSON.parse(match![3]!) }
}

const notFound = (id: string) =>
  `LHTTP/1.0 error\r\nstatus:404\r\nreason:SessionNotFound\r\nid:${id}\r\n\r\nno such session: unknown, closed or expired`

describe("Sessions", () => {
  it.live("a processor creates a session: the connection gets a session frame with an unguessable key and the data", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const client = yield* connect()
      yield* client.send(frame("login", {}, "{\"name\":\"alice\"}"))
      const session = sessionOf(yield* client.next())
      assert.match(session.key, /^[A-Za-z0-9_-]{22}$/)
      assert.deepStrictEqual(session.data, { name: "alice" })
      yield* client.send(frame("whoami"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 whoami\r\n\r\n{\"name\":\"alice\"}")
      // two logins, two keys
      const other = yield* connect()
      yield* other.send(frame("login", {}, "{\"name\":\"bob\"}"))
      assert.notStrictEqual(sessionOf(yield* other.next()).key, session.key)
    }))

  it.live("restore on another connection: the session frame with the request's id; both connections get updates and the close", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const first = yield* connect()
      yield* first.send(frame("login", {}, "{\"name\":\"alice\"}"))
      const { key } = sessionOf(yield* first.next())
      const second = yield* connect()
      yield* second.send(frame("session", { restore: key, id: "r1" }))
      assert.deepStrictEqual(sessionOf(yield* second.next()), { key, id: "r1", data: { name: "alice" } })
      yield* second.send(frame("whoami"))
      assert.strictEqual(yield* second.next(), "LHTTP/1.0 whoami\r\n\r\n{\"name\":\"alice\"}")
      // an update reaches both
      yield* second.send(frame("rename", { key }, "alicia"))
      assert.deepStrictEqual(sessionOf(yield* first.next()), { key, id: undefined, data: { name: "alicia" } })
      assert.deepStrictEqual(sessionOf(yield* second.next()), { key, id: undefined, data: { name: "alicia" } })
      // a signal reaches both
      yield* first.send(frame("notify", {}, "tea is ready"))
      assert.strictEqual(yield* first.next(), "LHTTP/1.0 notice\r\nfrom:server\r\n\r\ntea is ready")
      assert.strictEqual(yield* second.next(), "LHTTP/1.0 notice\r\nfrom:server\r\n\r\ntea is ready")
      // the close reaches both; the key no longer restores
      yield* first.send(frame("logout"))
      assert.strictEqual(yield* first.next(), `LHTTP/1.0 session\r\nclosed:${key}\r\n\r\n`)
      assert.strictEqual(yield* second.next(), `LHTTP/1.0 session\r\nclosed:${key}\r\n\r\n`)
      yield* second.send(frame("whoami"))
      assert.strictEqual(yield* second.next(), "LHTTP/1.0 whoami\r\n\r\nnobody")
      const third = yield* connect()
      yield* third.send(frame("session", { restore: key, id: "r2" }))
      assert.strictEqual(yield* third.next(), notFound("r2"))
    }))

  it.live("the hooks: generateKey makes the key; onCreated and onClosed run with the session", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      let n = 0
      const { connect } = yield* server({
        generateKey: () => `key-${++n}-unguessable-enough`,
        onCreated: (session, connection) =>
          Effect.sync(() => events.push(`created ${session.key} ${JSON.stringify(session.data)} ${connection.url}`)),
        onClosed: (key) => Effect.sync(() => events.push(`closed ${key}`))
      })
      const client = yield* connect("/hooks")
      yield* client.send(frame("login", {}, "{\"name\":\"hook\"}"))
      assert.strictEqual(sessionOf(yield* client.next()).key, "key-1-unguessable-enough")
      yield* client.send(frame("logout"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 session\r\nclosed:key-1-unguessable-enough\r\n\r\n")
      assert.deepStrictEqual(events, [
        "created key-1-unguessable-enough {\"name\":\"hook\"} /hooks",
        "closed key-1-unguessable-enough"
      ])
    }))

  it.live("an unknown key, and a connection without a session, get 404 SessionNotFound", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const client = yield* connect()
      yield* client.send(frame("session", { restore: "not-a-key", id: "u" }))
      assert.strictEqual(yield* client.next(), notFound("u"))
      yield* client.send(frame("session", { id: "c" }))
      assert.strictEqual(yield* client.next(), notFound("c"))
    }))

  it.effect("a session expires ttl after it was last used; restoring refreshes it (TestClock)", () =>
    Effect.gen(function*() {
      const { connect } = yield* server({ ttl: "300 millis" })
      const client = yield* connect()
      yield* client.send(frame("login", {}, "{\"name\":\"brief\"}"))
      const { key } = sessionOf(yield* client.next())
      yield* TestClock.adjust("200 millis")
      const other = yield* connect()
      yield* other.send(frame("session", { restore: key, id: "r1" }))
      assert.strictEqual(sessionOf(yield* other.next()).key, key)
      // 400 ms after the login, 200 ms after the restore: still there
      yield* TestClock.adjust("200 millis")
      yield* client.send(frame("whoami"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 whoami\r\n\r\n{\"name\":\"brief\"}")
      // 300 ms after the last use: gone
      yield* TestClock.adjust("101 millis")
      yield* client.send(frame("whoami"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 whoami\r\n\r\nnobody")
      yield* other.send(frame("session", { restore: key, id: "r2" }))
      assert.strictEqual(yield* other.next(), notFound("r2"))
    }))

  it.effect("a restore renews the session only once a hundredth of the ttl has passed since it last was (TestClock)", () =>
    Effect.gen(function*() {
      // the memory store, its writes counted
      let writes = 0
      const counted = Layer.effect(
        SessionStore.SessionStore,
        Effect.map(SessionStore.makeMemory(), (store) =>
          SessionStore.SessionStore.of({
            ...store,
            set: (key, session) => Effect.andThen(Effect.sync(() => writes++), store.set(key, session))
          }))
      )
      const { connect } = yield* server({ ttl: "100 seconds" }, counted)
      const client = yield* connect()
      yield* client.send(frame("login", {}, "{\"name\":\"herd\"}"))
      const { key } = sessionOf(yield* client.next())
      assert.strictEqual(writes, 1)
      const restore = (id: string) =>
        Effect.gen(function*() {
          const other = yield* connect()
          yield* other.send(frame("session", { restore: key, id }))
          assert.strictEqual(sessionOf(yield* other.next()).key, key)
        })
      // within a second (a hundredth of 100 s) of the login: read, not written
      yield* TestClock.adjust("900 millis")
      yield* restore("r1")
      assert.strictEqual(writes, 1)
      // past it: renewed, and from then on 100 s again
      yield* TestClock.adjust("200 millis")
      yield* restore("r2")
      assert.strictEqual(writes, 2)
      yield* TestClock.adjust("99500 millis")
      yield* restore("r3")
      assert.strictEqual(writes, 3)
    }))

  it.effect("the ttl is 24 hours by default (TestClock)", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const client = yield* connect()
      yield* client.send(frame("login", {}, "{\"name\":\"day\"}"))
      const { key } = sessionOf(yield* client.next())
      yield* TestClock.adjust(24 * 3600_000 - 1)
      yield* client.send(frame("whoami"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 whoami\r\n\r\n{\"name\":\"day\"}")
      yield* TestClock.adjust(1)
      yield* client.send(frame("whoami"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 whoami\r\n\r\nnobody")
      const other = yield* connect()
      yield* other.send(frame("session", { restore: key, id: "r" }))
      assert.strictEqual(yield* other.next(), notFound("r"))
    }))

  it.live("a connection that ends leaves its session: nothing of the session is held for it", () =>
    Effect.gen(function*() {
      const { connect, hub } = yield* server()
      const client = yield* connect()
      yield* client.send(frame("login", {}, "{\"name\":\"gone\"}"))
      sessionOf(yield* client.next())
      assert.strictEqual(hub.channelCount(), 1)
      yield* client.transport.close
      yield* eventually(() => hub.channelCount() === 0)
    }))

  it.live("session data must be JSON", () =>
    Effect.gen(function*() {
      const Bad = Processor.make("bad")
      const BadLive = Bad.toLayer(Effect.gen(function*() {
        const sessions = yield* Sessions.Sessions
        return { onMessage: (exchange) => Effect.asVoid(sessions.create(exchange.connection, { n: 1n })) }
      }))
      const { connect } = yield* startMemoryServer(
        { processors: [Bad] },
        BadLive.pipe(Layer.provideMerge(Sessions.layer()), Layer.provide(SessionStore.layerMemory))
      )
      const client = yield* connect()
      yield* client.send(frame("bad", { id: "b" }))
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 error\r\nstatus:400\r\nreason:InvalidSessionData\r\nid:b\r\n\r\nsession data must be JSON"
      )
    }))
})

describe("Sessions in NATS KV, across nodes", () => {
  /** A node: a server core with its NATS bus and the NATS KV store, until its scope closes. */
  const node = (url: string) =>
    startMemoryServer(
      { processors: [Sessions.SessionProcessor, Login, Rename, Logout, Notify, Whoami, Wait] },
      Layer.merge(AppLive, WaitLive).pipe(
        Layer.provideMerge(Sessions.layer()),
        Layer.provide(NatsSessionStore.layer({ servers: url, connectRetry: "50 millis" }))
      ),
      { bus: NatsBus.layer({ servers: url, connectRetry: "50 millis" }) }
    )

  it.live("a session created on one node is restored on another, updates reach both, and it outlives its node", () =>
    Effect.gen(function*() {
      const nats = yield* natsServerWith({ jetstream: true })
      const scopeOne = yield* Scope.make()
      const one = yield* node(nats.url).pipe(Scope.provide(scopeOne))
      const two = yield* node(nats.url)
      const alice = yield* one.connect().pipe(Scope.provide(scopeOne))
      yield* alice.send(frame("login", {}, "{\"name\":\"alice\"}"))
      const { key } = sessionOf(yield* alice.next())
      const again = yield* two.connect()
      yield* again.send(frame("session", { restore: key, id: "r" }))
      assert.deepStrictEqual(sessionOf(yield* again.next()), { key, id: "r", data: { name: "alice" } })
      // an update on node two reaches the connection on node one (over the bus), and its own
      yield* again.send(frame("rename", { key }, "alicia"))
      assert.deepStrictEqual(sessionOf(yield* again.next()).data, { name: "alicia" })
      assert.deepStrictEqual(sessionOf(yield* alice.next()).data, { name: "alicia" })
      // node one stops; the session lives on in NATS: a new connection on node two restores it
      yield* Scope.close(scopeOne, Exit.void)
      const later = yield* two.connect()
      yield* later.send(frame("session", { restore: key, id: "r2" }))
      assert.deepStrictEqual(sessionOf(yield* later.next()), { key, id: "r2", data: { name: "alicia" } })
      // closed on node two: gone for everyone
      yield* later.send(frame("logout"))
      assert.strictEqual(yield* later.next(), `LHTTP/1.0 session\r\nclosed:${key}\r\n\r\n`)
      const last = yield* two.connect()
      yield* last.send(frame("session", { restore: key, id: "r3" }))
      assert.strictEqual(yield* last.next(), notFound("r3"))
    }))

  it.live("a node drains: its request in flight replies, a new one gets ShuttingDown, then 1012; the client restores its session on the other node", () =>
    Effect.gen(function*() {
      const nats = yield* natsServerWith({ jetstream: true })
      gate = Deferred.makeUnsafe()
      const one = yield* node(nats.url)
      const two = yield* node(nats.url)
      const client = yield* one.connect()
      yield* client.send(frame("login", {}, "{\"name\":\"carol\"}"))
      const { key } = sessionOf(yield* client.next())
      yield* client.send(frame("wait", { id: "w" }))
      yield* eventually(() => waiting > 0)
      const draining = yield* Effect.forkChild(one.server.drain)
      yield* eventually(() => one.server.isDraining())
      yield* client.send(frame("whoami", { id: "late" }))
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 error\r\nstatus:503\r\nreason:ShuttingDown\r\nid:late\r\n\r\nthe server is shutting down: send the request again after reconnecting"
      )
      yield* Deferred.succeed(gate, undefined)
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 wait\r\nid:w\r\n\r\ndone")
      assert.strictEqual((yield* client.closed).code, 1012)
      yield* Fiber.join(draining)
      // it reconnects elsewhere and restores its session there
      const again = yield* two.connect()
      yield* again.send(frame("session", { restore: key, id: "r" }))
      assert.deepStrictEqual(sessionOf(yield* again.next()), { key, id: "r", data: { name: "carol" } })
      yield* again.send(frame("whoami"))
      assert.strictEqual(yield* again.next(), "LHTTP/1.0 whoami\r\n\r\n{\"name\":\"carol\"}")
    }))

  it.live("a nats-server without JetStream: sessions are kept on each node only; a login restores on its node, another node answers 404", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      const one = yield* node(nats.url)
      const two = yield* node(nats.url)
      const alice = yield* one.connect()
      yield* alice.send(frame("login", { id: "l" }, "{\"name\":\"alice\"}"))
      const { key } = sessionOf(yield* alice.next())
      const again = yield* one.connect()
      yield* again.send(frame("session", { restore: key, id: "r" }))
      assert.deepStrictEqual(sessionOf(yield* again.next()), { key, id: "r", data: { name: "alice" } })
      const elsewhere = yield* two.connect()
      yield* elsewhere.send(frame("session", { restore: key, id: "r2" }))
      assert.strictEqual(yield* elsewhere.next(), notFound("r2"))
    }))

  it.live("the NATS KV bucket's maximum age is the ttl: 24 hours by default, else the ttl given", () =>
    Effect.gen(function*() {
      const nats = yield* natsServerWith({ jetstream: true })
      const nc = yield* Effect.acquireRelease(
        Effect.promise(() => Nats.connect({ servers: nats.url })),
        (nc) => Effect.promise(() => nc.close())
      )
      const maxAge = (bucket: string) =>
        Effect.promise(async () => (await (await new Kvm(nc).open(bucket)).status()).ttl)
      const byDefault = yield* NatsSessionStore.make({ servers: nats.url })
      assert.isTrue(yield* byDefault.isReady!)
      assert.strictEqual(yield* maxAge("lhttp-sessions"), 24 * 3600_000)
      const given = yield* NatsSessionStore.make({ servers: nats.url, bucket: "short-sessions", ttl: "90 seconds" })
      assert.isTrue(yield* given.isReady!)
      assert.strictEqual(yield* maxAge("short-sessions"), 90_000)
    }))

  it.live(
    "NATS not up yet: a login gets 503 SessionStoreUnavailable; once NATS is up, a login is in KV and another node restores it",
    () =>
      Effect.gen(function*() {
        // a JetStream server on a port reserved now, down until the test starts it again
        const nats = yield* natsServerWith({ jetstream: true })
        yield* Effect.promise(() => nats.kill())
        const one = yield* node(nats.url)
        const early = yield* one.connect()
        yield* early.send(frame("login", { id: "l1" }, "{\"name\":\"early\"}"))
        assert.strictEqual(
          yield* early.next(),
          "LHTTP/1.0 error\r\nstatus:503\r\nreason:SessionStoreUnavailable\r\nid:l1\r\n\r\nthe session store failed: the session store has not reached NATS yet"
        )
        // nothing was kept of it
        yield* early.send(frame("whoami"))
        assert.strictEqual(yield* early.next(), "LHTTP/1.0 whoami\r\n\r\nnobody")
        yield* Effect.promise(() => nats.restart())
        const store = yield* NatsSessionStore.make({ servers: nats.url })
        const two = yield* node(nats.url)
        // the store of node one decides within its retry: the login succeeds once it has
        let key = ""
        yield* until(
          Effect.gen(function*() {
            const client = yield* one.connect()
            yield* client.send(frame("login", { id: "l2" }, "{\"name\":\"later\"}"))
            const answer = yield* client.next()
            if (answer.startsWith("LHTTP/1.0 error")) return false
            key = sessionOf(answer).key
            return true
          }),
          "10 seconds"
        )
        assert.isTrue(Option.isSome(yield* store.get(key)))
        const elsewhere = yield* two.connect()
        yield* elsewhere.send(frame("session", { restore: key, id: "r" }))
        assert.deepStrictEqual(sessionOf(yield* elsewhere.next()), { key, id: "r", data: { name: "later" } })
      }),
    30_000
  )
})
