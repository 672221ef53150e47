/**
 * The NATS bus's reconnect buffer: what is published while the connection is
 * lost waits here (the NATS client's own buffer is reset on every reconnect
 * attempt, so it loses it), bounded in bytes and in messages, and is replayed
 * in publish order once the connection is back. A publish that does not fit
 * is refused whole; nothing already accepted is dropped to make room.
 */

/** What a buffered message costs beyond its subject and payload, in bytes. */
export const messageOverhead = 32

/** A publish waiting for the connection. */
interface Pending {
  readonly subject: string
  readonly data: Uint8Array
}

/** The reconnect buffer, bounded by `maxBytes` and `maxMessages`. */
export class ReplayBuffer {
  readonly #maxBytes: number
  readonly #maxMessages: number
  #pending: Array<Pending> = []
  #bytes = 0
  #full = false

  constructor(maxBytes: number, maxMessages: number) {
    this.#maxBytes = maxBytes
    this.#maxMessages = maxMessages
  }

  /** The messages waiting. */
  get size(): number {
    return this.#pending.length
  }

  /**
   * Whether a publish was refused since the buffer was last emptied: the
   * first refusal is the one worth a log line.
   */
  get full(): boolean {
    return this.#full
  }

  /**
   * Adds a publish, or answers false when it does not fit: its payload's
   * bytes, its subject and {@link messageOverhead} would pass `maxBytes`, or
   * `maxMessages` are already waiting.
   */
  add(subject: string, data: Uint8Array): boolean {
    const cost = data.length + subject.length + messageOverhead
    if (this.#bytes + cost > this.#maxBytes || this.#pending.length >= this.#maxMessages) {
      this.#full = true
      return false
    }
    this.#pending.push({ subject, data })
    this.#bytes += cost
    return true
  }

  /**
   * Empties the buffer into `publish`, in publish order, and answers how many
   * messages `publish` refused (by throwing).
   */
  replay(publish: (subject: string, data: Uint8Array) => void): number {
    const batch = this.#pending
    this.clear()
    let refused = 0
    for (const message of batch) {
      try {
        publish(message.subject, message.data)
      } catch {
        refused++
      }
    }
    return refused
  }

  /** Drops what waits, answering how many messages that was. */
  clear(): number {
    const dropped = this.#pending.length
    this.#pending = []
    this.#bytes = 0
    this.#full = false
    return dropped
  }
}
