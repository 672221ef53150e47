/**
 * Fan-out publisher process. It keeps `window` messages in flight (published,
 * not yet back) until stopped, so the server always has work queued but never
 * an unbounded backlog; its own copies of the messages acknowledge them.
 *
 * With one port, one connection publishes and is itself one of the channel's
 * subscribers. With a subscribe port too (the cluster benchmark), it publishes
 * on a connection that subscribes to nothing and counts its messages back on
 * a second connection, a subscriber at that port: it can publish into one node
 * and be acknowledged by another.
 *
 *   node bench/fanout/publisher.ts <port> <channel> <body bytes> [<subscribe port> or -] [lhttp|socketio]
 */
import { type Protocol, RawClient, textFrame } from "./client.ts"
import { type PublisherCommand, publishMessage, type Reply, serve, subscribeMessage } from "./ipc.ts"

const [port, channel, bodyBytes, subscribePort, protocolArg] = process.argv.slice(2)
const protocol: Protocol = protocolArg === "socketio" ? "socketio" : "lhttp"
const otherPort = subscribePort === undefined || subscribePort === "-" ? undefined : subscribePort

const sender = await RawClient.connect(Number(port), protocol)
const receiver = otherPort === undefined ? sender : await RawClient.connect(Number(otherPort), protocol)
receiver.send(textFrame(subscribeMessage(channel!, protocol)))
// the same encoded frame every time: the payload does not matter, only its size
const message = textFrame(publishMessage(channel!, "x".repeat(Number(bodyBytes)), protocol))

// messages kept in flight: 0 while stopped
let window = 0
let published = 0

// Tops the messages in flight up to the window.
const pump = (): void => {
  if (window === 0 || published - receiver.count >= window) return
  sender.socket.cork()
  while (published - receiver.count < window) {
    sender.send(message)
    published++
  }
  sender.socket.uncork()
}
receiver.onRead = pump

// the stats are the receiving connection's: it is the subscriber this process adds
serve([receiver], (command: PublisherCommand): Reply => {
  switch (command.type) {
    case "probe":
      sender.send(message)
      return { type: "ok" }
    case "start":
      published = 0
      window = command.window
      pump()
      return { type: "ok" }
    case "stop":
      window = 0
      return { type: "stopped", published }
  }
})
