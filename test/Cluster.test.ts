/**
 * Many server instances on NATS, end to end: in-process nodes (each with its
 * own `NatsBus.layer`), the main job (`src/main.ts`) as a separate process,
 * and real nats-server processes, killed and restarted where the claim is
 * about them. Negative checks across nodes publish a marker through the same
 * path after the negative case and assert that the marker is the next frame.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { connect as natsConnect, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node"
import { Context, Effect, Exit, Fiber, Layer, Scope } from "effect"
import * as NatsBus from "../src/NatsBus.ts"
import { connect, frame, request, startServer, type TestClient } from "./utils/lhttp.ts"
import { natsCluster, type NatsServer, natsServerLater, natsServerLaterWith, natsServerWith } from "./utils/nats.ts"
import { freePort, start } from "./utils/process.ts"
import { eventually, until } from "./utils/wait.ts"

/** The NATS client name of the in-process nodes (the main job's default is `effect-lhttp`). */
const nodeName = "lhttp-test-node"

/** An in-process node on NATS `servers`, not waiting for NATS. */
const nodeUnready = (servers: string | ReadonlyArray<string>, options?: Partial<NatsBus.Options>) =>
  startServer({}, undefined, {
    bus: NatsBus.layer({
      servers,
      name: nodeName,
      reconnectTimeWait: "250 millis",
      connectRetry: "100 millis",
      ...options
    })
  })

/** An in-process node on NATS `servers`, once its bus is connected. */
const node = (servers: string | ReadonlyArray<string>, options?: Partial<NatsBus.Options>) =>
  Effect.tap(nodeUnready(servers, options), (node) => until(node.server.isReady, "10 seconds"))

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/** The frame of a probe `joined` publishes. */
const probe = (channel: string, body: string) => frame("probe", { publish: channel }, body)

/** Takes `client`'s frames up to the probe whose body is `mark`; every frame before it must be a probe. */
const through = (client: TestClient, channel: string, mark: string) =>
  Effect.gen(function*() {
    const probes = new RegExp(`^LHTTP/1\\.0 probe\\r\\npublish:${escape(channel)}\\r\\n\\r\\n`)
    while (true) {
      const text = yield* client.next()
      if (text === probe(channel, mark)) return
      assert.match(text, probes, "only probes may come before the mark")
    }
  })

let marks = 0

/**
 * Subscribes `client` to `channel`, then publishes probes from `publisher`
 * until one arrives (the interest has crossed NATS), then a mark, and takes
 * `client`'s frames up to the mark: every one of them must be a probe. Returns
 * the mark, for other subscribers of `channel` to read `through`.
 */
const joined = (client: TestClient, publisher: TestClient, channel: string) =>
  Effect.gen(function*() {
    yield* client.send(frame("c", { subscribe: channel }))
    let arrived = false
    for (let i = 0; i < 100 && !arrived; i++) {
      yield* publisher.send(probe(channel, String(i)))
      arrived = (yield* client.next("100 millis").pipe(Effect.option))._tag === "Some"
    }
    if (!arrived) return yield* Effect.die(new Error(`${channel}: interest never crossed NATS`))
    const mark = `mark ${++marks}`
    yield* publisher.send(probe(channel, mark))
    yield* through(client, channel, mark)
    return mark
  })

/** A raw NATS client until the scope closes. */
const rawNats = (url: string, options?: Partial<ConnectionOptions>) =>
  Effect.acquireRelease(
    Effect.promise(() => natsConnect({ servers: url, ...options })),
    (nc) => Effect.promise(() => nc.close())
  )

/**
 * Collects the payloads a raw NATS client receives on `subject`, in order
 * (after a flush, the interest is in place).
 */
const rawSubscribe = (nc: NatsConnection, subject: string) =>
  Effect.gen(function*() {
    const seen: Array<string> = []
    nc.subscribe(subject, {
      callback: (_error, message) => {
        seen.push(message.string())
      }
    })
    yield* Effect.promise(() => nc.flush())
    return seen
  })

/** The body of every frame `client` receives on `channel`, in arrival order, and the numbers among them. */
const bodies = (client: TestClient, channel: string) => {
  const numbers: Array<number> = []
  const texts: Array<string> = []
  client.ws.on("message", (data) => {
    const text = String(data)
    if (!text.includes(`\r\npublish:${channel}\r\n`)) return
    const body = text.slice(text.indexOf("\r\n\r\n") + 4)
    texts.push(body)
    if (/^\d+$/.test(body)) numbers.push(Number(body))
  })
  return { numbers, texts }
}

/** Every error frame `client` receives. */
const errorFrames = (client: TestClient) => {
  const errors: Array<string> = []
  client.ws.on("message", (data) => {
    const text = String(data)
    if (text.startsWith("LHTTP/1.0 error\r\n")) errors.push(text)
  })
  return errors
}

/** Asserts that every number is larger than the one before: in order, none twice. */
const assertIncreasing = (numbers: ReadonlyArray<number>) =>
  numbers.forEach((n, i) => {
    if (i > 0 && n <= numbers[i - 1]!) assert.fail(`out of order or twice at ${i}: ${numbers[i - 1]} then ${n}`)
  })

/** The head of the error frame refusing a publish because the bus is unavailable (protocol.md §5). */
const busUnavailable = (id: string) => `LHTTP/1.0 error\r\nstatus:503\r\nreason:BusUnavailable\r\nid:${id}\r\n\r\n`

/** One nats-server, with its monitoring port, shared by the tests of a block (each uses its own channels). */
class SharedNats extends Context.Service<SharedNats, NatsServer>()("test/Cluster/SharedNats") {}
const sharedNats = Layer.effect(SharedNats, natsServerWith({ monitor: true, jetstream: true }))

layer(sharedNats, { excludeTestServices: true })("Cluster: server instances on one NATS", (it) => {
  it.effect("clients on different nodes subscribe, publish and unsubscribe as on one node", () =>
    Effect.gen(function*() {
      const nats = yield* SharedNats
      const [one, two, three] = [yield* node(nats.url), yield* node(nats.url), yield* node(nats.url)]
      const a = yield* connect(one.url)
      const b = yield* connect(two.url)
      const c = yield* connect(three.url)
      yield* joined(a, b, "room")
      yield* through(a, "room", yield* joined(c, b, "room"))
      const text = "LHTTP/1.0 chat\r\ncontent-type:text/plain\r\npublish:room\r\n\r\nacross nodes"
      yield* b.send(text)
      assert.strictEqual(yield* a.next(), text)
      assert.strictEqual(yield* c.next(), text)
      // subscribing again delivers once: the next frame after "once" is b's next publish
      yield* a.send(frame("c", { subscribe: "room room" }))
      yield* b.send(frame("chat", { publish: "room" }, "once"))
      yield* b.send(frame("chat", { publish: "room" }, "next"))
      for (const client of [a, c]) {
        assert.strictEqual(yield* client.next(), "LHTTP/1.0 chat\r\npublish:room\r\n\r\nonce")
        assert.strictEqual(yield* client.next(), "LHTTP/1.0 chat\r\npublish:room\r\n\r\nnext")
      }
      // one unsubscribe stops it; once node one has processed it, the node holds no subscription
      yield* a.send(frame("c", { unsubscribe: "room" }))
      yield* a.nothing()
      assert.strictEqual(one.hub.channelCount(), 0)
      yield* b.send(frame("chat", { publish: "room" }, "after"))
      assert.strictEqual(yield* c.next(), "LHTTP/1.0 chat\r\npublish:room\r\n\r\nafter")
      // "after" never reached a: subscribed again, the first frames it gets are probes b published after it
      yield* through(c, "room", yield* joined(a, b, "room"))
      assert.strictEqual(three.hub.channelCount(), 1)
      // and b, never subscribed, got none of it: subscribed now, its first frame is its own next publish
      yield* b.send(frame("c", { subscribe: "room" }))
      yield* b.send(frame("chat", { publish: "room" }, "to all three"))
      for (const client of [b, a, c]) {
        assert.strictEqual(yield* client.next(), "LHTTP/1.0 chat\r\npublish:room\r\n\r\nto all three")
      }
    }))

  it.effect("one NATS subscription per channel per node, never a wildcard (the monitor's /subsz); a message crosses NATS once per node", () =>
    Effect.gen(function*() {
      const nats = yield* SharedNats
      const one = yield* node(nats.url, { name: "subsz-one" })
      const two = yield* node(nats.url, { name: "subsz-two" })
      const [a, b, c] = [yield* connect(one.url), yield* connect(one.url), yield* connect(one.url)]
      const d = yield* connect(two.url)
      for (const client of [a, b, c, d]) {
        yield* client.send(frame("c", { subscribe: "sz-room" }))
        yield* client.nothing()
      }
      yield* c.send(frame("c", { subscribe: "sz-other sz-room" }))
      yield* c.nothing()
      const cids = yield* connectionIds(nats)
      const subjects = (name: string) => Effect.map(subscriptionsOf(nats, cids.get(name)!), (list) => list.sort())
      // three clients on sz-room and one on sz-other too: two subscriptions on node one, each a literal subject
      // (the server may not have read the last SUB yet: wait until it shows)
      yield* until(Effect.map(subjects("subsz-one"), (list) => list.length === 2), "5 seconds")
      yield* until(Effect.map(subjects("subsz-two"), (list) => list.length === 1), "5 seconds")
      assert.deepStrictEqual(yield* subjects("subsz-one"), ["lhttp.sz-other", "lhttp.sz-room"])
      assert.deepStrictEqual(yield* subjects("subsz-two"), ["lhttp.sz-room"])
      // one message: NATS sends it once to each node (its subscription of the channel), which fans it out
      const before = yield* outMessages(nats, "lhttp.sz-room")
      yield* d.send(frame("c", { publish: "sz-room" }, "once"))
      for (const client of [a, b, c, d]) {
        assert.strictEqual(yield* client.next(), "LHTTP/1.0 c\r\npublish:sz-room\r\n\r\nonce")
      }
      const after = yield* outMessages(nats, "lhttp.sz-room")
      assert.deepStrictEqual(
        [
          after.get(cids.get("subsz-one")!)! - before.get(cids.get("subsz-one")!)!,
          after.get(cids.get("subsz-two")!)! - before.get(cids.get("subsz-two")!)!
        ],
        [1, 1]
      )
      // the last local client leaving a channel ends the node's subscription
      for (const client of [a, b]) {
        yield* client.send(frame("c", { unsubscribe: "sz-room" }))
        yield* client.nothing()
      }
      assert.deepStrictEqual(yield* subjects("subsz-one"), ["lhttp.sz-other", "lhttp.sz-room"])
      yield* c.send(frame("c", { unsubscribe: "sz-room sz-other" }))
      yield* c.nothing()
      yield* until(Effect.map(subjects("subsz-one"), (list) => list.length === 0), "5 seconds")
    }))

  it.effect("POST /publish on one node reaches subscribers on all", () =>
    Effect.gen(function*() {
      const nats = yield* SharedNats
      const one = yield* node(nats.url)
      const two = yield* node(nats.url)
      const a = yield* connect(one.url)
      const b = yield* connect(two.url)
      yield* joined(a, b, "mike")
      // a, subscribed too, receives its own probes
      yield* through(a, "mike", yield* joined(b, a, "mike"))
      const raw = "LHTTP/1.0 chat\r\nx:1\r\npublish:mike\r\n\r\nhello mike"
      assert.strictEqual((yield* request(`${one.http}/publish`, { method: "POST", body: raw })).status, 204)
      assert.strictEqual(yield* a.next(), raw)
      assert.strictEqual(yield* b.next(), raw)
    }))

  it.effect("a raw NATS publish of LHTTP text on <prefix><channel> reaches WebSocket subscribers verbatim", () =>
    Effect.gen(function*() {
      const nats = yield* SharedNats
      const one = yield* node(nats.url)
      const a = yield* connect(one.url)
      const b = yield* connect(one.url)
      yield* joined(a, b, "feed")
      const nc = yield* rawNats(nats.url)
      const text = "LHTTP/1.0 tick\r\nz:9\r\na:1\r\n\r\nraw from NATS\r\n\r\n"
      nc.publish("lhttp.feed", text)
      assert.strictEqual(yield* a.next(), text)
    }))

  it.effect("with an empty prefix a channel's traffic is what an original lhttp node sends and accepts", () =>
    Effect.gen(function*() {
      const nats = yield* SharedNats
      const one = yield* node(nats.url, { subjectPrefix: "" })
      const a = yield* connect(one.url)
      const b = yield* connect(one.url)
      yield* joined(a, b, "chatroom")
      // an original node subscribes to the channel id as the subject and gets the full LHTTP text
      const nc = yield* rawNats(nats.url)
      const seen = yield* rawSubscribe(nc, "chatroom")
      yield* b.send("LHTTP/1.0 chat\r\npublish:chatroom\r\n\r\nhi")
      yield* b.send("LHTTP/1.0 chat\r\npublish:chatroom\r\n\r\nmarker")
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 chat\r\npublish:chatroom\r\n\r\nhi")
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 chat\r\npublish:chatroom\r\n\r\nmarker")
      yield* eventually(() => seen.length === 2)
      assert.deepStrictEqual(seen, [
        "LHTTP/1.0 chat\r\npublish:chatroom\r\n\r\nhi",
        "LHTTP/1.0 chat\r\npublish:chatroom\r\n\r\nmarker"
      ])
      // and what an original node publishes (the channel id as the subject) reaches our subscribers verbatim
      nc.publish("chatroom", "LHTTP/1.0 chat\r\npublish:chatroom\r\n\r\nfrom go")
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 chat\r\npublish:chatroom\r\n\r\nfrom go")
    }))

  it.effect("a client sending invalid channels gets error frames while every other client keeps receiving", () =>
    Effect.gen(function*() {
      const nats = yield* SharedNats
      const one = yield* node(nats.url, { subjectPrefix: "" })
      const two = yield* node(nats.url, { subjectPrefix: "" })
      const victim = yield* connect(one.url)
      const attacker = yield* connect(one.url)
      const publisher = yield* connect(two.url)
      yield* joined(victim, publisher, "safe")
      // (an empty value asks for nothing, as in the original: it is not in this list)
      for (const channels of ["a..b", ">", "*", "a\tb", "$SYS.x", "_INBOX.x", "a  b", " a", "a "]) {
        for (const header of ["subscribe", "publish", "unsubscribe"]) {
          yield* attacker.send(`LHTTP/1.0 c\r\n${header}:${channels}\r\n\r\nx`)
          assert.match(yield* attacker.next(), /^LHTTP\/1\.0 error\r\nstatus:400\r\nreason:InvalidChannel\r\n\r\n/)
        }
        yield* publisher.send(frame("c", { publish: "safe" }, channels))
        assert.strictEqual(yield* victim.next(), `LHTTP/1.0 c\r\npublish:safe\r\n\r\n${channels}`)
      }
      assert.isTrue(yield* one.server.isReady)
    }))

  it.effect("a node that stops closes its clients with 1012 (reconnect), and the other nodes go on", () =>
    Effect.gen(function*() {
      const nats = yield* SharedNats
      const one = yield* node(nats.url)
      const three = yield* node(nats.url)
      const stopping = yield* Scope.make()
      const two = yield* node(nats.url).pipe(Scope.provide(stopping))
      const a = yield* connect(one.url)
      const b = yield* connect(two.url)
      const c = yield* connect(three.url)
      yield* joined(a, c, "last")
      yield* through(a, "last", yield* joined(b, c, "last"))
      const mark = yield* joined(c, a, "last")
      yield* through(a, "last", mark)
      yield* through(b, "last", mark)
      yield* Scope.close(stopping, Exit.void)
      assert.strictEqual((yield* b.closed).code, 1012)
      // the nodes left go on, both ways
      yield* c.send(frame("c", { publish: "last" }, "from three"))
      for (const client of [a, c]) {
        assert.strictEqual(yield* client.next(), "LHTTP/1.0 c\r\npublish:last\r\n\r\nfrom three")
      }
      yield* a.send(frame("c", { publish: "last" }, "from one"))
      for (const client of [a, c]) {
        assert.strictEqual(yield* client.next(), "LHTTP/1.0 c\r\npublish:last\r\n\r\nfrom one")
      }
    }))
})

describe("Cluster: NATS faults", () => {
  it.live(
    "kill the NATS server a node uses: its clients stay, delivery resumes through another NATS server, in order",
    () =>
      Effect.gen(function*() {
        const [s0, s1] = yield* natsCluster(3)
        // node one knows only s0 and learns the others from the cluster; node two uses s1
        const one = yield* node(s0!.url)
        const two = yield* node(s1!.url)
        const subscriber = yield* connect(one.url)
        const publisher = yield* connect(two.url)
        yield* joined(subscriber, publisher, "beat")
        const beats = bodies(subscriber, "beat")
        let sent = 0
        const publishing = Effect.gen(function*() {
          while (true) {
            // sent and counted in one step: an interruption cannot fall between them
            yield* Effect.sync(() => publisher.ws.send(frame("beat", { publish: "beat" }, String(sent++))))
            yield* Effect.sleep("20 millis")
          }
        })
        const fiber = yield* Effect.forkChild(publishing)
        yield* eventually(() => beats.numbers.length >= 5)
        yield* Effect.promise(() => s0!.kill())
        // s0 is gone: whatever is published from here on can only reach node one through s1 or s2
        const afterKill = sent
        yield* eventually(() => beats.numbers.some((n) => n >= afterKill + 5), "15 seconds")
        yield* Fiber.interrupt(fiber)
        yield* publisher.send(frame("beat", { publish: "beat" }, "end"))
        yield* eventually(() => beats.texts.includes("end"))

        assert.strictEqual(beats.texts.at(-1), "end")
        assertIncreasing(beats.numbers)
        // from the first message through the new server on, nothing is missing: the gap is only around the kill
        const resumed = beats.numbers.findIndex((n) => n >= afterKill)
        const from = beats.numbers[resumed]!
        assert.deepStrictEqual(beats.numbers.slice(resumed), Array.from({ length: sent - from }, (_, i) => from + i))
        assert.strictEqual(subscriber.ws.readyState, subscriber.ws.OPEN)
        assert.strictEqual(publisher.ws.readyState, publisher.ws.OPEN)
        assert.isTrue(yield* one.server.isReady)
      }),
    40_000
  )

  it.live("NATS down at start: the node starts unready, then becomes ready and delivers when NATS appears", () =>
    Effect.gen(function*() {
      const nats = yield* natsServerLater
      const one = yield* nodeUnready(nats.url)
      assert.strictEqual((yield* request(`${one.http}/readyz`)).status, 503)
      const a = yield* connect(one.url)
      yield* a.send(frame("c", { subscribe: "early" }))
      yield* a.send(frame("c", { publish: "early", id: "p" }, "too early"))
      assert.isTrue((yield* a.next()).startsWith(busUnavailable("p")))
      yield* Effect.promise(() => nats.restart())
      yield* until(Effect.map(request(`${one.http}/readyz`), (response) => response.status === 200), "10 seconds")
      yield* a.send(frame("c", { publish: "early" }, "now"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 c\r\npublish:early\r\n\r\nnow")
    }))
})

describe("Cluster: publishing while NATS is down", () => {
  it.live(
    "an outage under load, NATS restarted on the same port: what is published meanwhile reaches the other node once, in order, and no publisher is refused",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerWith()
        const one = yield* node(nats.url)
        const two = yield* node(nats.url)
        const subscriber = yield* connect(one.url)
        const publisher = yield* connect(two.url)
        yield* joined(subscriber, publisher, "load")
        yield* joined(subscriber, publisher, "posted")
        const load = bodies(subscriber, "load")
        const posted = bodies(subscriber, "posted")
        const errors = errorFrames(publisher)
        let sent = 0
        const publishing = Effect.gen(function*() {
          while (true) {
            yield* Effect.sync(() => publisher.ws.send(frame("beat", { publish: "load" }, String(sent++))))
            yield* Effect.sleep("5 millis")
          }
        })
        const fiber = yield* Effect.forkChild(publishing)
        yield* eventually(() => load.numbers.length >= 50)

        const deliveredAtKill = load.numbers.length
        yield* Effect.promise(() => nats.kill())
        yield* until(Effect.map(two.server.isReady, (ready) => !ready))
        // from here on, every frame the publisher sends reaches its node after the node saw the outage
        const noticedAt = sent
        const statuses: Array<number> = []
        for (let i = 0; i < 10; i++) {
          const raw = `LHTTP/1.0 news\r\npublish:posted\r\n\r\npost ${i}`
          statuses.push((yield* request(`${two.http}/publish`, { method: "POST", body: raw })).status)
        }
        // the outage lasts while 300 frames are published (several reconnect attempts of 250 ms)
        yield* eventually(() => sent >= noticedAt + 300, "10 seconds")
        yield* Effect.promise(() => nats.restart())
        yield* until(two.server.isReady, "10 seconds")
        const restartedAt = sent
        yield* eventually(() => load.numbers.some((n) => n >= restartedAt + 50), "15 seconds")
        yield* Fiber.interrupt(fiber)
        yield* publisher.send(frame("beat", { publish: "load" }, "end"))
        yield* eventually(() => load.texts.includes("end"), "5 seconds")

        assert.strictEqual(load.texts.at(-1), "end")
        assert.deepStrictEqual(errors, [])
        assert.deepStrictEqual(statuses, Array.from({ length: 10 }, () => 204))
        // exactly once, in order
        assertIncreasing(load.numbers)
        // nothing published after the node saw the outage is lost; before it, only what was in flight at the kill
        const got = new Set(load.numbers)
        const lost = Array.from({ length: sent }, (_, n) => n).filter((n) => !got.has(n))
        assert.deepStrictEqual(lost.filter((n) => n >= noticedAt), [])
        assert.isTrue(lost.every((n) => n >= deliveredAtKill), JSON.stringify({ lost, deliveredAtKill }))
        // and of those, at most one (cluster.md, "During a NATS outage", step 2)
        assert.isAtMost(lost.length, 1, JSON.stringify({ lost, deliveredAtKill, noticedAt }))
        yield* eventually(() => posted.texts.length === 10)
        assert.deepStrictEqual(posted.texts, Array.from({ length: 10 }, (_, i) => `post ${i}`))
      }),
    60_000
  )

  it.live(
    "a NATS that does not answer: a publish with an id gets 504 PublishUnconfirmed, POST /publish 504, after acknowledgeTimeout",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerWith()
        const one = yield* node(nats.url, { acknowledgeTimeout: "300 millis" })
        const client = yield* connect(one.url)
        // answered while NATS runs: no flush of the node's is still waiting for its answer when it stops
        yield* client.send(frame("c", { publish: "unanswered", id: "u0" }, "w"))
        assert.strictEqual(yield* client.next("5 seconds"), "LHTTP/1.0 c\r\nid:u0\r\n\r\n")
        nats.pause()
        yield* client.send(frame("c", { publish: "unanswered", id: "u1" }, "x"))
        const answer = yield* client.next("5 seconds")
        const posted = yield* request(`${one.http}/publish`, {
          method: "POST",
          body: "LHTTP/1.0 c\r\npublish:unanswered\r\n\r\ny"
        })
        nats.resume()
        assert.match(
          answer,
          /^LHTTP\/1\.0 error\r\nstatus:504\r\nreason:PublishUnconfirmed\r\nid:u1\r\n\r\nNATS did not confirm/
        )
        assert.strictEqual(posted.status, 504)
        // NATS answers again: acknowledged
        yield* client.send(frame("c", { publish: "unanswered", id: "u2" }, "z"))
        assert.strictEqual(yield* client.next("5 seconds"), "LHTTP/1.0 c\r\nid:u2\r\n\r\n")
      }),
    30_000
  )

  it.live(
    "publishes wait in a bounded buffer, then the publisher gets 503 BusUnavailable; what was accepted arrives after the reconnect",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerWith()
        const one = yield* node(nats.url, { maxPendingBytes: 10_000 })
        const a = yield* connect(one.url)
        const b = yield* connect(one.url)
        yield* joined(a, b, "buffered")
        yield* Effect.promise(() => nats.kill())
        yield* until(Effect.map(one.server.isReady, (ready) => !ready))
        const body = "z".repeat(1000)
        const sent = (i: number) => frame("c", { publish: "buffered", id: String(i) }, body)
        for (let i = 0; i < 10; i++) yield* b.send(sent(i))
        // a frame that is always answered: b's frames are handled in order, so once its answer is here, all are
        yield* b.send(frame("c", { publish: "a..b", id: "end" }))
        const refused: Array<number> = []
        const acknowledged: Array<number> = []
        while (true) {
          const answer = yield* b.next()
          if (answer.startsWith("LHTTP/1.0 error\r\nstatus:400\r\nreason:InvalidChannel\r\nid:end\r\n\r\n")) break
          const id = /\r\nid:(\d+)\r\n/.exec(answer)?.[1] ?? ""
          // taken into the buffer: acknowledged (no position); past its bound: refused
          if (answer === `LHTTP/1.0 c\r\nid:${id}\r\n\r\n`) {
            acknowledged.push(Number(id))
            continue
          }
          assert.isTrue(answer.startsWith(busUnavailable(id)), JSON.stringify(answer))
          refused.push(Number(id))
        }
        // a buffered message costs its payload's UTF-8 bytes, its subject and 32 bytes (cluster.md): 9 fit in 10 000
        const cost = Buffer.byteLength(sent(0)) + "lhttp.buffered".length + 32
        const fit = Math.floor(10_000 / cost)
        const accepted = Array.from({ length: fit }, (_, i) => i)
        assert.deepStrictEqual(refused, Array.from({ length: 10 - fit }, (_, i) => fit + i))
        assert.deepStrictEqual(acknowledged, accepted)
        // POST /publish too, while the buffer is full
        const raw = `LHTTP/1.0 c\r\npublish:buffered\r\n\r\n${body}`
        assert.strictEqual((yield* request(`${one.http}/publish`, { method: "POST", body: raw })).status, 503)
        assert.strictEqual(a.ws.readyState, a.ws.OPEN)

        yield* Effect.promise(() => nats.restart())
        yield* until(one.server.isReady, "10 seconds")
        yield* b.send(frame("c", { publish: "buffered" }, "marker"))
        // everything before the marker arrives before it: the accepted frames, in order, and nothing refused
        for (const i of accepted) assert.strictEqual(yield* a.next("10 seconds"), sent(i))
        assert.strictEqual(yield* a.next("10 seconds"), "LHTTP/1.0 c\r\npublish:buffered\r\n\r\nmarker")
      }),
    30_000
  )
})

/** The names of the client connections a nats-server's monitoring lists. */
const connectionNames = (nats: NatsServer) =>
  Effect.map(
    request(`${nats.monitor}/connz`),
    (response) =>
      (JSON.parse(response.body) as { connections: Array<{ name?: string }> }).connections.map((c) => c.name)
  )

/** The client id (cid) of each named client connection a nats-server's monitoring lists. */
const connectionIds = (nats: NatsServer) =>
  Effect.map(
    request(`${nats.monitor}/connz`),
    (response) =>
      new Map(
        (JSON.parse(response.body) as { connections: Array<{ cid: number; name?: string }> }).connections.map((
          c
        ) => [c.name ?? "", c.cid])
      )
  )

/** The messages nats-server has sent to each client connection, by cid. */
/** The messages NATS delivered to each client connection's subscription of `subject`, from the monitor's `/subsz`. */
const outMessages = (nats: NatsServer, subject: string) =>
  Effect.map(
    request(`${nats.monitor}/subsz?subs=1&limit=100000`),
    (response) =>
      new Map(
        ((JSON.parse(response.body) as { subscriptions_list?: Array<{ cid: number; subject: string; msgs: number }> })
          .subscriptions_list ?? []).filter((sub) => sub.subject === subject).map((sub) => [sub.cid, sub.msgs])
      )
  )

/** The subjects of the subscriptions of one client connection, from the monitor's `/subsz`. */
const subscriptionsOf = (nats: NatsServer, cid: number) =>
  Effect.map(
    request(`${nats.monitor}/subsz?subs=1&limit=100000`),
    (response) =>
      ((JSON.parse(response.body) as { subscriptions_list?: Array<{ cid: number; subject: string }> })
        .subscriptions_list ?? [])
        .filter((sub) => sub.cid === cid)
        .map((sub) => sub.subject)
        // the node's own channels between nodes (the cluster's questions and announcements) aside
        .filter((subject) => !subject.includes("$"))
  )

/**
 * Runs the main job (`node src/main.ts`) with `env` until the scope closes; waits until it has
 * connected to NATS. Without history unless `env` sets `LHTTP_HISTORY`: these tests read the bus's
 * frames byte for byte.
 */
const mainJob = (env: Record<string, string>) =>
  Effect.gen(function*() {
    const port = yield* Effect.promise(freePort)
    const program = yield* Effect.acquireRelease(
      Effect.sync(() =>
        start("src/main.ts", { env: { LHTTP_PORT: String(port), LHTTP_HOST: "127.0.0.1", LHTTP_HISTORY: "", ...env } })
      ),
      (program) => Effect.promise(() => program.stop("SIGKILL"))
    )
    // (unreachable: the credentials were refused, say)
    const line = yield* Effect.promise(() => program.waitFor(/NATS: (connected|unreachable)/, 15_000))
    assert.include(line, "NATS: connected", program.output())
    // the session store opens its bucket before the server listens
    yield* Effect.promise(() => program.waitFor(/listening on/, 15_000))
    return { program, url: `ws://127.0.0.1:${port}/`, http: `http://127.0.0.1:${port}` }
  })

/** Subscribes `client` to `channel` and publishes probes on `subject` from a raw NATS client until one arrives. */
const rawJoined = (client: TestClient, nc: NatsConnection, subject: string, channel: string) =>
  Effect.gen(function*() {
    yield* client.send(frame("c", { subscribe: channel }))
    for (let i = 0; i < 100; i++) {
      nc.publish(subject, probe(channel, String(i)))
      const got = yield* client.next("100 millis").pipe(Effect.option)
      if (got._tag === "Some") {
        assert.match(got.value, new RegExp(`^LHTTP/1\\.0 probe\\r\\npublish:${escape(channel)}\\r\\n\\r\\n\\d+$`))
        const mark = `mark ${++marks}`
        nc.publish(subject, probe(channel, mark))
        return yield* through(client, channel, mark)
      }
    }
    return yield* Effect.die(new Error(`${subject}: interest never crossed NATS`))
  })

layer(sharedNats, { excludeTestServices: true })("Cluster: the main job", (it) => {
  it.effect("LHTTP_NATS_URL=… npm start runs a node of a cluster, named effect-lhttp in NATS; on SIGTERM it delivers what its clients published just before and exits 0", () =>
    Effect.gen(function*() {
      const nats = yield* SharedNats
      const job = yield* mainJob({ LHTTP_NATS_URL: nats.url })
      const local = yield* node(nats.url)
      const a = yield* connect(job.url)
      const b = yield* connect(local.url)
      yield* joined(a, b, "lobby")
      yield* b.send(frame("chat", { publish: "lobby" }, "to the main job"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 chat\r\npublish:lobby\r\n\r\nto the main job")
      // the in-process nodes are named otherwise: this is the main job's connection
      assert.include(yield* connectionNames(nats), "effect-lhttp")
      // a publishes frames; once its probe is answered, the main job has handed them all to its NATS client
      const nc = yield* rawNats(nats.url)
      const seen = yield* rawSubscribe(nc, "lhttp.last")
      const count = 2000
      const body = (n: number) => `${n}:${"x".repeat(1024)}`
      for (let n = 0; n < count; n++) yield* a.send(frame("c", { publish: "last" }, body(n)))
      yield* a.nothing()
      job.program.child.kill("SIGTERM")
      assert.strictEqual((yield* a.closed).code, 1012)
      assert.deepStrictEqual(yield* Effect.promise(() => job.program.exited), { code: 0, signal: null })
      // once NATS has closed the main job's connection it has routed all it read from it; a flush is behind that
      yield* until(Effect.map(connectionNames(nats), (names) => !names.includes("effect-lhttp")))
      yield* Effect.promise(() => nc.flush())
      assert.strictEqual(seen.length, count)
      assert.isTrue(seen.every((text, n) => text === `LHTTP/1.0 c\r\npublish:last\r\n\r\n${body(n)}`))
    }))

  it.effect("a node killed (SIGKILL) while its client publishes: the client gets 1006 and restores its session on another node; the other node's subscriber got an ordered prefix, and that node goes on", () =>
    Effect.gen(function*() {
      const nats = yield* SharedNats
      const job = yield* mainJob({ LHTTP_NATS_URL: nats.url })
      // the other node: a main job too, with its sessions in the same NATS KV bucket
      const survivor = yield* mainJob({ LHTTP_NATS_URL: nats.url })
      const subscriber = yield* connect(survivor.url)
      const publisher = yield* connect(job.url)
      yield* publisher.send(frame("login", { id: "l1" }, "{\"name\":\"kim\"}"))
      const login = /^LHTTP\/1\.0 session\r\nsession-key:([A-Za-z0-9_-]+)\r\nid:l1\r\n\r\n\{"name":"kim"\}$/.exec(
        yield* publisher.next()
      )
      assert.isNotNull(login)
      const key = login![1]!
      yield* joined(subscriber, publisher, "killed")
      const received = bodies(subscriber, "killed")
      let sent = 0
      const publishing = yield* Effect.forkChild(Effect.forever(
        Effect.sync(() => publisher.ws.send(frame("c", { publish: "killed" }, String(sent++)))).pipe(
          Effect.andThen(Effect.sleep("2 millis"))
        )
      ))
      yield* eventually(() => received.numbers.length >= 50)
      job.program.child.kill("SIGKILL")
      assert.deepStrictEqual(yield* Effect.promise(() => job.program.exited), { code: null, signal: "SIGKILL" })
      yield* Fiber.interrupt(publishing)
      // no close frame: the connection just drops
      assert.strictEqual((yield* publisher.closed).code, 1006)
      // the client reconnects to another node and restores its session there (it is in NATS KV)
      const again = yield* connect(survivor.url)
      yield* again.send(frame("session", { restore: key, id: "r" }))
      assert.strictEqual(yield* again.next(), `LHTTP/1.0 session\r\nsession-key:${key}\r\nid:r\r\n\r\n{"name":"kim"}`)
      // what arrived is an ordered prefix of what was sent: in order, none twice, from the first
      yield* again.send(frame("c", { publish: "killed" }, "after"))
      yield* eventually(() => received.texts.includes("after"))
      const numbers = received.numbers
      assertIncreasing(numbers)
      assert.deepStrictEqual(numbers, Array.from({ length: numbers.length }, (_, i) => i))
    }))

  it.effect("LHTTP_NATS_URL on a NATS without JetStream: the main job runs as a node, says once what it cannot do, and shows it", () =>
    Effect.gen(function*() {
      const nats = yield* natsServerWith()
      const port = yield* Effect.promise(freePort)
      // the defaults (history for every channel, sessions in KV): neither can be kept on this NATS
      const program = yield* Effect.acquireRelease(
        Effect.sync(() =>
          start("src/main.ts", { env: { LHTTP_PORT: String(port), LHTTP_HOST: "127.0.0.1", LHTTP_NATS_URL: nats.url } })
        ),
        (program) => Effect.promise(() => program.stop("SIGKILL"))
      )
      yield* Effect.promise(() => program.waitFor(/listening on/, 15_000))
      const http = `http://127.0.0.1:${port}`
      yield* eventually(() => program.output().includes("channel history is off: this NATS has no JetStream"))
      yield* eventually(() =>
        /sessions: NATS at .* has no JetStream; sessions are kept on this node only/.test(program.output())
      )
      for (const line of ["channel history is off", "sessions are kept on this node only"]) {
        assert.strictEqual(program.output().split(line).length, 2, `said once: ${line}\n${program.output()}`)
      }
      assert.notInclude(program.output(), "    at ", "no stack trace")
      const ready = yield* request(`${http}/readyz`)
      assert.strictEqual(ready.status, 200)
      assert.match(
        ready.body,
        /^ready\nlimited: history: channel history is off: .*\nlimited: sessions: sessions on this node only: NATS has no JetStream\n$/
      )
      const metrics = (yield* request(`${http}/metrics`)).body
      assert.match(metrics, /^lhttp_limited\{feature="history"[^}]*\} 1$/m)
      assert.match(metrics, /^lhttp_limited\{feature="sessions"[^}]*\} 1$/m)
      // the bus works: a message crosses it; a subscription asking for positions is told there is no history
      const a = yield* connect(`ws://127.0.0.1:${port}/`)
      yield* a.send(frame("c", { subscribe: "room", since: "now" }))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 position\r\nchannel:room\r\nreason:NoHistory\r\n\r\n")
      const nc = yield* rawNats(nats.url)
      yield* rawJoined(a, nc, "lhttp.room", "room")
      // sessions work on this node
      yield* a.send(frame("login", { id: "l1" }, "{\"name\":\"dora\"}"))
      assert.match(yield* a.next(), /^LHTTP\/1\.0 session\r\nsession-key:/)
    }))

  it.effect("a main job started before NATS is not ready, then ready with sessions and history once NATS comes", () =>
    Effect.gen(function*() {
      const nats = yield* natsServerLaterWith({ jetstream: true })
      const port = yield* Effect.promise(freePort)
      const program = yield* Effect.acquireRelease(
        Effect.sync(() =>
          start("src/main.ts", { env: { LHTTP_PORT: String(port), LHTTP_HOST: "127.0.0.1", LHTTP_NATS_URL: nats.url } })
        ),
        (program) => Effect.promise(() => program.stop("SIGKILL"))
      )
      yield* Effect.promise(() => program.waitFor(/listening on/, 15_000))
      const http = `http://127.0.0.1:${port}`
      assert.strictEqual((yield* request(`${http}/readyz`)).status, 503)
      yield* Effect.promise(() => nats.restart())
      yield* eventually(() => program.output().includes("NATS: connected"), "15 seconds")
      yield* until(
        Effect.map(request(`${http}/readyz`), (answer) => answer.status === 200 && answer.body === "ready\n"),
        "15 seconds"
      )
      const a = yield* connect(`ws://127.0.0.1:${port}/`)
      yield* a.send(frame("login", { id: "l1" }, "{\"name\":\"erin\"}"))
      const key = /^LHTTP\/1\.0 session\r\nsession-key:([A-Za-z0-9_-]+)\r\n/.exec(yield* a.next())
      assert.isNotNull(key)
      yield* a.send(frame("c", { subscribe: "late", since: "now" }))
      assert.match(yield* a.next(), /^LHTTP\/1\.0 position\r\nchannel:late\r\nepoch:[\w-]+\r\noffset:\d+\r\n\r\n$/)
      assert.notInclude(program.output(), "    at ", "no stack trace")
    }))

  it.effect("LHTTP_HISTORY on NATS: a message published on one main job is recovered by a client of another (JetStream)", () =>
    Effect.gen(function*() {
      const nats = yield* SharedNats
      const one = yield* mainJob({ LHTTP_NATS_URL: nats.url, LHTTP_HISTORY: "recover-" })
      const two = yield* mainJob({ LHTTP_NATS_URL: nats.url, LHTTP_HISTORY: "recover-" })
      const first = yield* connect(two.url)
      yield* first.send(frame("c", { subscribe: "recover-room", since: "now" }))
      const position = /^LHTTP\/1\.0 position\r\nchannel:recover-room\r\nepoch:([\w-]+)\r\noffset:(\d+)\r\n\r\n$/.exec(
        yield* first.next()
      )
      assert.isNotNull(position)
      const publisher = yield* connect(one.url)
      for (const body of ["a", "b", "c"]) yield* publisher.send(frame("c", { publish: "recover-room" }, body))
      yield* publisher.nothing()
      const back = yield* connect(two.url)
      yield* back.send(frame("c", { subscribe: "recover-room", since: `${position![1]}:${position![2]}` }))
      const frames = [yield* back.next(), yield* back.next(), yield* back.next(), yield* back.next()]
      assert.deepStrictEqual(frames.slice(0, 3).map((text) => text.slice(text.lastIndexOf("\r\n\r\n") + 4)), [
        "a",
        "b",
        "c"
      ])
      assert.match(frames[3]!, /^LHTTP\/1\.0 position\r\nchannel:recover-room\r\n.*recovered:yes\r\n\r\n$/s)
    }))

  it.effect("LHTTP_NATS_PREFIX= (set and empty): the subject is the channel id, as an original lhttp node uses; LHTTP_NATS_NAME names the connection", () =>
    Effect.gen(function*() {
      const nats = yield* SharedNats
      const job = yield* mainJob({ LHTTP_NATS_URL: nats.url, LHTTP_NATS_PREFIX: "", LHTTP_NATS_NAME: "lhttp-node-7" })
      assert.include(yield* connectionNames(nats), "lhttp-node-7")
      const nc = yield* rawNats(nats.url)
      const onRoom = yield* rawSubscribe(nc, "room")
      const onPrefixed = yield* rawSubscribe(nc, "lhttp.room")
      const a = yield* connect(job.url)
      // a raw NATS publish on the subject "room" reaches the WebSocket subscriber
      yield* rawJoined(a, nc, "room", "room")
      // and a WebSocket publish to channel "room" is published on the subject "room"; then one to the channel
      // "lhttp.room" (the subject "lhttp.room" with this prefix): the first would have come before it
      const text = "LHTTP/1.0 news\r\npublish:room\r\n\r\nto an original node"
      yield* a.send(text)
      assert.strictEqual(yield* a.next(), text)
      const marker = "LHTTP/1.0 news\r\npublish:lhttp.room\r\n\r\nmarker"
      yield* a.send(marker)
      yield* eventually(() => onPrefixed.length > 0)
      assert.deepStrictEqual(onPrefixed, [marker])
      assert.deepStrictEqual(onRoom.filter((message) => !message.startsWith("LHTTP/1.0 probe")), [text])
    }))

  it.effect("LHTTP_NATS_TOKEN, or LHTTP_NATS_USER and LHTTP_NATS_PASS: the node authenticates to a nats-server requiring them", () =>
    Effect.gen(function*() {
      const check = (auth: { token: string } | { user: string; pass: string }, env: Record<string, string>) =>
        Effect.gen(function*() {
          const nats = yield* natsServerWith({ auth, jetstream: true })
          // the server refuses a client without them
          const refused = yield* Effect.tryPromise({ try: () => natsConnect({ servers: nats.url }), catch: String })
            .pipe(
              Effect.flip
            )
          assert.match(refused, /Authorization Violation/i)
          const job = yield* mainJob({ LHTTP_NATS_URL: nats.url, ...env })
          const nc = yield* rawNats(nats.url, auth)
          const a = yield* connect(job.url)
          yield* rawJoined(a, nc, "lhttp.secure", "secure")
          const seen = yield* rawSubscribe(nc, "lhttp.secure")
          yield* a.send(frame("c", { publish: "secure" }, "out"))
          assert.strictEqual(yield* a.next(), "LHTTP/1.0 c\r\npublish:secure\r\n\r\nout")
          yield* eventually(() => seen.includes("LHTTP/1.0 c\r\npublish:secure\r\n\r\nout"))
        })
      yield* Effect.all([
        check({ token: "s3cret-token" }, { LHTTP_NATS_TOKEN: "s3cret-token" }),
        check({ user: "lhttp", pass: "s3cret-pass" }, { LHTTP_NATS_USER: "lhttp", LHTTP_NATS_PASS: "s3cret-pass" })
      ], { concurrency: "unbounded", discard: true })
    }))
})
