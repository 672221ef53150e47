/**
 * Headless Chromium for browser tests: Debian's `chromium` driven by
 * playwright-core (no browser download), with a fresh profile per launch.
 * Also the steps of the chat demo (src/demo/chat.html) that both
 * test/Browser.test.ts and scripts/chat-screenshot.mjs take.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { type BrowserContext, chromium, type Page } from "playwright-core"

/** Where Chromium is: `CHROMIUM_PATH`, else Debian's. */
export const chromiumPath = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium"

// without the background-networking flags Chromium keeps dialling Google's hosts, which this
// machine's closed network refuses
const flags = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync"
]

/** A running browser: one context (a fresh profile) to open pages in. */
export interface Browser {
  readonly context: BrowserContext
  readonly close: () => Promise<void>
}

/** Launches headless Chromium; fails with the install command when it is missing. */
export const launch = async (options?: { readonly viewport?: { width: number; height: number } }): Promise<Browser> => {
  if (!Fs.existsSync(chromiumPath)) {
    throw new Error(
      `Chromium is missing at ${chromiumPath}: apt-get install chromium (or set CHROMIUM_PATH to a Chromium binary)`
    )
  }
  const profile = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-lhttp-chromium-"))
  try {
    // launchPersistentContext passes the profile as --user-data-dir
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: chromiumPath,
      headless: true,
      args: flags,
      viewport: options?.viewport ?? { width: 900, height: 520 },
      timeout: 20_000
    })
    return {
      context,
      close: async () => {
        await context.close().catch(() => undefined)
        Fs.rmSync(profile, { recursive: true, force: true })
      }
    }
  } catch (error) {
    Fs.rmSync(profile, { recursive: true, force: true })
    throw error
  }
}

/**
 * Opens the chat page at `base`, waits for its connection, joins `room` as
 * `name` and waits for the chat to show. Page errors go to `errors`.
 */
export const joinChat = async (
  browser: Browser,
  base: string,
  name: string,
  room: string,
  errors: Array<string>
): Promise<Page> => {
  const page = await browser.context.newPage()
  page.on("pageerror", (error) => errors.push(`${name}: ${error.message}`))
  await page.goto(base)
  await page.locator("#state.open").waitFor()
  await page.fill("#name", name)
  await page.fill("#room", room)
  await page.click("#join button")
  await page.locator("#chat").waitFor()
  return page
}

/** Types `text` into the chat's input and sends it with Enter. */
export const say = async (page: Page, text: string): Promise<void> => {
  await page.fill("#text", text)
  await page.press("#text", "Enter")
}

/** Waits for a line of the chat's log holding every one of `parts`. */
export const logShows = (page: Page, ...parts: Array<string>): Promise<void> => {
  let locator = page.locator("#log li")
  for (const part of parts) locator = locator.filter({ hasText: part })
  return locator.last().waitFor({ timeout: 8_000 })
}
