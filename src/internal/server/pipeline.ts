/**
 * What happens to one incoming message, in one direction:
 *
 *   parse -> Message (classified once) -> before: user filters
 *         -> processor (typed body)
 *         -> after: pub/sub (subscribe, publish, unsubscribe), upstream, user filters
 *
 * A frame is decoded once into the tagged `Message`: its channels are
 * validated, its upstream target split and its multipart parts cut there, and
 * every step reads them from it. A step that changes a built-in header (or
 * the body of a multipart message) gets the message re-classified once, at
 * the next step that reads it.
 *
 * Every refusal is a `Respondable` error answered with its error frame, which
 * echoes the message's `id`; the connection stays open. A message that runs
 * user code runs in a `Scope` of its own. A request (a message with an `id`
 * for a processor) runs in a fiber of its own beside the connection's other
 * messages (`LiveConnection.request`); nothing else forks a fiber per message.
 */
import { Cause, Effect, type Fiber, Result, Schema, Scope } from "effect"
import type { Connection } from "../../Connection.ts"
import * as ErrorFrame from "../../ErrorFrame.ts"
import type { Exchange } from "../../Exchange.ts"
import type * as Filter from "../../Filter.ts"
import * as Frame from "../../Frame.ts"
import * as History from "../../History.ts"
import type { Hub } from "../../Hub.ts"
import type { Admission, Authorization } from "../../LhttpServer.ts"
import * as Message from "../../Message.ts"
import type * as Multipart from "../../Multipart.ts"
import type * as Processor from "../../Processor.ts"
import type { ProtocolError } from "../../ProtocolError.ts"
import * as Rejection from "../../Rejection.ts"
import * as Upstream from "../../Upstream.ts"
import type { LiveConnection } from "./connection.ts"
import { Lane } from "./lane.ts"

const noParts: ReadonlyArray<Multipart.Part> = []
const { Header } = Message

/** The message being processed. */
class LiveExchange implements Exchange<unknown> {
  readonly connection: Connection
  readonly live: LiveConnection
  readonly command: string
  readonly headers: Map<string, string>
  readonly id: string | undefined
  body: unknown
  text: string
  /** The message as last classified. */
  message: Message.Notify | Message.Request
  /** A built-in header (or a multipart body) changed since the last classification. */
  stale = false
  /** The message changed since it was parsed (then it is validated before it is published). */
  changed = false
  replyCommand: string | undefined
  replyHeaders: Map<string, string> | undefined
  isDropped = false

  constructor(connection: LiveConnection, message: Message.Notify | Message.Request) {
    this.connection = connection
    this.live = connection
    this.message = message
    this.command = message.command
    this.headers = message.headers as Map<string, string>
    this.body = message.body
    this.text = message.body
    this.id = message._tag === "Request" ? message.id : undefined
  }

  get parts(): ReadonlyArray<Multipart.Part> {
    return this.message.multipart ?? noParts
  }

  header(name: string): string | undefined {
    return this.headers.get(name)
  }

  setHeader(name: string, value: string | undefined): void {
    this.changed = true
    if (Message.isBuiltinName(name)) this.stale = true
    if (value === undefined) this.headers.delete(name)
    else this.headers.set(name, value)
  }

  setCommand(command: string): void {
    this.changed = true
    this.replyCommand = command
  }

  setBody(body: string): void {
    this.text = body
    if (this.headers.has(Header.multipart)) this.stale = true
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

  /** The message, re-classified first when a step changed what it derives from. */
  current(): Result.Result<Message.Notify | Message.Request, ProtocolError> {
    if (!this.stale) return Result.succeed(this.message)
    const message = Message.classify(this.published())
    if (Result.isFailure(message)) return message
    this.stale = false
    this.message = message.success
    return message
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
  /** Runs an effect in a fiber of the server's (an upstream lane). */
  readonly fork: (effect: Effect.Effect<void>) => Fiber.Fiber<void>
  /** Decides on each action of the built-in headers, before any is applied. */
  readonly authorize?: ((request: Authorization) => Effect.Effect<void, Rejection.Rejection>) | undefined
  /** Spans for each message's path (message, processor, publish, upstream). */
  readonly tracing?: boolean | undefined
  /** Authentication by a connection's first message, when the server asks for it. */
  readonly authenticateMessage?:
    | ((message: Message.Notify | Message.Request, data: Admission) => Effect.Effect<void, Rejection.Rejection>)
    | undefined
}

/**
 * The error frame for a failed step: a Respondable error's own frame (checked:
 * a frame of user code that would not read back is not sent), else 500, with
 * the cause logged and never sent. An interruption from user code (a handler
 * awaiting an interrupted fiber) is a failure of that message like any other.
 */
export const answer = (connection: LiveConnection, id: string | undefined) => (cause: Cause.Cause<unknown>) => {
  const error = Cause.findErrorOption(cause)
  if (error._tag === "Some" && ErrorFrame.isRespondable(error.value)) {
    const refusal = error.value
    return Effect.suspend(() => {
      const frame = Frame.validate(refusal.toFrame(id))
      if (Result.isSuccess(frame)) return Effect.sync(() => connection.write(frame.success))
      return failed(connection, id, Cause.fail(frame.failure))
    }).pipe(Effect.catchDefect((defect) => failed(connection, id, Cause.die(defect))))
  }
  return failed(connection, id, cause)
}

const failed = (connection: LiveConnection, id: string | undefined, cause: Cause.Cause<unknown>) =>
  Effect.logWarning("a processor or filter failed", cause).pipe(
    Effect.andThen(Effect.sync(() => connection.write(Rejection.internal.toFrame(id))))
  )

const hasBuiltin = (headers: ReadonlyMap<string, string>): boolean =>
  headers.has(Header.subscribe) || headers.has(Header.publish) || headers.has(Header.unsubscribe) ||
  headers.has(Header.upstream)

const lanes = new WeakMap<LiveConnection, Lane>()

// the status of a declared error: its own `status` field when it is an error status, else 400
const declaredStatus = (error: unknown): number => {
  const status = (error as { readonly status?: unknown }).status
  return typeof status === "number" && Number.isInteger(status) && status >= 400 && status <= 599 ? status : 400
}

// a declared error of a typed request as its error frame: reason its tag, body the encoded error as JSON
const declared = (schema: Schema.Codec<unknown, unknown>, error: unknown) =>
  Schema.encodeUnknownEffect(schema)(error).pipe(
    Effect.orDie,
    Effect.flatMap((encoded) =>
      Effect.fail(
        new Rejection.Rejection({
          status: declaredStatus(error),
          reason: String((error as { readonly _tag?: unknown })._tag ?? "Error"),
          message: JSON.stringify(encoded)
        })
      )
    )
  )

/**
 * What `authenticate` and `authenticateMessage` set on a connection they
 * admit: the data, and the `Admission` that writes it.
 */
export const admission = () => {
  const data = new Map<string, unknown>()
  const set: Admission["set"] = (key, value) => void data.set(key.name, value)
  return { data, admission: { set } satisfies Admission }
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
  const userFilters = before.length > 0 || after.length > 0
  const parseOptions = { maxHeaders: options.maxHeaders }

  const authorize = options.authorize
  const tracing = options.tracing === true

  // the declared errors of each typed processor become their error frames; anything else is left as it is
  const declares = new Map<string, (u: unknown) => boolean>()
  for (const [command, processor] of processors) if (processor.error !== undefined) declares.set(command, Schema.is(processor.error))
  const typed = <A>(processor: Processor.Implementation, effect: Effect.Effect<A, unknown>): Effect.Effect<A, unknown> => {
    const is = declares.get(processor.command)
    return is === undefined ? effect : Effect.catchIf(effect, is, (error) => declared(processor.error!, error))
  }

  // the built-ins of a message as a span, when tracing: what it subscribed, published and unsubscribed
  const traced = (effect: Effect.Effect<void, Rejection.Rejection>, message: Message.Notify | Message.Request) =>
    !tracing || (message.subscribe.length === 0 && message.publish.length === 0 && message.unsubscribe.length === 0)
      ? effect
      : Effect.withSpan(effect, "lhttp.publish", {
        attributes: {
          "lhttp.subscribe": message.subscribe.join(" "),
          "lhttp.publish": message.publish.join(" "),
          "lhttp.unsubscribe": message.unsubscribe.join(" ")
        }
      })

  // a message's whole path as a span, when tracing
  const spanned = (effect: Effect.Effect<void>, connection: LiveConnection, command: string) =>
    tracing
      ? Effect.withSpan(effect, "lhttp.message", { attributes: { "lhttp.command": command, "lhttp.connection": connection.id } })
      : effect

  // built-in after filter: subscribe, then publish (the rendered text), then unsubscribe; composed
  // without a generator, as the messages no user code sees run nothing else
  const pubSub = (
    connection: LiveConnection,
    message: Message.Notify | Message.Request,
    published: string | undefined
  ): Effect.Effect<void, Rejection.Rejection> => {
    let effect: Effect.Effect<void, Rejection.Rejection> | undefined
    const then = (next: Effect.Effect<void, Rejection.Rejection>) => {
      effect = effect === undefined ? next : Effect.andThen(effect, next)
    }
    // positions asked for: `now` for any channels, a well-formed position for exactly one
    const sinceHeader = message.headers.get(Message.Header.since)
    let since: History.Since | undefined
    if (sinceHeader !== undefined) {
      since = History.parseSince(sinceHeader)
      if (since === undefined) return Effect.fail(Rejection.invalidSince("a since header is now or <epoch>:<offset>"))
      if (message.subscribe.length === 0) {
        return Effect.fail(Rejection.invalidSince("a since header goes with a subscribe header"))
      }
      if (since !== "now" && message.subscribe.length !== 1) {
        return Effect.fail(Rejection.invalidSince("a since position goes with exactly one subscribed channel"))
      }
    }
    // every action is decided on before any is applied; a hook that throws is a defect like any other (500)
    if (authorize !== undefined) {
      const ask = (request: Authorization) => Effect.suspend(() => authorize(request))
      if (message.subscribe.length > 0) then(ask({ action: "subscribe", channels: message.subscribe, connection }))
      if (published !== undefined) then(ask({ action: "publish", channels: message.publish, connection }))
      if (message.unsubscribe.length > 0) then(ask({ action: "unsubscribe", channels: message.unsubscribe, connection }))
    }
    if (message.subscribe.length > 0) then(hub.subscribe(connection, message.subscribe, { since }))
    if (published !== undefined) then(hub.publishText(message.publish, published))
    if (message.unsubscribe.length > 0) then(hub.unsubscribe(connection, message.unsubscribe))
    return effect ?? Effect.void
  }

  // the text published for a message a step may have changed: validated when it was
  const publishedText = (exchange: LiveExchange): Result.Result<string, ProtocolError> => {
    const frame = exchange.published()
    if (!exchange.changed) return Result.succeed(Frame.render(frame))
    const checked = Frame.validate(frame)
    return Result.isFailure(checked) ? Result.fail(checked.failure) : Result.succeed(Frame.render(frame))
  }

  // built-in after filter: queues the call on the connection's upstream lane, which runs its
  // calls in order while the connection's next messages go on
  const callUpstream = (exchange: LiveExchange, target: Message.Upstream) =>
    Effect.suspend((): Effect.Effect<void, Rejection.Rejection | Upstream.UpstreamError> => {
      if (upstream === undefined) return Effect.fail(Rejection.upstreamNotConfigured)
      const connection = exchange.live
      let lane = lanes.get(connection)
      if (lane === undefined) {
        lanes.set(connection, lane = new Lane(options.fork))
        connection.addLane(lane)
      }
      if (lane.size >= upstream.maxInFlight) {
        return Effect.fail(
          new Upstream.UpstreamError({
            reason: "TooMany",
            message: `a connection has at most ${upstream.maxInFlight} upstream calls in flight`
          })
        )
      }
      const { id } = exchange
      const command = exchange.replyCommand ?? exchange.command
      const reply = exchange.headers.has(Upstream.replyHeader)
      const request = upstream.call({
        method: target.method,
        url: target.url,
        body: exchange.text,
        headers: new Map(exchange.headers),
        connectionId: connection.id,
        command
      })
      // the lane runs the call in a fiber of its own: with tracing, its span is made a child of this message's
      const traceable = tracing
        ? Effect.map(Effect.option(Effect.currentSpan), (parent) =>
          Effect.withSpan(request, "lhttp.upstream", {
            attributes: { "lhttp.upstream.method": target.method, "lhttp.upstream.url": target.url },
            ...(parent._tag === "Some" ? { parent: parent.value } : {})
          }))
        : Effect.succeed(request)
      return Effect.map(traceable, (call) =>
        lane.offer(
          call.pipe(
            Effect.flatMap((response) => {
              if (!reply) return Effect.void
              const headers = new Map([[Upstream.statusHeader, String(response.status)]])
              if (response.contentType !== undefined) headers.set("content-type", response.contentType)
              if (id !== undefined) headers.set(Header.id, id)
              return Effect.sync(() => connection.write({ command, headers, body: response.body }))
            }),
            // a failure or a defect of one call answers it and leaves the lane running
            Effect.catchCause(answer(connection, id))
          )
        ))
    })

  const steps = Effect.fnUntraced(function*(exchange: LiveExchange) {
    for (const hook of before) {
      yield* hook(exchange as Exchange)
      if (exchange.isDropped) return
    }
    const processor = processors.get(exchange.command)
    if (processor !== undefined) {
      if (exchange.stale) yield* Effect.fromResult(exchange.current())
      if (processor.body !== undefined) {
        exchange.body = yield* Schema.decodeEffect(processor.body)(exchange.text).pipe(
          Effect.mapError((error) => Rejection.invalidBody(error.message))
        )
      }
      if (processor.handlers.onMessage !== undefined) {
        const handled = typed(processor, processor.handlers.onMessage(exchange))
        const reply = yield* (tracing ? Effect.withSpan(handled, "lhttp.processor", { attributes: { "lhttp.command": exchange.command } }) : handled)
        if (processor.reply !== undefined && !exchange.isDropped) {
          yield* exchange.send(yield* Schema.encodeEffect(processor.reply)(reply).pipe(Effect.orDie))
        }
      }
      if (exchange.isDropped) return
    } else if (!hasBuiltin(exchange.headers)) {
      return yield* Rejection.unknownCommand(exchange.command)
    }
    const message = yield* Effect.fromResult(exchange.current())
    const published = message.publish.length > 0 ? yield* Effect.fromResult(publishedText(exchange)) : undefined
    yield* traced(pubSub(exchange.live, message, published), message)
    if (message.upstream !== undefined) yield* callUpstream(exchange, message.upstream)
    for (const hook of after) {
      yield* hook(exchange as Exchange)
      if (exchange.isDropped) return
    }
  })

  // a message that runs user code gets a Scope of its own, closed when it is done
  const run = (exchange: LiveExchange) =>
    userFilters || processors.has(exchange.command) ? Effect.scoped(steps(exchange)) : steps(exchange)


  const inConnectionScope = <A, E>(connection: LiveConnection, effect: Effect.Effect<A, E, never>) =>
    Effect.provideService(effect, Scope.Scope, connection.scope)

  return {
    /** Whether there are `onOpen` hooks. */
    hasOpenHooks: opens.length > 0,

    /** Runs the onOpen hooks of filters, then of processors; false when one refused the connection. */
    open: (connection: LiveConnection) =>
      inConnectionScope(
        connection,
        Effect.forEach(opens, (hook) => Effect.suspend(() => hook(connection)), { discard: true })
      ).pipe(
        Effect.as(true),
        Effect.catchCause((cause) => answer(connection, undefined)(cause).pipe(Effect.as(false)))
      ),

    /** Processes one incoming message. */
    handle: (connection: LiveConnection, data: string | Uint8Array): Effect.Effect<void> => {
      const frame = typeof data === "string" ? Frame.parse(data, parseOptions) : Frame.parseBytes(data, parseOptions)
      if (Result.isFailure(frame)) return Effect.sync(() => connection.write(frame.failure.toFrame()))
      const message = Message.classify(frame.success)
      if (Result.isFailure(message)) {
        const id = frame.success.headers.get(Header.id) || undefined
        return Effect.sync(() => connection.write(message.failure.toFrame(id)))
      }
      const { command, headers, publish, upstream } = message.success
      const id = message.success._tag === "Request" ? message.success.id : undefined
      // what no user code sees needs no exchange: the built-ins alone
      if (!userFilters && !processors.has(command) && upstream === undefined) {
        if (!hasBuiltin(headers)) return Effect.sync(() => connection.write(Rejection.unknownCommand(command).toFrame(id)))
        const published = publish.length > 0 ? Frame.render(message.success) : undefined
        return spanned(
          traced(pubSub(connection, message.success, published), message.success).pipe(
            Effect.catchCause(answer(connection, id))
          ),
          connection,
          command
        )
      }
      const processed = spanned(
        run(new LiveExchange(connection, message.success)).pipe(Effect.catchCause(answer(connection, id))),
        connection,
        command
      )
      // a request for a processor runs beside the connection's other messages; none starts while draining
      if (id === undefined || !processors.has(command)) return processed
      if (connection.isClosing) return Effect.sync(() => connection.write(Rejection.shuttingDown.toFrame(id)))
      return connection.request(processed)
    },

    /**
     * Authenticates a connection by its first message (`authenticateMessage`):
     * the principal it sets goes on the connection, a first message with an
     * `id` is answered with an empty frame of its command; false, after the
     * error frame, when it does not decode or is refused.
     */
    authenticate: (connection: LiveConnection, data: string | Uint8Array): Effect.Effect<boolean> =>
      Effect.suspend(() => {
        const frame = typeof data === "string" ? Frame.parse(data, parseOptions) : Frame.parseBytes(data, parseOptions)
        const message = Result.isFailure(frame) ? frame : Message.classify(frame.success)
        if (Result.isFailure(message) || options.authenticateMessage === undefined) {
          if (Result.isFailure(message)) connection.write(message.failure.toFrame())
          return Effect.succeed(false)
        }
        const { command } = message.success
        const id = message.success._tag === "Request" ? message.success.id : undefined
        const { admission: admitted, data: principal } = admission()
        return options.authenticateMessage(message.success, admitted).pipe(
          Effect.map(() => {
            connection.admit(principal)
            if (id !== undefined) connection.write({ command, headers: new Map([[Header.id, id]]), body: "" })
            return true
          }),
          Effect.catchCause((cause) => answer(connection, id)(cause).pipe(Effect.as(false)))
        )
      }),

    /** Runs every onClose hook, whatever fails. */
    close: (connection: LiveConnection) =>
      inConnectionScope(
        connection,
        Effect.forEach(closes, (hook) => Effect.exit(Effect.suspend(() => hook(connection))), { discard: true })
      )
  }
}

/** The pipeline of a server. */
export type Pipeline = ReturnType<typeof make>
