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
import { Context, Data, Deferred, Duration, Effect, Exit, Layer, Result, Schedule } from "effect"
import { Bus } from "./Bus.ts"
import * as Channel from "./Channel.ts"
import * as Connection from "./Connection.ts"
import { Hub } from "./Hub.ts"
import { checkedOr, parseChannelPrefix, parseList } from "./internal/server/config.ts"
import { randomId } from "./internal/wire/ids.ts"
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
export const info: Connection.Key<unknown> = Connection.key<unknown>("effect-lhttp/Presence/info")

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

// the bus channels between nodes (`$` channels: no client can name them)
const queries = Result.getOrThrow(Channel.internal("lhttp.presence.query"))
const nodes = Result.getOrThrow(Channel.internal("lhttp.presence.nodes"))
// (a node id that cannot name a channel gets no reply: this node's own ids always can)
const repliesTo = (node: string) => Channel.internal(`lhttp.presence.reply.${node}`)

// how often a node says it is there, and how long the others count it without hearing from it
const heartbeat = Duration.seconds(5)
const forgetAfter = 15_000

interface Query {
  readonly id: number
  readonly channel: string
  readonly limit: number
  readonly from: string
}

interface Reply {
  readonly id: number
  readonly node: string
  readonly members: ReadonlyArray<Member>
  readonly cut: boolean
}

interface Waiting {
  readonly expected: ReadonlySet<string>
  readonly replies: Map<string, Reply>
  readonly done: Deferred.Deferred<void>
}

const parse = <A>(text: string): A | undefined => {
  try {
    return JSON.parse(text) as A
  } catch {
    return undefined
  }
}

/**
 * Makes presence over the `Hub` and the `Bus` in context: joins the other
 * nodes on the bus and publishes join and leave events until the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function*(options?: Options) {
  const hub = yield* Hub
  const bus = yield* Bus
  const node = randomId()
  const maxMembers = options?.maxMembers ?? 1000
  const timeout = Duration.fromInputUnsafe(options?.timeout ?? Duration.seconds(1))
  const events = (options?.events ?? []).map((prefix) => prefix === "*" ? "" : prefix)
  const context = yield* Effect.context<never>()
  const run = Effect.runForkWith(context)

  const memberOf = (connection: Connection.Connection): Member => {
    const shown = connection.get(info)
    return shown === undefined ? { connection: connection.id, node } : { connection: connection.id, node, info: shown }
  }

  const local = (channel: Channel.ChannelId, limit: number) => {
    const connections = hub.members(channel)
    return { members: connections.slice(0, limit).map(memberOf), cut: connections.length > limit }
  }

  // the nodes heard from lately, this one included
  const seen = new Map<string, number>([[node, Date.now()]])
  const alive = () => {
    const now = Date.now()
    seen.set(node, now)
    for (const [id, at] of seen) if (now - at > forgetAfter) seen.delete(id)
    return new Set(seen.keys())
  }

  const waiting = new Map<number, Waiting>()
  let nextQuery = 0

  // another node's query: this node's members of the channel, to the asker
  const answer = (text: string) => {
    const query = parse<Query>(text)
    if (query === undefined || typeof query.channel !== "string" || typeof query.from !== "string") return
    const channel = Channel.validate(query.channel)
    if (Result.isFailure(channel)) return
    seen.set(query.from, Date.now())
    const to = repliesTo(query.from)
    if (Result.isFailure(to)) return
    const reply: Reply = { id: query.id, node, ...local(channel.success, Math.min(query.limit, maxMembers)) }
    run(Effect.ignore(bus.publish(to.success, JSON.stringify(reply))))
  }

  const collect = (text: string) => {
    const reply = parse<Reply>(text)
    if (reply === undefined || typeof reply.node !== "string") return
    seen.set(reply.node, Date.now())
    const query = waiting.get(reply.id)
    if (query === undefined) return
    query.replies.set(reply.node, reply)
    if ([...query.expected].every((id) => query.replies.has(id))) Deferred.doneUnsafe(query.done, Exit.void)
  }

  // a node heard from for the first time is told of this one at once, so that its first query waits for it
  const hello = (from: string) => {
    const known = seen.has(from)
    seen.set(from, Date.now())
    if (!known && from !== node) run(Effect.ignore(bus.publish(nodes, node)))
  }

  yield* bus.subscribe(queries, answer).pipe(Effect.orDie)
  yield* bus.subscribe(Result.getOrThrow(repliesTo(node)), collect).pipe(Effect.orDie)
  yield* bus.subscribe(nodes, hello).pipe(Effect.orDie)
  // this node says it is there: at once (again every 100 ms while the bus cannot publish yet), then at
  // every heartbeat
  const announce = bus.publish(nodes, node)
  yield* Effect.forkScoped(
    announce.pipe(
      Effect.retry(Schedule.spaced("100 millis")),
      Effect.andThen(Effect.ignore(announce).pipe(Effect.delay(heartbeat), Effect.forever))
    )
  )

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
      const id = ++nextQuery
      const query: Waiting = { expected: alive(), replies: new Map(), done: Deferred.makeUnsafe() }
      waiting.set(id, query)
      const ask: Query = { id, channel: checked.success, limit: maxMembers, from: node }
      const complete = yield* bus.publish(queries, JSON.stringify(ask)).pipe(
        Effect.mapError((error) => new PresenceError({ reason: "BusUnavailable", message: error.message })),
        Effect.andThen(Deferred.await(query.done)),
        Effect.as(true),
        Effect.timeoutOrElse({ duration: timeout, orElse: () => Effect.succeed(false) }),
        Effect.ensuring(Effect.sync(() => waiting.delete(id)))
      )
      const all = Array.from(query.replies.values())
      const listed = all.flatMap((reply) => reply.members)
      return {
        channel: checked.success,
        members: listed.slice(0, maxMembers),
        cut: listed.length > maxMembers || all.some((reply) => reply.cut),
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
  )

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
