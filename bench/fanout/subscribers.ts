/**
 * Fan-out load process: opens `count` subscriber connections on lean raw
 * sockets, subscribes each to the channel, and reports how many messages they
 * received when the driver asks. With `sse`, the subscribers are Server-Sent
 * Events streams (`GET /sse?subscribe=<channel>`) instead of WebSockets; with
 * `socketio`, WebSockets speaking Socket.IO's packets. With `sources` above
 * 1, connections come from that many loopback addresses in turn (127.0.0.1,
 * 127.0.0.2, ...), so that ten thousands of them do not run short of source ports.
 * With `positioned` (LHTTP WebSockets only), that many of the connections,
 * spread evenly among the others, subscribe with `since:now`: on a history
 * channel each gets a `position` frame first (not counted) and then every
 * message with its position headers; the rest get the published text.
 * With `idle`, the process does not pace its event loop (see below): its
 * connections only hold on, answering the server's heartbeats. With
 * `network` (0 to 255), the source addresses are 127.0.<network>.1, .2, ...:
 * a measurement on a network of its own does not meet the source ports the
 * one before left in TIME_WAIT (tens of thousands of them made connecting
 * slower and slower, then run short).
 *
 *   node bench/fanout/subscribers.ts <port> <channel> <count> [websocket|sse|socketio] [sources] [positioned]
 *     [idle|-] [network]
 */
import { type Protocol, RawClient, textFrame } from "./client.ts"
import { type Counted, serve, subscribeMessage } from "./ipc.ts"
import { SseSubscriber } from "./sse.ts"

const [port, channel, count, transport, sources, positionedArg, mode, network] = process.argv.slice(2)
// connections opened at once, well under the server's listen backlog
const batch = 100

const clients: Array<Counted> = []
const protocol: Protocol = transport === "socketio" ? "socketio" : "lhttp"
const addresses = Math.max(1, Number(sources ?? 1))
const open = (index: number): Promise<Counted> => {
  const from = addresses === 1 ? undefined : `127.0.${Number(network ?? 0)}.${1 + (index % addresses)}`
  return transport === "sse"
    ? SseSubscriber.connect(Number(port), channel!, from)
    : RawClient.connect(Number(port), protocol, from)
}
while (clients.length < Number(count)) {
  const size = Math.min(batch, Number(count) - clients.length)
  const first = clients.length
  clients.push(...await Promise.all(Array.from({ length: size }, (_, i) => open(first + i))))
}
const subscribe = textFrame(subscribeMessage(channel!, protocol))
const subscribeSince = textFrame(subscribeMessage(channel!, protocol, true))
const positioned = protocol === "lhttp" ? Math.min(Number(positionedArg ?? 0), clients.length) : 0
// connection i asks for positions when the running share of positioned ones steps up there: evenly spread
const asks = (i: number) =>
  Math.floor(((i + 1) * positioned) / clients.length) > Math.floor((i * positioned) / clients.length)
for (const [i, client] of clients.entries()) {
  if (!(client instanceof RawClient)) continue
  if (asks(i)) client.subscribe(subscribeSince, true)
  else client.subscribe(subscribe)
}
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
if (mode !== "idle") pace()
