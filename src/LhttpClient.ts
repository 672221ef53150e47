/**
 * The Effect client, for Node and browsers: a connection to an LHTTP server,
 * kept up by reconnecting on a `Schedule` (by default exponential backoff
 * with jitter) and subscribing again to every channel after each reconnect.
 * It holds the connection over a WebSocket (the default: `effect/socket`,
 * with `NodeWS.layerWebSocketConstructor` on Node or the global WebSocket in
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
 * restores it after every reconnect to a new server connection. As a
 * service: `LhttpClient.LhttpClient`, from `layer`. Its parts live in
 * `internal/client/`, one module each (docs/architecture.md).
 *
 * @since 0.1.0
 */
import {
  Context,
  type Duration,
  Effect,
  Layer,
  Option,
  PubSub,
  Result,
  type Schedule,
  type Scope,
  Stream,
  SubscriptionRef
} from "effect"
import type * as Socket from "effect/socket/Socket"
import * as Frame from "./Frame.ts"
import type * as History from "./History.ts"
import { call } from "./internal/client/call.ts"
import * as Errors from "./internal/client/clientError.ts"
import { Connector } from "./internal/client/connector.ts"
import type * as HttpTransport from "./internal/client/http.ts"
import { Multiplexer } from "./internal/client/multiplexer.ts"
import * as PollTransport from "./internal/client/poll.ts"
import * as Reconnect from "./internal/client/reconnect.ts"
import { SessionTracker } from "./internal/client/session.ts"
import * as SseTransport from "./internal/client/sse.ts"
import { Subscriptions, withChannels } from "./internal/client/subscriptions.ts"
import type { Transport } from "./internal/client/transport.ts"
import * as WebSocketTransport from "./internal/client/websocket.ts"
import * as Backoff from "./internal/wire/backoff.ts"
import { parseAckPositions } from "./internal/wire/positions.ts"
import { AckHeader, Command, Header, HttpPath, HttpQuery, sinceNow, TokenHeader } from "./internal/wire/protocol.ts"
import type { Change } from "./internal/wire/sessionState.ts"
import type * as Message from "./Message.ts"
import type * as Processor from "./Processor.ts"

/**
 * The state of the connection.
 *
 * @since 0.1.0
 * @category models
 */
export type State = "connecting" | "open" | "reconnecting" | "closed"

/**
 * What went wrong, as the client's `reason` says: `NotConnected` (a send
 * while the connection is down and the send buffer is full), `Closed`,
 * `Timeout`, `Rejected` (an error frame: its `status` and `serverReason`),
 * `InvalidFrame`, `TooLarge`, `InvalidBody` and `InvalidReply` (`call`).
 *
 * @since 0.1.0
 * @category errors
 */
export const ClientError: typeof Errors.ClientError = Errors.ClientError

/**
 * The type of a `ClientError`.
 *
 * @since 0.1.0
 * @category errors
 */
export type ClientError = Errors.ClientError

/**
 * The numbers of the reconnect backoff both clients share (docs/clients.md,
 * "Rules both clients follow"): the wait before attempt n (0 for the first)
 * is `min(maxDelay, initialDelay * factor^n) * (1 - jitter * random)`. The
 * HTTP transports wait by them too before sending a frame again.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReconnectOptions {
  /** The first wait (default 500 ms). */
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
 * @category models
 */
export type TransportKind = "websocket" | "sse" | "poll"

/**
 * Options of the client.
 *
 * @since 0.1.0
 * @category models
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
  /**
   * How the client reconnects after a connection ends or fails to open: a
   * `Schedule` of the waits before each new attempt (it starts again after a
   * connection that opened, and the client closes when it ends), the numbers
   * of the default one (`backoff(options)`), or `false`: no reconnect.
   * Default: `backoff()`, 500 ms doubling to 10 s, up to half of each wait
   * drawn at random.
   */
  readonly reconnect?: Schedule.Schedule<unknown> | ReconnectOptions | false | undefined
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
  /**
   * Where the client gets its connection token, for a server that takes
   * tokens (docs/tokens.md): asked before each connection (the token goes as
   * `?token=` on the WebSocket URL, on `GET /sse` and on the `GET /poll` that
   * opens a connection), and again when the server asks for a fresh one (a
   * `refresh` frame: the client answers with a `token` request). When it
   * fails the connection goes without one (the server then refuses it, and
   * the client tries again after its backoff).
   */
  readonly getToken?: Effect.Effect<string, unknown> | undefined
}

/**
 * How the server closed a connection: its close code and reason, and
 * whether the client comes back (no after a code from 4500 to 4999, which a
 * backend gives a user it disconnects for good; then the client is closed).
 *
 * @since 0.1.0
 * @category models
 */
export interface Disconnect {
  readonly code: number
  readonly reason: string
  readonly reconnect: boolean
}

/**
 * Options with an HTTP transport: the client needs no WebSocket constructor.
 *
 * @since 0.1.0
 * @category models
 */
export interface HttpOptions extends Options {
  readonly transport: "sse" | "poll"
}

/**
 * Options of a request (`request` and `call`).
 *
 * @since 0.1.0
 * @category models
 */
export interface RequestOptions {
  /** Headers sent with the request (besides its `id`). */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** How long to wait for the answer (default: the client's `requestTimeout`). */
  readonly timeout?: Duration.Input | undefined
}

/**
 * The acknowledgement of a publish (`publishAcknowledged`): where the
 * channels that keep history put the message (docs/protocol.md §4.4).
 *
 * @since 0.1.0
 * @category models
 */
export interface Acknowledgement {
  /** The position of each published channel that keeps history. */
  readonly positions: ReadonlyMap<string, History.Position>
}

/**
 * A session as the client knows it: its key and its data (JSON), from the
 * last `session` frame the server sent.
 *
 * @since 0.1.0
 * @category models
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
 * @category models
 */
export type SessionEvent =
  | { readonly _tag: "Created"; readonly session: Session }
  | { readonly _tag: "Updated"; readonly session: Session }
  | { readonly _tag: "Restored"; readonly session: Session }
  | { readonly _tag: "Closed"; readonly key: string; readonly reason: "Closed" | "NotFound" }

/**
 * A connected client: what `connect` returns, and what the `LhttpClient`
 * service offers.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
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
   * carry their positions. A channel under a server's private prefix needs
   * a subscription token (docs/tokens.md): give `token`, asked now and on
   * every reconnect; each such channel is then subscribed in a frame of its
   * own.
   */
  readonly subscribe: (
    channels: Iterable<string>,
    command?: string,
    options?: { readonly token?: Effect.Effect<string, unknown> | undefined }
  ) => Effect.Effect<void, ClientError>
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
   * Publishes a message with a fresh `id` and waits for the server to say
   * the bus took it (docs/protocol.md §4.4): its acknowledgement, with the
   * position of each channel that keeps history. Not taken: `Rejected` with
   * the server's status and reason (`503 BusUnavailable`: nothing was
   * published; `504 PublishUnconfirmed`: it may have been). No answer:
   * `Timeout`, or `Closed` when the connection it went out on ended first
   * (whether it was published is not known; the client does not send it
   * again). Kept while the connection is down, it goes out on the next one.
   */
  readonly publishAcknowledged: (
    channels: Iterable<string>,
    command: string,
    headers?: Readonly<Record<string, string>>,
    body?: string,
    options?: RequestOptions
  ) => Effect.Effect<Acknowledgement, ClientError>
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
  /**
   * How the server closed each connection, from the moment the stream is
   * run: a drain's `1012`, a token that expired (`4003`), a backend's
   * `disconnect` with its code and reason. A connection that broke without a
   * close is not one.
   */
  readonly disconnects: Stream.Stream<Disconnect>
  /** The channels the client holds. */
  readonly channels: () => ReadonlySet<string>
  /** Closes the connection for good. */
  readonly close: Effect.Effect<void>
}

/**
 * The client as a service, from `layer`.
 *
 * @since 0.1.0
 * @category services
 */
export class LhttpClient extends Context.Service<LhttpClient, Service>()("effect-lhttp/LhttpClient") {}

/**
 * The reconnect `Schedule` of the backoff both clients share, with the
 * defaults or other numbers: 500 ms, doubling, at most 10 s, up to half of
 * each wait drawn at random. It never ends: to give up after a while, compose
 * it (`Schedule.upTo`, `Schedule.while`, …) and pass it as `reconnect`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const backoff = (options?: ReconnectOptions): Schedule.Schedule<number> =>
  Reconnect.schedule(Reconnect.backoffOf(options))

/**
 * Connects to an LHTTP server until the scope closes. It returns at once; the
 * connection opens (and reopens) in the background: watch `states`.
 *
 * Over a WebSocket (the default) it needs a `Socket.WebSocketConstructor`;
 * with `transport: "sse"` or `"poll"` it needs none (the global `fetch`).
 *
 * @since 0.1.0
 * @category constructors
 */
export function connect(url: string, options: HttpOptions): Effect.Effect<Service, never, Scope.Scope>
export function connect(
  url: string,
  options?: Options
): Effect.Effect<Service, never, Scope.Scope | Socket.WebSocketConstructor>
export function connect(
  url: string,
  options?: Options
): Effect.Effect<Service, never, Scope.Scope | Socket.WebSocketConstructor> {
  return isHttp(options)
    ? make(httpTransport(url, options), options)
    : Effect.flatMap(
      WebSocketTransport.make(withToken(url, options?.getToken), options?.openTimeout ?? "10 seconds"),
      (transport) => make(transport, options)
    )
}

/**
 * The client as a Layer of the `LhttpClient` service. Over a WebSocket (the
 * default) it needs a `Socket.WebSocketConstructor`; with `transport: "sse"`
 * or `"poll"` none.
 *
 * @since 0.1.0
 * @category layers
 */
export function layer(url: string, options: HttpOptions): Layer.Layer<LhttpClient>
export function layer(url: string, options?: Options): Layer.Layer<LhttpClient, never, Socket.WebSocketConstructor>
export function layer(url: string, options?: Options): Layer.Layer<LhttpClient, never, Socket.WebSocketConstructor> {
  return Layer.effect(LhttpClient, connect(url, options))
}

// the token getToken gives, if it gives one
const tokenOf = (getToken: Effect.Effect<string, unknown> | undefined): Effect.Effect<string | undefined> =>
  getToken === undefined ? Effect.undefined : Effect.orElseSucceed(getToken, () => undefined)

// the WebSocket URL of each connection: `url` with a fresh token as `?token=`
const withToken = (url: string, getToken: Effect.Effect<string, unknown> | undefined): Effect.Effect<string> =>
  Effect.map(tokenOf(getToken), (token) => {
    if (token === undefined || !URL.canParse(url)) return url
    const withQuery = new URL(url)
    withQuery.searchParams.set(HttpQuery.token, token)
    return withQuery.toString()
  })

const isHttp = (options: Options | undefined): options is HttpOptions =>
  options?.transport === "sse" || options?.transport === "poll"

/** A session change as the client tells it. */
const sessionEventOf = (change: Change): SessionEvent =>
  change._tag === "Closed"
    ? { _tag: "Closed", key: change.key, reason: change.reason === "Closed" ? "Closed" : "NotFound" }
    : { _tag: change._tag, session: change.session }

const httpTransport = (url: string, options: HttpOptions): Transport => {
  const { backoff } = Reconnect.fromOption(options.reconnect)
  const settings: HttpTransport.Settings = {
    url,
    backoff: (attempt) => Backoff.delay(backoff, attempt),
    openTimeout: options.openTimeout ?? "10 seconds",
    ssePath: options.ssePath ?? HttpPath.sse,
    pollPath: options.pollPath ?? HttpPath.poll,
    sendPath: options.sendPath ?? HttpPath.send,
    token: tokenOf(options.getToken)
  }
  return options.transport === "sse" ? SseTransport.make(settings) : PollTransport.make(settings)
}

const publishedTo = (message: Message.Message): ReadonlyArray<string> =>
  message._tag === "Failure" ? [] : message.publish

/** The client over a transport: its parts (internal/client/) put together, and its states. */
const make = Effect.fnUntraced(function*(
  transport: Transport,
  options: Options | undefined
): Effect.fn.Return<Service, never, Scope.Scope> {
  const requestTimeout = options?.requestTimeout ?? "10 seconds"
  const reconnects = options?.reconnect !== false
  const incoming = yield* Effect.acquireRelease(PubSub.unbounded<Message.Message>(), PubSub.shutdown)
  const sessionEvents = yield* Effect.acquireRelease(PubSub.unbounded<SessionEvent>(), PubSub.shutdown)
  const disconnects = yield* Effect.acquireRelease(PubSub.unbounded<Disconnect>(), PubSub.shutdown)
  const state = yield* SubscriptionRef.make<State>("connecting")
  const subscriptions = new Subscriptions()
  const requests = new Multiplexer()
  const session = new SessionTracker(
    options?.session,
    (change) => PubSub.publishUnsafe(sessionEvents, sessionEventOf(change))
  )
  const connector = new Connector({
    transport,
    schedule: Reconnect.fromOption(options?.reconnect).schedule,
    sendBuffer: options?.sendBuffer ?? 0,
    requestTimeout,
    subscriptions,
    session,
    requests,
    onMessage: (message) => PubSub.publishUnsafe(incoming, message),
    onState: (now) => SubscriptionRef.set(state, now),
    onClose: (ended) =>
      PubSub.publishUnsafe(disconnects, { ...ended, reconnect: reconnects && !Backoff.isTerminalClose(ended.code) })
  })
  const close = yield* connector.start()

  // `sent`: a frame given to `send` or `command`, whose channels are noted
  const sendFrame = (frame: Frame.Frame, sent = false) =>
    Effect.suspend(() => {
      const checked = Frame.validate(frame)
      if (Result.isFailure(checked)) return Effect.fail(Errors.invalidFrame(checked.failure.message))
      if (sent) subscriptions.noteSent(frame)
      return connector.write(Frame.render(frame))
    })

  // a request's frame, noted with the connection it went out on (none: kept for the next one)
  const sendRequest = (id: string, frame: Frame.Frame) =>
    Effect.tap(sendFrame(frame), () => Effect.sync(() => requests.sentOn(id, connector.link)))

  const exchange = (command: string, body: string | undefined, requestOptions: RequestOptions | undefined) =>
    requests.exchange(
      command,
      requestOptions?.timeout ?? requestTimeout,
      (id) => sendRequest(id, Frame.make(command, { ...requestOptions?.headers, [Header.id]: id }, body))
    )

  // a `refresh` frame: a fresh token from getToken, given in a `token` request (a failure: the server closes the
  // connection with 4003 at the old token's expiry, and the next connection asks getToken again)
  const getToken = options?.getToken
  if (getToken !== undefined) {
    const refreshes = yield* PubSub.subscribe(incoming)
    yield* PubSub.take(refreshes).pipe(
      Effect.flatMap((message) =>
        message._tag !== "Failure" && message.command === Command.refresh
          ? Effect.ignore(Effect.flatMap(getToken, (token) => exchange(Command.token, token, undefined)))
          : Effect.void
      ),
      Effect.forever,
      Effect.forkScoped
    )
  }

  return {
    send: (frame) => sendFrame(frame, true),
    command: (command, headers, body) => sendFrame(Frame.make(command, headers, body), true),
    subscribe: (channels, command = Command.subscribe, subscribeOptions) =>
      withChannels(channels, (list) => {
        const token = subscribeOptions?.token
        subscriptions.hold(list, token)
        if (token === undefined) {
          return sendFrame(Frame.make(command, { [Header.subscribe]: list.join(" "), [Header.since]: sinceNow }))
        }
        return Effect.forEach(list, (channel) =>
          Effect.flatMap(Effect.option(token), (fresh) =>
            sendFrame(Frame.make(command, {
              [Header.subscribe]: channel,
              [Header.since]: sinceNow,
              ...(fresh._tag === "Some" ? { [TokenHeader.token]: fresh.value } : {})
            }))), { discard: true })
      }),
    position: (channel) => Option.fromNullishOr(subscriptions.position(channel)),
    unsubscribe: (channels, command = Command.unsubscribe) =>
      withChannels(channels, (list) => {
        subscriptions.release(list)
        return sendFrame(Frame.make(command, { [Header.unsubscribe]: list.join(" ") }))
      }),
    publish: (channels, command, headers, body) =>
      withChannels(
        channels,
        (list) => sendFrame(Frame.make(command, { [Header.publish]: list.join(" "), ...headers }, body))
      ),
    publishAcknowledged: (channels, command, headers, body, requestOptions) =>
      withChannels(channels, (list) =>
        requests.exchange(
          command,
          requestOptions?.timeout ?? requestTimeout,
          (id) =>
            sendRequest(
              id,
              Frame.make(command, {
                ...requestOptions?.headers,
                [Header.publish]: list.join(" "),
                ...headers,
                [Header.id]: id
              }, body)
            )
        )).pipe(
          Effect.flatMap((answer) =>
            answer._tag === "Failure"
              ? Effect.fail(Errors.rejected(answer))
              : Effect.succeed({ positions: parseAckPositions(answer.headers.get(AckHeader.positions)) })
          )
        ),
    request: (command, body, requestOptions) =>
      Effect.flatMap(
        exchange(command, body, requestOptions),
        (answer) => answer._tag === "Failure" ? Effect.fail(Errors.rejected(answer)) : Effect.succeed(answer)
      ),
    call: (definition, body, requestOptions) =>
      call(definition, body, (command, text) => exchange(command, text, requestOptions)),
    session: Effect.sync(() => Option.fromNullishOr(session.current)),
    sessions: Stream.fromPubSub(sessionEvents),
    messages: Stream.fromPubSub(incoming),
    channel: (channel) =>
      Stream.fromPubSub(incoming).pipe(Stream.filter((message) => publishedTo(message).includes(channel))),
    state: SubscriptionRef.get(state),
    states: SubscriptionRef.changes(state),
    disconnects: Stream.fromPubSub(disconnects),
    channels: () => subscriptions.held,
    close
  } satisfies Service
})
