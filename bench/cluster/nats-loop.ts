/**
 * The original claim's scope (reference §15): a NATS-only publish loop of
 * `count` messages with @nats-io/transport-node, then `flush()`; a second
 * connection subscribed to the subject counts the deliveries. The payload is
 * the scenario's LHTTP text.
 *
 *   node bench/cluster/nats-loop.ts <nats url> <subject>
 */
import { connect } from "@nats-io/transport-node"
import { burstMessage, type LoopCommand, type LoopResult, now, reply } from "./ipc.ts"

const [url, subject] = process.argv.slice(2)
const limitMs = 8_000

const publisher = await connect({ servers: url!, name: "bench-publisher" })
const subscriber = await connect({ servers: url!, name: "bench-subscriber" })
let received = 0
let onMessage: (() => void) | undefined
subscriber.subscribe(subject!, {
  callback: () => {
    received++
    onMessage?.()
  }
})
await subscriber.flush()

const loop = async (count: number): Promise<LoopResult> => {
  received = 0
  let deliveredAt = NaN
  const delivered = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, limitMs)
    onMessage = () => {
      if (received < count) return
      deliveredAt = now()
      clearTimeout(timer)
      resolve()
    }
  })
  const start = now()
  for (let n = 1; n <= count; n++) publisher.publish(subject!, burstMessage("bench", n))
  const publishMs = now() - start
  await publisher.flush()
  const flushMs = now() - start
  await delivered
  onMessage = undefined
  return { type: "loop", count, publishMs, flushMs, deliveredMs: deliveredAt - start, received }
}

process.on("disconnect", () => process.exit(0))
process.on("message", (command: LoopCommand) => {
  void loop(command.count).then(reply)
})
reply({ type: "ready" })
