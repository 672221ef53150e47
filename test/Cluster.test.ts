import { assert, describe, it } from "@effect/vitest"
import { connect as natsConnect } from "@nats-io/transport-node"
import { Effect } from "effect"
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

describe("Cluster: publishing while NATS is down", () => {
  it.live("publishes wait in a bounded buffer, then the publisher gets 503 BusUnavailable", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      const one = yield* node(nats.url, { maxPendingBytes: 10_000 })
      const a = yield* connect(one.url)
      const b = yield* connect(one.url)
      yield* joined(a, b, "buffered")
      yield* Effect.promise(() => nats.kill())
      yield* until(Effect.map(one.server.isReady, (ready) => !ready))
      const body = "z".repeat(1000)
      let accepted = 0
      for (let i = 0; i < 10; i++) {
        yield* b.send(frame("c", { publish: "buffered", id: String(i) }, body))
        const answer = yield* b.next("300 millis").pipe(Effect.option)
        if (answer._tag === "None") {
          accepted++
          continue
        }
        assert.match(answer.value, new RegExp(`^LHTTP/1\\.0 error\\r\\nstatus:503\\r\\nreason:BusUnavailable\\r\\nid:${i}\\r\\n`), `after ${accepted} accepted: ${JSON.stringify(answer.value)}`)
        break
      }
      assert.isAbove(accepted, 0)
      assert.isBelow(accepted, 10)
      assert.strictEqual(a.ws.readyState, a.ws.OPEN)
    }))
})

describe("Cluster: the main job", () => {
  it.live("LHTTP_NATS_URL=… npm start runs a node of a cluster", () =>
    Effect.gen(function*() {
      const nats = yield* natsServer
      const port = yield* Effect.promise(freePort)
      const child = yield* Effect.acquireRelease(
        Effect.sync(() =>
          spawn(process.execPath, ["src/main.ts"], {
            env: { ...process.env, LHTTP_PORT: String(port), LHTTP_HOST: "127.0.0.1", LHTTP_NATS_URL: nats.url },
            stdio: ["ignore", "pipe", "pipe"]
          })
        ),
        (child) => Effect.sync(() => child.kill("SIGKILL"))
      )
      let output = ""
      child.stdout.on("data", (chunk) => (output += chunk))
      child.stderr.on("data", (chunk) => (output += chunk))
      yield* eventually(() => output.includes("NATS: connected"), "15 seconds")
      const local = yield* node(nats.url)
      const a = yield* connect(`ws://127.0.0.1:${port}/`)
      const b = yield* connect(local.url)
      yield* joined(a, b, "lobby")
      yield* b.send(frame("chat", { publish: "lobby" }, "to the main job"))
      assert.strictEqual(yield* a.next(), "LHTTP/1.0 chat\r\npublish:lobby\r\n\r\nto the main job")
      child.kill("SIGTERM")
      yield* eventually(() => child.exitCode !== null, "10 seconds")
      assert.strictEqual(child.exitCode, 0)
    }))
})
