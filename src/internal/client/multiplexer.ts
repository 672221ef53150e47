/**
 * Requests by id, multiplexed over the one connection: each request gets a
 * fresh `id`, and the frame that echoes that `id` (an error frame included)
 * resumes the request that waits for it. Requests complete in the order the
 * server answers them.
 */
import { Deferred, Duration, Effect } from "effect"
import type * as Message from "../../Message.ts"
import { ClientError } from "./clientError.ts"

/** The requests in flight, by id. */
export class Multiplexer {
  #sequence = 0
  readonly #waiting = new Map<string, Deferred.Deferred<Message.Message, ClientError>>()

  /** A fresh request id (`r1`, `r2`, … in base 36). */
  nextId(): string {
    return `r${(++this.#sequence).toString(36)}`
  }

  /**
   * Waits for the frame that answers `id`, from now on (an answer that comes
   * before the request's send returns is kept): `use` sends the request and
   * awaits `answer`. The id is forgotten when `use` ends.
   */
  request<A, E, R>(
    id: string,
    use: (answer: Effect.Effect<Message.Message, ClientError>) => Effect.Effect<A, E, R>
  ): Effect.Effect<A, E, R> {
    return Effect.suspend(() => {
      const answer = Deferred.makeUnsafe<Message.Message, ClientError>()
      this.#waiting.set(id, answer)
      return use(Deferred.await(answer)).pipe(Effect.ensuring(Effect.sync(() => this.#waiting.delete(id))))
    })
  }

  /**
   * Sends a request of `command` with a fresh id (`send` sends its frame) and
   * waits for the frame that echoes it, an error frame included; no answer
   * within `timeout` fails `Timeout`.
   */
  exchange(
    command: string,
    timeout: Duration.Input,
    send: (id: string) => Effect.Effect<void, ClientError>
  ): Effect.Effect<Message.Message, ClientError> {
    return Effect.suspend(() => {
      const id = this.nextId()
      const duration = Duration.fromInputUnsafe(timeout)
      const timedOut = () =>
        new ClientError({ reason: "Timeout", message: `no reply to ${command} within ${Duration.format(duration)}` })
      return this.request(id, (answer) =>
        send(id).pipe(
          Effect.andThen(Effect.timeoutOrElse(answer, { duration, orElse: () => Effect.fail(timedOut()) }))
        ))
    })
  }

  /** Hands a received frame to the request whose `id` it echoes, if one waits. */
  answer(message: Message.Message): void {
    if (message._tag === "Notify" || message.id === undefined) return
    const waiter = this.#waiting.get(message.id)
    if (waiter === undefined) return
    this.#waiting.delete(message.id)
    Deferred.doneUnsafe(waiter, Effect.succeed(message))
  }

  /** Fails every request in flight with `error` (the client closed). */
  failAll(error: ClientError): void {
    for (const waiter of this.#waiting.values()) Deferred.doneUnsafe(waiter, Effect.fail(error))
    this.#waiting.clear()
  }
}
