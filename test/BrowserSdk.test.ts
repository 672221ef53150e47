/**
 * The browser SDK (src/browser/lhttp.js) in Node: the committed file is its build (from
 * src/browser/*.ts and src/internal/wire/*.ts, scripts/build-browser.mjs); its frames byte for byte
 * (the original SDK's vectors without its bugs), its decoding of what servers send, and its
 * behaviour against a real in-process server: request/reply, a chat as the original demo wrote it,
 * and reconnection with re-subscription after the server closes the connection or restarts. Then
 * the same over long-poll and Server-Sent Events (read with fetch), resuming a broken stream or
 * poll, and the fallback from a WebSocket that cannot connect to SSE and long-poll. The scenarios
 * both clients share are test/ClientConformance.test.ts's.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Layer, Result, Scope } from "effect"
import * as fc from "fast-check"
import * as Jose from "jose"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { vi } from "vitest"
import WebSocketWs from "ws"
import {
  Context,
  decode,
  encode,
  fromEvent,
  type HttpConnection,
  Lhttp,
  LhttpError,
  type LhttpOptions,
  Message,
  type State,
  type Transport,
  type WebSocketLike
} from "../src/browser/lhttp.js"
import * as Chat from "../src/demo/Chat.ts"
import * as Echo from "../src/demo/Echo.ts"
import * as Login from "../src/demo/Login.ts"
import * as Frame from "../src/Frame.ts"
import * as History from "../src/History.ts"
import { eventOf } from "../src/internal/server/httpConnection.ts"
import * as Processor from "../src/Processor.ts"
import * as Sessions from "../src/Sessions.ts"
import * as SessionStore from "../src/SessionStore.ts"
import { connect, frame, request, startServer } from "./utils/lhttp.ts"
import { freePort, start } from "./utils/process.ts"

// ---------------------------------------------------------------------------------------------
// A scripted WebSocket, for exact bytes and deterministic reconnection

class FakeSocket implements WebSocketLike {
  static all: Array<FakeSocket> = []
  static get last(): FakeSocket {
    return FakeSocket.all[FakeSocket.all.length - 1]!
  }
  readyState = 0
  binaryType = "blob"
  sent: Array<string> = []
  onopen: ((event: unknown) => void) | null = null
  onmessage: ((event: { readonly data: unknown }) => void) | null = null
  onerror: ((event: unknown) => void) | null = null
  onclose: ((event: { readonly code: number; readonly reason: string }) => void) | null = null
  readonly url: string
  constructor(url: string) {
    this.url = url
    FakeSocket.all.push(this)
  }
  send(data: string) {
    if (this.readyState !== 1) throw new Error("InvalidStateError: not open")
    this.sent.push(data)
  }
  close(code = 1000, reason = "") {
    this.readyState = 3
    this.onclose?.({ code, reason })
  }
  /** The server side: accept, deliver, drop. */
  accept() {
    this.readyState = 1
    this.onopen?.({})
  }
  deliver(text: string) {
    this.onmessage?.({ data: text })
  }
  drop(code = 1006, reason = "") {
    this.readyState = 3
    this.onclose?.({ code, reason })
  }
  refuse() {
    this.readyState = 3
    this.onerror?.({})
    this.onclose?.({ code: 1006, reason: "" })
  }
}

const fake = (options?: LhttpOptions) => {
  FakeSocket.all = []
  const lhttp = new Lhttp("ws://fake/", { WebSocket: FakeSocket, ...options })
  return { lhttp, socket: FakeSocket.last }
}

// ---------------------------------------------------------------------------------------------
// A real SDK client on a real server

interface Watched {
  readonly lhttp: Lhttp
  readonly states: Array<State>
  readonly closes: Array<Context>
  /** The bodies of every frame on_message received, in order (`next` takes none of them away). */
  readonly bodies: Array<string>
  /** How many times on_error ran (a refused attempt to reconnect is one). */
  readonly errors: () => number
  /** Waits for (and takes) the first received frame that `match`es. */
  readonly next: (match: (context: Context) => boolean, timeoutMs?: number) => Effect.Effect<Context>
}

const sdk = (url: string, options?: LhttpOptions) =>
  Effect.acquireRelease(
    Effect.sync((): Watched => {
      const lhttp = new Lhttp(url, { reconnect: { initialDelay: 50, maxDelay: 200 }, ...options })
      const received: Array<Context> = []
      const states: Array<State> = ["connecting"]
      const closes: Array<Context> = []
      const bodies: Array<string> = []
      let errors = 0
      lhttp.on_message = (context) => {
        received.push(context)
        bodies.push(context.getBody())
      }
      lhttp.on_state = (state) => void states.push(state)
      lhttp.on_close = (context) => void closes.push(context)
      lhttp.on_error = () => void errors++
      const next = (match: (context: Context) => boolean, timeoutMs = 3_000) =>
        Effect.promise(async () => {
          const deadline = Date.now() + timeoutMs
          for (;;) {
            const index = received.findIndex(match)
            if (index !== -1) return received.splice(index, 1)[0]!
            if (Date.now() > deadline) {
              throw new Error(
                `no matching frame in ${timeoutMs} ms; received: ${JSON.stringify(received.map((c) => encode(c.req)))}`
              )
            }
            await new Promise((resolve) => setTimeout(resolve, 10))
          }
        })
      return { lhttp, states, closes, bodies, errors: () => errors, next }
    }),
    ({ lhttp }) =>
      Effect.promise(() => Promise.race([lhttp.close(), new Promise((resolve) => setTimeout(resolve, 2_000))]))
  )

const until = (check: () => boolean, what: string, timeoutMs = 5_000) =>
  Effect.promise(async () => {
    const deadline = Date.now() + timeoutMs
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  })

const opened = (c: Watched) => until(() => c.lhttp.state === "open", "the connection to open")

const failure = (promise: Promise<unknown>) =>
  Effect.promise(() => promise.then(() => assert.fail("expected a rejection"), (error: unknown) => error as LhttpError))

const Kick = Processor.make("kick")
const KickLive = Kick.toLayer({ onMessage: (exchange) => exchange.connection.close(4100, "kicked") })
const Silent = Processor.make("silent")
const SilentLive = Silent.toLayer({ onMessage: () => Effect.void })

// holds its connection's frames until the gate opens
let gate = Deferred.makeUnsafe<void>()
const Hold = Processor.make("hold")
const HoldLive = Hold.toLayer({ onMessage: () => Effect.suspend(() => Deferred.await(gate)) })

const server = (
  port?: number,
  options: {
    readonly paths?: ReadonlyArray<string>
    readonly sse?: boolean
    readonly maxMessageBytes?: number
    readonly sseReplayBytes?: number
  } = {}
) =>
  startServer(
    { processors: [Echo.Echo, Chat.Chat, Kick, Silent, Hold], ...options, ...(port === undefined ? {} : { port }) },
    Layer.mergeAll(Echo.layer, Chat.layer, KickLive, SilentLive, HoldLive)
  )

const isChat = (event: string, from: string) => (context: Context) =>
  context.getHeader("event") === event && context.getHeader("from") === from

// ---------------------------------------------------------------------------------------------

describe("browser SDK: built from its TypeScript sources", () => {
  it("src/browser/lhttp.js and lhttp.d.ts (what the server serves at GET /lhttp.js) are a fresh build's", () => {
    const root = Path.join(import.meta.dirname, "..")
    const out = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-lhttp-sdk-"))
    try {
      const built = ChildProcess.spawnSync(process.execPath, [Path.join(root, "scripts", "build-browser.mjs"), out], {
        encoding: "utf8"
      })
      assert.strictEqual(built.status, 0, built.stderr)
      for (const name of ["lhttp.js", "lhttp.d.ts"]) {
        const committed = Fs.readFileSync(Path.join(root, "src", "browser", name), "utf8")
        const fresh = Fs.readFileSync(Path.join(out, name), "utf8")
        assert.isTrue(committed === fresh, `src/browser/${name} is not the build's: run \`npm run build:browser\``)
      }
      // dependency-free: an ES module that imports nothing
      assert.notMatch(Fs.readFileSync(Path.join(out, "lhttp.js"), "utf8"), /^\s*import\b|\brequire\(/m)
    } finally {
      Fs.rmSync(out, { recursive: true, force: true })
    }
  }, 60_000)
})

describe("browser SDK: frames it sends", () => {
  it("the original SDK's vectors (§12.4) without its bugs", () => {
    const { lhttp, socket } = fake()
    socket.accept()
    const ctx = lhttp.context
    ctx.subscribe("a", "chat", null, "")
    ctx.publish("b", "chat", { x: "1" }, "hi") // the original also sent subscribe:a here
    new Context(lhttp, decode("LHTTP/1.0 chat\r\nh:v\r\n\r\nbody")).send("reply") // the original echoed no header either
    assert.deepStrictEqual(socket.sent, [
      "LHTTP/1.0 chat\r\nsubscribe:a\r\nsince:now\r\n\r\n",
      "LHTTP/1.0 chat\r\npublish:b\r\nx:1\r\n\r\nhi",
      "LHTTP/1.0 chat\r\n\r\nreply"
    ])
  })

  it("staged headers and command go into the next send only", () => {
    const { lhttp, socket } = fake()
    socket.accept()
    const ctx = lhttp.context
    ctx.addHeader("content-type", "text/plain").addHeader("trace", "a:b:c").setCommand("say")
    ctx.send("one")
    ctx.send("two")
    ctx.publish(["r1", "r2"], "chat", new Map([["k", "v"]]), "line1\r\n\r\nline2")
    ctx.unsubscribe("r1 r2", "chat", null, "")
    ctx.addHeader("x", "1")
    ctx.subscribe("c", "chat", [["name", "ann"]], null)
    assert.deepStrictEqual(socket.sent, [
      "LHTTP/1.0 say\r\ncontent-type:text/plain\r\ntrace:a:b:c\r\n\r\none",
      "LHTTP/1.0 \r\n\r\ntwo", // the shared context received nothing: empty command
      "LHTTP/1.0 chat\r\npublish:r1 r2\r\nk:v\r\n\r\nline1\r\n\r\nline2",
      "LHTTP/1.0 chat\r\nunsubscribe:r1 r2\r\n\r\n",
      "LHTTP/1.0 chat\r\nx:1\r\nsubscribe:c\r\nsince:now\r\nname:ann\r\n\r\n"
    ])
  })

  it("refuses what could not be read back (no header or command injection)", () => {
    const { lhttp, socket } = fake()
    socket.accept()
    const reason = (f: () => void) => {
      try {
        f()
      } catch (error) {
        assert.instanceOf(error, LhttpError)
        return (error as LhttpError).reason
      }
      return assert.fail("expected a throw")
    }
    assert.strictEqual(reason(() => lhttp.context.publish("a", "chat", { x: "1\r\npublish:b" }, "")), "MalformedHeader")
    assert.strictEqual(reason(() => lhttp.context.addHeader("a:b", "1").send("")), "MalformedHeader")
    assert.strictEqual(reason(() => lhttp.context.addHeader("", "1").send("")), "MalformedHeader")
    assert.strictEqual(reason(() => lhttp.context.setCommand("chat\r\nsubscribe:x").send("")), "MalformedStartLine")
    assert.deepStrictEqual(socket.sent, [])
    lhttp.context.send("after") // nothing staged survives a refusal
    assert.deepStrictEqual(socket.sent, ["LHTTP/1.0 \r\n\r\nafter"])
  })

  it("encode writes what the server's Frame.render writes, and decode reads it back", () => {
    const noLineBreak = fc.string({ unit: "grapheme", maxLength: 16 }).filter((s) => !/[\r\n]/.test(s))
    const name = fc.string({ unit: "grapheme", minLength: 1, maxLength: 10 }).filter((s) => !/[:\r\n]/.test(s))
    const body = fc.array(fc.constantFrom("a", "é", "😀", ":", " ", "\r\n", "\r\n\r\n", "\r", "\n", "LHTTP/1.0 x"), {
      maxLength: 12
    }).map((parts) => parts.join(""))
    fc.assert(
      fc.property(
        noLineBreak,
        fc.array(fc.tuple(name, noLineBreak), { maxLength: 6 }),
        body,
        (command, pairs, text) => {
          const headers = new Map(pairs)
          const rendered = Frame.render(Frame.make(command, headers, text))
          assert.strictEqual(encode({ command, headers, body: text }), rendered)
          assert.strictEqual(new Message(command, headers, text).encode(), rendered)
          const message = decode(rendered)
          assert.strictEqual(message.command, command)
          assert.deepStrictEqual(Array.from(message.headers), Array.from(headers))
          assert.strictEqual(message.body, text)
        }
      )
    )
  })
})

describe("browser SDK: decoding what the server sends", () => {
  const cases: Array<[string, string, Array<[string, string]>, string]> = [
    ["a reply", "LHTTP/1.0 echo\r\nid:7\r\n\r\nhi", [["id", "7"]], "hi"],
    ["a delivery", "LHTTP/1.0 chat\r\npublish:chatroom\r\nfrom:ann\r\n\r\nhello", [["publish", "chatroom"], [
      "from",
      "ann"
    ]], "hello"],
    ["values keep their colons", "LHTTP/1.0 chat\r\nupstream:POST http://x.com/a\r\n\r\nb", [[
      "upstream",
      "POST http://x.com/a"
    ]], "b"],
    [
      "bodies keep every CRLF CRLF",
      "LHTTP/1.0 chat\r\nk:v\r\n\r\nline1\r\n\r\nline2\r\n\r\n",
      [["k", "v"]],
      "line1\r\n\r\nline2\r\n\r\n"
    ],
    ["no headers", "LHTTP/1.0 chat\r\n\r\nline1\r\nline2", [], "line1\r\nline2"],
    ["an empty body", "LHTTP/1.0 chat\r\nk:v\r\n\r\n", [["k", "v"]], ""],
    ["the end ends the header section", "LHTTP/1.0 chat\r\nk:v", [["k", "v"]], ""],
    ["the end ends the start line", "LHTTP/1.0 chat room", [], ""],
    ["empty values and spaces are kept", "LHTTP/1.0 x\r\npublish:\r\n a : b \r\n\r\nbody", [["publish", ""], [
      " a ",
      " b "
    ]], "body"],
    [
      "a repeated name: first place, last value",
      "LHTTP/1.0 x\r\na:1\r\nb:2\r\na:3\r\n\r\n",
      [["a", "3"], ["b", "2"]],
      ""
    ]
  ]
  for (const [what, text, headers, body] of cases) {
    it(what, () => {
      const message = decode(text)
      assert.deepStrictEqual(Array.from(message.headers), headers)
      assert.strictEqual(message.body, body)
      assert.strictEqual(Message.decode(text).encode(), Frame.render(Result.getOrThrow(Frame.parse(text))))
    })
  }

  it("the context reads the named header, all headers and error frames", () => {
    const { lhttp, socket } = fake()
    const seen: Array<Context> = []
    lhttp.on_message = (context) => void seen.push(context)
    socket.accept()
    socket.deliver("LHTTP/1.0 chat\r\nupstream:POST http://x.com/a\r\nfrom:ann\r\n\r\nline1\r\n\r\nline2")
    socket.deliver("LHTTP/1.0 error\r\nstatus:400\r\nreason:InvalidChannel\r\n\r\nthe channel \"a..b\" is invalid")
    socket.deliver("not lhttp at all") // ignored (protocol.md §8)
    socket.deliver(new TextEncoder().encode("LHTTP/1.0 bin\r\n\r\né").buffer as ArrayBuffer as never)
    assert.strictEqual(seen.length, 3)
    const [chat, error, bin] = seen as [Context, Context, Context]
    assert.strictEqual(chat.getCommand(), "chat")
    assert.strictEqual(chat.getHeader("upstream"), "POST http://x.com/a")
    assert.strictEqual(chat.getHeader("nope"), undefined)
    assert.deepStrictEqual(chat.getHeaders(), { upstream: "POST http://x.com/a", from: "ann" })
    assert.strictEqual(chat.getBody(), "line1\r\n\r\nline2")
    assert.isUndefined(chat.getError())
    const problem = error.getError()!
    assert.instanceOf(problem, LhttpError)
    assert.deepInclude(problem, { status: 400, reason: "InvalidChannel", message: "the channel \"a..b\" is invalid" })
    assert.strictEqual(bin.getBody(), "é")
  })

  it("refuses what is not an LHTTP/1.0 frame with the protocol's reasons", () => {
    const reason = (text: string) => {
      try {
        decode(text)
      } catch (error) {
        return (error as LhttpError).reason
      }
      return "decoded"
    }
    assert.strictEqual(reason("hello"), "NotLhttp")
    assert.strictEqual(reason("LHTTP/2.0 chat"), "UnsupportedVersion")
    assert.strictEqual(reason("LHTTP/1.0chat"), "MalformedStartLine")
    assert.strictEqual(reason("LHTTP/1.0 chat\nk:v"), "MalformedStartLine")
    assert.strictEqual(reason("LHTTP/1.0 chat\r\n:\r\n\r\nhello"), "MalformedHeader")
    assert.strictEqual(reason("LHTTP/1.0 chat\r\nnocolon\r\n\r\n"), "MalformedHeader")
    assert.strictEqual(reason("LHTTP/1.0 chat\r\nk:v\nw\r\n\r\n"), "MalformedHeader")
  })
})

describe("browser SDK: connection handling (scripted socket)", () => {
  it("subscriptions before the open, queued sends, re-subscription after a drop, unsubscribe", () => {
    vi.useFakeTimers()
    try {
      const { lhttp, socket } = fake({ reconnect: { initialDelay: 100, factor: 2, maxDelay: 300, jitter: 0 } })
      const opens: Array<boolean | undefined> = []
      const states: Array<State> = []
      lhttp.on_open = (context) => void opens.push(context.reconnected)
      lhttp.on_state = (state) => void states.push(state)
      lhttp.context.subscribe("room", "chat", { name: "ann" }, "")
      lhttp.context.publish("room", "chat", null, "early")
      assert.deepStrictEqual(socket.sent, [])
      socket.accept()
      assert.deepStrictEqual(socket.sent, [
        "LHTTP/1.0 chat\r\nsubscribe:room\r\nsince:now\r\nname:ann\r\n\r\n",
        "LHTTP/1.0 chat\r\npublish:room\r\n\r\nearly"
      ])
      // subscribing while publishing: re-sent without the publish nor its body
      lhttp.context.addHeader("subscribe", "news").publish("room", "say", { "content-type": "text/plain" }, "hi")
      lhttp.context.subscribe("a b c", "watch", null, "")
      lhttp.context.unsubscribe("b", "watch", null, "")
      assert.deepStrictEqual(lhttp.channels, ["room", "news", "a", "c"])

      socket.drop(1001, "going away")
      assert.strictEqual(lhttp.state, "reconnecting")
      lhttp.context.subscribe("late", "watch", null, "") // re-sent with the others (not from the queue: once)
      lhttp.context.publish("room", "chat", null, "while down")
      vi.advanceTimersByTime(99)
      assert.strictEqual(FakeSocket.all.length, 1)
      vi.advanceTimersByTime(1)
      assert.strictEqual(FakeSocket.all.length, 2)
      FakeSocket.last.refuse() // a failed attempt: the next waits twice as long
      vi.advanceTimersByTime(199)
      assert.strictEqual(FakeSocket.all.length, 2)
      vi.advanceTimersByTime(1)
      FakeSocket.last.accept()
      assert.deepStrictEqual(FakeSocket.last.sent, [
        "LHTTP/1.0 chat\r\nsubscribe:room\r\nsince:now\r\nname:ann\r\n\r\n",
        "LHTTP/1.0 say\r\nsubscribe:news\r\nsince:now\r\ncontent-type:text/plain\r\n\r\n",
        "LHTTP/1.0 watch\r\nsubscribe:a c\r\nsince:now\r\n\r\n",
        "LHTTP/1.0 watch\r\nsubscribe:late\r\nsince:now\r\n\r\n",
        "LHTTP/1.0 chat\r\npublish:room\r\n\r\nwhile down"
      ])
      assert.deepStrictEqual(opens, [false, true])
      assert.deepStrictEqual(states, ["open", "reconnecting", "open"])
    } finally {
      vi.useRealTimers()
    }
  })

  it("backoff grows to maxDelay with jitter below it; reconnect: false and maxAttempts end closed", () => {
    vi.useFakeTimers()
    const random = vi.spyOn(Math, "random").mockReturnValue(0.999)
    try {
      const { socket } = fake({ reconnect: { initialDelay: 100, factor: 3, maxDelay: 1_000, jitter: 0.5 } })
      socket.accept()
      socket.drop()
      const delays: Array<number> = []
      for (let attempt = 0; attempt < 4; attempt++) {
        const before = FakeSocket.all.length
        let waited = 0
        while (FakeSocket.all.length === before) {
          vi.advanceTimersByTime(1)
          waited++
        }
        delays.push(waited)
        FakeSocket.last.refuse()
      }
      // min(1000, 100 * 3^n) * (1 - 0.5 * 0.999)
      assert.deepStrictEqual(delays, [50, 150, 450, 500])

      const once = fake({ reconnect: false })
      const closes: Array<[number | undefined, boolean | undefined]> = []
      once.lhttp.on_close = (context) => void closes.push([context.code, context.willReconnect])
      once.socket.accept()
      once.socket.drop(1001)
      assert.strictEqual(once.lhttp.state, "closed")
      assert.deepStrictEqual(closes, [[1001, false]])
      assert.throws(() => once.lhttp.context.send("x"), /closed/)

      // WebSocket only: with the default transports, a WebSocket that never opened falls back to SSE
      // and long-poll at once (see "falling back" below)
      const twice = fake({ transports: ["websocket"], reconnect: { initialDelay: 10, maxAttempts: 2 } })
      twice.socket.refuse()
      vi.advanceTimersByTime(10)
      FakeSocket.last.refuse()
      vi.advanceTimersByTime(20)
      FakeSocket.last.refuse()
      assert.strictEqual(twice.lhttp.state, "closed")
      assert.strictEqual(FakeSocket.all.length, 3)
    } finally {
      random.mockRestore()
      vi.useRealTimers()
    }
  })

  it("close(): no reconnect, pending requests rejected, sends refused", async () => {
    const { lhttp, socket } = fake()
    socket.accept()
    const pending = lhttp.request("slow", null, "")
    const id = decode(socket.sent[0]!).headers.get("id")!
    assert.match(id, /^[a-z0-9]+-1$/)
    await lhttp.close()
    assert.strictEqual(lhttp.state, "closed")
    const error = await pending.then(() => undefined, (e: LhttpError) => e)
    assert.deepInclude(error, { status: 0, reason: "Closed", id })
    assert.throws(() => lhttp.context.publish("a", "chat", null, "x"), LhttpError)
    assert.strictEqual(FakeSocket.all.length, 1)
  })
})

/** Lets the promises of a getToken settle (and, with fake timers, what is due within `ms`). */
const settle = (ms = 0) => vi.advanceTimersByTimeAsync(ms)

/** What on_disconnect was told: `[code, reason, reconnect]` each. */
const watchDisconnects = (lhttp: Lhttp) => {
  const told: Array<[number | undefined, string | undefined, boolean | undefined]> = []
  lhttp.on_disconnect = (context) => void told.push([context.code, context.reason, context.reconnect])
  return told
}

const tokenSecret = "a-secret-of-at-least-32-bytes-long!!"

let tokensSigned = 0

/** A connection token for `user`, valid for a minute, unlike any other (its `jti`). */
const signToken = (user: string) =>
  new Jose.SignJWT({ sub: user, exp: Math.floor(Date.now() / 1000) + 60, jti: String(++tokensSigned) })
    .setProtectedHeader({ alg: "HS256" })
    .sign(new TextEncoder().encode(tokenSecret))

/** A subscription token for `user` and `channel`, valid for a minute, unlike any other (its `jti`). */
const signSubscription = (user: string, channel: string) =>
  new Jose.SignJWT({ sub: user, channel, exp: Math.floor(Date.now() / 1000) + 60, jti: String(++tokensSigned) })
    .setProtectedHeader({ alg: "HS256" })
    .sign(new TextEncoder().encode(tokenSecret))

describe("browser SDK: connection tokens", () => {
  it("getToken before each attempt: its token in the URL; one that throws or rejects is a failed attempt, tried again after the backoff", async () => {
    vi.useFakeTimers()
    try {
      FakeSocket.all = []
      const given: Array<() => string | Promise<string>> = [
        () => "first",
        () => {
          throw new Error("no token service")
        },
        () => Promise.reject(new Error("still none")),
        () => Promise.resolve("second one&more")
      ]
      let calls = 0
      const lhttp = new Lhttp("ws://fake/app?room=1", {
        WebSocket: FakeSocket,
        transports: ["websocket"],
        reconnect: { initialDelay: 100, factor: 2, maxDelay: 1_000, jitter: 0 },
        getToken: () => given[calls++]!()
      })
      const errors: Array<unknown> = []
      lhttp.on_error = (context) => void errors.push(context.event)
      assert.strictEqual(FakeSocket.all.length, 0) // the token comes first
      await settle()
      assert.deepStrictEqual(FakeSocket.all.map((socket) => socket.url), ["ws://fake/app?room=1&token=first"])
      assert.strictEqual(lhttp.url, "ws://fake/app?room=1")
      FakeSocket.last.accept()
      FakeSocket.last.drop(1006)
      await settle(100) // the first reconnect: getToken throws
      assert.deepStrictEqual(errors.map((error) => (error as Error).message), ["no token service"])
      assert.strictEqual(lhttp.state, "reconnecting")
      await settle(199) // a failed attempt: the next waits twice as long
      assert.strictEqual(calls, 2)
      await settle(1) // it rejects
      assert.deepStrictEqual(errors.map((error) => (error as Error).message), ["no token service", "still none"])
      await settle(399)
      assert.strictEqual(FakeSocket.all.length, 1)
      await settle(1)
      assert.deepStrictEqual(FakeSocket.all.map((socket) => socket.url), [
        "ws://fake/app?room=1&token=first",
        "ws://fake/app?room=1&token=second+one%26more"
      ])
      FakeSocket.last.accept()
      assert.strictEqual(lhttp.state, "open")
      assert.strictEqual(calls, 4)
    } finally {
      vi.useRealTimers()
    }
  })

  it("refresh: getToken's fresh token goes as a token request, its answer taken; a refusal or a failed getToken goes to on_error", async () => {
    vi.useFakeTimers()
    try {
      const fresh: Array<() => string> = [() => "opening", () => "fresh-1", () => "fresh-2", () => {
        throw new Error("logged out")
      }]
      let calls = 0
      const { lhttp } = fake({ getToken: () => fresh[calls++]!() })
      await settle()
      const socket = FakeSocket.last
      socket.accept()
      const messages: Array<string> = []
      const errors: Array<[unknown, string]> = []
      lhttp.on_message = (context) => void messages.push(encode(context.req))
      lhttp.on_error = (context) => void errors.push([context.event, context.getCommand()])
      const disconnects = watchDisconnects(lhttp)
      const refresh = "LHTTP/1.0 refresh\r\nexpires:1767225600000\r\n\r\n"

      socket.deliver(refresh)
      await settle()
      assert.strictEqual(socket.sent.length, 1)
      const asked = decode(socket.sent[0]!)
      assert.strictEqual(asked.command, "token")
      assert.strictEqual(asked.body, "fresh-1")
      const id = asked.headers.get("id")!
      assert.match(id, /^[a-z0-9]+-\d+$/)
      socket.deliver(`LHTTP/1.0 token\r\nid:${id}\r\nuser:alice\r\nexpires:1767225660000\r\n\r\n`)
      await settle()
      // neither the refresh nor its answer is the app's
      assert.deepStrictEqual(messages, [])
      assert.deepStrictEqual(errors, [])

      socket.deliver(refresh)
      await settle()
      const again = decode(socket.sent[1]!)
      assert.strictEqual(again.body, "fresh-2")
      const refused = `LHTTP/1.0 error\r\nid:${
        again.headers.get("id")
      }\r\nstatus:403\r\nreason:TokenUserChanged\r\n\r\n`
      socket.deliver(refused + "a fresh token names the connection's user")
      await settle()
      assert.strictEqual(errors.length, 1)
      assert.deepInclude(errors[0]![0] as LhttpError, { status: 403, reason: "TokenUserChanged" })
      assert.strictEqual(errors[0]![1], "refresh")

      socket.deliver(refresh)
      await settle()
      assert.strictEqual(socket.sent.length, 2) // getToken threw: nothing sent
      assert.strictEqual((errors[1]![0] as Error).message, "logged out")

      // a delivery a publisher named refresh is the app's
      socket.deliver("LHTTP/1.0 refresh\r\npublish:news\r\nexpires:1\r\n\r\nreload")
      assert.deepStrictEqual(messages, ["LHTTP/1.0 refresh\r\npublish:news\r\nexpires:1\r\n\r\nreload"])
      assert.strictEqual(calls, 4)
      // without getToken the refresh is the app's too
      const plain = fake()
      const heard: Array<string> = []
      plain.lhttp.on_message = (context) => void heard.push(context.getCommand())
      plain.socket.accept()
      plain.socket.deliver(refresh)
      assert.deepStrictEqual([heard, plain.socket.sent], [["refresh"], []])
      // the client's own close is no disconnect
      await lhttp.close()
      assert.deepStrictEqual(disconnects, [])
    } finally {
      vi.useRealTimers()
    }
  })

  it("on_disconnect on each close; 4500 to 4999 end the client (closed, no new attempt, requests fail Closed); 4003 and reconnect:<ms> come back with a fresh token", async () => {
    vi.useFakeTimers()
    try {
      let calls = 0
      const { lhttp } = fake({
        transports: ["websocket"],
        reconnect: { initialDelay: 100, factor: 2, maxDelay: 1_000, jitter: 0 },
        getToken: () => `t${++calls}`
      })
      const disconnects = watchDisconnects(lhttp)
      const closes: Array<boolean | undefined> = []
      lhttp.on_close = (context) => void closes.push(context.willReconnect)
      await settle()
      FakeSocket.last.accept()
      FakeSocket.last.drop(4003, "token expired")
      assert.strictEqual(lhttp.state, "reconnecting")
      await settle(100)
      assert.strictEqual(FakeSocket.last.url, "ws://fake/?token=t2")
      FakeSocket.last.accept()
      FakeSocket.last.drop(4499, "kicked") // below the terminal codes
      await settle(100)
      FakeSocket.last.accept()
      FakeSocket.last.drop(1012, "reconnect:2000") // the server's hint, not the backoff
      await settle(1_999)
      assert.strictEqual(FakeSocket.all.length, 3)
      await settle(1)
      assert.strictEqual(FakeSocket.last.url, "ws://fake/?token=t4")
      FakeSocket.last.accept()
      const pending = lhttp.request("slow", null, "")
      FakeSocket.last.drop(4501, "banned")
      assert.strictEqual(lhttp.state, "closed")
      assert.deepStrictEqual(disconnects, [
        [4003, "token expired", true],
        [4499, "kicked", true],
        [1012, "reconnect:2000", true],
        [4501, "banned", false]
      ])
      assert.deepStrictEqual(closes, [true, true, true, false])
      const error = await pending.then(() => undefined, (e: LhttpError) => e)
      assert.deepInclude(error, { status: 0, reason: "Closed" })
      await settle(60_000)
      assert.deepStrictEqual([FakeSocket.all.length, calls], [4, 4])
      assert.throws(() => lhttp.context.publish("room", "chat", null, "after"), /closed/)

      // 4999 is the last terminal code
      const last = fake({ transports: ["websocket"], reconnect: { initialDelay: 100, jitter: 0 } })
      last.socket.accept()
      const told = watchDisconnects(last.lhttp)
      last.socket.drop(1006)
      await settle(100)
      FakeSocket.last.accept()
      FakeSocket.last.drop(4999, "gone for good")
      assert.deepStrictEqual(told, [[1006, "", true], [4999, "gone for good", false]])
      assert.strictEqual(last.lhttp.state, "closed")
    } finally {
      vi.useRealTimers()
    }
  })

  for (const transport of ["sse", "poll"] as const) {
    const where = transport === "sse"
      ? "every GET /sse (a resume: a fresh one)"
      : "the GET /poll that opens the connection"
    it.live(`${transport}: getToken's token on ${where}, on no other request`, () =>
      Effect.gen(function*() {
        const { hub, port, server: lhttp } = yield* startServer(
          { tokens: { secret: tokenSecret }, processors: [Echo.Echo] },
          Echo.layer
        )
        const front = yield* relay(port)
        const issued: Array<string> = []
        const requests: Array<string> = []
        const c = yield* sdk(`ws://127.0.0.1:${front.port}/`, {
          transports: [transport],
          reconnect: { initialDelay: 50, jitter: 0 },
          getToken: async () => {
            issued.push(await signToken("alice"))
            return issued.at(-1)!
          },
          fetch: (input, init) => {
            const url = new URL(input)
            const token = url.searchParams.get("token")
            requests.push(
              `${init?.method ?? "GET"} ${url.pathname} ${token === null ? "-" : `#${issued.indexOf(token)}`}`
            )
            return fetch(input, init)
          }
        })
        c.lhttp.context.subscribe("room", "watch", null, "")
        yield* opened(c)
        const id = httpConn(c).connection
        // a reply came down: the stream, or the next poll, is under way when the relay cuts it
        assert.strictEqual((yield* Effect.promise(() => c.lhttp.request("echo", null, "ready"))).getBody(), "ready")
        front.cut() // resumed on the same connection
        yield* until(() => c.states.includes("reconnecting"), "the client to notice the cut")
        // a poll is answered once a frame comes
        yield* hub.publish("room", "flash", {}, "after the cut")
        yield* c.next((ctx) => ctx.getBody() === "after the cut")
        assert.strictEqual(c.lhttp.state, "open")
        assert.strictEqual(httpConn(c).connection, id)
        assert.strictEqual(lhttp.connectionsOf("alice").length, 1)
        const gets = requests.filter((request) => request.startsWith(`GET /${transport}`))
        if (transport === "sse") assert.deepStrictEqual(gets, ["GET /sse #0", "GET /sse #1"])
        else {
          assert.strictEqual(gets[0], "GET /poll #0")
          assert.deepStrictEqual(new Set(gets.slice(1)), new Set(["GET /poll -"]))
        }
        assert.include(requests, "POST /send -")
        assert.isTrue(requests.every((request) => !request.startsWith("POST") || request.endsWith(" -")))
      }))
  }
})

describe("browser SDK: subscription tokens (scripted socket)", () => {
  /** A getSubscriptionToken the test answers: each call waits for `answer`. */
  const tokenDesk = () => {
    const asked: Array<{ readonly channel: string; readonly settle: (token: string | Error) => void }> = []
    const getSubscriptionToken = (channel: string) =>
      new Promise<string>((resolve, reject) =>
        asked.push({ channel, settle: (token) => typeof token === "string" ? resolve(token) : reject(token) })
      )
    return {
      getSubscriptionToken,
      asked: () => asked.map(({ channel }) => channel),
      answer: (index: number, token: string | Error) => asked[index]!.settle(token)
    }
  }

  it("{ token: true }: each private channel in a subscribe of its own with a fresh token, at the subscribe and at each reconnect, in the app's order; what was sent after it waits for it", async () => {
    vi.useFakeTimers()
    try {
      const desk = tokenDesk()
      const { lhttp, socket } = fake({
        transports: ["websocket"],
        reconnect: { initialDelay: 100, jitter: 0 },
        getSubscriptionToken: desk.getSubscriptionToken
      })
      const opens: Array<boolean | undefined> = []
      const errors: Array<[string, string | undefined]> = []
      lhttp.on_open = (context) => void opens.push(context.reconnected)
      lhttp.on_error = (context) =>
        void errors.push([(context.event as Error).message, context.req.headers.get("subscribe")])
      // before the open: noted, its token asked when the connection opens; a token the app wrote is not sent
      lhttp.context.subscribe("private-a", "join", { name: "ann", token: "stale" }, "hi", { token: true })
      lhttp.context.subscribe("lobby", "watch", null, "")
      lhttp.context.publish("lobby", "chat", null, "early")
      assert.deepStrictEqual(desk.asked(), [])
      socket.accept()
      await settle()
      // nothing goes before the tokens: the state stays connecting, sends are queued, subscriptions noted
      assert.deepStrictEqual([desk.asked(), socket.sent, lhttp.state], [["private-a"], [], "connecting"])
      lhttp.context.subscribe("private-b", "watch", null, "", { token: true })
      lhttp.context.publish("lobby", "chat", null, "meanwhile")
      desk.answer(0, "A1")
      await settle()
      // one made meanwhile: its token is asked before anything goes
      assert.deepStrictEqual([desk.asked(), socket.sent, lhttp.state], [["private-a", "private-b"], [], "connecting"])
      desk.answer(1, "B1")
      await settle()
      assert.deepStrictEqual(socket.sent, [
        "LHTTP/1.0 join\r\nsubscribe:private-a\r\nsince:now\r\nname:ann\r\ntoken:A1\r\n\r\nhi",
        "LHTTP/1.0 watch\r\nsubscribe:lobby\r\nsince:now\r\n\r\n",
        "LHTTP/1.0 watch\r\nsubscribe:private-b\r\nsince:now\r\ntoken:B1\r\n\r\n",
        "LHTTP/1.0 chat\r\npublish:lobby\r\n\r\nearly",
        "LHTTP/1.0 chat\r\npublish:lobby\r\n\r\nmeanwhile"
      ])
      assert.deepStrictEqual([lhttp.state, opens], ["open", [false]])

      // on the open connection: one subscribe a channel; what follows waits for the tokens before it
      socket.sent = []
      lhttp.context.subscribe(["private-c", "private-d"], "watch", null, "", { token: true })
      lhttp.context.publish("private-c", "chat", null, "after c")
      assert.deepStrictEqual(desk.asked().slice(2), ["private-c", "private-d"])
      desk.answer(3, "D1")
      await settle()
      assert.deepStrictEqual(socket.sent, []) // private-c's token has not come
      // a token that fails: on_error, and the subscribe goes without one (the server refuses it)
      desk.answer(2, new Error("no token for c"))
      await settle()
      assert.deepStrictEqual(errors, [["no token for c", "private-c"]])
      assert.deepStrictEqual(socket.sent, [
        "LHTTP/1.0 watch\r\nsubscribe:private-c\r\nsince:now\r\n\r\n",
        "LHTTP/1.0 watch\r\nsubscribe:private-d\r\nsince:now\r\ntoken:D1\r\n\r\n",
        "LHTTP/1.0 chat\r\npublish:private-c\r\n\r\nafter c"
      ])
      lhttp.context.publish("lobby", "chat", null, "at once")
      assert.strictEqual(socket.sent.at(-1), "LHTTP/1.0 chat\r\npublish:lobby\r\n\r\nat once")
      socket.deliver("LHTTP/1.0 position\r\nchannel:private-a\r\nepoch:e1\r\noffset:3\r\n\r\n")

      // the connection drops while private-e's token is asked: what waited behind it goes on the next one
      socket.sent = []
      lhttp.context.subscribe("private-e", "watch", null, "", { token: true })
      lhttp.context.publish("lobby", "chat", null, "behind e")
      socket.drop(1012, "reconnect:100")
      desk.answer(4, "E1") // too late for its connection
      await settle()
      assert.deepStrictEqual(socket.sent, [])
      lhttp.context.publish("lobby", "chat", null, "while down")
      await settle(100)
      FakeSocket.last.accept()
      await settle()
      // every private channel's token asked again: a fresh one each
      assert.deepStrictEqual(desk.asked().slice(5), ["private-a", "private-b", "private-c", "private-d", "private-e"])
      assert.deepStrictEqual([FakeSocket.last.sent, lhttp.state], [[], "reconnecting"])
      for (const [index, token] of ["A2", "B2", "C2", "D2", "E2"].entries()) desk.answer(5 + index, token)
      await settle()
      assert.deepStrictEqual(FakeSocket.last.sent, [
        // a history channel with a known position: since it, in its own message, with its token
        "LHTTP/1.0 join\r\nsubscribe:private-a\r\nsince:e1:3\r\nname:ann\r\ntoken:A2\r\n\r\nhi",
        "LHTTP/1.0 watch\r\nsubscribe:lobby\r\nsince:now\r\n\r\n",
        "LHTTP/1.0 watch\r\nsubscribe:private-b\r\nsince:now\r\ntoken:B2\r\n\r\n",
        "LHTTP/1.0 watch\r\nsubscribe:private-c\r\nsince:now\r\ntoken:C2\r\n\r\n",
        "LHTTP/1.0 watch\r\nsubscribe:private-d\r\nsince:now\r\ntoken:D2\r\n\r\n",
        "LHTTP/1.0 watch\r\nsubscribe:private-e\r\nsince:now\r\ntoken:E2\r\n\r\n",
        "LHTTP/1.0 chat\r\npublish:lobby\r\n\r\nbehind e",
        "LHTTP/1.0 chat\r\npublish:lobby\r\n\r\nwhile down"
      ])
      assert.deepStrictEqual([lhttp.state, opens], ["open", [false, true]])
      // unsubscribed: no more token asked for it
      lhttp.context.unsubscribe("private-b private-c private-d private-e", "watch", null, "")
      FakeSocket.last.drop(1012, "reconnect:0")
      await settle()
      FakeSocket.last.accept()
      await settle()
      assert.deepStrictEqual(desk.asked().slice(10), ["private-a"])
      assert.deepStrictEqual(lhttp.channels, ["private-a", "lobby"])
    } finally {
      vi.useRealTimers()
    }
  })

  it("{ token: true } needs getSubscriptionToken and a message that only subscribes (TypeError, nothing noted)", () => {
    const plain = fake()
    plain.socket.accept()
    assert.throws(
      () => plain.lhttp.context.subscribe("private-a", "watch", null, "", { token: true }),
      TypeError,
      /getSubscriptionToken/
    )
    const { lhttp, socket } = fake({ getSubscriptionToken: () => "T" })
    socket.accept()
    assert.throws(
      () => lhttp.context.addHeader("publish", "room").subscribe("private-a", "say", null, "hi", { token: true }),
      TypeError,
      /only subscribes \(not publish\)/
    )
    assert.throws(
      () => lhttp.send({ command: "watch", headers: { id: "r1", subscribe: "private-a" } }, { token: true }),
      TypeError
    )
    assert.throws(() => lhttp.send({ command: "watch" }, { token: true }), TypeError)
    assert.deepStrictEqual([plain.lhttp.channels, lhttp.channels, plain.socket.sent, socket.sent], [[], [], [], []])
  })

  it("a token header the app wrote itself is re-sent as it was: in the subscribe of its own of a history channel with a known position too", () => {
    vi.useFakeTimers()
    try {
      const { lhttp, socket } = fake({ reconnect: { initialDelay: 100, jitter: 0 } })
      socket.accept()
      lhttp.context.subscribe("private-h plain", "watch", { name: "ann", token: "T1" }, "")
      assert.deepStrictEqual(socket.sent, [
        "LHTTP/1.0 watch\r\nsubscribe:private-h plain\r\nsince:now\r\nname:ann\r\ntoken:T1\r\n\r\n"
      ])
      socket.deliver("LHTTP/1.0 position\r\nchannel:private-h\r\nepoch:e1\r\noffset:5\r\n\r\n")
      socket.drop()
      vi.advanceTimersByTime(100)
      FakeSocket.last.accept()
      assert.deepStrictEqual(FakeSocket.last.sent, [
        "LHTTP/1.0 subscribe\r\nsubscribe:private-h\r\nsince:e1:5\r\ntoken:T1\r\n\r\n",
        "LHTTP/1.0 watch\r\nsubscribe:plain\r\nsince:now\r\nname:ann\r\ntoken:T1\r\n\r\n"
      ])
    } finally {
      vi.useRealTimers()
    }
  })
})

describe("browser SDK: against a real server", () => {
  it.live("request/reply by id, concurrently; timeout and error frames reject with status and reason", () =>
    Effect.gen(function*() {
      const { url } = yield* server()
      const c = yield* sdk(url)
      yield* opened(c)
      const replies = yield* Effect.promise(() =>
        Promise.all(["one", "two\r\n\r\nlines", "x:y"].map((body) => c.lhttp.request("echo", { trace: "t:1" }, body)))
      )
      assert.deepStrictEqual(replies.map((reply) => [reply.getCommand(), reply.getBody()]), [
        ["echo", "one"],
        ["echo", "two\r\n\r\nlines"],
        ["echo", "x:y"]
      ])
      assert.strictEqual(new Set(replies.map((reply) => reply.getHeader("id"))).size, 3)

      const timeout = yield* failure(c.lhttp.request("silent", null, "", { timeout: 200 }))
      assert.deepInclude(timeout, { status: 0, reason: "Timeout" })
      const unknown = yield* failure(c.lhttp.request("nosuch", { id: "mine" }, ""))
      assert.instanceOf(unknown, LhttpError)
      assert.deepInclude(unknown, { status: 404, reason: "UnknownCommand", id: "mine" })
      const invalid = yield* failure(c.lhttp.request("watch", { publish: "a..b" }, ""))
      assert.deepInclude(invalid, { status: 400, reason: "InvalidChannel" })
      // no reply went to on_message; an error frame without id does
      c.lhttp.context.publish("$SYS.x", "chat", null, "")
      const error = yield* c.next((context) => context.getCommand() === "error")
      assert.deepInclude(error.getError(), { status: 400, reason: "InvalidChannel", id: undefined })
    }))

  it.live("runs on ws's WebSocket class as on the global one", () =>
    Effect.gen(function*() {
      const { url } = yield* server()
      for (const WebSocket of [globalThis.WebSocket, WebSocketWs]) {
        const c = yield* sdk(url, { WebSocket })
        const reply = yield* Effect.promise(() => c.lhttp.request("echo", null, "é\r\n\r\n😀"))
        assert.strictEqual(reply.getBody(), "é\r\n\r\n😀")
      }
    }))

  it.live("a chat as the original demo wrote it: subscribe on open, publish, receive", () =>
    Effect.gen(function*() {
      const { url } = yield* server()
      const observer = yield* connect(url)
      yield* observer.send(frame("watch", { subscribe: "room" }))
      const alice = yield* sdk(url)
      alice.lhttp.on_open = (ctx) => ctx.subscribe("room", "chat", { name: "alice" }, "")
      const members = yield* alice.next((ctx) => ctx.getHeader("event") === "members")
      assert.strictEqual(members.getBody(), "alice")
      yield* alice.next(isChat("join", "alice"))
      assert.strictEqual(yield* observer.next(), "LHTTP/1.0 chat\r\nevent:join\r\nroom:room\r\nfrom:alice\r\n\r\n")

      const bob = yield* sdk(url)
      bob.lhttp.on_open = (ctx) => ctx.subscribe("room", "chat", { name: "bob" }, "")
      assert.strictEqual((yield* bob.next((ctx) => ctx.getHeader("event") === "members")).getBody(), "alice\nbob")
      yield* alice.next(isChat("join", "bob"))
      yield* observer.next()

      alice.lhttp.context.publish("room", "chat", null, "hi bob\r\n\r\nhow are you?")
      const hi = yield* bob.next((ctx) => ctx.getBody().startsWith("hi bob"))
      assert.deepStrictEqual(hi.getHeaders(), { publish: "room", from: "alice" })
      assert.strictEqual(hi.getBody(), "hi bob\r\n\r\nhow are you?")
      // the bytes alice sent, as any subscriber gets them (the server adds from)
      assert.strictEqual(
        yield* observer.next(),
        "LHTTP/1.0 chat\r\npublish:room\r\nfrom:alice\r\n\r\nhi bob\r\n\r\nhow are you?"
      )
      yield* alice.next((ctx) => ctx.getBody().startsWith("hi bob")) // the sender hears it too

      bob.lhttp.context.publish("room", "chat", { mood: "fine:thanks" }, "fine")
      const fine = yield* alice.next((ctx) => ctx.getBody() === "fine")
      assert.deepStrictEqual(fine.getHeaders(), { publish: "room", mood: "fine:thanks", from: "bob" })
      assert.strictEqual(
        yield* observer.next(),
        "LHTTP/1.0 chat\r\npublish:room\r\nmood:fine:thanks\r\nfrom:bob\r\n\r\nfine"
      )

      bob.lhttp.context.unsubscribe("room", "chat", null, "")
      yield* alice.next(isChat("leave", "bob"))
      assert.deepStrictEqual(bob.lhttp.channels, [])
    }))

  it.live("the server closes the connection: the client reconnects, joins again with its name and keeps chatting", () =>
    Effect.gen(function*() {
      const { url } = yield* server()
      const bob = yield* sdk(url)
      bob.lhttp.on_open = (ctx) => ctx.subscribe("room", "chat", { name: "bob" }, "")
      yield* bob.next(isChat("join", "bob"))
      const alice = yield* sdk(url)
      alice.lhttp.on_open = (ctx) => {
        if (!ctx.reconnected) ctx.subscribe("room", "chat", { name: "alice" }, "")
      }
      yield* bob.next(isChat("join", "alice"))

      alice.lhttp.send({ command: "kick" }) // the server closes the connection: 4100
      yield* bob.next(isChat("leave", "alice"))
      yield* bob.next(isChat("join", "alice")) // re-sent subscription, with the name
      yield* opened(alice)
      assert.deepStrictEqual(alice.states, ["connecting", "open", "reconnecting", "open"])
      assert.deepInclude(alice.closes[0], { code: 4100, reason: "kicked", willReconnect: true })
      assert.strictEqual((yield* alice.next((ctx) => ctx.getHeader("event") === "members")).getBody(), "bob\nalice") // first join
      assert.strictEqual((yield* alice.next((ctx) => ctx.getHeader("event") === "members")).getBody(), "bob\nalice")

      bob.lhttp.context.publish("room", "chat", null, "welcome back")
      assert.strictEqual((yield* alice.next((ctx) => ctx.getBody() === "welcome back")).getHeader("from"), "bob")
      alice.lhttp.context.publish("room", "chat", null, "thanks")
      assert.strictEqual((yield* bob.next((ctx) => ctx.getBody() === "thanks")).getHeader("from"), "alice")
    }))

  it.live("the server restarts on the same port (drain, 1012): re-subscribed, and what was sent meanwhile (at most maxQueue) goes out after", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(freePort)
      const first = yield* Scope.make()
      const { url } = yield* server(port).pipe(Scope.provide(first))
      const c = yield* sdk(url, { maxQueue: 2 })
      c.lhttp.context.subscribe("news alerts", "watch", null, "") // before the open: sent on open
      yield* opened(c)
      // the server processed the subscription before the echo
      assert.strictEqual(
        (yield* Effect.promise(() => c.lhttp.request("echo", null, "subscribed"))).getBody(),
        "subscribed"
      )

      yield* Scope.close(first, Exit.void) // drains: every connection is closed with 1012
      yield* until(() => c.lhttp.state === "reconnecting", "the client to notice")
      assert.deepInclude(c.closes[0], { code: 1012, willReconnect: true })
      c.lhttp.context.publish("news", "flash", null, "sent while down")
      const pending = c.lhttp.request("echo", null, "asked while down")
      // maxQueue: 2 messages wait; the third is refused at once, a request too
      assert.throws(() => c.lhttp.context.publish("news", "flash", null, "one too many"), /too many messages/)
      assert.deepInclude(yield* failure(c.lhttp.request("echo", null, "one too many")), {
        status: 0,
        reason: "QueueFull"
      })
      const refusedBefore = c.errors()
      yield* until(() => c.errors() > refusedBefore, "a refused attempt to reconnect") // the queue outlives it

      yield* server(port)
      yield* opened(c)
      assert.strictEqual((yield* Effect.promise(() => pending)).getBody(), "asked while down")
      const mine = yield* c.next((ctx) => ctx.getBody() === "sent while down")
      assert.deepStrictEqual(mine.getHeaders(), { publish: "news" })
      const publisher = yield* connect(url)
      yield* publisher.send(frame("flash", { publish: "alerts" }, "to alerts"))
      assert.strictEqual((yield* c.next((ctx) => ctx.getBody() === "to alerts")).getCommand(), "flash")
      assert.deepStrictEqual(c.lhttp.channels, ["news", "alerts"])
      // what was refused never went out: a marker sent after it comes back, and nothing before it
      c.lhttp.context.publish("news", "flash", null, "marker")
      yield* c.next((ctx) => ctx.getBody() === "marker")
      assert.deepStrictEqual(c.bodies, ["sent while down", "to alerts", "marker"])
    }))

  it("defaults: reconnects after 500 ms doubling to 10 s, half of each wait at random; at most 1000 messages wait", async () => {
    // a real ws socket to a port nothing listens on; only the SDK's timers are faked
    const port = await freePort()
    const made: Array<WebSocketWs> = []
    class Counted extends WebSocketWs {
      constructor(url: string, protocols?: string | Array<string>) {
        super(url, protocols)
        made.push(this)
      }
    }
    const refused = async (attempt: number) => {
      const deadline = Date.now() + 5_000
      // real I/O: poll with setImmediate, which is not faked
      while (!(made[attempt]?.readyState === WebSocketWs.CLOSED && vi.getTimerCount() === 1)) {
        if (Date.now() > deadline) throw new Error(`attempt ${attempt} was not refused in time`)
        await new Promise((resolve) => setImmediate(resolve))
      }
    }
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] })
    const random = vi.spyOn(Math, "random").mockReturnValue(0.5)
    // WebSocket only: with the default transports, a WebSocket that never opened falls back to SSE
    // and long-poll at once (see "falling back" below)
    const lhttp = new Lhttp(`ws://127.0.0.1:${port}/`, { WebSocket: Counted as never, transports: ["websocket"] })
    try {
      for (let i = 0; i < 1000; i++) lhttp.context.publish("room", "chat", null, `${i}`)
      assert.throws(() => lhttp.context.publish("room", "chat", null, "1001"), LhttpError, "too many messages")

      // min(10000, 500 * 2^n) * (1 - 0.5 * 0.5)
      const delays = [375, 750, 1_500, 3_000, 6_000, 7_500, 7_500]
      for (const [attempt, delay] of delays.entries()) {
        await refused(attempt)
        assert.strictEqual(lhttp.state, "reconnecting")
        vi.advanceTimersByTime(delay - 1)
        assert.strictEqual(made.length, attempt + 1, `attempt ${attempt + 1} came before ${delay} ms`)
        vi.advanceTimersByTime(1)
        assert.strictEqual(made.length, attempt + 2, `attempt ${attempt + 1} did not come after ${delay} ms`)
      }
    } finally {
      random.mockRestore()
      vi.useRealTimers()
      await lhttp.close()
    }
  })
})

// ---------------------------------------------------------------------------------------------
// Server-Sent Events and long-poll

/** The data of an SSE event as an `EventSource` gives it: its `data:` lines joined with `\n`. */
const eventData = (event: string) =>
  event.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6)).join("\n")

// ---------------------------------------------------------------------------------------------
// Positions: the SDK asks for them by itself, and keeps only the server's

/** A server whose channels starting with `h-` keep history. */
const historyServer = () =>
  startServer(
    { processors: [Echo.Echo, Kick] },
    Layer.mergeAll(Echo.layer, KickLive),
    { history: History.layerMemory({ policies: [{ prefix: "h-", size: 100, ttl: Duration.minutes(1) }] }) }
  )

/** What `on_message` gets, in order: bodies, and `position` messages as `position <channel> <recovered>`. */
const logOf = (c: Watched) => {
  const log: Array<string> = []
  const original = c.lhttp.on_message
  c.lhttp.on_message = (context) => {
    log.push(
      context.getCommand() === "position"
        ? ["position", context.getHeader("channel"), context.getHeader("recovered") ?? ""].join(" ").trim()
        : context.getBody()
    )
    original.call(c.lhttp, context)
  }
  return log
}

describe("browser SDK: positions (channel history)", () => {
  it("since:now on every subscription without a position; the position from the server's position message, then its deliveries; nothing a publisher wrote", () => {
    vi.useFakeTimers()
    try {
      const { lhttp, socket } = fake({ reconnect: { initialDelay: 100, jitter: 0 } })
      const seen: Array<string> = []
      lhttp.on_message = (context) => void seen.push(context.getBody() || context.getCommand())
      socket.accept()
      lhttp.context.subscribe("h-a plain", "watch", { name: "ann" }, "")
      lhttp.context.subscribe("h-b", "watch", { since: "e0:7" }, "") // its own since: sent as it is
      lhttp.context.subscribe("mine", "watch", { since: "now" }, "")
      lhttp.context.subscribe("h-c", "join", { name: "bo" }, "hello")
      assert.deepStrictEqual(socket.sent, [
        "LHTTP/1.0 watch\r\nsubscribe:h-a plain\r\nsince:now\r\nname:ann\r\n\r\n",
        "LHTTP/1.0 watch\r\nsubscribe:h-b\r\nsince:e0:7\r\n\r\n",
        "LHTTP/1.0 watch\r\nsubscribe:mine\r\nsince:now\r\n\r\n",
        "LHTTP/1.0 join\r\nsubscribe:h-c\r\nsince:now\r\nname:bo\r\n\r\nhello"
      ])
      assert.isUndefined(lhttp.position("h-a"))
      // a delivery before the position is known gives none
      socket.deliver("LHTTP/1.0 x\r\nchannel:h-a\r\noffset:2\r\nepoch:e1\r\npublish:h-a\r\n\r\nearly")
      assert.isUndefined(lhttp.position("h-a"))
      socket.deliver("LHTTP/1.0 position\r\nchannel:h-a\r\nepoch:e1\r\noffset:3\r\n\r\n")
      assert.deepStrictEqual(lhttp.position("h-a"), { epoch: "e1", offset: 3 })
      // the answers for channels without history: the one the SDK asked for is not the app's
      socket.deliver("LHTTP/1.0 position\r\nchannel:plain\r\nreason:NoHistory\r\n\r\n")
      socket.deliver("LHTTP/1.0 position\r\nchannel:mine\r\nreason:NoHistory\r\n\r\n")
      assert.isUndefined(lhttp.position("plain"))
      socket.deliver("LHTTP/1.0 x\r\nchannel:h-a\r\noffset:4\r\nepoch:e1\r\npublish:h-a\r\n\r\nfour")
      assert.deepStrictEqual(lhttp.position("h-a"), { epoch: "e1", offset: 4 })
      // forged: on the channel without history, naming it or the history channel, and a position
      // message a publisher wrote
      socket.deliver("LHTTP/1.0 x\r\nchannel:plain\r\noffset:9\r\nepoch:e1\r\npublish:plain\r\n\r\nf1")
      socket.deliver("LHTTP/1.0 x\r\nchannel:h-a\r\noffset:99\r\nepoch:e1\r\npublish:plain\r\n\r\nf2")
      socket.deliver("LHTTP/1.0 x\r\nchannel:h-a\r\noffset:98\r\nepoch:e1\r\npublish:plain h-a\r\n\r\nf3")
      socket.deliver("LHTTP/1.0 x\r\nchannel:h-a\r\noffset:97\r\nepoch:e1\r\npublish:elsewhere\r\n\r\nf4")
      socket.deliver("LHTTP/1.0 position\r\nchannel:h-a\r\nepoch:e1\r\noffset:96\r\npublish:plain\r\n\r\n")
      socket.deliver("LHTTP/1.0 position\r\nchannel:h-a\r\nepoch:e1\r\noffset:95\r\nid:r1\r\n\r\n")
      assert.isUndefined(lhttp.position("plain"))
      assert.deepStrictEqual(lhttp.position("h-a"), { epoch: "e1", offset: 4 })
      // server code publishes without `publish` (a chat's join): its position is the server's
      socket.deliver("LHTTP/1.0 chat\r\nchannel:h-a\r\noffset:5\r\nepoch:e1\r\nevent:join\r\n\r\njoined")
      assert.deepStrictEqual(lhttp.position("h-a"), { epoch: "e1", offset: 5 })
      // an older offset of the same epoch does not take it back: seen already, it is dropped
      socket.deliver("LHTTP/1.0 x\r\nchannel:h-a\r\noffset:1\r\nepoch:e1\r\npublish:h-a\r\n\r\nlate")
      assert.deepStrictEqual(lhttp.position("h-a"), { epoch: "e1", offset: 5 })
      assert.deepStrictEqual(seen, [
        "early",
        "position",
        "position", // mine's: its own since
        "four",
        "f1",
        "f2",
        "f3",
        "f4",
        "position",
        "position",
        "joined"
      ])

      socket.deliver("LHTTP/1.0 position\r\nchannel:h-c\r\nepoch:e1\r\noffset:6\r\n\r\n")
      assert.deepStrictEqual(lhttp.position("h-c"), { epoch: "e1", offset: 6 })
      seen.pop()

      // a new connection: since the known position, one channel a message (the subscription's own
      // when it is its only channel); the others from now, or as the app asked
      socket.drop()
      vi.advanceTimersByTime(100)
      FakeSocket.last.accept()
      assert.deepStrictEqual(FakeSocket.last.sent, [
        "LHTTP/1.0 subscribe\r\nsubscribe:h-a\r\nsince:e1:5\r\n\r\n",
        "LHTTP/1.0 watch\r\nsubscribe:plain\r\nsince:now\r\nname:ann\r\n\r\n",
        "LHTTP/1.0 watch\r\nsubscribe:h-b\r\nsince:e0:7\r\n\r\n", // not answered yet: asked again
        "LHTTP/1.0 watch\r\nsubscribe:mine\r\nsince:now\r\n\r\n",
        "LHTTP/1.0 join\r\nsubscribe:h-c\r\nsince:e1:6\r\nname:bo\r\n\r\nhello"
      ])
      // the history was lost meanwhile: the position the server gives is taken
      FakeSocket.last.deliver(
        "LHTTP/1.0 position\r\nchannel:h-a\r\nepoch:e2\r\noffset:1\r\nrecovered:no\r\nreason:EpochChanged\r\n\r\n"
      )
      assert.deepStrictEqual(lhttp.position("h-a"), { epoch: "e2", offset: 1 })
      FakeSocket.last.deliver("LHTTP/1.0 position\r\nchannel:h-b\r\nepoch:e2\r\noffset:8\r\n\r\n")
      assert.deepStrictEqual(lhttp.position("h-b"), { epoch: "e2", offset: 8 })
      // a channel whose history is gone: its position too
      FakeSocket.last.deliver("LHTTP/1.0 position\r\nchannel:h-b\r\nrecovered:no\r\nreason:NoHistory\r\n\r\n")
      assert.isUndefined(lhttp.position("h-b"))
      assert.deepStrictEqual(seen.slice(11), ["position", "position", "position"])

      // unsubscribing forgets the position, and a late delivery does not bring it back
      lhttp.context.unsubscribe("h-a", "watch", null, "")
      assert.isUndefined(lhttp.position("h-a"))
      FakeSocket.last.deliver("LHTTP/1.0 x\r\nchannel:h-a\r\noffset:2\r\nepoch:e2\r\npublish:h-a\r\n\r\ngone")
      FakeSocket.last.deliver("LHTTP/1.0 position\r\nchannel:h-a\r\nepoch:e2\r\noffset:2\r\n\r\n")
      assert.isUndefined(lhttp.position("h-a"))
    } finally {
      vi.useRealTimers()
    }
  })

  it.live("a history channel's position is known once subscribed; a channel without history has none, and what its publisher wrote is not taken", () =>
    Effect.gen(function*() {
      const { url } = yield* historyServer()
      const publisher = yield* connect(url)
      const c = yield* sdk(url)
      const log = logOf(c)
      c.lhttp.context.subscribe("h-a plain", "subscribe", null, "")
      yield* opened(c)
      const position = yield* c.next((context) => context.getCommand() === "position")
      assert.strictEqual(position.getHeader("channel"), "h-a")
      assert.isUndefined(position.getHeader("recovered"))
      const epoch = position.getHeader("epoch")!
      assert.isString(epoch)
      assert.deepStrictEqual(c.lhttp.position("h-a"), { epoch, offset: 0 })
      // the server has answered every channel: the one without history was not given to the app
      assert.strictEqual((yield* Effect.promise(() => c.lhttp.request("echo", null, "barrier"))).getBody(), "barrier")
      assert.deepStrictEqual(log, ["position h-a"])
      assert.isUndefined(c.lhttp.position("plain"))

      const forged: ReadonlyArray<Record<string, string>> = [
        { channel: "plain", offset: "5", epoch, publish: "plain" },
        { channel: "h-a", offset: "99", epoch, publish: "plain" },
        { channel: "h-a", offset: "98", epoch, publish: "plain h-a" }
      ]
      for (const headers of forged) yield* publisher.send(frame("forged", headers, "forged"))
      yield* publisher.send(frame("position", { channel: "h-a", epoch, offset: "97", publish: "plain" }))
      yield* publisher.send(frame("flash", { publish: "plain" }, "marker"))
      yield* c.next((context) => context.getBody() === "marker")
      assert.isUndefined(c.lhttp.position("plain"))
      assert.deepStrictEqual(c.lhttp.position("h-a"), { epoch, offset: 0 })
      // what the server positions on the history channel alone is taken (offset 1 went to the frame published to both)
      yield* publisher.send(frame("flash", { publish: "h-a" }, "real"))
      const real = yield* c.next((context) => context.getBody() === "real")
      assert.strictEqual(real.getHeader("offset"), "2")
      assert.deepStrictEqual(c.lhttp.position("h-a"), { epoch, offset: 2 })
    }))

  for (const transport of ["websocket", "sse", "poll"] as const) {
    it.live(
      `${transport}: recovers a history channel after a reconnect: what was published meanwhile, in order, then the position, then live ones`,
      () =>
        Effect.gen(function*() {
          const { url } = yield* historyServer()
          const publisher = yield* connect(url)
          // while offline, the client cannot connect again (what it sends still goes out: the kick)
          let offline = false
          class Gated extends WebSocketWs {
            constructor(address: string) {
              super(offline ? "ws://127.0.0.1:1/" : address)
            }
          }
          const gatedFetch = (input: string, init?: RequestInit) =>
            offline && (init?.method ?? "GET") === "GET" ? Promise.reject(new TypeError("offline")) : fetch(input, init)
          const c = yield* sdk(url, { transports: [transport], WebSocket: Gated, fetch: gatedFetch })
          const log = logOf(c)
          c.lhttp.context.subscribe("h-news", "subscribe", null, "")
          const position = yield* c.next((context) => context.getCommand() === "position")
          const epoch = position.getHeader("epoch")!
          assert.deepStrictEqual(c.lhttp.position("h-news"), { epoch, offset: 0 })
          yield* publisher.send(frame("flash", { publish: "h-news" }, "before"))
          yield* c.next((context) => context.getBody() === "before")
          assert.deepStrictEqual(c.lhttp.position("h-news"), { epoch, offset: 1 })

          offline = true
          c.lhttp.send({ command: "kick" })
          yield* until(() => c.lhttp.state === "reconnecting", "the connection to drop")
          for (let i = 1; i <= 5; i++) yield* publisher.send(frame("flash", { publish: "h-news" }, `missed ${i}`))
          yield* publisher.nothing() // all published
          offline = false
          yield* c.next((context) => context.getCommand() === "position" && context.getHeader("recovered") === "yes")
          yield* publisher.send(frame("flash", { publish: "h-news" }, "live"))
          yield* c.next((context) => context.getBody() === "live")
          assert.deepStrictEqual(log, [
            "position h-news",
            "before",
            "missed 1",
            "missed 2",
            "missed 3",
            "missed 4",
            "missed 5",
            "position h-news yes",
            "live"
          ])
          assert.deepStrictEqual(c.lhttp.position("h-news"), { epoch, offset: 7 })
          assert.strictEqual(c.lhttp.transport, transport)
        }),
      { timeout: 15_000 }
    )
  }
})

describe("browser SDK: fromEvent, an SSE event's data back into a frame", () => {
  it("puts CRLF back in the head and keeps the body", () => {
    const cases: Array<[string, string]> = [
      // docs/transports.md's example
      [
        "LHTTP/1.0 chat\npublish:lobby\n\nhello\nsecond line of the body",
        "LHTTP/1.0 chat\r\npublish:lobby\r\n\r\nhello\nsecond line of the body"
      ],
      ["LHTTP/1.0 chat\n\nno headers", "LHTTP/1.0 chat\r\n\r\nno headers"],
      ["LHTTP/1.0 chat\nk:v\n\n", "LHTTP/1.0 chat\r\nk:v\r\n\r\n"],
      ["LHTTP/1.0 chat\nk:v", "LHTTP/1.0 chat\r\nk:v"],
      ["LHTTP/1.0 chat room", "LHTTP/1.0 chat room"],
      [
        "LHTTP/1.0 x\na:1\nb:2:3\n\nbody\n\nwith blank lines\n",
        "LHTTP/1.0 x\r\na:1\r\nb:2:3\r\n\r\nbody\n\nwith blank lines\n"
      ]
    ]
    for (const [data, text] of cases) assert.strictEqual(fromEvent(data), text)
    assert.strictEqual(Lhttp.fromEvent, fromEvent)
  })

  it("gives back each frame the server streams (its event made by the server's code), the body's CRLF and CR as LF", () => {
    const noLineBreak = fc.string({ unit: "grapheme", maxLength: 12 }).filter((s) => !/[\r\n]/.test(s))
    const name = fc.string({ unit: "grapheme", minLength: 1, maxLength: 8 }).filter((s) => !/[:\r\n]/.test(s))
    const body = fc.array(
      fc.constantFrom("a", "é", "😀", ":", " ", "\r\n", "\r\n\r\n", "\r", "\n", "\n\n", "LHTTP/1.0 x", "data: y"),
      {
        maxLength: 12
      }
    ).map((parts) => parts.join(""))
    fc.assert(
      fc.property(
        noLineBreak,
        fc.array(fc.tuple(name, noLineBreak), { maxLength: 5 }),
        body,
        (command, pairs, text) => {
          const headers = new Map(pairs)
          const rendered = Frame.render(Frame.make(command, headers, text))
          const data = eventData(eventOf({ text: rendered, bytes: new TextEncoder().encode(rendered) }))
          const lf = text.replace(/\r\n|\r/g, "\n")
          assert.strictEqual(fromEvent(data), Frame.render(Frame.make(command, headers, lf)))
          const message = decode(fromEvent(data))
          assert.strictEqual(message.command, command)
          assert.deepStrictEqual(Array.from(message.headers), Array.from(headers))
          assert.strictEqual(message.body, lf)
        }
      )
    )
  })
})

describe("browser SDK: reading an event stream", () => {
  // the transport's events with their lines ending in LF, CRLF or CR, as a proxy may pass them
  const events = [
    ": a comment\r\n",
    "retry: 1000\r\n\r\n",
    "event: connected\rdata: l33LsncyAJlJogOgz58UbQ\r\r",
    "id: l33LsncyAJlJogOgz58UbQ:1\nevent: chat\ndata: LHTTP/1.0 chat\ndata:publish:room\ndata:\ndata: one é\n\n",
    "id: l33LsncyAJlJogOgz58UbQ:2\r\nevent: chat\r\ndata: LHTTP/1.0 chat\r\ndata: publish:room\r\ndata: \r\ndata: two 😀\r\ndata: lines\r\n\r\n",
    "unknown: field\r\nid: l33LsncyAJlJogOgz58UbQ:3\revent: chat\rdata: LHTTP/1.0 chat\rdata: publish:room\rdata: \rdata: three\r\r"
  ].join("")
  const bytes = new TextEncoder().encode(events)

  const readsAll = (options: LhttpOptions, url: string) =>
    Effect.gen(function*() {
      const c = yield* sdk(url, { transports: ["sse"], ...options })
      yield* until(() => c.bodies.length === 3, "three frames")
      assert.deepStrictEqual(c.bodies, ["one é", "two 😀\nlines", "three"])
      assert.strictEqual(httpConn(c).connection, "l33LsncyAJlJogOgz58UbQ")
      assert.deepStrictEqual(c.states, ["connecting", "open"])
    })

  it.live("lines ending with CRLF, CR or LF, a byte at a time from a server", () =>
    Effect.gen(function*() {
      const { port } = yield* Effect.acquireRelease(
        Effect.callback<{ readonly port: number; readonly server: Http.Server }>((resume) => {
          const server = Http.createServer(async (request, response) => {
            if (request.method !== "GET") return void response.writeHead(404).end()
            response.writeHead(200, { "content-type": "text/event-stream; charset=utf-8" })
            for (const byte of bytes) {
              await new Promise<void>((resolve) => response.write(Buffer.of(byte), () => resolve()))
            }
          })
          server.listen(0, "127.0.0.1", () =>
            resume(Effect.succeed({ port: (server.address() as Net.AddressInfo).port, server })))
        }),
        ({ server }) =>
          Effect.callback<void>((resume) => {
            server.closeAllConnections()
            server.close(() =>
              resume(Effect.void)
            )
          })
      )
      yield* readsAll({}, `ws://127.0.0.1:${port}/`)
    }))

  it.live("split anywhere: every chunk boundary, CRLF and UTF-8 sequences included", () =>
    Effect.gen(function*() {
      // TCP decides where the chunks of a real stream end: a Response of one-byte chunks makes each cut certain
      for (const size of [1, 2, 3, 7]) {
        const chunked: typeof fetch = async (input) =>
          String(input).includes("/sse")
            ? new Response(
              new ReadableStream<Uint8Array>({
                start(controller) {
                  for (let i = 0; i < bytes.length; i += size) controller.enqueue(bytes.slice(i, i + size))
                }
              }),
              { status: 200, headers: { "content-type": "text/event-stream; charset=utf-8" } }
            )
            : new Response(null, { status: 404 })
        yield* readsAll({ fetch: chunked }, "ws://lhttp.invalid/")
      }
    }))
})

/** A TCP relay in front of a server whose connections can be cut. */
const relay = (target: number) =>
  Effect.acquireRelease(
    Effect.callback<
      {
        readonly port: number
        readonly cut: () => void
        readonly server: Net.Server
        readonly sockets: Set<Net.Socket>
      }
    >(
      (resume) => {
        const sockets = new Set<Net.Socket>()
        const track = (socket: Net.Socket) => {
          sockets.add(socket)
          socket.on("close", () => sockets.delete(socket))
          socket.on("error", () => socket.destroy())
        }
        const server = Net.createServer((downstream) => {
          track(downstream)
          const upstream = Net.connect(target, "127.0.0.1")
          track(upstream)
          downstream.pipe(upstream).pipe(downstream)
          downstream.on("close", () => upstream.destroy())
          upstream.on("close", () => downstream.destroy())
        })
        server.listen(0, "127.0.0.1", () =>
          resume(Effect.succeed({
            server,
            sockets,
            port: (server.address() as Net.AddressInfo).port,
            cut: () => {
              for (const socket of sockets) socket.destroy()
            }
          })))
      }
    ),
    (front) =>
      Effect.callback<void>((resume) => {
        for (const socket of front.sockets) socket.destroy()
        front.server.close(() => resume(Effect.void))
      })
  )

/** The main job (`npm start`) on `port`, stopped with the scope. */
const mainJob = (port: number) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const program = start(Path.join(import.meta.dirname, "..", "src", "main.ts"), {
        env: { LHTTP_PORT: String(port), LHTTP_HOST: "127.0.0.1" }
      })
      await program.waitFor(/listening on/, 15_000)
      return program
    }),
    (program) => Effect.promise(() => program.stop())
  )

const httpConn = (c: Watched) => c.lhttp.conn as HttpConnection

/** The real fetch, watched: the frames POST /send took (202), each with its connection, in order; no echo. */
const postsTaken = () => {
  const taken: Array<[string, string]> = []
  const watched = async (input: string, init?: RequestInit) => {
    const response = await fetch(input, init)
    const frame = String(init?.body)
    if (init?.method === "POST" && response.status === 202 && !frame.startsWith("LHTTP/1.0 echo\r\n")) {
      taken.push([new URL(input).searchParams.get("connection")!, frame])
    }
    return response
  }
  return { taken, fetch: watched }
}

const viaHttp: ReadonlyArray<"sse" | "poll"> = ["poll", "sse"]

describe("browser SDK over long-poll and SSE (Node: fetch)", () => {
  for (const transport of viaHttp) {
    // a body on its way down: exact over long-poll (JSON), its line breaks as LF over SSE
    const down = (body: string) => transport === "sse" ? body.replace(/\r\n|\r/g, "\n") : body

    it.live(`${transport}: subscribe, publish, request/reply, error frames; close() ends the connection (DELETE /send)`, () =>
      Effect.gen(function*() {
        const { http, url } = yield* server()
        const observer = yield* connect(url)
        yield* observer.send(frame("watch", { subscribe: "room" }))
        yield* observer.nothing()
        const alice = yield* sdk(url, { transports: [transport] })
        alice.lhttp.on_open = (ctx) => ctx.subscribe("room", "chat", { name: "alice" }, "")
        assert.strictEqual(alice.lhttp.transport, transport)
        assert.strictEqual((yield* alice.next((ctx) => ctx.getHeader("event") === "members")).getBody(), "alice")
        yield* alice.next(isChat("join", "alice"))
        assert.strictEqual(yield* observer.next(), "LHTTP/1.0 chat\r\nevent:join\r\nroom:room\r\nfrom:alice\r\n\r\n")
        assert.strictEqual(httpConn(alice).transport, transport)
        const id = httpConn(alice).connection!
        assert.match(id, /^[\w-]{22}$/)

        // down: a frame another client publishes
        yield* observer.send(frame("chat", { publish: "room" }, "line 1\r\nline 2\r\n\r\nafter a blank line"))
        const theirs = yield* alice.next((ctx) => ctx.getHeader("from") === "anonymous")
        assert.strictEqual(
          encode(theirs.req),
          `LHTTP/1.0 chat\r\npublish:room\r\nfrom:anonymous\r\n\r\n${
            down("line 1\r\nline 2\r\n\r\nafter a blank line")
          }`
        )
        yield* observer.next()
        // up: exact, whatever the transport
        alice.lhttp.context.publish("room", "chat", { mood: "fine:thanks" }, "hi\r\n\r\nthere")
        assert.strictEqual(
          yield* observer.next(),
          "LHTTP/1.0 chat\r\npublish:room\r\nmood:fine:thanks\r\nfrom:alice\r\n\r\nhi\r\n\r\nthere"
        )
        yield* alice.next((ctx) => ctx.getHeader("from") === "alice" && ctx.getHeader("publish") === "room")

        const replies = yield* Effect.promise(() =>
          Promise.all(
            ["one", "two\r\n\r\nlines", "x:y"].map((body) => alice.lhttp.request("echo", { trace: "t:1" }, body))
          )
        )
        assert.deepStrictEqual(replies.map((reply) => reply.getBody()), ["one", down("two\r\n\r\nlines"), "x:y"])
        assert.strictEqual(new Set(replies.map((reply) => reply.getHeader("id"))).size, 3)
        const unknown = yield* failure(alice.lhttp.request("nosuch", { id: "mine" }, ""))
        assert.deepInclude(unknown, { status: 404, reason: "UnknownCommand", id: "mine" })
        // no reply went to on_message: the frames it got, then a marker
        alice.lhttp.context.publish("room", "chat", null, "marker")
        yield* alice.next((ctx) => ctx.getBody() === "marker")
        assert.deepStrictEqual(alice.bodies, [
          "alice",
          "",
          down("line 1\r\nline 2\r\n\r\nafter a blank line"),
          down("hi\r\n\r\nthere"),
          "marker"
        ])
        yield* observer.next()

        // close(): DELETE /send ends the connection on the server, whose onClose hooks run
        yield* Effect.promise(() => alice.lhttp.close())
        assert.strictEqual(alice.lhttp.state, "closed")
        assert.deepStrictEqual(alice.closes.map((c) => [c.code, c.willReconnect]), [[1000, false]])
        assert.strictEqual(yield* observer.next(), "LHTTP/1.0 chat\r\nevent:leave\r\nroom:room\r\nfrom:alice\r\n\r\n")
        const after = yield* request(`${http}/send?connection=${id}`, { method: "POST", body: frame("echo") })
        assert.strictEqual(after.status, 410)
        assert.deepStrictEqual(JSON.parse(after.body), { connection: id, code: 1000, reason: "closed by the client" })
      }))

    it.live(`${transport}: the server ends the connection (4100): on_close with its code and reason, a new connection, joined again`, () =>
      Effect.gen(function*() {
        const { url } = yield* server()
        const bob = yield* sdk(url)
        bob.lhttp.on_open = (ctx) => ctx.subscribe("room", "chat", { name: "bob" }, "")
        yield* bob.next(isChat("join", "bob"))
        const alice = yield* sdk(url, { transports: [transport] })
        const opens: Array<boolean | undefined> = []
        alice.lhttp.on_open = (ctx) => {
          opens.push(ctx.reconnected)
          if (!ctx.reconnected) ctx.subscribe("room", "chat", { name: "alice" }, "")
        }
        yield* bob.next(isChat("join", "alice"))
        const first = httpConn(alice).connection

        alice.lhttp.send({ command: "kick" })
        yield* bob.next(isChat("leave", "alice"))
        yield* bob.next(isChat("join", "alice")) // the subscription, re-sent with the name
        yield* opened(alice)
        assert.deepStrictEqual(alice.closes.map((c) => [c.code, c.reason, c.willReconnect]), [[4100, "kicked", true]])
        assert.deepStrictEqual(alice.states, ["connecting", "open", "reconnecting", "open"])
        assert.deepStrictEqual(opens, [false, true])
        assert.notStrictEqual(httpConn(alice).connection, first)
        assert.strictEqual(alice.lhttp.transport, transport)

        bob.lhttp.context.publish("room", "chat", null, "welcome back")
        assert.strictEqual((yield* alice.next((ctx) => ctx.getBody() === "welcome back")).getHeader("from"), "bob")
        alice.lhttp.context.publish("room", "chat", null, "thanks")
        assert.strictEqual((yield* bob.next((ctx) => ctx.getBody() === "thanks")).getHeader("from"), "alice")
      }))

    it.live(
      `${transport}: cut connections resume the same connection: nothing lost, nothing twice, what was sent meanwhile goes out after`,
      () =>
        Effect.gen(function*() {
          const { port, url } = yield* server()
          const front = yield* relay(port)
          const observer = yield* connect(url)
          yield* observer.send(frame("watch", { subscribe: "room" }))
          yield* observer.nothing()
          // no jitter: the resume waits 1 s, while the test publishes to a connection nothing reads
          const c = yield* sdk(`ws://127.0.0.1:${front.port}/`, {
            transports: [transport],
            reconnect: { initialDelay: 1_000, jitter: 0 }
          })
          const opens: Array<boolean | undefined> = []
          c.lhttp.on_open = (ctx) => void opens.push(ctx.reconnected)
          c.lhttp.context.subscribe("room", "watch", null, "")
          yield* opened(c)
          const id = httpConn(c).connection
          // the subscription is in place once an echo sent after it comes back
          assert.strictEqual((yield* Effect.promise(() => c.lhttp.request("echo", null, "ready"))).getBody(), "ready")
          yield* observer.send(frame("flash", { publish: "room" }, "one"))
          yield* observer.next()
          yield* c.next((ctx) => ctx.getBody() === "one")

          front.cut() // the stream (or the waiting poll) and the sockets of the sends
          yield* until(() => c.lhttp.state === "reconnecting", "the client to notice the cut")
          yield* observer.send(frame("flash", { publish: "room" }, "two"))
          assert.strictEqual(yield* observer.next(), "LHTTP/1.0 flash\r\npublish:room\r\n\r\ntwo")
          c.lhttp.context.publish("room", "flash", null, "sent meanwhile")
          assert.strictEqual(c.lhttp.state, "reconnecting") // "two" came while nothing was attached
          yield* opened(c)
          assert.strictEqual(yield* observer.next(), "LHTTP/1.0 flash\r\npublish:room\r\n\r\nsent meanwhile")
          yield* c.next((ctx) => ctx.getBody() === "sent meanwhile")
          assert.deepStrictEqual(c.bodies, ["one", "two", "sent meanwhile"])
          assert.strictEqual(httpConn(c).connection, id)
          assert.deepStrictEqual(c.states, ["connecting", "open", "reconnecting", "open"])
          assert.deepStrictEqual(c.closes, [])
          assert.deepStrictEqual(opens, [false])
          assert.isAbove(c.errors(), 0)
        }),
      { timeout: 15_000 }
    )

    // a client of this transport through a relay to `port`, subscribed to room and open (an echo after the
    // subscribe came back), then cut from the server: its link interrupted, the client reconnecting
    const subscribedThenCut = (port: number) =>
      Effect.gen(function*() {
        const front = yield* relay(port)
        const posts = postsTaken()
        // no jitter: the resume waits 1 s
        const c = yield* sdk(`ws://127.0.0.1:${front.port}/`, {
          transports: [transport],
          reconnect: { initialDelay: 1_000, jitter: 0 },
          fetch: posts.fetch
        })
        const opens: Array<boolean | undefined> = []
        c.lhttp.on_open = (ctx) => void opens.push(ctx.reconnected)
        c.lhttp.context.subscribe("room", "watch", null, "")
        yield* opened(c)
        const id = httpConn(c).connection!
        assert.strictEqual((yield* Effect.promise(() => c.lhttp.request("echo", null, "ready"))).getBody(), "ready")

        front.cut()
        yield* until(() => c.lhttp.state === "reconnecting", "the client to notice the cut")
        return { c, id, opens, posts }
      })

    it.live(
      `${transport}: what is subscribed and unsubscribed while the link is interrupted goes out when it resumes the same connection, once, in the app's order among what was sent meanwhile`,
      () =>
        Effect.gen(function*() {
          const { port, url } = yield* server()
          const observer = yield* connect(url)
          const { c, id, opens, posts } = yield* subscribedThenCut(port)
          c.lhttp.context.subscribe("news", "watch", null, "")
          c.lhttp.context.publish("news", "flash", null, "mine") // after the subscribe: it comes back
          c.lhttp.context.unsubscribe("room", "watch", null, "")
          c.lhttp.context.subscribe("room", "watch", null, "") // the app's last word: subscribed
          // a frame for the connection (a waiting poll answers only with one)
          yield* observer.send(frame("flash", { publish: "room" }, "meanwhile"))
          assert.strictEqual(c.lhttp.state, "reconnecting")
          yield* opened(c)
          yield* c.next((ctx) => ctx.getBody() === "mine")
          // what was sent meanwhile was processed once an echo sent after it comes back
          assert.strictEqual((yield* Effect.promise(() => c.lhttp.request("echo", null, "after"))).getBody(), "after")
          // resumed: the same connection, which has both channels now
          assert.strictEqual(httpConn(c).connection, id)
          assert.deepStrictEqual(c.states, ["connecting", "open", "reconnecting", "open"])
          assert.deepStrictEqual(c.closes, [])
          assert.deepStrictEqual(opens, [false])
          assert.deepStrictEqual(posts.taken, [
            [id, "LHTTP/1.0 watch\r\nsubscribe:room\r\nsince:now\r\n\r\n"],
            [id, "LHTTP/1.0 watch\r\nsubscribe:news\r\nsince:now\r\n\r\n"],
            [id, "LHTTP/1.0 flash\r\npublish:news\r\n\r\nmine"],
            [id, "LHTTP/1.0 watch\r\nunsubscribe:room\r\n\r\n"],
            [id, "LHTTP/1.0 watch\r\nsubscribe:room\r\nsince:now\r\n\r\n"]
          ])
          yield* observer.send(frame("flash", { publish: "news" }, "theirs to news"))
          yield* observer.send(frame("flash", { publish: "room" }, "theirs to room"))
          yield* c.next((ctx) => ctx.getBody() === "theirs to room")
          assert.deepStrictEqual(c.bodies, ["meanwhile", "mine", "theirs to news", "theirs to room"])
        }),
      { timeout: 15_000 }
    )

    it.live(
      `${transport}: a private subscription made while the link is interrupted goes out with a fresh subscription token when it resumes the same connection`,
      () =>
        Effect.gen(function*() {
          const { hub, port, server: lhttp } = yield* startServer(
            { processors: [Echo.Echo], tokens: { secret: tokenSecret, privatePrefixes: ["private-"] } },
            Echo.layer
          )
          const front = yield* relay(port)
          const posts = postsTaken()
          // each subscription token asked: its channel, the client's state then, the token given
          const given: Array<[string, State, string]> = []
          let state: () => State = () => "connecting"
          const c = yield* sdk(`ws://127.0.0.1:${front.port}/`, {
            transports: [transport],
            reconnect: { initialDelay: 1_000, jitter: 0 },
            fetch: posts.fetch,
            getToken: () => signToken("ann"),
            getSubscriptionToken: async (channel) => {
              const token = await signSubscription("ann", channel)
              given.push([channel, state(), token])
              return token
            }
          })
          state = () => c.lhttp.state
          // ann's connection on the server, and whether it has `channel`
          const has = (channel: string) => lhttp.connectionsOf("ann")[0]?.channels.has(channel) === true
          c.lhttp.context.subscribe("private-a", "watch", null, "", { token: true })
          yield* opened(c)
          const id = httpConn(c).connection!
          yield* until(() => has("private-a"), "the subscription to private-a")
          const [before] = lhttp.connectionsOf("ann")
          yield* hub.publish("private-a", "flash", { publish: "private-a" }, "one")
          yield* c.next((ctx) => ctx.getBody() === "one")

          front.cut()
          yield* until(() => c.lhttp.state === "reconnecting", "the client to notice the cut")
          c.lhttp.context.subscribe("private-b", "watch", null, "", { token: true })
          const echoed = c.lhttp.request("echo", null, "after private-b") // waits behind it
          assert.strictEqual(given.length, 1) // no token while the link is interrupted
          // a frame for the connection (a waiting poll answers only with one)
          yield* hub.publish("private-a", "flash", { publish: "private-a" }, "meanwhile")
          yield* opened(c)
          assert.strictEqual((yield* Effect.promise(() => echoed)).getBody(), "after private-b")
          yield* until(() => has("private-b"), "the subscription to private-b")
          // resumed: the same connection; private-b's token asked once, when the link was usable again
          assert.strictEqual(httpConn(c).connection, id)
          assert.deepStrictEqual(lhttp.connectionsOf("ann"), [before!])
          assert.deepStrictEqual(c.states, ["connecting", "open", "reconnecting", "open"])
          assert.deepStrictEqual(c.closes, [])
          assert.deepStrictEqual(given.map(([channel, when]) => [channel, when]), [
            ["private-a", "connecting"],
            ["private-b", "open"]
          ])
          assert.deepStrictEqual(posts.taken, [
            [id, `LHTTP/1.0 watch\r\nsubscribe:private-a\r\nsince:now\r\ntoken:${given[0]![2]}\r\n\r\n`],
            [id, `LHTTP/1.0 watch\r\nsubscribe:private-b\r\nsince:now\r\ntoken:${given[1]![2]}\r\n\r\n`]
          ])
          yield* hub.publish("private-b", "flash", { publish: "private-b" }, "two")
          yield* c.next((ctx) => ctx.getBody() === "two")
          assert.deepStrictEqual(c.bodies, ["one", "meanwhile", "two"]) // no refusal either
        }),
      { timeout: 15_000 }
    )

    it.live(
      `${transport}: a subscription made while the link is interrupted, when the server forgot the connection (restarted): sent once, on the new connection`,
      () =>
        Effect.gen(function*() {
          const port = yield* Effect.promise(freePort)
          const first = yield* Scope.make()
          yield* server(port).pipe(Scope.provide(first))
          const { c, id, opens, posts } = yield* subscribedThenCut(port)
          c.lhttp.context.subscribe("news", "watch", null, "")
          c.lhttp.context.publish("news", "flash", null, "mine")
          yield* Scope.close(first, Exit.void)
          const { url } = yield* server(port)
          // the resume finds no such connection (SSE: reset; long-poll: 404): a new one, subscribed again
          yield* c.next((ctx) => ctx.getBody() === "mine", 10_000)
          const renewed = httpConn(c).connection!
          assert.notStrictEqual(renewed, id)
          assert.strictEqual((yield* Effect.promise(() => c.lhttp.request("echo", null, "after"))).getBody(), "after")
          assert.deepStrictEqual(opens, [false, true])
          assert.deepStrictEqual(c.closes.map((ctx) => [ctx.code, ctx.reason, ctx.willReconnect]), [
            [1006, "the connection is gone", true]
          ])
          // each subscription once on the new connection (news not from the queue too), then the queue
          assert.deepStrictEqual(posts.taken, [
            [id, "LHTTP/1.0 watch\r\nsubscribe:room\r\nsince:now\r\n\r\n"],
            [renewed, "LHTTP/1.0 watch\r\nsubscribe:room\r\nsince:now\r\n\r\n"],
            [renewed, "LHTTP/1.0 watch\r\nsubscribe:news\r\nsince:now\r\n\r\n"],
            [renewed, "LHTTP/1.0 flash\r\npublish:news\r\n\r\nmine"]
          ])
          const observer = yield* connect(url)
          yield* observer.send(frame("flash", { publish: "news" }, "theirs"))
          yield* c.next((ctx) => ctx.getBody() === "theirs")
          assert.deepStrictEqual(c.bodies, ["mine", "theirs"])
        }),
      { timeout: 30_000 }
    )

    it.live(
      `${transport}: the server dies (SIGKILL) and comes back: ${
        transport === "poll" ? "404" : "reset"
      }, a new connection, joined again, what was sent meanwhile after`,
      () =>
        Effect.gen(function*() {
          const port = yield* Effect.promise(freePort)
          const first = yield* Scope.make()
          const main = yield* mainJob(port).pipe(Scope.provide(first))
          const deletes: Array<string> = []
          const alice = yield* sdk(`ws://127.0.0.1:${port}/`, {
            transports: [transport],
            // the real fetch, watched
            fetch: (input, init) => {
              if (init?.method === "DELETE") deletes.push(new URL(input).searchParams.get("connection")!)
              return fetch(input, init)
            }
          })
          const opens: Array<boolean | undefined> = []
          alice.lhttp.on_open = (ctx) => {
            opens.push(ctx.reconnected)
            if (!ctx.reconnected) ctx.subscribe("room", "chat", { name: "alice" }, "")
          }
          yield* alice.next(isChat("join", "alice"))
          const id = httpConn(alice).connection

          main.child.kill("SIGKILL") // no drain: the connection is gone without a word
          yield* until(() => alice.lhttp.state === "reconnecting", "the client to notice")
          yield* Scope.close(first, Exit.void)
          alice.lhttp.context.publish("room", "chat", null, "said while the server was down")
          assert.deepStrictEqual(alice.closes, []) // the connection might still be there
          yield* mainJob(port)
          // the new server does not know the connection: a new one, the join re-sent, then the message
          yield* alice.next(isChat("join", "alice"), 20_000)
          assert.strictEqual((yield* alice.next((ctx) => ctx.getHeader("event") === "members")).getBody(), "alice")
          const said = yield* alice.next((ctx) => ctx.getBody() === "said while the server was down")
          assert.strictEqual(said.getHeader("from"), "alice")
          assert.deepStrictEqual(alice.closes.map((c) => [c.code, c.reason, c.willReconnect]), [
            [1006, "the connection is gone", true]
          ])
          assert.deepStrictEqual(opens, [false, true])
          assert.deepStrictEqual(alice.states, ["connecting", "open", "reconnecting", "open"])
          assert.notStrictEqual(httpConn(alice).connection, id)
          if (transport === "sse") {
            // the connection the server opened with its reset is not wanted: closed at once
            assert.strictEqual(deletes.length, 1)
            assert.notInclude([id, httpConn(alice).connection], deletes[0])
            assert.match(deletes[0]!, /^[\w-]{22}$/)
          } else assert.deepStrictEqual(deletes, [])
        }),
      { timeout: 40_000 }
    )

    it.live(`${transport}: a frame POST /send refuses (413) rejects its request or tells on_error; the connection stays`, () =>
      Effect.gen(function*() {
        const { url } = yield* server(undefined, { maxMessageBytes: 1_024 })
        const c = yield* sdk(url, { transports: [transport] })
        yield* opened(c)
        const big = "x".repeat(1_100)
        const refused = yield* failure(c.lhttp.request("echo", { id: "big" }, big))
        assert.instanceOf(refused, LhttpError)
        assert.deepInclude(refused, {
          status: 413,
          reason: "TooLarge",
          message: "a message is at most 1024 bytes",
          id: "big"
        })
        const told: Array<unknown> = []
        c.lhttp.on_error = (ctx) => void told.push(ctx.event)
        c.lhttp.context.publish("room", "chat", null, big)
        assert.strictEqual(
          (yield* Effect.promise(() => c.lhttp.request("echo", null, "still here"))).getBody(),
          "still here"
        )
        assert.strictEqual(told.length, 1)
        assert.deepInclude(told[0] as LhttpError, { status: 413, reason: "TooLarge" })
        assert.deepStrictEqual(c.closes, [])
        assert.strictEqual(httpConn(c).readyState, 1)
      }))

    it.live(`${transport}: a frame whose command is close (or connected, reset, gap) is a message, not the end of the connection`, () =>
      Effect.gen(function*() {
        const { url } = yield* server()
        const observer = yield* connect(url)
        const c = yield* sdk(url, { transports: [transport] })
        c.lhttp.context.subscribe("room", "watch", null, "")
        yield* opened(c)
        const id = httpConn(c).connection
        // the subscription is in place once an echo sent after it comes back
        assert.strictEqual((yield* Effect.promise(() => c.lhttp.request("echo", null, "ready"))).getBody(), "ready")
        const commands = ["close", "connected", "reset", "gap"]
        for (const command of commands) {
          yield* observer.send(frame(command, { publish: "room" }, `{"code":1000,"reason":"${command}"}`))
        }
        yield* observer.send(frame("flash", { publish: "room" }, "marker"))
        yield* c.next((ctx) => ctx.getBody() === "marker")
        assert.deepStrictEqual(c.bodies, [
          ...commands.map((command) => `{"code":1000,"reason":"${command}"}`),
          "marker"
        ])
        // the same connection, open, never closed nor resumed
        assert.deepStrictEqual(c.closes, [])
        assert.deepStrictEqual(c.states, ["connecting", "open"])
        assert.strictEqual(httpConn(c).connection, id)
        assert.strictEqual(
          (yield* Effect.promise(() => c.lhttp.request("echo", null, "still here"))).getBody(),
          "still here"
        )
      }))
  }

  it.live(
    "sse: what the server no longer holds when the stream resumes is told as a gap (on_error); the rest comes once, in order",
    () =>
      Effect.gen(function*() {
        // the connection keeps 2 KiB of written frames for a resume
        const { http, url } = yield* server(undefined, { sseReplayBytes: 2_048 })
        const observer = yield* connect(url)
        // no jitter: the resume waits 1 s
        const c = yield* sdk(url, { transports: ["sse"], reconnect: { initialDelay: 1_000, jitter: 0 } })
        const told: Array<unknown> = []
        c.lhttp.on_error = (ctx) => void told.push(ctx.event)
        // frame 1: the position frame answering the SDK's since:now (NoHistory, not given to the app)
        c.lhttp.context.subscribe("room", "watch", null, "")
        yield* opened(c)
        assert.strictEqual((yield* Effect.promise(() => c.lhttp.request("echo", null, "ready"))).getBody(), "ready") // frame 2
        yield* observer.send(frame("flash", { publish: "room" }, "before")) // frame 3
        yield* c.next((ctx) => ctx.getBody() === "before")
        const id = httpConn(c).connection!

        // another stream takes the connection over (Last-Event-ID), which ends the client's stream
        const other = new AbortController()
        const taken = yield* Effect.promise(() =>
          fetch(`${http}/sse`, { headers: { "last-event-id": `${id}:0` }, signal: other.signal })
        )
        yield* Effect.addFinalizer(() => Effect.sync(() => other.abort()))
        assert.strictEqual(taken.status, 200)
        yield* until(() => c.lhttp.state === "reconnecting", "the client's stream to end")
        const padding = "x".repeat(100)
        for (let i = 1; i <= 40; i++) yield* observer.send(frame("flash", { publish: "room" }, `f${i}:${padding}`))
        // the other stream got them all (and the connection kept the last 2 KiB of them)
        yield* Effect.promise(async () => {
          const reader = taken.body!.getReader()
          const decoder = new TextDecoder()
          let text = ""
          while (!text.includes(`data: f40:`)) {
            const { done, value } = await reader.read()
            if (done) throw new Error(`the other stream ended: ${text}`)
            text += decoder.decode(value, { stream: true })
          }
        })
        assert.strictEqual(c.lhttp.state, "reconnecting") // the client had not resumed yet

        yield* opened(c)
        yield* c.next((ctx) => ctx.getBody() === `f40:${padding}`)
        // frames 4 to N were dropped: told, and the client has the ones after, once, in order
        assert.strictEqual(told.filter((event) => (event as { type?: string }).type === "gap").length, 1)
        const gap = told.find((event) => (event as { type?: string }).type === "gap") as { from: number; to: number }
        assert.strictEqual(gap.from, 4)
        assert.isAbove(gap.to, 4)
        assert.isBelow(gap.to, 43)
        const kept = Array.from({ length: 43 - gap.to }, (_, i) => `f${gap.to - 2 + i}:${padding}`)
        assert.deepStrictEqual(c.bodies, ["before", ...kept])
        assert.strictEqual(httpConn(c).connection, id)
        assert.deepStrictEqual(c.closes, [])
      }),
    { timeout: 15_000 }
  )

  it.live("long-poll: what the server did not take (410: the connection ended first) goes out once, on the next connection", () =>
    Effect.gen(function*() {
      const { http, url } = yield* server()
      const observer = yield* connect(url)
      yield* observer.send(frame("watch", { subscribe: "room" }))
      yield* observer.nothing()
      // the real fetch, watched; polls can be held back (not sent) until released
      let holdPolls = false
      const held: Array<() => void> = []
      const posts: Array<number> = []
      const c = yield* sdk(url, {
        transports: ["poll"],
        fetch: async (input, init) => {
          if (holdPolls && input.includes("cursor=")) await new Promise<void>((resolve) => held.push(resolve))
          const response = await fetch(input, init)
          if (init?.method === "POST") posts.push(response.status)
          return response
        }
      })
      c.lhttp.on_open = (ctx) => {
        if (!ctx.reconnected) ctx.subscribe("room", "chat", { name: "alice" }, "")
      }
      assert.strictEqual(yield* observer.next(), "LHTTP/1.0 chat\r\nevent:join\r\nroom:room\r\nfrom:alice\r\n\r\n")
      yield* c.next(isChat("join", "alice"))
      const id = httpConn(c).connection!
      // the waiting poll answers this; the next one is held
      holdPolls = true
      yield* observer.send(frame("flash", { publish: "room" }, "last one polled"))
      yield* observer.next()
      yield* c.next((ctx) => ctx.getBody() === "last one polled")
      yield* until(() => held.length === 1, "the next poll to be held")

      // the connection ends on the server (as a DELETE from elsewhere would), unknown to the client
      assert.strictEqual((yield* request(`${http}/send?connection=${id}`, { method: "DELETE" })).status, 204)
      assert.strictEqual(yield* observer.next(), "LHTTP/1.0 chat\r\nevent:leave\r\nroom:room\r\nfrom:alice\r\n\r\n")
      assert.strictEqual(c.lhttp.state, "open")
      c.lhttp.context.publish("room", "chat", null, "said as it ended")
      const pending = c.lhttp.request("echo", null, "asked as it ended")
      yield* until(() => posts.includes(410), "POST /send to answer 410")
      holdPolls = false
      for (const release of held.splice(0)) release()

      // the poll gets 410: a new connection, the join, then what was not taken, once
      assert.strictEqual((yield* Effect.promise(() => pending)).getBody(), "asked as it ended")
      assert.strictEqual(yield* observer.next(), "LHTTP/1.0 chat\r\nevent:join\r\nroom:room\r\nfrom:alice\r\n\r\n")
      assert.strictEqual(yield* observer.next(), "LHTTP/1.0 chat\r\npublish:room\r\nfrom:alice\r\n\r\nsaid as it ended")
      // once: a marker sent after it through the same path (the client's POST /send) is the observer's next frame
      c.lhttp.context.publish("room", "chat", null, "marker")
      assert.strictEqual(yield* observer.next(), "LHTTP/1.0 chat\r\npublish:room\r\nfrom:alice\r\n\r\nmarker")
      assert.deepStrictEqual(c.closes.map((ctx) => [ctx.code, ctx.reason, ctx.willReconnect]), [[
        1000,
        "closed by the client",
        true
      ]])
      assert.notStrictEqual(httpConn(c).connection, id)
      assert.deepStrictEqual(posts.filter((status) => status === 410), [410])
    }))

  it.live(
    "long-poll: 429 (1,024 frames wait) makes the sender wait and send again: every frame once, in order",
    () =>
      Effect.gen(function*() {
        gate = Deferred.makeUnsafe<void>()
        const { url } = yield* server()
        const observer = yield* connect(url)
        yield* observer.send(frame("watch", { subscribe: "room" }))
        yield* observer.nothing()
        const statuses: Array<number> = []
        const c = yield* sdk(url, {
          transports: ["poll"],
          // the real fetch, watched
          fetch: (input, init) =>
            fetch(input, init).then((response) => {
              if (init?.method === "POST") statuses.push(response.status)
              return response
            })
        })
        yield* opened(c)
        c.lhttp.send({ command: "hold" }) // holds the connection's frames until the gate opens
        const count = 1_100
        for (let i = 0; i < count; i++) c.lhttp.context.publish("room", "flash", null, `${i}`)
        yield* until(() => statuses.includes(429), "a 429", 20_000)
        yield* Deferred.succeed(gate, undefined)
        for (let i = 0; i < count; i++) {
          assert.strictEqual(yield* observer.next(), `LHTTP/1.0 flash\r\npublish:room\r\n\r\n${i}`)
        }
        // once each: a marker sent after them through the same path (the client's POST /send) is the observer's
        // next frame
        c.lhttp.context.publish("room", "flash", null, "marker")
        assert.strictEqual(yield* observer.next(), "LHTTP/1.0 flash\r\npublish:room\r\n\r\nmarker")
        assert.strictEqual(statuses.filter((status) => status === 202).length, count + 2)
      }),
    { timeout: 30_000 }
  )
})

describe("browser SDK: falling back from a WebSocket that cannot connect", () => {
  it.live("the WebSocket upgrade is refused (404): SSE, with the subscriptions, a pending request and the queued sends", () =>
    Effect.gen(function*() {
      // WebSocket only at /lhttp: the SDK's upgrade at / gets 404
      const { port } = yield* server(undefined, { paths: ["/lhttp"] })
      const observer = yield* connect(`ws://127.0.0.1:${port}/lhttp`)
      yield* observer.send(frame("watch", { subscribe: "room" }))
      yield* observer.nothing()
      const c = yield* sdk(`ws://127.0.0.1:${port}/`)
      assert.deepStrictEqual(c.lhttp.transports, ["websocket", "sse", "poll"])
      assert.strictEqual(c.lhttp.transport, "websocket")
      c.lhttp.context.subscribe("room", "chat", { name: "alice" }, "")
      const pending = c.lhttp.request("echo", null, "asked before the switch")
      c.lhttp.context.publish("room", "chat", null, "sent before the switch")

      assert.strictEqual((yield* Effect.promise(() => pending)).getBody(), "asked before the switch")
      assert.strictEqual(c.lhttp.transport, "sse")
      assert.strictEqual(httpConn(c).transport, "sse")
      assert.deepStrictEqual(c.states, ["connecting", "open"])
      assert.deepStrictEqual(c.closes, []) // a transport that could not connect is no close
      assert.strictEqual(c.errors(), 1)
      // the subscription went first, then what was queued
      assert.strictEqual(yield* observer.next(), "LHTTP/1.0 chat\r\nevent:join\r\nroom:room\r\nfrom:alice\r\n\r\n")
      assert.strictEqual(
        yield* observer.next(),
        "LHTTP/1.0 chat\r\npublish:room\r\nfrom:alice\r\n\r\nsent before the switch"
      )
      yield* c.next((ctx) => ctx.getBody() === "sent before the switch")
      assert.deepStrictEqual(c.lhttp.channels, ["room"])
      yield* observer.send(frame("chat", { publish: "room" }, "to alice"))
      yield* c.next((ctx) => ctx.getBody() === "to alice")
    }))

  it.live("past SSE (off on the server) to long-poll; with transports [websocket, poll], straight to long-poll", () =>
    Effect.gen(function*() {
      const { port } = yield* server(undefined, { paths: ["/lhttp"], sse: false })
      const url = `ws://127.0.0.1:${port}/`
      const tried: Array<Transport> = []
      const c = yield* sdk(url)
      c.lhttp.on_error = () => void tried.push(c.lhttp.transport)
      c.lhttp.context.subscribe("room", "watch", null, "")
      const pending = c.lhttp.request("echo", null, "asked before the switch")
      assert.strictEqual((yield* Effect.promise(() => pending)).getBody(), "asked before the switch")
      assert.strictEqual(c.lhttp.transport, "poll")
      assert.deepStrictEqual(tried, ["websocket", "sse"])
      assert.deepStrictEqual(c.states, ["connecting", "open"])
      const observer = yield* connect(`${url}lhttp`)
      yield* observer.send(frame("flash", { publish: "room" }, "to the poller"))
      assert.strictEqual(
        encode((yield* c.next((ctx) => ctx.getCommand() === "flash")).req),
        "LHTTP/1.0 flash\r\npublish:room\r\n\r\nto the poller"
      )

      const d = yield* sdk(url, { transports: "websocket,poll" })
      const triedByD: Array<Transport> = []
      d.lhttp.on_error = () => void triedByD.push(d.lhttp.transport)
      assert.strictEqual((yield* Effect.promise(() => d.lhttp.request("echo", null, "hi"))).getBody(), "hi")
      assert.strictEqual(d.lhttp.transport, "poll")
      assert.deepStrictEqual(triedByD, ["websocket"])
    }))

  it.live("when none connects, each is tried in turn and the round starts again from the first after the delay; reconnect: false ends closed", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(freePort) // nothing listens yet
      const tried: Array<Transport> = []
      // no jitter: 1 s between rounds, time enough to start the server between two rounds
      const c = yield* sdk(`ws://127.0.0.1:${port}/`, { reconnect: { initialDelay: 1_000, jitter: 0 } })
      c.lhttp.on_error = () => void tried.push(c.lhttp.transport)
      yield* until(() => tried.length === 3 && c.lhttp.state === "reconnecting", "a round of attempts")
      yield* server(port)
      assert.deepStrictEqual(tried, ["websocket", "sse", "poll"]) // the server came up between two rounds
      yield* opened(c)
      // the next round starts again with the first transport, which connects
      assert.strictEqual(c.lhttp.transport, "websocket")
      assert.deepStrictEqual(tried, ["websocket", "sse", "poll"])
      assert.deepStrictEqual(c.states, ["connecting", "reconnecting", "open"])
      assert.deepStrictEqual(c.closes, [])

      const other = yield* Effect.promise(freePort)
      const once = yield* sdk(`ws://127.0.0.1:${other}/`, { reconnect: false })
      const triedOnce: Array<Transport> = []
      once.lhttp.on_error = () => void triedOnce.push(once.lhttp.transport)
      yield* until(() => once.lhttp.state === "closed", "the end")
      assert.deepStrictEqual(triedOnce, ["websocket", "sse", "poll"])
      assert.deepStrictEqual(once.closes.map((ctx) => ctx.willReconnect), [false])
      assert.deepStrictEqual(once.states, ["connecting", "closed"])
    }))

  it.live("once a transport has opened, the client stays on it: after a restart where WebSocket works, SSE again", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(freePort)
      const first = yield* Scope.make()
      yield* server(port, { paths: ["/lhttp"] }).pipe(Scope.provide(first))
      // no jitter: 1 s between attempts, time enough to restart the server between two
      const c = yield* sdk(`ws://127.0.0.1:${port}/`, { reconnect: { initialDelay: 1_000, jitter: 0 } })
      const opens: Array<Transport> = []
      c.lhttp.on_open = () => void opens.push(c.lhttp.transport)
      c.lhttp.context.subscribe("room", "watch", null, "")
      yield* opened(c)
      assert.strictEqual(c.lhttp.transport, "sse")
      const failed = c.errors()
      yield* Scope.close(first, Exit.void) // drains: event: close, 1012
      yield* until(() => c.lhttp.state === "reconnecting", "the client to notice")
      yield* until(() => c.errors() > failed, "an attempt to reconnect to fail", 5_000) // SSE, not the others
      yield* server(port) // WebSocket at every path now
      yield* opened(c)
      assert.deepStrictEqual(opens, ["sse", "sse"])
      assert.deepStrictEqual(c.closes.map((ctx) => ctx.code), [1012])
      assert.match(c.closes[0]!.reason ?? "", /^reconnect:\d+$/)
      const observer = yield* connect(`ws://127.0.0.1:${port}/`)
      yield* observer.send(frame("flash", { publish: "room" }, "re-subscribed"))
      yield* c.next((ctx) => ctx.getBody() === "re-subscribed")
    }))
})

// ---------------------------------------------------------------------------------------------
// Sessions (docs/requests-and-sessions.md): the SDK keeps the session and restores it first

/** A Web Storage in memory (`getItem`, `setItem`, `removeItem`), with its entries to assert on. */
const memoryStorage = (entries: ReadonlyArray<[string, string]> = []) => {
  const map = new Map(entries)
  return {
    getItem: (name: string) => map.get(name) ?? null,
    setItem: (name: string, value: string) => void map.set(name, String(value)),
    removeItem: (name: string) => void map.delete(name),
    entries: () => Array.from(map)
  }
}

type Change = [string | undefined, string | undefined, unknown, string | undefined]

/** Records each on_session call as [change, key, data, reason]. */
const watchSession = (lhttp: Lhttp): Array<Change> => {
  const changes: Array<Change> = []
  lhttp.on_session = (ctx) => void changes.push([ctx.change, ctx.key, ctx.session?.data, ctx.reason])
  return changes
}

/** Options that record the text of every frame the client sends, in order (WebSocket or POST /send). */
const recording = (transport: Transport, sent: Array<string>): LhttpOptions =>
  transport === "websocket"
    ? {
      WebSocket: class extends WebSocketWs {
        // the SDK sends each frame as one string, with no options or callback
        override send(data: string) {
          sent.push(data)
          super.send(data)
        }
      }
    }
    : {
      fetch: (url, init) => {
        if (init?.method === "POST") sent.push(String(init.body))
        return fetch(url, init)
      }
    }

const Rename = Processor.make("rename")
const Logout = Processor.make("logout")
const SessionToolsLive = Layer.mergeAll(
  Rename.toLayer(Effect.gen(function*() {
    const sessions = yield* Sessions.Sessions
    return {
      onMessage: (exchange) =>
        Effect.orDie(sessions.update(sessions.keyOf(exchange.connection)!, { name: exchange.body }))
    }
  })),
  Logout.toLayer(Effect.gen(function*() {
    const sessions = yield* Sessions.Sessions
    return { onMessage: (exchange) => Effect.orDie(sessions.close(sessions.keyOf(exchange.connection)!)) }
  }))
)

/** A server with the main job's `login` and `session`, sessions in memory (a restart forgets them). */
const sessionServer = (port?: number, options: { readonly paths?: ReadonlyArray<string> } = {}) =>
  startServer(
    {
      processors: [Echo.Echo, Chat.Chat, Kick, Login.Login, Sessions.SessionProcessor, Rename, Logout],
      ...options,
      ...(port === undefined ? {} : { port })
    },
    Layer.mergeAll(Echo.layer, Chat.layer, KickLive, Login.layer, SessionToolsLive).pipe(
      Layer.provideMerge(Sessions.layer()),
      Layer.provide(SessionStore.layerMemory)
    )
  )

const restoreOf = (key: string) => new RegExp(`^LHTTP/1\\.0 session\\r\\nrestore:${key}\\r\\nid:[\\w-]+\\r\\n\\r\\n$`)

describe("browser SDK: sessions (scripted socket)", () => {
  it("each open restores the session first and waits for its answer; SessionNotFound clears it; clearSession", async () => {
    const { lhttp, socket } = fake({ session: "k1", reconnect: { initialDelay: 0, jitter: 0 } })
    const changes = watchSession(lhttp)
    const opens: Array<boolean | undefined> = []
    lhttp.on_open = (ctx) => void opens.push(ctx.reconnected)
    assert.strictEqual(lhttp.sessionKey, "k1")
    assert.strictEqual(lhttp.session, undefined)
    lhttp.context.subscribe("room", "chat", null, "")
    lhttp.send({ command: "echo", body: "queued" })
    socket.accept()
    // the restore alone, and the client is not open until its answer
    assert.strictEqual(socket.sent.length, 1)
    assert.match(socket.sent[0]!, restoreOf("k1"))
    assert.strictEqual(lhttp.state, "connecting")
    const id = /\r\nid:([\w-]+)\r\n/.exec(socket.sent[0]!)![1]!
    socket.deliver(`LHTTP/1.0 session\r\nsession-key:k1\r\nid:${id}\r\n\r\n{"name":"ann"}`)
    await vi.waitFor(() => assert.strictEqual(lhttp.state, "open"))
    assert.deepStrictEqual(socket.sent.slice(1), [
      "LHTTP/1.0 chat\r\nsubscribe:room\r\nsince:now\r\n\r\n",
      "LHTTP/1.0 echo\r\n\r\nqueued"
    ])
    assert.deepStrictEqual(changes, [["restored", "k1", { name: "ann" }, undefined]])
    assert.deepStrictEqual(lhttp.session, { key: "k1", data: { name: "ann" } })
    assert.deepStrictEqual(opens, [false])

    // the next connection: restored again; the server no longer knows it
    socket.drop()
    await vi.waitFor(() => assert.strictEqual(FakeSocket.all.length, 2))
    const second = FakeSocket.last
    second.accept()
    assert.strictEqual(second.sent.length, 1)
    assert.match(second.sent[0]!, restoreOf("k1"))
    const id2 = /\r\nid:([\w-]+)\r\n/.exec(second.sent[0]!)![1]!
    assert.notStrictEqual(id2, id)
    second.deliver(`LHTTP/1.0 error\r\nstatus:404\r\nreason:SessionNotFound\r\nid:${id2}\r\n\r\nno such session`)
    await vi.waitFor(() => assert.strictEqual(lhttp.state, "open"))
    assert.deepStrictEqual(second.sent.slice(1), ["LHTTP/1.0 chat\r\nsubscribe:room\r\nsince:now\r\n\r\n"])
    assert.deepStrictEqual(changes.slice(1), [["closed", "k1", undefined, "SessionNotFound"]])
    assert.strictEqual(lhttp.session, undefined)
    assert.strictEqual(lhttp.sessionKey, undefined)
    assert.deepStrictEqual(opens, [false, true])

    // a session frame with a new key: created; the same key: updated; then cleared here
    second.deliver("LHTTP/1.0 session\r\nsession-key:k2\r\n\r\n{\"name\":\"bo\"}")
    second.deliver("LHTTP/1.0 session\r\nsession-key:k2\r\n\r\n{\"name\":\"bob\"}")
    second.deliver("LHTTP/1.0 session\r\nclosed:k1\r\n\r\n") // another session's close: not ours
    lhttp.clearSession()
    assert.deepStrictEqual(changes.slice(2), [
      ["created", "k2", { name: "bo" }, undefined],
      ["updated", "k2", { name: "bob" }, undefined],
      ["closed", "k2", undefined, "Cleared"]
    ])
    // no session: the next connection restores nothing
    second.drop()
    await vi.waitFor(() => assert.strictEqual(FakeSocket.all.length, 3))
    FakeSocket.last.accept()
    assert.deepStrictEqual(FakeSocket.last.sent, ["LHTTP/1.0 chat\r\nsubscribe:room\r\nsince:now\r\n\r\n"])
    assert.strictEqual(lhttp.state, "open")
  })
})

describe("browser SDK: sessions against a real server", () => {
  for (const transport of ["websocket", "sse", "poll"] as const) {
    it.live(`${transport}: login keeps the session; a closed connection restores it before the re-join; a restart forgets it: cleared, on_session told`, () =>
      Effect.gen(function*() {
        const port = yield* Effect.promise(freePort)
        const first = yield* Scope.make()
        const { url } = yield* sessionServer(port).pipe(Scope.provide(first))
        const storage = memoryStorage()
        const sent: Array<string> = []
        const alice = yield* sdk(url, {
          transports: [transport],
          sessionStorage: storage,
          sessionStorageKey: "chat-session",
          ...recording(transport, sent)
        })
        const changes = watchSession(alice.lhttp)
        yield* opened(alice)
        assert.strictEqual(alice.lhttp.session, undefined)
        assert.deepStrictEqual(sent, []) // no session: no restore

        const reply = yield* Effect.promise(() => alice.lhttp.request("login", null, JSON.stringify({ name: "alice" })))
        assert.strictEqual(reply.getCommand(), "session")
        const key = reply.getHeader("session-key")!
        assert.match(key, /^[\w-]{22}$/)
        assert.deepStrictEqual(alice.lhttp.session, { key, data: { name: "alice" } })
        assert.deepStrictEqual(storage.entries(), [["chat-session", key]])
        assert.deepStrictEqual(changes, [["created", key, { name: "alice" }, undefined]])

        alice.lhttp.context.subscribe("room", "chat", null, "") // no name: the server takes the session's
        yield* alice.next(isChat("join", "alice"))

        // the server closes the connection: the restore goes out first, then the join, then what waited
        sent.length = 0
        alice.lhttp.send({ command: "kick" })
        yield* until(() => alice.closes.length === 1, "the connection to close")
        alice.lhttp.context.publish("room", "chat", null, "sent while down")
        yield* alice.next(isChat("join", "alice")) // named from the restored session
        yield* alice.next((ctx) => ctx.getBody() === "sent while down" && ctx.getHeader("from") === "alice")
        assert.strictEqual(sent.length, 4, JSON.stringify(sent))
        assert.strictEqual(sent[0], "LHTTP/1.0 kick\r\n\r\n")
        assert.match(sent[1]!, restoreOf(key))
        assert.strictEqual(sent[2], "LHTTP/1.0 chat\r\nsubscribe:room\r\nsince:now\r\n\r\n")
        assert.strictEqual(sent[3], "LHTTP/1.0 chat\r\npublish:room\r\n\r\nsent while down")
        assert.deepStrictEqual(changes.slice(1), [["restored", key, { name: "alice" }, undefined]])
        assert.deepStrictEqual(alice.lhttp.session, { key, data: { name: "alice" } })
        assert.deepStrictEqual(storage.entries(), [["chat-session", key]])

        // a restart: the new server has no sessions; the restore is refused, the join is anonymous
        yield* Scope.close(first, Exit.void)
        yield* until(() => alice.lhttp.state === "reconnecting", "the client to notice")
        yield* sessionServer(port)
        yield* alice.next(isChat("join", "anonymous"))
        yield* opened(alice)
        assert.deepStrictEqual(changes.slice(2), [["closed", key, undefined, "SessionNotFound"]])
        assert.strictEqual(alice.lhttp.session, undefined)
        assert.strictEqual(alice.lhttp.sessionKey, undefined)
        assert.deepStrictEqual(storage.entries(), [])
        // and nothing is restored after that
        sent.length = 0
        alice.lhttp.send({ command: "kick" })
        yield* alice.next(isChat("join", "anonymous"))
        assert.deepStrictEqual(sent, [
          "LHTTP/1.0 kick\r\n\r\n",
          "LHTTP/1.0 chat\r\nsubscribe:room\r\nsince:now\r\n\r\n"
        ])
        assert.strictEqual(changes.length, 3)
      }))
  }

  it.live("option session and sessionStorage restore on the first connection (after a fallback to SSE too); updates and the server's close reach every client", () =>
    Effect.gen(function*() {
      const { port } = yield* sessionServer(undefined, { paths: ["/lhttp"] }) // no WebSocket at /
      const carol = yield* sdk(`ws://127.0.0.1:${port}/lhttp`)
      const carolChanges = watchSession(carol.lhttp)
      const key = (yield* Effect.promise(() => carol.lhttp.request("login", null, "{\"name\":\"carol\"}"))).getHeader(
        "session-key"
      )!

      // by key, over SSE after the WebSocket failed: restored before the join, which is named from it
      const byKey = yield* sdk(`ws://127.0.0.1:${port}/`, { session: key })
      const byKeyChanges = watchSession(byKey.lhttp)
      byKey.lhttp.context.subscribe("room", "chat", null, "")
      yield* byKey.next(isChat("join", "carol"))
      assert.strictEqual(byKey.lhttp.transport, "sse")
      assert.deepStrictEqual(byKeyChanges, [["restored", key, { name: "carol" }, undefined]])
      assert.deepStrictEqual(byKey.lhttp.session, { key, data: { name: "carol" } })

      // from storage (the default entry name)
      const storage = memoryStorage([["lhttp.session", key]])
      const fromStorage = yield* sdk(`ws://127.0.0.1:${port}/lhttp`, { sessionStorage: storage })
      const storedChanges = watchSession(fromStorage.lhttp)
      yield* opened(fromStorage)
      assert.deepStrictEqual(fromStorage.lhttp.session, { key, data: { name: "carol" } })
      assert.deepStrictEqual(storedChanges, [["restored", key, { name: "carol" }, undefined]])

      // an update reaches every client of the session
      carol.lhttp.send({ command: "rename", body: "caroline" })
      for (
        const [client, changes] of [[carol, carolChanges], [byKey, byKeyChanges], [fromStorage, storedChanges]] as const
      ) {
        yield* until(() => changes.length === 2, "the update")
        assert.deepStrictEqual(changes.at(-1), ["updated", key, { name: "caroline" }, undefined])
        assert.deepStrictEqual(client.lhttp.session, { key, data: { name: "caroline" } })
      }
      assert.deepStrictEqual(carolChanges[0], ["created", key, { name: "carol" }, undefined])

      // the server closes it: cleared everywhere, and from the storage
      carol.lhttp.send({ command: "logout" })
      for (
        const [client, changes] of [[carol, carolChanges], [byKey, byKeyChanges], [fromStorage, storedChanges]] as const
      ) {
        yield* until(() => client.lhttp.sessionKey === undefined, "the close")
        assert.deepStrictEqual(changes.at(-1), ["closed", key, undefined, "Closed"])
        assert.strictEqual(client.lhttp.session, undefined)
      }
      assert.deepStrictEqual(storage.entries(), [])

      // a key the server does not know: refused, cleared, and the client opens all the same
      const stale = yield* sdk(`ws://127.0.0.1:${port}/lhttp`, { session: "no-such-session" })
      const staleChanges = watchSession(stale.lhttp)
      yield* opened(stale)
      assert.deepStrictEqual(staleChanges, [["closed", "no-such-session", undefined, "SessionNotFound"]])
      assert.strictEqual(stale.lhttp.sessionKey, undefined)
      assert.strictEqual(
        (yield* Effect.promise(() => stale.lhttp.request("echo", null, "still here"))).getBody(),
        "still here"
      )
    }))
})
