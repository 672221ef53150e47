/**
 * What happens to one incoming message, in one direction:
 *
 *   parse -> before: multipart, user filters -> processor (typed body)
 *         -> after: pub/sub (subscribe, publish, unsubscribe), upstream, user filters
 *
 * Every refusal is answered with an error frame that echoes the message's
 * `id`; the connection stays open. Nothing here forks a fiber.
 */
import { Cause, Effect, Queue, Result, Schema } from "effect"
import * as Channel from "../Channel.ts"
import type { Connection } from "../Connection.ts"
import type { Exchange } from "../Exchange.ts"
import type * as Filter from "../Filter.ts"
import * as Frame from "../Frame.ts"
import type { Hub } from "../Hub.ts"
import * as Message from "../Message.ts"
import { Header } from "../Message.ts"
import * as Multipart from "../Multipart.ts"
import type * as Processor from "../Processor.ts"
import { ProtocolError } from "../ProtocolError.ts"
import * as Rejection from "../Rejection.ts"
import * as Upstream from "../Upstream.ts"
import type { LiveConnection } from "./connection.ts"

const noParts: ReadonlyArray<Multipart.Part> = []

/** The message being processed. */
class LiveExchange implements Exchange<unknown> {
  readonly connection: Connection
  readonly command: string
  readonly headers: Map<string, string>
  readonly id: string | undefined
  body: unknown
  text: string
  parts: ReadonlyArray<Multipart.Part> = noParts
  /** Whether the message was changed since it was parsed (then it is validated before it is published). */
  changed = false
  replyCommand: string | undefined
  replyHeaders: Map<string, string> | undefined
  isDropped = false
  readonly #live: LiveConnection

  constructor(connection: LiveConnection, frame: Frame.Frame) {
    this.connection = connection
    this.#live = connection
    this.command = frame.command
    this.headers = frame.headers as Map<string, string>
    this.body = frame.body
    this.text = frame.body
    this.id = frame.headers.get(Header.id) || undefined
  }

  header(name: string): string | undefined {
    return this.headers.get(name)
  }

  setHeader(name: string, value: string | undefined): void {
    this.changed = true
    if (value === undefined) this.headers.delete(name)
    else this.headers.set(name, value)
  }

  setCommand(command: string): void {
    this.changed = true
    this.replyCommand = command
  }

  setBody(body: string): void {
    this.text = body
  }

  addHeader(name: string, value: string): void {
    ;(this.replyHeaders ??= new Map()).set(name, value)
  }

  send(body: string): Effect.Effect<void, ProtocolError> {
    return Effect.suspend(() => {
      const headers = this.replyHeaders ?? new Map<string, string>()
      this.replyHeaders = undefined
      if (this.id !== undefined) headers.set(Header.id, this.id)
      return this.connection.send({ command: this.replyCommand ?? this.command, headers, body })
    })
  }

  drop(): void {
    this.isDropped = true
  }

  /** The frame published for this message: the message as changed. */
  published(): Frame.Frame {
    return { command: this.replyCommand ?? this.command, headers: this.headers, body: this.text }
  }

  get live(): LiveConnection {
    return this.#live
  }
}

/** What the pipeline needs from the server. */
export interface Options {
  readonly processors: ReadonlyMap<string, Processor.Implementation>
  readonly filters: ReadonlyArray<Filter.Implementation>
  readonly hub: Hub["Service"]
  /** Upstream calls, when configured. */
  readonly upstream: Upstream.Upstream["Service"] | undefined
  readonly maxHeaders: number
}

const hasBuiltin = (headers: ReadonlyMap<string, string>): boolean =>
  headers.has(Header.subscribe) || headers.has(Header.publish) || headers.has(Header.unsubscribe) ||
  headers.has(Header.upstream)

const channels = (headers: ReadonlyMap<string, string>, name: string) => {
  const value = headers.get(name)
  return value === undefined || value === "" ? undefined : Channel.parseList(value)
}

/** The error frame for a failed step; anything but a refusal is logged and answered 500. */
const answer = (connection: LiveConnection, id: string | undefined) => (cause: Cause.Cause<unknown>) => {
  const error = Cause.findErrorOption(cause)
  if (error._tag === "Some") {
    const refusal = error.value
    if (
      refusal instanceof ProtocolError || refusal instanceof Rejection.Rejection ||
      refusal instanceof Upstream.UpstreamError
    ) {
      return Effect.sync(() => connection.write(refusal.toFrame(id)))
    }
  }
  if (Cause.hasInterruptsOnly(cause)) return Effect.failCause(cause as Cause.Cause<never>)
  return Effect.logWarning("a processor or filter failed", cause).pipe(
    Effect.andThen(Effect.sync(() => connection.write(Rejection.internal.toFrame(id))))
  )
}

/** Makes the functions that run a connection's hooks and messages. */
export const make = (options: Options) => {
  const { filters, hub, processors, upstream } = options
  const before = filters.flatMap((filter) => filter.hooks.before ? [filter.hooks.before] : [])
  const after = filters.flatMap((filter) => filter.hooks.after ? [filter.hooks.after] : [])
  const opens = [
    ...filters.flatMap((filter) => filter.hooks.onOpen ? [filter.hooks.onOpen] : []),
    ...Array.from(processors.values()).flatMap((p) => p.handlers.onOpen ? [p.handlers.onOpen] : [])
  ]
  const closes = [
    ...filters.flatMap((filter) => filter.hooks.onClose ? [filter.hooks.onClose] : []),
    ...Array.from(processors.values()).flatMap((p) => p.handlers.onClose ? [p.handlers.onClose] : [])
  ]
  const parseOptions = { maxHeaders: options.maxHeaders }

  // built-in after filter: subscribe, then publish, then unsubscribe
  const pubSub = (exchange: LiveExchange) =>
    Effect.suspend((): Effect.Effect<void, ProtocolError | Rejection.Rejection> => {
      const { headers } = exchange
      const subscribe = channels(headers, Header.subscribe)
      const publish = channels(headers, Header.publish)
      const unsubscribe = channels(headers, Header.unsubscribe)
      if (subscribe === undefined && publish === undefined && unsubscribe === undefined) return Effect.void
      for (const list of [subscribe, publish, unsubscribe]) {
        if (list !== undefined && Result.isFailure(list)) return Effect.fail(list.failure)
      }
      const connection = exchange.live
      let text: string | undefined
      if (publish !== undefined) {
        const frame = exchange.published()
        if (exchange.changed) {
          const checked = Frame.validate(frame)
          if (Result.isFailure(checked)) return Effect.fail(checked.failure)
        }
        text = Frame.render(frame)
      }
      return Effect.all([
        subscribe === undefined ? Effect.void : hub.subscribe(connection, Result.getOrThrow(subscribe)),
        text === undefined ? Effect.void : hub.publishText(Result.getOrThrow(publish!), text),
        unsubscribe === undefined ? Effect.void : hub.unsubscribe(connection, Result.getOrThrow(unsubscribe))
      ], { discard: true })
    })

  // built-in after filter: queues the call on the connection's upstream lane; the lane runs
  // its calls in order while the connection's next messages go on
  const callUpstream = (exchange: LiveExchange, value: string) =>
    Effect.gen(function*() {
      if (upstream === undefined) return yield* Rejection.upstreamNotConfigured
      const target = Message.parseUpstream(value)
      if (Result.isFailure(target)) return yield* target.failure
      const connection = exchange.live
      if (connection.upstreamInFlight >= upstream.maxInFlight) {
        return yield* new Upstream.UpstreamError({
          reason: "TooMany",
          message: `a connection has at most ${upstream.maxInFlight} upstream calls in flight`
        })
      }
      const { id } = exchange
      const command = exchange.replyCommand ?? exchange.command
      const reply = exchange.headers.has(Upstream.replyHeader)
      const call = upstream.call({
        method: target.success.method,
        url: target.success.url,
        body: exchange.text,
        headers: new Map(exchange.headers),
        connectionId: connection.id,
        command
      }).pipe(
        Effect.match({
          onFailure: (error) => connection.write(error.toFrame(id)),
          onSuccess: (response) => {
            if (!reply) return
            const headers = new Map([[Upstream.statusHeader, String(response.status)]])
            if (response.contentType !== undefined) headers.set("content-type", response.contentType)
            if (id !== undefined) headers.set(Header.id, id)
            connection.write({ command, headers, body: response.body })
          }
        }),
        Effect.ensuring(Effect.sync(() => connection.upstreamInFlight--))
      )
      const lane = connection.upstreamLane ?? (yield* openLane(connection))
      connection.upstreamInFlight++
      Queue.offerUnsafe(lane, call)
    })

  const openLane = (connection: LiveConnection) =>
    Effect.gen(function*() {
      const lane = yield* Queue.unbounded<Effect.Effect<void>>()
      yield* Queue.take(lane).pipe(Effect.flatten, Effect.forever, Effect.forkIn(connection.scope))
      connection.upstreamLane = lane
      return lane
    })

  const steps = (exchange: LiveExchange) =>
    Effect.gen(function*() {
      const multipart = exchange.headers.get(Header.multipart)
      if (multipart) {
        const parts = Multipart.split(exchange.text, multipart)
        if (Result.isFailure(parts)) return yield* parts.failure
        exchange.parts = parts.success
      }
      for (const hook of before) {
        yield* hook(exchange as Exchange)
        if (exchange.isDropped) return
      }
      const processor = processors.get(exchange.command)
      if (processor !== undefined) {
        if (processor.body !== undefined) {
          exchange.body = yield* Schema.decodeEffect(processor.body)(exchange.text).pipe(
            Effect.mapError((error) => Rejection.invalidBody(error.message))
          )
        }
        if (processor.handlers.onMessage !== undefined) yield* processor.handlers.onMessage(exchange)
        if (exchange.isDropped) return
      } else if (!hasBuiltin(exchange.headers)) {
        return yield* Rejection.unknownCommand(exchange.command)
      }
      yield* pubSub(exchange)
      const target = exchange.headers.get(Header.upstream)
      if (target) yield* callUpstream(exchange, target)
      for (const hook of after) {
        yield* hook(exchange as Exchange)
        if (exchange.isDropped) return
      }
    })

  return {
    /** Runs the onOpen hooks of filters, then of processors; false when one refused the connection. */
    open: (connection: LiveConnection) =>
      Effect.forEach(opens, (hook) => hook(connection), { discard: true }).pipe(
        Effect.as(true),
        Effect.catchCause((cause) =>
          answer(connection, undefined)(cause).pipe(
            Effect.andThen(Effect.sync(() => connection.closeNow(1008, "refused"))),
            Effect.as(false)
          )
        )
      ),

    /** Processes one incoming message. */
    handle: (connection: LiveConnection, data: string | Uint8Array) => {
      const frame = typeof data === "string" ? Frame.parse(data, parseOptions) : Frame.parseBytes(data, parseOptions)
      if (Result.isFailure(frame)) return Effect.sync(() => connection.write(frame.failure.toFrame()))
      const exchange = new LiveExchange(connection, frame.success)
      return steps(exchange).pipe(Effect.catchCause(answer(connection, exchange.id)))
    },

    /** Runs every onClose hook, whatever fails. */
    close: (connection: LiveConnection) =>
      Effect.forEach(closes, (hook) => Effect.exit(hook(connection)), { discard: true })
  }
}

/** The pipeline of a server. */
export type Pipeline = ReturnType<typeof make>
