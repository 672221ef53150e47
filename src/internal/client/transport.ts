/**
 * The seam between the Effect client and the wire: one small interface that
 * the WebSocket transport and the HTTP transports (Server-Sent Events,
 * long-poll) implement. The client (`LhttpClient.ts`) holds everything else:
 * subscriptions, requests by id, the send buffer, states and the reconnect
 * loop with its backoff.
 *
 * Platform-neutral: no Node module here or in the transports beside it.
 */
import { Data, type Effect, type Scope } from "effect"

/**
 * Why a send failed, as the client reports it (it becomes a `ClientError`
 * with the same reason).
 */
export class SendError extends Data.TaggedError("SendError")<{
  readonly reason: "NotConnected" | "Rejected" | "TooLarge"
  readonly message: string
  /** For `Rejected`: the status the server answered; for `NotConnected`, the `5xx` that made the send fail. */
  readonly status?: number | undefined
  /** For `Rejected`: the reason the server gave. */
  readonly serverReason?: string | undefined
}> {}

/** Why a connection could not be opened (the client waits and tries again). */
export class OpenError extends Data.TaggedError("OpenError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/** The connection is down: what a send fails with when nothing else is known. */
export const notConnected = (message = "the connection is down"): SendError =>
  new SendError({ reason: "NotConnected", message })

/** How the server closed a connection: its close code and reason. */
export interface Close {
  readonly code: number
  readonly reason: string
}

/** One open connection (or one resumed). */
export interface Link {
  /**
   * Whether this is the connection the client had before, resumed with its
   * subscriptions in place (an SSE stream that reconnected with
   * `Last-Event-ID`); false for a new connection, which the client
   * subscribes again.
   */
  readonly resumed: boolean
  /**
   * Sends one frame's text. Sends are taken in the order they are made; one
   * succeeds once the transport has taken the frame (over HTTP: `202`).
   */
  readonly send: (text: string) => Effect.Effect<void, SendError>
  /**
   * Hands every frame the server sends to `onFrame`, in order, until the
   * connection ends or breaks; then it returns how the server closed it (its
   * code and reason: a wait it asks for before the next connection,
   * `reconnect:<ms>`, is in the reason), undefined when it broke.
   */
  readonly read: (onFrame: (frame: string | Uint8Array) => void) => Effect.Effect<Close | undefined>
}

/** A way to hold a connection to one server. */
export interface Transport {
  /**
   * Opens a connection, or resumes the last one where the transport can,
   * within the open timeout. Closing the scope lets go of it (a transport
   * that can resume keeps what it needs to).
   */
  readonly open: Effect.Effect<Link, OpenError, Scope.Scope>
  /** The client closes for good: tell the server (`DELETE /send`), if it has a connection to forget. */
  readonly close: Effect.Effect<void>
}
