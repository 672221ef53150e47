/**
 * The browser SDK's requests waiting for their replies, by `id`: each with
 * its timeout, and the connection it went out on (a connection that closes
 * fails the requests it carried).
 */
import { LhttpError } from "./message.ts"

interface Waiting<A, Conn> {
  readonly resolve: (reply: A) => void
  readonly reject: (error: LhttpError) => void
  readonly timer: ReturnType<typeof setTimeout> | undefined
  conn: Conn | undefined
}

/** The requests of one client waiting for a reply (`A`), by id. */
export class Requests<A, Conn> {
  readonly #waiting = new Map<string, Waiting<A, Conn>>()

  /** Whether a request with this id waits. */
  has(id: string): boolean {
    return this.#waiting.has(id)
  }

  /** Fails every request (the client closed). */
  rejectAll(error: (id: string) => LhttpError): void {
    for (const id of Array.from(this.#waiting.keys())) this.reject(id, error(id))
  }

  /**
   * Waits for the reply to `id`: rejects with reason `Timeout` (`what` says
   * what was not answered) after `timeout` ms, when `onTimeout` runs first.
   */
  wait(id: string, timeout: number, what: string, conn?: Conn, onTimeout?: () => void): Promise<A> {
    return new Promise((resolve, reject) => {
      const timer = Number.isFinite(timeout)
        ? setTimeout(() => {
          this.#waiting.delete(id)
          onTimeout?.()
          reject(new LhttpError(0, "Timeout", `no ${what} ${id} within ${timeout} ms`, id))
        }, timeout)
        : undefined
      this.#waiting.set(id, { resolve, reject, timer, conn })
    })
  }

  /** Notes the connection the request went out on. */
  sentOn(id: string | undefined, conn: Conn): void {
    const waiting = id === undefined ? undefined : this.#waiting.get(id)
    if (waiting !== undefined) waiting.conn = conn
  }

  /** Settles `id` with its reply. False when nothing waits for it. */
  resolve(id: string, reply: A): boolean {
    const waiting = this.#take(id)
    waiting?.resolve(reply)
    return waiting !== undefined
  }

  /** Fails `id`. False when nothing waits for it. */
  reject(id: string, error: LhttpError): boolean {
    const waiting = this.#take(id)
    waiting?.reject(error)
    return waiting !== undefined
  }

  /**
   * Fails every request `conn` carried: it closed before their replies;
   * except those it gives back `unsent` (they go out on the next connection).
   */
  closed(conn: Conn, unsent: ReadonlyArray<{ readonly id: string | undefined }>): void {
    for (const { id } of unsent) {
      const waiting = id === undefined ? undefined : this.#waiting.get(id)
      if (waiting?.conn === conn) waiting.conn = undefined
    }
    for (const [id, waiting] of Array.from(this.#waiting)) {
      if (waiting.conn !== conn) continue
      this.#take(id)
      waiting.reject(new LhttpError(0, "Closed", `the connection closed before the reply to ${id}`, id))
    }
  }

  #take(id: string): Waiting<A, Conn> | undefined {
    const waiting = this.#waiting.get(id)
    if (waiting === undefined) return undefined
    this.#waiting.delete(id)
    clearTimeout(waiting.timer)
    return waiting
  }
}
