import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Result, Scope } from "effect"
import { TestClock } from "effect/testing"
import { vi } from "vitest"
import * as Bus from "../src/Bus.ts"
import * as Frame from "../src/Frame.ts"
import * as NatsBus from "../src/NatsBus.ts"
import * as Presence from "../src/Presence.ts"
import * as Processor from "../src/Processor.ts"
import { type MemoryClient, pending, startMemoryServer } from "./utils/memory.ts"
import { natsServer } from "./utils/nats.ts"
import { until } from "./utils/wait.ts"

const parsed = (text: string) => Result.getOrThrow(Frame.parse(text))
const headersOf = (text: string): Record<string, string | undefined> => Object.fromEntries(parsed(text).headers)

// `hello` sets what presence shows of the connection (its name), as a login would
const Hello = Processor.make("hello")
const HelloLive = Hello.toLayer({
  onMessage: (exchange) => Effect.sync(() => exchange.connection.set(Presence.info, { name: exchange.body }))
})

/** A node: a server core with presence (events on `ev-` channels, at most 3 members an answer). */
const node = (bus: Layer.Layer<Bus.Bus, unknown>) =>
  startMemoryServer(
    { processors: [Hello, Presence.PresenceProcessor] },
    Layer.merge(HelloLive, Presence.layer({ events: ["ev-"], maxMembers: 3, timeout: "2 seconds" })),
    { bus }
  )

/** Connects, says its name, subscribes to `channel`. */
const member = (connect: () => Effect.Effect<MemoryClient, unknown>, name: string, channel: string) =>
  Effect.gen(function*() {
    const client = yield* connect()
    yield* client.send(`LHTTP/1.0 hello\r\n\r\n${name}`)
    yield* client.send(`LHTTP/1.0 join\r\nsubscribe:${channel}\r\n\r\n`)
    // on a channel with events, its own join comes first
    if (channel.startsWith("ev-")) assert.deepInclude(headersOf(yield* client.next("5 seconds")), { event: "join" })
    yield* client.nothing()
    return client
  })

const ask = (client: MemoryClient, channel: string) =>
  Effect.gen(function*() {
    yield* client.send(`LHTTP/1.0 presence\r\nchannel:${channel}\r\nid:q\r\n\r\n`)
    const answer = yield* client.next("5 seconds")
    const names = (JSON.parse(parsed(answer).body) as Array<Presence.Member>).map((m) =>
      (m.info as { name: string }).name
    )
    return { headers: headersOf(answer), names: names.sort() }
  })

describe("Presence on one node (memory bus)", () => {
  it.effect("the presence command lists the channel's members with what the app set; only for a subscribed channel", () =>
    Effect.gen(function*() {
      const { connect } = yield* node(Bus.layerMemory())
      const alice = yield* member(connect, "alice", "room")
      yield* member(connect, "bob", "room")
      yield* member(connect, "carol", "elsewhere")
      const { headers, names } = yield* ask(alice, "room")
      assert.deepStrictEqual(names, ["alice", "bob"])
      assert.deepStrictEqual(headers, { channel: "room", count: "2", cut: "no", complete: "yes", id: "q" })
      yield* alice.send("LHTTP/1.0 presence\r\nchannel:elsewhere\r\nid:n\r\n\r\n")
      assert.deepInclude(headersOf(yield* alice.next()), { status: "403", reason: "Forbidden", id: "n" })
    }))

  it.live("an answer lists at most maxMembers and says cut; a member gone (unsubscribed, disconnected) is not listed", () =>
    Effect.gen(function*() {
      const { connect } = yield* node(Bus.layerMemory())
      const asker = yield* member(connect, "a", "big")
      for (const name of ["b", "c", "d"]) yield* member(connect, name, "big")
      const full = yield* ask(asker, "big")
      assert.deepStrictEqual([full.names.length, full.headers.cut, full.headers.count], [3, "yes", "3"])
      const leaving = yield* member(connect, "e", "small")
      yield* member(connect, "f", "small")
      const stays = yield* member(connect, "g", "small")
      assert.deepStrictEqual((yield* ask(stays, "small")).names, ["e", "f", "g"])
      yield* leaving.transport.close
      yield* until(Effect.map(ask(stays, "small"), ({ names }) => names.join() === "f,g"))
      yield* stays.send("LHTTP/1.0 x\r\nunsubscribe:small\r\nsubscribe:other\r\n\r\n")
      const other = yield* member(connect, "h", "small")
      assert.deepStrictEqual((yield* ask(other, "small")).names, ["f", "h"])
    }))

  it.live("channels with events hear a presence frame when a connection joins and leaves; others hear none", () =>
    Effect.gen(function*() {
      const { connect } = yield* node(Bus.layerMemory())
      const watcher = yield* connect()
      yield* watcher.send("LHTTP/1.0 hello\r\n\r\nw")
      yield* watcher.send("LHTTP/1.0 join\r\nsubscribe:ev-room\r\n\r\n")
      // its own join first, before anything its next messages cause
      assert.deepInclude(headersOf(yield* watcher.next()), { channel: "ev-room", event: "join" })
      yield* watcher.nothing()
      yield* member(connect, "quiet", "no-events")
      const joiner = yield* member(connect, "alice", "ev-room")
      const joined = yield* watcher.next()
      assert.deepInclude(headersOf(joined), { channel: "ev-room", event: "join" })
      assert.deepInclude(JSON.parse(parsed(joined).body), { info: { name: "alice" } })
      yield* joiner.transport.close
      const left = yield* watcher.next()
      assert.deepInclude(headersOf(left), {
        channel: "ev-room",
        event: "leave",
        connection: headersOf(joined).connection
      })
      yield* watcher.nothing()
    }))
})

/**
 * Waits until a message published on node two reaches a subscriber on node one: both nodes are
 * connected to NATS (a node publishes nothing before it is) and interest crosses between them.
 */
const linked = (one: () => Effect.Effect<MemoryClient, unknown>, two: () => Effect.Effect<MemoryClient, unknown>) =>
  Effect.gen(function*() {
    const listener = yield* one()
    yield* listener.send("LHTTP/1.0 x\r\nsubscribe:link\r\n\r\n")
    yield* listener.nothing()
    const sender = yield* two()
    for (let i = 0; i < 100; i++) {
      yield* sender.send(`LHTTP/1.0 x\r\npublish:link\r\n\r\n${i}`)
      const got = yield* listener.next("100 millis").pipe(Effect.option)
      if (got._tag === "Some") return
    }
    return yield* Effect.die(new Error("the nodes never linked over NATS"))
  })

describe("Presence: the defaults, and what a member shows", () => {
  it.live("maxMembers 1,000 by default: 1,001 members are answered as 1,000, cut; each member has only its connection id, node and info", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer(
        { processors: [Hello, Presence.PresenceProcessor] },
        Layer.merge(HelloLive, Presence.layer())
      )
      let last: MemoryClient | undefined
      for (let i = 0; i < 1001; i++) {
        last = yield* connect(`/?token=secret-${i}`, { requestHeaders: { authorization: `Bearer secret-${i}` } })
        yield* last.send(`LHTTP/1.0 hello\r\n\r\nm${i}`)
        yield* last.send("LHTTP/1.0 join\r\nsubscribe:crowd\r\n\r\n")
        yield* last.nothing()
      }
      yield* last!.send("LHTTP/1.0 presence\r\nchannel:crowd\r\nid:q\r\n\r\n")
      const answer = yield* last!.next("5 seconds")
      assert.deepStrictEqual(headersOf(answer), {
        channel: "crowd",
        count: "1000",
        cut: "yes",
        complete: "yes",
        id: "q"
      })
      const members = JSON.parse(parsed(answer).body) as Array<Record<string, unknown>>
      assert.strictEqual(members.length, 1000)
      for (const member of members) {
        assert.deepStrictEqual(Object.keys(member).sort(), ["connection", "info", "node"])
        assert.match(String((member.info as { name: string }).name), /^m\d+$/)
      }
      assert.notInclude(parsed(answer).body, "secret")
    }))
})

describe("Presence across nodes (NATS)", () => {
  it.live("members on every node are listed, each with its node; join events cross the bus", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      const one = yield* node(NatsBus.layer({ servers: nats.url }))
      const two = yield* node(NatsBus.layer({ servers: nats.url }))
      yield* linked(one.connect, two.connect)
      const alice = yield* member(one.connect, "alice", "ev-hall")
      yield* member(two.connect, "bob", "ev-hall")
      // alice hears bob join on the other node
      const joined = headersOf(yield* alice.next("5 seconds"))
      assert.deepInclude(joined, { channel: "ev-hall", event: "join" })
      // the nodes learn of each other as they say they are there: an answer lists both once they have
      yield* until(Effect.map(ask(alice, "ev-hall"), ({ names }) => names.join() === "alice,bob"))
      const { headers, names } = yield* ask(alice, "ev-hall")
      assert.deepStrictEqual(names, ["alice", "bob"])
      assert.deepInclude(headers, { count: "2", complete: "yes" })
      const raw = yield* alice.send("LHTTP/1.0 presence\r\nchannel:ev-hall\r\n\r\n").pipe(
        Effect.andThen(alice.next("5 seconds"))
      )
      const nodes = new Set((JSON.parse(parsed(raw).body) as Array<Presence.Member>).map((m) => m.node))
      assert.strictEqual(nodes.size, 2)
    }))

  it.live("a node stopped (its scope closed, gracefully; a crash: below): its members are not listed at once, and answers say complete:no while the others still count it", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      const one = yield* node(NatsBus.layer({ servers: nats.url }))
      const scope = yield* Scope.make()
      const two = yield* node(NatsBus.layer({ servers: nats.url })).pipe(Scope.provide(scope))
      yield* linked(one.connect, () => two.connect().pipe(Scope.provide(scope)))
      const alice = yield* member(one.connect, "alice", "hall")
      yield* member(() => two.connect().pipe(Scope.provide(scope)), "bob", "hall")
      yield* until(Effect.map(ask(alice, "hall"), ({ names }) => names.join() === "alice,bob"))
      yield* Scope.close(scope, Exit.void)
      const { headers, names } = yield* ask(alice, "hall")
      assert.deepStrictEqual(names, ["alice"])
      assert.deepInclude(headers, { count: "1", complete: "no" })
    }))
})

/**
 * A cluster on one in-memory bus shared by its nodes: each node has a bus of its own over it that
 * records what the node publishes, and that can crash: from then on nothing the node publishes
 * leaves it and nothing reaches it (its process is gone for the others; no scope is closed, no
 * graceful path runs).
 */
const sharedBus = Effect.gen(function*() {
  const shared = yield* Bus.makeMemory()
  const published: Array<{ readonly node: string; readonly channel: string; readonly payload: string }> = []
  const nodeBus = (name: string) => {
    let crashed = false
    const bus = Bus.Bus.of({
      publish: (channel, payload) =>
        Effect.suspend(() => {
          if (crashed) return Effect.void
          published.push({ node: name, channel, payload })
          return shared.publish(channel, payload)
        }),
      subscribe: (channel, onMessage) =>
        shared.subscribe(channel, (payload, position) => {
          if (!crashed) onMessage(payload, position)
        }),
      isReady: Effect.sync(() => !crashed),
      numbering: "none"
    })
    return { layer: Layer.succeed(Bus.Bus, bus), crash: () => void (crashed = true) }
  }
  return { nodeBus, published }
})

/** A node with presence as configured by default (events on `ev-` channels only). */
const defaultNode = (
  bus: Layer.Layer<Bus.Bus>,
  serverOptions?: { readonly messageRate?: { perSecond: number; burst: number; closeAfter: number } }
) =>
  startMemoryServer(
    { processors: [Hello, Presence.PresenceProcessor], ...serverOptions },
    Layer.merge(HelloLive, Presence.layer({ events: ["ev-"] })),
    { bus }
  )

// presence remembers when it last heard from a node by the wall clock (Date.now) and waits on Effect's
// clock: a fake Date moved with the TestClock, so both tell the same time
const fakeDate = Effect.acquireRelease(
  Effect.sync(() => {
    vi.useFakeTimers({ toFake: ["Date"] })
    vi.setSystemTime(1_000_000)
  }),
  () => Effect.sync(() => vi.useRealTimers())
)
const advance = (millis: number) =>
  Effect.gen(function*() {
    vi.setSystemTime(Date.now() + millis)
    yield* TestClock.adjust(millis)
  })

describe("Presence: leave events, the timeout, a crashed node, query floods", () => {
  it.live("a leave event when a connection unsubscribes, and when it is closed as a slow consumer (4001)", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer(
        { processors: [Hello, Presence.PresenceProcessor], maxOutboundBytes: 4096 },
        Layer.merge(HelloLive, Presence.layer({ events: ["ev-"] }))
      )
      const watcher = yield* member(connect, "w", "ev-room")
      // one that unsubscribes
      const leaver = yield* member(connect, "l", "ev-room")
      const joined = headersOf(yield* watcher.next())
      assert.deepInclude(joined, { event: "join" })
      yield* leaver.send("LHTTP/1.0 x\r\nunsubscribe:ev-room\r\n\r\n")
      const left = yield* watcher.next()
      assert.deepStrictEqual(headersOf(left), {
        channel: "ev-room",
        event: "leave",
        connection: joined.connection,
        node: joined.node
      })
      assert.deepStrictEqual(JSON.parse(parsed(left).body), {
        connection: joined.connection,
        node: joined.node,
        info: { name: "l" }
      })
      yield* watcher.nothing()
      // one that stops reading, and is closed as a slow consumer by a flood on another channel
      const slow = yield* member(connect, "s", "ev-room")
      const slowJoin = headersOf(yield* watcher.next())
      yield* slow.send("LHTTP/1.0 x\r\nsubscribe:flood\r\n\r\n")
      yield* slow.nothing()
      yield* slow.transport.setReading(false)
      const publisher = yield* connect()
      for (let i = 0; i < 10; i++) yield* publisher.send(`LHTTP/1.0 m\r\npublish:flood\r\n\r\n${"x".repeat(1000)}`)
      assert.strictEqual((yield* slow.closed).code, 4001)
      assert.deepStrictEqual(headersOf(yield* watcher.next()), {
        channel: "ev-room",
        event: "leave",
        connection: slowJoin.connection,
        node: slowJoin.node
      })
      yield* watcher.nothing()
    }))

  it.effect("a crashed node: no leave events; at once out of the answers; complete:no after the 1 s timeout until it is forgotten 15 s after it was last heard; a live node says it is there every 5 s", () =>
    Effect.gen(function*() {
      yield* fakeDate
      const { nodeBus, published } = yield* sharedBus
      const busOne = nodeBus("one")
      const busTwo = nodeBus("two")
      const one = yield* defaultNode(busOne.layer)
      const two = yield* defaultNode(busTwo.layer)
      const alice = yield* member(one.connect, "alice", "ev-hall")
      yield* member(two.connect, "bob", "ev-hall")
      assert.deepInclude(headersOf(yield* alice.next()), { channel: "ev-hall", event: "join" })
      const heartbeatsOfTwo = () =>
        published.filter((p) => p.node === "two" && p.channel === "$lhttp.cluster.nodes").length
      // both nodes know each other already (a node greets a new one at once): a complete answer at once
      const both = yield* ask(alice, "ev-hall")
      assert.deepStrictEqual(both.names, ["alice", "bob"])
      assert.deepInclude(both.headers, { count: "2", complete: "yes" })
      // the heartbeat: every 5 s, not before
      const start = heartbeatsOfTwo()
      yield* advance(4_999)
      assert.strictEqual(heartbeatsOfTwo(), start)
      yield* advance(1)
      assert.strictEqual(heartbeatsOfTwo(), start + 1)
      yield* advance(5_000)
      assert.strictEqual(heartbeatsOfTwo(), start + 2)
      // quiet for 40 s, but heard from every 5 s: still counted, the answer complete and at once
      for (let i = 0; i < 40; i++) yield* advance(1_000)
      assert.deepInclude((yield* ask(alice, "ev-hall")).headers, { count: "2", complete: "yes" })
      // it crashes right after a heartbeat (the last time anyone hears from it)
      yield* advance(5_000)
      busTwo.crash()
      yield* alice.send("LHTTP/1.0 presence\r\nchannel:ev-hall\r\nid:q1\r\n\r\n")
      // the answer waits for node two 1 s (the default timeout), not less: a probe behind the query comes back
      // first (so the query was taken before the clock moves), and again at 999 ms
      yield* alice.nothing()
      yield* advance(999)
      yield* alice.nothing()
      yield* advance(1)
      const first = yield* alice.next()
      assert.deepStrictEqual(headersOf(first), { channel: "ev-hall", count: "1", cut: "no", complete: "no", id: "q1" })
      assert.deepStrictEqual((JSON.parse(parsed(first).body) as Array<Presence.Member>).map((m) => m.info), [{
        name: "alice"
      }])
      // 14,999 ms after it was last heard: still counted (1 s more to wait, complete:no)
      yield* advance(13_999)
      yield* alice.send("LHTTP/1.0 presence\r\nchannel:ev-hall\r\nid:q2\r\n\r\n")
      yield* alice.nothing()
      yield* advance(1_000)
      assert.deepStrictEqual(headersOf(yield* alice.next()), {
        channel: "ev-hall",
        count: "1",
        cut: "no",
        complete: "no",
        id: "q2"
      })
      // now 15,999 ms: forgotten, the answer complete at once (no clock moves)
      const forgotten = yield* ask(alice, "ev-hall")
      assert.deepStrictEqual([forgotten.names, forgotten.headers.complete], [["alice"], "yes"])
      // and no leave event ever came for bob
      yield* alice.nothing()
      assert.deepStrictEqual(yield* pending(alice), [])
    }))

  it.live("presence query floods are bounded by messageRate: a query past it is refused 429 and costs no bus message", () =>
    Effect.gen(function*() {
      const { nodeBus, published } = yield* sharedBus
      const { connect } = yield* defaultNode(nodeBus("one").layer, {
        messageRate: { perSecond: 0.001, burst: 4, closeAfter: 100 }
      })
      const client = yield* connect()
      yield* client.send("LHTTP/1.0 x\r\nsubscribe:room\r\n\r\n")
      const queries = () => published.filter((p) => p.channel === "$lhttp.cluster.ask").length
      for (let i = 0; i < 10; i++) yield* client.send(`LHTTP/1.0 presence\r\nchannel:room\r\nid:q${i}\r\n\r\n`)
      const answers = new Map<string, string>()
      for (let i = 0; i < 10; i++) {
        const frame = parsed(yield* client.next())
        answers.set(
          frame.headers.get("id") ?? "",
          frame.command === "presence" ? "presence" : `${frame.headers.get("status")} ${frame.headers.get("reason")}`
        )
      }
      assert.deepStrictEqual(
        Object.fromEntries(answers),
        Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`q${i}`, i < 3 ? "presence" : "429 RateLimited"]))
      )
      assert.strictEqual(queries(), 3)
    }))
})
