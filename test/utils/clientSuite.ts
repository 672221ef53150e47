/**
 * One conformance suite for both LHTTP clients, as the Bus suite is one for
 * every bus: the same scenarios against the Effect client (`LhttpClient`, in
 * Node) and the browser SDK (`lhttp.js`, in Chromium), each through a
 * {@link Driver}, on each transport (WebSocket, SSE, long-poll), against a
 * real in-process server. The scenarios: connect, subscribe, publish,
 * request/reply, reconnect, session restore, recovery by position (`since`);
 * and the rules both clients share, written once in src/internal/wire/
 * (docs/clients.md, "Rules both clients follow"): the reconnect backoff, a
 * `5xx` and a `429` on `POST /send`, a session frame whose body is not JSON.
 * test/ClientConformance.test.ts runs it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Layer, Option, Scope } from "effect"
import type * as Http from "node:http"
import * as Echo from "../../src/demo/Echo.ts"
import * as Login from "../../src/demo/Login.ts"
import * as Frame from "../../src/Frame.ts"
import * as History from "../../src/History.ts"
import * as Processor from "../../src/Processor.ts"
import { Rejection } from "../../src/Rejection.ts"
import * as Sessions from "../../src/Sessions.ts"
import * as SessionStore from "../../src/SessionStore.ts"
import { noWebSocketProxy } from "./browser.ts"
import { connect as rawConnect } from "./client.ts"
import { startServer } from "./lhttp.ts"

/** A transport of both clients. */
export type Transport = "websocket" | "sse" | "poll"

/** The transports, each scenario runs on all. */
export const transports: ReadonlyArray<Transport> = ["websocket", "sse", "poll"]

/** A frame the client handed to the app. */
export interface Received {
  readonly command: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

/** How a request ended: its reply, or the error it failed with (status and reason, as the client names them). */
export type Outcome =
  | { readonly ok: Received }
  | { readonly error: { readonly status: number | undefined; readonly reason: string } }

/** How a publish with an acknowledgement ended: each history channel's position (`<epoch>:<offset>`), or the error. */
export type Acknowledged =
  | { readonly ok: Readonly<Record<string, string>> }
  | { readonly error: { readonly status: number | undefined; readonly reason: string } }

/** A change of the session, as `on_session` names it (the Effect client's `SessionEvent` tags, lower-cased). */
export interface SessionChange {
  readonly change: "created" | "updated" | "restored" | "closed"
  readonly key: string
}

/** How a scenario connects. */
export interface ConnectOptions {
  readonly transport: Transport
  /** The reconnect backoff in ms; undefined: the client's defaults. */
  readonly reconnect?:
    | { readonly initialDelay: number; readonly maxDelay: number; readonly jitter?: number }
    | undefined
}

/** One connected client, as a scenario drives it: every call waits for the client to have done it. */
export interface Client {
  /** Subscribes with the client's own `subscribe` (which asks for positions: `since:now`). */
  readonly subscribe: (channels: ReadonlyArray<string>) => Promise<void>
  readonly publish: (
    channels: ReadonlyArray<string>,
    command: string,
    headers: Readonly<Record<string, string>>,
    body: string
  ) => Promise<void>
  /** Publishes with the client's `publishAcknowledged`: the positions it answers with, or its error. */
  readonly publishAcknowledged: (
    channels: ReadonlyArray<string>,
    command: string,
    body: string
  ) => Promise<Acknowledged>
  /** Sends a command (no `id`). */
  readonly command: (command: string, body?: string) => Promise<void>
  /** A request (a fresh `id`); its reply, or its error. */
  readonly request: (command: string, body: string) => Promise<Outcome>
  /** Every frame the client handed to the app so far, in order (the Effect client's include the replies). */
  readonly frames: () => Promise<ReadonlyArray<Received>>
  /** The states so far, each with the time it began (ms, the client's clock). */
  readonly states: () => Promise<ReadonlyArray<{ readonly state: string; readonly at: number }>>
  readonly position: (channel: string) => Promise<{ readonly epoch: string; readonly offset: number } | undefined>
  readonly session: () => Promise<{ readonly key: string; readonly data: unknown } | undefined>
  readonly sessionChanges: () => Promise<ReadonlyArray<SessionChange>>
  readonly close: () => Promise<void>
}

/** A client implementation under test. */
export interface Driver {
  readonly name: string
  /** Connects to `url` (`ws://host:port/`); the connection opens in the background. */
  readonly connect: (url: string, options: ConnectOptions) => Promise<Client>
}

// ---------------------------------------------------------------------------------------------
// the server of the scenarios

/** `kick` closes its connection (4100); the client reconnects. */
const Kick = Processor.make("kick")
const KickLive = Kick.toLayer({ onMessage: (exchange) => exchange.connection.close(4100, "kicked") })

/** `restart` closes its connection as a draining server does: 1012, and a wait of 800 ms before the reconnect. */
const Restart = Processor.make("restart")
const RestartLive = Restart.toLayer({
  onMessage: (exchange) => exchange.connection.close(1012, "reconnect:800")
})

/** `deny` fails with 403 Forbidden: an error frame. */
const Deny = Processor.make("deny")
const DenyLive = Deny.toLayer({
  onMessage: () => Effect.fail(new Rejection({ status: 403, reason: "Forbidden", message: "not for you" }))
})

/** `whoami` answers the name of its connection's session, or "nobody". */
const Whoami = Processor.make("whoami")
const WhoamiLive = Whoami.toLayer(Effect.gen(function*() {
  const sessions = yield* Sessions.Sessions
  return {
    onMessage: (exchange) =>
      Effect.gen(function*() {
        const session = yield* sessions.current(exchange.connection)
        yield* exchange.send(Option.match(session, {
          onNone: () => "nobody",
          onSome: (s) => (s.data as { readonly name: string }).name
        }))
      })
  }
}))

/** `odd` sends its connection a `session` frame whose body is not JSON, then answers. */
const Odd = Processor.make("odd")
const oddKey = "odd-session-key"
const OddLive = Odd.toLayer({
  onMessage: (exchange) =>
    exchange.connection.send(Frame.make("session", { "session-key": oddKey }, "not { json")).pipe(
      Effect.andThen(exchange.send("sent"))
    )
})

const processors = [Echo.Echo, Kick, Restart, Deny, Whoami, Odd, Login.Login, Sessions.SessionProcessor] as const

const implementations = Layer.mergeAll(Echo.layer, KickLive, RestartLive, DenyLive, WhoamiLive, OddLive, Login.layer)
  .pipe(
    Layer.provideMerge(Sessions.layer()),
    Layer.provide(SessionStore.layerMemory)
  )

/** A running server of the suite: channels `h-*` keep a history. */
interface Served {
  readonly url: string
  readonly http: string
  readonly port: number
  /** A raw WebSocket client (test/utils/client.ts) that sends one frame. */
  readonly publish: (channel: string, command: string, body: string) => Promise<void>
  readonly close: () => Promise<void>
}

const serve = async (): Promise<Served> => {
  const scope = Effect.runSync(Scope.make())
  const server = await Effect.runPromise(
    startServer({ processors }, implementations, {
      history: History.layerMemory({ policies: [{ prefix: "h-", size: 100, ttl: Duration.minutes(1) }] })
    }).pipe(Scope.provide(scope))
  )
  const publisher = await rawConnect(server.url)
  return {
    url: `${server.url}/`,
    http: server.http,
    port: server.port,
    publish: async (channel, command, body) => {
      publisher.send(Frame.render(Frame.make(command, { publish: channel }, body)))
      // the publisher's connection processes in order: the echo's reply says the publish went by
      publisher.send(Frame.render(Frame.make("echo", { id: "barrier" }, "")))
      while (!(await publisher.next()).includes("id:barrier")) {
        // frames of channels the publisher does not hold never come; only the barrier's reply
      }
    },
    close: async () => {
      await publisher.close()
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }
}

/**
 * A proxy in front of the server (HTTP only, as test/utils/browser.ts's) that answers the next
 * `count` requests `POST /send` itself with `status` (and headers), keeping their bodies.
 */
const faultyProxy = async (target: number) => {
  let failing: { status: number; count: number; headers: Record<string, string> } | undefined
  const failed: Array<string> = []
  const intercept = (request: Http.IncomingMessage, response: Http.ServerResponse): boolean => {
    if (failing === undefined || failing.count === 0 || request.method !== "POST") return false
    if (!(request.url ?? "").startsWith("/send")) return false
    failing.count--
    const { headers, status } = failing
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => {
      failed.push(Buffer.concat(chunks).toString("utf8"))
      response.writeHead(status, { "content-type": "text/plain", ...headers })
      response.end(`the proxy answers ${status}\n`)
    })
    return true
  }
  const proxy = await noWebSocketProxy(target, intercept)
  return {
    url: `ws://127.0.0.1:${proxy.port}/`,
    /** Answers the next `count` frames sent with `status`. */
    fail: (status: number, count: number, headers: Record<string, string> = {}) => {
      failing = { status, count, headers }
      failed.length = 0
    },
    /** The bodies of the requests answered so far (since the last `fail`). */
    failed: () => Array.from(failed),
    close: proxy.close
  }
}

// ---------------------------------------------------------------------------------------------
// helpers

/** Waits until `check` holds (polling every 20 ms), failing after `timeoutMs` with `what`. */
const until = async (check: () => Promise<boolean>, what: string, timeoutMs = 8_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** The frames published to `channel` (by their `publish` header) and the `position` frames naming it. */
const onChannel = async (client: Client, channel: string) =>
  (await client.frames()).filter((frame) =>
    frame.headers["publish"] === channel || frame.headers["channel"] === channel
  )

const published = async (client: Client, channel: string) =>
  (await client.frames()).filter((frame) => frame.headers["publish"] === channel).map((frame) => frame.body)

const opens = async (client: Client) => (await client.states()).filter(({ state }) => state === "open").length

const openedTimes = (client: Client, times: number) =>
  until(async () => (await opens(client)) >= times, `the connection to open (${times})`)

/** A request that must succeed: its reply's body. */
const replyOf = async (client: Client, command: string, body: string): Promise<string> => {
  const outcome = await client.request(command, body)
  if (!("ok" in outcome)) throw new Error(`${command} failed: ${JSON.stringify(outcome.error)}`)
  return outcome.ok.body
}

/** The server has processed what the client sent before: an echo's reply came back. */
const barrier = async (client: Client) => assert.strictEqual(await replyOf(client, "echo", "barrier"), "barrier")

/** The suite's reconnect backoff: quick, so that reconnects take tens of ms. */
const quick = { initialDelay: 50, maxDelay: 200 } as const

/** Runs `body` with a fresh server and a client over `transport`; closes both. */
const withClient = async (
  driver: Driver,
  options: ConnectOptions & { readonly proxied?: boolean },
  body: (client: Client, served: Served, proxy: Awaited<ReturnType<typeof faultyProxy>> | undefined) => Promise<void>
) => {
  const served = await serve()
  const proxy = options.proxied === true ? await faultyProxy(served.port) : undefined
  try {
    const client = await driver.connect(proxy?.url ?? served.url, options)
    try {
      await openedTimes(client, 1)
      await body(client, served, proxy)
    } finally {
      await client.close()
    }
  } finally {
    await proxy?.close()
    await served.close()
  }
}

// ---------------------------------------------------------------------------------------------
// the scenarios

/** Runs every scenario against the client that `driver` drives. */
export const clientSuite = (driver: () => Driver) => {
  for (const transport of transports) {
    describe(`over ${transport}`, () => {
      it("connects, subscribes, publishes: its own messages and others', in order, as the wire has them", async () => {
        await withClient(driver(), { transport, reconnect: quick }, async (client, served) => {
          const watcher = await rawConnect(served.url)
          try {
            watcher.send("LHTTP/1.0 watch\r\nsubscribe:room\r\n\r\n")
            watcher.send("LHTTP/1.0 echo\r\nid:w\r\n\r\n")
            assert.strictEqual(await watcher.next(), "LHTTP/1.0 echo\r\nid:w\r\n\r\n")
            await client.subscribe(["room"])
            await barrier(client)
            await served.publish("room", "chat", "from another client")
            await until(async () => (await published(client, "room")).length === 1, "the other client's message")
            await client.publish(["room"], "chat", { from: "me", note: "a:b:c" }, "mine\r\n\r\nwith a blank line")
            await until(async () => (await published(client, "room")).length === 2, "its own message")
            assert.deepStrictEqual(await published(client, "room"), [
              "from another client",
              "mine\r\n\r\nwith a blank line".replace(/\r\n/g, transport === "sse" ? "\n" : "\r\n")
            ])
            const [, own] = (await client.frames()).filter((frame) => frame.headers["publish"] === "room")
            assert.deepInclude(own!, { command: "chat", headers: { publish: "room", from: "me", note: "a:b:c" } })
            // a subscriber without positions gets the text as it was published
            assert.strictEqual(await watcher.next(), "LHTTP/1.0 chat\r\npublish:room\r\n\r\nfrom another client")
            assert.strictEqual(
              await watcher.next(),
              "LHTTP/1.0 chat\r\npublish:room\r\nfrom:me\r\nnote:a:b:c\r\n\r\nmine\r\n\r\nwith a blank line"
            )
          } finally {
            await watcher.close()
          }
        })
      })

      it("request/reply by id; an error frame fails its request with the status and reason", async () => {
        await withClient(driver(), { transport, reconnect: quick }, async (client) => {
          const replies = await Promise.all(["one", "two", "three"].map((body) => replyOf(client, "echo", body)))
          assert.deepStrictEqual(replies, ["one", "two", "three"])
          const denied = await client.request("deny", "")
          assert.deepStrictEqual(denied, { error: { status: 403, reason: "Forbidden" } })
          assert.strictEqual(await replyOf(client, "echo", "still here"), "still here")
        })
      })

      it("publishAcknowledged: answered with the position of each history channel; a refusal with its status and reason", async () => {
        await withClient(driver(), { transport, reconnect: quick }, async (client) => {
          await client.subscribe(["h-acked"])
          await until(async () => (await client.position("h-acked")) !== undefined, "the channel's position")
          const { epoch, offset } = (await client.position("h-acked"))!
          const first = await client.publishAcknowledged(["h-acked", "plain"], "chat", "one")
          assert.deepStrictEqual(first, { ok: { "h-acked": `${epoch}:${offset + 1}` } })
          const second = await client.publishAcknowledged(["h-acked"], "chat", "two")
          assert.deepStrictEqual(second, { ok: { "h-acked": `${epoch}:${offset + 2}` } })
          // the client's own message came at the acknowledged position
          await until(async () => (await client.position("h-acked"))?.offset === offset + 2, "its own message")
          assert.deepStrictEqual(await client.publishAcknowledged(["plain"], "chat", "three"), { ok: {} })
          // the server refuses (the processor of deny): the acknowledgement fails with its status and reason
          assert.deepStrictEqual(await client.publishAcknowledged(["plain"], "deny", "x"), {
            error: { status: 403, reason: "Forbidden" }
          })
        })
      })

      it("a request whose connection closes before its answer fails Closed; the next connection serves the next", async () => {
        await withClient(driver(), { transport, reconnect: quick }, async (client) => {
          // kick closes the connection without an answer: whether the server took a request is not known
          const kicked = await client.request("kick", "")
          assert.strictEqual("error" in kicked ? kicked.error.reason : "answered", "Closed")
          await openedTimes(client, 2)
          assert.strictEqual(await replyOf(client, "echo", "after"), "after")
        })
      })

      it("a close that asks for a wait (reconnect:<ms>, a drain's) is followed: the reconnect comes after it, not the backoff", async () => {
        await withClient(driver(), { transport, reconnect: quick }, async (client) => {
          await client.command("restart")
          await openedTimes(client, 2)
          const states = await client.states()
          const lastOpen = states.findLastIndex(({ state }) => state === "open")
          const lost = states.slice(0, lastOpen).findLast(({ state }) => state === "reconnecting")!
          // the backoff would have reconnected within 50 to 100 ms
          assert.isAtLeast(states[lastOpen]!.at - lost.at, 750)
          assert.strictEqual(await replyOf(client, "echo", "back"), "back")
        })
      })

      it("reconnects after the server closes the connection, and subscribes again", async () => {
        await withClient(driver(), { transport, reconnect: quick }, async (client, served) => {
          await client.subscribe(["news"])
          await barrier(client)
          await client.command("kick")
          await openedTimes(client, 2)
          const states = (await client.states()).map(({ state }) => state)
          assert.deepStrictEqual(states.filter((state, i) => state !== states[i - 1]).slice(-3), [
            "open",
            "reconnecting",
            "open"
          ])
          await barrier(client)
          await served.publish("news", "flash", "after the reconnect")
          await until(async () => (await published(client, "news")).length === 1, "the message after the reconnect")
          assert.deepStrictEqual(await published(client, "news"), ["after the reconnect"])
        })
      })

      it("keeps the session and restores it on a new connection before anything else", async () => {
        await withClient(driver(), { transport, reconnect: quick }, async (client) => {
          assert.strictEqual(await replyOf(client, "whoami", ""), "nobody")
          await client.request("login", JSON.stringify({ name: "ann" }))
          const session = await client.session()
          assert.deepStrictEqual(session?.data, { name: "ann" })
          const key = session!.key
          await client.command("kick")
          await openedTimes(client, 2)
          await until(async () => (await client.sessionChanges()).length === 2, "the restore")
          assert.deepStrictEqual(await client.sessionChanges(), [
            { change: "created", key },
            { change: "restored", key }
          ])
          assert.strictEqual(await replyOf(client, "whoami", ""), "ann")
          assert.deepStrictEqual(await client.session(), { key, data: { name: "ann" } })
        })
      })

      it("recovers a history channel by position (since): what was published meanwhile, in order, then the position", async () => {
        const away = { initialDelay: 400, maxDelay: 400, jitter: 0 }
        await withClient(driver(), { transport, reconnect: away }, async (client, served) => {
          await client.subscribe(["h-news"])
          await barrier(client)
          await served.publish("h-news", "flash", "before")
          await until(async () => (await published(client, "h-news")).length === 1, "the first message")
          const { epoch } = (await client.position("h-news"))!
          assert.deepStrictEqual(await client.position("h-news"), { epoch, offset: 1 })
          const before = (await onChannel(client, "h-news")).length
          await client.command("kick")
          await until(async () => (await client.states()).at(-1)?.state === "reconnecting", "the reconnect to wait")
          for (let i = 1; i <= 3; i++) await served.publish("h-news", "flash", `missed ${i}`)
          await openedTimes(client, 2)
          await barrier(client)
          await served.publish("h-news", "flash", "live")
          await until(async () => (await published(client, "h-news")).includes("live"), "the live message")
          const after = (await onChannel(client, "h-news")).slice(before)
          assert.deepStrictEqual(after.map((frame) => frame.command === "position" ? "position" : frame.body), [
            "missed 1",
            "missed 2",
            "missed 3",
            "position",
            "live"
          ])
          assert.deepInclude(after[3]!.headers, { channel: "h-news", epoch, offset: "4", recovered: "yes" })
          assert.deepStrictEqual(await client.position("h-news"), { epoch, offset: 5 })
        })
      })

      it("keeps a session frame whose body is not JSON, its text as the data (never a silent drop)", async () => {
        await withClient(driver(), { transport, reconnect: quick }, async (client) => {
          assert.strictEqual(await replyOf(client, "odd", ""), "sent")
          await until(async () => (await client.sessionChanges()).length === 1, "the session frame")
          assert.deepStrictEqual(await client.sessionChanges(), [{ change: "created", key: oddKey }])
          assert.deepStrictEqual(await client.session(), { key: oddKey, data: "not { json" })
        })
      })

      it("takes a frame with more headers than the server takes inbound (64): a positioned one has 67", async () => {
        await withClient(driver(), { transport, reconnect: quick }, async (client) => {
          await client.subscribe(["h-wide"])
          await barrier(client)
          const headers = Object.fromEntries(Array.from({ length: 63 }, (_, i) => [`x-${i}`, `${i}`]))
          await client.publish(["h-wide"], "wide", headers, "all of it")
          await until(async () => (await published(client, "h-wide")).length === 1, "the wide frame")
          const [wide] = (await client.frames()).filter((frame) => frame.headers["publish"] === "h-wide")
          // the publisher's 64 headers and the position the server adds: channel, offset, epoch
          assert.strictEqual(Object.keys(wide!.headers).length, 67)
          assert.deepInclude(wide!, { command: "wide", body: "all of it" })
          assert.strictEqual(wide!.headers["x-62"], "62")
        })
      })
    })
  }

  describe("over websocket: the reconnect backoff", () => {
    it("starts at 500 ms (with jitter, 250 to 500 ms) by default", async () => {
      await withClient(driver(), { transport: "websocket" }, async (client) => {
        await client.command("kick")
        await openedTimes(client, 2)
        const states = await client.states()
        const reconnecting = states.findLast(({ state }) => state === "reconnecting")!
        const open = states.findLast(({ state }) => state === "open")!
        const waited = open.at - reconnecting.at
        assert.isAtLeast(waited, 240, `reconnected after ${waited} ms`)
        assert.isBelow(waited, 2_000, `reconnected after ${waited} ms`)
      })
    })
  })

  for (const transport of ["sse", "poll"] as const) {
    describe(`over ${transport}: the answers to POST /send`, () => {
      it("a 5xx is sent again after the backoff, at most 3 times; then the send fails with the status", async () => {
        await withClient(driver(), { transport, reconnect: quick, proxied: true }, async (client, _served, proxy) => {
          proxy!.fail(503, 2)
          assert.strictEqual(await replyOf(client, "echo", "after two 503"), "after two 503")
          assert.strictEqual(proxy!.failed().length, 2)
          assert.isTrue(proxy!.failed().every((text) => text.endsWith("\r\n\r\nafter two 503")))

          proxy!.fail(502, 10)
          const failed = await client.request("echo", "never taken")
          assert.isTrue("error" in failed, JSON.stringify(failed))
          assert.strictEqual("error" in failed ? failed.error.status : undefined, 502)
          assert.strictEqual(proxy!.failed().length, 4)
          // the connection stays: the next frame goes through
          proxy!.fail(502, 0)
          assert.strictEqual(await replyOf(client, "echo", "still here"), "still here")
          assert.strictEqual(await opens(client), 1)
        })
      })

      it("a 429 makes the client wait retry-after (at most 30 s) and send the same frame again", async () => {
        await withClient(driver(), { transport, reconnect: quick, proxied: true }, async (client, _served, proxy) => {
          proxy!.fail(429, 1, { "retry-after": "1" })
          const started = Date.now()
          assert.strictEqual(await replyOf(client, "echo", "after a 429"), "after a 429")
          const waited = Date.now() - started
          assert.isAtLeast(waited, 950, `sent again after ${waited} ms`)
          assert.strictEqual(proxy!.failed().length, 1)
          assert.strictEqual(await opens(client), 1)
        })
      })
    })
  }
}
