/**
 * The Effect client, for Node and browsers: a connection to an LHTTP server,
 * kept up by reconnecting with exponential backoff and jitter and subscribing
 * again to every channel after each reconnect. It holds the connection over a
 * WebSocket (the default: `effect/socket`, with
 * `NodeWS.layerWebSocketConstructor` on Node or the global WebSocket in
 * browsers), or over the server's HTTP transports with the global `fetch`:
 * Server-Sent Events (`transport: "sse"`) or long-poll (`transport: "poll"`),
 * see docs/transports.md.
 *
 * ```ts
 * const program = Effect.gen(function*() {
 *   const client = yield* LhttpClient.connect("ws://127.0.0.1:8081/")
 *   yield* client.subscribe(["room"])
 *   yield* client.publish(["room"], "chat", {}, "hello")
 *   const reply = yield* client.request("echo", "ping", { timeout: "2 seconds" })
 *   yield* client.channel("room").pipe(Stream.take(1), Stream.runForEach(Console.log))
 * }).pipe(Effect.scoped, Effect.provide(NodeWS.layerWebSocketConstructor))
 *
 * // where a WebSocket cannot get through: the same client over SSE (no WebSocket constructor needed)
 * const overSse = LhttpClient.connect("ws://127.0.0.1:8081/", { transport: "sse" })
 * ```
 *
 * Typed requests: `client.call(Processor, body)` with the processor
 * definition the server serves, encoding the body and decoding the reply and
 * the declared errors with its Schemas. Sessions: the client keeps the
 * session the server announces (`client.session`, `client.sessions`) and
 * restores it after every reconnect to a new server connection.
 *
 * @since 0.1.0
 */
import {
  Context,
  Deferred,
  Duration,
  Effect,
  Fiber,
  Layer,
  Option,
  PubSub,
  Result,
  Schema,
  SchemaAST,
  type Scope,
  Stream,
  SubscriptionRef
} from "effect"
import type * as Socket from "effect/socket/Socket"
import * as Channel from "./Channel.ts"
import * as Frame from "./Frame.ts"
import * as History from "./History.ts"
import * as HttpTransport from "./internal/client/http.ts"
import * as PollTransport from "./internal/client/poll.ts"
import * as SseTransport from "./internal/client/sse.ts"
import type { Link, SendError, Transport } from "./internal/client/transport.ts"
import * as WebSocketTransport from "./internal/client/websocket.ts"
import * as Message from "./Message.ts"
import type * as Processor from "./Processor.ts"

/**
 * The state of the connection.
 *
 * @since 0.1.0
 */
export type State = "connecting" | "open" | "reconnecting" | "closed"

/**
 * What went wrong, as the client's reason says.
 *
 * @since 0.1.0
 */
export class ClientError extends Schema.TaggedError<ClientError>()("ClientError", {
  /**
   * `NotConnected`: a send while the connection is down (and the send buffer,
   * if any, is full); `Closed`: the client was closed; `Timeout`: a request
   * got no reply in time; `Rejected`: the server answered with an error frame;
   * `InvalidFrame`: what was to be sent would not read back; `TooLarge`: the
   * server refused a frame over its `maxMessageBytes` (the HTTP transports:
   * `413`, the connection stays; a WebSocket server closes the connection
   * with 1009 instead); `InvalidBody`: `call`'s body did not encode with the
   * processor's `body` Schema (nothing was sent); `InvalidReply`: the answer
   * to a `call` did not decode (its reply with the `reply` Schema, or a
   * declared error with the `error` Schema).
   */
  reason: Schema.Literals([
    "NotConnected",
    "Closed",
    "Timeout",
    "Rejected",
    "InvalidFrame",
    "TooLarge",
    "InvalidBody",
    "InvalidReply"
  ]),
  message: Schema.String,
  /** The error frame's status, for `Rejected` (over HTTP also `400`: a frame `POST /send` refused). */
  status: Schema.optional(Schema.Int),
  /** The error frame's reason, for `Rejected` (`TooManyHeaders`, `NotLhttp`, …). */
  serverReason: Schema.optional(Schema.String)
}) {}

/**
 * How the client reconnects.
 *
 * @since 0.1.0
 */
export interface ReconnectOptions {
  /** The first wait (default 250 ms). */
  readonly initialDelay?: Duration.Input | undefined
  /** The longest wait (default 10 s). */
  readonly maxDelay?: Duration.Input | undefined
  /** The growth of the wait per attempt (default 2). */
  readonly factor?: number | undefined
  /** The share of each wait drawn at random, 0 to 1 (default 0.5). */
  readonly jitter?: number | undefined
}

/**
 * How the client holds its connection: a WebSocket, a Server-Sent Events
 * stream with `POST /send`, or long-polls with `POST /send`.
 *
 * @since 0.1.0
 */
export type TransportKind = "websocket" | "sse" | "poll"

/**
 * Options of the client.
 *
 * @since 0.1.0
 */
export interface Options {
  /**
   * The transport (default `"websocket"`). `"sse"` and `"poll"` use the
   * global `fetch` and need no WebSocket constructor; the URL may stay
   * `ws(s)://…`: they speak `http(s)://` to the same host.
   */
  readonly transport?: TransportKind | undefined
  /** The path of the SSE endpoint (default `/sse`), on the URL's host. */
  readonly ssePath?: string | undefined
  /** The path of the long-poll endpoint (default `/poll`), on the URL's host. */
  readonly pollPath?: string | undefined
  /** The path that takes what the HTTP transports send (default `/send`), on the URL's host. */
  readonly sendPath?: string | undefined
  /** Reconnect after the connection is lost (default on); `false` turns it off. */
  readonly reconnect?: ReconnectOptions | false | undefined
  /** Frames kept while disconnected and sent after the reconnect (default 0: sends fail). */
  readonly sendBuffer?: number | undefined
  /** The default timeout of requests (default 10 s). */
  readonly requestTimeout?: Duration.Input | undefined
  /** How long opening a connection may take (default 10 s). */
  readonly openTimeout?: Duration.Input | undefined
  /**
   * The key of a session to restore on the first connection (one kept across
   * a process restart or a page reload). Until the server answers,
   * `session` is none; then a `Restored` event, or `Closed` with reason
   * `NotFound` when the server no longer has it.
   */
  readonly session?: string | undefined
}

/**
 * Options with an HTTP transport: the client needs no WebSocket constructor.
 *
 * @since 0.1.0
 */
export interface HttpOptions extends Options {
  readonly transport: "sse" | "poll"
}

/**
 * Options of a request (`request` and `call`).
 *
 * @since 0.1.0
 */
export interface RequestOptions {
  /** Headers sent with the request (besides its `id`). */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** How long to wait for the answer (default: the client's `requestTimeout`). */
  readonly timeout?: Duration.Input | undefined
}

/**
 * A session as the client knows it: its key and its data (JSON), from the
 * last `session` frame the server sent.
 *
 * @since 0.1.0
 */
export interface Session {
  readonly key: string
  readonly data: unknown
}

/**
 * A change of the client's session:
 *
 * - `Created`: the server announced a session with a new key (a login);
 * - `Updated`: new data for the current session (the server's `update`);
 * - `Restored`: the answer to the restore the client sent on a new connection
 *   (after a reconnect, or the `session` option), with the data now;
 * - `Closed`: the session is gone: the server closed it (`reason: "Closed"`),
 *   or a restore was answered `404 SessionNotFound` (`reason: "NotFound"`:
 *   unknown, closed or expired).
 *
 * @since 0.1.0
 */
export type SessionEvent =
  | { readonly _tag: "Created"; readonly session: Session }
  | { readonly _tag: "Updated"; readonly session: Session }
  | { readonly _tag: "Restored"; readonly session: Session }
  | { readonly _tag: "Closed"; readonly key: string; readonly reason: "Closed" | "NotFound" }

/**
 * A connected client.
 *
 * @since 0.1.0
 */
export interface LhttpClient {
  /**
   * Sends a frame, as it is. A `subscribe` header in it is not subscribed
   * again after a reconnect (`subscribe` is), and asks for positions only if
   * it has its own `since`.
   */
  readonly send: (frame: Frame.Frame) => Effect.Effect<void, ClientError>
  /** Sends a command with headers and a body. */
  readonly command: (
    command: string,
    headers?: ReadonlyMap<string, string> | Readonly<Record<string, string>>,
    body?: string
  ) => Effect.Effect<void, ClientError>
  /**
   * Subscribes to channels; they are subscribed again after every reconnect.
   * The subscription asks for positions (`since:now`): each history channel
   * is answered with a `position` frame (in `messages`), and its frames
   * carry their positions.
   */
  readonly subscribe: (channels: Iterable<string>, command?: string) => Effect.Effect<void, ClientError>
  /**
   * The last position of a subscribed history channel: known from the
   * `position` frame that answers its subscription, then advanced by the
   * positions of its frames. After a reconnect the client subscribes since
   * it, and gets what was published meanwhile before the live frames. None
   * for a channel without history (its `position` frame says `NoHistory`):
   * position-like headers of its frames are the publisher's text, never taken.
   */
  readonly position: (channel: string) => Option.Option<History.Position>
  /** Unsubscribes from channels. */
  readonly unsubscribe: (channels: Iterable<string>, command?: string) => Effect.Effect<void, ClientError>
  /** Publishes a message to channels. */
  readonly publish: (
    channels: Iterable<string>,
    command: string,
    headers?: Readonly<Record<string, string>>,
    body?: string
  ) => Effect.Effect<void, ClientError>
  /**
   * Sends a request (a frame with a fresh `id`) and waits for the frame that
   * echoes its `id`: an error frame fails with `Rejected`, no answer in time
   * with `Timeout`. Requests are multiplexed over the one connection.
   */
  readonly request: (
    command: string,
    body?: string,
    options?: RequestOptions
  ) => Effect.Effect<Message.Message, ClientError>
  /**
   * A typed request to the processor of `definition` (the value the server
   * serves): `body` encoded with its `body` Schema (sent as it is without
   * one), a fresh `id`, and the reply's body decoded with its `reply` Schema
   * (without one: the answer is awaited, its value is `undefined`). An error
   * frame whose reason is the tag of a declared error fails with that error,
   * decoded from the frame's JSON body with the `error` Schema; any other
   * error frame fails `Rejected`. A body that does not encode fails
   * `InvalidBody`, an answer that does not decode `InvalidReply`; no answer
   * in time `Timeout`. Multiplexed like `request`: calls complete in the
   * order the server answers them.
   */
  readonly call: <Command extends string, Body, Reply, Err>(
    definition: Processor.Processor<Command, Body, Reply, Err>,
    body: NoInfer<Body>,
    options?: RequestOptions
  ) => Effect.Effect<Reply, Err | ClientError>
  /**
   * The session the server announced to this client (a `session` frame with
   * `session-key`), if any: kept across reconnects, and restored on every new
   * server connection before anything queued is sent.
   */
  readonly session: Effect.Effect<Option.Option<Session>>
  /** The changes of the session, from the moment the stream is run. */
  readonly sessions: Stream.Stream<SessionEvent>
  /**
   * Every frame the server sends, decoded, from the moment the stream is run:
   * `session` frames, `position` frames and the answers to the client's own
   * restores included; but not the `position` frames saying that a channel
   * subscribed with `subscribe` has no history (the client asked for
   * positions by itself).
   */
  readonly messages: Stream.Stream<Message.Message>
  /** The messages published to a channel (by their `publish` header). */
  readonly channel: (channel: string) => Stream.Stream<Message.Message>
  /** The connection's state now. */
  readonly state: Effect.Effect<State>
  /** The connection's state, as it changes. */
  readonly states: Stream.Stream<State>
  /** The channels the client holds. */
  readonly channels: () => ReadonlySet<string>
  /** Closes the connection for good. */
  readonly close: Effect.Effect<void>
}

/**
 * The client as a service.
 *
 * @since 0.1.0
 */
export class Client extends Context.Service<Client, LhttpClient>()("effect-lhttp/LhttpClient") {}

const invalid = (message: string) => new ClientError({ reason: "InvalidFrame", message })

const publishedTo = (message: Message.Message): ReadonlyArray<string> => message._tag === "Failure" ? [] : message.publish

const clientError = (error: SendError) =>
  new ClientError({
    reason: error.reason,
    message: error.message,
    ...(error.status === undefined ? {} : { status: error.status }),
    ...(error.serverReason === undefined ? {} : { serverReason: error.serverReason })
  })

const rejected = (failure: Message.Failure) =>
  new ClientError({ reason: "Rejected", message: failure.message, status: failure.status, serverReason: failure.reason })

const invalidReply = (message: string) => new ClientError({ reason: "InvalidReply", message })

// what a subscription asks for positions with, from the channel's current one
const sinceNow = "now"

// the session frames (Sessions.ts on the server; not imported: it is server code)
const sessionCommand = "session"
const SessionHeader = { key: "session-key", closed: "closed", restore: "restore" } as const

/** The tags of the errors a Schema declares (its encoded side: tagged structs, in unions), or undefined when it cannot tell. */
const tagsOf = (ast: SchemaAST.AST, depth: number): Array<string> | undefined => {
  if (depth > 32) return undefined
  if (SchemaAST.isUnion(ast)) {
    const tags: Array<string> = []
    for (const member of ast.types) {
      const found = tagsOf(member, depth + 1)
      if (found === undefined) return undefined
      tags.push(...found)
    }
    return tags
  }
  if (SchemaAST.isObjects(ast)) {
    const tag = ast.propertySignatures.find((property) => property.name === "_tag")
    return tag !== undefined && SchemaAST.isLiteral(tag.type) && typeof tag.type.literal === "string"
      ? [tag.type.literal]
      : undefined
  }
  if (SchemaAST.isSuspend(ast)) return tagsOf(ast.thunk(), depth + 1)
  return undefined
}

const declaredTags = new WeakMap<object, ReadonlySet<string> | null>()

const tagsDeclared = (schema: Schema.Codec<unknown, unknown>): ReadonlySet<string> | undefined => {
  let tags = declaredTags.get(schema)
  if (tags === undefined) {
    const found = tagsOf(SchemaAST.toEncoded(schema.ast), 0)
    declaredTags.set(schema, tags = found === undefined ? null : new Set(found))
  }
  return tags ?? undefined
}

/**
 * What an error frame answering a `call` fails with: the declared error it
 * carries (its reason a declared tag, its body the error as JSON), or else
 * `Rejected`. When the Schema's tags cannot be read, a body that decodes to
 * an error of the frame's reason is taken as declared.
 */
const failureOf = <Err>(
  command: string,
  schema: Schema.Codec<Err, unknown> | undefined,
  failure: Message.Failure
): Err | ClientError => {
  if (schema === undefined) return rejected(failure)
  const tags = tagsDeclared(schema as Schema.Codec<unknown, unknown>)
  if (tags !== undefined && !tags.has(failure.reason)) return rejected(failure)
  let json: unknown
  try {
    json = JSON.parse(failure.message)
  } catch {
    return tags === undefined
      ? rejected(failure)
      : invalidReply(`the error ${failure.reason} answering ${command} is not JSON`)
  }
  if (tags === undefined && (typeof json !== "object" || json === null || (json as { _tag?: unknown })._tag !== failure.reason)) {
    return rejected(failure)
  }
  const decoded = Schema.decodeUnknownResult(schema)(json)
  if (Result.isSuccess(decoded)) return decoded.success
  return tags === undefined
    ? rejected(failure)
    : invalidReply(`the error ${failure.reason} answering ${command} does not decode: ${decoded.failure.message}`)
}

const isHttp = (options: Options | undefined): options is HttpOptions =>
  options?.transport === "sse" || options?.transport === "poll"

const httpTransport = (url: string, options: HttpOptions): Transport => {
  const settings: HttpTransport.Settings = {
    url,
    openTimeout: options.openTimeout ?? "10 seconds",
    ssePath: options.ssePath ?? "/sse",
    pollPath: options.pollPath ?? "/poll",
    sendPath: options.sendPath ?? "/send"
  }
  return options.transport === "sse" ? SseTransport.make(settings) : PollTransport.make(settings)
}

/**
 * Connects to an LHTTP server until the scope closes. It returns at once; the
 * connection opens (and reopens) in the background: watch `states`.
 *
 * Over a WebSocket (the default) it needs a `Socket.WebSocketConstructor`;
 * with `transport: "sse"` or `"poll"` it needs none (the global `fetch`).
 *
 * @since 0.1.0
 */
export function connect(url: string, options: HttpOptions): Effect.Effect<LhttpClient, never, Scope.Scope>
export function connect(
  url: string,
  options?: Options
): Effect.Effect<LhttpClient, never, Scope.Scope | Socket.WebSocketConstructor>
export function connect(
  url: string,
  options?: Options
): Effect.Effect<LhttpClient, never, Scope.Scope | Socket.WebSocketConstructor> {
  return isHttp(options)
    ? make(httpTransport(url, options), options)
    : Effect.flatMap(WebSocketTransport.make(url, options?.openTimeout ?? "10 seconds"), (transport) => make(transport, options))
}

/** The client over a transport: subscriptions, requests, the send buffer, states, reconnects. */
const make = Effect.fnUntraced(function*(
  transport: Transport,
  options: Options | undefined
): Effect.fn.Return<LhttpClient, never, Scope.Scope> {
  const reconnect = options?.reconnect === false ? undefined : options?.reconnect ?? {}
  const initialDelay = Duration.toMillis(Duration.fromInputUnsafe(reconnect?.initialDelay ?? "250 millis"))
  const maxDelay = Duration.toMillis(Duration.fromInputUnsafe(reconnect?.maxDelay ?? "10 seconds"))
  const factor = reconnect?.factor ?? 2
  const jitter = Math.min(1, Math.max(0, reconnect?.jitter ?? 0.5))
  const sendBuffer = options?.sendBuffer ?? 0
  const requestTimeout = options?.requestTimeout ?? "10 seconds"

  const incoming = yield* Effect.acquireRelease(PubSub.unbounded<Message.Message>(), PubSub.shutdown)
  const sessionEvents = yield* Effect.acquireRelease(PubSub.unbounded<SessionEvent>(), PubSub.shutdown)
  const state = yield* SubscriptionRef.make<State>("connecting")
  const held = new Set<string>()
  // the channels subscribed by frames given to `send` (not subscribed again after a reconnect)
  const sentTo = new Set<string>()
  // the last position of each subscribed history channel whose subscription has positions: a new
  // connection subscribes since it
  const positions = new Map<string, History.Position>()
  const pending = new Map<string, Deferred.Deferred<Message.Message, ClientError>>()
  const buffered: Array<string> = []
  let writer: Link | undefined
  // the channels held when the last connection went down: what a resumed one has on the server
  let heldAtDrop: ReadonlySet<string> = new Set()
  let closed = false
  let sequence = 0
  const nextId = () => `r${(++sequence).toString(36)}`

  // the session: what the server last said of it, and the key to restore on a new connection
  // (the `session` option's before the server confirmed it)
  let current: Option.Option<Session> = Option.none()
  let sessionKey: string | undefined = options?.session === "" ? undefined : options?.session
  // the id of the restore in flight: its answer is a `Restored` event
  let restoring: string | undefined

  const forget = (key: string, reason: "Closed" | "NotFound") => {
    current = Option.none()
    sessionKey = undefined
    PubSub.publishUnsafe(sessionEvents, { _tag: "Closed", key, reason })
  }

  // keeps the session from the frames that speak of it
  const observe = (message: Message.Message) => {
    if (message._tag === "Failure") {
      if (restoring !== undefined && message.id === restoring && message.reason === "SessionNotFound" && sessionKey !== undefined) {
        forget(sessionKey, "NotFound")
      }
      return
    }
    if (message.command !== sessionCommand) return
    const closedKey = message.headers.get(SessionHeader.closed)
    if (closedKey !== undefined) {
      if (closedKey === sessionKey) forget(closedKey, "Closed")
      return
    }
    const key = message.headers.get(SessionHeader.key)
    if (key === undefined || key === "") return
    let data: unknown
    try {
      data = JSON.parse(message.body)
    } catch {
      return
    }
    const session: Session = { key, data }
    const restored = message._tag === "Request" && restoring !== undefined && message.id === restoring
    const known = Option.isSome(current) && current.value.key === key
    current = Option.some(session)
    sessionKey = key
    PubSub.publishUnsafe(sessionEvents, { _tag: restored ? "Restored" : known ? "Updated" : "Created", session })
  }

  const subscribed = (channel: string) => held.has(channel) || sentTo.has(channel)

  // Keeps the position of a subscribed history channel. It becomes known from the `position` frame
  // answering a subscription with positions (the server's: no `publish`, no `id`), which a channel
  // without history answers with no epoch: it is forgotten then. It advances with the positions of
  // the channel's frames, only while known, and only from a frame that no subscription without
  // positions could have brought (whose text is the publisher's, forged positions included).
  const track = (message: Message.Message) => {
    if (message._tag === "Failure") return
    const channel = message.headers.get(History.Header.channel)
    if (channel === undefined || !subscribed(channel)) return
    const epoch = message.headers.get(History.Header.epoch)
    const offset = Number(message.headers.get(History.Header.offset))
    const carried = epoch === undefined || !Number.isSafeInteger(offset) ? undefined : { epoch, offset }
    const published = message.headers.has(Message.Header.publish)
    if (message.command === History.positionCommand && message._tag === "Notify" && !published) {
      if (carried === undefined) positions.delete(channel)
      else positions.set(channel, carried)
      return
    }
    const known = positions.get(channel)
    if (known === undefined || carried === undefined) return
    if (!published && message._tag === "Request") return // an answer to this client, no delivery
    // a frame published by a client names the channel it is on (server code publishes without `publish`)
    if (published && !message.publish.some((to) => to === channel)) return
    if (message.publish.some((to) => to !== channel && subscribed(to) && !positions.has(to))) return
    if (known.epoch !== carried.epoch || carried.offset > known.offset) positions.set(channel, carried)
  }

  // The answer to a `since:now` the client added by itself (`subscribe`), for a channel without
  // history (a `position` frame with no epoch nor `recovered`): not for the app, which did not ask,
  // and gets what it got before positions were asked for. One answering a `since` given to `send` is
  // the app's.
  const unasked = (message: Message.Message) =>
    message._tag === "Notify" && message.command === History.positionCommand &&
    !message.headers.has(Message.Header.publish) && !message.headers.has(History.Header.epoch) &&
    !message.headers.has(History.Header.recovered) && !sentTo.has(message.headers.get(History.Header.channel) ?? "")

  const dispatch = (data: string | Uint8Array) => {
    const decoded = typeof data === "string"
      ? Message.decode(data)
      : Result.flatMap(Frame.parseBytes(data), (frame) => Message.fromFrame(frame))
    if (Result.isFailure(decoded)) return
    const message = decoded.success
    track(message)
    if (unasked(message)) return
    // the session first: a call answered by a session frame returns with the session in place
    observe(message)
    // published before the waiter resumes: a stream run after a request returns does not get its reply
    PubSub.publishUnsafe(incoming, message)
    const id = message._tag === "Notify" ? undefined : message.id
    const waiter = id === undefined ? undefined : pending.get(id)
    if (waiter !== undefined) {
      pending.delete(id!)
      Deferred.doneUnsafe(waiter, Effect.succeed(message))
    }
  }

  const write = (text: string): Effect.Effect<void, ClientError> =>
    Effect.suspend(() => {
      if (closed) return Effect.fail(new ClientError({ reason: "Closed", message: "the client is closed" }))
      if (writer === undefined) {
        if (buffered.length < sendBuffer) {
          buffered.push(text)
          return Effect.void
        }
        return Effect.fail(new ClientError({ reason: "NotConnected", message: "the connection is down" }))
      }
      return writer.send(text).pipe(Effect.mapError(clientError))
    })

  // notes the channels a frame given to `send` subscribes to and unsubscribes from (in the server's
  // order) before it goes: what answers it may come before the send returns
  const noteSent = (frame: Frame.Frame) => {
    const listed = (name: string) => (frame.headers.get(name) ?? "").split(" ").filter((channel) => channel !== "")
    for (const channel of listed(Message.Header.subscribe)) sentTo.add(channel)
    for (const channel of listed(Message.Header.unsubscribe)) {
      sentTo.delete(channel)
      positions.delete(channel)
    }
  }

  const sendFrame = (frame: Frame.Frame, sent: boolean) =>
    Effect.suspend(() => {
      const checked = Frame.validate(frame)
      if (Result.isFailure(checked)) return Effect.fail(invalid(checked.failure.message))
      if (sent) noteSent(frame)
      return write(Frame.render(frame))
    })

  const send = (frame: Frame.Frame) => sendFrame(frame, false)

  const channelList = (channels: Iterable<string>) => {
    const list = Array.from(new Set(channels))
    for (const channel of list) {
      const checked = Channel.validate(channel)
      if (Result.isFailure(checked)) return Result.fail(invalid(checked.failure.message))
    }
    return list.length === 0 ? Result.fail(invalid("no channel")) : Result.succeed(list)
  }

  const subscribeFrame = (command: "subscribe" | "unsubscribe", channels: Iterable<string>) =>
    Frame.render(Frame.make(command, { [command]: Array.from(channels).join(" ") }))

  // subscribes a new connection again: history channels with a known position since it, one frame
  // each, the others in one frame asking for positions
  const subscribeAgain = (link: Link, channels: Iterable<string>) =>
    Effect.suspend(() => {
      const plain: Array<string> = []
      const frames: Array<string> = []
      for (const channel of channels) {
        const position = positions.get(channel)
        if (position === undefined) plain.push(channel)
        else {
          frames.push(Frame.render(Frame.make("subscribe", {
            subscribe: channel,
            since: `${position.epoch}:${position.offset}`
          })))
        }
      }
      if (plain.length > 0) {
        frames.unshift(Frame.render(Frame.make("subscribe", { subscribe: plain.join(" "), since: sinceNow })))
      }
      return Effect.forEach(frames, (frame) => link.send(frame), { discard: true })
    })

  const lost = new ClientError({ reason: "NotConnected", message: "the connection was lost" })

  /**
   * Restores the session on a new connection and waits for the answer (a
   * request runs beside the connection's other messages on the server: what
   * is sent after it must wait, or it could run before the session is
   * attached). Its session frame is `Restored`, `404 SessionNotFound` clears
   * the session (both in `observe`); any other answer, or none in time,
   * keeps it for the next connection.
   */
  const restoreOn = (link: Link, key: string, reading: Fiber.Fiber<void>) =>
    Effect.suspend(() => {
      const id = nextId()
      const frame = Frame.make(sessionCommand, { [SessionHeader.restore]: key, id })
      if (Result.isFailure(Frame.validate(frame))) {
        // a key that cannot be sent is no session the server has
        forget(key, "NotFound")
        return Effect.void
      }
      const answer = Deferred.makeUnsafe<Message.Message, ClientError>()
      pending.set(id, answer)
      restoring = id
      return link.send(Frame.render(frame)).pipe(
        Effect.andThen(
          Deferred.await(answer).pipe(
            Effect.asVoid,
            Effect.timeoutOrElse({ duration: Duration.fromInputUnsafe(requestTimeout), orElse: () => Effect.void }),
            Effect.raceFirst(Effect.andThen(Fiber.await(reading), Effect.fail(lost)))
          )
        ),
        Effect.ensuring(Effect.sync(() => {
          pending.delete(id)
          if (restoring === id) restoring = undefined
        }))
      )
    })

  // One connection: open (or resume), subscribe again, restore the session, flush the buffer, read
  // until the connection ends. It succeeds with whether the connection opened at all.
  let opened = false
  const connection = Effect.gen(function*() {
    opened = false
    const link = yield* transport.open
    if (!link.resumed) {
      if (held.size > 0) yield* subscribeAgain(link, held)
    } else {
      // the server kept the connection and its subscriptions: only what changed while it was down
      const added = Array.from(held).filter((channel) => !heldAtDrop.has(channel))
      const removed = Array.from(heldAtDrop).filter((channel) => !held.has(channel))
      if (added.length > 0) yield* subscribeAgain(link, added)
      if (removed.length > 0) yield* link.send(subscribeFrame("unsubscribe", removed))
    }
    // read from now on: the answer to the restore comes this way
    const reading = yield* Effect.forkScoped(link.read(dispatch))
    // a resumed connection is still attached to its session on the server
    if (!link.resumed && sessionKey !== undefined) yield* restoreOn(link, sessionKey, reading)
    for (const text of buffered.splice(0)) yield* link.send(text)
    writer = link
    opened = true
    yield* SubscriptionRef.set(state, "open")
    yield* Fiber.join(reading)
  }).pipe(
    Effect.scoped,
    Effect.ensuring(Effect.sync(() => {
      if (writer !== undefined) heldAtDrop = new Set(held)
      writer = undefined
    })),
    Effect.exit,
    Effect.map(() => opened)
  )

  /** Sends a frame with a fresh `id` and waits for the frame that echoes it (an error frame included). */
  const exchange = (command: string, body: string | undefined, requestOptions: RequestOptions | undefined) =>
    Effect.suspend(() => {
      const id = nextId()
      const timeout = Duration.fromInputUnsafe(requestOptions?.timeout ?? requestTimeout)
      return Effect.gen(function*() {
        const reply = yield* Deferred.make<Message.Message, ClientError>()
        pending.set(id, reply)
        yield* send(Frame.make(command, { ...requestOptions?.headers, id }, body))
        return yield* Deferred.await(reply).pipe(
          Effect.timeoutOrElse({
            duration: timeout,
            orElse: () =>
              Effect.fail(
                new ClientError({ reason: "Timeout", message: `no reply to ${command} within ${Duration.format(timeout)}` })
              )
          })
        )
      }).pipe(Effect.ensuring(Effect.sync(() => pending.delete(id))))
    })

  const delay = (attempt: number) => {
    const base = Math.min(maxDelay, initialDelay * factor ** attempt)
    return Duration.millis(base * (1 - jitter * Math.random()))
  }

  const keepUp = Effect.gen(function*() {
    for (let attempt = 0;; attempt++) {
      if (yield* connection) attempt = 0
      if (closed || reconnect === undefined) break
      yield* SubscriptionRef.set(state, "reconnecting")
      yield* Effect.sleep(delay(attempt))
    }
  })

  const stop = Effect.gen(function*() {
    closed = true
    writer = undefined
    for (const waiter of pending.values()) {
      Deferred.doneUnsafe(waiter, Effect.fail(new ClientError({ reason: "Closed", message: "the client is closed" })))
    }
    pending.clear()
    yield* SubscriptionRef.set(state, "closed")
  })

  // the connection is let go first (interrupting the loop closes its scope), then the server is told
  const fiber = yield* keepUp.pipe(Effect.andThen(stop), Effect.andThen(transport.close), Effect.forkScoped)
  const shutdown = Fiber.interrupt(fiber).pipe(Effect.andThen(stop), Effect.andThen(transport.close))
  yield* Effect.addFinalizer(() => shutdown)

  return {
    send: (frame) => sendFrame(frame, true),
    command: (command, headers, body) => sendFrame(Frame.make(command, headers, body), true),
    subscribe: (channels, command = "subscribe") =>
      Effect.suspend(() => {
        const list = channelList(channels)
        if (Result.isFailure(list)) return Effect.fail(list.failure)
        for (const channel of list.success) held.add(channel)
        return send(Frame.make(command, { subscribe: list.success.join(" "), since: sinceNow }))
      }),
    position: (channel) => Option.fromNullishOr(positions.get(channel)),
    unsubscribe: (channels, command = "unsubscribe") =>
      Effect.suspend(() => {
        const list = channelList(channels)
        if (Result.isFailure(list)) return Effect.fail(list.failure)
        for (const channel of list.success) {
          held.delete(channel)
          sentTo.delete(channel)
          positions.delete(channel)
        }
        return send(Frame.make(command, { unsubscribe: list.success.join(" ") }))
      }),
    publish: (channels, command, headers, body) =>
      Effect.suspend(() => {
        const list = channelList(channels)
        if (Result.isFailure(list)) return Effect.fail(list.failure)
        return send(Frame.make(command, { publish: list.success.join(" "), ...headers }, body))
      }),
    request: (command, body, requestOptions) =>
      Effect.flatMap(
        exchange(command, body, requestOptions),
        (answer) => answer._tag === "Failure" ? Effect.fail(rejected(answer)) : Effect.succeed(answer)
      ),
    call: <Command extends string, Body, Reply, Err>(
      definition: Processor.Processor<Command, Body, Reply, Err>,
      body: Body,
      requestOptions?: RequestOptions
    ): Effect.Effect<Reply, Err | ClientError> =>
      Effect.gen(function*() {
        const command = definition.command
        const text = definition.body === undefined
          ? typeof body === "string"
            ? body
            : yield* new ClientError({ reason: "InvalidBody", message: `the body of ${command} is not a string` })
          : yield* Schema.encodeEffect(definition.body)(body).pipe(
            Effect.mapError((error) =>
              new ClientError({ reason: "InvalidBody", message: `the body of ${command} does not encode: ${error.message}` })
            )
          )
        const answer = yield* exchange(command, text, requestOptions)
        if (answer._tag === "Failure") return yield* Effect.fail(failureOf(command, definition.error, answer))
        if (definition.reply === undefined) return undefined as Reply
        return yield* Schema.decodeEffect(definition.reply)(answer.body).pipe(
          Effect.mapError((error) => invalidReply(`the reply to ${command} does not decode: ${error.message}`))
        )
      }),
    session: Effect.sync(() => current),
    sessions: Stream.fromPubSub(sessionEvents),
    messages: Stream.fromPubSub(incoming),
    channel: (channel) => Stream.fromPubSub(incoming).pipe(Stream.filter((message) => publishedTo(message).includes(channel))),
    state: SubscriptionRef.get(state),
    states: SubscriptionRef.changes(state),
    channels: () => held,
    close: shutdown
  } satisfies LhttpClient
})

/**
 * The client as a Layer. Over a WebSocket (the default) it needs a
 * `Socket.WebSocketConstructor`; with `transport: "sse"` or `"poll"` none.
 *
 * @since 0.1.0
 */
export function layer(url: string, options: HttpOptions): Layer.Layer<Client>
export function layer(url: string, options?: Options): Layer.Layer<Client, never, Socket.WebSocketConstructor>
export function layer(url: string, options?: Options): Layer.Layer<Client, never, Socket.WebSocketConstructor> {
  return Layer.effect(Client, connect(url, options))
}
