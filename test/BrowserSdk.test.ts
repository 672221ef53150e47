/**
 * The browser SDK (src/browser/lhttp.js) in Node: its frames byte for byte (the original SDK's
 * vectors without its bugs), its decoding of what servers send, and its behaviour against a real
 * in-process server: request/reply, a chat as the original demo wrote it, and reconnection with
 * re-subscription after the server closes the connection or restarts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Result, Scope } from "effect"
import * as fc from "fast-check"
import { vi } from "vitest"
import {
  Context,
  decode,
  encode,
  Lhttp,
  LhttpError,
  type LhttpOptions,
  Message,
  type State,
  type WebSocketLike
} from "../src/browser/lhttp.js"
import * as Chat from "../src/demo/Chat.ts"
import * as Echo from "../src/demo/Echo.ts"
import * as Frame from "../src/Frame.ts"
import * as Processor from "../src/Processor.ts"
import WebSocketWs from "ws"
import { connect, frame, startServer } from "./utils/lhttp.ts"
import { freePort } from "./utils/process.ts"

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
  onopen: ((event: any) => void) | null = null
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
              throw new Error(`no matching frame in ${timeoutMs} ms; received: ${JSON.stringify(received.map((c) => encode(c.req)))}`)
            }
            await new Promise((resolve) => setTimeout(resolve, 10))
          }
        })
      return { lhttp, states, closes, bodies, errors: () => errors, next }
    }),
    ({ lhttp }) => Effect.promise(() => Promise.race([lhttp.close(), new Promise((resolve) => setTimeout(resolve, 2_000))]))
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

const server = (port?: number) =>
  startServer(
    { processors: [Echo.Echo, Chat.Chat, Kick, Silent], ...(port === undefined ? {} : { port }) },
    Layer.mergeAll(Echo.layer, Chat.layer, KickLive, SilentLive)
  )

const isChat = (event: string, from: string) => (context: Context) =>
  context.getHeader("event") === event && context.getHeader("from") === from

// ---------------------------------------------------------------------------------------------

describe("browser SDK: frames it sends", () => {
  it("the original SDK's vectors (§12.4) without its bugs", () => {
    const { lhttp, socket } = fake()
    socket.accept()
    const ctx = lhttp.context
    ctx.subscribe("a", "chat", null, "")
    ctx.publish("b", "chat", { x: "1" }, "hi") // the original also sent subscribe:a here
    new Context(lhttp, decode("LHTTP/1.0 chat\r\nh:v\r\n\r\nbody")).send("reply") // the original echoed no header either
    assert.deepStrictEqual(socket.sent, [
      "LHTTP/1.0 chat\r\nsubscribe:a\r\n\r\n",
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
      "LHTTP/1.0 chat\r\nx:1\r\nsubscribe:c\r\nname:ann\r\n\r\n"
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
      fc.property(noLineBreak, fc.array(fc.tuple(name, noLineBreak), { maxLength: 6 }), body, (command, pairs, text) => {
        const headers = new Map(pairs)
        const rendered = Frame.render(Frame.make(command, headers, text))
        assert.strictEqual(encode({ command, headers, body: text }), rendered)
        assert.strictEqual(new Message(command, headers, text).encode(), rendered)
        const message = decode(rendered)
        assert.strictEqual(message.command, command)
        assert.deepStrictEqual(Array.from(message.headers), Array.from(headers))
        assert.strictEqual(message.body, text)
      })
    )
  })
})

describe("browser SDK: decoding what the server sends", () => {
  const cases: Array<[string, string, Array<[string, string]>, string]> = [
    ["a reply", "LHTTP/1.0 echo\r\nid:7\r\n\r\nhi", [["id", "7"]], "hi"],
    ["a delivery", "LHTTP/1.0 chat\r\npublish:chatroom\r\nfrom:ann\r\n\r\nhello", [["publish", "chatroom"], ["from", "ann"]], "hello"],
    ["values keep their colons", "LHTTP/1.0 chat\r\nupstream:POST http://x.com/a\r\n\r\nb", [["upstream", "POST http://x.com/a"]], "b"],
    ["bodies keep every CRLF CRLF", "LHTTP/1.0 chat\r\nk:v\r\n\r\nline1\r\n\r\nline2\r\n\r\n", [["k", "v"]], "line1\r\n\r\nline2\r\n\r\n"],
    ["no headers", "LHTTP/1.0 chat\r\n\r\nline1\r\nline2", [], "line1\r\nline2"],
    ["an empty body", "LHTTP/1.0 chat\r\nk:v\r\n\r\n", [["k", "v"]], ""],
    ["the end ends the header section", "LHTTP/1.0 chat\r\nk:v", [["k", "v"]], ""],
    ["the end ends the start line", "LHTTP/1.0 chat room", [], ""],
    ["empty values and spaces are kept", "LHTTP/1.0 x\r\npublish:\r\n a : b \r\n\r\nbody", [["publish", ""], [" a ", " b "]], "body"],
    ["a repeated name: first place, last value", "LHTTP/1.0 x\r\na:1\r\nb:2\r\na:3\r\n\r\n", [["a", "3"], ["b", "2"]], ""]
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
        "LHTTP/1.0 chat\r\nsubscribe:room\r\nname:ann\r\n\r\n",
        "LHTTP/1.0 chat\r\npublish:room\r\n\r\nearly"
      ])
      // subscribing while publishing: re-sent without the publish nor its body
      lhttp.context.addHeader("subscribe", "news").publish("room", "say", { "content-type": "text/plain" }, "hi")
      lhttp.context.subscribe("a b c", "watch", null, "")
      lhttp.context.unsubscribe("b", "watch", null, "")
      assert.deepStrictEqual(lhttp.channels, ["room", "news", "a", "c"])

      socket.drop(1001, "going away")
      assert.strictEqual(lhttp.state, "reconnecting")
      lhttp.context.subscribe("late", "watch", null, "") // not queued: re-sent with the others
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
        "LHTTP/1.0 chat\r\nsubscribe:room\r\nname:ann\r\n\r\n",
        "LHTTP/1.0 say\r\nsubscribe:news\r\ncontent-type:text/plain\r\n\r\n",
        "LHTTP/1.0 watch\r\nsubscribe:a c\r\n\r\n",
        "LHTTP/1.0 watch\r\nsubscribe:late\r\n\r\n",
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

      const twice = fake({ reconnect: { initialDelay: 10, maxAttempts: 2 } })
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
      assert.strictEqual(yield* observer.next(), "LHTTP/1.0 chat\r\npublish:room\r\nfrom:alice\r\n\r\nhi bob\r\n\r\nhow are you?")
      yield* alice.next((ctx) => ctx.getBody().startsWith("hi bob")) // the sender hears it too

      bob.lhttp.context.publish("room", "chat", { mood: "fine:thanks" }, "fine")
      const fine = yield* alice.next((ctx) => ctx.getBody() === "fine")
      assert.deepStrictEqual(fine.getHeaders(), { publish: "room", mood: "fine:thanks", from: "bob" })
      assert.strictEqual(yield* observer.next(), "LHTTP/1.0 chat\r\npublish:room\r\nmood:fine:thanks\r\nfrom:bob\r\n\r\nfine")

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

  it.live("the server restarts on the same port (drain, 1001): re-subscribed, and what was sent meanwhile (at most maxQueue) goes out after", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(freePort)
      const first = yield* Scope.make()
      const { url } = yield* server(port).pipe(Scope.provide(first))
      const c = yield* sdk(url, { maxQueue: 2 })
      c.lhttp.context.subscribe("news alerts", "watch", null, "") // before the open: sent on open
      yield* opened(c)
      // the server processed the subscription before the echo
      assert.strictEqual((yield* Effect.promise(() => c.lhttp.request("echo", null, "subscribed"))).getBody(), "subscribed")

      yield* Scope.close(first, Exit.void) // drains: every connection is closed with 1001
      yield* until(() => c.lhttp.state === "reconnecting", "the client to notice")
      assert.deepInclude(c.closes[0], { code: 1001, willReconnect: true })
      c.lhttp.context.publish("news", "flash", null, "sent while down")
      const pending = c.lhttp.request("echo", null, "asked while down")
      // maxQueue: 2 messages wait; the third is refused at once, a request too
      assert.throws(() => c.lhttp.context.publish("news", "flash", null, "one too many"), /too many messages/)
      assert.deepInclude(yield* failure(c.lhttp.request("echo", null, "one too many")), { status: 0, reason: "QueueFull" })
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
    const lhttp = new Lhttp(`ws://127.0.0.1:${port}/`, { WebSocket: Counted as never })
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
