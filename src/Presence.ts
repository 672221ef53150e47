/**
 * Presence: who is subscribed to a channel, on every node of a cluster. A
 * member is a connection: its id, its node, and what the app says of it
 * ({@link info}, e.g. the user's name; never a session key or a token).
 *
 * - `members(channel)`: the members as an Effect, bounded (`cut` says when
 *   the list stops at the limit); on a cluster every node is asked over the
 *   bus and answers with its own.
 * - The `presence` command ({@link PresenceProcessor}): a connection asks for
 *   the members of a channel it is subscribed to.
 * - Join and leave events for the channels whose names start with one of the
 *   `events` prefixes: a `presence` frame published to the channel itself
 *   when a connection subscribes or leaves (unsubscribe or disconnect).
 *
 * Formats and guarantees: docs/history-and-presence.md.
 *
 * @since 0.1.0
 */
import type { Config } from "effect"
import { Context, Data, Duration, Effect, Layer, Result } from "effect"
import type { Bus } from "./Bus.ts"
import * as Channel from "./Channel.ts"
import * as Cluster from "./Cluster.ts"
import * as Connection from "./Connection.ts"
import { Hub } from "./Hub.ts"
import { checkedOr, parseChannelPrefix, parseList } from "./internal/server/config.ts"
import * as Protocol from "./internal/wire/protocol.ts"
import * as Processor from "./Processor.ts"
import * as Rejection from "./Rejection.ts"

/**
 * The command of presence frames: the question, its answer, and join and
 * leave events.
 *
 * @since 0.1.0
 * @category constants
 */
export const command: typeof Protocol.Command.presence = Protocol.Command.presence

/**
 * The headers of presence frames.
 *
 * @since 0.1.0
 * @category constants
 */
export const Header: typeof Protocol.PresenceHeader = Protocol.PresenceHeader

/**
 * A member of a channel.
 *
 * @since 0.1.0
 * @category models
 */
export interface Member {
  /** The connection's id (unique on its node). */
  readonly connection: string
  /** The node it is on. */
  readonly node: string
  /** The user it belongs to (`Connection.user`), if any. */
  readonly user?: string
  /** What the app set with {@link info}, if anything. */
  readonly info?: unknown
}

/**
 * The members of a channel: at most the limit (`cut` when there were more),
 * and whether every node answered (`complete`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Members {
  readonly channel: string
  readonly members: ReadonlyArray<Member>
  readonly cut: boolean
  readonly complete: boolean
}

/**
 * What presence shows of a connection: set it (JSON-able, small) before the
 * connection subscribes, e.g. `{ name: "alice" }` from a login or an
 * `authenticate` hook. A connection without it shows its id alone.
 *
 * @since 0.1.0
 * @category constants
 */
export const info: Connection.Key<unknown> = Connection.info

/**
 * Options of presence.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Channels with join and leave events: name prefixes, `*` for every channel (default none). */
  readonly events?: ReadonlyArray<string> | undefined
  /** Most members one answer lists (default 1,000). */
  readonly maxMembers?: number | undefined
  /** How long a query waits for the other nodes (default 1 s): past it, the answer says `complete: false`. */
  readonly timeout?: Duration.Input | undefined
}

/**
 * A presence query that could not be made.
 *
 * @since 0.1.0
 * @category errors
 */
export class PresenceError extends Data.TaggedError("PresenceError")<{
  readonly reason: "InvalidChannel" | "BusUnavailable"
  readonly message: string
}> {}

/**
 * The presence service.
 *
 * @since 0.1.0
 * @category services
 */
export class Presence extends Context.Service<Presence, {
  /** The members of a channel, on every node. */
  readonly members: (channel: string) => Effect.Effect<Members, PresenceError>
  /** This node's id, as members name it. */
  readonly node: string
}>()("effect-lhttp/Presence") {}

/**
 * The `presence` command: `LHTTP/1.0 presence` with `channel:<channel>` (and
 * an `id`), answered with a `presence` frame: `channel`, `count`, `cut`,
 * `complete`, and the members as a JSON array in the body. A connection asks
 * about a channel it is subscribed to (`403 Forbidden` otherwise).
 *
 * @since 0.1.0
 * @category processors
 */
export const PresenceProcessor = Processor.make(command)

// the question presence asks every node: its members of a channel
const membersQuestion = "presence.members"

interface Reply {
  readonly members: ReadonlyArray<Member>
  readonly cut: boolean
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null

/**
 * Makes presence over the `Hub`, the `Bus` and the `Cluster` in context:
 * answers the other nodes' questions and publishes join and leave events
 * until the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function*(options?: Options) {
  const hub = yield* Hub
  const cluster = yield* Cluster.Cluster
  const node = cluster.node
  const maxMembers = options?.maxMembers ?? 1000
  const timeout = Duration.fromInputUnsafe(options?.timeout ?? Duration.seconds(1))
  const events = (options?.events ?? []).map((prefix) => prefix === "*" ? "" : prefix)

  const memberOf = (connection: Connection.Connection): Member => {
    const shown = connection.get(info)
    const user = connection.get(Connection.user)
    return {
      connection: connection.id,
      node,
      ...(user === undefined ? {} : { user }),
      ...(shown === undefined ? {} : { info: shown })
    }
  }

  const local = (channel: Channel.ChannelId, limit: number): Reply => {
    const connections = hub.members(channel)
    return { members: connections.slice(0, limit).map(memberOf), cut: connections.length > limit }
  }

  // another node's question (or this one's): this node's members of the channel
  yield* cluster.serve(membersQuestion, (question) =>
    Effect.sync(() => {
      if (!isRecord(question) || typeof question.channel !== "string") return undefined
      const channel = Channel.validate(question.channel)
      if (Result.isFailure(channel)) return undefined
      const limit = typeof question.limit === "number" ? Math.min(question.limit, maxMembers) : maxMembers
      return local(channel.success, limit)
    }))

  // join and leave events, published to the channel itself
  const eventful = (channel: string) => events.some((prefix) => channel.startsWith(prefix)) && !channel.startsWith("$")
  yield* hub.watch(({ channel, connection, joined }) => {
    if (!eventful(channel)) return Effect.void
    const member = memberOf(connection)
    return Effect.ignore(hub.publish(channel, command, {
      [Header.channel]: channel,
      [Header.event]: joined ? "join" : "leave",
      [Header.connection]: member.connection,
      [Header.node]: node
    }, JSON.stringify(member)))
  })

  const members = (channel: string) =>
    Effect.gen(function*() {
      const checked = Channel.validate(channel)
      if (Result.isFailure(checked)) {
        return yield* new PresenceError({ reason: "InvalidChannel", message: checked.failure.message })
      }
      const { answers, complete } = yield* cluster.ask<Reply>(
        membersQuestion,
        { channel: checked.success, limit: maxMembers },
        timeout
      ).pipe(Effect.mapError((error) => new PresenceError({ reason: "BusUnavailable", message: error.message })))
      const replies = answers.flatMap(({ answer }) => isRecord(answer) && Array.isArray(answer.members) ? [answer] : [])
      const listed = replies.flatMap((reply) => reply.members)
      return {
        channel: checked.success,
        members: listed.slice(0, maxMembers),
        cut: listed.length > maxMembers || replies.some((reply) => reply.cut),
        complete
      } satisfies Members
    })

  const service = Presence.of({ members, node })

  const processor = PresenceProcessor.toLayer({
    onMessage: (exchange) =>
      Effect.gen(function*() {
        const channel = exchange.header(Header.channel) ?? ""
        if (!exchange.connection.channels.has(channel)) {
          return yield* Rejection.forbidden("ask for the presence of a channel this connection is subscribed to")
        }
        const answer = yield* members(channel).pipe(
          Effect.mapError((error) => Rejection.busUnavailable(error.message))
        )
        const headers = new Map<string, string>([
          [Header.channel, answer.channel],
          [Header.count, String(answer.members.length)],
          [Header.cut, answer.cut ? "yes" : "no"],
          [Header.complete, answer.complete ? "yes" : "no"]
        ])
        if (exchange.id !== undefined) headers.set(Protocol.Header.id, exchange.id)
        yield* Effect.orDie(exchange.connection.send({ command, headers, body: JSON.stringify(answer.members) }))
      })
  })

  return { service, processor }
})

/**
 * Presence and the implementation of {@link PresenceProcessor}, over the
 * `Hub` and the `Bus`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options?: Options
): Layer.Layer<Presence | Processor.Service<"presence">, never, Hub | Bus> =>
  Layer.unwrap(
    Effect.map(make(options), ({ processor, service }) => Layer.merge(Layer.succeed(Presence, service), processor))
  ).pipe(Layer.provide(Cluster.layer))

/**
 * {@link layer} with the join and leave events of `LHTTP_PRESENCE_EVENTS`:
 * comma-separated channel name prefixes, `*` for every channel (default
 * none: the `presence` command answers, no events are published); a prefix
 * no channel name can start with fails with a `ConfigError` at the variable.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: Layer.Layer<Presence | Processor.Service<"presence">, Config.ConfigError, Hub | Bus> = Layer
  .unwrap(
    Effect.map(
      checkedOr(
        "LHTTP_PRESENCE_EVENTS",
        [],
        parseList("comma-separated channel name prefixes or *", parseChannelPrefix, { allowEmpty: true })
      ),
      (events) => layer({ events })
    )
  )
