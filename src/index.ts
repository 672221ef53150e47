/**
 * effect-lhttp: LHTTP, an HTTP-like text protocol over WebSocket, for Effect.
 *
 * @since 0.1.0
 */

/** Channel ids and channel lists, validated before they reach any bus. */
export * as Channel from "./Channel.ts"

/** The one error frame of the protocol. */
export * as ErrorFrame from "./ErrorFrame.ts"

/** LHTTP/1.0 frames: the fast parser, the renderer and the `string <-> Frame` Schema. */
export * as Frame from "./Frame.ts"

/** The typed `Message` union over frames, and its `string <-> Message` Schema. */
export * as Message from "./Message.ts"

/** Multipart bodies cut by byte offsets. */
export * as Multipart from "./Multipart.ts"

/** The typed error of everything that reads the wire. */
export * as ProtocolError from "./ProtocolError.ts"
