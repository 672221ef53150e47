/**
 * What a JetStream history adds to the NATS bus: a stream that records the
 * bus's own subjects and numbers what it stores, checked on every
 * connection; and where that stands (not known yet, numbered in an epoch,
 * or off on a NATS without JetStream).
 */
import type { NatsConnection } from "@nats-io/transport-node"

/**
 * A stream that records the bus's own subjects and republishes each message
 * it stored, with its sequence in a header, to `republishPrefix` + the
 * subject.
 */
export interface Numbering {
  /**
   * Makes sure the stream is there, on every connection (the first and each
   * reconnect): answers its epoch, or undefined when this NATS cannot keep it
   * (no JetStream). Fails on anything else (tried again after a while).
   */
  readonly setup: (nc: NatsConnection) => Promise<string | undefined>
  /** Where the stream republishes what it stored. */
  readonly republishPrefix: string
  /** How often (ms) a connected bus checks the stream again (one deleted while NATS stays up is made again). */
  readonly checkInterval: number
  /**
   * Publishes to the stream and answers its sequence once it stored the
   * message (a JetStream publish: the message is sent when this is called).
   */
  readonly store: (nc: NatsConnection, subject: string, payload: string, timeout: number) => Promise<number>
  /**
   * The subject on which JetStream says the stream has a new leader: what a
   * leader that died took with it (a stored message it had not republished
   * yet) is looked for then.
   */
  readonly leaderElected: string
}

/** Where the numbering stands: not known yet, a stream with its epoch, or none on this NATS. */
export type NumberingState =
  | { readonly _tag: "Pending" }
  | { readonly _tag: "Numbered"; readonly epoch: string }
  | { readonly _tag: "Off" }

/** Not known yet: before the first check, and on a bus without a history. */
export const pending: NumberingState = { _tag: "Pending" }

/**
 * Where one bus's numbering stands, as its checks of the stream found it.
 * `renumbered` is told when a check on a connection changed it (on or off,
 * or another epoch): the subscriptions that depend on it follow.
 */
export class Tracker {
  readonly #numbering: Numbering
  readonly #renumbered: (nc: NatsConnection) => void
  #state: NumberingState = pending
  #timer: ReturnType<typeof setInterval> | undefined

  constructor(numbering: Numbering, renumbered: (nc: NatsConnection) => void) {
    this.#numbering = numbering
    this.#renumbered = renumbered
  }

  /** Where it stands. */
  get state(): NumberingState {
    return this.#state
  }

  /** The stream's epoch while it numbers, undefined otherwise. */
  get epoch(): string | undefined {
    return this.#state._tag === "Numbered" ? this.#state.epoch : undefined
  }

  /** Checks the stream on `nc`, making it when it is missing. */
  async check(nc: NatsConnection): Promise<void> {
    const epoch = await this.#numbering.setup(nc)
    const before = this.epoch
    const wasTag = this.#state._tag
    this.#state = epoch === undefined ? { _tag: "Off" } : { _tag: "Numbered", epoch }
    if (this.#state._tag !== wasTag || this.epoch !== before) this.#renumbered(nc)
  }

  /**
   * Checks the stream on `nc` again every `checkInterval`, while `live` says
   * so: one deleted while NATS stays up is made again. `failed` hears of a
   * check that failed.
   */
  checkEvery(nc: NatsConnection, live: () => boolean, failed: (cause: unknown) => void): void {
    this.#timer = setInterval(() => {
      if (live()) this.check(nc).catch(failed)
    }, this.#numbering.checkInterval)
    this.#timer.unref?.()
  }

  /** Stops the checks of {@link checkEvery}. */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer)
    this.#timer = undefined
  }
}
