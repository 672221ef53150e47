/**
 * The relay benchmark's load process: one publisher connection (subscribed to
 * nothing) and `subscribers` subscriber connections on the channel, lean raw
 * sockets (bench/fanout/client.ts), all in this process so that one clock
 * times a message's write and its arrival at every subscriber.
 *
 * - `burst`: the publisher writes `count` publish frames with a body of
 *   `body bytes`, encoded beforehand, all at once (one `write` of them all);
 *   the result is timed from that write (the cluster benchmark's burst, with
 *   the relay benchmark's body, and one write instead of a loop of writes that
 *   would keep this process from reading its subscriber meanwhile).
 * - `latency`: the publisher publishes at a fixed rate; each message carries
 *   its sequence number and send time (taken just before it is encoded and
 *   written), and each subscriber's arrival time for every message after the
 *   warm-up is a sample. A connection receives the channel's messages in
 *   order, so a subscriber's k-th frame is message k (its counts are checked
 *   against the messages sent: a missing one fails the run).
 *
 *   node bench/relay/load.ts <port> <channel> <subscribers> <body bytes> [lhttp|socketio]
 */
import { Buffer } from "node:buffer"
import { reply } from "../cluster/ipc.ts"
import { type Protocol, RawClient, textFrame } from "../fanout/client.ts"
import { publishMessage, subscribeMessage } from "../fanout/ipc.ts"
import type { LatencyResult, RelayBurst, RelayCommand, RelayReply } from "./ipc.ts"

const [port, channel, subscriberCount, bodyBytes] = process.argv.slice(2, 6).map((arg, i) =>
  i === 1 ? arg : Number(arg)
) as [
  number,
  string,
  number,
  number
]
const protocol: Protocol = process.argv[6] === "socketio" ? "socketio" : "lhttp"
// a burst or fixed-rate run that has not been delivered this long after its last send reports what arrived
const graceMs = 8_000

const body = (text: string) => text.padEnd(bodyBytes, ".")

const publisher = await RawClient.connect(port, protocol)
const subscribers: Array<RawClient> = []
while (subscribers.length < subscriberCount) {
  const size = Math.min(100, subscriberCount - subscribers.length)
  subscribers.push(...await Promise.all(Array.from({ length: size }, () => RawClient.connect(port, protocol))))
}
const subscribe = textFrame(subscribeMessage(channel, protocol))
for (const subscriber of subscribers) subscriber.send(subscribe)

const probe = textFrame(publishMessage(channel, body("probe"), protocol))
const minCount = () => subscribers.reduce((min, s) => Math.min(min, s.count), Infinity)
const stopListening = () => {
  for (const subscriber of subscribers) subscriber.onRead = undefined
}

const burst = (count: number): Promise<RelayBurst> => {
  // all the frames in one buffer, written at once: the write returns at once (the kernel takes what
  // fits, Node queues the rest), so this process goes on reading the subscriber while the server relays
  const frames: Array<Buffer> = []
  for (let n = 1; n <= count; n++) frames.push(textFrame(publishMessage(channel, body(String(n)), protocol)))
  const all = Buffer.concat(frames)
  for (const subscriber of subscribers) subscriber.count = 0
  return new Promise((resolve) => {
    let writtenAt = NaN
    let deliveredAt = NaN
    let loopMs = NaN
    let start = NaN
    const timer = setTimeout(() => finish(), graceMs)
    const finish = () => {
      clearTimeout(timer)
      stopListening()
      resolve({
        type: "burst",
        count,
        loopMs,
        writtenMs: writtenAt - start,
        deliveredMs: deliveredAt - start,
        received: minCount(),
        closed: subscribers.some((s) => s.closed)
      })
    }
    const check = () => {
      if (Number.isNaN(deliveredAt) && minCount() >= count) deliveredAt = performance.now()
      if (!Number.isNaN(deliveredAt) && !Number.isNaN(writtenAt)) finish()
      // a subscriber the server closed gets nothing more
      else if (subscribers.some((s) => s.closed)) finish()
    }
    for (const subscriber of subscribers) subscriber.onRead = check
    start = performance.now()
    publisher.socket.write(all, () => {
      writtenAt = performance.now()
      check()
    })
    loopMs = performance.now() - start
  })
}

/** The value below which `share` of the sorted samples lie. */
const percentile = (sorted: Float64Array, share: number) =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil(share * sorted.length) - 1)]!

const latency = (rate: number, warmupMs: number, measureMs: number): Promise<LatencyResult> => {
  const total = Math.round((rate * (warmupMs + measureMs)) / 1000)
  const warm = Math.round((rate * warmupMs) / 1000)
  const intervalMs = 1000 / rate
  const sentAt = new Float64Array(total)
  const samples = new Float64Array((total - warm) * subscribers.length)
  let taken = 0
  let sent = 0
  let done = 0
  let maxLagMs = 0
  let start = NaN
  let lastSentAt = NaN

  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined
    const finish = () => {
      clearTimeout(timer)
      stopListening()
      const sorted = samples.subarray(0, taken).sort()
      resolve({
        type: "latency",
        sent,
        sendingMs: lastSentAt - start,
        expected: samples.length,
        samples: taken,
        p50: percentile(sorted, 0.5),
        p90: percentile(sorted, 0.9),
        p99: percentile(sorted, 0.99),
        p999: percentile(sorted, 0.999),
        max: sorted.length === 0 ? NaN : sorted[sorted.length - 1]!,
        maxLagMs
      })
    }
    for (const subscriber of subscribers) {
      subscriber.count = 0
      let seen = 0
      subscriber.onRead = () => {
        const count = subscriber.count
        if (count === seen) return
        const at = performance.now()
        for (let k = Math.max(seen, warm); k < count && k < total; k++) samples[taken++] = (at - sentAt[k]!) * 1000
        if (seen < total && count >= total && ++done === subscribers.length) finish()
        seen = count
      }
    }
    // sends every message that is due, then sleeps until the next one is
    const tick = () => {
      const due = Math.min(total, Math.floor((performance.now() - start) / intervalMs) + 1)
      while (sent < due) {
        const at = performance.now()
        maxLagMs = Math.max(maxLagMs, at - (start + sent * intervalMs))
        sentAt[sent] = at
        publisher.send(textFrame(publishMessage(channel, body(`${sent} ${at.toFixed(3)}`), protocol)))
        lastSentAt = at
        sent++
      }
      timer = sent < total
        ? setTimeout(tick, Math.max(0, start + sent * intervalMs - performance.now()))
        : setTimeout(finish, graceMs)
    }
    start = performance.now()
    tick()
  })
}

process.on("disconnect", () => process.exit(0))
process.on("message", (command: RelayCommand) => {
  switch (command.type) {
    case "probe":
      publisher.send(probe)
      return reply<RelayReply>({ type: "probed", received: minCount() })
    case "burst":
      return void burst(command.count).then((result) => reply<RelayReply>(result))
    case "latency":
      return void latency(command.rate, command.warmupMs, command.measureMs).then((result) => reply<RelayReply>(result))
  }
})
reply<RelayReply>({ type: "ready" })
