// Refreshes docs/chat-demo.png, the screenshot of the chat demo in the README: starts the main job
// (`node src/main.ts`, what `npm start` runs) on a free port of 127.0.0.1, opens two pages of
// headless Chromium (Debian's `chromium` driven by playwright-core, as the browser tests do: see
// test/utils/browser.ts), has Alice and Bob join the lobby and say one line each, and takes Bob's
// page once both lines show.
//
//   node scripts/chat-screenshot.mjs [output.png]      (default: docs/chat-demo.png)
//
// CHROMIUM_PATH points at another Chromium binary. The tests never write this file.
import * as Path from "node:path"
import { joinChat, launch, logShows, say } from "../test/utils/browser.ts"
import { freePort, start } from "../test/utils/process.ts"

const root = Path.join(import.meta.dirname, "..")
const output = Path.resolve(process.argv[2] ?? Path.join(root, "docs", "chat-demo.png"))

const port = await freePort()
const base = `http://127.0.0.1:${port}/`
const main = start(Path.join(root, "src", "main.ts"), {
  cwd: root,
  env: { LHTTP_PORT: String(port), LHTTP_HOST: "127.0.0.1" }
})
let browser
const errors = []
try {
  await main.waitFor(/listening on/, 15_000)
  browser = await launch()
  const alice = await joinChat(browser, base, "Alice", "lobby", errors)
  await logShows(alice, "Alice joined")
  const bob = await joinChat(browser, base, "Bob", "lobby", errors)
  await logShows(bob, "Bob joined")
  await say(alice, "Hi Bob! This travels as LHTTP/1.0 over a WebSocket.")
  await logShows(bob, "Alice", "Hi Bob! This travels")
  await say(bob, "Hello Alice, loud and clear.")
  await logShows(bob, "Bob", "Hello Alice, loud and clear.")
  await bob.locator("#members li").nth(1).waitFor()
  if (errors.length > 0) throw new Error(`the page reported errors: ${errors.join("; ")}`)
  await bob.screenshot({ path: output })
  const shown = Path.relative(process.cwd(), output)
  console.log(`chat-screenshot: wrote ${shown.startsWith("..") ? output : shown}`)
} catch (error) {
  console.error(`chat-screenshot: ${error instanceof Error ? error.message : String(error)}`)
  process.exitCode = 1
} finally {
  await browser?.close()
  await main.stop()
}
