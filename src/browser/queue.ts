/**
 * The browser SDK's messages waiting for the connection (sent after the
 * re-subscriptions of the next open), bounded by option `maxQueue`.
 */
import type { Unsent } from "./httpLink.ts"
import { LhttpError } from "./message.ts"

/** The messages waiting for the connection, oldest first. */
export class Queue {
  readonly #max: number
  #items: Array<Unsent> = []

  /** `max`: how many may wait. */
  constructor(max: number) {
    this.#max = max
  }

  /** Queues a message's text; throws an {@link LhttpError} `QueueFull` past `max`. */
  add(text: string, id: string | undefined): void {
    if (this.#items.length >= this.#max) {
      throw new LhttpError(0, "QueueFull", "too many messages wait for the connection")
    }
    this.#items.push({ text, id })
  }

  /** Takes the request `id` out (too late to send it). */
  drop(id: string): void {
    this.#items = this.#items.filter((item) => item.id !== id)
  }

  /** Puts what a connection had not handed to the server back first. */
  putBack(items: ReadonlyArray<Unsent>): void {
    this.#items.unshift(...items.map(({ id, text }) => ({ text, id })))
  }

  /** Takes every message, to send now. */
  take(): Array<Unsent> {
    return this.#items.splice(0)
  }
}
