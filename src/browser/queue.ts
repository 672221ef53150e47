/**
 * The browser SDK's sends waiting for the connection, in the order the app
 * made them: its messages (sent after the re-subscriptions of the next open),
 * bounded by option `maxQueue`, and the subscriptions it made meanwhile. A new
 * connection subscribes again from what was noted (subscriptions.ts), so it
 * takes only the messages; an SSE stream or poll that resumes its connection
 * takes everything, since that connection lacks what was subscribed meanwhile.
 */
import type { Unsent } from "./httpLink.ts"
import { LhttpError, type Message } from "./message.ts"

/** What waited for the connection. */
export type Waiting =
  /** A message's text; `onlySubscribes`: it does nothing but subscribe (not bounded, not for a new connection). */
  | {
    readonly _tag: "Message"
    readonly text: string
    readonly id: string | undefined
    readonly onlySubscribes: boolean
  }
  /** A private channel's subscription (`{ token: true }`), without its token: sent with a fresh one. */
  | { readonly _tag: "Private"; readonly subscribe: Message }

/** Whether an item is a message a new connection sends: not a subscription. */
const isMessage = (item: Waiting): item is Extract<Waiting, { readonly _tag: "Message" }> =>
  item._tag === "Message" && !item.onlySubscribes

/** What waits for the connection, oldest first. */
export class Queue {
  readonly #max: number
  #items: Array<Waiting> = []

  /** `max`: how many messages may wait (the subscriptions are not counted: they are noted anyway). */
  constructor(max: number) {
    this.#max = max
  }

  /**
   * Queues a message's text; throws an {@link LhttpError} `QueueFull` past `max` (unless it
   * `onlySubscribes`).
   */
  add(text: string, id: string | undefined, onlySubscribes = false): void {
    if (!onlySubscribes && this.#items.filter(isMessage).length >= this.#max) {
      throw new LhttpError(0, "QueueFull", "too many messages wait for the connection")
    }
    this.#items.push({ _tag: "Message", text, id, onlySubscribes })
  }

  /** Queues a private channel's subscription, to send with a fresh token. */
  addPrivate(subscribe: Message): void {
    this.#items.push({ _tag: "Private", subscribe })
  }

  /** Takes the request `id` out (too late to send it). */
  drop(id: string): void {
    this.#items = this.#items.filter((item) => item._tag !== "Message" || item.id !== id)
  }

  /** Puts what a connection had not handed to the server back first. */
  putBack(items: ReadonlyArray<Unsent>): void {
    this.#items.unshift(...items.map(({ id, text }) => ({ _tag: "Message" as const, text, id, onlySubscribes: false })))
  }

  /**
   * Empties it: gives the messages, to send on a new connection (or to drop); not the
   * subscriptions, which a new connection makes again anyway.
   */
  take(): Array<Unsent> {
    return this.#items.splice(0).filter(isMessage).map(({ id, text }) => ({ text, id }))
  }

  /** Empties it: gives everything, in order, for the connection that resumed. */
  takeAll(): Array<Waiting> {
    return this.#items.splice(0)
  }
}
