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
 */

/** The start of every frame. */
export const PROTOCOL = "LHTTP/1.0"

const CRLF = "\r\n"
const CR_OR_LF = /[\r\n]/
const BAD_NAME = /[:\r\n]/
const OPEN = 1
const CLOSING = 2
// headers that must not be repeated when a subscription is re-sent after a reconnect
const NOT_RESENT = ["publish", "unsubscribe", "id", "upstream", "upstream-reply"]

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
  /** The current WebSocket. */
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

const report = (error) =>
  typeof globalThis.reportError === "function" ? globalThis.reportError(error) : console.error(error)

/**
 * An LHTTP connection. Override the hooks (`on_open`, `on_message`, `on_close`, `on_error`,
 * `on_state`) by assigning them or in a subclass.
 */
export class Lhttp {
  #url
  #options
  #reconnect
  #ws
  #state = "connecting"
  #opens = 0
  #wasOpen = false
  #attempt = 0
  #timer
  #closing = false
  #closeWaiters = []
  #subscriptions = [] // { channels: Set, command, headers: Map, body }, oldest first
  #queue = [] // { text, id }
  #pending = new Map() // id -> { resolve, reject, timer, socket }
  #prefix = Math.random().toString(36).slice(2, 8)
  #nextId = 0

  constructor(url, options) {
    options ??= {}
    if (url == null) {
      const location = globalThis.location
      if (location === undefined) throw new TypeError("new Lhttp(url): a URL is required outside a browser")
      url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/`
    }
    this.#url = String(url)
    this.#options = options
    this.#reconnect = options.reconnect === false
      ? undefined
      : { ...reconnectDefaults, ...(typeof options.reconnect === "object" ? options.reconnect : {}) }
    /** A context shared by code outside the hooks: `lhttp.context.publish(...)`. */
    this.context = new Context(this, null)
    this.#open()
  }

  on_open(_context) {}
  on_message(_context) {}
  on_close(_context) {}
  on_error(_context) {}
  on_state(_state) {}

  get url() {
    return this.#url
  }
  /** `"connecting"`, `"open"`, `"reconnecting"`, `"closing"` or `"closed"` (for good). */
  get state() {
    return this.#state
  }
  /** The current WebSocket, if any. */
  get conn() {
    return this.#ws
  }
  /** The channels this client is subscribed to, re-sent after each reconnect. */
  get channels() {
    return this.#subscriptions.flatMap((subscription) => Array.from(subscription.channels))
  }

  /**
   * Sends a message. While the connection is not open it is queued (sent after the
   * re-subscriptions of the next open), except a subscription, which is re-sent anyway.
   */
  send(message) {
    if (!(message instanceof Message)) message = new Message(message.command, message.headers, message.body)
    if (this.#closing || this.#state === "closed") throw new LhttpError(0, "Closed", "this client is closed")
    const text = encode(message)
    const subscriptionOnly = this.#track(message)
    const id = message.headers.get("id")
    const ws = this.#ws
    if (this.#state === "open" && ws !== undefined && ws.readyState === OPEN) {
      this.#transmit(ws, text, id)
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

  /** Closes for good (no reconnect); resolves once the socket is closed. */
  close(code = 1000, reason = "") {
    this.#closing = true
    clearTimeout(this.#timer)
    this.#queue.length = 0
    for (const id of Array.from(this.#pending.keys())) {
      this.#settle(id)?.reject(new LhttpError(0, "Closed", "the client was closed", id))
    }
    const done = new Promise((resolve) => this.#closeWaiters.push(resolve))
    const ws = this.#ws
    if (ws !== undefined && ws.readyState <= CLOSING) {
      this.#setState("closing")
      if (ws.readyState <= OPEN) ws.close(code, reason)
    } else {
      this.#ws = undefined
      this.#finish()
    }
    return done
  }

  #open() {
    const WebSocketClass = this.#options.WebSocket ?? globalThis.WebSocket
    if (typeof WebSocketClass !== "function") throw new TypeError("no WebSocket: pass options.WebSocket")
    let ws
    try {
      ws = this.#options.protocols === undefined
        ? new WebSocketClass(this.#url)
        : new WebSocketClass(this.#url, this.#options.protocols)
    } catch (error) {
      if (this.#opens === 0 && this.#attempt === 0) throw error
      return this.#retry()
    }
    ws.binaryType = "arraybuffer"
    this.#ws = ws
    this.#wasOpen = false
    ws.onopen = () => ws === this.#ws && this.#opened(ws)
    ws.onmessage = (event) => ws === this.#ws && this.#received(event.data)
    ws.onerror = (event) => ws === this.#ws && this.#hook("on_error", new Context(this, null, event))
    ws.onclose = (event) => ws === this.#ws && this.#closed(ws, event)
  }

  #opened(ws) {
    const context = new Context(this, null)
    context.reconnected = this.#opens++ > 0
    this.#wasOpen = true
    this.#attempt = 0
    this.#setState("open")
    for (const subscription of this.#subscriptions) {
      const headers = new Map(subscription.headers).set("subscribe", Array.from(subscription.channels).join(" "))
      ws.send(encode(new Message(subscription.command, headers, subscription.body)))
    }
    for (const { text, id } of this.#queue.splice(0)) this.#transmit(ws, text, id)
    this.#hook("on_open", context)
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
    const pending = id === undefined ? undefined : this.#settle(id)
    if (pending === undefined) return this.#hook("on_message", new Context(this, message))
    if (message.command === "error" && message.headers.has("status")) pending.reject(errorOf(message))
    else pending.resolve(new Context(this, message))
  }

  #closed(ws, event) {
    this.#ws = undefined
    for (const [id, pending] of Array.from(this.#pending)) {
      if (pending.socket !== ws) continue
      this.#settle(id)
      pending.reject(new LhttpError(0, "Closed", `the connection closed before the reply to ${id}`, id))
    }
    const retry = !this.#closing && this.#reconnect !== undefined && this.#attempt < this.#reconnect.maxAttempts
    const context = new Context(this, null, event)
    context.code = event.code
    context.reason = event.reason
    context.willReconnect = retry
    if (retry) this.#retry()
    else this.#finish()
    // a failed attempt to reconnect is no connection closing: only on_error and on_state tell it
    if (this.#wasOpen || !retry) this.#hook("on_close", context)
  }

  #retry() {
    const { initialDelay, maxDelay, factor, jitter, maxAttempts } = this.#reconnect
    if (this.#attempt >= maxAttempts) return this.#finish()
    const delay = Math.min(maxDelay, initialDelay * factor ** this.#attempt) * (1 - jitter * Math.random())
    this.#attempt++
    this.#setState("reconnecting")
    this.#timer = setTimeout(() => this.#open(), delay)
  }

  #finish() {
    this.#queue.length = 0
    this.#setState("closed")
    for (const resolve of this.#closeWaiters.splice(0)) resolve()
  }

  #transmit(ws, text, id) {
    const pending = id === undefined ? undefined : this.#pending.get(id)
    if (pending !== undefined) pending.socket = ws
    ws.send(text)
  }

  #settle(id) {
    const pending = this.#pending.get(id)
    if (pending === undefined) return undefined
    this.#pending.delete(id)
    clearTimeout(pending.timer)
    return pending
  }

  // Remembers what subscribed, to re-send it after a reconnect, in the server's order:
  // subscribe, then unsubscribe. True when the message does nothing but subscribe.
  #track(message) {
    const { headers } = message
    const subscribe = headers.has("subscribe") ? channelsOf(headers.get("subscribe")) : []
    const unsubscribe = headers.has("unsubscribe") ? channelsOf(headers.get("unsubscribe")) : []
    if (subscribe.length > 0) {
      for (const subscription of this.#subscriptions) for (const channel of subscribe) subscription.channels.delete(channel)
      const kept = new Map(headers)
      for (const name of NOT_RESENT) kept.delete(name)
      const published = headers.has("publish")
      if (published) kept.delete("multipart")
      this.#subscriptions.push({
        channels: new Set(subscribe),
        command: message.command,
        headers: kept,
        body: published ? "" : message.body
      })
    }
    for (const subscription of this.#subscriptions) for (const channel of unsubscribe) subscription.channels.delete(channel)
    this.#subscriptions = this.#subscriptions.filter((subscription) => subscription.channels.size > 0)
    return subscribe.length > 0 && !NOT_RESENT.some((name) => headers.has(name))
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
