/**
 * The browser SDK's sends on an open connection that wait behind a private
 * subscription (`{ token: true }`) whose subscription token has not come yet:
 * the subscription and what the app sent after it go out in the order the app
 * made them, once the tokens before them came. Bounded by option `maxQueue`,
 * as the queue of a connection that is down.
 */
import type { Unsent } from "./httpLink.ts"
import { LhttpError } from "./message.ts"

interface Entry {
  /** undefined: a private subscription whose token has not come yet. */
  text: string | undefined
  readonly id: string | undefined
  /** A message that does nothing but subscribe: sent again anyway on a new connection. */
  readonly onlySubscribes: boolean
}

/** What waits on one connection, oldest first. */
export class Outbox {
  readonly #max: number
  #entries: Array<Entry> = []

  /** `max`: how many messages may wait behind the subscriptions. */
  constructor(max: number) {
    this.#max = max
  }

  /** Whether a send waits: a private subscription sent before it still waits for its token. */
  get waiting(): boolean {
    return this.#entries.length > 0
  }

  /**
   * Holds the place of a private subscription. Returns what gives it its text once its token
   * came, which returns what may go now, in order: the entries up to the next subscription still
   * waiting for its token.
   */
  hold(): (text: string) => Array<Unsent> {
    const entry: Entry = { text: undefined, id: undefined, onlySubscribes: true }
    this.#entries.push(entry)
    return (text) => {
      if (!this.#entries.includes(entry)) return [] // taken: its connection closed
      entry.text = text
      let ready = 0
      while (ready < this.#entries.length && this.#entries[ready]!.text !== undefined) ready++
      return this.#entries.splice(0, ready).map(({ id, text }) => ({ id, text: text! }))
    }
  }

  /**
   * A message that waits behind a subscription; throws an {@link LhttpError} `QueueFull` past `max`
   * (unless not `bounded`: messages that were in the queue already).
   */
  add(text: string, id: string | undefined, onlySubscribes: boolean, bounded = true): void {
    if (bounded && this.#entries.filter((entry) => entry.text !== undefined).length >= this.#max) {
      throw new LhttpError(0, "QueueFull", "too many messages wait for the connection")
    }
    this.#entries.push({ text, id, onlySubscribes })
  }

  /** Takes the request `id` out (too late to send it). */
  drop(id: string): void {
    this.#entries = this.#entries.filter((entry) => entry.id !== id)
  }

  /**
   * Empties it (the connection closed, or the client): gives back what must still go on the next
   * connection, in order; not the subscriptions, which every new connection makes again.
   */
  take(): Array<Unsent> {
    return this.#entries.splice(0).flatMap(({ id, onlySubscribes, text }) =>
      onlySubscribes || text === undefined ? [] : [{ id, text }]
    )
  }
}
