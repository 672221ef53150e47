/**
 * A live connection: the `Connection` handle of processors and filters, the
 * Hub's subscriber, the owner of the connection's outbox, and the `Inbound`
 * side its transport feeds.
 *
 * Inbound messages queue in an inbox and are processed one at a time, in
 * order, by a fiber that lives only while there is work: it starts on the
 * first message of a burst (after the transport's synchronous batch, so a
 * burst shares one fiber) and ends when the inbox is empty. A request (a
 * message with an `id` for a processor, or the wait for the acknowledgement
 * of a publish with an `id`) runs in a fiber of its own beside
 * them, up to `maxConcurrentRequests` at once; past that the inbox waits for
 * one to finish. An idle connection holds no fiber, no Effect `Socket` and no
 * HTTP request.
 */
import { Effect, Exit, Fiber, Result, Scope } from "effect"
import * as Channel from "../../Channel.ts"
import { type Connection, type Key, user as userKey } from "../../Connection.ts"
import * as Frame from "../../Frame.ts"
import type { Since } from "../../History.ts"
import type { Hub, Subscriber } from "../../Hub.ts"
import type { ProtocolError } from "../../ProtocolError.ts"
import { Rejection } from "../../Rejection.ts"
import type { Inbound, Outbound as OutboundFrame, Transport } from "../../Transport.ts"
import { Outbound, utf8Length } from "../wire/outbound.ts"
import { CloseCode, Command, ErrorHeader, Header } from "../wire/protocol.ts"
import { Lane } from "./lane.ts"
import { Outbox, schedule, type SlowConsumerPolicy } from "./outbox.ts"
import { Bucket, type Rate } from "./rate.ts"
import type { Stats } from "./stats.ts"
import type { Users } from "./users.ts"

/** The per-connection limits. */
interface Limits {
  readonly maxMessageBytes: number
  readonly maxOutboundBytes: number
  readonly slowConsumer: SlowConsumerPolicy
  /** Requests (messages with an `id` for a processor) of one connection processed at once. */
  readonly maxConcurrentRequests: number
  /** Messages a second per connection (none: no limit), and refusals in a row before a close. */
  readonly messageRate: (Rate & { readonly closeAfter: number }) | undefined
}

/** What a connection needs from its server. */
export interface Core {
  readonly hub: Hub["Service"]
  readonly limits: Limits
  /** Whether the server has `onOpen` hooks to run before the first message. */
  readonly hasOpenHooks: boolean
  /** Runs `onOpen` hooks; false when one refused the connection. */
  readonly open: (connection: LiveConnection) => Effect.Effect<boolean>
  /** Processes one inbound message. */
  readonly handle: (connection: LiveConnection, data: string | Uint8Array) => Effect.Effect<void> | undefined
  /** Runs the `onClose` hooks, whatever fails. */
  readonly close: (connection: LiveConnection) => Effect.Effect<void>
  /** Runs an effect in a fiber of the server's. */
  readonly fork: (effect: Effect.Effect<void>) => Fiber.Fiber<void>
  /** The server's scope: a connection's scope is a child of it, closed at the latest with it. */
  readonly scope: Scope.Scope
  /** The server's counters. */
  readonly stats: Stats
  /** Authentication by the first message, when the server asks for it. */
  readonly authentication:
    | {
      readonly timeout: number
      /** Whether a connection must still authenticate (one that came with a token need not). */
      readonly needed: (connection: LiveConnection) => boolean
      readonly check: (connection: LiveConnection, data: string | Uint8Array) => Effect.Effect<boolean>
    }
    | undefined
  /** The connection has ended: every hook ran, every subscription is gone. */
  readonly ended: (connection: LiveConnection) => void
  /** Each user's connections here. */
  readonly users: Users<LiveConnection>
}

const rateLimited = (perSecond: number) =>
  new Rejection({
    status: 429,
    reason: "RateLimited",
    message: `more than ${
      perSecond >= 1 ? Math.round(perSecond) : perSecond.toPrecision(2)
    } messages a second: this one was not processed`
  })

// inbound messages queued before the transport is asked to stop reading
const inboxHighWater = 1024

/**
 * The window in which a connection's refusals by the message rate are counted: more than
 * `closeAfter` of them within it close the connection (a flood at any multiple of the rate does,
 * a client a little over it does not).
 */
const refusalWindow = 10_000

// inbound messages of one connection processed per turn of the event loop: past it, the connection
// stops reading and waits for the next turn, so what it published is written out first (the outboxes
// flush at the end of a turn) and other connections get their turn; a burst from one publisher then
// meets TCP backpressure instead of filling its subscribers' outboxes within one turn
const turnBudget = 256

const nextTurn: Effect.Effect<void> = Effect.callback<void>((resume) => {
  schedule(() => resume(Effect.void))
})

// connection ids: a prefix random to the process, then a count shared by every server of the process (ids
// are unique on the process, whatever server a connection is on)
let sequence = 0
const prefix = Math.random().toString(36).slice(2, 8)

const tooBig = (data: string | Uint8Array, max: number): boolean =>
  typeof data === "string"
    ? data.length > max || (data.length * 3 > max && utf8Length(data) > max)
    : data.byteLength > max

/** A connection while it lives. */
export class LiveConnection implements Connection, Subscriber, Inbound {
  readonly id = `${prefix}-${(++sequence).toString(36)}`
  readonly channels = new Set<Channel.ChannelId>()
  readonly transport: Transport
  readonly outbox: Outbox
  readonly #core: Core
  #data: Map<string, unknown> | undefined
  #inbox: Array<string | Uint8Array> = []
  #head = 0
  #running = false
  #opened: boolean
  #gone = false
  #paused = false
  #busy = false
  #pendingClose: { readonly code: number; readonly reason: string } | undefined
  #scope: Scope.Closeable | undefined
  // the lane of the connection's upstream calls, made on the first
  #lane: Lane | undefined
  #ended = false
  // the requests running beside the inbox, and the inbox waiting for one of them to finish
  #requests: Set<Fiber.Fiber<unknown, unknown>> | undefined
  #slot: (() => void) | undefined
  // whether the first message authenticated the connection (when the server asks for it), and its deadline
  #authenticated: boolean
  #authenticationTimer: ReturnType<typeof setTimeout> | undefined
  // the message rate's bucket; the messages refused in the current window and when it began; the close
  // the rate decided on, made once what was admitted before it is processed
  readonly #rate: Bucket | undefined
  #refused = 0
  #refusedSince = 0
  #closeWhenDrained: { readonly code: number; readonly reason: string } | undefined

  constructor(transport: Transport, core: Core, data?: ReadonlyMap<string, unknown>) {
    this.transport = transport
    this.#core = core
    if (data !== undefined) this.admit(data)
    this.#opened = !core.hasOpenHooks
    this.outbox = new Outbox(transport, core.limits.maxOutboundBytes, core.limits.slowConsumer, core.stats)
    this.#rate = core.limits.messageRate === undefined ? undefined : new Bucket(core.limits.messageRate)
    this.#authenticated = core.authentication === undefined || !core.authentication.needed(this)
    if (!this.#authenticated) {
      this.#authenticationTimer = setTimeout(() => {
        if (!this.#authenticated) this.closeNow(CloseCode.policyViolation, "authentication timeout")
      }, core.authentication!.timeout)
    }
    if (!this.#opened) this.#start()
  }

  get url(): string {
    return this.transport.peer.url
  }

  get requestHeaders(): Readonly<Record<string, string | undefined>> {
    return this.transport.peer.requestHeaders
  }

  get remoteAddress(): string | undefined {
    return this.transport.peer.remoteAddress
  }

  /** The connection's scope, made on first use and closed when the connection ends. */
  get scope(): Scope.Closeable {
    return (this.#scope ??= Scope.forkUnsafe(this.#core.scope))
  }

  // ---- Inbound: what the transport calls ----

  receive(data: string | Uint8Array): void {
    if (this.#gone || this.outbox.isClosed) return
    if (tooBig(data, this.#core.limits.maxMessageBytes)) {
      return this.closeNow(CloseCode.messageTooBig, "message too big")
    }
    if (this.#rate !== undefined && (this.#closeWhenDrained !== undefined || !this.#rate.take())) {
      return this.#rateLimited(data)
    }
    this.#core.stats.messagesIn++
    this.#inbox.push(data)
    if (this.#inbox.length - this.#head >= inboxHighWater) this.#pause()
    if (!this.#running) this.#start()
  }

  // A message past the rate: answered 429 (with its id), not processed. More than `closeAfter` refusals
  // within one window close the connection with 1008, once every message admitted before is processed
  // (what arrives meanwhile is refused the same way).
  #rateLimited(data: string | Uint8Array): void {
    const limit = this.#core.limits.messageRate!
    this.#core.stats.rateLimited++
    const frame = typeof data === "string" ? Frame.parse(data) : Frame.parseBytes(data)
    const id = Result.isSuccess(frame) ? frame.success.headers.get(Header.id) || undefined : undefined
    this.write(rateLimited(limit.perSecond).toFrame(id))
    if (this.#closeWhenDrained !== undefined) return
    const now = Date.now()
    if (now - this.#refusedSince >= refusalWindow) {
      this.#refusedSince = now
      this.#refused = 0
    }
    if (++this.#refused <= limit.closeAfter) return
    this.#closeWhenDrained = { code: CloseCode.rateLimited, reason: "rate limit exceeded" }
    if (!this.#running) this.closeWhenIdle(CloseCode.rateLimited, "rate limit exceeded")
  }

  #pause(): void {
    if (this.#paused || this.transport.pause === undefined) return
    this.#paused = true
    this.transport.pause()
  }

  closed(): void {
    if (this.#gone) return
    this.#gone = true
    this.outbox.close(CloseCode.normal, "")
    if (!this.#running) this.#start()
  }

  // ---- the processing loop ----

  #start(): void {
    this.#running = true
    // after the transport's current batch of messages: one fiber for the whole burst
    queueMicrotask(() => this.#core.fork(this.#drive()))
  }

  #next(): string | Uint8Array | undefined {
    if (this.#head === this.#inbox.length || this.outbox.isClosed) {
      if (this.#head > 0) {
        this.#inbox = []
        this.#head = 0
      }
      return undefined
    }
    const data = this.#inbox[this.#head]!
    this.#inbox[this.#head++] = ""
    // a connection whose messages keep coming as fast as they go: drop the processed slots
    if (this.#head > inboxHighWater && this.#head * 2 > this.#inbox.length) {
      this.#inbox = this.#inbox.slice(this.#head)
      this.#head = 0
    }
    return data
  }

  #drive(): Effect.Effect<void> {
    const connection = this
    const core = this.#core
    return Effect.gen(function*() {
      if (!connection.#authenticated) {
        // nothing runs before the first message authenticated the connection
        const first = connection.#next()
        if (first === undefined) return
        if (!(yield* core.authentication!.check(connection, first))) {
          connection.closeNow(CloseCode.policyViolation, "authentication failed")
          return
        }
        connection.#authenticated = true
        clearTimeout(connection.#authenticationTimer)
      }
      if (!connection.#opened) {
        connection.#opened = true
        if (!(yield* core.open(connection))) connection.closeNow(CloseCode.policyViolation, "refused")
      }
      let data: string | Uint8Array | undefined
      let handled = 0
      while ((data = connection.#next()) !== undefined) {
        connection.#busy = true
        const handling = core.handle(connection, data)
        if (handling !== undefined) yield* handling
        connection.#busy = false
        connection.#closeIfIdle()
        if (++handled === turnBudget && connection.#head < connection.#inbox.length) {
          handled = 0
          connection.#pause()
          yield* nextTurn
        }
      }
    }).pipe(
      // however the loop ends (an interruption included), the connection is left in order
      Effect.onExit(() => connection.#settle())
    )
  }

  // After the loop: a connection that is gone ends; otherwise it reads again, and a message that
  // came in meanwhile (a transport may hand some over as it resumes) starts the loop again.
  #settle(): Effect.Effect<void> {
    this.#busy = false
    if (this.#gone) return Effect.ensuring(this.end(), Effect.sync(() => this.#running = false))
    this.#running = false
    if (this.#paused) {
      this.#paused = false
      this.transport.resume?.()
    }
    if (!this.outbox.isClosed && this.#head < this.#inbox.length) this.#start()
    else if (this.#closeWhenDrained !== undefined) {
      this.closeWhenIdle(this.#closeWhenDrained.code, this.#closeWhenDrained.reason)
    }
    return Effect.void
  }

  /**
   * Ends the connection: its upstream lane stopped, `onClose` hooks, subscriptions and the
   * connection's scope released, and the server told, each whatever the one
   * before did. Runs once; the server's drain calls it for the connections
   * still open at its timeout.
   */
  end(): Effect.Effect<void> {
    if (this.#ended) return Effect.void
    this.#ended = true
    clearTimeout(this.#authenticationTimer)
    this.#gone = true
    this.outbox.close(CloseCode.goingAway, "server shutting down")
    const connection = this
    const core = this.#core
    return Effect.gen(function*() {
      connection.#lane?.stop()
      const requests = connection.#requests
      if (requests !== undefined && requests.size > 0) {
        yield* Effect.exit(Effect.forEach(Array.from(requests), (fiber) => Fiber.interrupt(fiber), { discard: true }))
      }
      yield* core.close(connection)
      yield* Effect.exit(core.hub.unsubscribeAll(connection))
      if (connection.#scope !== undefined) yield* Effect.exit(Scope.close(connection.#scope, Exit.void))
    }).pipe(
      Effect.ensuring(Effect.sync(() => {
        connection.#inbox = []
        connection.#head = 0
        const user = connection.user
        if (user !== undefined) core.users.remove(connection, user)
        core.ended(connection)
      })),
      Effect.uninterruptible
    )
  }

  // ---- requests ----

  /** Whether the server is closing the connection once its work is done (a graceful shutdown). */
  get isClosing(): boolean {
    return this.#pendingClose !== undefined
  }

  /**
   * Runs a request in a fiber of its own, beside the connection's other
   * messages; when `maxConcurrentRequests` run already, waits for one to end.
   */
  request(effect: Effect.Effect<void>): Effect.Effect<void> {
    return Effect.suspend(() => {
      if ((this.#requests?.size ?? 0) < this.#core.limits.maxConcurrentRequests) {
        this.#startRequest(effect)
        return Effect.void
      }
      return Effect.callback<void>((resume) => {
        this.#slot = () => {
          this.#startRequest(effect)
          resume(Effect.void)
        }
        return Effect.sync(() => {
          this.#slot = undefined
        })
      })
    })
  }

  #startRequest(effect: Effect.Effect<void>): void {
    if (this.#ended) return
    const requests = (this.#requests ??= new Set())
    let done = false
    // (the fiber that ends is the one the fork returns, which may not be there yet: a fork runs at once)
    const fiber = this.#core.fork(effect.pipe(Effect.ensuring(Effect.withFiber((self) => {
      done = true
      requests.delete(self)
      const slot = this.#slot
      this.#slot = undefined
      if (slot !== undefined) slot()
      else this.#closeIfIdle()
      return Effect.void
    }))))
    // a request that ended within the fork is not kept
    if (!done) requests.add(fiber)
  }

  // a graceful close waits for the message being processed and every request in flight
  #closeIfIdle(): void {
    const pending = this.#pendingClose
    if (pending !== undefined && !this.#busy && (this.#requests?.size ?? 0) === 0) {
      this.closeNow(pending.code, pending.reason)
    }
  }

  /** The lane the connection's upstream calls run in, one after another; stopped when the connection ends. */
  lane(): Lane {
    return (this.#lane ??= new Lane(this.#core.fork))
  }

  // ---- Subscriber ----

  /** The connection a Hub subscriber is: this one. */
  get connection(): Connection {
    return this
  }

  deliver(delivery: OutboundFrame): void {
    this.outbox.offer(delivery)
    if (this.#core.users.tapping) this.#core.users.sent(this.user, this.id, delivery.text)
  }

  // ---- Connection ----

  /** Queues a frame known to be valid. */
  write(frame: Frame.Frame): void {
    if (frame.command === Command.error) this.#core.stats.errorFrame(frame.headers.get(ErrorHeader.reason) ?? "")
    const outbound = new Outbound(Frame.render(frame))
    this.outbox.offer(outbound)
    if (this.#core.users.tapping) this.#core.users.sent(this.user, this.id, outbound.text)
  }

  /** Adds the per-connection data an authentication set (the principal). */
  admit(data: ReadonlyMap<string, unknown>): void {
    for (const [name, value] of data) this.#put(name, value)
  }

  get<A>(key: Key<A>): A | undefined {
    return this.#data?.get(key.name) as A | undefined
  }

  set<A>(key: Key<A>, value: A): void {
    this.#put(key.name, value)
  }

  // per-connection data; the user goes to the server's index of users too
  #put(name: string, value: unknown): void {
    const data = (this.#data ??= new Map())
    if (name === userKey.name && !this.#ended) {
      const previous = data.get(name)
      this.#core.users.assign(
        this,
        typeof previous === "string" ? previous : undefined,
        typeof value === "string" ? value : undefined
      )
    }
    data.set(name, value)
  }

  /** The user the connection belongs to (`Connection.user`), if any. */
  get user(): string | undefined {
    const user = this.#data?.get(userKey.name)
    return typeof user === "string" ? user : undefined
  }

  send(frame: Frame.Frame): Effect.Effect<void, ProtocolError> {
    return Effect.suspend(() => {
      const checked = Frame.validate(frame)
      if (Result.isFailure(checked)) return Effect.fail(checked.failure)
      this.write(frame)
      return Effect.void
    })
  }

  subscribe(
    channels: Iterable<string>,
    options?: { readonly since?: Since | undefined }
  ): Effect.Effect<void, ProtocolError | Rejection> {
    return Effect.suspend((): Effect.Effect<void, ProtocolError | Rejection> => {
      const list = Channel.validateAll(channels)
      return Result.isFailure(list)
        ? Effect.fail(list.failure)
        : this.#core.hub.subscribe(this, list.success, { since: options?.since })
    })
  }

  unsubscribe(channels: Iterable<string>): Effect.Effect<void> {
    return Effect.suspend(() => {
      // a name that is not a channel id cannot be held: it is ignored like any channel not held
      const held: Array<Channel.ChannelId> = []
      for (const channel of channels) {
        const id = Channel.validate(channel)
        if (Result.isSuccess(id)) held.push(id.success)
      }
      return this.#core.hub.unsubscribe(this, held)
    })
  }

  close(code: number = CloseCode.normal, reason = ""): Effect.Effect<void> {
    return Effect.sync(() => this.closeNow(code, reason))
  }

  /** Flushes what is queued and closes now. */
  closeNow(code: number, reason: string): void {
    this.outbox.close(code, reason)
  }

  /** Closes once the message being processed and the requests in flight are done (a graceful shutdown). */
  closeWhenIdle(code: number, reason: string): void {
    this.#pendingClose = { code, reason }
    this.#closeIfIdle()
  }
}
