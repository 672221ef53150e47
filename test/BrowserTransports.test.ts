/**
 * The HTTP transports in a real browser (docs/transports.md): the main job (`node src/main.ts`,
 * as `npm start` runs it) and headless Chromium.
 *
 * - the anonymous chat room over Server-Sent Events: a page with a raw `EventSource` on
 *   `GET /sse?subscribe=<room>` and `fetch` to `POST /send` (no SDK) chats with the chat demo
 *   over WebSocket;
 * - the chat demo over long-poll (`?transport=poll`) chats with the chat demo over WebSocket;
 * - behind a proxy that passes no WebSocket, the SDK falls back: the chat demo to SSE (or to
 *   long-poll with `?transport=websocket,poll`), with the subscriptions and a request made before
 *   the switch.
 *
 * Each chat ends with a marker from each side, sent after everything else it sent: once both
 * markers showed on both pages, each page must show every message exactly once, in the same order.
 *
 * Then connection tokens, on each transport: an in-process server with `tokens` and the SDK of a
 * page given a `getToken` that the test answers with tokens it signs (`page.exposeFunction`): the
 * refresh frame answered with a fresh token (the connection outlives the first one), a close with
 * code 4501 (no reconnect: `on_disconnect`, closed), and a token not renewed (4003, then a
 * reconnect with a fresh one).
 *
 * Then subscription tokens, over WebSocket and SSE: a server with `privatePrefixes` and a page whose
 * `getSubscriptionToken` the test answers: a private channel subscribed with `{ token: true }` gets
 * a token at the subscribe and a fresh one (the first has expired) when the server restarts the
 * connection; what is published reaches the page before and after.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import * as Jose from "jose"
import * as Http from "node:http"
import * as Path from "node:path"
import type { Page } from "playwright-core"
import {
  anonymousChatPage,
  anonymousLines,
  type Browser,
  chatLines,
  joinChat,
  launch,
  logShows,
  membersShow,
  noWebSocketProxy,
  type Proxy,
  say
} from "./utils/browser.ts"
import { startServer, type TestServer } from "./utils/lhttp.ts"
import { freePort, type Program, start } from "./utils/process.ts"

const root = Path.join(import.meta.dirname, "..")

let main: Program
let browser: Browser
let base: string
let proxy: Proxy
const errors: Array<string> = []

beforeAll(async () => {
  const port = await freePort()
  base = `http://127.0.0.1:${port}/`
  main = start(Path.join(root, "src", "main.ts"), {
    cwd: root,
    env: { LHTTP_PORT: String(port), LHTTP_HOST: "127.0.0.1" }
  })
  await main.waitFor(/listening on/, 15_000)
  browser = await launch()
  proxy = await noWebSocketProxy(port)
}, 30_000)

afterAll(async () => {
  await browser?.close()
  await proxy?.close()
  await main?.stop()
})

/** Waits until `read` gives at least `n` lines, and gives them (the deadline turns a hang into a failure). */
const lines = async (read: () => Promise<Array<[string, string]>>, n: number): Promise<Array<[string, string]>> => {
  const deadline = Date.now() + 10_000
  for (;;) {
    const got = await read()
    if (got.length >= n) return got
    if (Date.now() > deadline) throw new Error(`${n} lines did not show in time: ${JSON.stringify(got)}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** `me`'s lines in the order `me` sent them, whatever came between. */
const from = (all: Array<[string, string]>, me: string) => all.filter(([who]) => who === me).map(([, text]) => text)

const viaOf = (page: Page) => page.locator("#via").textContent()

describe("the HTTP transports in Chromium", () => {
  it(
    "the anonymous chat room over a raw EventSource chats with the chat demo over WebSocket: every message once, in order",
    { timeout: 60_000 },
    async () => {
      const room = "anonymous"
      const alice = await joinChat(browser, base, "Alice", room, errors)
      await logShows(alice, "Alice joined")
      assert.strictEqual(await viaOf(alice), "via websocket")

      const nobody = await browser.context.newPage()
      nobody.on("pageerror", (error) => errors.push(`nobody: ${error.message}`))
      // the page's own document comes from the test; everything it asks for goes to the main job
      await nobody.route(
        `${base}anonymous.html`,
        (route) => route.fulfill({ contentType: "text/html; charset=utf-8", body: anonymousChatPage(room) })
      )
      await nobody.goto(`${base}anonymous.html`)
      await nobody.locator("#state", { hasText: "open" }).waitFor()
      const say2 = (text: string) =>
        nobody.evaluate((line) => (window as unknown as { say: (t: string) => Promise<void> }).say(line), text)
      // its first line comes back to it once its subscription (processed before it) is in place
      await say2("hello? anyone here?")
      await nobody.locator("#log li", { hasText: "hello? anyone here?" }).waitFor()
      await logShows(alice, "anonymous", "hello? anyone here?")
      await say(alice, "Hi stranger, I'm Alice.")
      await nobody.locator("#log li", { hasText: "Hi stranger" }).waitFor()

      // both talk at once, then each says a last word
      const burst = Array.from({ length: 10 }, (_, i) => i + 1)
      const nobodySaid = Promise.all(burst.map((i) => say2(`n${i}`)))
      for (const i of burst) await say(alice, `a${i}`)
      await nobodySaid
      await say2("that is all from me")
      await say(alice, "bye from Alice")

      const n = 2 + 2 * burst.length + 2
      const seenByAlice = await lines(() => chatLines(alice), n)
      const seenByNobody = await lines(() => anonymousLines(nobody), n)
      // the same messages, each once, in the same order on both pages, each sender's in its order
      assert.deepStrictEqual(seenByNobody, seenByAlice)
      assert.strictEqual(seenByAlice.length, n)
      assert.deepStrictEqual(from(seenByAlice, "Alice"), [
        "Hi stranger, I'm Alice.",
        ...burst.map((i) => `a${i}`),
        "bye from Alice"
      ])
      assert.deepStrictEqual(from(seenByAlice, "anonymous"), [
        "hello? anyone here?",
        ...burst.map((i) => `n${i}`),
        "that is all from me"
      ])
      // Alice's page tells hers from theirs
      assert.strictEqual(await alice.locator("#log li.mine").count(), 2 + burst.length)
      assert.strictEqual(await alice.locator("#log li.theirs").count(), 2 + burst.length)
      assert.deepStrictEqual(errors, [])
      await nobody.close()
      await alice.close()
    }
  )

  it(
    "the chat demo over long-poll (?transport=poll) chats with the chat demo over WebSocket: every message once, in order",
    { timeout: 60_000 },
    async () => {
      const room = "polling"
      const alice = await joinChat(browser, base, "Alice", room, errors)
      await logShows(alice, "Alice joined")
      const bob = await joinChat(browser, `${base}?transport=poll`, "Bob", room, errors)
      assert.strictEqual(await viaOf(bob), "via poll")
      assert.strictEqual(await viaOf(alice), "via websocket")
      await logShows(alice, "Bob joined")
      await logShows(bob, "Bob joined")
      await membersShow(bob, ["Alice", "Bob"])
      assert.deepStrictEqual(await bob.locator("#members li").allTextContents(), ["Alice", "Bob"])

      await say(alice, "Hi Bob, how is the polling?")
      await logShows(bob, "Alice", "Hi Bob, how is the polling?")
      await say(bob, "One round trip per batch, and no message lost.")
      await logShows(alice, "Bob", "One round trip per batch")

      const burst = Array.from({ length: 10 }, (_, i) => i + 1)
      for (const i of burst) {
        await say(bob, `b${i}`)
        await say(alice, `a${i}`)
      }
      await say(bob, "bye from Bob")
      await say(alice, "bye from Alice")

      const n = 2 + 2 * burst.length + 2
      const seenByAlice = await lines(() => chatLines(alice), n)
      const seenByBob = await lines(() => chatLines(bob), n)
      assert.deepStrictEqual(seenByBob, seenByAlice)
      assert.strictEqual(seenByBob.length, n)
      assert.deepStrictEqual(from(seenByBob, "Alice"), [
        "Hi Bob, how is the polling?",
        ...burst.map((i) => `a${i}`),
        "bye from Alice"
      ])
      assert.deepStrictEqual(from(seenByBob, "Bob"), [
        "One round trip per batch, and no message lost.",
        ...burst.map((i) => `b${i}`),
        "bye from Bob"
      ])
      assert.strictEqual(await bob.locator("#log li.mine").count(), 2 + burst.length)
      assert.deepStrictEqual(errors, [])
      await bob.close()
      await alice.close()
    }
  )

  it(
    "behind a proxy that passes no WebSocket, the SDK falls back to SSE (or long-poll), subscriptions and a pending request with it",
    { timeout: 60_000 },
    async () => {
      const room = "proxied"
      const front = `http://127.0.0.1:${proxy.port}/`
      // the proxy refuses the upgrade, as a proxy that does not pass Upgrade would
      const upgrade = await new Promise<string>((resolve) => {
        const request = Http.request({
          host: "127.0.0.1",
          port: proxy.port,
          path: "/",
          headers: { connection: "upgrade", upgrade: "websocket" }
        })
        request.on("response", (response) => resolve(String(response.statusCode)))
        request.on("upgrade", () => resolve("upgraded"))
        request.on("error", (error) => resolve(error.message))
        request.end()
      })
      assert.strictEqual(upgrade, "403")

      const alice = await joinChat(browser, base, "Alice", room, errors)
      await logShows(alice, "Alice joined")
      const bob = await joinChat(browser, front, "Bob", room, errors)
      assert.strictEqual(await viaOf(bob), "via sse")
      await logShows(alice, "Bob joined")
      await say(bob, "I came in over SSE.")
      await logShows(alice, "Bob", "I came in over SSE.")
      await say(alice, "Welcome, Bob.")
      await logShows(bob, "Alice", "Welcome, Bob.")

      // the SDK itself: a subscription and a request made before the WebSocket failed
      const carol = await browser.context.newPage()
      carol.on("pageerror", (error) => errors.push(`carol: ${error.message}`))
      await carol.goto(`${front}healthz`)
      // a string, not a function: vitest would rewrite a function's import()
      const before = await carol.evaluate(`(async () => {
      const { Lhttp } = await import("/lhttp.js")
      const room = ${JSON.stringify(room)}
      const lhttp = new Lhttp() // ws://<the proxy>/
      const state = window.carol = { lhttp, heard: [], states: [], failed: [] }
      lhttp.on_state = (s) => state.states.push(s)
      lhttp.on_error = () => state.failed.push(lhttp.transport)
      lhttp.on_message = (ctx) => {
        if (ctx.getHeader("publish") === room) state.heard.push(ctx.getHeader("from") + ": " + ctx.getBody())
      }
      lhttp.context.subscribe(room, "chat", { name: "Carol" }, "")
      const first = lhttp.transport
      const reply = await lhttp.request("echo", null, "asked before the switch")
      return { first, transport: lhttp.transport, reply: reply.getBody(), states: state.states, failed: state.failed }
    })()`)
      assert.deepStrictEqual(before, {
        first: "websocket",
        transport: "sse",
        reply: "asked before the switch",
        states: ["open"],
        failed: ["websocket"]
      })
      await logShows(alice, "Carol joined")
      await say(alice, "Hello Carol.")
      await carol.waitForFunction(() =>
        (window as unknown as { carol: { heard: Array<string> } }).carol.heard.length === 1
      )
      assert.deepStrictEqual(
        await carol.evaluate(() => (window as unknown as { carol: { heard: Array<string> } }).carol.heard),
        ["Alice: Hello Carol."]
      )

      // the chat demo with ?transport=websocket,poll behind the same proxy: long-poll
      const dave = await joinChat(browser, `${front}?transport=websocket,poll`, "Dave", room, errors)
      assert.strictEqual(await viaOf(dave), "via poll")
      await say(dave, "And I poll.")
      await logShows(alice, "Dave", "And I poll.")
      await logShows(bob, "Dave", "And I poll.")
      assert.deepStrictEqual(errors, [])
      for (const page of [dave, carol, bob, alice]) await page.close()
    }
  )
})

// ---------------------------------------------------------------------------------------------
// Connection tokens: getToken, the refresh frame, on_disconnect

const secret = "a-secret-of-at-least-32-bytes-long!!"
const transports = ["websocket", "sse", "poll"] as const
type Transport = typeof transports[number]

/** Seconds since the epoch, as `exp` counts them. */
const nowSeconds = () => Math.floor(Date.now() / 1000)

/** A connection token for `user` that expires at `exp` (seconds). */
const sign = (user: string, exp: number) =>
  new Jose.SignJWT({ sub: user, exp }).setProtectedHeader({ alg: "HS256" }).sign(new TextEncoder().encode(secret))

/** What the page's SDK was told, as the page keeps it in `window.tokens`. */
interface Told {
  readonly state: string
  readonly opens: number
  readonly disconnects: ReadonlyArray<{ readonly code: number; readonly reason: string; readonly reconnect: boolean }>
  readonly errors: ReadonlyArray<string>
  readonly heard: ReadonlyArray<string>
}

const told = (page: Page): Promise<Told> =>
  page.evaluate(() => {
    const tokens = (window as unknown as { tokens: Omit<Told, "state"> & { lhttp: { state: string } } }).tokens
    const { disconnects, errors, heard, lhttp, opens } = tokens
    return { state: lhttp.state, opens, disconnects, errors, heard }
  })

/** Waits until what the page was told passes `check` (the deadline turns a hang into a failure). */
const pageUntil = async (page: Page, check: (told: Told) => boolean, what: string, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const now = await told(page)
    if (check(now)) return now
    if (Date.now() > deadline) throw new Error(`${what} did not happen in time: ${JSON.stringify(now)}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe("connection tokens in Chromium: getToken, refresh, on_disconnect", () => {
  let scope: Scope.Closeable
  let lhttp: TestServer

  beforeAll(async () => {
    scope = Effect.runSync(Scope.make())
    lhttp = await Effect.runPromise(
      startServer({ tokens: { secret, refreshBefore: "1 second" } }).pipe(Scope.provide(scope))
    )
  }, 30_000)

  afterAll(async () => {
    if (scope !== undefined) await Effect.runPromise(Scope.close(scope, Exit.void))
  })

  /**
   * A page of the token server whose SDK connects over `transport` with `getToken` answered by
   * `token` (in Node), subscribed to `channel` (command `news`); what it is told goes to `window.tokens`.
   */
  const tokenPage = async (transport: Transport, channel: string, token: () => Promise<string>): Promise<Page> => {
    const page = await browser.context.newPage()
    page.on("pageerror", (error) => errors.push(`${channel}: ${error.message}`))
    await page.exposeFunction("lhttpToken", token)
    await page.goto(`${lhttp.http}/healthz`)
    // a string, not a function: vitest would rewrite a function's import()
    await page.evaluate(`(async () => {
      const { Lhttp } = await import("/lhttp.js")
      const channel = ${JSON.stringify(channel)}
      const lhttp = new Lhttp(null, {
        transports: [${JSON.stringify(transport)}],
        reconnect: { initialDelay: 50, maxDelay: 200 },
        getToken: () => window.lhttpToken()
      })
      const told = window.tokens = { lhttp, opens: 0, disconnects: [], errors: [], heard: [] }
      lhttp.on_open = () => told.opens++
      lhttp.on_disconnect = (ctx) =>
        told.disconnects.push({ code: ctx.code, reason: ctx.reason, reconnect: ctx.reconnect })
      lhttp.on_error = (ctx) => told.errors.push(String(ctx.event?.message ?? ctx.event?.type ?? ctx.event))
      // what the test publishes to the channel (Hub.publish: the command, no publish header)
      lhttp.on_message = (ctx) => {
        if (ctx.getCommand() === "news") told.heard.push(ctx.getBody())
      }
      lhttp.context.subscribe(channel, "news", null, "")
    })()`)
    await pageUntil(page, (now) => now.state === "open", "the open")
    return page
  }

  for (const transport of transports) {
    it(
      `${transport}: getToken's token opens the connection; the refresh frame is answered with a fresh token, and the connection outlives the first one`,
      { timeout: 30_000 },
      async () => {
        const user = `refreshing-${transport}`
        const expiries: Array<number> = []
        const page = await tokenPage(transport, `news-${transport}`, () => {
          const exp = nowSeconds() + 3
          expiries.push(exp)
          return sign(user, exp)
        })
        const [connection, ...more] = lhttp.server.connectionsOf(user)
        assert.isDefined(connection, "the token in the URL names the user")
        assert.deepStrictEqual(more, [])
        // past the first token's exp: the server would have closed the connection (4003) without a fresh one
        while (Date.now() < expiries[0]! * 1000 + 500) await sleep(50)
        assert.isAbove(expiries.length, 1, "getToken was asked again for the refresh")
        assert.deepStrictEqual(lhttp.server.connectionsOf(user).map(({ id }) => id), [connection!.id])
        await Effect.runPromise(lhttp.hub.publish(`news-${transport}`, "news", {}, "still here"))
        const now = await pageUntil(page, ({ heard }) => heard.length > 0, "the publish")
        assert.deepStrictEqual(now, {
          state: "open",
          opens: 1,
          disconnects: [],
          errors: [],
          heard: ["still here"]
        })
        assert.deepStrictEqual(errors, [])
        await page.close()
      }
    )

    it(
      `${transport}: a close with code 4501 ends the page's client: on_disconnect with reconnect false, closed, no new connection`,
      { timeout: 30_000 },
      async () => {
        const user = `banned-${transport}`
        let asked = 0
        const page = await tokenPage(transport, `banned-${transport}`, () => {
          asked++
          return sign(user, nowSeconds() + 60)
        })
        const [connection] = lhttp.server.connectionsOf(user)
        assert.isDefined(connection)
        await Effect.runPromise(connection!.close(4501, "banned"))
        const now = await pageUntil(page, ({ state }) => state === "closed", "the end")
        assert.deepStrictEqual(now.disconnects, [{ code: 4501, reason: "banned", reconnect: false }])
        // the page would have dialed again within 50 to 200 ms
        await sleep(1_000)
        assert.deepStrictEqual(lhttp.server.connectionsOf(user), [])
        assert.strictEqual(asked, 1)
        const after = await told(page)
        assert.deepStrictEqual([after.state, after.opens, after.disconnects.length], ["closed", 1, 1])
        assert.deepStrictEqual(errors, [])
        await page.close()
      }
    )

    it(
      `${transport}: a token that is not renewed closes the connection with 4003 at its exp, then a reconnect with a fresh token`,
      { timeout: 30_000 },
      async () => {
        const user = `expiring-${transport}`
        // the first token lives 1 to 2 s; until it expires getToken gives it again (a refresh renews
        // nothing), then a fresh one
        let first: { readonly exp: number; readonly token: string } | undefined
        const page = await tokenPage(transport, `expiring-${transport}`, async () => {
          if (first === undefined) {
            const exp = nowSeconds() + 2
            first = { exp, token: await sign(user, exp) }
          }
          return Date.now() < first.exp * 1000 ? first.token : sign(user, nowSeconds() + 60)
        })
        const [before] = lhttp.server.connectionsOf(user)
        assert.isDefined(before)
        const now = await pageUntil(page, ({ opens, state }) => opens === 2 && state === "open", "the reconnect")
        assert.deepStrictEqual(now.disconnects, [{ code: 4003, reason: "token expired", reconnect: true }])
        const after = lhttp.server.connectionsOf(user)
        assert.strictEqual(after.length, 1)
        assert.notStrictEqual(after[0]!.id, before!.id)
        await Effect.runPromise(lhttp.hub.publish(`expiring-${transport}`, "news", {}, "welcome back"))
        await pageUntil(page, ({ heard }) => heard.includes("welcome back"), "the publish after the reconnect")
        assert.deepStrictEqual(errors, [])
        await page.close()
      }
    )
  }
})

// ---------------------------------------------------------------------------------------------
// Subscription tokens: getSubscriptionToken, subscribe with { token: true }

/** A subscription token for `user` and `channel` that expires at `exp` (seconds), unlike any other (`jti`). */
let subscriptionTokens = 0
const signSubscription = (user: string, channel: string, exp: number) =>
  new Jose.SignJWT({ sub: user, channel, exp, jti: String(++subscriptionTokens) })
    .setProtectedHeader({ alg: "HS256" })
    .sign(new TextEncoder().encode(secret))

/** What the page's SDK was told, as the page keeps it in `window.privateRoom`. */
interface ToldPrivate {
  readonly state: string
  readonly opens: number
  /** the bodies of the `news` frames */
  readonly heard: ReadonlyArray<string>
  /** the reasons of the error frames (refused subscribes) */
  readonly refused: ReadonlyArray<string>
  /** what on_error got */
  readonly errors: ReadonlyArray<string>
}

const toldPrivate = (page: Page): Promise<ToldPrivate> =>
  page.evaluate(() => {
    const told = (window as unknown as { privateRoom: Omit<ToldPrivate, "state"> & { lhttp: { state: string } } })
      .privateRoom
    const { errors, heard, lhttp, opens, refused } = told
    return { state: lhttp.state, opens, heard, refused, errors }
  })

/** Waits until `check` passes (the deadline turns a hang into a failure); `what()` tells what was seen. */
const eventually = async <A>(read: () => Promise<A> | A, check: (value: A) => boolean, what: string): Promise<A> => {
  const deadline = Date.now() + 10_000
  for (;;) {
    const value = await read()
    if (check(value)) return value
    if (Date.now() > deadline) throw new Error(`${what} did not happen in time: ${JSON.stringify(value)}`)
    await sleep(20)
  }
}

describe("subscription tokens in Chromium: getSubscriptionToken and subscribe with { token: true }", () => {
  let scope: Scope.Closeable
  let lhttp: TestServer

  beforeAll(async () => {
    scope = Effect.runSync(Scope.make())
    lhttp = await Effect.runPromise(
      startServer({ tokens: { secret, privatePrefixes: ["private-"] } }).pipe(Scope.provide(scope))
    )
  }, 30_000)

  afterAll(async () => {
    if (scope !== undefined) await Effect.runPromise(Scope.close(scope, Exit.void))
  })

  for (const transport of ["websocket", "sse", "poll"] as const) {
    it(
      `${transport}: a private channel gets a subscription token at the subscribe and a fresh one when the server restarts the connection; publishes reach the page before and after`,
      { timeout: 30_000 },
      async () => {
        const user = `member-${transport}`
        const room = `private-room-${transport}`
        const asked: Array<string> = []
        // the first subscription token lives 2 s: the re-subscription comes after it expired, so the server
        // admits it only with a fresh one
        let firstExp: number | undefined
        const page = await browser.context.newPage()
        page.on("pageerror", (error) => errors.push(`${room}: ${error.message}`))
        await page.exposeFunction("lhttpToken", () => sign(user, nowSeconds() + 60))
        await page.exposeFunction("lhttpSubscriptionToken", (channel: string) => {
          asked.push(channel)
          const exp = nowSeconds() + (firstExp === undefined ? 2 : 60)
          firstExp ??= exp
          return signSubscription(user, channel, exp)
        })
        await page.goto(`${lhttp.http}/healthz`)
        // a string, not a function: vitest would rewrite a function's import()
        await page.evaluate(`(async () => {
          const { Lhttp } = await import("/lhttp.js")
          const lhttp = new Lhttp(null, {
            transports: [${JSON.stringify(transport)}],
            reconnect: { initialDelay: 50, maxDelay: 200 },
            getToken: () => window.lhttpToken(),
            getSubscriptionToken: (channel) => window.lhttpSubscriptionToken(channel)
          })
          const told = window.privateRoom = { lhttp, opens: 0, heard: [], refused: [], errors: [] }
          lhttp.on_open = () => told.opens++
          lhttp.on_error = (ctx) => told.errors.push(String(ctx.event?.message ?? ctx.event?.type ?? ctx.event))
          lhttp.on_message = (ctx) => {
            const error = ctx.getError()
            if (error !== undefined) told.refused.push(error.reason)
            else if (ctx.getCommand() === "news") told.heard.push(ctx.getBody())
          }
          lhttp.context.subscribe(${JSON.stringify(room)}, "news", null, "", { token: true })
          // without { token: true }: the server refuses it (the channel is private indeed)
          lhttp.context.subscribe("private-no-token", "news", null, "")
        })()`)
        const subscribed = () => {
          const [connection, ...more] = lhttp.server.connectionsOf(user)
          return more.length === 0 && connection?.channels.has(room) === true ? connection : undefined
        }
        const before = await eventually(subscribed, (connection) => connection !== undefined, "the subscription")
        await eventually(() => toldPrivate(page), ({ refused }) => refused.length === 1, "the refusal")
        await Effect.runPromise(lhttp.hub.publish(room, "news", {}, "one"))
        await eventually(() => toldPrivate(page), ({ heard }) => heard.length === 1, "the first publish")
        assert.deepStrictEqual(asked, [room])

        // past the first token's exp, the server restarts the connection: the page subscribes again
        while (Date.now() < firstExp! * 1000 + 200) await sleep(50)
        await Effect.runPromise(before!.close(1012, "reconnect:0"))
        const after = await eventually(
          subscribed,
          (connection) => connection !== undefined && connection.id !== before!.id,
          "the subscription on the new connection"
        )
        assert.isDefined(after)
        assert.deepStrictEqual(asked, [room, room], "a fresh subscription token for the re-subscription")
        await Effect.runPromise(lhttp.hub.publish(room, "news", {}, "two"))
        const now = await eventually(
          () => toldPrivate(page),
          ({ heard, refused }) => heard.length === 2 && refused.length === 2,
          "the publish after the reconnect"
        )
        assert.deepStrictEqual(now, {
          state: "open",
          opens: 2,
          heard: ["one", "two"],
          // only the subscription without a token, once on each connection (no TokenExpired: no stale token)
          refused: ["SubscriptionTokenRequired", "SubscriptionTokenRequired"],
          errors: []
        })
        assert.deepStrictEqual(errors, [])
        await page.close()
      }
    )
  }
})
