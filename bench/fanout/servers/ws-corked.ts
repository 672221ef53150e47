/**
 * Baseline: a raw `ws` broadcast server that batches its writes. A published
 * message is encoded once; each subscriber queues the shared Buffer, and once
 * per tick every connection with a queue writes it inside one socket
 * cork/uncork (one syscall for all its frames). This is about the ceiling of
 * fan-out in Node.
 */
import { Buffer } from "node:buffer"
import { createServer } from "node:http"
import type * as Net from "node:net"
import { type WebSocket, WebSocketServer } from "ws"
import { port, routeOf } from "./lite.ts"

interface Peer {
  readonly ws: WebSocket
  readonly socket: Net.Socket
  queue: Array<Buffer>
}

const text = { binary: false } as const
const channels = new Map<string, Set<Peer>>()
const dirty: Array<Peer> = []
let scheduled = false

const flush = (): void => {
  scheduled = false
  for (const peer of dirty.splice(0, dirty.length)) {
    const frames = peer.queue
    peer.queue = []
    peer.socket.cork()
    for (const frame of frames) peer.ws.send(frame, text)
    peer.socket.uncork()
  }
}

const publish = (channel: string, message: string): void => {
  const bytes = Buffer.from(message, "utf8")
  for (const peer of channels.get(channel) ?? []) {
    if (peer.queue.push(bytes) === 1) dirty.push(peer)
  }
  if (!scheduled) {
    scheduled = true
    setImmediate(flush)
  }
}

const connection = (peer: Peer): void => {
  const held = new Set<string>()
  peer.ws.on("message", (data) => {
    const message = data.toString()
    const route = routeOf(message)
    if (route.subscribe !== undefined) {
      let subscribers = channels.get(route.subscribe)
      if (subscribers === undefined) channels.set(route.subscribe, subscribers = new Set())
      subscribers.add(peer)
      held.add(route.subscribe)
    }
    if (route.publish !== undefined) publish(route.publish, message)
  })
  peer.ws.on("close", () => {
    for (const channel of held) channels.get(channel)?.delete(peer)
  })
}

const sockets = new WebSocketServer({ noServer: true, perMessageDeflate: false })
const server = createServer()
server.on(
  "upgrade",
  (request, socket, head) =>
    sockets.handleUpgrade(request, socket, head, (ws) => connection({ ws, socket: socket as Net.Socket, queue: [] }))
)
server.listen(port, "127.0.0.1", () => console.log(`ws-corked listening on 127.0.0.1:${port}`))
