/**
 * Types of lhttp.js, the LHTTP client for browsers and Node 22+ (effect-lhttp).
 */

/** The start of every frame: `"LHTTP/1.0"`. */
export declare const PROTOCOL: "LHTTP/1.0"

/** Headers as given to the SDK: a record, a `Map` or name/value pairs; `null`/`undefined` values are left out. */
export type HeadersInput =
  | Readonly<Record<string, string | number | boolean | null | undefined>>
  | ReadonlyMap<string, string | number | boolean | null | undefined>
  | Iterable<readonly [string, string | number | boolean | null | undefined]>
  | null
  | undefined

/** One channel id, several as a space-separated string, or an array of ids. */
export type Channels = string | ReadonlyArray<string>

/**
 * An error frame from the server (`status` > 0: `status`, `reason` and `id` are its headers, the
 * message its body), or a client-side failure (`status` 0, `reason` `"Timeout"`, `"Closed"`,
 * `"QueueFull"` or `"DuplicateId"`). `decode` and `encode` throw it with the protocol's reasons
 * (`NotLhttp`, `UnsupportedVersion`, `MalformedStartLine`, `MalformedHeader`). Over SSE and
 * long-poll, a frame `POST /send` refused gives its HTTP status, with the reason its answer names
 * (`NotLhttp`, `InvalidUtf8`, ...) or `"TooLarge"` (413) or `"Refused"`; a failed HTTP request,
 * `"HttpError"` and its status.
 */
export declare class LhttpError extends Error {
  constructor(status: number, reason: string, message?: string, id?: string)
  readonly name: "LhttpError"
  readonly status: number
  readonly reason: string
  readonly id: string | undefined
}

/** One LHTTP message: a command, ordered headers and a body. */
export declare class Message {
  constructor(command?: string, headers?: HeadersInput, body?: string | null)
  command: string
  /** Insertion order; a repeated name keeps its first place and its last value. */
  headers: Map<string, string>
  body: string
  getHeader(name: string): string | undefined
  /** The frame's text (see {@link encode}). */
  encode(): string
  toString(): string
  static encode(message: MessageInput): string
  static decode(text: string): Message
}

/** Anything with a command, headers and a body. */
export interface MessageInput {
  readonly command?: string | undefined
  readonly headers?: HeadersInput
  readonly body?: string | null | undefined
}

/**
 * `LHTTP/1.0 <command>\r\n` + `name:value\r\n` per header + `\r\n` + body. Throws an
 * {@link LhttpError} when the frame could not be read back (CR/LF in the command, a name or a
 * value; an empty name or one holding `:`).
 */
export declare function encode(message: MessageInput): string

/**
 * Reads a frame (docs/protocol.md §2): the command after `LHTTP/1.0 `, headers split at their
 * first `:` up to the first empty line, then the body verbatim. Throws an {@link LhttpError}.
 */
export declare function decode(text: string): Message

/**
 * A frame's text from the data of a Server-Sent Event of `GET /sse` (its `data:` lines joined with
 * `\n`, as `EventSource` gives `event.data`): the head, up to the first empty line, gets its CRLF
 * line breaks back; the body is kept as it is, so a CRLF or CR in it arrives as LF
 * (docs/transports.md). `decode(fromEvent(event.data))` reads it.
 */
export declare function fromEvent(data: string): string

/** How the SDK can reach the server. */
export type Transport = "websocket" | "sse" | "poll"

/** The transports in their default order of trial: `["websocket", "sse", "poll"]`. */
export declare const TRANSPORTS: ReadonlyArray<Transport>

/** The connection's state; `"closed"` is final. */
export type State = "connecting" | "open" | "reconnecting" | "closing" | "closed"

/** Reconnection with exponential backoff: attempt n waits `min(maxDelay, initialDelay * factor^n) * (1 - jitter * random)`. */
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

/** A constructor with the browser's WebSocket API (the global one, or `ws`'s). */
export interface WebSocketConstructor {
  new(url: string, protocols?: string | Array<string>): WebSocketLike
}

/** The part of the WebSocket API the SDK uses. */
export interface WebSocketLike {
  readonly readyState: number
  binaryType: string
  onopen: ((event: any) => void) | null
  /** `event.data`: a string for a text frame. */
  onmessage: ((event: any) => void) | null
  onerror: ((event: any) => void) | null
  /** `event.code`, `event.reason`. */
  onclose: ((event: any) => void) | null
  send(data: string): void
  close(code?: number, reason?: string): void
}

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
  /** How long an SSE or long-poll connection may take to open before the next transport is tried, in ms (default 10000). */
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
}

/** The part of the Web Storage API the SDK uses to keep the session's key. */
export interface SessionStorage {
  getItem(name: string): string | null
  setItem(name: string, value: string): void
  removeItem(name: string): void
}

/** A session as the server told it: its key and its data (the `session` frame's JSON body). */
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

/**
 * What a hook receives, and a way to send. `req` is the received message (empty for the shared
 * `lhttp.context` and for open, close and error); `setCommand` and `addHeader` stage the next
 * send only: every send starts fresh.
 */
export declare class Context {
  constructor(lhttp: Lhttp, message?: Message | null, event?: unknown)
  readonly lhttp: Lhttp
  readonly req: Message
  /**
   * `on_close`: the WebSocket's close event, or for SSE and long-poll `{ code, reason, wasClean }`.
   * `on_error`: the WebSocket's error event; for SSE and long-poll the `Error` of a failed request,
   * a {@link GapEvent}, or the {@link LhttpError} of a frame `POST /send` refused (not a request's).
   */
  readonly event: unknown
  /** The current connection: the WebSocket, or the SSE or long-poll connection. */
  readonly conn: WebSocketLike | HttpConnection | undefined
  /** `on_open`: whether this is a reconnection (the subscriptions were re-sent just before). */
  reconnected?: boolean
  /** `on_close`: the close code. */
  code?: number
  /** `on_close`: whether the client will reconnect. */
  willReconnect?: boolean
  /** `on_session`: what changed. */
  change?: SessionChange
  /** `on_session`: the session now (`undefined` once closed). */
  session?: Session | undefined
  /** `on_session`: the session's key (for `"closed"`, the key that was closed). */
  key?: string
  /**
   * `on_close`: the close reason. `on_session` `"closed"`: why: `"Closed"` (the server closed it:
   * `closed:<key>`), `"SessionNotFound"` (the server no longer knows it: a restore was refused, or
   * it expired) or `"Cleared"` ({@link Lhttp.clearSession}).
   */
  reason?: string
  /** `on_session` `"closed"` with reason `"SessionNotFound"`: the error frame's {@link LhttpError}. */
  error?: LhttpError
  getCommand(): string
  getHeader(name: string): string | undefined
  getHeaders(): Record<string, string>
  getBody(): string
  /** The error of an error frame (`LHTTP/1.0 error` with `status`), else `undefined`. */
  getError(): LhttpError | undefined
  /** The command of the next send (default: the received command). */
  setCommand(command: string): this
  /** A header of the next send. */
  addHeader(name: string, value: string | number): this
  /** Sends the staged command and headers with `body`, then clears them. */
  send(body?: string | null): void
  /** Sends `command` with `publish:<channels>`, then `headers`, and `body`. */
  publish(channels: Channels, command?: string | null, headers?: HeadersInput, body?: string | null): void
  /**
   * Sends `command` with `subscribe:<channels>` (and `since:now`, see {@link Lhttp.send}); the
   * client re-sends it after each reconnect.
   */
  subscribe(channels: Channels, command?: string | null, headers?: HeadersInput, body?: string | null): void
  /** Sends `command` with `unsubscribe:<channels>`; the channels are no longer re-subscribed. */
  unsubscribe(channels: Channels, command?: string | null, headers?: HeadersInput, body?: string | null): void
  /** {@link Lhttp.request} */
  request(command: string, headers?: HeadersInput, body?: string | null, options?: RequestOptions): Promise<Context>
}

/**
 * An LHTTP connection: opens at construction (over the first of `transports` that connects),
 * reconnects with backoff, and re-sends every subscription after each reconnect. With a session
 * (a `session` frame received, or option `session` / `sessionStorage`), each new connection first
 * restores it (`LHTTP/1.0 session` with `restore:<key>` and an `id`) and waits for the answer
 * before it is `"open"`, re-subscribes and sends what was queued. An SSE stream or
 * a poll that breaks resumes the same connection (`state` goes `"reconnecting"`, then `"open"`, with
 * no `on_close` nor `on_open`: nothing is lost nor re-sent). Override the hooks by assigning them or
 * in a subclass.
 */
export declare class Lhttp {
  /** Without `url`, in a browser: `ws(s)://<location.host>/`. */
  constructor(url?: string | URL | null, options?: LhttpOptions)
  /** A context for sending from outside the hooks: `lhttp.context.publish("room", "chat", null, "hi")`. */
  readonly context: Context
  /** `fromEvent`, as a static: `Lhttp.fromEvent(event.data)`. */
  static fromEvent(data: string): string
  readonly url: string
  readonly state: State
  /** The transport in use, or being tried while none has opened yet. */
  readonly transport: Transport
  /** The transports to try, in order. */
  readonly transports: ReadonlyArray<Transport>
  /** The current connection, if any: the WebSocket, or the SSE or long-poll connection. */
  readonly conn: WebSocketLike | HttpConnection | undefined
  /** The channels subscribed to, re-sent after each reconnect. */
  readonly channels: ReadonlyArray<string>
  /**
   * The last position of a subscribed history channel: known from the `position` message that
   * answers its subscription, then advanced by the positions of its messages. After a reconnect
   * the channel is subscribed `since` it, and what was published meanwhile arrives before the live
   * messages. `undefined` for a channel without history (its `position` message says
   * `NoHistory`): position-like headers of its messages are the publisher's text, never taken.
   */
  position(channel: string): { readonly epoch: string; readonly offset: number } | undefined
  /** The session as the server last told it, or `undefined` (none, not restored yet, or closed). */
  readonly session: Session | undefined
  /** The key restored after each new connection: the session's, or the one given or saved, until refused. */
  readonly sessionKey: string | undefined
  /**
   * Forgets the session here and in `sessionStorage` (no more restores); `on_session` with
   * `"closed"` and reason `"Cleared"`. The server is not told.
   */
  clearSession(): void
  /** Each open, reconnections included (`context.reconnected`). */
  on_open(context: Context): void
  /** Each frame received, except the replies to {@link request}. */
  on_message(context: Context): void
  /** Each close of an open connection, and the end (`context.willReconnect` false). */
  on_close(context: Context): void
  /**
   * Each WebSocket error event (failed reconnection attempts included); over SSE and long-poll,
   * each failed request, a gap in an SSE stream, and a frame `POST /send` refused.
   */
  on_error(context: Context): void
  /** Each change of {@link state}. */
  on_state(state: State): void
  /**
   * Each change of the session: created, updated, restored (after a new connection, before the
   * subscriptions are re-sent) and closed (by the server, refused as `SessionNotFound`, or cleared).
   * `context.change`, `context.session`, `context.key`; the `session` frame in `context.req`.
   */
  on_session(context: Context): void
  /**
   * Sends a message now, or queues it while the connection is not open (sent after the
   * re-subscriptions of the next open); a message that only subscribes is not queued, since it
   * is re-sent anyway. A message that subscribes without a `since` header gets `since:now` right
   * after its `subscribe`: its channels are answered with `position` messages (passed to
   * `on_message`), and the messages of history channels carry their positions. Throws an
   * {@link LhttpError} once closed or when the queue is full.
   */
  send(message: MessageInput): void
  /**
   * Sends a request with an `id` header (generated unless given). Resolves with the context of
   * the reply that carries the same `id`; rejects with an {@link LhttpError} for an error frame,
   * a timeout, or a connection that closed before the reply.
   */
  request(command: string, headers?: HeadersInput, body?: string | null, options?: RequestOptions): Promise<Context>
  /**
   * Closes for good (no reconnection); resolves when the connection is closed (over SSE and
   * long-poll: once what was handed to it is sent and `DELETE /send` answered).
   */
  close(code?: number, reason?: string): Promise<void>
}

export default Lhttp
