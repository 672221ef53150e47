/**
 * Headless Chromium for browser tests: Debian's `chromium` driven by
 * playwright-core (no browser download), with a fresh profile per launch.
 * Also the steps of the chat demo (src/demo/chat.html) that both
 * test/Browser.test.ts and scripts/chat-screenshot.mjs take, and for
 * test/BrowserTransports.test.ts: the anonymous chat room over a raw
 * `EventSource`, and an HTTP proxy that passes no WebSocket (test/utils/clientSuite.ts's answers
 * `POST /send` with faults).
 */
import * as Fs from "node:fs"
import * as Http from "node:http"
import type * as Net from "node:net"
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
  errors: Array<string>,
  prepare?: (page: Page) => Promise<void>
): Promise<Page> => {
  const page = await browser.context.newPage()
  page.on("pageerror", (error) => errors.push(`${name}: ${error.message}`))
  if (prepare !== undefined) await prepare(page)
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

/**
 * Waits until the chat page's member list shows exactly `names`, in order (it comes from a
 * presence query the page makes after joining, so it may follow the join line).
 */
export const membersShow = (page: Page, names: ReadonlyArray<string>): Promise<unknown> =>
  page.waitForFunction(
    (expected) =>
      JSON.stringify(Array.from(document.querySelectorAll("#members li"), (li) => li.textContent)) === expected,
    JSON.stringify(names),
    { timeout: 8_000 }
  )

/** The chat lines of the chat page's log (not the join and leave events): `[who, text]` each, in order. */
export const chatLines = (page: Page): Promise<Array<[string, string]>> =>
  page.$$eval(
    "#log li.mine, #log li.theirs",
    (items) =>
      items.map((
        li
      ): [string, string] => [li.querySelector("b")?.textContent ?? "", li.childNodes[1]?.textContent ?? ""])
  )

/**
 * The anonymous chat room over Server-Sent Events, with no SDK: an `EventSource` on
 * `GET /sse?subscribe=<room>` listening for the `chat` event (the command of the frames the room
 * carries), and `fetch` posting each line to `POST /send`, one at a time. `#state` says `open` once
 * the stream is connected; each message shows in `#log` as `<li data-from="...">text</li>`;
 * `window.say(text)` sends a line (and resolves once the server took it, 202).
 */
export const anonymousChatPage = (room: string): string =>
  `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>anonymous chat</title><link rel="icon" href="data:,"></head>
<body>
<p id="state">connecting</p>
<ul id="log"></ul>
<script>
const room = ${JSON.stringify(room)}
const source = new EventSource("/sse?subscribe=" + encodeURIComponent(room))
let connection
source.addEventListener("connected", (event) => {
  connection = event.data
  document.getElementById("state").textContent = "open"
})
source.addEventListener("chat", (event) => {
  // the frame's lines joined with LF: the head up to the first empty line, then the body
  const blank = event.data.indexOf("\\n\\n")
  const headers = {}
  for (const line of event.data.slice(0, blank).split("\\n").slice(1)) {
    headers[line.slice(0, line.indexOf(":"))] = line.slice(line.indexOf(":") + 1)
  }
  if (headers.publish !== room) return // the room's join and leave events carry room:, not publish:
  const li = document.createElement("li")
  li.dataset.from = headers.from
  li.textContent = event.data.slice(blank + 2)
  document.getElementById("log").append(li)
})
let sending = Promise.resolve()
window.say = (text) =>
  sending = sending.then(() =>
    fetch("/send?connection=" + encodeURIComponent(connection), {
      method: "POST",
      headers: { "content-type": "text/plain;charset=UTF-8" },
      body: "LHTTP/1.0 chat\\r\\npublish:" + room + "\\r\\n\\r\\n" + text
    }).then((response) => {
      if (response.status !== 202) throw new Error("POST /send answered " + response.status)
    })
  )
</script>
</body>
</html>
`

/** The lines of the anonymous page's log: `[from, text]` each, in order. */
export const anonymousLines = (page: Page): Promise<Array<[string, string]>> =>
  page.$$eval(
    "#log li",
    (items) => items.map((li): [string, string] => [li.dataset["from"] ?? "", li.textContent ?? ""])
  )

/** A running proxy. */
export interface Proxy {
  readonly port: number
  readonly close: () => Promise<void>
}

/**
 * An HTTP proxy in front of `127.0.0.1:target` that passes requests and streams their answers
 * (so Server-Sent Events and long-polls go through) but no WebSocket: an upgrade gets `403`, as
 * behind a proxy that does not pass `Upgrade`. `intercept`, if given, may answer a request itself
 * (it returns true then): test/utils/clientSuite.ts answers `POST /send` with faults.
 */
export const noWebSocketProxy = (
  target: number,
  intercept?: (request: Http.IncomingMessage, response: Http.ServerResponse) => boolean
): Promise<Proxy> =>
  new Promise((resolve, reject) => {
    const sockets = new Set<Net.Socket>()
    const server = Http.createServer((request, response) => {
      if (intercept?.(request, response) === true) return
      const upstream = Http.request(
        { host: "127.0.0.1", port: target, method: request.method, path: request.url, headers: request.headers },
        (answer) => {
          response.writeHead(answer.statusCode ?? 502, answer.headers)
          answer.pipe(response)
        }
      )
      upstream.on("error", () => {
        if (!response.headersSent) response.writeHead(502)
        response.end()
      })
      response.on("close", () => upstream.destroy())
      request.pipe(upstream)
    })
    server.on("upgrade", (_request, socket: Net.Socket) => {
      socket.on("error", () => socket.destroy())
      socket.end("HTTP/1.1 403 Forbidden\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
    })
    server.on("connection", (socket) => {
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
    })
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () =>
      resolve({
        port: (server.address() as Net.AddressInfo).port,
        close: () =>
          new Promise((done) => {
            for (const socket of sockets) socket.destroy()
            server.close(() => done())
          })
      }))
  })
