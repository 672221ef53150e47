/**
 * How the browser SDK dials: a connection of one transport (a WebSocket, or
 * an SSE or long-poll link on the http(s) twin of the WebSocket URL's host),
 * with its connection token if any, the next transport while none has opened,
 * and the next attempt after the backoff (internal/wire/backoff.ts).
 */
import * as Backoff from "../internal/wire/backoff.ts"
import { HttpPath } from "../internal/wire/protocol.ts"
import { HttpLink } from "./httpLink.ts"
import type { LhttpOptions, Reconnect, Transport, WebSocketLike } from "./options.ts"
import { tokenOf, withToken } from "./token.ts"

/** A connection of any transport. */
export type Conn = WebSocketLike | HttpLink

/** The waits of a link (the client's backoff). */
export interface Delays {
  /** The wait after the nth failure in a row of a `POST /send`, in ms. */
  readonly delay: (attempt: number) => number
  /** The wait before the nth resume of a broken stream or poll, or undefined when it should not be tried. */
  readonly resumeDelay: (attempt: number) => number | undefined
}

const webSocket = (url: string, options: LhttpOptions): WebSocketLike => {
  const WebSocketClass = options.WebSocket ?? globalThis.WebSocket
  if (typeof WebSocketClass !== "function") throw new TypeError("no WebSocket: pass options.WebSocket")
  const ws = options.protocols === undefined ? new WebSocketClass(url) : new WebSocketClass(url, options.protocols)
  ws.binaryType = "arraybuffer"
  return ws
}

/** The WebSocket URL of the page's host, `ws(s)://<location.host>/`; throws outside a browser. */
export const pageUrl = (): string => {
  const location = globalThis.location as Location | undefined
  if (location === undefined) throw new TypeError("new Lhttp(url): a URL is required outside a browser")
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/`
}

/** The http(s) URL of `path` on the WebSocket URL's host (`ssePath`, `pollPath`, `sendPath`). */
const httpUrl = (url: string, path: string): string => {
  const base = new URL(url, (globalThis.location as Location | undefined)?.href)
  const protocol = base.protocol === "wss:" ? "https:" : base.protocol === "ws:" ? "http:" : base.protocol
  return new URL(path, `${protocol}//${base.host}/`).href
}

/**
 * Opens a connection over `transport` to the server of `url`, with the connection `token` (option
 * `getToken`'s) if any; throws what cannot even start.
 */
export const open = (
  transport: Transport,
  url: string,
  options: LhttpOptions,
  delays: Delays,
  token: string | undefined
): Conn => {
  if (transport === "websocket") return webSocket(withToken(url, token), options)
  const fetch = options.fetch ?? globalThis.fetch
  if (typeof fetch !== "function") throw new TypeError("no fetch: pass options.fetch")
  const getToken = options.getToken
  return new HttpLink(transport, {
    url: httpUrl(url, transport === "sse" ? options.ssePath ?? HttpPath.sse : options.pollPath ?? HttpPath.poll),
    sendUrl: httpUrl(url, options.sendPath ?? HttpPath.send),
    fetch: (target, init) => fetch(target, init),
    openTimeout: options.openTimeout ?? 10_000,
    token,
    freshToken: getToken === undefined ? undefined : () => tokenOf(getToken),
    delay: delays.delay,
    resumeDelay: delays.resumeDelay
  })
}

/** Which transport to dial, and when to dial again. */
export class Dialer implements Delays {
  readonly transports: ReadonlyArray<Transport>
  readonly #reconnect: Reconnect | undefined
  #index = 0 // the transport in use, or being tried
  #chosen = false // a transport opened: the client stays on it
  #attempt = 0 // attempts in a row that did not open
  #timer: ReturnType<typeof setTimeout> | undefined

  constructor(transports: ReadonlyArray<Transport>, reconnect: Reconnect | undefined) {
    this.transports = transports
    this.#reconnect = reconnect
  }

  /** The transport in use, or being tried while none has opened yet. */
  get transport(): Transport {
    return this.transports[this.#index]!
  }

  /** Whether a lost connection is dialed again (reconnection is on, and attempts are left). */
  get retries(): boolean {
    return this.#reconnect !== undefined && this.#attempt < this.#reconnect.maxAttempts
  }

  readonly delay = (attempt: number): number => Backoff.delay(this.#reconnect ?? Backoff.defaults, attempt)

  readonly resumeDelay = (attempt: number): number | undefined =>
    this.#reconnect === undefined || attempt >= this.#reconnect.maxAttempts ? undefined : this.delay(attempt)

  /** A connection opened: the client stays on its transport, and the attempts count from 0 again. */
  opened(): void {
    this.#chosen = true
    this.#attempt = 0
  }

  /** Moves to the next transport while none has opened yet; false when there is none to try. */
  fallBack(): boolean {
    if (this.#chosen) return false
    if (this.#index < this.transports.length - 1) {
      this.#index++
      return true
    }
    this.#index = 0 // the next round starts again with the first
    return false
  }

  /**
   * Dials again (`dial`) after the backoff, or after `hinted` ms when the
   * close asked for a wait (a draining server's `reconnect:<ms>`); false when
   * no attempt is left.
   */
  later(dial: () => void, hinted?: number): boolean {
    if (!this.retries) return false
    this.#timer = setTimeout(dial, hinted ?? this.delay(this.#attempt++))
    return true
  }

  /** No more dialing. */
  stop(): void {
    clearTimeout(this.#timer)
  }
}
