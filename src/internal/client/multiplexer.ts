/**
 * Requests by id, multiplexed over the one connection: each request gets a
 * fresh `id`, and the frame that echoes that `id` (an error frame included)
 * resumes the request that waits for it. Requests complete in the order the
 * server answers them. A connection that ends fails the requests it carried
 * (`Closed`: their answers cannot come on another one), as the browser SDK's
 * do; those still waiting to be sent go out on the next connection.
 */
import { Deferred, Duration, Effect } from "effect"
import type * as Message from "../../Message.ts"
import { answeredId } from "../wire/answers.ts"
import { ClientError } from "./clientError.ts"

/** A request waiting for its answer, and the connection it went out on (none while not sent). */
interface Waiting {
  readonly answer: Deferred.Deferred<Message.Message, ClientError>
  link: object | undefined
}

/** The requests in flight, by id. */
export class Multiplexer {
  #sequence = 0
  readonly #waiting = new Map<string, Waiting>()

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
      this.#waiting.set(id, { answer, link: undefined })
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

  /** Notes the connection a request went out on (undefined: kept, to go out on the next one). */
  sentOn(id: string, link: object | undefined): void {
    const waiting = this.#waiting.get(id)
    if (waiting !== undefined) waiting.link = link
  }

  /** The requests kept while there was no connection went out on `link`. */
  flushedOn(link: object): void {
    for (const waiting of this.#waiting.values()) waiting.link ??= link
  }

  /** `link` ended: the requests it carried fail `Closed` (whether the server took them is not known). */
  ended(link: object): void {
    for (const [id, waiting] of this.#waiting) {
      if (waiting.link !== link) continue
      this.#waiting.delete(id)
      Deferred.doneUnsafe(
        waiting.answer,
        Effect.fail(new ClientError({ reason: "Closed", message: `the connection closed before the answer to ${id}` }))
      )
    }
  }

  /** Hands a received frame to the request whose `id` it echoes, if one waits (a delivery answers none). */
  answer(message: Message.Message): void {
    if (message._tag === "Notify") return
    const id = message._tag === "Failure" ? message.id : answeredId(message)
    if (id === undefined) return
    const waiting = this.#waiting.get(id)
    if (waiting === undefined) return
    this.#waiting.delete(id)
    Deferred.doneUnsafe(waiting.answer, Effect.succeed(message))
  }

  /** Fails every request in flight with `error` (the client closed). */
  failAll(error: ClientError): void {
    for (const waiting of this.#waiting.values()) Deferred.doneUnsafe(waiting.answer, Effect.fail(error))
    this.#waiting.clear()
  }
}
