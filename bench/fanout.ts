/**
 * Fan-out benchmark: deliveries per second when one publisher publishes to a
 * channel with 1,000 subscribers over loopback, for effect-lhttp beside two
 * raw `ws` broadcast servers measured in the same run: one written naively
 * (one `send` per subscriber) and one that corks and batches its writes; and
 * effect-lhttp again with Server-Sent Events subscribers ("lhttp SSE": 999
 * `GET /sse` streams, the publisher a WebSocket); and Socket.IO 4 with rooms
 * over its WebSocket transport ("socket.io": the same lean load clients
 * speaking its packets); and effect-lhttp with the channel keeping history in
 * memory ("lhttp history": each publish numbered by the store, then fanned
 * out), where half the subscribers ask for positions (`since:now` on their
 * subscribe frame: a `position` frame first, not counted, then each message
 * with its `channel:`, `offset:` and `epoch:` headers) and half are plain (the
 * published text, byte for byte); the publisher's own subscriber is plain.
 * And the main job ("main job", bench/fanout/servers/main.ts: src/main.ts as
 * `npm start` runs it, with its processors, sessions, presence and history on
 * every channel), its subscribers plain.
 *
 *   npm run bench:fanout            (or: node bench/fanout.ts)
 *
 * Each run starts a fresh server pinned to one core, a channel name of its
 * own, and the load pinned to the other core: lean raw-socket subscriber
 * processes (frame headers counted, payloads skipped) and a publisher that is
 * itself the 1,000th subscriber and keeps a window of messages in flight.
 * After a warm-up, deliveries are counted over a steady window, with the server's CPU
 * time and memory read from /proc. Rounds interleave the servers; each
 * server's median round is reported.
 *
 * Settings (environment): FANOUT_SUBSCRIBERS (1000, the publisher included),
 * FANOUT_ROUNDS (5), FANOUT_SECONDS measured (4), FANOUT_WARMUP_SECONDS
 * before it (3), FANOUT_WINDOW messages in flight (64), FANOUT_BODY bytes
 * (64), FANOUT_PROCESSES of subscribers (1), FANOUT_SERVER_CPU (0),
 * FANOUT_LOAD_CPU (1), FANOUT_SERVERS (the names to run, comma-separated; default all).
 */
import { fileURLToPath } from "node:url"
import { freePort, kill, Load, pinSelf, startServer } from "./fanout/children.ts"
import type { Stats } from "./fanout/ipc.ts"
import { measure, now, settle, sum, totalOf } from "./fanout/measure.ts"
import { coreTicks, cpuMs, memoryMiB } from "./fanout/proc.ts"
import { writeResult } from "./result.ts"

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback)
const rounds = env("FANOUT_ROUNDS", 5)
const measureMs = env("FANOUT_SECONDS", 4) * 1000
// past a fresh server's collection of its start-up heap (its first seconds: a few long scavenges and
// its first mark-compact), which cost the main job a sixth of its rate at 100 subscribers in a 1 s
// warm-up (docs/benchmarks.md, issue 23)
const warmupMs = env("FANOUT_WARMUP_SECONDS", 3) * 1000
const window = env("FANOUT_WINDOW", 64)
const bodyBytes = env("FANOUT_BODY", 64)
const processes = env("FANOUT_PROCESSES", 1)
const serverCpu = process.env.FANOUT_SERVER_CPU ?? "0"
const loadCpu = process.env.FANOUT_LOAD_CPU ?? "1"
const subscribers = env("FANOUT_SUBSCRIBERS", 1000)

const file = (path: string) => fileURLToPath(new URL(path, import.meta.url))
// "lhttp SSE": effect-lhttp with Server-Sent Events subscribers (the publisher stays a WebSocket)
const servers = [
  { name: "ws naive", file: file("./fanout/servers/ws-naive.ts"), transport: "websocket" },
  { name: "ws corked", file: file("./fanout/servers/ws-corked.ts"), transport: "websocket" },
  { name: "effect-lhttp", file: file("./fanout/servers/lhttp.ts"), transport: "websocket" },
  // the main job as `npm start` runs it: processors, sessions, presence, history on every channel
  { name: "main job", file: file("./fanout/servers/main.ts"), transport: "websocket" },
  { name: "lhttp SSE", file: file("./fanout/servers/lhttp.ts"), transport: "sse" },
  // the channel keeping history (in memory): every publish is numbered, then fanned out, rendered
  // twice (as published for the plain half, with its position for the half that asked since:now)
  {
    name: "lhttp history",
    file: file("./fanout/servers/lhttp.ts"),
    transport: "websocket",
    env: { LHTTP_BENCH_HISTORY: "fanout-" },
    positionedShare: 0.5
  },
  { name: "socket.io", file: file("./fanout/servers/socketio.ts"), transport: "socketio" }
] as const
// FANOUT_SERVERS (comma-separated names) runs some of them only
const only = process.env.FANOUT_SERVERS?.split(",").map((name) => name.trim())
const chosen = servers.filter((server) => only === undefined || only.includes(server.name))
const subscribersFile = file("./fanout/subscribers.ts")
const publisherFile = file("./fanout/publisher.ts")

/** What one run of one server measured. */
interface Run {
  readonly rate: number
  /** Server CPU time per delivery, µs. */
  readonly cpuPerDelivery: number
  /** CPU used over the window, as a share of one core. */
  readonly serverCpu: number
  readonly loadCpu: number
  /** The share of the window the server's core sat idle: near 0 when the server is the bottleneck. */
  readonly coreIdle: number
  /** RSS with the subscribers connected, and the peak, MiB. */
  readonly rssIdle: number
  readonly rssPeak: number
  /** Deliveries missing after the drain, and connections the server closed. */
  readonly lost: number
  readonly closed: number
}

// `total` subscribers spread over `parts` processes
const spread = (total: number, parts: number) =>
  Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0))

/** One run: a fresh server, its load, a unique channel; everything is killed at the end. */
const runOnce = async (server: typeof servers[number], round: number): Promise<Run> => {
  const port = await freePort()
  const channel = `fanout-${process.pid}-${round}-${server.name.replace(/\W/g, "")}`
  const child = await startServer(serverCpu, server.file, port, "env" in server ? { env: server.env } : undefined)
  const loads: Array<Load> = []
  try {
    // the subscribers asking for positions (a share of all of them; the publisher's own one is plain)
    const positioned = spread(
      Math.round(subscribers * ("positionedShare" in server ? server.positionedShare : 0)),
      processes
    )
    for (const [i, count] of spread(subscribers - 1, processes).entries()) {
      loads.push(
        await Load.start(loadCpu, subscribersFile, [
          String(port),
          channel,
          String(count),
          server.transport,
          "1",
          String(positioned[i])
        ])
      )
    }
    const publisher = await Load.start(loadCpu, publisherFile, [
      String(port),
      channel,
      String(bodyBytes),
      "-",
      server.transport === "socketio" ? "socketio" : "lhttp"
    ])
    loads.push(publisher)
    const stats = () => Promise.all(loads.map((load) => load.request<Stats>({ type: "stats" })))
    await settle(stats, publisher)
    await Promise.all(loads.map((load) => load.request({ type: "reset" })))
    const rssIdle = memoryMiB(child.pid!).rss

    const sample = async () => {
      const counts = await stats()
      return {
        at: now(),
        counts,
        server: cpuMs(child.pid!),
        load: sum(loads.map((load) => cpuMs(load.pid))),
        core: coreTicks(serverCpu)
      }
    }
    const { first, last, published, final, rate } = await measure({
      publisher,
      stats,
      sample,
      window,
      warmupMs,
      measureMs
    })
    const wallMs = last.at - first.at
    return {
      rate,
      cpuPerDelivery: ((last.server - first.server) * 1000) / (totalOf(last.counts) - totalOf(first.counts)),
      serverCpu: (last.server - first.server) / wallMs,
      loadCpu: (last.load - first.load) / wallMs,
      coreIdle: (last.core.idle - first.core.idle) / (last.core.total - first.core.total),
      rssIdle,
      rssPeak: memoryMiB(child.pid!).peak,
      lost: published * subscribers - totalOf(final),
      closed: sum(final.map((s) => s.closed))
    }
  } finally {
    for (const load of loads) kill(load.child)
    kill(child)
  }
}

const rate = (n: number) => n >= 1e6 ? `${(n / 1e6).toFixed(2)}M/s` : `${(n / 1e3).toFixed(0)}k/s`
const percent = (share: number) => `${(share * 100).toFixed(0)}%`
const describe = (run: Run) =>
  `${rate(run.rate)}, ${run.cpuPerDelivery.toFixed(2)} µs server CPU per delivery, server CPU ${
    percent(run.serverCpu)
  } (core idle ${percent(run.coreIdle)}), load CPU ${percent(run.loadCpu)}, RSS ${run.rssIdle.toFixed(0)}->${
    run.rssPeak.toFixed(0)
  } MiB` +
  (run.lost > 0 || run.closed > 0 ? `, LOST ${run.lost} deliveries, ${run.closed} connections closed` : "")

// the driver itself (and its threads) runs beside the load, off the server's core
pinSelf(loadCpu)

console.log(
  `fan-out benchmark, node ${process.version}: ${subscribers} subscribers (one is the publisher), ` +
    `${bodyBytes} B body, ${window} messages in flight, ${rounds} rounds of ${warmupMs / 1000} s warm-up + ` +
    `${measureMs / 1000} s measured; server on CPU ${serverCpu}, load on CPU ${loadCpu} ` +
    `(${processes} subscriber process${processes === 1 ? "" : "es"} + 1 publisher)\n`
)

const results = new Map<string, Array<Run>>(chosen.map((server) => [server.name, []]))
for (let round = 1; round <= rounds; round++) {
  for (const server of chosen) {
    const run = await runOnce(server, round)
    results.get(server.name)!.push(run)
    console.log(`round ${round} ${server.name.padEnd(12)} ${describe(run)}`)
  }
}

const median = (runs: ReadonlyArray<Run>) => [...runs].sort((a, b) => a.rate - b.rate)[(runs.length - 1) >> 1]!
const baseline = chosen[0]!
const naive = median(results.get(baseline.name)!)
console.log(`\nmedian round of each server; ratios against ${baseline.name} of the same run\n`)
console.table(Object.fromEntries(chosen.map((server) => {
  const run = median(results.get(server.name)!)
  return [server.name, {
    "deliveries/s": rate(run.rate),
    [`vs ${baseline.name}`]: `${(run.rate / naive.rate).toFixed(2)}x`,
    "server CPU/delivery": `${run.cpuPerDelivery.toFixed(2)} µs`,
    [`${baseline.name} CPU ÷ this`]: `${(naive.cpuPerDelivery / run.cpuPerDelivery).toFixed(2)}x`,
    "server CPU": percent(run.serverCpu),
    "core idle": percent(run.coreIdle),
    "load CPU": percent(run.loadCpu),
    "server RSS idle->peak": `${run.rssIdle.toFixed(0)}->${run.rssPeak.toFixed(0)} MiB`,
    lost: run.lost
  }]
})))

// the cost of history (issue 19's target: at least 0.85x), when both ran
if (results.has("lhttp history") && results.has("effect-lhttp")) {
  const kept = median(results.get("lhttp history")!)
  const plain = median(results.get("effect-lhttp")!)
  console.log(
    `\nlhttp history (half the subscribers positioned) ÷ effect-lhttp (a plain channel): deliveries/s ${
      (kept.rate / plain.rate).toFixed(2)
    }x, server CPU per delivery ${(plain.cpuPerDelivery / kept.cpuPerDelivery).toFixed(2)}x (plain ÷ history)\n`
  )
}

writeResult({
  subscribers,
  bodyBytes,
  window,
  rounds,
  measureMs,
  // each server's median round (by deliveries/s)
  servers: Object.fromEntries(chosen.map((server) => [server.name, median(results.get(server.name)!)]))
})

console.log(
  "server CPU is the server process's CPU time (softirq work done on its behalf included) per second of the\n" +
    "window; below 100% with its core never idle, other processes had the rest of the core, so the rate\n" +
    "suffers and the CPU per delivery is the steadier figure.\n"
)

const all = Array.from(results.values()).flat()
if (all.some((run) => run.loadCpu > run.serverCpu)) {
  console.log("WARNING: in some run the load used more CPU than the server: the load may be the bottleneck")
}
if (all.some((run) => run.lost > 0 || run.closed > 0)) {
  console.log("WARNING: some deliveries were lost or connections closed (see the rounds above)")
}
