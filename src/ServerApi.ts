/**
 * The server API: what a backend does to the cluster. One set of operations
 * in two faces: this service, for an Effect app on a node, and
 * `POST /api/<operation>` with a JSON body on the Node server
 * (`NodeLhttpServer`, behind `LHTTP_API_KEY`). docs/api.md shows a request
 * and its answer for each.
 *
 * - `publish` (one channel, answered with its position when it keeps
 *   history), `broadcast` (many channels, one message);
 * - `subscribe`, `unsubscribe`, `disconnect`, `send`: the connections of a
 *   user (all of them, on every node) or one connection, server-side (`send`
 *   delivers one frame to them: a user addressed directly);
 * - `presence`, `presence_stats`, `history` (since a position or the
 *   latest, with a limit), `history_remove`;
 * - `channels` (the active ones, with their subscribers, across nodes, by a
 *   pattern), `info` (the nodes);
 * - `batch`: several of the above, in order.
 *
 * What spans nodes is asked of every node over the bus (`Cluster`) and says
 * whether every node answered within the timeout (`complete`): never a
 * silent partial answer. A connection belongs to a user when
 * `Connection.user` is set on it (by an `authenticate` hook, a token, a
 * processor). The `send` processor ({@link SendProcessor}) lets a client
 * address a user the same way.
 *
 * @since 0.1.0
 */
import type { Stream } from "effect"
import { Context, Duration, Effect, Layer, Option, Result, Schema } from "effect"
import { Bus } from "./Bus.ts"
import * as Channel from "./Channel.ts"
import * as Cluster from "./Cluster.ts"
import type * as Connection from "./Connection.ts"
import * as Frame from "./Frame.ts"
import * as History from "./History.ts"
import { Hub } from "./Hub.ts"
import * as Errors from "./internal/api/errors.ts"
import { fromRejection, invalid } from "./internal/api/errors.ts"
import * as Questions from "./internal/api/questions.ts"
import { type ConnectionsQuestion, isRecord, kinds, sumOf } from "./internal/api/questions.ts"
import * as Send from "./internal/api/send.ts"
import * as Tail from "./internal/api/tail.ts"
import { version } from "./internal/server/version.ts"
import { LhttpServer } from "./LhttpServer.ts"
import { type Member, Presence } from "./Presence.ts"
import type * as Processor from "./Processor.ts"

// ---------------------------------------------------------------------------------------------
// errors

/**
 * Why an operation was refused, as JSON (`{"reason", "message"}`) with the
 * HTTP status of {@link statusOf}.
 *
 * @since 0.1.0
 * @category errors
 */
export const ApiError: typeof Errors.ApiError = Errors.ApiError

/**
 * The type of an `ApiError`.
 *
 * @since 0.1.0
 * @category errors
 */
export type ApiError = Errors.ApiError

/**
 * The HTTP status of an {@link ApiError}.
 *
 * @since 0.1.0
 * @category errors
 */
export const statusOf: (error: ApiError) => number = Errors.statusOf

// ---------------------------------------------------------------------------------------------
// requests and answers

const Headers = Schema.Record(Schema.String, Schema.String)

/**
 * Whose connections: a user's (every one, on every node) or one connection
 * (by its id, as presence shows it). Exactly one of the two.
 *
 * @since 0.1.0
 * @category models
 */
export const Target = Schema.Struct({
  user: Schema.optionalKey(Schema.String),
  connection: Schema.optionalKey(Schema.String)
})

/**
 * Publishes a message to one channel: `LHTTP/1.0 <command>` with the
 * headers, `publish:<channel>` and the body.
 *
 * @since 0.1.0
 * @category requests
 */
export const PublishRequest = Schema.Struct({
  channel: Schema.String,
  command: Schema.String,
  headers: Schema.optionalKey(Headers),
  body: Schema.optionalKey(Schema.String)
})

/**
 * Publishes one message to many channels (each a `publish` header of the
 * one frame).
 *
 * @since 0.1.0
 * @category requests
 */
export const BroadcastRequest = Schema.Struct({
  channels: Schema.Array(Schema.String),
  command: Schema.String,
  headers: Schema.optionalKey(Headers),
  body: Schema.optionalKey(Schema.String)
})

/**
 * Subscribes or unsubscribes a user's connections (or one connection) to
 * channels, server-side.
 *
 * @since 0.1.0
 * @category requests
 */
export const SubscriptionRequest = Schema.Struct({
  ...Target.fields,
  channels: Schema.Array(Schema.String)
})

/**
 * Delivers one frame to a user's connections (or one connection):
 * `LHTTP/1.0 <command>` with the headers and the body.
 *
 * @since 0.1.0
 * @category requests
 */
export const SendRequest = Schema.Struct({
  ...Target.fields,
  command: Schema.String,
  headers: Schema.optionalKey(Headers),
  body: Schema.optionalKey(Schema.String)
})

/**
 * Closes a user's connections (or one connection), with a close code
 * (default 4500, which tells the clients not to reconnect) and a reason the
 * client sees.
 *
 * @since 0.1.0
 * @category requests
 */
export const DisconnectRequest = Schema.Struct({
  ...Target.fields,
  code: Schema.optionalKey(Schema.Number),
  reason: Schema.optionalKey(Schema.String)
})

/**
 * Names a channel.
 *
 * @since 0.1.0
 * @category requests
 */
export const ChannelRequest = Schema.Struct({ channel: Schema.String })

/**
 * Reads a channel's history: after `since` (default: from the oldest kept),
 * at most `limit` messages (default 100, at most 1,000); `reverse`: the
 * newest first (the last `limit`).
 *
 * @since 0.1.0
 * @category requests
 */
export const HistoryRequest = Schema.Struct({
  channel: Schema.String,
  since: Schema.optionalKey(Schema.Struct({ epoch: Schema.String, offset: Schema.Number })),
  limit: Schema.optionalKey(Schema.Number),
  reverse: Schema.optionalKey(Schema.Boolean)
})

/**
 * Lists the active channels (with subscribers on some node) whose names match
 * `pattern` (`*` any run of characters; default every channel).
 *
 * @since 0.1.0
 * @category requests
 */
export const ChannelsRequest = Schema.Struct({ pattern: Schema.optionalKey(Schema.String) })

/**
 * Several operations, in order: each answered, or refused, on its own.
 *
 * @since 0.1.0
 * @category requests
 */
export const BatchRequest = Schema.Struct({
  commands: Schema.Array(Schema.Struct({ operation: Schema.String, request: Schema.optionalKey(Schema.Unknown) }))
})

/**
 * Where a message was stored on a channel that keeps history.
 *
 * @since 0.1.0
 * @category models
 */
export interface PositionAnswer {
  readonly epoch: string
  readonly offset: number
}

/**
 * How many connections an operation reached, and whether every node answered.
 *
 * @since 0.1.0
 * @category models
 */
export interface Reached {
  readonly complete: boolean
}

/**
 * A message of a channel's history, decoded.
 *
 * @since 0.1.0
 * @category models
 */
export interface HistoryMessage {
  readonly epoch: string
  readonly offset: number
  readonly command: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

/**
 * A frame sent to a connection of a tailed user (`tailUser`).
 *
 * @since 0.1.0
 * @category models
 */
export type TailFrame = Tail.TailFrame

/**
 * A node as `info` shows it.
 *
 * @since 0.1.0
 * @category models
 */
export interface NodeInfo {
  readonly id: string
  readonly version: string
  /** Seconds since it started. */
  readonly uptime: number
  readonly connections: number
  /** Its connections by transport (`websocket`, `sse`, `poll`, ...). */
  readonly transports: Readonly<Record<string, number>>
  readonly subscriptions: number
  readonly channels: number
  /** Whether the node is ready (its bus, history and sessions reached; not draining). */
  readonly ready: boolean
  /** Messages taken from its connections since it started. */
  readonly messagesIn: number
  /** Frames written to its connections since it started. */
  readonly framesOut: number
  /** Its resident memory in bytes, when the runtime tells (Node). */
  readonly memory?: number
}

/**
 * One operation's outcome in a batch: its answer, or its refusal.
 *
 * @since 0.1.0
 * @category models
 */
export type BatchReply =
  | { readonly reply: unknown }
  | { readonly error: { readonly reason: string; readonly message: string } }

// ---------------------------------------------------------------------------------------------
// limits

/**
 * The bounds of the API's requests.
 *
 * @since 0.1.0
 * @category constants
 */
export const limits = {
  /** Channels in one broadcast, subscribe or unsubscribe. */
  maxChannels: 100,
  /** Operations in one batch. */
  maxBatch: 100,
  /** Messages one history read answers. */
  maxHistory: 1_000,
  /** Channels one `channels` answer lists. */
  maxListed: 10_000,
  /** Frames of a user's tail waiting for its reader; past it the oldest go. */
  tailBuffer: Tail.tailBuffer
} as const

// ---------------------------------------------------------------------------------------------
// the service

/**
 * The server API on this node.
 *
 * @since 0.1.0
 * @category services
 */
export class ServerApi extends Context.Service<ServerApi, {
  readonly publish: (request: typeof PublishRequest.Type) => Effect.Effect<Partial<PositionAnswer>, ApiError>
  readonly broadcast: (
    request: typeof BroadcastRequest.Type
  ) => Effect.Effect<{ readonly positions: Readonly<Record<string, PositionAnswer>> }, ApiError>
  readonly subscribe: (
    request: typeof SubscriptionRequest.Type
  ) => Effect.Effect<Reached & { readonly subscribed: number }, ApiError>
  readonly unsubscribe: (
    request: typeof SubscriptionRequest.Type
  ) => Effect.Effect<Reached & { readonly unsubscribed: number }, ApiError>
  readonly disconnect: (
    request: typeof DisconnectRequest.Type
  ) => Effect.Effect<Reached & { readonly disconnected: number }, ApiError>
  readonly send: (request: typeof SendRequest.Type) => Effect.Effect<Reached & { readonly delivered: number }, ApiError>
  readonly presence: (
    request: typeof ChannelRequest.Type
  ) => Effect.Effect<
    Reached & { readonly members: ReadonlyArray<Member>; readonly cut: boolean },
    ApiError
  >
  readonly presenceStats: (
    request: typeof ChannelRequest.Type
  ) => Effect.Effect<Reached & { readonly connections: number; readonly users: number }, ApiError>
  readonly history: (
    request: typeof HistoryRequest.Type
  ) => Effect.Effect<
    PositionAnswer & { readonly messages: ReadonlyArray<HistoryMessage>; readonly reason?: string },
    ApiError
  >
  readonly historyRemove: (request: typeof ChannelRequest.Type) => Effect.Effect<Record<string, never>, ApiError>
  readonly channels: (
    request: typeof ChannelsRequest.Type
  ) => Effect.Effect<
    Reached & { readonly channels: Readonly<Record<string, { readonly subscribers: number }>> },
    ApiError
  >
  readonly info: () => Effect.Effect<Reached & { readonly nodes: ReadonlyArray<NodeInfo> }, ApiError>
  /**
   * The frames sent to a user's connections on every node, as they pass,
   * for as long as the stream runs (the operator's live tail): each node
   * taps the user's connections while the stream renews its lease (every
   * 5 s; a node that joins the cluster meanwhile starts at the next renewal;
   * a lease not renewed ends after 15 s). At most `limits.tailBuffer` frames
   * wait for a reader; past it the oldest go.
   */
  readonly tailUser: (user: string) => Stream.Stream<TailFrame, ApiError>
  /**
   * Runs an operation by its name (as in `/api/<operation>`) on a JSON
   * request, decoded by the operation's schema; answers JSON.
   */
  readonly call: (operation: string, request: unknown) => Effect.Effect<unknown, ApiError>
}>()("effect-lhttp/ServerApi") {}

/**
 * Options of the server API.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** How long an operation that spans nodes waits for their answers (default 2 seconds). */
  readonly timeout?: Duration.Input | undefined
}

// the process's resident memory, where the runtime tells it (Node's `process.memoryUsage.rss`); the root entry
// point imports no Node module
const residentMemory = (): number | undefined => {
  const rss = (globalThis as { readonly process?: { readonly memoryUsage?: { readonly rss?: () => number } } })
    .process?.memoryUsage?.rss
  return typeof rss === "function" ? rss() : undefined
}

/**
 * The close code of a `disconnect` that gives none: 4500, which tells the
 * clients not to reconnect.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultDisconnectCode: number = Questions.defaultDisconnectCode

// a glob of `*` as a regular expression, anchored
const globOf = (pattern: string): RegExp =>
  new RegExp(`^${pattern.split("*").map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`)

const channelOf = (name: string): Effect.Effect<Channel.ChannelId, ApiError> => {
  const checked = Channel.validate(name)
  return Result.isFailure(checked) ? Effect.fail(invalid(checked.failure.message)) : Effect.succeed(checked.success)
}

const channelsOf = (names: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<Channel.ChannelId>, ApiError> => {
  if (names.length === 0) return Effect.fail(invalid("name at least one channel"))
  if (names.length > limits.maxChannels) return Effect.fail(invalid(`at most ${limits.maxChannels} channels`))
  return Effect.forEach(names, channelOf)
}

const targetOf = (target: typeof Target.Type): Effect.Effect<typeof Target.Type, ApiError> =>
  (target.user === undefined) === (target.connection === undefined)
    ? Effect.fail(invalid("name a user or a connection"))
    : Effect.succeed(target)

// the frame a publish delivers, checked: a command and headers a client can read back
const frameOf = (
  channels: ReadonlyArray<Channel.ChannelId>,
  request: { readonly command: string; readonly headers?: Readonly<Record<string, string>>; readonly body?: string }
): Effect.Effect<string, ApiError> => {
  const headers = new Map(Object.entries(request.headers ?? {}))
  headers.delete("publish")
  headers.set("publish", channels.join(" "))
  const frame = Frame.make(request.command, headers, request.body ?? "")
  const checked = Frame.validate(frame)
  return Result.isFailure(checked) ? Effect.fail(invalid(checked.failure.message)) : Effect.succeed(Frame.render(frame))
}

/**
 * Makes the server API of this node over the server, the hub and the
 * cluster in context (and presence and the history, when there), and
 * answers the other nodes' questions until the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function*(options?: Options) {
  const server = yield* LhttpServer
  const hub = yield* Hub
  const cluster = yield* Cluster.Cluster
  const presence = Option.getOrUndefined(yield* Effect.serviceOption(Presence))
  const history = Option.getOrUndefined(yield* Effect.serviceOption(History.History))
  const timeout = Duration.fromInputUnsafe(options?.timeout ?? Duration.seconds(2))
  const bus = yield* Bus
  const context = yield* Effect.context<never>()

  // ---- what this node answers the others (and itself) ----

  // the connections a question names here
  const targeted = (question: ConnectionsQuestion): ReadonlyArray<Connection.Connection> => {
    if (question.user !== undefined) return server.connectionsOf(question.user)
    if (question.connection === undefined) return []
    const one = server.connection(question.connection)
    return one === undefined ? [] : [one]
  }

  yield* cluster.serve(kinds.connections, (asked) =>
    Effect.gen(function*() {
      if (!isRecord(asked)) return 0
      const question = asked as unknown as ConnectionsQuestion
      const connections = targeted(question)
      for (const connection of connections) {
        switch (question.action) {
          case "subscribe":
            yield* Effect.ignore(connection.subscribe(question.channels ?? []))
            break
          case "unsubscribe":
            yield* connection.unsubscribe(question.channels ?? [])
            break
          case "disconnect":
            yield* connection.close(question.code ?? defaultDisconnectCode, question.reason ?? "disconnected")
            break
          case "send": {
            const frame = Frame.parse(question.frame ?? "")
            if (Result.isFailure(frame)) return 0
            yield* Effect.ignore(connection.send(frame.success))
            break
          }
        }
      }
      return connections.length
    }))

  yield* cluster.serve(kinds.channels, (asked) =>
    Effect.sync(() => {
      const pattern = isRecord(asked) && typeof asked.pattern === "string" ? globOf(asked.pattern) : undefined
      const listed: Array<readonly [string, number]> = []
      for (const [channel, subscribers] of hub.channels()) {
        if (pattern !== undefined && !pattern.test(channel)) continue
        listed.push([channel, subscribers])
        if (listed.length >= limits.maxListed) break
      }
      return listed
    }))

  // the tails of users this node taps, for the nodes that ask
  const tails = Tail.make({ cluster, server, bus, context, timeout })
  yield* tails.serve

  yield* cluster.serve(kinds.info, () =>
    Effect.map(server.isReady, (ready): NodeInfo => {
      const transports = server.transports()
      let connections = 0
      for (const count of Object.values(transports)) connections += count
      const { framesOut, messagesIn } = server.counters()
      const memory = residentMemory()
      return {
        id: cluster.node,
        version,
        uptime: Math.floor((Date.now() - cluster.startedAt) / 1000),
        connections,
        transports,
        subscriptions: server.subscriptionCount(),
        channels: Array.from(hub.channels()).length,
        ready,
        messagesIn,
        framesOut,
        ...(memory === undefined ? {} : { memory })
      }
    }))

  // ---- the operations ----

  const onConnections = (question: ConnectionsQuestion) =>
    cluster.ask<number>(kinds.connections, question, timeout).pipe(
      Effect.mapError((error) => new ApiError({ reason: "BusUnavailable", message: error.message })),
      Effect.map(({ answers, complete }) => ({ count: sumOf(answers), complete }))
    )

  const publish = (request: typeof PublishRequest.Type) =>
    Effect.gen(function*() {
      const channel = yield* channelOf(request.channel)
      const text = yield* frameOf([channel], request)
      const positions = yield* hub.publishTextAcknowledged([channel], text).pipe(Effect.mapError(fromRejection))
      const position = positions.get(channel)
      return position === undefined ? {} : { epoch: position.epoch, offset: position.offset }
    })

  const broadcast = (request: typeof BroadcastRequest.Type) =>
    Effect.gen(function*() {
      const channels = yield* channelsOf(request.channels)
      const text = yield* frameOf(channels, request)
      const positions = yield* hub.publishTextAcknowledged(channels, text).pipe(Effect.mapError(fromRejection))
      return { positions: Object.fromEntries(positions) }
    })

  // a target's connections subscribed or unsubscribed, on every node: how many, and whether all answered
  const onSubscriptions = (request: typeof SubscriptionRequest.Type, action: "subscribe" | "unsubscribe") =>
    Effect.gen(function*() {
      const target = yield* targetOf(request)
      const channels = yield* channelsOf(request.channels)
      return yield* onConnections({ ...target, action, channels })
    })

  const subscribe = (request: typeof SubscriptionRequest.Type) =>
    Effect.map(onSubscriptions(request, "subscribe"), ({ complete, count }) => ({ subscribed: count, complete }))

  const unsubscribe = (request: typeof SubscriptionRequest.Type) =>
    Effect.map(onSubscriptions(request, "unsubscribe"), ({ complete, count }) => ({ unsubscribed: count, complete }))

  const disconnect = (request: typeof DisconnectRequest.Type) =>
    Effect.gen(function*() {
      const target = yield* targetOf(request)
      if (
        request.code !== undefined && !(Number.isInteger(request.code) && request.code >= 4000 && request.code <= 4999)
      ) {
        return yield* invalid("a close code of the application's range, 4000 to 4999")
      }
      const { complete, count } = yield* onConnections({
        ...target,
        action: "disconnect",
        code: request.code,
        reason: request.reason
      })
      return { disconnected: count, complete }
    })

  const send = (request: typeof SendRequest.Type) =>
    Effect.gen(function*() {
      const target = yield* targetOf(request)
      const frame = Frame.make(request.command, request.headers ?? {}, request.body ?? "")
      const checked = Frame.validate(frame)
      if (Result.isFailure(checked)) return yield* invalid(checked.failure.message)
      const { complete, count } = yield* onConnections({ ...target, action: "send", frame: Frame.render(frame) })
      return { delivered: count, complete }
    })

  const members = (request: typeof ChannelRequest.Type) =>
    Effect.flatMap(channelOf(request.channel), (channel) =>
      presence === undefined
        ? Effect.fail(new ApiError({ reason: "PresenceOff", message: "this server runs no presence" }))
        : presence.members(channel).pipe(
          Effect.mapError((error) => new ApiError({ reason: "BusUnavailable", message: error.message }))
        ))

  const presenceOf = (request: typeof ChannelRequest.Type) =>
    Effect.map(members(request), ({ complete, cut, members }) => ({ members, cut, complete }))

  const presenceStats = (request: typeof ChannelRequest.Type) =>
    Effect.map(members(request), ({ complete, members }) => ({
      connections: members.length,
      users: new Set(members.flatMap((member) => member.user === undefined ? [] : [member.user])).size,
      complete
    }))

  // the channel's policy, or why its history cannot be read here
  const policyOf = (channel: Channel.ChannelId) => {
    const policy = history?.policyOf(channel)
    return history === undefined || policy === undefined
      ? Effect.fail(new ApiError({ reason: "NoHistory", message: `the channel ${channel} keeps no history` }))
      : Effect.succeed({ store: history, policy })
  }

  const unavailable = (error: History.HistoryError) =>
    new ApiError({ reason: "HistoryUnavailable", message: error.message })

  const readHistory = (request: typeof HistoryRequest.Type) =>
    Effect.gen(function*() {
      const channel = yield* channelOf(request.channel)
      const limit = request.limit ?? 100
      if (!Number.isInteger(limit) || limit < 1 || limit > limits.maxHistory) {
        return yield* invalid(`a limit from 1 to ${limits.maxHistory}`)
      }
      const { policy, store } = yield* policyOf(channel)
      // from the oldest kept: since the start of the current epoch
      const since = request.since ??
        {
          epoch: (yield* store.recover(channel, policy, undefined).pipe(Effect.mapError(unavailable))).position.epoch,
          offset: 0
        }
      const recovery = yield* store.recover(channel, policy, since).pipe(Effect.mapError(unavailable))
      const chosen = request.reverse === true
        ? recovery.messages.slice(-limit).reverse()
        : recovery.messages.slice(0, limit)
      const messages = chosen.flatMap((message): Array<HistoryMessage> => {
        const frame = Frame.parse(message.text)
        if (Result.isFailure(frame)) return []
        const headers = Object.fromEntries(frame.success.headers)
        return [{ ...message.position, command: frame.success.command, headers, body: frame.success.body }]
      })
      // (`Trimmed` from the oldest kept says only that older messages went: not news to a reader of the latest)
      const reason = request.since === undefined && recovery.reason === "Trimmed" ? undefined : recovery.reason
      return { ...recovery.position, messages, ...(reason === undefined ? {} : { reason }) }
    })

  const historyRemove = (request: typeof ChannelRequest.Type) =>
    Effect.gen(function*() {
      const channel = yield* channelOf(request.channel)
      const { policy, store } = yield* policyOf(channel)
      yield* store.remove(channel, policy).pipe(Effect.mapError(unavailable))
      return {}
    })

  const channels = (request: typeof ChannelsRequest.Type) =>
    cluster.ask<ReadonlyArray<readonly [string, number]>>(kinds.channels, { pattern: request.pattern }, timeout).pipe(
      Effect.mapError((error) => new ApiError({ reason: "BusUnavailable", message: error.message })),
      Effect.map(({ answers, complete }) => {
        const listed: Record<string, { subscribers: number }> = {}
        for (const { answer } of answers) {
          if (!Array.isArray(answer)) continue
          for (const [channel, subscribers] of answer) {
            const entry = (listed[channel] ??= { subscribers: 0 })
            entry.subscribers += subscribers
          }
        }
        return { channels: listed, complete }
      })
    )

  const info = () =>
    cluster.ask<NodeInfo>(kinds.info, {}, timeout).pipe(
      Effect.mapError((error) => new ApiError({ reason: "BusUnavailable", message: error.message })),
      Effect.map(({ answers, complete }) => ({
        nodes: answers.flatMap(({ answer }) => isRecord(answer) ? [answer] : []).sort((a, b) => a.id < b.id ? -1 : 1),
        complete
      }))
    )

  // ---- by name, for the HTTP face and batch ----

  const decoded = <S extends Schema.Top>(schema: S, request: unknown) =>
    Schema.decodeUnknownEffect(schema)(request).pipe(
      Effect.mapError((issue) => invalid(String(issue)))
    ) as Effect.Effect<S["Type"], ApiError>

  const operations: Record<string, (request: unknown) => Effect.Effect<unknown, ApiError>> = {
    publish: (request) => Effect.flatMap(decoded(PublishRequest, request), publish),
    broadcast: (request) => Effect.flatMap(decoded(BroadcastRequest, request), broadcast),
    subscribe: (request) => Effect.flatMap(decoded(SubscriptionRequest, request), subscribe),
    unsubscribe: (request) => Effect.flatMap(decoded(SubscriptionRequest, request), unsubscribe),
    disconnect: (request) => Effect.flatMap(decoded(DisconnectRequest, request), disconnect),
    send: (request) => Effect.flatMap(decoded(SendRequest, request), send),
    presence: (request) => Effect.flatMap(decoded(ChannelRequest, request), presenceOf),
    presence_stats: (request) => Effect.flatMap(decoded(ChannelRequest, request), presenceStats),
    history: (request) => Effect.flatMap(decoded(HistoryRequest, request), readHistory),
    history_remove: (request) => Effect.flatMap(decoded(ChannelRequest, request), historyRemove),
    channels: (request) => Effect.flatMap(decoded(ChannelsRequest, request), channels),
    info: () => info(),
    batch: (request) =>
      Effect.gen(function*() {
        const { commands } = yield* decoded(BatchRequest, request)
        if (commands.length > limits.maxBatch) return yield* invalid(`at most ${limits.maxBatch} operations in a batch`)
        const replies = yield* Effect.forEach(
          commands,
          ({ operation, request }): Effect.Effect<BatchReply> =>
            operation === "batch"
              ? Effect.succeed({ error: { reason: "InvalidRequest", message: "a batch holds no batch" } })
              : call(operation, request ?? {}).pipe(
                Effect.map((reply): BatchReply => ({ reply })),
                Effect.catch((error) => Effect.succeed({ error: { reason: error.reason, message: error.message } }))
              )
        )
        return { replies }
      })
  }

  function call(operation: string, request: unknown): Effect.Effect<unknown, ApiError> {
    const run = Object.hasOwn(operations, operation) ? operations[operation] : undefined
    return run === undefined
      ? Effect.fail(new ApiError({ reason: "UnknownOperation", message: `no operation ${operation}` }))
      : run(request)
  }

  return ServerApi.of({
    publish,
    broadcast,
    subscribe,
    unsubscribe,
    disconnect,
    send,
    presence: presenceOf,
    presenceStats,
    history: readHistory,
    historyRemove,
    channels,
    info,
    tailUser: tails.tailUser,
    call
  })
})

/**
 * The server API as a Layer, over the server, the hub and the bus (and
 * presence and the history, when in context). Every node of a cluster runs
 * it, as it answers the others' questions: the Node server
 * (`NodeLhttpServer.layer`) does, whether or not it serves the HTTP face.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: Options): Layer.Layer<ServerApi, never, LhttpServer | Hub | Bus> =>
  Layer.effect(ServerApi, make(options)).pipe(Layer.provide(Cluster.layer))

// ---------------------------------------------------------------------------------------------
// a client addressing a user

/**
 * The `send` command, for a client to address a user (every connection of
 * theirs, on every node): `LHTTP/1.0 send` with `user:<id>` (or
 * `connection:<id>`), `command:<command>` (default `send`) and the body. Each
 * connection gets `LHTTP/1.0 <command>` with `from:<the sender's user>` and
 * the body; the sender, when it gave an `id`, an answer with
 * `delivered:<n>` and `complete:yes|no`. The sender must be a user
 * (`Connection.user`: 403 `UserRequired` otherwise); `authorize`, given to
 * {@link layerSendProcessor}, decides (action `send`).
 *
 * @since 0.1.0
 * @category processors
 */
export const SendProcessor: typeof Send.SendProcessor = Send.SendProcessor

/**
 * The headers of the `send` command and of what it delivers.
 *
 * @since 0.1.0
 * @category constants
 */
export const SendHeader: typeof Send.SendHeader = Send.SendHeader

/**
 * The `send` command's implementation, over the cluster (every node's
 * server API delivers to its connections). `authorize` decides on each send
 * (action `send`, the target in `user` or `target`; a failure refuses it with
 * its error frame): the server's own hook is not asked, as the processor is
 * built before the server; give it the same function. Without one, any user
 * may send to any user.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerSendProcessor: (options?: Send.Options) => Layer.Layer<Processor.Service<"send">, never, Bus> =
  Send.layer
