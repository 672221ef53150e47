/**
 * The NATS bus's subscriptions: one NATS subscription per channel per
 * process (the Hub refcounts above), never a wildcard, on the subject
 * `<prefix><channel>`. A channel whose subscribers want positions, on a bus
 * with a JetStream history, is subscribed apart: to the stream's republished
 * copy of each message it stored, whose headers carry the stream sequence
 * (the position) beside the text. Subscriptions open once the bus is
 * connected (and the stream checked); the NATS client restores them after a
 * reconnect.
 */
import type { NatsConnection, Subscription } from "@nats-io/transport-node"
import type { Position } from "../../History.ts"

/** Receives a channel's payloads; with positions, each with its position and the sequence before it. */
type Handler = (payload: string, position: Position | undefined, previous?: number | undefined) => void

// the header in which JetStream's republished copy of a message carries its stream sequence
const sequenceHeader = "Nats-Sequence"
// and the sequence of the message before it on the same subject (0 for the first)
const previousHeader = "Nats-Last-Sequence"

/** Where a history stream republishes, and its epoch while it numbers (undefined otherwise). */
interface Positions {
  readonly republishPrefix: string
  readonly epoch: () => string | undefined
}

interface Entry {
  readonly channel: string
  readonly handlers: Set<Handler>
  /** Called after a reconnect: what was published meanwhile may be missing. */
  readonly resumes: Set<() => void>
  /** Whether the channel is delivered as the history stream numbered it (when it numbers). */
  readonly positioned: boolean
  subscription: Subscription | undefined
}

const decoder = new TextDecoder()

const close = (entry: Entry) => {
  if (entry.subscription !== undefined && !entry.subscription.isClosed()) entry.subscription.unsubscribe()
  entry.subscription = undefined
}

/** The subscriptions of one bus: `positions` when it has a history stream. */
export class Subscriptions {
  readonly #prefix: string
  readonly #positions: Positions | undefined
  readonly #plain = new Map<string, Entry>()
  readonly #positioned = new Map<string, Entry>()
  #connection: NatsConnection | undefined

  constructor(prefix: string, positions: Positions | undefined) {
    this.#prefix = prefix
    this.#positions = positions
  }

  /** Opens every subscription on `nc`, and from now on each new one at once. */
  attach(nc: NatsConnection): void {
    this.#connection = nc
    for (const entry of this.#plain.values()) this.#open(entry)
    for (const entry of this.#positioned.values()) this.#open(entry)
  }

  /** Opens nothing more (the bus is closed). */
  detach(): void {
    this.#connection = undefined
  }

  /**
   * Adds a subscriber to a channel (opening the channel's subscription when
   * it is the first); `positions` asks for positions, which only a bus with
   * a history stream gives.
   */
  add(channel: string, handler: Handler, onResume: (() => void) | undefined, positions: boolean): void {
    const table = this.#table(positions)
    let entry = table.get(channel)
    const first = entry === undefined
    if (entry === undefined) {
      entry = {
        channel,
        handlers: new Set(),
        resumes: new Set(),
        positioned: table === this.#positioned,
        subscription: undefined
      }
      table.set(channel, entry)
    }
    entry.handlers.add(handler)
    if (onResume !== undefined) entry.resumes.add(onResume)
    if (first) this.#open(entry)
  }

  /** Removes a subscriber (closing the channel's subscription when it was the last). */
  remove(channel: string, handler: Handler, onResume: (() => void) | undefined, positions: boolean): void {
    const table = this.#table(positions)
    const entry = table.get(channel)
    if (entry === undefined) return
    entry.handlers.delete(handler)
    if (onResume !== undefined) entry.resumes.delete(onResume)
    if (entry.handlers.size > 0) return
    table.delete(channel)
    close(entry)
  }

  /** The stream's numbering changed on `nc` (another epoch, or none): the positioned subscriptions follow it. */
  renumber(nc: NatsConnection): void {
    if (this.#connection !== nc) return
    for (const entry of this.#positioned.values()) {
      close(entry)
      this.#open(entry)
    }
  }

  /** After a reconnect: tells the positioned subscribers to look for what they missed meanwhile. */
  resume(): void {
    for (const entry of this.#positioned.values()) {
      for (const resume of entry.resumes) resume()
    }
  }

  #table(positions: boolean): Map<string, Entry> {
    return positions && this.#positions !== undefined ? this.#positioned : this.#plain
  }

  #open(entry: Entry): void {
    const nc = this.#connection
    if (nc === undefined || nc.isClosed()) return
    const subject = this.#prefix + entry.channel
    const positions = entry.positioned ? this.#positions : undefined
    const epoch = positions?.epoch()
    if (positions === undefined || epoch === undefined) {
      entry.subscription = nc.subscribe(subject, {
        callback: (error, message) => {
          if (error !== null) return
          const payload = decoder.decode(message.data)
          for (const handler of entry.handlers) handler(payload, undefined)
        }
      })
      return
    }
    // the stream's copy of each message it stored, with its sequence beside the text
    entry.subscription = nc.subscribe(positions.republishPrefix + subject, {
      callback: (error, message) => {
        if (error !== null) return
        const payload = decoder.decode(message.data)
        const offset = Number(message.headers?.get(sequenceHeader))
        const position = Number.isSafeInteger(offset) && offset > 0 ? { epoch, offset } : undefined
        const before = Number(message.headers?.get(previousHeader))
        const previous = position !== undefined && Number.isSafeInteger(before) && before >= 0 ? before : undefined
        for (const handler of entry.handlers) handler(payload, position, previous)
      }
    })
  }
}
