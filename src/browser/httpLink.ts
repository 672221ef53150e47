/**
 * The browser SDK's connection over Server-Sent Events (`GET /sse`) or
 * long-poll (`GET /poll`), with `POST /send` for what the client sends
 * (docs/transports.md), shaped as the part of a WebSocket the client uses.
 * The event stream, the control events and the answers of `POST /send` are
 * read by the rules both clients share (internal/wire/).
 */
import { type Ended, endedOf, type Event, eventId, type Item, itemOf, Parser } from "../internal/wire/eventStream.ts"
import { HttpHeader, HttpQuery } from "../internal/wire/protocol.ts"
import { Attempts, maxServerErrorRetries, refusalOf } from "../internal/wire/sendAnswer.ts"
import { LhttpError } from "./message.ts"
import { withToken } from "./token.ts"

/** `readyState`: open, as a WebSocket's. */
export const OPEN = 1
/** `readyState`: closing. */
export const CLOSING = 2
/** `readyState`: closed. */
export const CLOSED = 3

/**
 * The connection over SSE or long-poll (`lhttp.conn` then): `readyState` as a WebSocket's, and the
 * id the server gave the connection.
 */
export interface HttpConnection {
  readonly transport: "sse" | "poll"
  /** The `GET /sse` or `GET /poll` URL. */
  readonly url: string
  /** The server's id of the connection (the capability to send as it), once open. */
  readonly connection: string | undefined
  readonly readyState: number
  send(data: string): void
  close(code?: number, reason?: string): void
}

/** What `on_error` gets in `context.event` when an SSE stream lost frames (an `event: gap`). */
export interface GapEvent {
  readonly type: "gap"
  /** The first and last sequence numbers of the lost frames. */
  readonly from: number
  readonly to: number
}

/** A frame handed to the link and not taken by the server yet. */
export interface Unsent {
  readonly text: string
  readonly id: string | undefined
}

/** How the link ended (`onclose`): what the server had not taken goes back in `unsent`. */
export interface LinkClose {
  readonly type: "close"
  readonly code: number
  readonly reason: string
  readonly wasClean: boolean
  /** The server no longer knows the connection: a new one is due at once. */
  readonly immediate?: boolean
  readonly unsent: ReadonlyArray<Unsent>
}

/** How a connection closed, either kind: a WebSocket's close event, or a link's {@link LinkClose}. */
export interface Closing {
  readonly code?: number
  readonly reason?: string
  readonly immediate?: boolean
  readonly unsent?: ReadonlyArray<Unsent>
}

/** A frame `POST /send` would not take (`onrefused`), as the error its request fails with. */
export interface Refusal {
  readonly id: string | undefined
  readonly error: LhttpError
}

/** What the link needs of the client. */
export interface LinkConfig {
  /** The `GET /sse` or `GET /poll` URL. */
  readonly url: string
  /** The `POST /send` URL, without the connection. */
  readonly sendUrl: string
  readonly fetch: (url: string, init?: RequestInit) => Promise<Response>
  /** How long the link may take to open, in ms. */
  readonly openTimeout: number
  /** The connection token of the request that opens the connection (`?token=`), if any. */
  readonly token: string | undefined
  /** A fresh token for each `GET /sse` that resumes the connection, if the client has tokens. */
  readonly freshToken: (() => Promise<string>) | undefined
  /** The wait after the nth failure in a row of a `POST /send`, in ms. */
  readonly delay: (attempt: number) => number
  /** The wait before the nth resume of a broken stream or poll, or undefined when it should not be tried. */
  readonly resumeDelay: (attempt: number) => number | undefined
}

type End = Omit<LinkClose, "type" | "unsent" | "wasClean"> & { readonly wasClean?: boolean }

/** What ends a stream: the end of the link, or nothing more to do. */
type Outcome = { readonly end: End } | { readonly error: unknown } | { readonly stopped: true }

/** Hands an error to the page (`reportError`), or the console. */
export const report = (error: unknown): void => {
  if (typeof globalThis.reportError === "function") globalThis.reportError(error)
  else console.error(error)
}

/** Runs a handler of the app: what it throws goes to {@link report}, never to the SDK. */
export const guarded = (handler: () => void): void => {
  try {
    handler()
  } catch (error) {
    report(error)
  }
}

/** An error's message. */
const messageOf = (error: unknown): string => error instanceof Error ? error.message : String(error)

/** Waits `ms`; false when `signal` aborted it first. */
export const sleep = (ms: number, signal: AbortSignal): Promise<boolean> =>
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

const endOf = (ended: Ended): End => ({ code: ended.code, reason: ended.reason, wasClean: true })

const gone: End = { code: 1006, reason: "the connection is gone", immediate: true }

const cancel = (response: Response) => void response.body?.cancel().catch(() => undefined)

/**
 * A connection over SSE or long-poll with `POST /send`, shaped as the part of a WebSocket the
 * client uses (`readyState`, `send`, `close`, `onopen`, `onmessage`, `onerror`, `onclose`). Opened
 * once the server names the connection (`event: connected`, or the first poll's answer). A stream
 * or poll that breaks is resumed on the same connection (`Last-Event-ID`, the cursor), told by
 * `oninterrupt` and `onresume`; it closes when the server ends the connection (`event: close`,
 * `410`) or no longer knows it (`reset`, `404`: `immediate` then, a new connection is due at once).
 * `onclose` gives back the frames not yet taken by the server (`unsent`).
 */
export class HttpLink implements HttpConnection {
  readyState = 0
  onopen: ((event: { readonly type: "open" }) => void) | null = null
  onmessage: ((event: { readonly type: "message"; readonly data: string }) => void) | null = null
  onerror: ((event: unknown) => void) | null = null
  onclose: ((event: LinkClose) => void) | null = null
  oninterrupt: (() => void) | null = null
  onresume: (() => void) | null = null
  onrefused: ((refusal: Refusal) => void) | null = null
  ongap: ((event: GapEvent) => void) | null = null
  /** The server's id of the connection, once open. */
  connection: string | undefined = undefined
  readonly transport: "sse" | "poll"
  readonly url: string
  readonly #config: LinkConfig
  readonly #reading = new AbortController() // the stream or polls, and their waits
  readonly #sendWait = new AbortController() // the waits of the sender
  #outbox: Array<Unsent> = [] // oldest first, not yet taken by the server
  #sender: Promise<void> | undefined // the running sender, if any
  #ended = false // the server ended the connection, or it failed: nothing more to do
  #closing = false // close() was called
  #gone = false // a POST was answered 404 or 410: the reader will see the end
  #interrupted = false
  #attempt = 0
  #openTimer: ReturnType<typeof setTimeout> | undefined
  #lastEventId = ""
  #reset = false
  #cursor = 0
  #failure: Error | undefined // why the open failed, when the link itself gave up (openTimeout)

  constructor(transport: "sse" | "poll", config: LinkConfig) {
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

  send(text: string, id?: string): void {
    if (this.readyState !== OPEN) throw new Error("InvalidStateError: the connection is not open")
    this.#outbox.push({ text, id })
    if (this.#sender === undefined) this.#sender = this.#pump()
  }

  /** Sends what was handed over, then `DELETE /send`; `onclose` after. */
  close(code = 1000, reason = ""): void {
    if (this.readyState >= CLOSING) return
    const opened = this.readyState === OPEN
    this.readyState = CLOSING
    this.#closing = true
    clearTimeout(this.#openTimer)
    this.#reading.abort()
    this.#sendWait.abort()
    void (async () => {
      if (this.#sender !== undefined) await this.#sender
      if (opened && !this.#gone && this.connection !== undefined) {
        try {
          cancel(await this.#config.fetch(this.#sendUrl(this.connection), { method: "DELETE" }))
        } catch {
          // the server is out of reach: the connection expires there
        }
      }
      this.#finish({ code, reason, wasClean: true })
    })()
  }

  get #stopped(): boolean {
    return this.#ended || this.#closing
  }

  #sendUrl(connection: string): string {
    const url = new URL(this.#config.sendUrl)
    url.searchParams.set(HttpQuery.connection, connection)
    return url.href
  }

  #emit<A>(handler: ((event: A) => void) | null, event: A): void {
    if (typeof handler === "function") guarded(() => handler.call(this, event))
  }

  #opened(connection: string): void {
    clearTimeout(this.#openTimer)
    this.connection = connection
    this.readyState = OPEN
    this.#attempt = 0
    this.#emit(this.onopen, { type: "open" })
  }

  #interrupt(): void {
    if (this.#interrupted) return
    this.#interrupted = true
    this.#emit(this.oninterrupt, undefined)
  }

  #resume(): void {
    this.#attempt = 0
    if (!this.#interrupted) return
    this.#interrupted = false
    this.#emit(this.onresume, undefined)
  }

  /** The end: stops reading, lets the POST in flight settle, then `onclose`. */
  async #end(event: End): Promise<void> {
    if (this.#stopped) return
    this.#ended = true
    if (this.readyState === OPEN) this.readyState = CLOSING
    clearTimeout(this.#openTimer)
    this.#reading.abort()
    this.#sendWait.abort()
    if (this.#sender !== undefined) await this.#sender
    this.#finish(event)
  }

  #finish(event: End): void {
    this.readyState = CLOSED
    this.#emit(this.onclose, { type: "close", wasClean: false, ...event, unsent: this.#outbox.splice(0) })
  }

  /** A connection the server made for us that we do not want (after a `reset`): closed at once. */
  #discard(connection: string): void {
    Promise.resolve()
      .then(() => this.#config.fetch(this.#sendUrl(connection), { method: "DELETE" }))
      .then(cancel)
      .catch(() => undefined)
  }

  #failed(error: unknown): void {
    const failure = this.#failure ?? error
    this.#emit(this.onerror, failure)
    if (this.readyState === 0) void this.#end({ code: 1006, reason: messageOf(failure) })
  }

  /** Waits before resuming a broken stream or poll; false when it is over (no more tries, or stopped). */
  async #pause(error: unknown): Promise<boolean> {
    const delay = this.#config.resumeDelay(this.#attempt++)
    if (delay === undefined) {
      void this.#end({ code: 1006, reason: messageOf(error) })
      return false
    }
    this.#interrupt()
    return sleep(delay, this.#reading.signal)
  }

  // ---- sending: POST /send, one at a time, in order (internal/wire/sendAnswer.ts) ----

  async #pump(): Promise<void> {
    let attempts = new Attempts(this.#config.delay)
    const wait = (ms: number) => !this.#stopped && sleep(ms, this.#sendWait.signal)
    try {
      while (this.#outbox.length > 0 && !this.#ended && !this.#gone && this.connection !== undefined) {
        const item = this.#outbox[0]!
        let response: Response
        try {
          response = await this.#config.fetch(this.#sendUrl(this.connection), {
            method: "POST",
            headers: { "content-type": "text/plain;charset=UTF-8" },
            body: item.text
          })
        } catch {
          // not known to be taken: sent again (a failure to connect is the usual cause)
          if (!(await wait(attempts.unanswered()))) return
          continue
        }
        const body = await response.text().catch(() => "")
        const verdict = attempts.answered(response.status, response.headers.get(HttpHeader.retryAfter), body)
        if (verdict._tag === "Wait") {
          if (!(await wait(verdict.delay))) return
          continue
        }
        if (verdict._tag === "Gone") {
          this.#gone = true // not taken: given back with onclose, once the reader sees the end
          continue
        }
        this.#outbox.shift()
        attempts = new Attempts(this.#config.delay)
        if (verdict._tag === "Taken") continue
        const error = verdict._tag === "Failed"
          ? new LhttpError(
            verdict.status,
            "HttpError",
            `POST /send answered ${verdict.status} ${1 + maxServerErrorRetries} times: ${verdict.message}`,
            item.id
          )
          : this.#refusal(verdict.status, body, item.id)
        this.#emit(this.onrefused, { id: item.id, error })
      }
    } finally {
      this.#sender = undefined
    }
  }

  /** The error of a frame refused (`400`, `413`, ...): the reason its answer names, else `TooLarge` or `Refused`. */
  #refusal(status: number, body: string, id: string | undefined): LhttpError {
    const { message, reason } = refusalOf(body)
    return new LhttpError(status, reason ?? (status === 413 ? "TooLarge" : "Refused"), message, id)
  }

  // ---- SSE: GET /sse, resumed with Last-Event-ID ----

  async #runSse(): Promise<void> {
    await null // no event before the constructor's caller has set the handlers
    for (;;) {
      const headers: Record<string, string> = { accept: "text/event-stream" }
      if (this.connection !== undefined) headers[HttpHeader.lastEventId] = this.#lastEventId
      const outcome = await this.#stream(headers)
      if (this.#stopped || "stopped" in outcome) return
      if ("end" in outcome) return this.#end(outcome.end)
      this.#failed(outcome.error)
      if (this.readyState !== OPEN || !(await this.#pause(outcome.error))) return
    }
  }

  async #stream(headers: Record<string, string>): Promise<Outcome> {
    let response: Response
    try {
      response = await this.#config.fetch(await this.#streamUrl(), { headers, signal: this.#reading.signal })
    } catch (error) {
      return { error }
    }
    if (response.status === 204) {
      cancel(response)
      return { end: { code: 1006, reason: "the connection ended" } }
    }
    if (
      response.status !== 200 || response.body == null ||
      !/^text\/event-stream/i.test(response.headers.get("content-type") ?? "")
    ) {
      cancel(response)
      return { error: new LhttpError(response.status, "HttpError", `GET ${this.url} answered ${response.status}`) }
    }
    const reader = response.body.getReader()
    const parser = new Parser()
    let outcome: Outcome | undefined
    try {
      while (outcome === undefined) {
        const { done, value } = await reader.read()
        if (done) break
        for (const event of parser.push(value)) {
          outcome = this.#event(event)
          if (outcome !== undefined) break
        }
      }
    } catch (error) {
      outcome ??= { error }
    }
    if (outcome !== undefined) reader.cancel().catch(() => undefined)
    return outcome ?? { error: new Error("the event stream ended") }
  }

  /**
   * The URL of a `GET /sse`, with the token: a fresh one on a resume (the server opens a new
   * connection for a resume whose connection expired, and admits it by that token).
   */
  async #streamUrl(): Promise<string> {
    const { freshToken, token } = this.#config
    const resuming = this.connection !== undefined && freshToken !== undefined
    return withToken(this.url, resuming ? await freshToken() : token)
  }

  /** One event of the stream; an outcome ends the stream. */
  #event(event: Event): Outcome | undefined {
    if (this.#stopped) return { stopped: true }
    const item: Item = itemOf(event)
    switch (item._tag) {
      case "Connected": {
        const connection = item.connection
        if (!this.#reset && this.connection === undefined) {
          this.#lastEventId = eventId(connection, 0)
          this.#opened(connection)
          return undefined
        }
        if (!this.#reset && connection === this.connection) {
          this.#resume()
          return undefined
        }
        // the connection is gone and the server opened another: a new one is made with our subscriptions
        this.#discard(connection)
        return { end: gone }
      }
      case "Reset":
        this.#reset = true
        return undefined
      case "Close":
        return { end: endOf(item.ended) }
      case "Gap":
        this.#emit(this.ongap, { type: "gap", from: item.from, to: item.to })
        return undefined
      case "Frame":
        if (this.readyState !== OPEN) return undefined
        if (event.lastEventId !== "") this.#lastEventId = event.lastEventId
        this.#emit(this.onmessage, { type: "message", data: item.text })
        return undefined
      case "Unknown":
        return undefined
    }
  }

  // ---- long-poll: GET /poll with the cursor ----

  async #runPoll(): Promise<void> {
    await null
    const signal = this.#reading.signal
    let answer: { readonly connection: string; readonly cursor?: unknown; readonly frames?: unknown }
    try {
      const response = await this.#config.fetch(withToken(this.url, this.#config.token), { signal })
      if (response.status !== 200) {
        cancel(response)
        throw new LhttpError(response.status, "HttpError", `GET ${this.url} answered ${response.status}`)
      }
      answer = await response.json()
      if (typeof answer?.connection !== "string") throw new Error(`GET ${this.url} did not open a connection`)
    } catch (error) {
      if (this.#stopped) return
      return this.#failed(error)
    }
    if (this.#stopped) return this.#discard(answer.connection)
    this.#cursor = Number(answer.cursor) || 0
    this.#opened(answer.connection)
    this.#deliver(answer.frames)
    const url = new URL(this.url)
    url.searchParams.set(HttpQuery.connection, answer.connection)
    for (;;) {
      if (this.#stopped) return
      url.searchParams.set(HttpQuery.cursor, String(this.#cursor))
      let error: unknown
      try {
        const response = await this.#config.fetch(url.href, { signal })
        const status = response.status
        if (status === 200) {
          const batch: { readonly cursor?: unknown; readonly frames?: unknown } = await response.json()
          if (this.#stopped) return
          this.#resume()
          this.#cursor = Number(batch.cursor)
          this.#deliver(batch.frames)
          continue
        }
        const text = await response.text().catch(() => "")
        if (this.#stopped) return
        if (status === 410) return this.#end(endOf(endedOf(text) ?? { code: 1006, reason: "" }))
        // 404: no such connection (the server forgot it); 400: it does not know our cursor
        if (status === 404 || status === 400) return this.#end(gone)
        error = new LhttpError(status, "HttpError", `GET ${url.pathname} answered ${status}`)
      } catch (failure) {
        error = failure
      }
      if (this.#stopped) return
      this.#failed(error)
      if (!(await this.#pause(error))) return
    }
  }

  #deliver(frames: unknown): void {
    if (!Array.isArray(frames)) return
    for (const frame of frames) {
      if (this.#stopped) return
      this.#emit(this.onmessage, { type: "message", data: String(frame) })
    }
  }
}
