/**
 * The WebSocket transport of the client, on `effect/socket`: a frame per
 * message both ways. It needs a `Socket.WebSocketConstructor`
 * (`NodeWS.layerWebSocketConstructor` on Node, the global WebSocket in
 * browsers).
 */
import { type Duration, Effect } from "effect"
import * as Socket from "effect/socket/Socket"
import { type Link, notConnected, OpenError, type Transport } from "./transport.ts"

/** A WebSocket transport to `url` (`ws:` or `wss:`), made again for each connection (a fresh token in it). */
export const make = (
  url: Effect.Effect<string>,
  openTimeout: Duration.Input
): Effect.Effect<Transport, never, Socket.WebSocketConstructor> =>
  Effect.map(Socket.makeWebSocket(url, { openTimeout }), (socket) => ({
    open: Effect.gen(function*() {
      // the reader opens the WebSocket and waits for it (or the open timeout)
      const reader = yield* socket.reader
      const writer = yield* socket.writer
      return {
        resumed: false,
        send: (text) => writer.write(text).pipe(Effect.mapError(() => notConnected())),
        read: (onFrame) =>
          Effect.gen(function*() {
            while (true) for (const data of yield* reader.pull) onFrame(data)
          }).pipe(
            // how the server closed it (its reason may ask for a wait before the reconnect)
            Effect.catch((error) =>
              Effect.succeed(
                error.reason._tag === "SocketCloseError"
                  ? { code: error.reason.code, reason: error.reason.closeReason ?? "" }
                  : undefined
              )
            )
          )
      } satisfies Link
    }).pipe(Effect.mapError((cause) => new OpenError({ message: cause.message, cause }))),
    close: Effect.void
  }))
