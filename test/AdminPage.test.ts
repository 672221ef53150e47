/**
 * The operator's page in Chromium, on two main-job nodes joined by a real
 * nats-server: refused with a wrong password and locked out after repeated
 * failures; logged in, the counts move as test connections open and close on
 * both nodes; the live tail shows a frame a test client publishes; the
 * disconnect form closes a real connection; no console errors.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { fileURLToPath } from "node:url"
import type { Page } from "playwright-core"
import { type Browser, launch } from "./utils/browser.ts"
import { connect, frame, type TestClient } from "./utils/lhttp.ts"
import { natsServer } from "./utils/nats.ts"
import { freePort, type Program, start } from "./utils/process.ts"

const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))
const password = "a long operator passphrase"

let scope: Scope.Closeable
let browser: Browser
const nodes: Array<{ program: Program; http: string; ws: string }> = []

beforeAll(async () => {
  scope = await Effect.runPromise(Scope.make())
  const nats = await Effect.runPromise(Scope.provide(natsServer, scope))
  for (let i = 0; i < 2; i++) {
    const port = await freePort()
    const program = start(main, {
      env: {
        LHTTP_PORT: String(port),
        LHTTP_HOST: "127.0.0.1",
        LHTTP_NATS_URL: nats.url,
        LHTTP_ADMIN_PASSWORD: password
      }
    })
    await program.waitFor(/listening on/, 15_000)
    nodes.push({ program, http: `http://127.0.0.1:${port}`, ws: `ws://127.0.0.1:${port}/` })
  }
  browser = await launch({ viewport: { width: 1200, height: 900 } })
}, 60_000)

afterAll(async () => {
  await browser?.close()
  await Promise.all(nodes.map(({ program }) => program.stop("SIGTERM", 3_000)))
  await Effect.runPromise(Scope.close(scope, Exit.void))
})

/** A page of the operator's view on node `n`, with its console errors collected. */
const open = async (n: number, errors: Array<string>): Promise<Page> => {
  const page = await browser.context.newPage()
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text())
  })
  page.on("pageerror", (error) => errors.push(error.message))
  page.on("dialog", (dialog) => void dialog.accept())
  await page.goto(`${nodes[n]!.http}/admin`)
  return page
}

const logIn = async (page: Page, given = password) => {
  await page.fill("input[name=password]", given)
  await page.click("#login button")
  await page.waitForLoadState("domcontentloaded")
}

/** A WebSocket client of node `n`, logged in as `name` (the demo's login), until the test ends. */
const client = (n: number, name: string, channel?: string) =>
  Effect.runPromise(
    Effect.gen(function*() {
      const opened = yield* connect(nodes[n]!.ws)
      yield* opened.send(frame("login", { id: "l" }, JSON.stringify({ name })))
      yield* opened.next("5 seconds")
      if (channel !== undefined) yield* opened.send(frame("join", { subscribe: channel }))
      yield* opened.nothing()
      return opened
    }).pipe(Scope.provide(scope))
  )

const connections = (page: Page) => page.locator("#summary").getAttribute("data-connections").then(Number)

describe("the operator's page in Chromium", () => {
  it("a wrong password is refused; five failures lock the address out", { timeout: 30_000 }, async () => {
    const errors: Array<string> = []
    const page = await open(1, errors)
    await logIn(page, "not the password")
    assert.include(await page.locator("#login").innerText(), "Wrong password.")
    assert.isFalse(await page.locator("#dashboard").isVisible())
    // (the lockout is per address and node: node 1's, so that node 0 keeps taking this machine's logins)
    for (let i = 0; i < 4; i++) await logIn(page, `guess ${i}`)
    await logIn(page)
    assert.include(await page.locator("#login").innerText(), "Too many failed logins")
    await page.close()
  })

  it("logged in: both nodes, counts that move, a live tail, a disconnect that closes a real connection", {
    timeout: 60_000
  }, async () => {
    const errors: Array<string> = []
    const page = await open(0, errors)
    await logIn(page)
    await page.locator("#nodes tbody tr").nth(1).waitFor({ timeout: 15_000 })
    const before = await connections(page)
    const clients: Array<TestClient> = [
      await client(0, "ada", "news"),
      await client(1, "grace", "news"),
      await client(1, "alan")
    ]
    await page.waitForFunction(
      (count) => Number(document.querySelector("#summary")?.getAttribute("data-connections")) === count,
      before + 3,
      { timeout: 15_000 }
    )
    clients[2]!.ws.close()
    await page.waitForFunction(
      (count) => Number(document.querySelector("#summary")?.getAttribute("data-connections")) === count,
      before + 2,
      { timeout: 15_000 }
    )
    // the busiest channels show news with its two subscribers, one on each node
    await page.locator("#channels tbody tr", { hasText: "news" }).filter({ hasText: "2" }).waitFor({ timeout: 15_000 })

    // the live tail of news: a frame a client on the other node publishes
    await page.fill("#tail-channel", "news")
    await page.click("#tail-start")
    await page.locator("#tail-state", { hasText: "tailing channel news" }).waitFor()
    await Effect.runPromise(clients[1]!.send(frame("chat", { publish: "news" }, "tailed words")))
    await page.locator("#tail", { hasText: "tailed words" }).waitFor({ timeout: 10_000 })

    // the live tail of a user on the other node: grace gets a frame, the page shows it with her connection
    await page.selectOption("#tail-kind", "user")
    await page.fill("#tail-channel", "grace")
    await page.click("#tail-start")
    await page.locator("#tail-state", { hasText: "tailing user grace" }).waitFor()
    await page.waitForTimeout(1_000)
    await Effect.runPromise(clients[0]!.send(frame("chat", { publish: "news" }, "for grace's eyes")))
    await page.locator("#tail", { hasText: "for grace's eyes" }).waitFor({ timeout: 10_000 })
    assert.match(await page.locator("#tail").innerText(), / to \S+ LHTTP\/1\.0 chat/)

    // the disconnect form: ada's real connection closes, with the default code
    await page.fill("form[data-operation=disconnect] input[name=user]", "ada")
    await page.click("form[data-operation=disconnect] button")
    await page.locator("#outcome.done", { hasText: "\"disconnected\":1" }).waitFor({ timeout: 10_000 })
    const closed = await Effect.runPromise(clients[0]!.closed)
    assert.strictEqual(closed.code, 4500)
    assert.deepStrictEqual(errors, [])
    await page.close()
  })
})
