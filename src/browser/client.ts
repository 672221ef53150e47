/**
 * The browser SDK's client, `Lhttp`, and the `Context` its hooks receive: a
 * connection over a WebSocket, SSE or long-poll, kept up by reconnecting
 * with backoff, subscribing again to every channel (since its position for a
 * history channel, with a fresh subscription token for a private one) and
 * restoring the session on each new connection. The rules it shares with
 * the Effect client (backoff, positions, sessions, the answers of
 * `POST /send`) are internal/wire/'s.
 */
import { answeredId } from "../internal/wire/answers.ts"
import { hintedDelay, isTerminalClose } from "../internal/wire/backoff.ts"
import { isUnasked, parseAckPositions, Positions } from "../internal/wire/positions.ts"
import { AckHeader, Command, Header, TokenHeader } from "../internal/wire/protocol.ts"
import type { Change } from "../internal/wire/sessionState.ts"
import { type Conn, Dialer, open, pageUrl } from "./dialer.ts"
import { CLOSING, type Closing, guarded, type HttpConnection, HttpLink, OPEN, type Refusal } from "./httpLink.ts"
import {
  type Channels,
  encode,
  entriesOf,
  errorOf,
  fromEvent,
  type HeadersInput,
  isErrorFrame,
  joinChannels,
  LhttpError,
  Message,
  type MessageInput,
  received
} from "./message.ts"
import {
  type Acknowledgement,
  type LhttpOptions,
  reconnectOf,
  type RequestOptions,
  type Session,
  type SessionChange,
  type State,
  type SubscribeOptions,
  type Transport,
  transportsOf,
  type WebSocketLike
} from "./options.ts"
import { Outbox } from "./outbox.ts"
import { Queue } from "./queue.ts"
import { Requests } from "./requests.ts"
import { SessionKeeper } from "./sessionKeeper.ts"
import { Subscriptions } from "./subscriptions.ts"
import { type GetSubscriptionToken, type GetToken, isRefresh, subscriptionTokenOf, tokenOf } from "./token.ts"

/**
 * What a hook receives, and a way to send. `req` is the received message (empty for the shared
 * `lhttp.context` and for open, close and error); `setCommand` and `addHeader` stage the next
 * send only: every send starts fresh.
 */
export class Context {
  readonly lhttp: Lhttp
  readonly req: Message
  /**
   * `on_close`, `on_disconnect`: the WebSocket's close event, or for SSE and long-poll
   * `{ code, reason, wasClean }`.
   * `on_error`: the WebSocket's error event; for SSE and long-poll the `Error` of a failed request,
   * a {@link GapEvent}, or the {@link LhttpError} of a frame `POST /send` refused (not a request's);
   * what option `getToken` threw; the {@link LhttpError} that refused a fresh token (`req`: the
   * server's `refresh` frame); what option `getSubscriptionToken` threw (`req`: the subscribe it
   * was asked for, when there is one).
   */
  readonly event: unknown
  /** `on_open`: whether this is a reconnection (the subscriptions were re-sent just before). */
  declare reconnected?: boolean
  /** `on_close`, `on_disconnect`: the close code. */
  declare code?: number
  /** `on_close`: whether the client will reconnect. */
  declare willReconnect?: boolean
  /**
   * `on_disconnect`: whether the client reconnects: false after a close code from 4500 to 4999
   * (the server says not to come back), with reconnection off, or out of attempts.
   */
  declare reconnect?: boolean
  /** `on_session`: what changed. */
  declare change?: SessionChange
  /** `on_session`: the session now (`undefined` once closed). */
  declare session?: Session | undefined
  /** `on_session`: the session's key (for `"closed"`, the key that was closed). */
  declare key?: string
  /**
   * `on_close`, `on_disconnect`: the close reason. `on_session` `"closed"`: why: `"Closed"` (the
   * server closed it: `closed:<key>`), `"SessionNotFound"` (the server no longer knows it: a restore
   * was refused, or it expired) or `"Cleared"` ({@link Lhttp.clearSession}).
   */
  declare reason?: string
  /** `on_session` `"closed"` with reason `"SessionNotFound"`: the error frame's {@link LhttpError}. */
  declare error?: LhttpError
  #command: string | undefined
  #headers = new Map<string, string>()

  constructor(lhttp: Lhttp, message?: Message | null, event?: unknown) {
    this.lhttp = lhttp
    this.req = message ?? new Message()
    this.event = event
  }
  /** The current connection: the WebSocket, or the SSE or long-poll connection. */
  get conn(): WebSocketLike | HttpConnection | undefined {
    return this.lhttp.conn
  }
  getCommand(): string {
    return this.req.command
  }
  getHeader(name: string): string | undefined {
    return this.req.headers.get(name)
  }
  getHeaders(): Record<string, string> {
    return Object.fromEntries(this.req.headers)
  }
  getBody(): string {
    return this.req.body
  }
  /** The error of an error frame (`LHTTP/1.0 error` with `status`), else `undefined`. */
  getError(): LhttpError | undefined {
    return isErrorFrame(this.req) ? errorOf(this.req) : undefined
  }
  /** The command of the next send (default: the received command). */
  setCommand(command: string): this {
    this.#command = String(command)
    return this
  }
  /** A header of the next send. */
  addHeader(name: string, value: string | number): this {
    this.#headers.set(String(name), String(value))
    return this
  }
  /** Sends the staged command and headers with `body`, then clears them. */
  send(body?: string | null): void {
    this.#sendStaged(body, undefined)
  }
  /** Sends `command` with `publish:<channels>`, then `headers`, and `body`. */
  publish(channels: Channels, command?: string | null, headers?: HeadersInput, body?: string | null): void {
    this.#withChannels(Header.publish, channels, command, headers, body)
  }
  /**
   * Sends `command` with `subscribe:<channels>` (and `since:now`, see {@link Lhttp.send}); the
   * client re-sends it after each reconnect. `{ token: true }`: private channels, each subscribed
   * in a message of its own with a fresh subscription token from option `getSubscriptionToken`,
   * now and at every reconnect ({@link SubscribeOptions}).
   */
  subscribe(
    channels: Channels,
    command?: string | null,
    headers?: HeadersInput,
    body?: string | null,
    options?: SubscribeOptions
  ): void {
    this.#withChannels(Header.subscribe, channels, command, headers, body, options)
  }
  /** Sends `command` with `unsubscribe:<channels>`; the channels are no longer re-subscribed. */
  unsubscribe(channels: Channels, command?: string | null, headers?: HeadersInput, body?: string | null): void {
    this.#withChannels(Header.unsubscribe, channels, command, headers, body)
  }
  /** {@link Lhttp.request} */
  request(command: string, headers?: HeadersInput, body?: string | null, options?: RequestOptions): Promise<Context> {
    return this.lhttp.request(command, headers, body, options)
  }
  #withChannels(
    header: string,
    channels: Channels,
    command: string | null | undefined,
    headers: HeadersInput,
    body: string | null | undefined,
    options?: SubscribeOptions
  ): void {
    this.addHeader(header, joinChannels(channels))
    if (command != null) this.setCommand(command)
    for (const [name, value] of entriesOf(headers)) if (value != null) this.addHeader(String(name), String(value))
    this.#sendStaged(body, options)
  }
  #sendStaged(body: string | null | undefined, options: SubscribeOptions | undefined): void {
    const message = new Message(this.#command ?? this.req.command, this.#headers, body)
    this.#command = undefined
    this.#headers = new Map()
    this.lhttp.send(message, options)
  }
}

/**
 * An LHTTP connection: opens at construction (over the first of `transports` that connects),
 * reconnects with backoff, and re-sends every subscription after each reconnect. With a session
 * (a `session` frame received, or option `session` / `sessionStorage`), each new connection first
 * restores it (`LHTTP/1.0 session` with `restore:<key>` and an `id`) and waits for the answer
 * before it is `"open"`, re-subscribes and sends what was queued. An SSE stream or
 * a poll that breaks resumes the same connection (`state` goes `"reconnecting"`, then `"open"`, with
 * no `on_close` nor `on_open`: nothing is lost nor re-sent; what was sent and subscribed meanwhile
 * goes out then, in order). Override the hooks by assigning them or in a subclass.
 */
export class Lhttp {
  /** `fromEvent`, as a static: `Lhttp.fromEvent(event.data)`. */
  static fromEvent: (data: string) => string = fromEvent
  /** A context for sending from outside the hooks: `lhttp.context.publish("room", "chat", null, "hi")`. */
  readonly context: Context
  readonly #url: string
  readonly #options: LhttpOptions
  readonly #dialer: Dialer
  #conn: Conn | undefined
  #state: State = "connecting"
  #opens = 0
  #wasOpen = false
  #closing = false
  #closeWaiters: Array<() => void> = []
  readonly #subscriptions = new Subscriptions()
  readonly #positions = new Positions()
  readonly #queue: Queue
  // on an open connection, what waits behind a private subscription whose token has not come yet
  readonly #outbox: Outbox
  // the connection whose re-subscriptions wait for their subscription tokens (not ready yet)
  #awaitingTokens: Conn | undefined
  readonly #requests = new Requests<Context, Conn>()
  readonly #prefix = Math.random().toString(36).slice(2, 8)
  #nextId = 0
  readonly #sessions: SessionKeeper

  /** Without `url`, in a browser: `ws(s)://<location.host>/`. */
  constructor(url?: string | URL | null, options?: LhttpOptions) {
    options ??= {}
    this.#url = url == null ? pageUrl() : String(url)
    this.#options = options
    this.#dialer = new Dialer(transportsOf(options.transports), reconnectOf(options.reconnect))
    this.context = new Context(this, null)
    this.#sessions = new SessionKeeper(options)
    this.#queue = new Queue(options.maxQueue ?? 1000)
    this.#outbox = new Outbox(options.maxQueue ?? 1000)
    this.#open(true)
  }

  /** Each open, reconnections included (`context.reconnected`). */
  on_open(_context: Context): void {}
  /** Each frame received, except the replies to {@link request}. */
  on_message(_context: Context): void {}
  /** Each close of an open connection, and the end (`context.willReconnect` false). */
  on_close(_context: Context): void {}
  /**
   * Each end of an open connection the client did not close itself (a WebSocket's close, SSE's
   * `event: close`, a poll's `410`, a lost connection), before `on_close`: `context.code`,
   * `context.reason`, `context.reconnect`. A code from 4500 to 4999 tells the client not to come
   * back: no reconnect, the state goes `"closed"`.
   */
  on_disconnect(_context: Context): void {}
  /**
   * Each WebSocket error event (failed reconnection attempts included); over SSE and long-poll,
   * each failed request, a gap in an SSE stream, and a frame `POST /send` refused; a `getToken`
   * that failed, and a fresh token the server refused.
   */
  on_error(_context: Context): void {}
  /** Each change of {@link state}. */
  on_state(_state: State): void {}
  /**
   * Each change of the session: created, updated, restored (after a new connection, before the
   * subscriptions are re-sent) and closed (by the server, refused as `SessionNotFound`, or cleared).
   * `context.change`, `context.session`, `context.key`; the `session` frame in `context.req`.
   */
  on_session(_context: Context): void {}

  get url(): string {
    return this.#url
  }
  /** `"connecting"`, `"open"`, `"reconnecting"`, `"closing"` or `"closed"` (for good). */
  get state(): State {
    return this.#state
  }
  /** The transport in use, or being tried while none has opened yet. */
  get transport(): Transport {
    return this.#dialer.transport
  }
  /** The transports to try, in order. */
  get transports(): ReadonlyArray<Transport> {
    return Array.from(this.#dialer.transports)
  }
  /** The current connection, if any: the WebSocket, or the SSE or long-poll connection. */
  get conn(): WebSocketLike | HttpConnection | undefined {
    return this.#conn
  }
  /** The channels subscribed to, re-sent after each reconnect. */
  get channels(): ReadonlyArray<string> {
    return this.#subscriptions.channels
  }
  /**
   * The last position of a subscribed history channel: known from the `position` message that
   * answers its subscription, then advanced by the positions of its messages. After a reconnect
   * the channel is subscribed `since` it, and what was published meanwhile arrives before the live
   * messages. `undefined` for a channel without history (its `position` message says
   * `NoHistory`): position-like headers of its messages are the publisher's text, never taken.
   */
  position(channel: string): { readonly epoch: string; readonly offset: number } | undefined {
    return this.#positions.get(channel)
  }
  /** The session as the server last told it, or `undefined` (none, not restored yet, or closed). */
  get session(): Session | undefined {
    return this.#sessions.session
  }
  /** The key restored after each new connection: the session's, or the one given or saved, until refused. */
  get sessionKey(): string | undefined {
    return this.#sessions.state.key
  }

  /**
   * Forgets the session here and in `sessionStorage` (no more restores); `on_session` with
   * `"closed"` and reason `"Cleared"`. The server is not told.
   */
  clearSession(): void {
    this.#sessionChanged(this.#sessions.state.clear(), null)
  }

  /**
   * Sends a message now, or queues it while the connection is not open (sent after the
   * re-subscriptions of the next open); a message that only subscribes goes from the queue only
   * when an SSE stream or poll resumes its connection (in its place among the others), since a
   * new connection re-subscribes anyway. A message that subscribes without a `since` header gets
   * `since:now` right after its `subscribe`: its channels are answered with `position` messages
   * (passed to `on_message`), and the messages of history channels carry their positions.
   * `{ token: true }`: a message that only subscribes, to private channels
   * ({@link SubscribeOptions}); each goes once its token came (on a resumed connection, a fresh
   * one asked then), and what is sent after it waits for it. Throws an {@link LhttpError} once
   * closed or when the queue is full, a `TypeError` for `{ token: true }` without option
   * `getSubscriptionToken` or on a message that does more than subscribe.
   */
  send(message: MessageInput, options?: SubscribeOptions): void {
    const given = message instanceof Message ? message : new Message(message.command, message.headers, message.body)
    if (this.#closing || this.#state === "closed") throw new LhttpError(0, "Closed", "this client is closed")
    if (options?.token === true) return this.#subscribePrivately(given)
    const { onlySubscribes, sending, text } = this.#subscriptions.note(given, this.#positions)
    const id = sending.headers.get(Header.id)
    const conn = this.#usable
    if (conn !== undefined) this.#transmitInOrder(conn, text, id, onlySubscribes)
    else this.#queue.add(text, id, onlySubscribes)
  }

  /**
   * Publishes `command` to `channels` with an `id` (generated) and resolves once the server says
   * the bus took it (its acknowledgement, protocol.md §4.4): `positions`, the position of each
   * channel that keeps history. Rejects with an {@link LhttpError}: the server's (`503`
   * `BusUnavailable`: nothing was published; `504` `PublishUnconfirmed`: it may have been; any
   * other refusal), `Timeout`, or `Closed` when the connection it went out on closed first (whether
   * it was published is not known; it is not sent again).
   */
  publishAcknowledged(
    channels: Channels,
    command: string,
    headers?: HeadersInput,
    body?: string | null,
    options?: RequestOptions
  ): Promise<Acknowledgement> {
    const message = new Message(command, headers, body)
    message.headers.set(Header.publish, joinChannels(channels))
    message.headers.delete(Header.id)
    return this.request(message.command, message.headers, message.body, options).then((reply) => ({
      positions: parseAckPositions(reply.getHeader(AckHeader.positions))
    }))
  }

  /**
   * Sends a request with an `id` header (generated unless given). Resolves with the context of
   * the reply that carries the same `id`; rejects with an {@link LhttpError} for an error frame,
   * a timeout, or a connection that closed before the reply.
   */
  request(command: string, headers?: HeadersInput, body?: string | null, options?: RequestOptions): Promise<Context> {
    const message = new Message(command, headers, body)
    const given = message.headers.get(Header.id)
    const id = given === undefined || given === "" ? this.#newId() : given
    message.headers.set(Header.id, id)
    if (this.#requests.has(id)) {
      return Promise.reject(new LhttpError(0, "DuplicateId", `a request with id ${id} is pending`, id))
    }
    const timeout = options?.timeout ?? this.#options.requestTimeout ?? 10_000
    const reply = this.#requests.wait(id, timeout, "reply to request", undefined, () => {
      this.#queue.drop(id)
      this.#outbox.drop(id)
    })
    try {
      this.send(message)
    } catch (error) {
      this.#requests.reject(id, error as LhttpError)
    }
    return reply
  }

  /**
   * Closes for good (no reconnection); resolves when the connection is closed (over SSE and
   * long-poll: once what was handed to it is sent and `DELETE /send` answered).
   */
  close(code = 1000, reason = ""): Promise<void> {
    this.#closing = true
    this.#dialer.stop()
    this.#queue.take()
    this.#outbox.take()
    this.#requests.rejectAll((id) => new LhttpError(0, "Closed", "the client was closed", id))
    const done = new Promise<void>((resolve) => this.#closeWaiters.push(resolve))
    const conn = this.#conn
    if (conn !== undefined && conn.readyState <= CLOSING) {
      this.#setState("closing")
      if (conn.readyState <= OPEN) conn.close(code, reason)
    } else {
      this.#conn = undefined
      this.#finish()
    }
    return done
  }

  #newId(): string {
    return `${this.#prefix}-${++this.#nextId}`
  }

  // closed, or closing for good: nothing more is dialed nor told
  get #ended(): boolean {
    return this.#closing || this.#state === "closed"
  }

  // the connection, when it is open (ready, not interrupted): what is sent goes now
  get #usable(): Conn | undefined {
    const conn = this.#conn
    return this.#state === "open" && conn !== undefined && conn.readyState === OPEN ? conn : undefined
  }

  // initial: called by the constructor, which throws what no transport could even start with
  #open(initial = false): void {
    const getToken = this.#options.getToken
    if (getToken === undefined) return this.#dial(undefined, initial)
    void tokenOf(getToken).then(
      (token) => this.#ended || this.#dialWith(token, initial),
      (error: unknown) => this.#ended || this.#tokenFailed(error)
    )
  }

  // getToken's token came: what no transport could even start with ends the client (after on_error)
  #dialWith(token: string, initial: boolean): void {
    try {
      this.#dial(token, initial)
    } catch (error) {
      this.#hook("on_error", new Context(this, null, error))
      this.#finish()
    }
  }

  // getToken threw or rejected: a failed attempt, tried again after the backoff
  #tokenFailed(error: unknown): void {
    this.#hook("on_error", new Context(this, null, error))
    this.#retry()
  }

  #dial(token: string | undefined, initial: boolean): void {
    let conn: Conn
    try {
      conn = open(this.#dialer.transport, this.#url, this.#options, this.#dialer, token)
    } catch (error) {
      if (this.#dialer.fallBack()) return this.#open(initial)
      if (initial) throw error
      return this.#retry()
    }
    this.#conn = conn
    this.#wasOpen = false
    conn.onopen = () => conn === this.#conn && this.#opened(conn)
    conn.onmessage = (event: { readonly data: unknown }) => conn === this.#conn && this.#received(event.data)
    conn.onerror = (event: unknown) => conn === this.#conn && this.#hook("on_error", new Context(this, null, event))
    conn.onclose = (event: Closing) => conn === this.#conn && this.#closed(conn, event)
    if (conn instanceof HttpLink) {
      conn.oninterrupt = () => conn === this.#conn && this.#setState("reconnecting")
      conn.onresume = () => conn === this.#conn && this.#resumed(conn)
      conn.ongap = (event) => conn === this.#conn && this.#hook("on_error", new Context(this, null, event))
      conn.onrefused = (refusal) => this.#refused(refusal)
    }
  }

  #opened(conn: Conn): void {
    const reconnected = this.#opens++ > 0
    this.#wasOpen = true
    this.#dialer.opened()
    // the session first: a processor that reads it (a chat join without a name) must find it
    if (this.#sessions.state.key !== undefined) this.#restore(conn, reconnected)
    else this.#ready(conn, reconnected)
  }

  // The connection is usable: open, the subscriptions re-sent, the queue sent, on_open. With private
  // subscriptions (`{ token: true }`), their fresh tokens are asked first, all at once, and nothing
  // more is sent on the connection (the session's restore went before) until they all came: then
  // in one synchronous run, as without them, the state turns open, every subscription is re-sent
  // in the order the app made them (each private one with its token), the queue goes after them,
  // and on_open. Meanwhile the state stays connecting / reconnecting: sends are queued (behind the
  // subscriptions), subscriptions are noted and re-sent in that run (again() runs once the tokens
  // came; a private one made meanwhile has its token asked in another round first; the queue's
  // subscriptions are dropped by its take(), not sent twice), and a resumed
  // SSE stream or poll sends nothing. A token that fails (on_error) leaves its subscribe without
  // one: the server's refusal reaches on_message, as the Effect client's.
  #ready(conn: Conn, reconnected: boolean, tokens = new Map<string, string | undefined>()): void {
    const getSubscriptionToken = this.#options.getSubscriptionToken
    const asking = getSubscriptionToken === undefined
      ? []
      : this.#subscriptions.privateChannels.filter((channel) => !tokens.has(channel))
    if (getSubscriptionToken !== undefined && asking.length > 0) {
      this.#awaitingTokens = conn
      void Promise.all(asking.map(async (channel) => {
        tokens.set(channel, await this.#subscriptionToken(getSubscriptionToken, channel, null))
      })).then(() => {
        if (conn !== this.#conn || this.#closing) return
        this.#ready(conn, reconnected, tokens)
      })
      return
    }
    this.#awaitingTokens = undefined
    const context = Object.assign(new Context(this, null), { reconnected })
    this.#setState("open")
    for (const message of this.#subscriptions.again(this.#positions, tokens)) conn.send(encode(message))
    for (const { id, text } of this.#queue.take()) this.#transmit(conn, text, id)
    this.#hook("on_open", context)
  }

  // getSubscriptionToken's token for `channel`; undefined when it failed (told to on_error, with the
  // subscribe it was for)
  #subscriptionToken(
    getSubscriptionToken: GetSubscriptionToken,
    channel: string,
    subscribe: Message | null
  ): Promise<string | undefined> {
    return subscriptionTokenOf(getSubscriptionToken, channel).catch((error: unknown) => {
      if (!this.#ended) this.#hook("on_error", new Context(this, subscribe, error))
      return undefined
    })
  }

  // `{ token: true }`: each channel a subscription of its own, noted now (re-sent by every new
  // connection); on an open connection, sent at once (#sendPrivately). Else queued: a new connection
  // subscribes it in its opening (#ready), a resumed one from the queue (#resumed).
  #subscribePrivately(message: Message): void {
    const getSubscriptionToken = this.#options.getSubscriptionToken
    if (getSubscriptionToken === undefined) {
      throw new TypeError("a subscription with { token: true } needs option getSubscriptionToken")
    }
    const subscribes = this.#subscriptions.notePrivate(message)
    const conn = this.#usable
    for (const subscribe of subscribes) {
      if (conn !== undefined) this.#sendPrivately(conn, subscribe, getSubscriptionToken)
      else this.#queue.addPrivate(subscribe)
    }
  }

  // A private subscription on an open connection: sent once its token came, in its place: what the
  // app sends after it waits in the outbox until it went (a publish to the channel, a request that
  // counts on it).
  #sendPrivately(conn: Conn, subscribe: Message, getSubscriptionToken: GetSubscriptionToken): void {
    const place = this.#outbox.hold()
    const channel = subscribe.headers.get(Header.subscribe)!
    void this.#subscriptionToken(getSubscriptionToken, channel, subscribe).then((token) => {
      // its connection closed (or closes): the next one subscribes it
      if (conn !== this.#conn || this.#closing || conn.readyState !== OPEN) return
      const headers = new Map(subscribe.headers)
      if (token !== undefined) headers.set(TokenHeader.token, token)
      for (const { id, text } of place(encode(new Message(subscribe.command, headers, subscribe.body)))) {
        this.#transmit(conn, text, id)
      }
    })
  }

  // sends now, unless a private subscription sent before waits for its token: then after it (`queued`:
  // taken from the queue, which bounded it already)
  #transmitInOrder(conn: Conn, text: string, id: string | undefined, onlySubscribes: boolean, queued = false): void {
    if (this.#outbox.waiting) this.#outbox.add(text, id, onlySubscribes, !queued)
    else this.#transmit(conn, text, id)
  }

  // Sends `session` with `restore:<key>` and waits for its answer (the session frame, or an error)
  // before the connection is ready: the server runs requests concurrently with other messages.
  #restore(conn: Conn, reconnected: boolean): void {
    const id = this.#newId()
    const { change, frame } = this.#sessions.state.restore(id)
    if (frame === undefined) {
      this.#sessionChanged(change, null)
      return this.#ready(conn, reconnected)
    }
    const answer = this.#requests.wait(
      id,
      this.#options.requestTimeout ?? 10_000,
      "answer to the session restore",
      conn
    )
    try {
      this.#transmit(conn, encode(frame), id)
    } catch (error) {
      this.#requests.reject(id, error as LhttpError)
    }
    answer.then(
      () => {
        this.#sessions.state.settled(id)
        if (conn !== this.#conn || this.#closing) return
        this.#ready(conn, reconnected)
      },
      (error: LhttpError) => {
        const change = this.#sessions.state.refused(id, error.reason)
        if (conn !== this.#conn || this.#closing) return
        if (change !== undefined) this.#sessionChanged(change, null, error)
        else this.#hook("on_error", new Context(this, null, error)) // kept: tried again on the next connection
        this.#ready(conn, reconnected)
      }
    )
  }

  // A stream or poll that broke goes on with the same connection, which kept its subscriptions: what
  // the app did meanwhile goes out now, the subscriptions it made included (each private one with a
  // fresh token, #sendPrivately), in the order it did it, as it would have gone on the open
  // connection: an unsubscribe and a subscribe of the same channel end as the app left them, and a
  // publish that counts on a subscription made before it comes after it. (A new connection's #ready
  // keeps a coarser order: every subscription first, since each must be made again, then the queue.)
  #resumed(conn: HttpLink): void {
    if (this.#sessions.state.restoring !== undefined) return // the restore's answer makes it ready
    if (this.#awaitingTokens === conn) return // the subscription tokens make it ready
    this.#setState("open")
    const getSubscriptionToken = this.#options.getSubscriptionToken
    for (const waiting of this.#queue.takeAll()) {
      // a private subscription was queued only with option getSubscriptionToken (send() refuses it without)
      if (waiting._tag === "Private") this.#sendPrivately(conn, waiting.subscribe, getSubscriptionToken!)
      else this.#transmitInOrder(conn, waiting.text, waiting.id, waiting.onlySubscribes, true)
    }
  }

  #received(data: unknown): void {
    const message = received(data)
    if (message === undefined) return // protocol.md §8: a client may ignore what it does not understand
    const getToken = this.#options.getToken
    if (getToken !== undefined && isRefresh(message)) return this.#refresh(message, getToken)
    const id = answeredId(message)
    // a frame seen already by its position (came twice) is dropped
    if (!this.#positions.observe(message, (channel) => this.#subscriptions.has(channel))) return
    if (isUnasked(message, (channel) => this.#subscriptions.askedByApp(channel))) return
    this.#sessionChanged(this.#sessions.state.observe(message), message)
    const answered = id !== undefined &&
      (isErrorFrame(message)
        ? this.#requests.reject(id, errorOf(message))
        : this.#requests.resolve(id, new Context(this, message)))
    if (!answered) this.#hook("on_message", new Context(this, message))
  }

  // the server's `refresh`: getToken's fresh token goes as a `token` request; its failure is on_error's
  #refresh(frame: Message, getToken: GetToken): void {
    void tokenOf(getToken)
      .then((token) => this.request(Command.token, null, token))
      .catch((error: unknown) => this.#ended || this.#hook("on_error", new Context(this, frame, error)))
  }

  // POST /send refused a frame (400, 413, ...): its request fails, or on_error tells it
  #refused({ error, id }: Refusal): void {
    if (id === undefined || !this.#requests.reject(id, error)) this.#hook("on_error", new Context(this, null, error))
  }

  #closed(conn: Conn, event: Closing): void {
    this.#conn = undefined
    this.#sessions.state.abandon()
    this.#awaitingTokens = undefined
    // what an SSE or long-poll connection had not handed to the server goes out on the next one, then
    // what waited behind a private subscription's token
    const unsent = event.unsent ?? []
    const waited = this.#outbox.take()
    if (!this.#closing) this.#queue.putBack([...unsent, ...waited])
    this.#requests.closed(conn, unsent)
    const opened = this.#wasOpen
    // a close code from 4500 to 4999: the server says not to come back
    const terminal = event.code !== undefined && isTerminalClose(event.code)
    // a transport that could not connect: the next one, at once
    if (!opened && !terminal && !this.#closing && this.#dialer.fallBack()) return this.#open()
    const retry = !this.#closing && !terminal && this.#dialer.retries
    const context = Object.assign(new Context(this, null, event), {
      code: event.code,
      reason: event.reason,
      willReconnect: retry
    })
    const serverEnded = (opened || terminal) && !this.#closing
    if (!retry) this.#finish()
    else if (opened && event.immediate === true) {
      // the server no longer knows the connection: a new one now, with the subscriptions
      this.#setState("reconnecting")
      this.#open()
    } else this.#retry(hintedDelay(event.reason))
    if (serverEnded) this.#hook("on_disconnect", this.#disconnected(event, retry))
    // a failed attempt to reconnect is no connection closing: only on_error and on_state tell it
    if (opened || !retry) this.#hook("on_close", context)
  }

  // what on_disconnect is told
  #disconnected(event: Closing, reconnect: boolean): Context {
    return Object.assign(new Context(this, null, event), { code: event.code, reason: event.reason, reconnect })
  }

  // after the backoff, or the wait the close asked for
  #retry(hinted?: number): void {
    if (!this.#dialer.later(() => this.#open(), hinted)) return this.#finish()
    this.#setState("reconnecting")
  }

  #finish(): void {
    this.#queue.take()
    this.#outbox.take()
    // no connection will come to answer them (a close that said not to come back, no attempt left)
    this.#requests.rejectAll((id) => new LhttpError(0, "Closed", "the client is closed", id))
    this.#setState("closed")
    for (const resolve of this.#closeWaiters.splice(0)) resolve()
  }

  #transmit(conn: Conn, text: string, id: string | undefined): void {
    this.#requests.sentOn(id, conn)
    if (conn instanceof HttpLink) conn.send(text, id)
    else conn.send(text)
  }

  // a change of the session: kept in storage, told to on_session
  #sessionChanged(change: Change | undefined, message: Message | null, error?: LhttpError): void {
    if (change === undefined) return
    this.#hook("on_session", Object.assign(new Context(this, message), this.#sessions.changed(change, error)))
  }

  #setState(state: State): void {
    if (state === this.#state) return
    this.#state = state
    guarded(() => this.on_state(state))
  }

  #hook(
    name: "on_open" | "on_message" | "on_close" | "on_disconnect" | "on_error" | "on_session",
    context: Context
  ): void {
    guarded(() => this[name](context))
  }
}
