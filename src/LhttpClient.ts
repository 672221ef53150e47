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
 * @since 0.1.0
 */
import {
  Context,
  Deferred,
  Duration,
  Effect,
  Fiber,
  Layer,
  PubSub,
  Result,
  Schema,
  type Scope,
  Stream,
  SubscriptionRef
} from "effect"
import type * as Socket from "effect/socket/Socket"
import * as Channel from "./Channel.ts"
import * as Frame from "./Frame.ts"
import * as HttpTransport from "./internal/client/http.ts"
import * as PollTransport from "./internal/client/poll.ts"
import * as SseTransport from "./internal/client/sse.ts"
import type { Link, SendError, Transport } from "./internal/client/transport.ts"
import * as WebSocketTransport from "./internal/client/websocket.ts"
import * as Message from "./Message.ts"

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
   * with 1009 instead).
   */
  reason: Schema.Literals(["NotConnected", "Closed", "Timeout", "Rejected", "InvalidFrame", "TooLarge"]),
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
 * A connected client.
 *
 * @since 0.1.0
 */
export interface LhttpClient {
  /** Sends a frame. */
  readonly send: (frame: Frame.Frame) => Effect.Effect<void, ClientError>
  /** Sends a command with headers and a body. */
  readonly command: (
    command: string,
    headers?: ReadonlyMap<string, string> | Readonly<Record<string, string>>,
    body?: string
  ) => Effect.Effect<void, ClientError>
  /** Subscribes to channels; they are subscribed again after every reconnect. */
  readonly subscribe: (channels: Iterable<string>, command?: string) => Effect.Effect<void, ClientError>
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
    options?: {
      readonly headers?: Readonly<Record<string, string>> | undefined
      readonly timeout?: Duration.Input | undefined
    }
  ) => Effect.Effect<Message.Message, ClientError>
  /** Every frame the server sends, decoded, from the moment the stream is run. */
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
  const state = yield* SubscriptionRef.make<State>("connecting")
  const held = new Set<string>()
  const pending = new Map<string, Deferred.Deferred<Message.Message, ClientError>>()
  const buffered: Array<string> = []
  let writer: Link | undefined
  // the channels held when the last connection went down: what a resumed one has on the server
  let heldAtDrop: ReadonlySet<string> = new Set()
  let closed = false
  let sequence = 0

  const dispatch = (data: string | Uint8Array) => {
    const decoded = typeof data === "string"
      ? Message.decode(data)
      : Result.flatMap(Frame.parseBytes(data), (frame) => Message.fromFrame(frame))
    if (Result.isFailure(decoded)) return
    const message = decoded.success
    // published before the waiter resumes: a stream run after a request returns does not get its reply
    PubSub.publishUnsafe(incoming, message)
    const id = message._tag === "Notify" ? undefined : message.id
    const waiter = id === undefined ? undefined : pending.get(id)
    if (waiter !== undefined) {
      pending.delete(id!)
      Deferred.doneUnsafe(
        waiter,
        message._tag === "Failure"
          ? Effect.fail(
            new ClientError({
              reason: "Rejected",
              message: message.message,
              status: message.status,
              serverReason: message.reason
            })
          )
          : Effect.succeed(message)
      )
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

  const send = (frame: Frame.Frame) =>
    Effect.suspend(() => {
      const checked = Frame.validate(frame)
      return Result.isFailure(checked) ? Effect.fail(invalid(checked.failure.message)) : write(Frame.render(frame))
    })

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

  // One session: open (or resume), subscribe again, flush the buffer, read until the connection ends.
  // It succeeds with whether the connection opened at all.
  let opened = false
  const session = Effect.gen(function*() {
    opened = false
    const link = yield* transport.open
    if (!link.resumed) {
      if (held.size > 0) yield* link.send(subscribeFrame("subscribe", held))
    } else {
      // the server kept the connection and its subscriptions: only what changed while it was down
      const added = Array.from(held).filter((channel) => !heldAtDrop.has(channel))
      const removed = Array.from(heldAtDrop).filter((channel) => !held.has(channel))
      if (added.length > 0) yield* link.send(subscribeFrame("subscribe", added))
      if (removed.length > 0) yield* link.send(subscribeFrame("unsubscribe", removed))
    }
    for (const text of buffered.splice(0)) yield* link.send(text)
    writer = link
    opened = true
    yield* SubscriptionRef.set(state, "open")
    yield* link.read(dispatch)
  }).pipe(
    Effect.scoped,
    Effect.ensuring(Effect.sync(() => {
      if (writer !== undefined) heldAtDrop = new Set(held)
      writer = undefined
    })),
    Effect.exit,
    Effect.map(() => opened)
  )

  const delay = (attempt: number) => {
    const base = Math.min(maxDelay, initialDelay * factor ** attempt)
    return Duration.millis(base * (1 - jitter * Math.random()))
  }

  const keepUp = Effect.gen(function*() {
    for (let attempt = 0;; attempt++) {
      if (yield* session) attempt = 0
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
    send,
    command: (command, headers, body) => send(Frame.make(command, headers, body)),
    subscribe: (channels, command = "subscribe") =>
      Effect.suspend(() => {
        const list = channelList(channels)
        if (Result.isFailure(list)) return Effect.fail(list.failure)
        for (const channel of list.success) held.add(channel)
        return send(Frame.make(command, { subscribe: list.success.join(" ") }))
      }),
    unsubscribe: (channels, command = "unsubscribe") =>
      Effect.suspend(() => {
        const list = channelList(channels)
        if (Result.isFailure(list)) return Effect.fail(list.failure)
        for (const channel of list.success) held.delete(channel)
        return send(Frame.make(command, { unsubscribe: list.success.join(" ") }))
      }),
    publish: (channels, command, headers, body) =>
      Effect.suspend(() => {
        const list = channelList(channels)
        if (Result.isFailure(list)) return Effect.fail(list.failure)
        return send(Frame.make(command, { publish: list.success.join(" "), ...headers }, body))
      }),
    request: (command, body, requestOptions) =>
      Effect.suspend(() => {
        const id = `r${(++sequence).toString(36)}`
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
      }),
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
