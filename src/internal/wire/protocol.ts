/**
 * The protocol's constants, written once: the version on every start line,
 * the header names the protocol gives a meaning to, the commands it reserves
 * and the close codes. The server, the Effect client and the browser SDK all
 * read them from here. No imports: this module is bundled into the browser
 * SDK as it is.
 */

/** The version on every frame's start line. */
export const version = "LHTTP/1.0"

/** What a frame's text starts with: the version and a space, then the command. */
export const startLine = version + " "

/** The headers of the messaging protocol (channels, upstream, multipart, request/reply, positions). */
export const Header = {
  subscribe: "subscribe",
  publish: "publish",
  unsubscribe: "unsubscribe",
  upstream: "upstream",
  multipart: "multipart",
  id: "id",
  since: "since"
} as const

/** The headers of error frames. */
export const ErrorHeader = {
  status: "status",
  reason: "reason",
  retryAfter: "retry-after"
} as const

/** The headers of positions (on positioned frames and on the `position` frame). */
export const PositionHeader = {
  channel: "channel",
  offset: "offset",
  epoch: "epoch",
  recovered: "recovered",
  reason: "reason"
} as const

/**
 * The header of a publish's acknowledgement (the answer to a publish with an
 * `id`): `<channel>:<epoch>:<offset>` for each published channel that keeps
 * history, separated by spaces.
 */
export const AckHeader = {
  positions: "positions"
} as const

/** The headers of session frames. */
export const SessionHeader = {
  /** On a session frame: the session's key. */
  key: "session-key",
  /** On the frame announcing that a session was closed: its key. */
  closed: "closed",
  /** On a client's request: the key of the session to restore. */
  restore: "restore"
} as const

/** The headers of presence frames (the answer to the `presence` command, join and leave events). */
export const PresenceHeader = {
  /** The channel asked about, or joined or left. */
  channel: "channel",
  /** On an answer: how many members it lists. */
  count: "count",
  /** On an answer: `yes` when the list stops at the limit. */
  cut: "cut",
  /** On an answer: `yes` when every node answered. */
  complete: "complete",
  /** On an event: `join` or `leave`. */
  event: "event",
  /** On an event: the id of the connection that joined or left. */
  connection: "connection",
  /** On an event: the node of that connection. */
  node: "node"
} as const

/** The commands the protocol reserves. */
export const Command = {
  error: "error",
  position: "position",
  session: "session",
  presence: "presence",
  subscribe: "subscribe",
  unsubscribe: "unsubscribe",
  /**
   * A client's token (Tokens.ts): its first message on a server that needs
   * one, or a fresh one after a `refresh` frame; the token is the body.
   */
  token: "token",
  /** The server asks for a fresh connection token before the one it has expires (`expires` header). */
  refresh: "refresh"
} as const

/** The headers of tokens (docs/tokens.md). */
export const TokenHeader = {
  /** On a subscribe to a private channel: the subscription token. */
  token: "token",
  /** On a `refresh` frame and the answer to a `token` message: when the token expires, ms since the epoch. */
  expires: "expires",
  /** On the answer to a `token` message: the user the token names. */
  user: "user"
} as const

/** The close codes the server uses. */
export const CloseCode = {
  /** A normal close: the connection is done (the default of `Connection.close`). */
  normal: 1000,
  /** The server is shutting down (a connection still busy at the end of a drain). */
  goingAway: 1001,
  /**
   * A draining server closes its connections with this code, spread over its
   * drain window, each with a reason `reconnect:<ms>` saying how long the
   * client should wait before it reconnects (backoff.ts).
   */
  serviceRestart: 1012,
  /** An `onOpen` hook refused the connection, or a policy was broken. */
  policyViolation: 1008,
  /** An inbound message was larger than `maxMessageBytes`. */
  messageTooBig: 1009,
  /** Past `maxConnections` (a transport that accepts without asking first). */
  tryAgainLater: 1013,
  /** No pong within `heartbeatTimeout` of a ping. */
  heartbeatTimeout: 4000,
  /** The connection's outbound queue passed `maxOutboundBytes` (policy "close"). */
  slowConsumer: 4001,
  /** An SSE or long-poll connection that stayed away past its detach timeout. */
  expired: 4002,
  /** Too many messages past `messageRate`. */
  rateLimited: 1008,
  /** The connection's token expired before the client gave a fresh one (`refresh`). */
  tokenExpired: 4003
} as const

/** What a subscription's `since` says to ask for positions from now on (no recovery). */
export const sinceNow = "now"

/** The header that asks for an upstream's reply (Upstream.ts). */
export const upstreamReplyHeader = "upstream-reply"

/** The HTTP transports' default paths (docs/transports.md). */
export const HttpPath = {
  sse: "/sse",
  poll: "/poll",
  send: "/send"
} as const

/** The HTTP transports' query parameters. */
export const HttpQuery = {
  /** The id of the connection (`POST /send`, `DELETE /send`, `GET /poll` after the first). */
  connection: "connection",
  /** The number of the last frame a poll has taken. */
  cursor: "cursor",
  /** On `GET /sse`: the id of the last event read, for a client that cannot set `Last-Event-ID`. */
  lastEventId: "lastEventId",
  /** On a new SSE or long-poll connection: the channels to subscribe to, separated by spaces or commas. */
  subscribe: "subscribe",
  /** On a new SSE or long-poll connection: `<channel>:<epoch>:<offset>` or `<channel>:now`, once per channel. */
  since: "since",
  /** On a new connection of any transport (the WebSocket's URL too): its connection token. */
  token: "token"
} as const

/** The HTTP headers the HTTP transports give a meaning to. */
export const HttpHeader = {
  /** On a `429` or `503`: the seconds to wait before asking again. */
  retryAfter: "retry-after",
  /**
   * On the `204` of a `POST /publish`: where the published channels that keep
   * history put the message, as an acknowledgement's `positions` header says it.
   */
  positions: "lhttp-positions",
  /** On a `GET /sse` that resumes a stream: the id of the last event read (`<connection>:<n>`). */
  lastEventId: "last-event-id"
} as const

/** The control events of an SSE stream (their data never starts with the version). */
export const StreamEvent = {
  /** The connection is open (or resumed): its id. */
  connected: "connected",
  /** The server does not know the connection to resume: the `connected` after it is a new one. */
  reset: "reset",
  /** The connection ended: `{"code":…,"reason":…}`. */
  close: "close",
  /** Frames the server no longer held: `{"from":…,"to":…}`. */
  gap: "gap"
} as const
