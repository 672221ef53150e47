/**
 * Fan-out publisher process: one connection, itself one of the channel's
 * subscribers, so that its own copy of each message acknowledges it. Once
 * started it keeps `window` messages in flight (published, not yet back) until
 * stopped, so the server always has work queued but never an unbounded backlog.
 *
 *   node bench/fanout/publisher.ts <port> <channel> <body bytes>
 */
import { RawClient, textFrame } from "./client.ts"
import { publishMessage, type PublisherCommand, type Reply, serve, subscribeMessage } from "./ipc.ts"

const [port, channel, bodyBytes] = process.argv.slice(2)

const client = await RawClient.connect(Number(port))
client.send(textFrame(subscribeMessage(channel!)))
// the same encoded frame every time: the payload does not matter, only its size
const message = textFrame(publishMessage(channel!, "x".repeat(Number(bodyBytes))))

// messages kept in flight: 0 while stopped
let window = 0
let published = 0

// Tops the messages in flight up to the window.
const pump = (): void => {
  if (window === 0 || published - client.count >= window) return
  client.socket.cork()
  while (published - client.count < window) {
    client.send(message)
    published++
  }
  client.socket.uncork()
}
client.onRead = pump

serve([client], (command: PublisherCommand): Reply => {
  switch (command.type) {
    case "probe":
      client.send(message)
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
