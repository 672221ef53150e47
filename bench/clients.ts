/**
 * 10,000 publishes 1 to 1 with each server's own client library instead of
 * the lean load client: a cross-check of bench/relay.ts's burst. The
 * publisher sends one message per call (`ws` `send`, `socket.io-client`
 * `emit`), as an application would, rather than one write of all the frames;
 * the subscriber is the same library. Servers: effect-lhttp (the lean server
 * and the main job, bench/fanout/servers/main.ts) and ws corked with `ws`
 * clients, Socket.IO 4 with `socket.io-client` (WebSocket transport).
 *
 *   node bench/clients.ts            (npm run bench runs it)
 *
 * Each run starts a fresh server pinned to one core; the clients run in this
 * process on the other core. Per run: the first burst on the fresh server
 * ("cold"), one more to warm up, then the median of three. Rounds alternate
 * the servers; each server's median round is reported.
 *
 * Settings (environment): CLIENTS_ROUNDS (3), CLIENTS_BURST (10000),
 * CLIENTS_BODY bytes (64), CLIENTS_SERVER_CPU (0), CLIENTS_LOAD_CPU (1).
 */
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { io, type Socket } from "socket.io-client"
import WebSocket from "ws"
import { freePort, kill, pinSelf, startServer, within } from "./fanout/children.ts"
import { writeResult } from "./result.ts"

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback)
const rounds = env("CLIENTS_ROUNDS", 3)
const count = env("CLIENTS_BURST", 10_000)
const body = "x".repeat(env("CLIENTS_BODY", 64))
const serverCpu = process.env.CLIENTS_SERVER_CPU ?? "0"
const loadCpu = process.env.CLIENTS_LOAD_CPU ?? "1"
const measured = 3

/** A publisher and a subscriber connected through one server with its own client library. */
interface Pair {
  /** Sends one publish. */
  readonly publish: (text: string) => void
  /** Called on each delivery to the subscriber. */
  onDelivery: () => void
  readonly close: () => void
}

const opened = (socket: WebSocket) =>
  new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve())
    socket.once("error", reject)
  })

// LHTTP over `ws` clients (effect-lhttp and the corked ws server read the same headers); the command `bench`
// names no processor of the main job's, so its headers go to the built-ins there too
const lhttpPair = async (port: number, channel: string): Promise<Pair> => {
  const subscriber = new WebSocket(`ws://127.0.0.1:${port}/`)
  const publisher = new WebSocket(`ws://127.0.0.1:${port}/`)
  await Promise.all([opened(subscriber), opened(publisher)])
  const pair: Pair = {
    publish: (text) => publisher.send(`LHTTP/1.0 bench\r\npublish:${channel}\r\n\r\n${text}`),
    onDelivery: () => {},
    close: () => {
      subscriber.terminate()
      publisher.terminate()
    }
  }
  subscriber.on("message", () => pair.onDelivery())
  subscriber.send(`LHTTP/1.0 bench\r\nsubscribe:${channel}\r\n\r\n`)
  return pair
}

const connected = (socket: Socket) =>
  new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve())
    socket.once("connect_error", reject)
  })

// Socket.IO rooms over socket.io-client, WebSocket transport only
const socketIoPair = async (port: number, channel: string): Promise<Pair> => {
  const options = { transports: ["websocket"], reconnection: false }
  const subscriber = io(`http://127.0.0.1:${port}`, options)
  const publisher = io(`http://127.0.0.1:${port}`, options)
  await Promise.all([connected(subscriber), connected(publisher)])
  const pair: Pair = {
    publish: (text) => void publisher.emit("publish", channel, text),
    onDelivery: () => {},
    close: () => {
      subscriber.close()
      publisher.close()
    }
  }
  subscriber.on("message", () => pair.onDelivery())
  subscriber.emit("join", channel)
  return pair
}

const file = (path: string) => fileURLToPath(new URL(path, import.meta.url))
const servers = [
  { name: "ws corked", file: file("./fanout/servers/ws-corked.ts"), pair: lhttpPair },
  { name: "effect-lhttp", file: file("./fanout/servers/lhttp.ts"), pair: lhttpPair },
  { name: "main job", file: file("./fanout/servers/main.ts"), pair: lhttpPair },
  { name: "socket.io", file: file("./fanout/servers/socketio.ts"), pair: socketIoPair }
] as const

/** Resolves once `n` deliveries arrived (20 s at most). */
const deliveries = (pair: Pair, n: number) =>
  within(
    20_000,
    `${n} deliveries`,
    new Promise<void>((resolve) => {
      let received = 0
      pair.onDelivery = () => {
        if (++received === n) resolve()
      }
    })
  )

/** What one run measured: the cold burst and the median warm one, ms to the last delivery. */
interface Run {
  readonly coldMs: number
  readonly deliveredMs: number
}

const runOnce = async (server: typeof servers[number], round: number): Promise<Run> => {
  const port = await freePort()
  const child = await startServer(serverCpu, server.file, port)
  let pair: Pair | undefined
  try {
    pair = await server.pair(port, `clients-${process.pid}-${round}`)
    // a probe until the subscription is in place
    for (;;) {
      const probe = deliveries(pair, 1)
      pair.publish("probe")
      const arrived = await Promise.race([probe.then(() => true), sleep(100).then(() => false)])
      if (arrived) break
    }
    await sleep(200)
    const burst = async () => {
      const done = deliveries(pair!, count)
      const started = performance.now()
      for (let i = 0; i < count; i++) pair!.publish(body)
      await done
      const ms = performance.now() - started
      await sleep(200)
      return ms
    }
    const coldMs = await burst()
    await burst()
    const warm: Array<number> = []
    for (let i = 0; i < measured; i++) warm.push(await burst())
    return { coldMs, deliveredMs: warm.sort((a, b) => a - b)[1]! }
  } finally {
    pair?.close()
    kill(child)
  }
}

pinSelf(loadCpu)
console.log(
  `library clients benchmark, node ${process.version}: ${count} publishes 1 to 1 (${body.length} B body), ` +
    `one send or emit each, ${rounds} rounds; server on CPU ${serverCpu}, clients on CPU ${loadCpu}\n`
)
const results = new Map<string, Array<Run>>(servers.map((server) => [server.name, []]))
for (let round = 1; round <= rounds; round++) {
  const order = round % 2 === 1 ? servers : [...servers].reverse()
  for (const server of order) {
    const run = await runOnce(server, round)
    results.get(server.name)!.push(run)
    console.log(
      `round ${round} ${server.name.padEnd(12)} cold ${run.coldMs.toFixed(1)} ms, warm ${run.deliveredMs.toFixed(1)} ms`
    )
  }
}
const median = (runs: ReadonlyArray<number>) => [...runs].sort((a, b) => a - b)[(runs.length - 1) >> 1]!
const medians = Object.fromEntries(servers.map((server) => {
  const runs = results.get(server.name)!
  return [server.name, {
    coldMs: median(runs.map((r) => r.coldMs)),
    deliveredMs: median(runs.map((r) => r.deliveredMs))
  }]
}))
const lhttp = medians["effect-lhttp"]!
console.log(`\nmedian rounds; ratios are the other's time ÷ effect-lhttp's (above 1: effect-lhttp is faster)\n`)
console.table(Object.fromEntries(servers.map((server) => {
  const run = medians[server.name]!
  return [server.name, {
    "cold server": `${run.coldMs.toFixed(1)} ms`,
    "last delivered": `${run.deliveredMs.toFixed(1)} ms`,
    "delivered/s": `${(count / run.deliveredMs).toFixed(0)}k/s`,
    "cold ÷ lhttp": `${(run.coldMs / lhttp.coldMs).toFixed(2)}x`,
    "warm ÷ lhttp": `${(run.deliveredMs / lhttp.deliveredMs).toFixed(2)}x`
  }]
})))
writeResult({ count, bodyBytes: body.length, rounds, servers: medians })
process.exit(0)
