/**
 * The NATS bus's link to NATS: where its connection stands, what a publish
 * does in each state, and when the reconnect buffer is replayed. The bus
 * dials and re-checks the history stream (`bus.ts`); the link follows the
 * connection's status and answers the publishes.
 */
import type { NatsConnection, Status } from "@nats-io/transport-node"
import { Effect } from "effect"
import { BusError } from "../../Bus.ts"
import { ReplayBuffer } from "./replayBuffer.ts"

/**
 * Where the link stands:
 * - `connecting`: never connected yet; publishes fail.
 * - `connected`: publishes go to NATS at once.
 * - `disconnected`: the connection is lost and the client is reconnecting; publishes wait in the buffer.
 * - `holding`: reconnected, subscriptions restored; publishes still wait in the buffer until `replayDelay` has passed.
 * - `closed`: the bus is shut down, or the client gave up; publishes fail.
 */
type State = "connecting" | "connected" | "disconnected" | "holding" | "closed"

const unavailable = (message: string) => Effect.fail(new BusError({ reason: "Unavailable", message }))

const encoder = new TextEncoder()

/** How a link buffers, replays and logs. */
interface Settings {
  /** The bounds of the reconnect buffer. */
  readonly maxPendingBytes: number
  readonly maxPendingMessages: number
  /** After a reconnect, how long (ms) publishes keep waiting before the buffer is replayed. */
  readonly replayDelay: number
  /** Logs a state change (once each). */
  readonly log: (message: string) => void
}

/** The link of one bus. */
export class Link {
  readonly #buffer: ReplayBuffer
  readonly #replayDelay: number
  readonly #log: (message: string) => void
  #state: State = "connecting"
  #connection: NatsConnection | undefined
  #replayTimer: ReturnType<typeof setTimeout> | undefined

  constructor(settings: Settings) {
    this.#buffer = new ReplayBuffer(settings.maxPendingBytes, settings.maxPendingMessages)
    this.#replayDelay = settings.replayDelay
    this.#log = settings.log
  }

  /** Where it stands. */
  get state(): State {
    return this.#state
  }

  /** The connection, once the first one opened (until the link is closed). */
  get connection(): NatsConnection | undefined {
    return this.#connection
  }

  /** Whether publishes are accepted: connected, or reconnected and holding. */
  get isReady(): boolean {
    return this.#state === "connected" || this.#state === "holding"
  }

  /** Holds the first connection while it is set up, so that closing the link closes it. */
  hold(nc: NatsConnection): void {
    this.#connection = nc
  }

  /** The first connection is set up: publishes go to it from now on. */
  open(nc: NatsConnection): void {
    this.#state = "connected"
    this.#log(`NATS: connected to ${nc.getServer()}`)
  }

  /**
   * Follows a status of the connection: a disconnect buffers the publishes;
   * a reconnect holds them for `replayDelay`, then replays them; a close
   * (the client gave up) drops them.
   */
  follow(status: Status): void {
    switch (status.type) {
      case "disconnect":
        if (this.isReady) {
          this.#log(`NATS: disconnected from ${status.server}; buffering publishes`)
          this.#cancelReplay()
          this.#state = "disconnected"
        }
        break
      case "reconnect":
        if (this.#state === "disconnected") {
          this.#log(`NATS: reconnected to ${status.server}`)
          this.#state = "holding"
          this.#replayTimer = setTimeout(() => this.#replay(), this.#replayDelay)
        }
        break
      case "close": {
        this.#cancelReplay()
        const dropped = this.#buffer.clear()
        if (this.#state !== "closed" && dropped > 0) {
          this.#log(`NATS: connection closed; ${dropped} buffered messages dropped`)
        }
        this.#state = "closed"
        break
      }
    }
  }

  /** Publishes `payload` on `subject`: at once, into the buffer, or refused, as the state says. */
  publish(subject: string, payload: string): Effect.Effect<void, BusError> {
    if (this.#state === "disconnected" || this.#state === "holding") return this.#wait(subject, payload)
    const nc = this.#connection
    if (this.#state !== "connected" || nc === undefined) {
      return unavailable(this.#state === "closed" ? "the NATS connection is closed" : "not connected to NATS")
    }
    try {
      nc.publish(subject, payload)
      return Effect.void
    } catch (cause) {
      return Effect.fail(new BusError({ reason: "PublishFailed", message: "NATS refused the publish", cause }))
    }
  }

  /**
   * Publishes `payload` on `subject` and answers once NATS has it: with
   * `store`, once the stream stored it (its sequence); without, once the
   * server answered a flush sent after it. Sent at once when connected.
   * While disconnected or holding: with `store`, refused (`Unavailable`,
   * nothing sent: a message replayed from the buffer is published as it
   * came, and the stream may not store it, as during the election of its
   * leader, so it could not be acknowledged as kept); without, taken as
   * `publish` takes it, into the reconnect buffer, or refused when the
   * buffer is full. No answer within `timeout` ms fails `Unconfirmed`: the
   * message was sent and may have been published.
   */
  publishAcknowledged(
    subject: string,
    payload: string,
    timeout: number,
    store: ((nc: NatsConnection, subject: string, payload: string, timeout: number) => Promise<number>) | undefined
  ): Effect.Effect<number | undefined, BusError> {
    if (this.#state === "disconnected" || this.#state === "holding") {
      return store === undefined
        ? Effect.as(this.#wait(subject, payload), undefined)
        : unavailable("NATS is disconnected: the message was not sent (the stream cannot acknowledge it now)")
    }
    const nc = this.#connection
    if (this.#state !== "connected" || nc === undefined) {
      return unavailable(this.#state === "closed" ? "the NATS connection is closed" : "not connected to NATS")
    }
    let answer: Promise<number | undefined>
    try {
      if (store !== undefined) answer = store(nc, subject, payload, timeout)
      else {
        nc.publish(subject, payload)
        answer = nc.flush().then(() => undefined)
      }
    } catch (cause) {
      return Effect.fail(new BusError({ reason: "PublishFailed", message: "NATS refused the publish", cause }))
    }
    const unconfirmed = (cause: unknown) =>
      new BusError({ reason: "Unconfirmed", message: `NATS did not confirm the publish: ${String(cause)}`, cause })
    return Effect.tryPromise({ try: () => answer, catch: unconfirmed }).pipe(
      Effect.timeoutOrElse({
        duration: timeout,
        orElse: () => Effect.fail(unconfirmed(`no answer within ${timeout} ms`))
      })
    )
  }

  /**
   * Closes the link: what waits for the replay goes out now, what waits for
   * a reconnect is dropped (and logged); the connection is drained when
   * there is a server to drain to, closed otherwise.
   */
  async close(): Promise<void> {
    const nc = this.#connection
    if (this.#state === "holding") this.#replay()
    const wasConnected = this.#state === "connected"
    this.#cancelReplay()
    const dropped = this.#buffer.clear()
    if (dropped > 0) this.#log(`NATS: shutting down while disconnected; ${dropped} buffered messages dropped`)
    this.#state = "closed"
    this.#connection = undefined
    if (nc === undefined || nc.isClosed()) return
    if (wasConnected) await nc.drain().catch(() => nc.close())
    else await nc.close()
  }

  // while disconnected: into the buffer, or refused when it is full
  #wait(subject: string, payload: string): Effect.Effect<void, BusError> {
    const data = encoder.encode(payload)
    const maxPayload = this.#connection?.info?.max_payload
    if (maxPayload !== undefined && data.length > maxPayload) {
      return Effect.fail(
        new BusError({
          reason: "PublishFailed",
          message: `the payload exceeds NATS's max_payload (${maxPayload} bytes)`
        })
      )
    }
    const wasFull = this.#buffer.full
    if (this.#buffer.add(subject, data)) return Effect.void
    if (!wasFull) {
      this.#log(`NATS: the reconnect buffer is full (${this.#buffer.size} messages); publishes fail until it is sent`)
    }
    return unavailable("NATS is disconnected and the reconnect buffer is full")
  }

  // Sends the buffer, in order, then flushes. Synchronous up to the flush: nothing published later can
  // overtake it, since the state becomes `connected` only once every buffered message is with the client.
  #replay(): void {
    this.#cancelReplay()
    const nc = this.#connection
    if (this.#state !== "holding" || nc === undefined) return
    const count = this.#buffer.size
    const refused = this.#buffer.replay((subject, data) => nc.publish(subject, data))
    this.#state = "connected"
    if (count === 0) return
    this.#log(`NATS: sent ${count - refused} messages published while disconnected`)
    if (refused > 0) this.#log(`NATS: the client refused ${refused} buffered messages`)
    nc.flush().catch(() => this.#log("NATS: the connection dropped while sending the buffer; some of it may be lost"))
  }

  #cancelReplay(): void {
    if (this.#replayTimer !== undefined) clearTimeout(this.#replayTimer)
    this.#replayTimer = undefined
  }
}
