/**
 * Fan-out publisher of the cluster benchmark: the fan-out publisher
 * (bench/fanout/publisher.ts) split over two connections, so that it can
 * publish into one node and be acknowledged by another. It publishes on a
 * connection to `publishPort` that subscribes to nothing, and counts its
 * messages back on a connection to `subscribePort` that is one of the
 * channel's subscribers there; it keeps `window` messages in flight (published,
 * not yet back) until stopped. On one node both ports are the same.
 *
 *   node bench/cluster/publisher.ts <publish port> <subscribe port> <channel> <body bytes>
 */
import { RawClient, textFrame } from "../fanout/client.ts"
import { publishMessage, type PublisherCommand, type Reply, serve, subscribeMessage } from "../fanout/ipc.ts"

const [publishPort, subscribePort, channel, bodyBytes] = process.argv.slice(2)

const sender = await RawClient.connect(Number(publishPort))
const receiver = await RawClient.connect(Number(subscribePort))
receiver.send(textFrame(subscribeMessage(channel!)))
// the same encoded frame every time: the payload does not matter, only its size
const message = textFrame(publishMessage(channel!, "x".repeat(Number(bodyBytes))))

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
