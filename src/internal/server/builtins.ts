/**
 * The built-in after filters, which act on what the decoded message asks:
 *
 * - pub/sub: subscribe, then publish (the message as changed, rendered
 *   once), then unsubscribe, whatever the header order; every action is
 *   authorized before any is applied;
 * - upstream: the call queued on the connection's lane, which runs its calls
 *   in order while the connection's next messages go on.
 */
import { Effect } from "effect"
import type { Authorization } from "../../Authorization.ts"
import type { ChannelId } from "../../Channel.ts"
import type { Position } from "../../History.ts"
import type { Hub } from "../../Hub.ts"
import * as Message from "../../Message.ts"
import * as Rejection from "../../Rejection.ts"
import * as Upstream from "../../Upstream.ts"
import type { Frame } from "../wire/frameModel.ts"
import { renderAckPositions } from "../wire/positions.ts"
import { AckHeader } from "../wire/protocol.ts"
import { answer } from "./answer.ts"
import type { LiveConnection } from "./connection.ts"
import type { LiveExchange } from "./exchange.ts"
import type { ServerTokens } from "./tokens.ts"

const { Header } = Message

/** What the built-ins need from the server. */
interface Options {
  readonly hub: Hub["Service"]
  /** Upstream calls, when configured. */
  readonly upstream: Upstream.Upstream["Service"] | undefined
  /** Decides on each action of the built-in headers, before any is applied. */
  readonly authorize?: ((request: Authorization) => Effect.Effect<void, Rejection.Rejection>) | undefined
  /** Spans for the built-ins (`lhttp.publish`, `lhttp.upstream`). */
  readonly tracing: boolean
  /** Subscription tokens for private channels, the users of user-limited ones. */
  readonly tokens: ServerTokens
}

/** Whether a message has something for the built-ins to do (an empty `publish:` counts: it asks for nothing). */
export const hasBuiltin = (message: Message.Notify | Message.Request): boolean =>
  message.subscribe.length > 0 || message.publish.length > 0 || message.unsubscribe.length > 0 ||
  message.upstream !== undefined || hasEmptyBuiltin(message.headers)

// a built-in header with an empty value names nothing, but the message is not an unknown command
const hasEmptyBuiltin = (headers: ReadonlyMap<string, string>): boolean =>
  headers.has(Header.subscribe) || headers.has(Header.publish) || headers.has(Header.unsubscribe) ||
  headers.has(Header.upstream)

/**
 * Whether a message only publishes: no subscribe, unsubscribe or `since`
 * (which ask for the hub's effects or answers).
 */
export const isPlainPublish = (message: Message.Notify | Message.Request): boolean =>
  message.subscribe.length === 0 && message.unsubscribe.length === 0 && !message.headers.has(Header.since)

/**
 * The acknowledgement of a publish with an `id` (docs/protocol.md): the
 * message's command, its `id`, and the positions of the published channels
 * that keep history.
 */
export const acknowledgement = (
  command: string,
  id: string,
  positions: ReadonlyMap<ChannelId, Position>
): Frame => {
  const headers = new Map<string, string>([[Header.id, id]])
  if (positions.size > 0) headers.set(AckHeader.positions, renderAckPositions(positions))
  return { command, headers, body: "" }
}

/** Makes the built-in after filters. */
export const make = (options: Options) => {
  const { authorize, hub, tokens, tracing, upstream } = options

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

  // subscribe, then publish (the rendered text), then unsubscribe; composed without a generator, as the
  // messages no user code sees run nothing else. A message with an `id` waits for the bus to take its
  // publish, and answers with where it was taken (the positions of its history channels).
  const pubSub = (
    connection: LiveConnection,
    message: Message.Notify | Message.Request,
    published: string | undefined
  ): Effect.Effect<ReadonlyMap<ChannelId, Position> | undefined, Rejection.Rejection> => {
    let effect: Effect.Effect<void, Rejection.Rejection> | undefined
    let positions: ReadonlyMap<ChannelId, Position> | undefined
    const then = (next: Effect.Effect<void, Rejection.Rejection>) => {
      effect = effect === undefined ? next : Effect.andThen(effect, next)
    }
    const refusal = sinceRefusal(message)
    if (refusal !== undefined) return traced(Effect.fail(refusal), message).pipe(Effect.as(undefined))
    // every action is decided on before any is applied: the tokens of private channels and the users of
    // user-limited ones first, then the hook (one that throws is a defect like any other: 500)
    if (message.subscribe.length > 0) {
      const check = tokens.checkSubscribe(connection, message.subscribe, message.headers)
      if (check !== undefined) then(check)
    }
    if (published !== undefined && tokens.checksPublish) {
      const refused = tokens.checkPublish(connection, message.publish)
      if (refused !== undefined) return traced(Effect.fail(refused), message).pipe(Effect.as(undefined))
    }
    if (authorize !== undefined) {
      const ask = (request: Authorization) => Effect.suspend(() => authorize(request))
      if (message.subscribe.length > 0) then(ask({ action: "subscribe", channels: message.subscribe, connection }))
      if (published !== undefined) then(ask({ action: "publish", channels: message.publish, connection }))
      if (message.unsubscribe.length > 0) {
        then(ask({ action: "unsubscribe", channels: message.unsubscribe, connection }))
      }
    }
    if (message.subscribe.length > 0) {
      // the recoveries of `since` run beside the connection's next messages (a session restore, another
      // channel's recovery), their failure answered as this message's
      const id = message._tag === "Request" ? message.id : undefined
      then(hub.subscribe(connection, message.subscribe, {
        since: message.since,
        recoverBeside: (recovering) => connection.request(Effect.catchCause(recovering, answer(connection, id)))
      }))
    }
    if (published !== undefined) {
      then(
        message._tag === "Request"
          ? Effect.map(hub.publishTextAcknowledged(message.publish, published), (taken) => {
            positions = taken
          })
          : hub.publishText(message.publish, published)
      )
    }
    if (message.unsubscribe.length > 0) then(hub.unsubscribe(connection, message.unsubscribe))
    return Effect.map(traced(effect ?? Effect.void, message), () => positions)
  }

  // positions asked for: `now` for any channels, a well-formed position for exactly one
  const sinceRefusal = (message: Message.Notify | Message.Request): Rejection.Rejection | undefined => {
    const since = message.since
    if (since === undefined) {
      return message.headers.has(Header.since)
        ? Rejection.invalidSince("a since header is now or <epoch>:<offset>")
        : undefined
    }
    if (message.subscribe.length === 0) return Rejection.invalidSince("a since header goes with a subscribe header")
    if (since !== "now" && message.subscribe.length !== 1) {
      return Rejection.invalidSince("a since position goes with exactly one subscribed channel")
    }
    return undefined
  }

  // queues the call on the connection's upstream lane, which runs its calls in order while the
  // connection's next messages go on
  const callUpstream = (exchange: LiveExchange, target: Message.Upstream) =>
    Effect.suspend((): Effect.Effect<void, Rejection.Rejection | Upstream.UpstreamError> => {
      if (upstream === undefined) return Effect.fail(Rejection.upstreamNotConfigured)
      const connection = exchange.connection
      const lane = connection.lane()
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
              if (response.contentType !== undefined) headers.set(Upstream.contentTypeHeader, response.contentType)
              if (id !== undefined) headers.set(Header.id, id)
              return Effect.sync(() => connection.write({ command, headers, body: response.body }))
            }),
            // a failure or a defect of one call answers it and leaves the lane running
            Effect.catchCause(answer(connection, id))
          )
        ))
    })

  return { pubSub, callUpstream }
}
