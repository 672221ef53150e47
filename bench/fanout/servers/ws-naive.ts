/**
 * Baseline: a raw `ws` broadcast server written naively. A published message
 * goes out as one `ws.send(string)` per subscriber: each send encodes the
 * string again and writes its own frame to the socket.
 */
import { type WebSocket, WebSocketServer } from "ws"
import { port, routeOf } from "./lite.ts"

const channels = new Map<string, Set<WebSocket>>()

const server = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false })
server.on("connection", (ws) => {
  const held = new Set<string>()
  ws.on("message", (data) => {
    const text = data.toString()
    const { publish, subscribe } = routeOf(text)
    if (subscribe !== undefined) {
      let subscribers = channels.get(subscribe)
      if (subscribers === undefined) channels.set(subscribe, subscribers = new Set())
      subscribers.add(ws)
      held.add(subscribe)
    }
    if (publish !== undefined) {
      for (const subscriber of channels.get(publish) ?? []) subscriber.send(text)
    }
  })
  ws.on("close", () => {
    for (const channel of held) channels.get(channel)?.delete(ws)
  })
})
server.on("listening", () => console.log(`ws-naive listening on 127.0.0.1:${port}`))
