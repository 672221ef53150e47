/**
 * The chat demo in a real browser: the main job (`node src/main.ts`, as `npm start` runs it)
 * serves src/demo/chat.html at `/` and the SDK at `/lhttp.js`; two pages of headless Chromium
 * join a room, chat both ways, live through a restart of the server on the same port and chat
 * again. Takes a screenshot on the way, as scripts/chat-screenshot.mjs does for
 * docs/chat-demo.png, into a temporary folder: a test writes no tracked file.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import type { Page, WebSocketRoute } from "playwright-core"
import { type Browser, chatLines, joinChat, launch, logShows, membersShow, say } from "./utils/browser.ts"
import { natsServerWith } from "./utils/nats.ts"
import { freePort, type Program, start } from "./utils/process.ts"

const root = Path.join(import.meta.dirname, "..")

const startMain = async (port: number, env: Record<string, string> = {}): Promise<Program> => {
  const program = start(Path.join(root, "src", "main.ts"), {
    cwd: root,
    env: { LHTTP_PORT: String(port), LHTTP_HOST: "127.0.0.1", ...env }
  })
  await program.waitFor(/listening on/, 15_000)
  return program
}

/** Waits until the log shows `name joined` `times` times. */
const joinedTimes = (page: Page, name: string, times: number) =>
  page.waitForFunction(
    ([text, n]) =>
      Array.from(document.querySelectorAll("#log li.event")).filter((li) => li.textContent === text).length === n,
    [`${name} joined`, times] as const,
    { timeout: 15_000 }
  )

/** How `program` exited, or a sentence saying it did not within `ms` (a deadline, not a wait). */
const exitOf = async (program: Program, ms: number) => {
  let timer: ReturnType<typeof setTimeout> | undefined
  const late = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`the main job did not exit within ${ms} ms`), ms)
  })
  try {
    return await Promise.race([program.exited, late])
  } finally {
    clearTimeout(timer)
  }
}

const members = (page: Page) => page.locator("#members li").allTextContents()

describe("the chat demo in Chromium", () => {
  it("two pages chat both ways, and keep chatting after the server restarts", { timeout: 60_000 }, async () => {
    const port = await freePort()
    const base = `http://127.0.0.1:${port}/`
    let main = await startMain(port)
    let browser: Browser | undefined
    const errors: Array<string> = []
    const folder = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-lhttp-browser-"))
    try {
      const home = await fetch(base)
      assert.strictEqual(home.status, 200, `the main job does not serve the chat page at / (status ${home.status})`)
      assert.match(String(home.headers.get("content-type")), /text\/html/)
      const sdk = await fetch(`${base}lhttp.js`)
      assert.strictEqual(sdk.status, 200)
      assert.match(String(sdk.headers.get("content-type")), /javascript/)

      browser = await launch()
      const alice = await joinChat(browser, base, "Alice", "lobby", errors)
      await logShows(alice, "Alice joined")
      const bob = await joinChat(browser, base, "Bob", "lobby", errors)
      await logShows(alice, "Bob joined")
      await logShows(bob, "Bob joined")
      await membersShow(alice, ["Alice", "Bob"])
      await membersShow(bob, ["Alice", "Bob"])
      assert.deepStrictEqual(await members(alice), ["Alice", "Bob"])
      assert.deepStrictEqual(await members(bob), ["Alice", "Bob"])

      await say(alice, "Hi Bob! This travels as LHTTP/1.0 over a WebSocket.")
      await logShows(bob, "Alice", "Hi Bob! This travels")
      await say(bob, "Hello Alice, loud and clear.")
      await logShows(alice, "Bob", "Hello Alice, loud and clear.")
      await logShows(alice, "Alice", "Hi Bob!") // the sender hears her own message, marked as hers
      assert.strictEqual(await alice.locator("#log li.mine").count(), 1)
      assert.strictEqual(await alice.locator("#log li.theirs").count(), 1)
      await logShows(bob, "Bob", "Hello Alice, loud and clear.")
      const shot = await bob.screenshot({ path: Path.join(folder, "chat.png") })
      // a PNG of the page's viewport (the IHDR chunk holds width and height)
      assert.strictEqual(shot.subarray(1, 4).toString("latin1"), "PNG")
      assert.deepStrictEqual([shot.readUInt32BE(16), shot.readUInt32BE(20)], [900, 520])
      assert.isTrue(Fs.existsSync(Path.join(folder, "chat.png")))

      // the main job stops (it drains: every client gets 1001) and starts again on the same port
      main.child.kill("SIGTERM")
      await alice.locator("#state.reconnecting").waitFor({ timeout: 5_000 })
      await bob.locator("#state.reconnecting").waitFor({ timeout: 5_000 })
      // it exits by itself, cleanly, although Chromium holds a spare connection that never sent a request
      // (wait for the exit of the SIGTERM above; a second signal would race the shutdown's own end)
      const stopped = await exitOf(main, 10_000)
      assert.deepStrictEqual(stopped, { code: 0, signal: null }, main.output())
      main = await startMain(port)
      // the SDK reconnects and re-sends the join (subscribe:lobby, name:...)
      await alice.locator("#state.open").waitFor({ timeout: 15_000 })
      await bob.locator("#state.open").waitFor({ timeout: 15_000 })
      // each page hears its own join again once the server has it subscribed
      await joinedTimes(alice, "Alice", 2)
      await joinedTimes(bob, "Bob", 2)
      for (const page of [alice, bob]) {
        await page.waitForFunction(() => document.querySelector("#members")?.textContent === "AliceBob", null, {
          timeout: 8_000
        })
      }

      await say(alice, "Still there after the restart?")
      await logShows(bob, "Alice", "Still there after the restart?")
      await say(bob, "Yes, reconnected and re-joined.")
      await logShows(alice, "Bob", "Yes, reconnected and re-joined.")
      assert.deepStrictEqual(errors, [])
    } finally {
      await browser?.close()
      await main.stop()
      Fs.rmSync(folder, { recursive: true, force: true })
    }
  })

  it("a page whose connection drops shows what was said while it was away, once, in order (channel history)", {
    timeout: 60_000
  }, async () => {
    const port = await freePort()
    const base = `http://127.0.0.1:${port}/`
    const main = await startMain(port)
    let browser: Browser | undefined
    const errors: Array<string> = []
    try {
      browser = await launch()
      // Alice's WebSockets go through a route this test can cut, and refuse while she is "offline"
      let offline = false
      let current: WebSocketRoute | undefined
      const alice = await joinChat(browser, base, "Alice", "away", errors, (page) =>
        page.routeWebSocket(/.*/, (ws) => {
          if (offline) return ws.close({ code: 1006 })
          current = ws
          ws.connectToServer()
        }))
      const bob = await joinChat(browser, base, "Bob", "away", errors)
      await logShows(alice, "Bob joined")
      await say(bob, "before")
      await logShows(alice, "Bob", "before")
      offline = true
      await current!.close({ code: 1006 })
      await alice.locator("#state.reconnecting").waitFor({ timeout: 5_000 })
      for (const text of ["one", "two", "three"]) await say(bob, text)
      await logShows(bob, "Bob", "three")
      offline = false
      await alice.locator("#state.open").waitFor({ timeout: 15_000 })
      await logShows(alice, "Bob", "three")
      await say(bob, "after")
      await logShows(alice, "Bob", "after")
      assert.deepStrictEqual((await chatLines(alice)).filter(([who]) => who === "Bob").map(([, text]) => text), [
        "before",
        "one",
        "two",
        "three",
        "after"
      ])
      assert.strictEqual(await alice.locator("#log li", { hasText: "are gone" }).count(), 0)
      assert.deepStrictEqual(errors, [])
    } finally {
      await browser?.close()
      await main.stop()
    }
  })

  it("a page logged in keeps its name across a restart of the main job (sessions in NATS KV) and a reload", {
    timeout: 90_000
  }, async () => {
    const scope = Effect.runSync(Scope.make())
    const port = await freePort()
    const base = `http://127.0.0.1:${port}/`
    let main: Program | undefined
    let browser: Browser | undefined
    const errors: Array<string> = []
    try {
      // the sessions live outside the process: in a NATS KV bucket (JetStream)
      const nats = await Effect.runPromise(natsServerWith({ jetstream: true }).pipe(Scope.provide(scope)))
      const env = { LHTTP_NATS_URL: nats.url }
      main = await startMain(port, env)
      browser = await launch()
      const page = await joinChat(browser, base, "Alice", "lasting", errors)
      await logShows(page, "Alice joined")
      const key = await page.evaluate(() => localStorage.getItem("lhttp-chat-session"))
      assert.match(String(key), /^[\w-]{22}$/)
      assert.strictEqual(await page.locator("#where").textContent(), "· Alice in lasting")

      // the main job stops and starts again on the same port: nothing of it is left in memory
      main.child.kill("SIGTERM")
      await page.locator("#state.reconnecting").waitFor({ timeout: 5_000 })
      assert.deepStrictEqual(await exitOf(main, 10_000), { code: 0, signal: null }, main.output())
      main = await startMain(port, env)
      // the page reconnects, restores its session first, and joins again with no name: the server names it
      await page.locator("#state.open").waitFor({ timeout: 15_000 })
      await joinedTimes(page, "Alice", 2)
      assert.strictEqual(await page.locator("#log li.event", { hasText: "anonymous" }).count(), 0)
      await say(page, "Still Alice after the restart.")
      await logShows(page, "Alice", "Still Alice after the restart.")
      assert.strictEqual(await page.locator("#log li.mine").count(), 1)
      // the same login: restored, not made again
      assert.strictEqual(await page.evaluate(() => localStorage.getItem("lhttp-chat-session")), key)

      // a reload: the page knows nothing but the saved key and room; the session gives the name back
      await page.reload()
      await page.locator("#state.open").waitFor({ timeout: 15_000 })
      await logShows(page, "Alice joined")
      assert.isTrue(await page.locator("#join").isHidden())
      assert.strictEqual(await page.locator("#where").textContent(), "· Alice in lasting")
      await say(page, "And after a reload.")
      await logShows(page, "Alice", "And after a reload.")
      assert.deepStrictEqual(await page.locator("#log li.mine b").allTextContents(), ["Alice"])
      assert.strictEqual(await page.locator("#log li.event", { hasText: "anonymous" }).count(), 0)
      assert.strictEqual(await page.evaluate(() => localStorage.getItem("lhttp-chat-session")), key)
      assert.deepStrictEqual(errors, [])
    } finally {
      await browser?.close()
      await main?.stop()
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  })
})
