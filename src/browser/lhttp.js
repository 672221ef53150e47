/**
 * lhttp.js: the LHTTP client for browsers and Node 22+ (effect-lhttp).
 *
 * A dependency-free ES module, served by every effect-lhttp server at `GET /lhttp.js`:
 *
 *   <script type="module">
 *     import { Lhttp } from "/lhttp.js"
 *     const lhttp = new Lhttp()                        // ws(s)://<this page's host>/
 *     lhttp.on_open = (ctx) => ctx.subscribe("room", "chat", null, "")
 *     lhttp.on_message = (ctx) => console.log(ctx.getHeader("from"), ctx.getBody())
 *   </script>
 *
 * It keeps the names of the original lhttp JavaScript SDK (`Lhttp`, `on_open`, `on_message`,
 * `on_close`, `on_error`, contexts with `getCommand`, `getHeader`, `addHeader`, `send`,
 * `publish`, `subscribe`) and fixes its bugs: `getHeader(name)` returns that header, values keep
 * their colons, bodies keep every CRLF CRLF, and staged headers are cleared by each send. It adds
 * `unsubscribe`, `request` (replies correlated by an `id` header), `close`, the connection
 * `state`, and reconnection with exponential backoff and jitter that re-sends every subscription.
 * Subscriptions ask for history positions (`since:now`): after a reconnect each history channel is
 * subscribed since its last position, and what was published meanwhile comes first
 * (`lhttp.position(channel)`, docs/history-and-presence.md).
 *
 * Where a WebSocket cannot get through, it falls back to Server-Sent Events (`GET /sse`) and then
 * to long-poll (`GET /poll`), sending with `POST /send` (docs/transports.md): option `transports`.
 *
 * It keeps the server's session (`session` frames: `lhttp.session`, the `on_session` hook) and
 * restores it after every new connection, before anything else is sent (options `session`,
 * `sessionStorage`, `sessionStorageKey`).
 */

/** The start of every frame. */
export const PROTOCOL = "LHTTP/1.0"

const CRLF = "\r\n"
const CR_OR_LF = /[\r\n]/
const BAD_NAME = /[:\r\n]/
const OPEN = 1
const CLOSING = 2
const CLOSED = 3
// headers that must not be repeated when a subscription is re-sent after a reconnect
const NOT_RESENT = ["publish", "unsubscribe", "id", "upstream", "upstream-reply"]
// positions (docs/history-and-presence.md): a subscription asks for them with `since`, `now` or a
// position; the server answers each channel with a `position` message
const SINCE = "since"
const SINCE_NOW = "now"
const POSITION = "position"
// the session frames (docs/requests-and-sessions.md)
const SESSION = "session"
const SESSION_KEY = "session-key"
const SESSION_CLOSED = "closed"
const SESSION_RESTORE = "restore"

/** An error frame from the server (`status` > 0), or a client-side failure (`status` 0). */
export class LhttpError extends Error {
  constructor(status, reason, message, id) {
    super(message || reason)
    this.name = "LhttpError"
    this.status = status
    this.reason = reason
    this.id = id
  }
}

const entriesOf = (headers) =>
  headers == null
    ? []
    : typeof headers[Symbol.iterator] === "function"
    ? Array.from(headers)
    : Object.entries(headers)

const channelsOf = (value) => String(value).split(" ").filter((channel) => channel !== "")

const joinChannels = (channels) => Array.isArray(channels) ? channels.join(" ") : String(channels)

/** One LHTTP message: a command, ordered headers (a `Map`) and a body. */
export class Message {
  constructor(command = "", headers, body = "") {
    this.command = String(command ?? "")
    this.headers = new Map()
    for (const [name, value] of entriesOf(headers)) {
      if (value != null) this.headers.set(String(name), String(value))
    }
    this.body = body == null ? "" : String(body)
  }
  getHeader(name) {
    return this.headers.get(name)
  }
  encode() {
    return encode(this)
  }
  toString() {
    return encode(this)
  }
  static encode(message) {
    return encode(message)
  }
  static decode(text) {
    return decode(text)
  }
}

/**
 * `LHTTP/1.0 <command>\r\n` + `name:value\r\n` per header, in order + `\r\n` + body. Throws an
 * `LhttpError` for what could not be read back: CR or LF in the command, a name or a value; an
 * empty name or one with `:`.
 */
export function encode(message) {
  const command = String(message.command ?? "")
  if (CR_OR_LF.test(command)) throw new LhttpError(400, "MalformedStartLine", "a command cannot hold CR or LF")
  let text = `${PROTOCOL} ${command}${CRLF}`
  const headers = message.headers instanceof Map ? message.headers : new Message("", message.headers).headers
  for (const [name, value] of headers) {
    if (value == null) continue
    const line = `${name}:${value}`
    if (name === "" || BAD_NAME.test(name) || CR_OR_LF.test(line)) {
      throw new LhttpError(400, "MalformedHeader", `the header ${JSON.stringify(name)} cannot be written`)
    }
    text += line + CRLF
  }
  return text + CRLF + (message.body == null ? "" : String(message.body))
}

/**
 * Reads a frame as docs/protocol.md §2 says: the command is everything after `LHTTP/1.0 ` up to
 * the first CRLF; each line up to the first empty one is a header split at its first `:`; the
 * body is everything after the empty line, verbatim. Throws an `LhttpError` (`NotLhttp`,
 * `UnsupportedVersion`, `MalformedStartLine`, `MalformedHeader`) otherwise.
 */
export function decode(text) {
  text = String(text)
  if (!text.startsWith(`${PROTOCOL} `)) {
    if (text.startsWith(PROTOCOL)) throw new LhttpError(400, "MalformedStartLine", "no space after LHTTP/1.0")
    if (text.startsWith("LHTTP/")) throw new LhttpError(505, "UnsupportedVersion", "only LHTTP/1.0 is supported")
    throw new LhttpError(400, "NotLhttp", "the frame does not start with LHTTP/")
  }
  const startEnd = text.indexOf(CRLF)
  const command = text.slice(PROTOCOL.length + 1, startEnd === -1 ? text.length : startEnd)
  if (CR_OR_LF.test(command)) throw new LhttpError(400, "MalformedStartLine", "a lone CR or LF in the start line")
  const message = new Message(command)
  let position = startEnd === -1 ? text.length : startEnd + 2
  while (position < text.length) {
    const end = text.indexOf(CRLF, position)
    if (end === position) {
      message.body = text.slice(position + 2)
      break
    }
    const line = text.slice(position, end === -1 ? text.length : end)
    const colon = line.indexOf(":")
    if (colon < 1 || CR_OR_LF.test(line)) throw new LhttpError(400, "MalformedHeader", "a header line is not name:value")
    message.headers.set(line.slice(0, colon), line.slice(colon + 1)) // a repeated name: first place, last value
    if (end === -1) break
    position = end + 2
  }
  return message
}

/**
 * An LHTTP frame's text from the data of a Server-Sent Event (its `data:` lines joined with `\n`,
 * as an `EventSource` gives it): the head (up to the first empty line) gets its CRLF line breaks
 * back; the body is kept as it is (a CRLF or CR in it arrived as LF: docs/transports.md).
 */
export function fromEvent(data) {
  const text = String(data)
  const blank = text.indexOf("\n\n")
  const head = (blank === -1 ? text : text.slice(0, blank)).replace(/\n/g, CRLF)
  return blank === -1 ? head : head + CRLF + CRLF + text.slice(blank + 2)
}

/** The error an error frame stands for. */
const errorOf = (message) =>
  new LhttpError(
    Number(message.headers.get("status")) || 0,
    message.headers.get("reason") ?? "Error",
    message.body,
    message.headers.get("id")
  )

/**
 * What a hook receives, and a way to send: `req` is the message received (empty for the shared
 * `lhttp.context` and for open, close and error); what `setCommand` and `addHeader` stage goes
 * into the next send only.
 */
export class Context {
  #command
  #headers = new Map()
  constructor(lhttp, message, event) {
    this.lhttp = lhttp
    this.req = message ?? new Message()
    this.event = event
  }
  /** The current connection: the WebSocket, or the SSE or long-poll connection. */
  get conn() {
    return this.lhttp.conn
  }
  getCommand() {
    return this.req.command
  }
  getHeader(name) {
    return this.req.headers.get(name)
  }
  getHeaders() {
    return Object.fromEntries(this.req.headers)
  }
  getBody() {
    return this.req.body
  }
  /** The `LhttpError` of an error frame, else `undefined`. */
  getError() {
    return this.req.command === "error" && this.req.headers.has("status") ? errorOf(this.req) : undefined
  }
  setCommand(command) {
    this.#command = String(command)
    return this
  }
  addHeader(name, value) {
    this.#headers.set(String(name), String(value))
    return this
  }
  /** Sends the staged command (default: the received one) and headers with `body`, then clears them. */
  send(body) {
    const message = new Message(this.#command ?? this.req.command, this.#headers, body)
    this.#command = undefined
    this.#headers = new Map()
    this.lhttp.send(message)
  }
  publish(channels, command, headers, body) {
    return this.#withChannels("publish", channels, command, headers, body)
  }
  subscribe(channels, command, headers, body) {
    return this.#withChannels("subscribe", channels, command, headers, body)
  }
  unsubscribe(channels, command, headers, body) {
    return this.#withChannels("unsubscribe", channels, command, headers, body)
  }
  request(command, headers, body, options) {
    return this.lhttp.request(command, headers, body, options)
  }
  #withChannels(header, channels, command, headers, body) {
    this.addHeader(header, joinChannels(channels))
    if (command != null) this.setCommand(command)
    for (const [name, value] of entriesOf(headers)) if (value != null) this.addHeader(name, value)
    this.send(body)
  }
}

const reconnectDefaults = { initialDelay: 500, maxDelay: 10_000, factor: 2, jitter: 0.5, maxAttempts: Infinity }

/** The transports the SDK knows, in its default order of trial. */
export const TRANSPORTS = Object.freeze(["websocket", "sse", "poll"])

const report = (error) =>
  typeof globalThis.reportError === "function" ? globalThis.reportError(error) : console.error(error)

const messageOf = (error) => error instanceof Error ? error.message : String(error)

/** Waits `ms`; false when `signal` aborted it first. */
const sleep = (ms, signal) =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve(false)
    const onAbort = () => {
      clearTimeout(timer)
      resolve(false)
    }
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort)
      resolve(true)
    }, ms)
    signal.addEventListener("abort", onAbort, { once: true })
  })

/**
 * Reads a `text/event-stream` as the HTML standard says (lines end with CRLF, LF or CR; `event`,
 * `data`, `id` fields; comments and other fields ignored) and hands each event to `dispatch` as
 * `{ type, data, lastEventId }`, `data` being its `data:` lines joined with `\n`.
 */
class EventStreamParser {
  #dispatch
  #rest = ""
  #skipLf = false // the last chunk ended with a CR: an LF that starts the next one belongs to it
  #type = ""
  #data = []
  #lastEventId = ""
  constructor(dispatch) {
    this.#dispatch = dispatch
  }
  push(text) {
    const buffer = this.#rest + text
    let start = 0
    if (this.#skipLf && buffer.charCodeAt(0) === 10) start = 1
    this.#skipLf = false
    let cr = buffer.indexOf("\r")
    let lf = buffer.indexOf("\n")
    for (;;) {
      if (cr !== -1 && cr < start) cr = buffer.indexOf("\r", start)
      if (lf !== -1 && lf < start) lf = buffer.indexOf("\n", start)
      const end = cr === -1 ? lf : lf === -1 ? cr : Math.min(cr, lf)
      if (end === -1) break
      let next = end + 1
      if (end === cr) {
        if (next === buffer.length) this.#skipLf = true // an LF may follow in the next chunk
        else if (buffer.charCodeAt(next) === 10) next++
      }
      this.#line(buffer.slice(start, end))
      start = next
    }
    this.#rest = buffer.slice(start)
  }
  #line(line) {
    if (line === "") return this.#flush()
    if (line.charCodeAt(0) === 58) return // ":" a comment
    const colon = line.indexOf(":")
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? "" : line.slice(colon + 1)
    if (value.charCodeAt(0) === 32) value = value.slice(1)
    if (field === "event") this.#type = value
    else if (field === "data") this.#data.push(value)
    else if (field === "id" && !value.includes("\0")) this.#lastEventId = value
  }
  #flush() {
    const type = this.#type || "message"
    const data = this.#data
    this.#type = ""
    this.#data = []
    if (data.length > 0) this.#dispatch({ type, data: data.join("\n"), lastEventId: this.#lastEventId })
  }
}

/**
 * A connection over Server-Sent Events (`GET /sse`) or long-poll (`GET /poll`), with `POST /send`
 * for what the client sends, shaped as the part of a WebSocket the client uses (`readyState`,
 * `send`, `close`, `onopen`, `onmessage`, `onerror`, `onclose`). Opened once the server names the
 * connection (`event: connected`, or the first poll's answer). A stream or poll that breaks is
 * resumed on the same connection (`Last-Event-ID`, the cursor), told by `oninterrupt` and
 * `onresume`; it closes when the server ends the connection (`event: close`, `410`) or no longer
 * knows it (`reset`, `404`: `immediate` then, a new connection is due at once). `onclose` gives back
 * the frames not yet taken by the server (`unsent`).
 */
class HttpLink {
  readyState = 0
  onopen = null
  onmessage = null
  onerror = null
  onclose = null
  oninterrupt = null
  onresume = null
  onrefused = null
  ongap = null
  /** The server's id of the connection, once open. */
  connection = undefined
  #config
  #reading = new AbortController() // the stream or polls, and their waits
  #sendWait = new AbortController() // the waits of the sender
  #outbox = [] // { text, id }, oldest first, not yet taken by the server
  #sender // the promise of the running sender, if any
  #ended = false // the server ended the connection, or it failed: nothing more to do
  #closing = false // close() was called
  #gone = false // a POST was answered 404 or 410: the reader will see the end
  #interrupted = false
  #attempt = 0
  #openTimer
  #lastEventId = ""
  #reset = false
  #cursor = 0
  #failure // why the open failed, when the link itself gave up (openTimeout)

  constructor(transport, config) {
    this.transport = transport
    this.url = config.url
    this.#config = config
    if (Number.isFinite(config.openTimeout)) {
      this.#openTimer = setTimeout(() => {
        if (this.readyState !== 0) return
        this.#failure = new Error(`no ${transport} connection within ${config.openTimeout} ms`)
        this.#reading.abort()
      }, config.openTimeout)
    }
    void (transport === "sse" ? this.#runSse() : this.#runPoll())
  }

  send(text, id) {
    if (this.readyState !== OPEN) throw new Error("InvalidStateError: the connection is not open")
    this.#outbox.push({ text, id })
    if (this.#sender === undefined) this.#sender = this.#pump()
  }

  /** Sends what was handed over (no retries), then `DELETE /send`; `onclose` after. */
  close(code = 1000, reason = "") {
    if (this.readyState >= CLOSING) return
    const opened = this.readyState === OPEN
    this.readyState = CLOSING
    this.#closing = true
    clearTimeout(this.#openTimer)
    this.#reading.abort()
    this.#sendWait.abort()
    void (async () => {
      if (this.#sender !== undefined) await this.#sender
      if (opened && !this.#gone) {
        try {
          const response = await this.#fetch(this.#sendUrl(this.connection), { method: "DELETE" })
          await response.body?.cancel()
        } catch {
          // the server is out of reach: the connection expires there
        }
      }
      this.#finish({ code, reason, wasClean: true })
    })()
  }

  get #stopped() {
    return this.#ended || this.#closing
  }

  #fetch(url, init) {
    return this.#config.fetch(url, init)
  }

  #sendUrl(connection) {
    const url = new URL(this.#config.sendUrl)
    url.searchParams.set("connection", connection)
    return url.href
  }

  #emit(name, event) {
    const handler = this[name]
    if (typeof handler !== "function") return
    try {
      handler.call(this, event)
    } catch (error) {
      report(error)
    }
  }

  #opened(connection) {
    clearTimeout(this.#openTimer)
    this.connection = connection
    this.readyState = OPEN
    this.#attempt = 0
    this.#emit("onopen", { type: "open" })
  }

  #interrupt() {
    if (this.#interrupted) return
    this.#interrupted = true
    this.#emit("oninterrupt", { type: "interrupt" })
  }

  #resume() {
    this.#attempt = 0
    if (!this.#interrupted) return
    this.#interrupted = false
    this.#emit("onresume", { type: "resume" })
  }

  /** How long to wait before resuming, or undefined when it should not be tried again. */
  #resumeDelay() {
    return this.#config.resumeDelay(this.#attempt++)
  }

  /** The end: stops reading, lets the POST in flight settle, then `onclose`. */
  async #end(event) {
    if (this.#stopped) return
    this.#ended = true
    if (this.readyState === OPEN) this.readyState = CLOSING
    clearTimeout(this.#openTimer)
    this.#reading.abort()
    this.#sendWait.abort()
    if (this.#sender !== undefined) await this.#sender
    this.#finish(event)
  }

  #finish(event) {
    this.readyState = CLOSED
    this.#emit("onclose", { type: "close", wasClean: false, ...event, unsent: this.#outbox.splice(0) })
  }

  /** A connection the server made for us that we do not want (after a `reset`): closed at once. */
  #discard(connection) {
    Promise.resolve()
      .then(() => this.#fetch(this.#sendUrl(connection), { method: "DELETE" }))
      .then((response) => response.body?.cancel())
      .catch(() => undefined)
  }

  #failed(error) {
    const failure = this.#failure ?? error
    this.#emit("onerror", failure)
    if (this.readyState === 0) this.#end({ code: 1006, reason: messageOf(failure) })
    return failure
  }

  // ---- sending: POST /send, one at a time, in order ----

  async #pump() {
    let attempt = 0
    try {
      while (this.#outbox.length > 0 && !this.#ended && !this.#gone) {
        const item = this.#outbox[0]
        let response
        try {
          response = await this.#fetch(this.#sendUrl(this.connection), {
            method: "POST",
            headers: { "content-type": "text/plain;charset=UTF-8" },
            body: item.text
          })
        } catch {
          // not known to be taken: sent again (a failure to connect is the usual cause)
          if (this.#closing || this.#ended) return
          if (!(await sleep(this.#config.delay(attempt++), this.#sendWait.signal))) return
          continue
        }
        const status = response.status
        const body = await response.text().catch(() => "")
        if (status >= 200 && status < 300) {
          this.#outbox.shift()
          attempt = 0
        } else if (status === 404 || status === 410) {
          this.#gone = true // not taken: given back with onclose, once the reader sees the end
        } else if (status === 429 || status >= 500) {
          if (this.#closing || this.#ended) return
          const after = Number(response.headers.get("retry-after"))
          const wait = status === 429 ? (after > 0 ? Math.min(after * 1000, 5_000) : 1_000) : this.#config.delay(attempt++)
          if (!(await sleep(wait, this.#sendWait.signal))) return
        } else {
          this.#outbox.shift()
          this.#emit("onrefused", { text: item.text, id: item.id, status, body })
        }
      }
    } finally {
      this.#sender = undefined
    }
  }

  // ---- SSE: GET /sse, resumed with Last-Event-ID ----

  async #runSse() {
    await null // no event before the constructor's caller has set the handlers
    for (;;) {
      const headers = { accept: "text/event-stream" }
      if (this.connection !== undefined) headers["last-event-id"] = this.#lastEventId
      const outcome = await this.#stream(headers)
      if (this.#stopped) return
      if (outcome.end !== undefined) return this.#end(outcome.end)
      this.#failed(outcome.error)
      if (this.readyState !== OPEN) return
      const delay = this.#resumeDelay()
      if (delay === undefined) return this.#end({ code: 1006, reason: messageOf(outcome.error) })
      this.#interrupt()
      if (!(await sleep(delay, this.#reading.signal))) return
    }
  }

  async #stream(headers) {
    let response
    try {
      response = await this.#fetch(this.url, { headers, signal: this.#reading.signal })
    } catch (error) {
      return { error }
    }
    if (response.status === 204) {
      response.body?.cancel().catch(() => undefined)
      return { end: { code: 1006, reason: "the connection ended" } }
    }
    if (
      response.status !== 200 || response.body == null ||
      !/^text\/event-stream/i.test(response.headers.get("content-type") ?? "")
    ) {
      response.body?.cancel().catch(() => undefined)
      return { error: new LhttpError(response.status, "HttpError", `GET ${this.url} answered ${response.status}`) }
    }
    const reader = response.body.getReader()
    const decoder = new TextDecoder()
    let outcome
    const parser = new EventStreamParser((event) => {
      if (outcome === undefined) outcome = this.#event(event)
    })
    try {
      while (outcome === undefined) {
        const { done, value } = await reader.read()
        if (done) break
        parser.push(decoder.decode(value, { stream: true }))
      }
    } catch (error) {
      outcome ??= { error }
    }
    if (outcome !== undefined) reader.cancel().catch(() => undefined)
    return outcome ?? { error: new Error("the event stream ended") }
  }

  /** One event of the stream; an outcome ends the stream. */
  #event({ type, data, lastEventId }) {
    if (this.#stopped) return { stopped: true }
    // a frame's data starts with LHTTP/1.0, a control event's never does: a frame whose command is
    // close (or connected, reset, gap) is a frame
    const control = !data.startsWith(PROTOCOL)
    if (control && type === "connected") {
      if (!this.#reset && this.connection === undefined) {
        this.#lastEventId = `${data}:0`
        this.#opened(data)
        return undefined
      }
      if (!this.#reset && data === this.connection) {
        this.#resume()
        return undefined
      }
      // the connection is gone and the server opened another: a new one is made with our subscriptions
      this.#discard(data)
      return { end: { code: 1006, reason: "the connection is gone", immediate: true } }
    }
    if (control && type === "reset") {
      this.#reset = true
      return undefined
    }
    if (control && type === "close") {
      let ended
      try {
        ended = JSON.parse(data)
      } catch {
        ended = undefined
      }
      return { end: { code: Number(ended?.code) || 1006, reason: String(ended?.reason ?? ""), wasClean: true } }
    }
    if (control && type === "gap") {
      try {
        const { from, to } = JSON.parse(data)
        this.#emit("ongap", { type: "gap", from, to })
      } catch {
        // not a gap we understand
      }
      return undefined
    }
    if (this.readyState !== OPEN || !data.startsWith(PROTOCOL)) return undefined
    if (lastEventId !== "") this.#lastEventId = lastEventId
    this.#emit("onmessage", { type: "message", data: fromEvent(data) })
    return undefined
  }

  // ---- long-poll: GET /poll with the cursor ----

  async #runPoll() {
    await null
    const signal = this.#reading.signal
    let answer
    try {
      const response = await this.#fetch(this.url, { signal })
      if (response.status !== 200) {
        response.body?.cancel().catch(() => undefined)
        throw new LhttpError(response.status, "HttpError", `GET ${this.url} answered ${response.status}`)
      }
      answer = await response.json()
      if (typeof answer?.connection !== "string") throw new Error(`GET ${this.url} did not open a connection`)
    } catch (error) {
      if (this.#stopped) return
      return void this.#failed(error)
    }
    if (this.#stopped) return this.#discard(answer.connection)
    this.#cursor = Number(answer.cursor) || 0
    this.#opened(answer.connection)
    this.#deliver(answer.frames)
    const url = new URL(this.url)
    url.searchParams.set("connection", this.connection)
    for (;;) {
      if (this.#stopped) return
      url.searchParams.set("cursor", String(this.#cursor))
      let error
      try {
        const response = await this.#fetch(url.href, { signal })
        const status = response.status
        if (status === 200) {
          const batch = await response.json()
          if (this.#stopped) return
          this.#resume()
          this.#cursor = Number(batch.cursor)
          this.#deliver(batch.frames)
          continue
        }
        const text = await response.text().catch(() => "")
        if (this.#stopped) return
        if (status === 410) {
          let ended
          try {
            ended = JSON.parse(text)
          } catch {
            ended = undefined
          }
          return this.#end({ code: Number(ended?.code) || 1006, reason: String(ended?.reason ?? ""), wasClean: true })
        }
        // 404: no such connection (the server forgot it); 400: it does not know our cursor
        if (status === 404 || status === 400) {
          return this.#end({ code: 1006, reason: "the connection is gone", immediate: true })
        }
        error = new LhttpError(status, "HttpError", `GET ${url.pathname} answered ${status}`)
      } catch (failure) {
        error = failure
      }
      if (this.#stopped) return
      this.#failed(error)
      const delay = this.#resumeDelay()
      if (delay === undefined) return this.#end({ code: 1006, reason: messageOf(error) })
      this.#interrupt()
      if (!(await sleep(delay, signal))) return
    }
  }

  #deliver(frames) {
    if (!Array.isArray(frames)) return
    for (const frame of frames) {
      if (this.#stopped) return
      this.#emit("onmessage", { type: "message", data: String(frame) })
    }
  }
}

/** Whether a message subscribes without `since`: the client asks for positions for it. */
const subscribesPlain = (message) => {
  const { headers } = message
  const subscribe = headers.get("subscribe")
  return subscribe != null && !headers.has(SINCE) && channelsOf(subscribe).length > 0
}

/** A copy of a message that subscribes, with `since:now` right after its `subscribe`. */
const sinceNow = (message) => {
  const { headers } = message
  const asking = new Map()
  for (const [name, value] of headers) {
    asking.set(name, value)
    if (name === "subscribe") asking.set(SINCE, SINCE_NOW)
  }
  return new Message(message.command, asking, message.body)
}

const transportsOf = (value) => {
  const list = value === undefined ? TRANSPORTS : typeof value === "string" ? value.split(/[\s,]+/).filter(Boolean) : Array.from(value)
  const unknown = list.find((transport) => !TRANSPORTS.includes(transport))
  if (list.length === 0 || unknown !== undefined) {
    throw new TypeError(`transports: a list of ${TRANSPORTS.join(", ")}${unknown === undefined ? "" : ` (not ${unknown})`}`)
  }
  return Array.from(new Set(list))
}

/**
 * An LHTTP connection. Override the hooks (`on_open`, `on_message`, `on_close`, `on_error`,
 * `on_state`) by assigning them or in a subclass.
 */
export class Lhttp {
  #url
  #options
  #reconnect
  #transports
  #index = 0 // the transport in use, or being tried
  #chosen = false // a transport opened: the client stays on it
  #conn
  #state = "connecting"
  #opens = 0
  #wasOpen = false
  #attempt = 0
  #timer
  #closing = false
  #closeWaiters = []
  #subscriptions = [] // { channels: Set, command, headers: Map, body, ownSince }, oldest first
  #positions = new Map() // channel -> { epoch, offset }: the last position seen of a history channel
  #queue = [] // { text, id }
  #pending = new Map() // id -> { resolve, reject, timer, socket }
  #prefix = Math.random().toString(36).slice(2, 8)
  #nextId = 0
  #session // { key, data } as the server last told it
  #sessionKey // the key to restore on the next connection: the session's, or a saved one
  #restoring // the id of the restore request in flight on the current connection

  /** `fromEvent(data)`: a frame's text from the data of an SSE event. */
  static fromEvent = fromEvent

  constructor(url, options) {
    options ??= {}
    if (url == null) {
      const location = globalThis.location
      if (location === undefined) throw new TypeError("new Lhttp(url): a URL is required outside a browser")
      url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/`
    }
    this.#url = String(url)
    this.#options = options
    this.#transports = transportsOf(options.transports)
    this.#reconnect = options.reconnect === false
      ? undefined
      : { ...reconnectDefaults, ...(typeof options.reconnect === "object" ? options.reconnect : {}) }
    /** A context shared by code outside the hooks: `lhttp.context.publish(...)`. */
    this.context = new Context(this, null)
    const saved = options.session ?? this.#loadKey()
    this.#sessionKey = saved == null || saved === "" ? undefined : String(saved)
    this.#open(true)
  }

  on_open(_context) {}
  on_message(_context) {}
  on_close(_context) {}
  on_error(_context) {}
  on_state(_state) {}
  on_session(_context) {}

  get url() {
    return this.#url
  }
  /** `"connecting"`, `"open"`, `"reconnecting"`, `"closing"` or `"closed"` (for good). */
  get state() {
    return this.#state
  }
  /** The transport in use (or being tried): `"websocket"`, `"sse"` or `"poll"`. */
  get transport() {
    return this.#transports[this.#index]
  }
  /** The transports to try, in order. */
  get transports() {
    return Array.from(this.#transports)
  }
  /** The current connection, if any: the WebSocket, or the SSE or long-poll connection. */
  get conn() {
    return this.#conn
  }
  /** The channels this client is subscribed to, re-sent after each reconnect. */
  get channels() {
    return this.#subscriptions.flatMap((subscription) => Array.from(subscription.channels))
  }
  /**
   * The last position of a subscribed history channel, `{ epoch, offset }`, or undefined: known
   * from the `position` message that answers its subscription (every subscription asks, with
   * `since:now`), then advanced by the positions of its messages. After a reconnect the channel is
   * subscribed `since` it, and what was published meanwhile arrives before the live messages, then
   * a `position` message (`recovered: "no"` and a `reason` when the server could not give
   * everything). Undefined for a channel without history (`reason: "NoHistory"`): the headers of
   * its messages are the publisher's, never taken for a position.
   */
  position(channel) {
    return this.#positions.get(channel)
  }
  /** The session as the server last told it (`{ key, data }`), or undefined. */
  get session() {
    return this.#session
  }
  /** The key restored after each new connection: the session's, or one given or saved, not yet restored. */
  get sessionKey() {
    return this.#sessionKey
  }

  /**
   * Forgets the session here (and in `sessionStorage`): no restore on the next connections;
   * `on_session` is called with `change` "closed" and `reason` "Cleared" if there was one. The
   * server is not told: the current connection stays attached to the session until it closes.
   */
  clearSession() {
    if (this.#sessionKey !== undefined) this.#dropSession("Cleared", null)
  }

  /**
   * Sends a message. While the connection is not open it is queued (sent after the
   * re-subscriptions of the next open), except a subscription, which is re-sent anyway. One that
   * subscribes without `since` asks for positions: `since:now` goes right after its `subscribe`.
   */
  send(message) {
    if (!(message instanceof Message)) message = new Message(message.command, message.headers, message.body)
    if (this.#closing || this.#state === "closed") throw new LhttpError(0, "Closed", "this client is closed")
    const ownSince = !subscribesPlain(message)
    if (!ownSince) message = sinceNow(message)
    const text = encode(message)
    const subscriptionOnly = this.#track(message, ownSince)
    const id = message.headers.get("id")
    const conn = this.#conn
    if (this.#state === "open" && conn !== undefined && conn.readyState === OPEN) {
      this.#transmit(conn, text, id)
    } else if (!subscriptionOnly) {
      if (this.#queue.length >= (this.#options.maxQueue ?? 1000)) {
        throw new LhttpError(0, "QueueFull", "too many messages wait for the connection")
      }
      this.#queue.push({ text, id })
    }
  }

  /**
   * Sends a request (an `id` header is added unless given) and resolves with the context of the
   * reply that carries the same `id`; rejects with an `LhttpError` on an error frame, on timeout
   * (`reason` "Timeout", default 10 s) or when the connection closes before the reply.
   */
  request(command, headers, body, options) {
    const message = new Message(command, headers, body)
    let id = message.headers.get("id")
    if (!id) message.headers.set("id", id = `${this.#prefix}-${++this.#nextId}`)
    const timeout = options?.timeout ?? this.#options.requestTimeout ?? 10_000
    return new Promise((resolve, reject) => {
      if (this.#pending.has(id)) return reject(new LhttpError(0, "DuplicateId", `a request with id ${id} is pending`, id))
      const timer = Number.isFinite(timeout)
        ? setTimeout(() => {
          this.#pending.delete(id)
          this.#queue = this.#queue.filter((queued) => queued.id !== id) // too late to send it
          reject(new LhttpError(0, "Timeout", `no reply to request ${id} within ${timeout} ms`, id))
        }, timeout)
        : undefined
      this.#pending.set(id, { resolve, reject, timer, socket: undefined })
      try {
        this.send(message)
      } catch (error) {
        this.#settle(id)
        reject(error)
      }
    })
  }

  /** Closes for good (no reconnect); resolves once the connection is closed. */
  close(code = 1000, reason = "") {
    this.#closing = true
    clearTimeout(this.#timer)
    this.#queue.length = 0
    for (const id of Array.from(this.#pending.keys())) {
      this.#settle(id)?.reject(new LhttpError(0, "Closed", "the client was closed", id))
    }
    const done = new Promise((resolve) => this.#closeWaiters.push(resolve))
    const conn = this.#conn
    if (conn !== undefined && conn.readyState <= CLOSING) {
      this.#setState("closing")
      if (conn.readyState <= OPEN) conn.close(code, reason)
    } else {
      this.#conn = undefined
      this.#finish()
    }
    return done
  }

  // initial: called by the constructor, which throws what no transport could even start with
  #open(initial = false) {
    const transport = this.#transports[this.#index]
    let conn
    try {
      conn = transport === "websocket" ? this.#webSocket() : new HttpLink(transport, this.#linkOptions(transport))
    } catch (error) {
      if (this.#fallBack()) return this.#open(initial)
      if (initial) throw error
      return this.#retry()
    }
    this.#conn = conn
    this.#wasOpen = false
    conn.onopen = () => conn === this.#conn && this.#opened(conn)
    conn.onmessage = (event) => conn === this.#conn && this.#received(event.data)
    conn.onerror = (event) => conn === this.#conn && this.#hook("on_error", new Context(this, null, event))
    conn.onclose = (event) => conn === this.#conn && this.#closed(conn, event)
    if (conn instanceof HttpLink) {
      conn.oninterrupt = () => conn === this.#conn && this.#setState("reconnecting")
      conn.onresume = () => conn === this.#conn && this.#resumed(conn)
      conn.ongap = (event) => conn === this.#conn && this.#hook("on_error", new Context(this, null, event))
      conn.onrefused = (refusal) => this.#refused(refusal)
    }
  }

  #webSocket() {
    const WebSocketClass = this.#options.WebSocket ?? globalThis.WebSocket
    if (typeof WebSocketClass !== "function") throw new TypeError("no WebSocket: pass options.WebSocket")
    const ws = this.#options.protocols === undefined
      ? new WebSocketClass(this.#url)
      : new WebSocketClass(this.#url, this.#options.protocols)
    ws.binaryType = "arraybuffer"
    return ws
  }

  /** The http(s) URL of `path` on the WebSocket URL's host (`ssePath`, `pollPath`, `sendPath`). */
  #httpUrl(path) {
    const base = new URL(this.#url, globalThis.location?.href)
    const protocol = base.protocol === "wss:" ? "https:" : base.protocol === "ws:" ? "http:" : base.protocol
    return new URL(path, `${protocol}//${base.host}/`).href
  }

  #linkOptions(transport) {
    const options = this.#options
    const fetch = options.fetch ?? globalThis.fetch
    if (typeof fetch !== "function") throw new TypeError("no fetch: pass options.fetch")
    return {
      url: this.#httpUrl(transport === "sse" ? options.ssePath ?? "/sse" : options.pollPath ?? "/poll"),
      sendUrl: this.#httpUrl(options.sendPath ?? "/send"),
      fetch: (url, init) => fetch(url, init),
      openTimeout: options.openTimeout ?? 10_000,
      delay: (attempt) => this.#delay(attempt),
      resumeDelay: (attempt) =>
        this.#reconnect === undefined || attempt >= this.#reconnect.maxAttempts ? undefined : this.#delay(attempt)
    }
  }

  /** Moves to the next transport while none has opened yet; false when there is none to try. */
  #fallBack() {
    if (this.#chosen) return false
    if (this.#index < this.#transports.length - 1) {
      this.#index++
      return true
    }
    this.#index = 0 // the next round starts again with the first
    return false
  }

  #opened(conn) {
    const reconnected = this.#opens++ > 0
    this.#wasOpen = true
    this.#chosen = true
    this.#attempt = 0
    // the session first: a processor that reads it (a chat join without a name) must find it
    if (this.#sessionKey !== undefined) this.#restore(conn, reconnected)
    else this.#ready(conn, reconnected)
  }

  // the connection is usable: open, the subscriptions re-sent, the queue sent, on_open
  #ready(conn, reconnected) {
    const context = new Context(this, null)
    context.reconnected = reconnected
    this.#setState("open")
    for (const subscription of this.#subscriptions) {
      const channels = Array.from(subscription.channels)
      const since = (channel) => {
        const position = this.#positions.get(channel)
        return `${position.epoch}:${position.offset}`
      }
      // a history channel with a known position is subscribed since it: in the subscription's own
      // message when it is its only channel, else in a `subscribe` message of its own; the others
      // as the app asked (its own `since`), or from now
      const resend = (headers, subscribe, from) => {
        const asking = new Map()
        for (const [name, value] of headers) {
          if (name === SINCE) continue
          asking.set(name, name === "subscribe" ? subscribe : value)
          if (name === "subscribe") asking.set(SINCE, from)
        }
        return asking
      }
      if (channels.length === 1 && this.#positions.has(channels[0])) {
        const headers = resend(subscription.headers, channels[0], since(channels[0]))
        conn.send(encode(new Message(subscription.command, headers, subscription.body)))
        continue
      }
      const rest = channels.filter((channel) => !this.#positions.has(channel))
      for (const channel of channels) {
        if (this.#positions.has(channel)) {
          conn.send(encode(new Message("subscribe", new Map([["subscribe", channel], [SINCE, since(channel)]]), "")))
        }
      }
      if (rest.length > 0) {
        const headers = resend(subscription.headers, rest.join(" "), subscription.headers.get(SINCE) ?? SINCE_NOW)
        conn.send(encode(new Message(subscription.command, headers, subscription.body)))
      }
    }
    for (const { text, id } of this.#queue.splice(0)) this.#transmit(conn, text, id)
    this.#hook("on_open", context)
  }

  // Sends `session` with `restore:<key>` and waits for its answer (the session frame, or an error)
  // before the connection is ready: the server runs requests concurrently with other messages.
  #restore(conn, reconnected) {
    const key = this.#sessionKey
    const id = `${this.#prefix}-${++this.#nextId}`
    const timeout = this.#options.requestTimeout ?? 10_000
    const answer = new Promise((resolve, reject) => {
      const timer = Number.isFinite(timeout)
        ? setTimeout(() => {
          this.#pending.delete(id)
          reject(new LhttpError(0, "Timeout", `no answer to the session restore ${id} within ${timeout} ms`, id))
        }, timeout)
        : undefined
      this.#pending.set(id, { resolve, reject, timer, socket: conn })
    })
    this.#restoring = id
    try {
      this.#transmit(conn, encode(new Message(SESSION, [[SESSION_RESTORE, key], ["id", id]])), id)
    } catch (error) {
      this.#settle(id)?.reject(error)
    }
    answer.then(
      () => {
        if (conn !== this.#conn || this.#closing) return
        this.#restoring = undefined
        this.#ready(conn, reconnected)
      },
      (error) => {
        if (conn !== this.#conn || this.#closing) return
        this.#restoring = undefined
        if (error?.reason === "SessionNotFound") {
          if (this.#sessionKey === key) this.#dropSession("SessionNotFound", null, error)
        } else this.#hook("on_error", new Context(this, null, error)) // kept: tried again on the next connection
        this.#ready(conn, reconnected)
      }
    )
  }

  // a stream or poll that broke goes on with the same connection: what waited goes out
  #resumed(conn) {
    if (this.#restoring !== undefined) return // the restore's answer makes it ready
    this.#setState("open")
    for (const { text, id } of this.#queue.splice(0)) this.#transmit(conn, text, id)
  }

  #received(data) {
    const text = typeof data === "string" ? data : new TextDecoder().decode(data)
    let message
    try {
      message = decode(text)
    } catch {
      return // protocol.md §8: a client may ignore what it does not understand
    }
    const id = message.headers.get("id")
    this.#trackPosition(message)
    if (this.#unasked(message)) return
    if (message.command === SESSION) this.#sessionFrame(message, id)
    const pending = id === undefined ? undefined : this.#settle(id)
    if (pending === undefined) return this.#hook("on_message", new Context(this, message))
    if (message.command === "error" && message.headers.has("status")) pending.reject(errorOf(message))
    else pending.resolve(new Context(this, message))
  }

  // POST /send refused a frame (400, 413, ...): its request fails, or on_error tells it
  #refused({ id, status, body }) {
    const text = String(body).trim()
    const named = /^([A-Za-z]+): ([^]*)$/.exec(text)
    const reason = named?.[1] ?? (status === 413 ? "TooLarge" : "Refused")
    const error = new LhttpError(status, reason, named?.[2] ?? text, id)
    const pending = id === undefined ? undefined : this.#settle(id)
    if (pending !== undefined) pending.reject(error)
    else this.#hook("on_error", new Context(this, null, error))
  }

  #closed(conn, event) {
    this.#conn = undefined
    this.#restoring = undefined
    // what an SSE or long-poll connection had not handed to the server goes out on the next one
    const unsent = Array.isArray(event.unsent) ? event.unsent : []
    for (const { id } of unsent) {
      const pending = id === undefined ? undefined : this.#pending.get(id)
      if (pending?.socket === conn) pending.socket = undefined
    }
    if (!this.#closing) this.#queue.unshift(...unsent.map(({ text, id }) => ({ text, id })))
    for (const [id, pending] of Array.from(this.#pending)) {
      if (pending.socket !== conn) continue
      this.#settle(id)
      pending.reject(new LhttpError(0, "Closed", `the connection closed before the reply to ${id}`, id))
    }
    const opened = this.#wasOpen
    // a transport that could not connect: the next one, at once
    if (!opened && !this.#closing && this.#fallBack()) return this.#open()
    const retry = !this.#closing && this.#reconnect !== undefined && this.#attempt < this.#reconnect.maxAttempts
    const context = new Context(this, null, event)
    context.code = event.code
    context.reason = event.reason
    context.willReconnect = retry
    if (!retry) this.#finish()
    else if (opened && event.immediate === true) {
      // the server no longer knows the connection: a new one now, with the subscriptions
      this.#setState("reconnecting")
      this.#open()
    } else this.#retry()
    // a failed attempt to reconnect is no connection closing: only on_error and on_state tell it
    if (opened || !retry) this.#hook("on_close", context)
  }

  #delay(attempt) {
    const { initialDelay, maxDelay, factor, jitter } = this.#reconnect ?? reconnectDefaults
    return Math.min(maxDelay, initialDelay * factor ** attempt) * (1 - jitter * Math.random())
  }

  #retry() {
    if (this.#reconnect === undefined || this.#attempt >= this.#reconnect.maxAttempts) return this.#finish()
    const delay = this.#delay(this.#attempt)
    this.#attempt++
    this.#setState("reconnecting")
    this.#timer = setTimeout(() => this.#open(), delay)
  }

  #finish() {
    this.#queue.length = 0
    this.#setState("closed")
    for (const resolve of this.#closeWaiters.splice(0)) resolve()
  }

  #transmit(conn, text, id) {
    const pending = id === undefined ? undefined : this.#pending.get(id)
    if (pending !== undefined) pending.socket = conn
    if (conn instanceof HttpLink) conn.send(text, id)
    else conn.send(text)
  }

  #settle(id) {
    const pending = this.#pending.get(id)
    if (pending === undefined) return undefined
    this.#pending.delete(id)
    clearTimeout(pending.timer)
    return pending
  }

  #subscribed(channel) {
    return this.#subscriptions.some((subscription) => subscription.channels.has(channel))
  }

  // The answer to a `since:now` this client added by itself, for a channel without history (a
  // `position` message with no epoch nor `recovered`): not for the app, which did not ask, and
  // gets what it got before positions were asked for. An answer to its own `since` is its.
  #unasked(message) {
    const { headers } = message
    if (message.command !== POSITION || headers.has("publish") || headers.has("id")) return false
    if (headers.has("epoch") || headers.has("recovered")) return false
    const channel = headers.get("channel")
    return !this.#subscriptions.some((subscription) => subscription.ownSince && subscription.channels.has(channel))
  }

  // Keeps the position of a subscribed history channel. It becomes known from the `position`
  // message answering a subscription with positions (the server's: no `publish`, no `id`), which a
  // channel without history answers with no epoch: it is forgotten then. It advances with the
  // positions of the channel's messages, only while known, and only from a message that no
  // subscription without positions could have brought (its text is the publisher's, forged
  // positions included).
  #trackPosition(message) {
    const { headers } = message
    const channel = headers.get("channel")
    if (channel === undefined || !this.#subscribed(channel)) return
    const epoch = headers.get("epoch")
    const offset = Number(headers.get("offset"))
    const carried = epoch === undefined || !Number.isSafeInteger(offset) ? undefined : { epoch, offset }
    const published = headers.has("publish")
    if (message.command === POSITION && !published && !headers.has("id")) {
      if (carried === undefined) this.#positions.delete(channel)
      else this.#positions.set(channel, carried)
      return
    }
    const known = this.#positions.get(channel)
    if (known === undefined || carried === undefined) return
    if (!published && headers.has("id")) return // an answer to this client, no delivery
    // a message published by a client names the channel it is on (server code publishes without `publish`)
    const to = published ? channelsOf(headers.get("publish")) : []
    if (published && !to.includes(channel)) return
    if (to.some((other) => other !== channel && this.#subscribed(other) && !this.#positions.has(other))) return
    if (known.epoch !== carried.epoch || carried.offset > known.offset) this.#positions.set(channel, carried)
  }

  // Remembers what subscribed, to re-send it after a reconnect, in the server's order:
  // subscribe, then unsubscribe (`ownSince`: the message had its own `since`). True when the
  // message does nothing but subscribe.
  #track(message, ownSince) {
    const { headers } = message
    const subscribe = headers.has("subscribe") ? channelsOf(headers.get("subscribe")) : []
    const unsubscribe = headers.has("unsubscribe") ? channelsOf(headers.get("unsubscribe")) : []
    if (subscribe.length > 0) {
      for (const subscription of this.#subscriptions) for (const channel of subscribe) subscription.channels.delete(channel)
      const kept = new Map(headers)
      for (const name of NOT_RESENT) kept.delete(name)
      if (!ownSince) kept.delete(SINCE) // asked by this client: again on the next connection, now or since a position
      const published = headers.has("publish")
      if (published) kept.delete("multipart")
      this.#subscriptions.push({
        channels: new Set(subscribe),
        command: message.command,
        headers: kept,
        body: published ? "" : message.body,
        ownSince
      })
    }
    for (const subscription of this.#subscriptions) for (const channel of unsubscribe) subscription.channels.delete(channel)
    for (const channel of unsubscribe) this.#positions.delete(channel)
    this.#subscriptions = this.#subscriptions.filter((subscription) => subscription.channels.size > 0)
    return subscribe.length > 0 && !NOT_RESENT.some((name) => headers.has(name))
  }

  // a session frame: created, updated or restored (`session-key`), or closed (`closed`)
  #sessionFrame(message, id) {
    const key = message.headers.get(SESSION_KEY)
    if (key !== undefined && key !== "") {
      let data
      try {
        data = message.body === "" ? null : JSON.parse(message.body)
      } catch {
        data = message.body
      }
      const change = id !== undefined && id === this.#restoring
        ? "restored"
        : this.#session?.key === key
        ? "updated"
        : "created"
      this.#session = Object.freeze({ key, data })
      this.#sessionKey = key
      this.#saveKey(key)
      this.#sessionHook(change, message)
      return
    }
    const closed = message.headers.get(SESSION_CLOSED)
    if (closed !== undefined && closed === this.#sessionKey) this.#dropSession("Closed", message)
  }

  #dropSession(reason, message, error) {
    const key = this.#sessionKey
    this.#session = undefined
    this.#sessionKey = undefined
    this.#saveKey(undefined)
    this.#sessionHook("closed", message, { key, reason, error })
  }

  #sessionHook(change, message, extra) {
    const context = new Context(this, message)
    context.change = change
    context.session = this.#session
    context.key = extra?.key ?? this.#session?.key
    if (extra !== undefined) {
      context.reason = extra.reason
      if (extra.error !== undefined) context.error = extra.error
    }
    this.#hook("on_session", context)
  }

  #storage() {
    const storage = this.#options.sessionStorage
    return storage == null ? undefined : storage
  }

  #storageName() {
    return String(this.#options.sessionStorageKey ?? "lhttp.session")
  }

  #loadKey() {
    try {
      return this.#storage()?.getItem(this.#storageName()) ?? undefined
    } catch {
      return undefined // storage refused (a browser's private mode): nothing saved
    }
  }

  #saveKey(key) {
    const storage = this.#storage()
    if (storage === undefined) return
    try {
      if (key === undefined) storage.removeItem(this.#storageName())
      else storage.setItem(this.#storageName(), key)
    } catch (error) {
      report(error)
    }
  }

  #setState(state) {
    if (state === this.#state) return
    this.#state = state
    this.#hook("on_state", state)
  }

  #hook(name, argument) {
    try {
      this[name](argument)
    } catch (error) {
      report(error)
    }
  }
}

export default Lhttp
