import { assert, describe, it } from "@effect/vitest"
import { connect as natsConnect } from "@nats-io/transport-node"
import { Effect, Fiber } from "effect"
import { spawn } from "node:child_process"
import * as NatsBus from "../src/NatsBus.ts"
import { connect, frame, request, startServer, type TestClient } from "./utils/lhttp.ts"
import { natsCluster, natsServer, natsServerLater } from "./utils/nats.ts"
import { freePort } from "./utils/process.ts"
import { eventually, until } from "./utils/wait.ts"

const node = (servers: string | ReadonlyArray<string>, options?: Partial<NatsBus.Options>) =>
  startServer({}, undefined, {
    bus: NatsBus.layer({ servers, reconnectTimeWait: "250 millis", connectRetry: "100 millis", ...options })
  })

/** Subscribes `client` to `channel`, then publishes probes from `publisher` until one arrives: interest has crossed NATS. */
const joined = (client: TestClient, publisher: TestClient, channel: string) =>
  Effect.gen(function*() {
    yield* client.send(frame("c", { subscribe: channel }))
    for (let i = 0; i < 100; i++) {
      yield* publisher.send(frame("probe", { publish: channel }, String(i)))
      const got = yield* client.next("100 millis").pipe(Effect.option)
      // the publisher may hold error frames for probes sent before the bus was connected
      if (got._tag === "Some") return yield* settle(client, publisher)
    }
    return yield* Effect.die(new Error(`${channel}: interest never crossed NATS`))
  })

/** Takes every frame that arrives until `client` has been quiet for 150 ms (late probes). */
const settle = (...clients: ReadonlyArray<TestClient>) =>
  Effect.forEach(clients, (client) =>
    Effect.gen(function*() {
      while ((yield* client.next("150 millis").pipe(Effect.option))._tag === "Some");
    }), { discard: true })

const rawNats = (url: string) =>
  Effect.acquireRelease(
    Effect.promise(() => natsConnect({ servers: url })),
    (nc) => Effect.promise(() => nc.close())
  )

describe("Cluster: server instances on one NATS", () => {
  it.live("clients on different nodes subscribe, publish and unsubscribe as on one node", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      const [one, two, three] = [yield* node(nats.url), yield* node(nats.url), yield* node(nats.url)]
      const a = yield* connect(one.url)
      const b = yield* connect(two.url)
      const c = yield* connect(three.url)
      yield* joined(a, b, "room")
      yield* joined(c, b, "room")
      yield* settle(a, b, c)
      const text = "LHTTP/1.0 chat\r\ncontent-type:text/plain\r\npublish:room\r\n\r\nacross nodes"
      yield* b.send(text)
      assert.strictEqual(yield* a.next(), text)
      assert.strictEqual(yield* c.next(), text)
      yield* b.nothing()
      // subscribing twice delivers once; one unsubscribe stops it
      yield* a.send(frame("c", { subscribe: "room room" }))
      yield* b.send(frame("chat", { publish: "room" }, "once"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 chat\r\npublish:room\r\n\r\nonce")
      assert.strictEqual(yield* c.next(), "LHTTP/1.0 chat\r\npublish:room\r\n\r\nonce")
      yield* a.nothing()
      yield* a.send(frame("c", { unsubscribe: "room" }))
      yield* Effect.sleep("100 millis")
      yield* b.send(frame("chat", { publish: "room" }, "after"))
      assert.strictEqual(yield* c.next(), "LHTTP/1.0 chat\r\npublish:room\r\n\r\nafter")
      yield* a.nothing()
      // the hub holds one subscription per channel per node; the last one out releases it
      assert.strictEqual(one.hub.channelCount(), 0)
      assert.strictEqual(three.hub.channelCount(), 1)
    }))

  it.live("POST /publish on one node reaches subscribers on all", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      const one = yield* node(nats.url)
      const two = yield* node(nats.url)
      const a = yield* connect(one.url)
      const b = yield* connect(two.url)
      yield* joined(a, b, "mike")
      yield* joined(b, a, "mike")
      yield* settle(a, b)
      const raw = "LHTTP/1.0 chat\r\nx:1\r\npublish:mike\r\n\r\nhello mike"
      assert.strictEqual((yield* request(`${one.http}/publish`, { method: "POST", body: raw })).status, 204)
      assert.strictEqual(yield* a.next(), raw)
      assert.strictEqual(yield* b.next(), raw)
    }))

  it.live("a raw NATS publish of LHTTP text on <prefix><channel> reaches WebSocket subscribers verbatim", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      const one = yield* node(nats.url)
      const a = yield* connect(one.url)
      const b = yield* connect(one.url)
      yield* joined(a, b, "feed")
      const nc = yield* rawNats(nats.url)
      const text = "LHTTP/1.0 tick\r\nz:9\r\na:1\r\n\r\nraw from NATS\r\n\r\n"
      nc.publish("lhttp.feed", text)
      assert.strictEqual(yield* a.next(), text)
    }))

  it.live("with an empty prefix a channel's traffic is what an original lhttp node sends and accepts", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      const one = yield* node(nats.url, { subjectPrefix: "" })
      const a = yield* connect(one.url)
      const b = yield* connect(one.url)
      yield* joined(a, b, "chatroom")
      // an original node subscribes to the channel id as the subject and gets the full LHTTP text
      const nc = yield* rawNats(nats.url)
      const seen: Array<string> = []
      nc.subscribe("chatroom", {
        callback: (_error, message) => {
          seen.push(message.string())
        }
      })
      yield* Effect.promise(() => nc.flush())
      yield* b.send("LHTTP/1.0 chat\r\npublish:chatroom\r\n\r\nhi")
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 chat\r\npublish:chatroom\r\n\r\nhi")
      yield* eventually(() => seen.length === 1)
      assert.deepStrictEqual(seen, ["LHTTP/1.0 chat\r\npublish:chatroom\r\n\r\nhi"])
      // and what an original node publishes (the channel id as the subject) reaches our subscribers verbatim
      nc.publish("chatroom", "LHTTP/1.0 chat\r\npublish:chatroom\r\n\r\nfrom go")
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 chat\r\npublish:chatroom\r\n\r\nfrom go")
    }))

  it.live("a client sending invalid channels gets error frames while every other client keeps receiving", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
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
          assert.match(yield* attacker.next(), /^LHTTP\/1\.0 error\r\nstatus:400\r\nreason:InvalidChannel\r\n/)
        }
        yield* publisher.send(frame("c", { publish: "safe" }, channels))
        assert.strictEqual(yield* victim.next(), `LHTTP/1.0 c\r\npublish:safe\r\n\r\n${channels}`)
      }
      assert.isTrue(yield* one.server.isReady)
    }))
})

describe("Cluster: NATS faults", () => {
  it.live("kill the NATS server a node uses: clients stay, delivery resumes through another NATS server", () =>
    Effect.gen(function*() {
      const [s0, s1] = yield* natsCluster(3)
      // node one knows only s0 and learns the others from the cluster; node two uses s1
      const one = yield* node(s0!.url)
      const two = yield* node(s1!.url)
      const subscriber = yield* connect(one.url)
      const publisher = yield* connect(two.url)
      yield* joined(subscriber, publisher, "beat")
      const received = new Set<number>()
      subscriber.ws.on("message", (data) => {
        const body = String(data).split("\r\n\r\n")[1]
        if (body !== undefined && /^\d+$/.test(body)) received.add(Number(body))
      })
      let sent = 0
      const publishing = Effect.gen(function*() {
        while (true) {
          yield* publisher.send(frame("beat", { publish: "beat" }, String(sent++)))
          yield* Effect.sleep("20 millis")
        }
      })
      yield* Effect.forkChild(publishing)
      yield* eventually(() => received.size >= 20)
      const killedAt = sent
      yield* Effect.promise(() => s0!.kill())
      const started = Date.now()
      yield* eventually(() => Array.from(received).some((n) => n > killedAt + 10), "15 seconds")
      const resumedAfter = Date.now() - started
      const until = sent
      yield* Effect.sleep("300 millis")
      const lost = Array.from({ length: until }, (_, n) => n).filter((n) => !received.has(n)).length
      console.log(`NATS failover: delivery resumed ${resumedAfter} ms after the kill; ${lost} of ${until} messages lost in the gap`)
      assert.strictEqual(subscriber.ws.readyState, subscriber.ws.OPEN)
      assert.strictEqual(publisher.ws.readyState, publisher.ws.OPEN)
      assert.isBelow(resumedAfter, 10_000)
      assert.isTrue(yield* one.server.isReady)
    }), 40_000)

  it.live("NATS down at start: the node starts unready, then becomes ready and delivers when NATS appears", () =>
    Effect.gen(function*() {
      const nats = yield* natsServerLater
      const one = yield* node(nats.url)
      assert.strictEqual((yield* request(`${one.http}/readyz`)).status, 503)
      const a = yield* connect(one.url)
      yield* a.send(frame("c", { subscribe: "early" }))
      yield* a.send(frame("c", { publish: "early", id: "p" }, "too early"))
      assert.match(yield* a.next(), /^LHTTP\/1\.0 error\r\nstatus:503\r\nreason:BusUnavailable\r\nid:p\r\n/)
      yield* Effect.promise(() => nats.restart())
      yield* until(Effect.map(request(`${one.http}/readyz`), (response) => response.status === 200), "10 seconds")
      yield* a.send(frame("c", { publish: "early" }, "now"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 c\r\npublish:early\r\n\r\nnow")
    }))
})

/** The number in the body of every frame `client` receives on `channel`, in arrival order. */
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

describe("Cluster: publishing while NATS is down", () => {
  it.live("a 3 s outage under load: what is published meanwhile reaches the other node once, in order, and no publisher is refused", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      const one = yield* node(nats.url)
      const two = yield* node(nats.url)
      const subscriber = yield* connect(one.url)
      const publisher = yield* connect(two.url)
      yield* joined(subscriber, publisher, "load")
      yield* joined(subscriber, publisher, "posted")
      yield* settle(subscriber, publisher)
      const load = bodies(subscriber, "load")
      const posted = bodies(subscriber, "posted")
      const errors = errorFrames(publisher)
      let sent = 0
      const publishing = Effect.gen(function*() {
        while (true) {
          yield* publisher.send(frame("beat", { publish: "load" }, String(sent++)))
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
      const started = Date.now()
      const statuses: Array<number> = []
      for (let i = 0; i < 10; i++) {
        const raw = `LHTTP/1.0 news\r\npublish:posted\r\n\r\npost ${i}`
        statuses.push((yield* request(`${two.http}/publish`, { method: "POST", body: raw })).status)
      }
      // the rest of the 3 s outage
      yield* Effect.sleep(Math.max(0, 3000 - (Date.now() - started)))
      yield* Effect.promise(() => nats.restart())
      yield* until(two.server.isReady, "10 seconds")
      const restartedAt = sent
      yield* eventually(() => load.numbers.some((n) => n >= restartedAt + 100), "15 seconds")
      yield* Fiber.interrupt(fiber)
      const total = sent
      yield* eventually(() => load.numbers.includes(total - 1), "5 seconds")

      const got = new Set(load.numbers)
      const lost = Array.from({ length: total }, (_, n) => n).filter((n) => !got.has(n))
      console.log(
        `outage: ${restartedAt - noticedAt} frames published while NATS was down, ${total} in all; ` +
          `${lost.length} lost: ${JSON.stringify(lost)}`
      )
      assert.isAbove(restartedAt - noticedAt, 300)
      assert.deepStrictEqual(errors, [])
      assert.deepStrictEqual(statuses, Array.from({ length: 10 }, () => 204))
      // exactly once, in order
      load.numbers.forEach((n, i) => {
        if (i > 0) assert.isBelow(load.numbers[i - 1]!, n, `out of order or twice at ${i}`)
      })
      // nothing published after the node saw the outage is lost; before it, only what was in flight at the kill
      assert.deepStrictEqual(lost.filter((n) => n >= noticedAt), [])
      assert.isTrue(lost.every((n) => n >= deliveredAtKill), JSON.stringify({ lost, deliveredAtKill }))
      yield* eventually(() => posted.texts.length === 10)
      assert.deepStrictEqual(posted.texts, Array.from({ length: 10 }, (_, i) => `post ${i}`))
    }), 60_000)

  it.live("publishes wait in a bounded buffer, then the publisher gets 503 BusUnavailable; what was accepted arrives after the reconnect", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      const one = yield* node(nats.url, { maxPendingBytes: 10_000 })
      const a = yield* connect(one.url)
      const b = yield* connect(one.url)
      yield* joined(a, b, "buffered")
      yield* settle(a, b)
      yield* Effect.promise(() => nats.kill())
      yield* until(Effect.map(one.server.isReady, (ready) => !ready))
      const body = "z".repeat(1000)
      for (let i = 0; i < 10; i++) yield* b.send(frame("c", { publish: "buffered", id: String(i) }, body))
      // a frame that is always answered: b's frames are handled in order, so once its answer is here, all are
      yield* b.send(frame("c", { publish: "a..b", id: "end" }))
      const refused: Array<number> = []
      while (true) {
        const answer = yield* b.next()
        if (/\r\nreason:InvalidChannel\r\n/.test(answer)) break
        const match = /^LHTTP\/1\.0 error\r\nstatus:503\r\nreason:BusUnavailable\r\nid:(\d+)\r\n/.exec(answer)
        assert.isNotNull(match, JSON.stringify(answer))
        refused.push(Number(match?.[1]))
      }
      // 10 000 bytes hold 9 frames of about 1 050: the first 9 are accepted, the 10th is refused
      const accepted = Array.from({ length: 10 }, (_, i) => i).filter((i) => !refused.includes(i))
      assert.isAbove(accepted.length, 0)
      assert.isBelow(accepted.length, 10)
      assert.deepStrictEqual(accepted, Array.from({ length: accepted.length }, (_, i) => i))
      // POST /publish too, while the buffer is full
      const raw = `LHTTP/1.0 c\r\npublish:buffered\r\n\r\n${body}`
      assert.strictEqual((yield* request(`${one.http}/publish`, { method: "POST", body: raw })).status, 503)
      assert.strictEqual(a.ws.readyState, a.ws.OPEN)

      yield* Effect.promise(() => nats.restart())
      yield* until(one.server.isReady, "10 seconds")
      yield* b.send(frame("c", { publish: "buffered" }, "marker"))
      // everything before the marker arrives before it: the accepted frames, in order, and nothing refused
      const arrived: Array<string> = []
      while (true) {
        const text = yield* a.next("10 seconds")
        if (text.endsWith("\r\n\r\nmarker")) break
        arrived.push(/\r\nid:(\d+)\r\n/.exec(text)?.[1] ?? text)
      }
      assert.deepStrictEqual(arrived, accepted.map(String))
    }), 30_000)
})

/** Runs the main job (`npm start`) with `env` until the scope closes; waits until it has connected to NATS. */
const mainJob = (env: Record<string, string>) =>
  Effect.gen(function*() {
    const port = yield* Effect.promise(freePort)
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(process.execPath, ["src/main.ts"], {
          env: { ...process.env, LHTTP_PORT: String(port), LHTTP_HOST: "127.0.0.1", ...env },
          stdio: ["ignore", "pipe", "pipe"]
        })
      ),
      (child) => Effect.sync(() => child.kill("SIGKILL"))
    )
    let output = ""
    child.stdout.on("data", (chunk) => (output += chunk))
    child.stderr.on("data", (chunk) => (output += chunk))
    yield* eventually(() => output.includes("NATS: connected"), "15 seconds")
    return { child, url: `ws://127.0.0.1:${port}/` }
  })

describe("Cluster: the main job", () => {
  it.live("LHTTP_NATS_URL=… npm start runs a node of a cluster", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      const { child, url } = yield* mainJob({ LHTTP_NATS_URL: nats.url })
      const local = yield* node(nats.url)
      const a = yield* connect(url)
      const b = yield* connect(local.url)
      yield* joined(a, b, "lobby")
      yield* b.send(frame("chat", { publish: "lobby" }, "to the main job"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 chat\r\npublish:lobby\r\n\r\nto the main job")
      child.kill("SIGTERM")
      yield* eventually(() => child.exitCode !== null, "10 seconds")
      assert.strictEqual(child.exitCode, 0)
    }))

  it.live("LHTTP_NATS_PREFIX= (set and empty): the subject is the channel id, as an original lhttp node uses", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      const { url } = yield* mainJob({ LHTTP_NATS_URL: nats.url, LHTTP_NATS_PREFIX: "" })
      const nc = yield* rawNats(nats.url)
      const onRoom: Array<string> = []
      const onPrefixed: Array<string> = []
      nc.subscribe("room", {
        callback: (_error, message) => {
          onRoom.push(message.string())
        }
      })
      nc.subscribe("lhttp.room", {
        callback: (_error, message) => {
          onPrefixed.push(message.string())
        }
      })
      yield* Effect.promise(() => nc.flush())
      const a = yield* connect(url)
      yield* a.send(frame("c", { subscribe: "room" }))
      // a raw NATS publish on the subject "room" reaches the WebSocket subscriber (probes until the interest is there)
      let arrived: string | undefined
      for (let i = 0; i < 100 && arrived === undefined; i++) {
        nc.publish("room", `LHTTP/1.0 probe\r\npublish:room\r\n\r\n${i}`)
        const got = yield* a.next("100 millis").pipe(Effect.option)
        if (got._tag === "Some") arrived = got.value
      }
      assert.match(arrived ?? "", /^LHTTP\/1\.0 probe\r\npublish:room\r\n\r\n\d+$/)
      yield* settle(a)
      // and a WebSocket publish to channel "room" is published on the subject "room"
      const text = "LHTTP/1.0 news\r\npublish:room\r\n\r\nto an original node"
      yield* a.send(text)
      assert.strictEqual(yield* a.next(), text)
      yield* eventually(() => onRoom.includes(text))
      assert.deepStrictEqual(onRoom.filter((message) => !message.startsWith("LHTTP/1.0 probe")), [text])
      assert.deepStrictEqual(onPrefixed, [])
    }))
})
