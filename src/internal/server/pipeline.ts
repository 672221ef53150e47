/**
 * What happens to one incoming message, in one direction:
 *
 *   parse -> Message (classified once) -> before: user filters
 *         -> processor (typed body)
 *         -> after: pub/sub (subscribe, publish, unsubscribe), upstream, user filters
 *
 * A frame is decoded once into the tagged `Message`: its channels are
 * validated, its `since` read, its upstream target split and its multipart
 * parts cut there, and every step reads them from it (processors and filters
 * as `exchange.message`). A step that changes a built-in header (or the body
 * of a multipart message) gets the message re-classified once, at the next
 * step that reads it.
 *
 * Every refusal is a `Respondable` error answered with its error frame, which
 * echoes the message's `id`; the connection stays open. A message that runs
 * user code runs in a `Scope` of its own. A request (a message with an `id`
 * for a processor) runs in a fiber of its own beside the connection's other
 * messages (`LiveConnection.request`), and so does the wait of a publish with
 * an `id` for a bus that confirms it later (its message is sent first, in
 * order); nothing else forks a fiber per message.
 */
import { Effect, Result, Schema, Scope } from "effect"
import type { Admission, Authorization } from "../../Authorization.ts"
import type * as Channel from "../../Channel.ts"
import type { Exchange } from "../../Exchange.ts"
import type * as Filter from "../../Filter.ts"
import * as Frame from "../../Frame.ts"
import type { Position } from "../../History.ts"
import type { Hub } from "../../Hub.ts"
import * as Message from "../../Message.ts"
import type * as Processor from "../../Processor.ts"
import * as Rejection from "../../Rejection.ts"
import * as Tokens from "../../Tokens.ts"
import type * as Upstream from "../../Upstream.ts"
import * as Grammar from "../wire/grammar.ts"
import { Command } from "../wire/protocol.ts"
import { answer, declared } from "./answer.ts"
import * as Builtins from "./builtins.ts"
import type { LiveConnection } from "./connection.ts"
import { LiveExchange } from "./exchange.ts"
import type { ServerTokens } from "./tokens.ts"

const { Header } = Message

/** What the pipeline needs from the server. */
interface Options {
  readonly processors: ReadonlyMap<string, Processor.Implementation>
  readonly filters: ReadonlyArray<Filter.Implementation>
  readonly hub: Hub["Service"]
  /** Upstream calls, when configured. */
  readonly upstream: Upstream.Upstream["Service"] | undefined
  readonly maxHeaders: number
  /** Decides on each action of the built-in headers, before any is applied. */
  readonly authorize?: ((request: Authorization) => Effect.Effect<void, Rejection.Rejection>) | undefined
  /** Spans for each message's path (message, processor, publish, upstream). */
  readonly tracing?: boolean | undefined
  /** Authentication by a connection's first message, when the server asks for it. */
  readonly authenticateMessage?:
    | ((message: Message.Notify | Message.Request, data: Admission) => Effect.Effect<void, Rejection.Rejection>)
    | undefined
  /** Connection and subscription tokens, user-limited channels. */
  readonly tokens: ServerTokens
}

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
  const { filters, processors, tokens } = options
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
  // whether a publish may skip its effect when nothing is asked of it: no authorize hook, no spans
  const plainPublishes = options.authorize === undefined && options.tracing !== true && !tokens.checksPublish
  const parseOptions = { maxHeaders: options.maxHeaders }
  const tracing = options.tracing === true
  const { callUpstream, pubSub } = Builtins.make({
    hub: options.hub,
    upstream: options.upstream,
    authorize: options.authorize,
    tokens,
    tracing
  })

  // the declared errors of each typed processor become their error frames; anything else is left as it is
  const declares = new Map<string, (u: unknown) => boolean>()
  for (const [command, processor] of processors) {
    if (processor.error !== undefined) declares.set(command, Schema.is(processor.error))
  }
  const typed = <A>(
    processor: Processor.Implementation,
    effect: Effect.Effect<A, unknown>
  ): Effect.Effect<A, unknown> => {
    const is = declares.get(processor.command)
    return is === undefined ? effect : Effect.catchIf(effect, is, (error) => declared(processor.error!, error))
  }

  // a message's whole path as a span, when tracing
  const spanned = (effect: Effect.Effect<void>, connection: LiveConnection, command: string) =>
    tracing
      ? Effect.withSpan(effect, "lhttp.message", {
        attributes: { "lhttp.command": command, "lhttp.connection": connection.id }
      })
      : effect

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
        const reply = yield* (tracing
          ? Effect.withSpan(handled, "lhttp.processor", { attributes: { "lhttp.command": exchange.command } })
          : handled)
        if (processor.reply !== undefined && !exchange.isDropped) {
          yield* exchange.send(yield* Schema.encodeEffect(processor.reply)(reply).pipe(Effect.orDie))
        }
      }
      if (exchange.isDropped) return
    }
    const message = yield* Effect.fromResult(exchange.current())
    if (processor === undefined && !Builtins.hasBuiltin(message)) {
      return yield* Rejection.unknownCommand(exchange.command)
    }
    const published = message.publish.length > 0 ? yield* Effect.fromResult(exchange.publishedText()) : undefined
    const positions = yield* pubSub(exchange.connection, message, published)
    // a publish with an id is acknowledged, unless something else answers the id: its processor, its upstream
    if (positions !== undefined && exchange.id !== undefined && !exchange.answered && message.upstream === undefined) {
      exchange.connection.write(Builtins.acknowledgement(exchange.command, exchange.id, positions))
    }
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
    /** Whether there are `onOpen` hooks (a token's channels and expiry count). */
    hasOpenHooks: opens.length > 0 || tokens.enabled,

    /**
     * Subscribes the channels of the connection's token (a refusal answered,
     * the connection kept), then runs the onOpen hooks of filters, then of
     * processors; false when one refused the connection.
     */
    open: (connection: LiveConnection) =>
      Effect.andThen(
        tokens.enabled ? Effect.catchCause(tokens.open(connection), answer(connection, undefined)) : Effect.void,
        inConnectionScope(
          connection,
          Effect.forEach(opens, (hook) => Effect.suspend(() => hook(connection)), { discard: true })
        ).pipe(
          Effect.as(true),
          Effect.catchCause((cause) => answer(connection, undefined)(cause).pipe(Effect.as(false)))
        )
      ),

    /**
     * Processes one incoming message: done at once when it needs no fiber (a
     * plain publish on a bus that publishes at once, or a frame refused by the
     * codec), else the effect that does it.
     */
    handle: (connection: LiveConnection, data: string | Uint8Array): Effect.Effect<void> | undefined => {
      const frame = typeof data === "string" ? Frame.parse(data, parseOptions) : Frame.parseBytes(data, parseOptions)
      if (Result.isFailure(frame)) {
        connection.write(frame.failure.toFrame())
        return undefined
      }
      const message = Message.classify(frame.success)
      if (Result.isFailure(message)) {
        const id = frame.success.headers.get(Header.id) || undefined
        connection.write(message.failure.toFrame(id))
        return undefined
      }
      const { command, publish, upstream } = message.success
      const id = message.success._tag === "Request" ? message.success.id : undefined
      // a fresh token, when the server takes tokens
      if (command === Command.token && tokens.enabled) {
        return Effect.catchCause(tokens.take(connection, message.success), answer(connection, id))
      }
      // what no user code sees needs no exchange: the built-ins alone
      if (!userFilters && !processors.has(command) && upstream === undefined) {
        if (!Builtins.hasBuiltin(message.success)) {
          return Effect.sync(() => connection.write(Rejection.unknownCommand(command).toFrame(id)))
        }
        // the frame as it came when that is its rendering (a text frame, each header once): no render
        const published = publish.length === 0
          ? undefined
          : typeof data === "string" && Grammar.rendersAs(frame.success, data)
          ? data
          : Frame.render(message.success)
        // a plain publish (nothing to decide, subscribe or trace) on a hub that can publish at once
        if (published !== undefined && plainPublishes && Builtins.isPlainPublish(message.success)) {
          if (id === undefined) {
            if (options.hub.publishTextNow(publish, published)) return undefined
          } else {
            const positions = new Map<Channel.ChannelId, Position>()
            if (options.hub.publishTextNow(publish, published, positions)) {
              connection.write(Builtins.acknowledgement(command, id, positions))
              return undefined
            }
            // the bus confirms it later: the message is sent at once, in order, and its confirmation is
            // awaited beside the connection's next messages, as a request is
            return connection.request(
              options.hub.publishTextAcknowledged(publish, published).pipe(
                Effect.map((taken) => connection.write(Builtins.acknowledgement(command, id, taken))),
                Effect.catchCause(answer(connection, id))
              )
            )
          }
        }
        return spanned(
          pubSub(connection, message.success, published).pipe(
            Effect.map((positions) => {
              if (positions !== undefined && id !== undefined) {
                connection.write(Builtins.acknowledgement(command, id, positions))
              }
            }),
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
     * Authenticates a connection by its first message: a `token` message when
     * the server takes tokens (answered with the token's user and expiry),
     * else `authenticateMessage`, whose principal goes on the connection, a
     * first message with an `id` answered with an empty frame of its
     * command; false, after the error frame, when it does not decode or is
     * refused.
     */
    authenticate: (connection: LiveConnection, data: string | Uint8Array): Effect.Effect<boolean> =>
      Effect.suspend(() => {
        const frame = typeof data === "string" ? Frame.parse(data, parseOptions) : Frame.parseBytes(data, parseOptions)
        const message = Result.isFailure(frame) ? frame : Message.classify(frame.success)
        if (Result.isFailure(message)) {
          connection.write(message.failure.toFrame())
          return Effect.succeed(false)
        }
        const { command } = message.success
        const id = message.success._tag === "Request" ? message.success.id : undefined
        if (tokens.enabled && (command === Command.token || options.authenticateMessage === undefined)) {
          const taken = command === Command.token
            ? tokens.take(connection, message.success)
            : Effect.fail(Tokens.refusal("TokenMissing", "the first message is a token"))
          return taken.pipe(
            Effect.as(true),
            Effect.catchCause((cause) => answer(connection, id)(cause).pipe(Effect.as(false)))
          )
        }
        if (options.authenticateMessage === undefined) return Effect.succeed(false)
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
      Effect.andThen(
        Effect.sync(() => tokens.close(connection)),
        inConnectionScope(
          connection,
          Effect.forEach(closes, (hook) => Effect.exit(Effect.suspend(() => hook(connection))), { discard: true })
        )
      )
  }
}
