/**
 * The chat demo in a real browser: the main job (`node src/main.ts`, as `npm start` runs it)
 * serves src/demo/chat.html at `/` and the SDK at `/lhttp.js`; two pages of headless Chromium
 * join a room, chat both ways, live through a restart of the server on the same port and chat
 * again. Takes the screenshot docs/chat-demo.png on the way.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Path from "node:path"
import type { Page } from "playwright-core"
import { type Browser, launch } from "./utils/browser.ts"
import { freePort, type Program, start } from "./utils/process.ts"

const root = Path.join(import.meta.dirname, "..")
const screenshot = Path.join(root, "docs", "chat-demo.png")

const startMain = async (port: number): Promise<Program> => {
  const program = start(Path.join(root, "src", "main.ts"), {
    cwd: root,
    env: { LHTTP_PORT: String(port), LHTTP_HOST: "127.0.0.1" }
  })
  await program.waitFor(/listening on/, 15_000)
  return program
}

const open = async (browser: Browser, base: string, name: string, errors: Array<string>): Promise<Page> => {
  const page = await browser.context.newPage()
  page.on("pageerror", (error) => errors.push(`${name}: ${error.message}`))
  await page.goto(base)
  await page.locator("#state.open").waitFor()
  await page.fill("#name", name)
  await page.fill("#room", "lobby")
  await page.click("#join button")
  await page.locator("#chat").waitFor()
  return page
}

const say = async (page: Page, text: string) => {
  await page.fill("#text", text)
  await page.press("#text", "Enter")
}

/** Waits for a line of the log holding every one of `parts`. */
const logShows = (page: Page, ...parts: Array<string>) => {
  let locator = page.locator("#log li")
  for (const part of parts) locator = locator.filter({ hasText: part })
  return locator.last().waitFor({ timeout: 8_000 })
}

/** Waits until the log shows `name joined` `times` times. */
const joinedTimes = (page: Page, name: string, times: number) =>
  page.waitForFunction(
    ([text, n]) => Array.from(document.querySelectorAll("#log li.event")).filter((li) => li.textContent === text).length === n,
    [`${name} joined`, times] as const,
    { timeout: 15_000 }
  )

const members = (page: Page) => page.locator("#members li").allTextContents()

describe("the chat demo in Chromium", () => {
  it("two pages chat both ways, and keep chatting after the server restarts", { timeout: 60_000 }, async () => {
    const port = await freePort()
    const base = `http://127.0.0.1:${port}/`
    let main = await startMain(port)
    let browser: Browser | undefined
    const errors: Array<string> = []
    try {
      const home = await fetch(base)
      assert.strictEqual(home.status, 200, `the main job does not serve the chat page at / (status ${home.status})`)
      assert.match(String(home.headers.get("content-type")), /text\/html/)
      const sdk = await fetch(`${base}lhttp.js`)
      assert.strictEqual(sdk.status, 200)
      assert.match(String(sdk.headers.get("content-type")), /javascript/)

      browser = await launch()
      const alice = await open(browser, base, "Alice", errors)
      await logShows(alice, "Alice joined")
      const bob = await open(browser, base, "Bob", errors)
      await logShows(alice, "Bob joined")
      await logShows(bob, "Bob joined")
      assert.deepStrictEqual(await members(alice), ["Alice", "Bob"])
      assert.deepStrictEqual(await members(bob), ["Alice", "Bob"])

      await say(alice, "Hi Bob! This travels as LHTTP/1.0 over a WebSocket.")
      await logShows(bob, "Alice", "Hi Bob! This travels")
      await say(bob, "Hello Alice, loud and clear.")
      await logShows(alice, "Bob", "Hello Alice, loud and clear.")
      await logShows(alice, "Alice", "Hi Bob!") // the sender hears her own message, marked as hers
      assert.strictEqual(await alice.locator("#log li.mine").count(), 1)
      assert.strictEqual(await alice.locator("#log li.theirs").count(), 1)
      await bob.screenshot({ path: screenshot })

      // the main job stops (it drains: every client gets 1001) and starts again on the same port
      main.child.kill("SIGTERM")
      await alice.locator("#state.reconnecting").waitFor({ timeout: 5_000 })
      await bob.locator("#state.reconnecting").waitFor({ timeout: 5_000 })
      // it exits by itself, cleanly, although Chromium holds a spare connection that never sent a request
      // (wait for the exit of the SIGTERM above; a second signal would race the shutdown's own end)
      const stopped = await Promise.race([
        main.exited,
        new Promise((resolve) => setTimeout(() => resolve("the main job did not exit within 10 s"), 10_000))
      ])
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
    }
  })
})
