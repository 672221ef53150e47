/**
 * The Effect client's session: the state both clients share
 * (internal/wire/sessionState.ts), kept from the frames the client receives,
 * its changes told to the client, and the restore on each new server
 * connection (docs/requests-and-sessions.md).
 */
import { Duration, Effect, Fiber } from "effect"
import * as Frame from "../../Frame.ts"
import type * as Message from "../../Message.ts"
import { type Change, type Session, SessionState } from "../wire/sessionState.ts"
import type { ClientError } from "./clientError.ts"
import type { Multiplexer } from "./multiplexer.ts"
import { type Link, notConnected, type SendError } from "./transport.ts"

/** The session of one client. */
export class SessionTracker {
  readonly #state: SessionState
  readonly #tell: (change: Change) => void

  /** `key`: a session to restore on the first connection, if any; `tell`: hears every change. */
  constructor(key: string | undefined, tell: (change: Change) => void) {
    this.#state = new SessionState(key)
    this.#tell = tell
  }

  /** The session as the server last told it. */
  get current(): Session | undefined {
    return this.#state.current
  }

  /** The key a new connection restores, if any. */
  get key(): string | undefined {
    return this.#state.key
  }

  /**
   * Keeps what a received frame says of the session: a `session` frame (a
   * session created, updated, restored or closed), or an error frame that
   * refuses the restore in flight (`404 SessionNotFound` forgets the session).
   */
  observe(message: Message.Message): void {
    if (message._tag !== "Failure") this.#told(this.#state.observe(message))
    else if (message.id !== undefined) this.#told(this.#state.refused(message.id, message.reason))
  }

  /**
   * Restores the session on a new connection and waits for the answer (a
   * request runs beside the connection's other messages on the server: what
   * is sent after it must wait, or it could run before the session is
   * attached). Its session frame is `Restored`, `404 SessionNotFound` clears
   * the session (both in `observe`); any other answer, or none within
   * `timeout`, keeps it for the next connection. It fails when the
   * connection ends first (`reading` is done).
   */
  restoreOn(
    link: Link,
    reading: Fiber.Fiber<unknown>,
    requests: Multiplexer,
    timeout: Duration.Input
  ): Effect.Effect<void, ClientError | SendError> {
    return Effect.suspend(() => {
      const id = requests.nextId()
      const { change, frame } = this.#state.restore(id)
      // a key that cannot be sent is no session the server has: forgotten
      this.#told(change)
      if (frame === undefined) return Effect.void
      return requests.request(
        id,
        (answer) =>
          link.send(Frame.render(Frame.make(frame.command, frame.headers, frame.body))).pipe(
            Effect.andThen(
              answer.pipe(
                Effect.asVoid,
                Effect.timeoutOrElse({ duration: Duration.fromInputUnsafe(timeout), orElse: () => Effect.void }),
                Effect.raceFirst(
                  Effect.andThen(Fiber.await(reading), Effect.fail(notConnected("the connection was lost")))
                )
              )
            )
          )
      ).pipe(Effect.ensuring(Effect.sync(() => this.#state.settled(id))))
    })
  }

  #told(change: Change | undefined): void {
    if (change !== undefined) this.#tell(change)
  }
}
