/**
 * The browser SDK's options and the types they name: transports, states,
 * reconnection, the WebSocket it uses, where the session's key is kept.
 */
import * as Backoff from "../internal/wire/backoff.ts"

/** How the SDK can reach the server. */
export type Transport = "websocket" | "sse" | "poll"

/** The transports in their default order of trial: `["websocket", "sse", "poll"]`. */
export const TRANSPORTS: ReadonlyArray<Transport> = Object.freeze(["websocket", "sse", "poll"] as const)

/** The connection's state; `"closed"` is final. */
export type State = "connecting" | "open" | "reconnecting" | "closing" | "closed"

/**
 * Reconnection with exponential backoff: attempt n waits
 * `min(maxDelay, initialDelay * factor^n) * (1 - jitter * random)` (the Effect client's rule too).
 */
export interface ReconnectOptions {
  /** ms before the first attempt (default 500). */
  readonly initialDelay?: number
  /** the longest wait in ms (default 10000). */
  readonly maxDelay?: number
  /** default 2. */
  readonly factor?: number
  /** the fraction of each wait taken off at random, 0 to 1 (default 0.5). */
  readonly jitter?: number
  /** attempts in a row before giving up (default Infinity); the count resets on each open. */
  readonly maxAttempts?: number
}

/** Reconnection with every option filled in. */
export interface Reconnect extends Backoff.Backoff {
  readonly maxAttempts: number
}

/** The options of reconnection, defaults filled in; undefined when it is off. */
export const reconnectOf = (option: boolean | ReconnectOptions | undefined): Reconnect | undefined =>
  option === false
    ? undefined
    : { ...Backoff.defaults, maxAttempts: Number.POSITIVE_INFINITY, ...(typeof option === "object" ? option : {}) }

/** A constructor with the browser's WebSocket API (the global one, or `ws`'s). */
export interface WebSocketConstructor {
  new(url: string, protocols?: string | Array<string>): WebSocketLike
}

/**
 * A handler of a WebSocket event. Its event is `any`: the platform's WebSocket (whose handlers take
 * a `MessageEvent`, a `CloseEvent`) and `ws`'s must be assignable to {@link WebSocketLike}.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type WebSocketHandler = ((event: any) => void) | null

/** The part of the WebSocket API the SDK uses. */
export interface WebSocketLike {
  readonly readyState: number
  binaryType: string
  onopen: WebSocketHandler
  /** `event.data`: a string for a text frame. */
  onmessage: WebSocketHandler
  onerror: WebSocketHandler
  /** `event.code`, `event.reason`. */
  onclose: WebSocketHandler
  send(data: string): void
  close(code?: number, reason?: string): void
}

/** The part of the Web Storage API the SDK uses to keep the session's key. */
export interface SessionStorage {
  getItem(name: string): string | null
  setItem(name: string, value: string): void
  removeItem(name: string): void
}

/**
 * A session as the server told it: its key and its data (the `session` frame's JSON body, or its
 * text when it is not JSON).
 */
export interface Session {
  readonly key: string
  readonly data: unknown
}

/**
 * What changed, for `on_session`: `"created"` (a `session` frame with a key the client did not
 * have: a login), `"updated"` (new data for the same key), `"restored"` (the answer to the
 * client's own restore after a connection opened) or `"closed"`.
 */
export type SessionChange = "created" | "updated" | "restored" | "closed"

/** Options of one request. */
export interface RequestOptions {
  /** ms until the promise rejects with reason `"Timeout"` (default: the client's `requestTimeout`). */
  readonly timeout?: number | undefined
}

/** The options of an {@link Lhttp} client. */
export interface LhttpOptions {
  /**
   * The transports to try, in order (default `["websocket", "sse", "poll"]`; a string may list
   * them separated by commas or spaces). The client connects with the first; while none has
   * opened, one that cannot connect makes it try the next at once, and after the last, the first
   * again after the reconnect delay. Once one has opened, the client stays on it.
   */
  readonly transports?: ReadonlyArray<Transport> | string | undefined
  /** The path (or URL) of the SSE endpoint, on the http(s) twin of the WebSocket URL's host (default `/sse`). */
  readonly ssePath?: string | undefined
  /** The path (or URL) of the long-poll endpoint (default `/poll`). */
  readonly pollPath?: string | undefined
  /** The path (or URL) where SSE and long-poll connections send (default `/send`). */
  readonly sendPath?: string | undefined
  /**
   * How long an SSE or long-poll connection may take to open before the next transport is tried,
   * in ms (default 10000).
   */
  readonly openTimeout?: number | undefined
  /** The `fetch` of the SSE and long-poll transports (default: the global one). */
  readonly fetch?: ((input: string, init?: RequestInit) => Promise<Response>) | undefined
  /** The WebSocket class (default: the global `WebSocket`). */
  readonly WebSocket?: WebSocketConstructor | undefined
  readonly protocols?: string | Array<string> | undefined
  /** `false` disables reconnection (default: on, with {@link ReconnectOptions}' defaults). */
  readonly reconnect?: boolean | ReconnectOptions | undefined
  /** The default timeout of {@link Lhttp.request} in ms (default 10000). */
  readonly requestTimeout?: number | undefined
  /** How many messages may wait for the connection (default 1000). */
  readonly maxQueue?: number | undefined
  /**
   * The key of a session to restore on the first connection (one saved earlier); default: the one
   * in `sessionStorage`, if any.
   */
  readonly session?: string | undefined
  /**
   * Where the session's key is kept across page loads: `window.localStorage`, `window.sessionStorage`
   * or anything with their `getItem`, `setItem` and `removeItem`. Read at construction (unless
   * `session` is given), written when a session is created or restored, removed when it closes.
   */
  readonly sessionStorage?: SessionStorage | undefined
  /** The name of the key's entry in `sessionStorage` (default `"lhttp.session"`). */
  readonly sessionStorageKey?: string | undefined
  /**
   * The connection token (a JWT, for a server with the `tokens` option). Called before each connection
   * attempt (each reconnect too) and each `GET /sse`: its token goes as `?token=` on the WebSocket URL, on
   * `GET /sse` and on the `GET /poll` that opens the connection. Called again on the server's `refresh`
   * frame: its token goes as a `token` request. One that throws or rejects fails the attempt (tried again
   * after the backoff), or the refresh (`on_error`; the server closes with 4003 at expiry, then a reconnect).
   */
  readonly getToken?: (() => string | Promise<string>) | undefined
  /**
   * The subscription token of a private channel (a JWT whose `channel` is it, for a server with
   * `tokens.privatePrefixes`), for the subscriptions made with `{ token: true }`
   * ({@link SubscribeOptions}): called with the channel at the subscribe (one made while an SSE
   * stream or poll is interrupted: once it resumed) and again before each re-subscription after a
   * reconnect (a new connection asks every private channel's at once, and stays connecting /
   * reconnecting until they came: then it re-sends every subscription in order, then what was
   * queued); its token goes as the subscribe's `token` header. One that throws, rejects or gives
   * no string calls `on_error` and the subscribe goes without a token (the server's refusal,
   * `403 SubscriptionTokenRequired`, reaches `on_message`).
   */
  readonly getSubscriptionToken?: ((channel: string) => string | Promise<string>) | undefined
}

/** Options of a subscription (`ctx.subscribe`'s last argument, `lhttp.send`'s second). */
export interface SubscribeOptions {
  /**
   * `true`: the channels are private (under a server's `tokens.privatePrefixes`): each is
   * subscribed in a message of its own (the command, headers and body given, with
   * `subscribe:<channel>`), with a `token` header from option `getSubscriptionToken`, asked now
   * and again at every re-subscription after a reconnect. The message may only subscribe (no
   * `publish`, `unsubscribe` nor `id`).
   */
  readonly token?: boolean | undefined
}

/** The transports an option lists, in order, each once; throws a `TypeError` for an unknown one or none. */
export const transportsOf = (value: LhttpOptions["transports"]): Array<Transport> => {
  const list: Array<string> = value === undefined
    ? Array.from(TRANSPORTS)
    : typeof value === "string"
    ? value.split(/[\s,]+/).filter(Boolean)
    : Array.from(value)
  const unknown = list.find((transport) => !TRANSPORTS.includes(transport as Transport))
  if (list.length === 0 || unknown !== undefined) {
    const not = unknown === undefined ? "" : ` (not ${unknown})`
    throw new TypeError(`transports: a list of ${TRANSPORTS.join(", ")}${not}`)
  }
  return Array.from(new Set(list as Array<Transport>))
}

/** The acknowledgement of a publish (`publishAcknowledged`): where the channels that keep history put it. */
export interface Acknowledgement {
  /** The position of each published channel that keeps history. */
  readonly positions: ReadonlyMap<string, { readonly epoch: string; readonly offset: number }>
}
