/**
 * The seam between the connection core and the wire. A transport carries one
 * connection: it hands the core each inbound text message, in order, and
 * writes the batches of frames the core gives it. The core (pipeline, hub,
 * outbox and its slow-consumer policy, limits, shutdown) depends on this
 * interface alone, never on a socket: the Node WebSocket, SSE and long-poll
 * transports (`effect-lhttp/NodeLhttpServer`) and the in-memory one for tests
 * (`MemoryTransport`) all plug in here.
 *
 * A transport gives a connection to the server with `LhttpServer.accept`,
 * which answers with the connection's {@link Inbound} side:
 *
 * ```ts
 * const inbound = server.accept(transport)
 * socket.on("message", (text) => inbound.receive(text))
 * socket.on("close", () => inbound.closed())
 * ```
 *
 * @since 0.1.0
 */

/**
 * Who is connected, as the transport saw it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Peer {
  /** The request URL of the connection: path and query. */
  readonly url: string
  /** The request headers, lower-cased names. */
  readonly requestHeaders: Readonly<Record<string, string | undefined>>
  /** The peer's address, when the transport knows it. */
  readonly remoteAddress: string | undefined
}

/**
 * A frame on its way out: its text, rendered once, and its UTF-8 bytes,
 * encoded once and shared by every connection the frame goes to.
 *
 * @since 0.1.0
 * @category models
 */
export interface Outbound {
  readonly text: string
  readonly bytes: Uint8Array
  /**
   * The history position the frame carries, when the hub rendered it for a
   * subscription that asked for positions (a delivery or a `position`
   * frame): read from here, never from the text, which a publisher wrote.
   */
  readonly position?: { readonly channel: string; readonly epoch: string; readonly offset: number } | undefined
}

/**
 * One connection's way to the peer. Every method is synchronous and must not
 * throw.
 *
 * @since 0.1.0
 * @category models
 */
export interface Transport {
  /** Who is connected. */
  readonly peer: Peer
  /** The transport's name in metrics (`websocket`, `sse`, `poll`, `memory`…). */
  readonly kind?: string | undefined
  /** Writes frames in order, as one batch (one syscall where the transport can). */
  readonly write: (frames: ReadonlyArray<Outbound>) => void
  /** Bytes written but not yet taken by the peer: the outbox bounds them with what it queues. */
  readonly bufferedBytes: () => number
  /** Closes with a close code and a reason; idempotent. The transport then calls `Inbound.closed`. */
  readonly close: (code: number, reason: string) => void
  /** Whether frames can still be written. */
  readonly isOpen: () => boolean
  /** Stops reading from the peer while the core is behind (optional). */
  readonly pause?: (() => void) | undefined
  /** Reads from the peer again (optional). */
  readonly resume?: (() => void) | undefined
}

/**
 * The core's side of a connection, which the transport feeds.
 *
 * @since 0.1.0
 * @category models
 */
export interface Inbound {
  /** One inbound message, text (or UTF-8 bytes); messages are processed one at a time, in order. */
  readonly receive: (data: string | Uint8Array) => void
  /** The connection is gone (closed by either side, or failed): `onClose` hooks run, subscriptions go. */
  readonly closed: () => void
}
