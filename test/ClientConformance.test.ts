/**
 * Both clients pass one conformance suite (test/utils/clientSuite.ts): the Effect client
 * (`LhttpClient`, in Node) and the browser SDK (`lhttp.js` as a server serves it, in headless
 * Chromium), each through a driver, on WebSocket, SSE and long-poll. Then the rules they share,
 * written once in src/internal/wire/ (docs/clients.md, "Rules both clients follow"), checked as
 * values: the backoff, the answers of `POST /send`, a session frame's data, the event stream.
 */
import { NodeWS } from "@effect/platform-node"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Exit, Option, Scope, Stream } from "effect"
import { answeredId } from "../src/internal/wire/answers.ts"
import * as Backoff from "../src/internal/wire/backoff.ts"
import { Parser } from "../src/internal/wire/eventStream.ts"
import { Positions } from "../src/internal/wire/positions.ts"
import { Attempts, retryAfter } from "../src/internal/wire/sendAnswer.ts"
import { dataOf } from "../src/internal/wire/sessionState.ts"
import * as LhttpClient from "../src/LhttpClient.ts"
import type * as Message from "../src/Message.ts"
import { type Browser, launch } from "./utils/browser.ts"
import {
  type Acknowledged,
  type Client,
  clientSuite,
  type ConnectOptions,
  type Driver,
  type Outcome,
  type Received
} from "./utils/clientSuite.ts"

// ---------------------------------------------------------------------------------------------
// the Effect client, in this process

const receivedOf = (message: Message.Message): Received | undefined =>
  message._tag === "Failure"
    ? undefined
    : { command: message.command, headers: Object.fromEntries(message.headers), body: message.body }

const effectClient = async (url: string, options: ConnectOptions): Promise<Client> => {
  const scope = Effect.runSync(Scope.make())
  const frames: Array<Received> = []
  const states: Array<{ state: string; at: number }> = []
  const changes: Array<{ change: "created" | "updated" | "restored" | "closed"; key: string }> = []
  const reconnect = options.reconnect
  const client = await Effect.runPromise(
    Effect.gen(function*() {
      const c = yield* LhttpClient.connect(url, {
        transport: options.transport,
        ...(reconnect === undefined ? {} : { reconnect })
      })
      const record = <A>(stream: Stream.Stream<A>, f: (a: A) => void) =>
        Stream.runForEach(stream, (a) => Effect.sync(() => f(a))).pipe(Effect.forkScoped({ startImmediately: true }))
      yield* record(c.messages, (message) => {
        const received = receivedOf(message)
        if (received !== undefined) frames.push(received)
      })
      yield* record(c.states, (state) => states.push({ state, at: Date.now() }))
      yield* record(c.sessions, (event) =>
        changes.push({
          change: event._tag === "Created" ? "created" : event._tag === "Updated"
            ? "updated"
            : event._tag === "Restored"
            ? "restored"
            : "closed",
          key: event._tag === "Closed" ? event.key : event.session.key
        }))
      return c
    }).pipe(Scope.provide(scope), Effect.provide(NodeWS.layerWebSocketConstructor))
  )
  const run = <A>(effect: Effect.Effect<A, LhttpClient.ClientError>) => Effect.runPromise(effect)
  return {
    subscribe: (channels) => run(client.subscribe(channels)),
    publish: (channels, command, headers, body) => run(client.publish(channels, command, headers, body)),
    publishAcknowledged: (channels, command, body) =>
      Effect.runPromise(
        client.publishAcknowledged(channels, command, {}, body, { timeout: "8 seconds" }).pipe(
          Effect.match({
            onFailure: (error): Acknowledged => ({
              error: { status: error.status, reason: error.serverReason ?? error.reason }
            }),
            onSuccess: (ack): Acknowledged => ({
              ok: Object.fromEntries(
                Array.from(ack.positions, ([channel, { epoch, offset }]) => [channel, `${epoch}:${offset}`])
              )
            })
          })
        )
      ),
    command: (command, body) => run(client.command(command, {}, body)),
    request: (command, body) =>
      Effect.runPromise(
        client.request(command, body, { timeout: "8 seconds" }).pipe(
          Effect.match({
            onFailure: (error): Outcome => ({
              error: { status: error.status, reason: error.serverReason ?? error.reason }
            }),
            onSuccess: (reply): Outcome => ({ ok: receivedOf(reply)! })
          })
        )
      ),
    frames: async () => Array.from(frames),
    states: async () => Array.from(states),
    position: async (channel) => Option.getOrUndefined(client.position(channel)),
    session: async () => Option.getOrUndefined(Effect.runSync(client.session)),
    sessionChanges: async () => Array.from(changes),
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

const effectDriver: Driver = { name: "the Effect client (LhttpClient)", connect: effectClient }

// ---------------------------------------------------------------------------------------------
// the browser SDK, in Chromium: a page on the server's origin imports /lhttp.js

/** What the page keeps of its client (`window.client`). */
interface InPage {
  readonly lhttp: {
    readonly send: (message: { command: string; body: string }) => void
    readonly context: {
      readonly subscribe: (channels: Array<string>, command: string, headers: null, body: string) => void
      readonly publish: (
        channels: Array<string>,
        command: string,
        headers: Record<string, string>,
        body: string
      ) => void
    }
    readonly publishAcknowledged: (
      channels: Array<string>,
      command: string,
      headers: null,
      body: string
    ) => Promise<{ readonly positions: ReadonlyMap<string, { readonly epoch: string; readonly offset: number }> }>
    readonly request: (command: string, headers: null, body: string) => Promise<{
      getCommand(): string
      getHeaders(): Record<string, string>
      getBody(): string
    }>
    readonly position: (channel: string) => { readonly epoch: string; readonly offset: number } | undefined
    readonly session: { readonly key: string; readonly data: unknown } | undefined
    readonly close: () => Promise<void>
  }
  readonly frames: Array<Received>
  readonly states: Array<{ state: string; at: number }>
  readonly changes: Array<{ change: "created" | "updated" | "restored" | "closed"; key: string }>
}

/** The page's global, as the functions run in the page see it (they close over nothing of this file). */
interface PageWindow {
  readonly client: InPage
}

const browserClient = async (browser: Browser, url: string, options: ConnectOptions): Promise<Client> => {
  const page = await browser.context.newPage()
  const errors: Array<string> = []
  page.on("pageerror", (error) => errors.push(error.message))
  await page.goto(`${url.replace(/^ws/, "http")}healthz`)
  const sdkOptions = {
    transports: [options.transport],
    ...(options.reconnect === undefined ? {} : { reconnect: options.reconnect })
  }
  // a string, not a function: vitest would rewrite a function's import()
  await page.evaluate(`(async () => {
    const { Lhttp } = await import("/lhttp.js")
    const lhttp = new Lhttp(${JSON.stringify(url)}, ${JSON.stringify(sdkOptions)})
    const client = window.client = { lhttp, frames: [], states: [{ state: lhttp.state, at: Date.now() }], changes: [] }
    lhttp.on_message = (ctx) => client.frames.push({ command: ctx.getCommand(), headers: ctx.getHeaders(), body: ctx.getBody() })
    lhttp.on_state = (state) => client.states.push({ state, at: Date.now() })
    lhttp.on_session = (ctx) => client.changes.push({ change: ctx.change, key: ctx.key })
  })()`)
  const check = () => {
    if (errors.length > 0) throw new Error(`the page failed: ${errors.join("; ")}`)
  }
  return {
    subscribe: async (channels) => {
      await page.evaluate(
        (list) => (window as unknown as PageWindow).client.lhttp.context.subscribe(list, "subscribe", null, ""),
        Array.from(channels)
      )
    },
    publish: async (channels, command, headers, body) => {
      await page.evaluate(
        ([list, command, headers, body]) =>
          (window as unknown as PageWindow).client.lhttp.context.publish(list, command, headers, body),
        [Array.from(channels), command, headers, body] as const
      )
    },
    command: async (command, body = "") => {
      await page.evaluate(
        ([command, body]) => (window as unknown as PageWindow).client.lhttp.send({ command, body }),
        [command, body] as const
      )
    },
    publishAcknowledged: (channels, command, body) =>
      page.evaluate(async ([list, command, body]): Promise<Acknowledged> => {
        try {
          const ack = await (window as unknown as PageWindow).client.lhttp.publishAcknowledged(
            list,
            command,
            null,
            body
          )
          return {
            ok: Object.fromEntries(
              Array.from(ack.positions, ([channel, { epoch, offset }]) => [channel, `${epoch}:${offset}`])
            )
          }
        } catch (error) {
          const { reason, status } = error as { readonly status: number; readonly reason: string }
          return { error: { status, reason } }
        }
      }, [Array.from(channels), command, body] as const),
    request: (command, body) =>
      page.evaluate(async ([command, body]): Promise<Outcome> => {
        try {
          const reply = await (window as unknown as PageWindow).client.lhttp.request(command, null, body)
          return { ok: { command: reply.getCommand(), headers: reply.getHeaders(), body: reply.getBody() } }
        } catch (error) {
          const { reason, status } = error as { readonly status: number; readonly reason: string }
          return { error: { status, reason } }
        }
      }, [command, body] as const),
    frames: async () => {
      check()
      return page.evaluate(() => (window as unknown as PageWindow).client.frames)
    },
    states: () => page.evaluate(() => (window as unknown as PageWindow).client.states),
    position: (channel) =>
      page.evaluate((channel) => (window as unknown as PageWindow).client.lhttp.position(channel), channel),
    session: () => page.evaluate(() => (window as unknown as PageWindow).client.lhttp.session),
    sessionChanges: () => page.evaluate(() => (window as unknown as PageWindow).client.changes),
    close: async () => {
      await page.evaluate(() => (window as unknown as PageWindow).client.lhttp.close()).catch(() => undefined)
      await page.close()
      check()
    }
  }
}

let browser: Browser | undefined
beforeAll(async () => {
  browser = await launch()
}, 30_000)
afterAll(async () => {
  await browser?.close()
})

const browserDriver: Driver = {
  name: "the browser SDK (lhttp.js in Chromium)",
  connect: (url, options) => browserClient(browser!, url, options)
}

describe("the conformance suite", () => {
  for (const driver of [effectDriver, browserDriver]) {
    describe(driver.name, { timeout: 30_000 }, () => clientSuite(() => driver))
  }
})

// ---------------------------------------------------------------------------------------------
// the rules both clients share, as values (src/internal/wire/)

describe("the rules both clients share (src/internal/wire/)", () => {
  it("backoff: 500 ms doubling to 10 s, up to half of each wait taken off at random", () => {
    const waits = (random: number) => Array.from({ length: 8 }, (_, n) => Backoff.delay(Backoff.defaults, n, random))
    assert.deepStrictEqual(waits(0), [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000])
    assert.deepStrictEqual(waits(1), [250, 500, 1000, 2000, 4000, 5000, 5000, 5000])
    assert.strictEqual(Backoff.delay({ initialDelay: 100, maxDelay: 1000, factor: 3, jitter: 2 }, 1, 0.5), 150)
  })

  it("POST /send: 2xx taken; 404/410 gone; 413 and other 4xx refused; 429 waits retry-after (1 s, at most 30 s)", () => {
    const attempts = new Attempts((n) => 100 * 2 ** n)
    assert.deepStrictEqual(attempts.answered(202, null, ""), { _tag: "Taken" })
    assert.deepStrictEqual(attempts.answered(404, null, "no such connection\n"), {
      _tag: "Gone",
      status: 404,
      ended: undefined
    })
    assert.deepStrictEqual(attempts.answered(410, null, "{\"code\":4100,\"reason\":\"kicked\"}"), {
      _tag: "Gone",
      status: 410,
      ended: { code: 4100, reason: "kicked" }
    })
    assert.deepStrictEqual(attempts.answered(413, null, "a message is at most 1024 bytes\n"), {
      _tag: "TooLarge",
      status: 413,
      message: "a message is at most 1024 bytes"
    })
    assert.deepStrictEqual(attempts.answered(400, null, "TooManyHeaders: a frame carries at most 4 headers\n"), {
      _tag: "Refused",
      status: 400,
      reason: "TooManyHeaders",
      message: "a frame carries at most 4 headers"
    })
    assert.deepStrictEqual(attempts.answered(429, "3", ""), { _tag: "Wait", delay: 3000 })
    assert.deepStrictEqual([retryAfter(null), retryAfter("0"), retryAfter("x"), retryAfter("120")], [
      1000,
      0,
      1000,
      30_000
    ])
  })

  it("POST /send: a 5xx or no answer waits the backoff; the 4th 5xx in a row fails with its status", () => {
    const attempts = new Attempts((n) => 100 * 2 ** n)
    assert.strictEqual(attempts.unanswered(), 100)
    assert.deepStrictEqual(attempts.answered(503, null, ""), { _tag: "Wait", delay: 200 })
    assert.deepStrictEqual(attempts.answered(500, null, ""), { _tag: "Wait", delay: 400 })
    assert.deepStrictEqual(attempts.answered(502, null, ""), { _tag: "Wait", delay: 800 })
    assert.deepStrictEqual(attempts.answered(503, null, "shutting down\n"), {
      _tag: "Failed",
      status: 503,
      message: "shutting down"
    })
  })

  it("a session frame's data: its JSON, null when empty, else its text (kept)", () => {
    assert.deepStrictEqual([dataOf("{\"name\":\"ann\"}"), dataOf(""), dataOf("not { json")], [
      { name: "ann" },
      null,
      "not { json"
    ])
  })

  it("the event stream: fields, comments, CR, LF and CRLF, a CRLF cut between chunks, no data no event", () => {
    const bytes = new TextEncoder().encode("event: x\r\r:comment\ndata: a\r")
    for (let cut = 0; cut <= bytes.length; cut++) {
      const parser = new Parser()
      const events = [
        ...parser.push(bytes.subarray(0, cut)),
        ...parser.push(bytes.subarray(cut)),
        ...parser.push(new TextEncoder().encode("\nid: 7\n\n"))
      ]
      assert.deepStrictEqual(events, [{ type: "message", data: "a", lastEventId: "7" }], `cut at ${cut}`)
    }
  })

  it("positions: a positioned frame at or before the known position comes twice and is dropped; a new epoch is taken", () => {
    const positions = new Positions()
    const held = () => true
    const frame = (command: string, headers: Record<string, string>) => ({
      command,
      headers: new Map(Object.entries(headers))
    })
    const at = (epoch: string, offset: number) =>
      frame("chat", { channel: "h-a", offset: String(offset), epoch, publish: "h-a" })
    assert.isTrue(positions.observe(frame("position", { channel: "h-a", epoch: "e1", offset: "4" }), held))
    assert.isTrue(positions.observe(at("e1", 5), held))
    // the same again, or an older one: seen
    assert.isFalse(positions.observe(at("e1", 5), held))
    assert.isFalse(positions.observe(at("e1", 3), held))
    assert.isTrue(positions.observe(at("e1", 7), held))
    // another epoch: the history was reset, the frame is new
    assert.isTrue(positions.observe(at("e2", 1), held))
    assert.deepStrictEqual(positions.get("h-a"), { epoch: "e2", offset: 1 })
    // an answer to the client (an id, no publish) and a frame of a channel not held are not deliveries
    assert.isTrue(positions.observe(frame("chat", { channel: "h-a", offset: "1", epoch: "e2", id: "r1" }), held))
    assert.isTrue(positions.observe(at("e2", 1), () => false))
  })

  it("answers: a frame answers the request of its id unless it carries publish (a delivery)", () => {
    assert.strictEqual(answeredId({ headers: new Map([["id", "r1"]]) }), "r1")
    assert.isUndefined(answeredId({ headers: new Map([["id", "r1"], ["publish", "room"]]) }))
    assert.isUndefined(answeredId({ headers: new Map() }))
  })

  it("a close's wait before the reconnect: reconnect:<ms>, at most 60 s; anything else asks for none", () => {
    assert.strictEqual(Backoff.hintedDelay(Backoff.hintReason(1234.4)), 1234)
    assert.strictEqual(Backoff.hintedDelay("reconnect:0"), 0)
    assert.strictEqual(Backoff.hintedDelay("reconnect:999999999"), 60_000)
    for (
      const reason of [
        undefined,
        "",
        "server shutting down",
        "reconnect:",
        "reconnect:-1",
        "reconnect:1.5",
        "reconnect:1e3"
      ]
    ) {
      assert.isUndefined(Backoff.hintedDelay(reason), String(reason))
    }
  })
})
