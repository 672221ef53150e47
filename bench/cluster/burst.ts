/**
 * The 10,000-publish scenario's load (reference §15): one publisher WebSocket
 * connection that writes `count` frames `LHTTP/1.0 bench\r\npublish:<channel>\r\n\r\n<n>`
 * as fast as it can (one `write` each, encoded beforehand), and one subscriber
 * connection that counts them. Both live in this process, so one clock times
 * the last write and the last delivery. The publisher does not subscribe.
 * With `positioned`, the subscriber asks for positions (`since:now`): on a
 * history channel it gets a `position` frame first (not counted), then each
 * message with its position headers.
 *
 *   node bench/cluster/burst.ts <publish port> <subscribe port> <channel> [positioned]
 */
import type { Buffer } from "node:buffer"
import { RawClient, textFrame } from "../fanout/client.ts"
import { subscribeMessage } from "../fanout/ipc.ts"
import { type BurstCommand, burstMessage, type BurstResult, now, reply } from "./ipc.ts"

const [publishPort, subscribePort, channel, mode] = process.argv.slice(2)
// a burst that has not been delivered by then is reported with what arrived
const limitMs = 8_000

const publisher = await RawClient.connect(Number(publishPort))
const subscriber = await RawClient.connect(Number(subscribePort))
const positioned = mode === "positioned"
subscriber.subscribe(textFrame(subscribeMessage(channel!, "lhttp", positioned)), positioned)

const probe = textFrame(burstMessage(channel!, 0))

const burst = (count: number): Promise<BurstResult> => {
  const frames: Array<Buffer> = []
  for (let n = 1; n <= count; n++) frames.push(textFrame(burstMessage(channel!, n)))
  subscriber.count = 0
  return new Promise((resolve) => {
    let writtenAt = NaN
    let deliveredAt = NaN
    let loopMs = NaN
    let start = NaN
    const timer = setTimeout(() => finish(), limitMs)
    const finish = () => {
      clearTimeout(timer)
      subscriber.onRead = undefined
      resolve({
        type: "burst",
        count,
        loopMs,
        writtenMs: writtenAt - start,
        deliveredMs: deliveredAt - start,
        received: subscriber.count,
        closed: subscriber.closed
      })
    }
    const check = () => {
      if (Number.isNaN(deliveredAt) && subscriber.count >= count) deliveredAt = now()
      if (!Number.isNaN(deliveredAt) && !Number.isNaN(writtenAt)) finish()
    }
    subscriber.onRead = check
    start = now()
    const socket = publisher.socket
    for (let i = 0; i < count - 1; i++) socket.write(frames[i]!)
    socket.write(frames[count - 1]!, () => {
      writtenAt = now()
      check()
    })
    loopMs = now() - start
  })
}

process.on("disconnect", () => process.exit(0))
process.on("message", (command: BurstCommand) => {
  if (command.type === "probe") {
    publisher.send(probe)
    return reply({ type: "probed", received: subscriber.count })
  }
  void burst(command.count).then(reply)
})
reply({ type: "ready" })
