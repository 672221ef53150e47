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
 * (`NotLhttp`, `UnsupportedVersion`, `MalformedStartLine`, `MalformedHeader`).
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
  /** The WebSocket class (default: the global `WebSocket`). */
  readonly WebSocket?: WebSocketConstructor | undefined
  readonly protocols?: string | Array<string> | undefined
  /** `false` disables reconnection (default: on, with {@link ReconnectOptions}' defaults). */
  readonly reconnect?: boolean | ReconnectOptions | undefined
  /** The default timeout of {@link Lhttp.request} in ms (default 10000). */
  readonly requestTimeout?: number | undefined
  /** How many messages may wait for the connection (default 1000). */
  readonly maxQueue?: number | undefined
}

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
  /** The WebSocket event, for `on_close` and `on_error`. */
  readonly event: unknown
  /** The current WebSocket. */
  readonly conn: WebSocketLike | undefined
  /** `on_open`: whether this is a reconnection (the subscriptions were re-sent just before). */
  reconnected?: boolean
  /** `on_close`: the close code and reason. */
  code?: number
  reason?: string
  /** `on_close`: whether the client will reconnect. */
  willReconnect?: boolean
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
  /** Sends `command` with `subscribe:<channels>`; the client re-sends it after each reconnect. */
  subscribe(channels: Channels, command?: string | null, headers?: HeadersInput, body?: string | null): void
  /** Sends `command` with `unsubscribe:<channels>`; the channels are no longer re-subscribed. */
  unsubscribe(channels: Channels, command?: string | null, headers?: HeadersInput, body?: string | null): void
  /** {@link Lhttp.request} */
  request(command: string, headers?: HeadersInput, body?: string | null, options?: RequestOptions): Promise<Context>
}

/**
 * An LHTTP connection: opens at construction, reconnects with backoff, and re-sends every
 * subscription after each reconnect. Override the hooks by assigning them or in a subclass.
 */
export declare class Lhttp {
  /** Without `url`, in a browser: `ws(s)://<location.host>/`. */
  constructor(url?: string | URL | null, options?: LhttpOptions)
  /** A context for sending from outside the hooks: `lhttp.context.publish("room", "chat", null, "hi")`. */
  readonly context: Context
  readonly url: string
  readonly state: State
  /** The current WebSocket, if any. */
  readonly conn: WebSocketLike | undefined
  /** The channels subscribed to, re-sent after each reconnect. */
  readonly channels: ReadonlyArray<string>
  /** Each open, reconnections included (`context.reconnected`). */
  on_open(context: Context): void
  /** Each frame received, except the replies to {@link request}. */
  on_message(context: Context): void
  /** Each close of an open connection, and the end (`context.willReconnect` false). */
  on_close(context: Context): void
  /** Each WebSocket error event (failed reconnection attempts included). */
  on_error(context: Context): void
  /** Each change of {@link state}. */
  on_state(state: State): void
  /**
   * Sends a message now, or queues it while the connection is not open (sent after the
   * re-subscriptions of the next open); a message that only subscribes is not queued, since it
   * is re-sent anyway. Throws an {@link LhttpError} once closed or when the queue is full.
   */
  send(message: MessageInput): void
  /**
   * Sends a request with an `id` header (generated unless given). Resolves with the context of
   * the reply that carries the same `id`; rejects with an {@link LhttpError} for an error frame,
   * a timeout, or a connection that closed before the reply.
   */
  request(command: string, headers?: HeadersInput, body?: string | null, options?: RequestOptions): Promise<Context>
  /** Closes for good (no reconnection); resolves when the socket is closed. */
  close(code?: number, reason?: string): Promise<void>
}

export default Lhttp
