/**
 * Fan-out load process: opens `count` subscriber connections on lean raw
 * sockets, subscribes each to the channel, and reports how many messages they
 * received when the driver asks.
 *
 *   node bench/fanout/subscribers.ts <port> <channel> <count>
 */
import { RawClient, textFrame } from "./client.ts"
import { serve, subscribeMessage } from "./ipc.ts"

const [port, channel, count] = process.argv.slice(2)
// connections opened at once, well under the server's listen backlog
const batch = 100

const clients: Array<RawClient> = []
while (clients.length < Number(count)) {
  const size = Math.min(batch, Number(count) - clients.length)
  clients.push(...await Promise.all(Array.from({ length: size }, () => RawClient.connect(Number(port)))))
}
const subscribe = textFrame(subscribeMessage(channel!))
for (const client of clients) client.send(subscribe)
serve(clients)

// Naps half a millisecond every event-loop turn (the thread sleeps, using no
// CPU), so that each wake-up finds many sockets ready rather than one: against
// a server that writes one frame per syscall, the load would otherwise wake
// once per delivery. The publisher does not nap: its acknowledgements stay prompt.
const nap = new Int32Array(new SharedArrayBuffer(4))
const pace = (): void => {
  Atomics.wait(nap, 0, 0, 0.5)
  setImmediate(pace)
}
pace()
