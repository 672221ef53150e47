/**
 * Soak test (not in CI): the main job (`node src/main.ts`, the in-memory bus)
 * with thousands of connections across the three transports and a steady
 * publish rate for minutes. It reports lost deliveries (none are allowed on
 * the memory bus), the server's RSS over time, and the error frames and
 * closes it counted (from its own `/metrics`).
 *
 *   node scripts/soak.ts
 *
 * Settings (environment): SOAK_WS (2000 WebSocket subscribers), SOAK_SSE (500
 * SSE subscribers), SOAK_POLL (100 long-poll subscribers), SOAK_RATE (20
 * publishes a second), SOAK_SECONDS (120), SOAK_BODY (64 bytes).
 */
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { freePort } from "../bench/fanout/children.ts"
import { RawClient, textFrame } from "../bench/fanout/client.ts"
import { SseSubscriber } from "../bench/fanout/sse.ts"

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback)
const wsCount = env("SOAK_WS", 2000)
const sseCount = env("SOAK_SSE", 500)
const pollCount = env("SOAK_POLL", 100)
const rate = env("SOAK_RATE", 20)
const seconds = env("SOAK_SECONDS", 120)
const body = "x".repeat(env("SOAK_BODY", 64))
const channel = "soak"

const port = await freePort()
const http = `http://127.0.0.1:${port}`
const server = spawn(process.execPath, ["src/main.ts"], {
  env: { ...process.env, LHTTP_PORT: String(port), LHTTP_HOST: "127.0.0.1" },
  stdio: ["ignore", "pipe", "inherit"]
})
process.on("exit", () => server.kill("SIGKILL"))
await new Promise<void>((resolve) => {
  let output = ""
  server.stdout!.on("data", (chunk) => {
    output += chunk
    if (output.includes("listening")) resolve()
  })
})

const rss = () => {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${server.pid}/status`, "utf8"))
  return match === null ? 0 : Number(match[1]) / 1024
}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const started = Date.now()
const log = (line: string) => console.log(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`)

log(
  `server on ${http}, RSS ${
    rss().toFixed(0)
  } MiB; opening ${wsCount} WebSocket, ${sseCount} SSE, ${pollCount} long-poll subscribers`
)
const subscribe = textFrame(`LHTTP/1.0 soak\r\nsubscribe:${channel}\r\n\r\n`)
const ws: Array<RawClient> = []
while (ws.length < wsCount) {
  const batch = await Promise.all(
    Array.from({ length: Math.min(100, wsCount - ws.length) }, () => RawClient.connect(port))
  )
  for (const client of batch) client.send(subscribe)
  ws.push(...batch)
}
const sse: Array<SseSubscriber> = []
while (sse.length < sseCount) {
  sse.push(
    ...await Promise.all(
      Array.from({ length: Math.min(100, sseCount - sse.length) }, () => SseSubscriber.connect(port, channel))
    )
  )
}
// long-poll subscribers: each loops on its cursor, counting the published frames it gets
const polled = { frames: 0, failures: 0 }
const pollCounts = new Array<number>(pollCount).fill(0)
let polling = true
const pollers = Array.from({ length: pollCount }, async (_, i) => {
  const opened = await (await fetch(`${http}/poll?subscribe=${channel}`)).json() as {
    connection: string
    cursor: number
  }
  let cursor = opened.cursor
  while (polling) {
    const answer = await fetch(`${http}/poll?connection=${opened.connection}&cursor=${cursor}`)
    if (answer.status !== 200) {
      polled.failures++
      return
    }
    const batch = await answer.json() as { cursor: number; frames: Array<string> }
    cursor = batch.cursor
    const got = batch.frames.filter((frame) => frame.startsWith("LHTTP/1.0 soak\r\npublish:")).length
    polled.frames += got
    pollCounts[i]! += got
  }
})
// every subscription is in place once a probe reaches every subscriber
const publisher = await RawClient.connect(port)
let published = 0
const publish = (text: string) => {
  publisher.send(textFrame(`LHTTP/1.0 soak\r\npublish:${channel}\r\n\r\n${text}`))
  published++
}
const wsTotal = () => ws.reduce((sum, client) => sum + client.count, 0)
const sseTotal = () => sse.reduce((sum, client) => sum + client.count, 0)
while (
  ws.some((client) => client.count === 0) || sse.some((client) => client.count === 0) || pollCounts.some((n) => n === 0)
) {
  publish("probe")
  await sleep(200)
}
await sleep(500)
const base = { published, ws: wsTotal(), sse: sseTotal(), poll: polled.frames }
log(`all subscribed; RSS ${rss().toFixed(0)} MiB; publishing ${rate}/s for ${seconds} s`)

const samples: Array<{ readonly at: number; readonly rss: number }> = []
const interval = 1000 / rate
const end = Date.now() + seconds * 1000
let next = Date.now()
let lastReport = Date.now()
while (Date.now() < end) {
  publish(`${published} ${body}`)
  next += interval
  const wait = next - Date.now()
  if (wait > 0) await sleep(wait)
  if (Date.now() - lastReport >= 10_000) {
    lastReport = Date.now()
    samples.push({ at: Math.round((Date.now() - started) / 1000), rss: rss() })
    log(`published ${published - base.published}, RSS ${rss().toFixed(0)} MiB`)
  }
}
// let the last deliveries arrive
const expected = published - base.published
const settled = Date.now() + 10_000
while (Date.now() < settled) {
  if (
    wsTotal() - base.ws >= expected * wsCount && sseTotal() - base.sse >= expected * sseCount &&
    polled.frames - base.poll >= expected * pollCount
  ) break
  await sleep(200)
}
polling = false
const metrics = await (await fetch(`${http}/metrics`)).text()
const errorLines = metrics.split("\n").filter((line) =>
  /^lhttp_(error_frames_total|slow_consumer_closes_total|rate_limited_total)/.test(line)
)
const lost = {
  websocket: expected * wsCount - (wsTotal() - base.ws),
  sse: expected * sseCount - (sseTotal() - base.sse),
  poll: expected * pollCount - (polled.frames - base.poll)
}
const closed = {
  websocket: ws.filter((client) => client.closed).length,
  sse: sse.filter((client) => client.closed).length
}
console.log("\nsoak result")
console.table({
  published: expected,
  deliveries: expected * (wsCount + sseCount + pollCount),
  "lost (websocket)": lost.websocket,
  "lost (sse)": lost.sse,
  "lost (long-poll)": lost.poll,
  "closed by the server": closed.websocket + closed.sse + polled.failures,
  "RSS at start of publishing": `${samples[0]?.rss.toFixed(0) ?? "?"} MiB`,
  "RSS at the end": `${rss().toFixed(0)} MiB`
})
console.log("RSS over time (s, MiB):", samples.map((sample) => `${sample.at}:${sample.rss.toFixed(0)}`).join(" "))
console.log("server counters:\n" + (errorLines.join("\n") || "(no error frames)"))
server.kill("SIGTERM")
void Promise.allSettled(pollers)
process.exit(lost.websocket === 0 && lost.sse === 0 && lost.poll === 0 ? 0 : 1)
