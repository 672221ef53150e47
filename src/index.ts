/**
 * effect-lhttp: LHTTP, an HTTP-like text protocol over WebSocket, for Effect.
 *
 * @since 0.1.0
 */

/**
 * Who a connection is: the `authorize` and `onOpen` hooks' types (Authorization, Admission, Admitted).
 *
 * @since 0.1.0
 * @category modules
 */
export * as Authorization from "./Authorization.ts"

/**
 * The message bus between server processes: in-memory here, NATS in a cluster.
 *
 * @since 0.1.0
 * @category modules
 */
export * as Bus from "./Bus.ts"

/**
 * Channel ids and channel lists, validated before they reach any bus.
 *
 * @since 0.1.0
 * @category modules
 */
export * as Channel from "./Channel.ts"

/**
 * The nodes of a cluster as one node knows them: questions asked of every node over the bus, answered with `complete`.
 *
 * @since 0.1.0
 * @category modules
 */
export * as Cluster from "./Cluster.ts"

/**
 * The per-connection handle of processors and filters.
 *
 * @since 0.1.0
 * @category modules
 */
export * as Connection from "./Connection.ts"

/**
 * The one error frame of the protocol.
 *
 * @since 0.1.0
 * @category modules
 */
export * as ErrorFrame from "./ErrorFrame.ts"

/**
 * One incoming message while the server processes it.
 *
 * @since 0.1.0
 * @category modules
 */
export * as Exchange from "./Exchange.ts"

/**
 * Header filters: hooks around every message.
 *
 * @since 0.1.0
 * @category modules
 */
export * as Filter from "./Filter.ts"

/**
 * LHTTP/1.0 frames: the fast parser, the renderer and the `string <-> Frame` Schema.
 *
 * @since 0.1.0
 * @category modules
 */
export * as Frame from "./Frame.ts"

/**
 * Channel history: positions (offset, epoch), recovery since a position, the in-memory store.
 *
 * @since 0.1.0
 * @category modules
 */
export * as History from "./History.ts"

/**
 * Channels to local subscribers, refcounted bus subscriptions, fan-out, server-side publish.
 *
 * @since 0.1.0
 * @category modules
 */
export * as Hub from "./Hub.ts"

/**
 * The Effect client, for Node and browsers: reconnects, re-subscribes, request/reply.
 *
 * @since 0.1.0
 * @category modules
 */
export * as LhttpClient from "./LhttpClient.ts"

/**
 * The server's core, independent of any transport: connections, pipeline, limits, drain.
 *
 * @since 0.1.0
 * @category modules
 */
export * as LhttpServer from "./LhttpServer.ts"

/**
 * The in-memory transport: clients in the same process, for tests.
 *
 * @since 0.1.0
 * @category modules
 */
export * as MemoryTransport from "./MemoryTransport.ts"

/**
 * The typed `Message` union over frames, and its `string <-> Message` Schema.
 *
 * @since 0.1.0
 * @category modules
 */
export * as Message from "./Message.ts"

/**
 * Multipart bodies cut by byte offsets.
 *
 * @since 0.1.0
 * @category modules
 */
export * as Multipart from "./Multipart.ts"

/**
 * Presence: who is subscribed to a channel on every node, the `presence` command, join and leave events.
 *
 * @since 0.1.0
 * @category modules
 */
export * as Presence from "./Presence.ts"

/**
 * Processors: the handlers of commands, defined as values and implemented as Layers.
 *
 * @since 0.1.0
 * @category modules
 */
export * as Processor from "./Processor.ts"

/**
 * The typed error of everything that reads the wire.
 *
 * @since 0.1.0
 * @category modules
 */
export * as ProtocolError from "./ProtocolError.ts"

/**
 * Refusals the server answers with an error frame.
 *
 * @since 0.1.0
 * @category modules
 */
export * as Rejection from "./Rejection.ts"

/**
 * The server API: what a backend does to the cluster (publish, subscribe, disconnect users, presence, history, info).
 *
 * @since 0.1.0
 * @category modules
 */
export * as ServerApi from "./ServerApi.ts"

/**
 * Sessions that follow a client across reconnects and nodes: create, restore, update, close, signal.
 *
 * @since 0.1.0
 * @category modules
 */
export * as Sessions from "./Sessions.ts"

/**
 * Where sessions live: the store service and its in-memory Layer.
 *
 * @since 0.1.0
 * @category modules
 */
export * as SessionStore from "./SessionStore.ts"

/**
 * JWT connection and subscription tokens (jose): the server's `tokens` option, their claims and refusals.
 *
 * @since 0.1.0
 * @category modules
 */
export * as Tokens from "./Tokens.ts"

/**
 * The seam between the connection core and the wire: what every transport implements.
 *
 * @since 0.1.0
 * @category modules
 */
export * as Transport from "./Transport.ts"

/**
 * The upstream service and its typed error (the Node implementation is `effect-lhttp/NodeUpstream`).
 *
 * @since 0.1.0
 * @category modules
 */
export * as Upstream from "./Upstream.ts"
