/**
 * The per-connection handle that processors and filters receive: who is
 * connected (request URL, headers, remote address), per-connection data, and
 * what can be done with the connection (send, subscribe, unsubscribe, close).
 * It does not depend on the transport: WebSocket, SSE and long-poll
 * connections are the same to processors and filters.
 *
 * @since 0.1.0
 */
import type { Effect } from "effect"
import type { Frame } from "./Frame.ts"
import type { Since } from "./History.ts"
import type { ProtocolError } from "./ProtocolError.ts"
import type { Rejection } from "./Rejection.ts"

/**
 * A typed key for per-connection data.
 *
 * @since 0.1.0
 * @category models
 */
export interface Key<A> {
  readonly name: string
  readonly _A?: (_: never) => A
}

/**
 * Makes a typed key for per-connection data.
 *
 * ```ts
 * const UserName = Connection.key<string>("userName")
 * connection.set(UserName, "alice")
 * connection.get(UserName) // "alice" | undefined
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const key = <A>(name: string): Key<A> => ({ name })

/**
 * The user a connection belongs to: the id of its authenticated principal.
 * Set it in an `authenticate` hook (`data.set(Connection.user, "42")`), a
 * login processor or from a token; the server API reaches every connection
 * of a user, on every node, by it, and presence shows it.
 *
 * @since 0.1.0
 * @category keys
 */
export const user: Key<string> = key<string>("effect-lhttp/user")

/**
 * What presence shows of a connection (JSON-able, small; e.g. the user's
 * name): set by an `authenticate` hook, a login processor or a token's
 * `info` claim; also `Presence.info`.
 *
 * @since 0.1.0
 * @category keys
 */
export const info: Key<unknown> = key<unknown>("effect-lhttp/Presence/info")

/**
 * A client connection.
 *
 * @since 0.1.0
 * @category models
 */
export interface Connection {
  /** Unique on this server process. */
  readonly id: string
  /** The request URL of the connection: path and query. */
  readonly url: string
  /**
   * The request headers of the connection, lower-cased names; not the HTTP
   * hop's and the WebSocket handshake's own (`connection`, `upgrade`,
   * `sec-websocket-key`, `-version`, `-extensions`).
   */
  readonly requestHeaders: Readonly<Record<string, string | undefined>>
  /** The peer's address, when the transport knows it. */
  readonly remoteAddress: string | undefined
  /** The channels this connection is subscribed to. */
  readonly channels: ReadonlySet<string>
  /** Reads per-connection data. */
  readonly get: <A>(key: Key<A>) => A | undefined
  /** Writes per-connection data. */
  readonly set: <A>(key: Key<A>, value: A) => void
  /** Sends a frame to this connection, after what is already queued for it (a frame that would not read back fails). */
  readonly send: (frame: Frame) => Effect.Effect<void, ProtocolError>
  /**
   * Subscribes to channels (validated; idempotent; bounded per connection).
   * With `since` (`"now"`, or a position for one channel), each channel is
   * answered with its `position` frame, after what it recovers since the
   * position, and its messages carry positions; without, the subscription is
   * plain (see `Hub.SubscribeOptions`).
   */
  readonly subscribe: (
    channels: Iterable<string>,
    options?: { readonly since?: Since | undefined }
  ) => Effect.Effect<void, ProtocolError | Rejection>
  /** Unsubscribes from channels; unknown channels are ignored. */
  readonly unsubscribe: (channels: Iterable<string>) => Effect.Effect<void>
  /**
   * Closes the connection with a close code and a reason (what is queued is
   * sent first). A code a peer may not receive (outside 1000-1003, 1007-1014,
   * 3000-4999) becomes 1000; the reason is cut to 123 UTF-8 bytes.
   */
  readonly close: (code?: number, reason?: string) => Effect.Effect<void>
}
