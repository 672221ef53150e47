// Refreshes docs/admin-page.png, the screenshot of the operator's page in docs/operations.md: starts the main
// job (`node src/main.ts`, what `npm start` runs) on a free port of 127.0.0.1 with LHTTP_ADMIN_PASSWORD, opens
// a few WebSocket clients that log in, join channels and publish for a while, logs in to /admin in headless
// Chromium (Debian's `chromium` driven by playwright-core, as the browser tests do: see test/utils/browser.ts),
// tails a channel, and takes the page once the charts have a few seconds of data.
//
//   node scripts/admin-screenshot.mjs [output.png]      (default: docs/admin-page.png)
//
// CHROMIUM_PATH points at another Chromium binary. The tests never write this file.
import * as Path from "node:path"
import { WebSocket } from "ws"
import { launch } from "../test/utils/browser.ts"
import { freePort, start } from "../test/utils/process.ts"

const root = Path.join(import.meta.dirname, "..")
const output = Path.resolve(process.argv[2] ?? Path.join(root, "docs", "admin-page.png"))
const password = "a screenshot passphrase"

const port = await freePort()
const base = `http://127.0.0.1:${port}`
const main = start(Path.join(root, "src", "main.ts"), {
  cwd: root,
  env: { LHTTP_PORT: String(port), LHTTP_HOST: "127.0.0.1", LHTTP_ADMIN_PASSWORD: password }
})
const frame = (command, headers, body = "") =>
  `LHTTP/1.0 ${command}\r\n${
    Object.entries(headers).map(([name, value]) => `${name}:${value}\r\n`).join("")
  }\r\n${body}`
let browser
const sockets = []
let talking
const errors = []
try {
  await main.waitFor(/listening on/, 15_000)
  const rooms = ["lobby", "support", "news", "news", "lobby", "lobby"]
  for (const [i, room] of rooms.entries()) {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/`)
    await new Promise((resolve, reject) => socket.on("open", resolve).on("error", reject))
    socket.send(frame("login", { id: "l" }, JSON.stringify({ name: `user${i + 1}` })))
    socket.send(frame("join", { subscribe: room }))
    sockets.push({ socket, room })
  }
  // a little traffic, for the charts and the tail
  let n = 0
  talking = setInterval(() => {
    const { room, socket } = sockets[n++ % sockets.length]
    socket.send(frame("chat", { publish: room }, `message ${n}`))
  }, 150)
  browser = await launch({ viewport: { width: 1200, height: 1000 } })
  const page = await browser.context.newPage()
  page.on("console", (message) => message.type() === "error" && errors.push(message.text()))
  page.on("pageerror", (error) => errors.push(error.message))
  await page.goto(`${base}/admin`)
  await page.fill("input[name=password]", password)
  await page.click("#login button")
  await page.locator("#nodes tbody tr").first().waitFor()
  await page.fill("#tail-channel", "lobby")
  await page.click("#tail-start")
  await page.fill("#inspect-channel", "lobby")
  await page.click("#inspect")
  await page.waitForTimeout(8_000)
  if (errors.length > 0) throw new Error(`the page reported errors: ${errors.join("; ")}`)
  await page.screenshot({ path: output, fullPage: true })
  const shown = Path.relative(process.cwd(), output)
  console.log(`admin-screenshot: wrote ${shown.startsWith("..") ? output : shown}`)
} catch (error) {
  console.error(`admin-screenshot: ${error instanceof Error ? error.message : String(error)}`)
  process.exitCode = 1
} finally {
  clearInterval(talking)
  for (const { socket } of sockets) socket.terminate()
  await browser?.close()
  await main.stop()
}
