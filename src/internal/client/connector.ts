/**
 * The Effect client's connection, kept up: the link of the moment (none while
 * it is down) and the frames sent meanwhile (the send buffer), the steps of
 * each connection (subscribe again, restore the session, flush the buffer,
 * read), where what it reads goes, and the loop that opens the next one on
 * the reconnect Schedule (reconnect.ts).
 */
import { type Duration, Effect, Fiber, Result, type Schedule, type Scope } from "effect"
import * as Frame from "../../Frame.ts"
import * as Message from "../../Message.ts"
import { hintedDelay, isTerminalClose } from "../wire/backoff.ts"
import { ClientError, closed, fromSend } from "./clientError.ts"
import type { Multiplexer } from "./multiplexer.ts"
import * as Reconnect from "./reconnect.ts"
import type { SessionTracker } from "./session.ts"
import type { Subscriptions } from "./subscriptions.ts"
import type { Close, Link, Transport } from "./transport.ts"

/** What the connector is given: the transport, its settings and the client's parts. */
interface Settings {
  readonly transport: Transport
  /** The waits before each reconnect; undefined: no reconnect. */
  readonly schedule: Schedule.Schedule<unknown> | undefined
  /** The frames kept while there is no connection. */
  readonly sendBuffer: number
  /** How long the answer to the restore of the session may take. */
  readonly requestTimeout: Duration.Input
  readonly subscriptions: Subscriptions
  readonly session: SessionTracker
  readonly requests: Multiplexer
  /** Takes every frame the server sends that is for the app, decoded, in order. */
  readonly onMessage: (message: Message.Message) => void
  /** Told the connection's state as it changes. */
  readonly onState: (state: "open" | "reconnecting" | "closed") => Effect.Effect<void>
  /** Told how the server closed a connection. */
  readonly onClose: (close: Close) => void
}

/**
 * What the client reads: any number of headers (the server's inbound limit is
 * the server's; a frame it sends may carry more, e.g. 64 published headers and
 * a position), the rule of the wire core the browser SDK follows too.
 */
const inbound = { maxHeaders: Number.POSITIVE_INFINITY }

/** A frame the server sent, decoded; undefined when it is none. */
const decode = (data: string | Uint8Array): Message.Message | undefined => {
  const decoded = typeof data === "string"
    ? Message.decode(data, inbound)
    : Result.flatMap(Frame.parseBytes(data, inbound), (frame) => Message.fromFrame(frame))
  return Result.isSuccess(decoded) ? decoded.success : undefined
}

/** The connection of one client. */
export class Connector {
  readonly #settings: Settings
  readonly #buffered: Array<string> = []
  #link: Link | undefined
  #closed = false

  constructor(settings: Settings) {
    this.#settings = settings
  }

  /** The connection of the moment; undefined while it is down. */
  get link(): Link | undefined {
    return this.#link
  }

  /** Sends a frame's text, or keeps it while there is no connection (as many as the send buffer holds). */
  write(text: string): Effect.Effect<void, ClientError> {
    return Effect.suspend(() => {
      if (this.#closed) return Effect.fail(closed())
      if (this.#link === undefined) {
        if (this.#buffered.length < this.#settings.sendBuffer) {
          this.#buffered.push(text)
          return Effect.void
        }
        return Effect.fail(new ClientError({ reason: "NotConnected", message: "the connection is down" }))
      }
      return this.#link.send(text).pipe(Effect.mapError(fromSend))
    })
  }

  /**
   * Keeps the connection up in the background until the Schedule ends (the
   * client closes) or the scope closes. It returns the effect that closes the
   * client for good: the connection is let go first (interrupting the loop
   * closes its scope), then the server is told.
   */
  start(): Effect.Effect<Effect.Effect<void>, never, Scope.Scope> {
    const { onState, schedule, transport } = this.#settings
    const stop = Effect.suspend(() => {
      this.#closed = true
      this.#link = undefined
      this.#settings.requests.failAll(closed())
      return onState("closed")
    })
    const keepUp = Reconnect.keepUp({
      connection: this.#connection(),
      schedule,
      closed: () => this.#closed,
      reconnecting: onState("reconnecting")
    })
    const self = this
    return Effect.gen(function*() {
      const fiber = yield* keepUp.pipe(Effect.andThen(stop), Effect.andThen(transport.close), Effect.forkScoped)
      // closed first: the requests in flight fail as the client's close, not as the connection's end
      const shutdown = Effect.sync(() => self.#closed = true).pipe(
        Effect.andThen(Fiber.interrupt(fiber)),
        Effect.andThen(stop),
        Effect.andThen(transport.close)
      )
      yield* Effect.addFinalizer(() => shutdown)
      return shutdown
    })
  }

  // what the server sends: positions kept, the session kept, then to the app, then to the request it answers
  #receive(data: string | Uint8Array): void {
    const message = decode(data)
    const { requests, session, subscriptions } = this.#settings
    if (message === undefined || !subscriptions.receive(message)) return
    // the session first: a call answered by a session frame returns with the session in place
    session.observe(message)
    // published before the waiter resumes: a stream run after a request returns does not get its reply
    this.#settings.onMessage(message)
    requests.answer(message)
  }

  // One connection: open (or resume), subscribe again, restore the session, flush the buffer, read until the
  // connection ends. It succeeds with whether the connection opened at all, and the wait its close asked for.
  #connection(): Effect.Effect<Reconnect.Ended> {
    const self = this
    const { onClose, onState, requestTimeout, requests, session, subscriptions, transport } = this.#settings
    return Effect.suspend(() => {
      let opened = false
      let close: Close | undefined
      let current: Link | undefined
      return Effect.gen(function*() {
        const link = yield* transport.open
        current = link
        for (const text of yield* subscriptions.again(link.resumed)) yield* link.send(text)
        // read from now on: the answer to the restore comes this way
        const reading = yield* Effect.forkScoped(link.read((data) => self.#receive(data)))
        // a resumed connection is still attached to its session on the server
        if (!link.resumed && session.key !== undefined) {
          yield* session.restoreOn(link, reading, requests, requestTimeout)
        }
        for (const text of self.#buffered.splice(0)) yield* link.send(text)
        requests.flushedOn(link)
        self.#link = link
        opened = true
        yield* onState("open")
        close = yield* Fiber.join(reading)
        if (close !== undefined) onClose(close)
      }).pipe(
        Effect.scoped,
        Effect.ensuring(Effect.sync(() => {
          if (self.#link !== undefined) subscriptions.dropped()
          self.#link = undefined
          // the answers to what this connection carried cannot come on another one
          if (current !== undefined && !self.#closed) requests.ended(current)
        })),
        Effect.exit,
        Effect.map((): Reconnect.Ended => ({
          opened,
          hinted: hintedDelay(close?.reason),
          terminal: close !== undefined && isTerminalClose(close.code)
        }))
      )
    })
  }
}
