/**
 * Relay benchmark: effect-lhttp (the lean server, bench/fanout/servers/lhttp.ts)
 * and the main job (src/main.ts as `npm start` runs it:
 * bench/fanout/servers/main.ts) beside the raw `ws` servers of the fan-out
 * benchmark (naive and corked, bench/fanout/servers/) and Socket.IO, all but
 * Socket.IO speaking the same `subscribe:` / `publish:` LHTTP headers,
 * measured in one run:
 *
 * 1. 10,000 publishes 1 to 1: one publisher connection writes 10,000 publish
 *    frames (64 B body) all at once (one write), one subscriber connection on
 *    the channel counts them; the time from the write to the last delivery.
 *    Each run warms up with two bursts (the first, on a cold server, is shown
 *    apart) and takes the median of the next three. A burst after which the
 *    server closed the subscriber (a slow-consumer bound) ends the run as lost.
 * 2. RSS per idle subscribed connection: the server's RSS (from /proc) with
 *    one warm connection, then with N more idle connections subscribed to a
 *    shared channel, read after a full GC (the server is started with
 *    --expose-gc and bench/relay/gc-hook.ts preloaded; SIGUSR2 collects); the
 *    first at its floor, once a last-resort GC gave back the pages the
 *    server's start-up filled (bench/relay/memory.ts).
 * 3. Publish-to-deliver latency at a fixed rate: 100 subscribers, a publisher
 *    at 500 publishes/s (50,000 deliveries/s); each message's send time and
 *    its arrival at each subscriber are taken in the same process, one clock.
 *    The server runs with V8's GC trace on: its pauses in the measured window
 *    are reported beside the percentiles.
 *
 *   npm run bench:relay            (or: node bench/relay.ts)
 *
 * Every measurement starts a fresh server pinned to one core and uses a
 * channel of its own; the load and this driver run on the other core. Rounds
 * interleave the servers; each server's median round is reported, with
 * ratios of effect-lhttp and of the main job against the other servers of the
 * same run.
 *
 * Settings (environment): RELAY_ROUNDS for the burst and the latency (5),
 * RELAY_BURST publishes (10000), RELAY_BODY bytes (64), RELAY_CONNECTIONS idle
 * connections (10000), RELAY_MEMORY_ROUNDS (1), RELAY_IDLE_PROCESSES holding
 * them (2), RELAY_SOURCE_ADDRESSES they come from (4), RELAY_SUBSCRIBERS for the latency (100), RELAY_RATE publishes/s
 * (500), RELAY_SECONDS measured (3), RELAY_WARMUP_SECONDS before it (3), RELAY_SERVER_CPU
 * (0), RELAY_LOAD_CPU (1), RELAY_DEADLINE seconds for the whole run (600).
 */
import type { ChildProcess } from "node:child_process"
import { readFileSync } from "node:fs"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import {
  freePort,
  giveUpAfter,
  kill,
  Load,
  nextLoopbackNetwork,
  pinSelf,
  startServer,
  within
} from "./fanout/children.ts"
import type { Stats } from "./fanout/ipc.ts"
import { now, settle } from "./fanout/measure.ts"
import { cpuMs } from "./fanout/proc.ts"
import type { LatencyResult, RelayBurst, RelayCommand, RelayReply } from "./relay/ipc.ts"
import { gcHookEnv, memoryAfterGc, memoryFloor, spread } from "./relay/memory.ts"
import { writeResult } from "./result.ts"

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback)
const rounds = env("RELAY_ROUNDS", 5)
const burstCount = env("RELAY_BURST", 10_000)
const bodyBytes = env("RELAY_BODY", 64)
const connections = env("RELAY_CONNECTIONS", 10_000)
const memoryRounds = env("RELAY_MEMORY_ROUNDS", 1)
const idleProcesses = env("RELAY_IDLE_PROCESSES", 2)
// loopback source addresses the idle connections come from in turn (127.0.0.1, .2, ...)
const sourceAddresses = env("RELAY_SOURCE_ADDRESSES", 4)
const latencySubscribers = env("RELAY_SUBSCRIBERS", 100)
const publishRate = env("RELAY_RATE", 500)
// long enough for a fresh server's start-up heap to be collected (its first mark-compact and the
// scavenges that promote what start-up built): the steady state is measured, the cold start is the
// first burst's row (docs/benchmarks.md, "where the tail comes from")
const latencyWarmupMs = env("RELAY_WARMUP_SECONDS", 3) * 1000
const latencyMs = env("RELAY_SECONDS", 3) * 1000
const serverCpu = process.env.RELAY_SERVER_CPU ?? "0"
const loadCpu = process.env.RELAY_LOAD_CPU ?? "1"
const deadlineMs = env("RELAY_DEADLINE", 600) * 1000
// bursts per run: to warm up (the first one is the cold server's), then measured (the run's median counts)
const burstWarmups = 2
const burstsMeasured = 3

if (connections + 100 > 19_000) {
  console.error(
    `RELAY_CONNECTIONS=${connections}: the server holds one descriptor per connection; keep it under 18,900`
  )
  process.exit(2)
}

giveUpAfter("relay benchmark", deadlineMs)

const file = (path: string) => fileURLToPath(new URL(path, import.meta.url))
const servers = [
  { name: "ws naive", file: file("./fanout/servers/ws-naive.ts") },
  { name: "ws corked", file: file("./fanout/servers/ws-corked.ts") },
  { name: "effect-lhttp", file: file("./fanout/servers/lhttp.ts") },
  // the main job as `npm start` runs it: processors, sessions, presence, history on every channel
  { name: "main job", file: file("./fanout/servers/main.ts") },
  { name: "socket.io", file: file("./fanout/servers/socketio.ts"), protocol: "socketio" }
] as const
type Server = typeof servers[number]
// what the load speaks to a server: LHTTP, or Socket.IO's packets
const protocolOf = (server: Server): "lhttp" | "socketio" => "protocol" in server ? server.protocol : "lhttp"
const loadFile = file("./relay/load.ts")
const traceGcFile = file("./relay/trace-gc.ts")
const subscribersFile = file("./fanout/subscribers.ts")
const publisherFile = file("./fanout/publisher.ts")

// a channel per run, of the same length for every server (so are the frames)
const channelOf = (measure: string, server: Server, round: number) =>
  `relay-${measure}-${process.pid}-${round}-${servers.indexOf(server)}`

/** The median element (the lower one of an even count) by a key. */
const medianBy = <A>(runs: ReadonlyArray<A>, key: (run: A) => number): A =>
  [...runs].sort((a, b) => key(a) - key(b))[(runs.length - 1) >> 1]!

/** IPC carries JSON, where NaN (a time never reached) becomes null: back to NaN. */
const revive = <R extends object>(reply: R): R =>
  Object.fromEntries(Object.entries(reply).map(([key, value]) => [key, value === null ? NaN : value])) as R

/** Starts a relay load process and probes until each of its subscribers has received a message. */
const startLoad = async (port: number, channel: string, subscribers: number, protocol: "lhttp" | "socketio") => {
  const load = await Load.start<RelayCommand, RelayReply>(loadCpu, loadFile, [
    String(port),
    channel,
    String(subscribers),
    String(bodyBytes),
    protocol
  ])
  try {
    await within(
      15_000,
      "every subscriber to receive a probe",
      (async () => {
        while ((await load.request<{ type: "probed"; received: number }>({ type: "probe" })).received < 1) {
          await sleep(50)
        }
      })()
    )
    // let the probes in flight land
    await sleep(300)
    return load
  } catch (error) {
    kill(load.child)
    throw error
  }
}

// ---------------------------------------------------------------------------
// 1. 10,000 publishes, one publisher to one subscriber

interface Burst extends RelayBurst {
  /** The first burst on the fresh server: last delivered, ms (NaN if it lost some). */
  readonly coldMs: number
  /** Server CPU time per measured burst, ms (10 ms ticks). */
  readonly serverCpuMs: number
}

/** A burst that lost messages sorts last. */
const deliveredKey = (run: RelayBurst) => run.received === run.count ? run.deliveredMs : Infinity

const burst = async (server: Server, round: number): Promise<Burst> => {
  const port = await freePort()
  const child = await startServer(serverCpu, server.file, port)
  let load: Load<RelayCommand, RelayReply> | undefined
  try {
    load = await startLoad(port, channelOf("burst", server, round), 1, protocolOf(server))
    const once = async () => {
      const result = revive(await load!.request<RelayBurst>({ type: "burst", count: burstCount }, 20_000))
      await sleep(200)
      return result
    }
    // a burst after which the server closed the subscriber ends the run: it is the run's result
    const cold = await once()
    if (cold.closed) return { ...cold, coldMs: cold.deliveredMs, serverCpuMs: NaN }
    for (let i = 1; i < burstWarmups; i++) {
      const warm = await once()
      if (warm.closed) return { ...warm, coldMs: cold.deliveredMs, serverCpuMs: NaN }
    }
    const cpuBefore = cpuMs(child.pid!)
    const results: Array<RelayBurst> = []
    for (let i = 0; i < burstsMeasured && results.every((run) => !run.closed); i++) results.push(await once())
    const coldMs = cold.deliveredMs
    if (results.some((run) => run.closed)) return { ...results.at(-1)!, coldMs, serverCpuMs: NaN }
    return {
      ...medianBy(results, deliveredKey),
      coldMs,
      serverCpuMs: (cpuMs(child.pid!) - cpuBefore) / burstsMeasured
    }
  } finally {
    if (load !== undefined) kill(load.child)
    kill(child)
  }
}

// ---------------------------------------------------------------------------
// 2. RSS per idle subscribed connection

interface Memory {
  /** With the publisher's one warm connection, then with every connection, MiB. */
  readonly rssBefore: number
  readonly rssAfter: number
  readonly heapBefore: number
  readonly heapAfter: number
  /** Per idle connection, KiB. */
  readonly rssPerConnection: number
  readonly heapPerConnection: number
  /** The same after V8's "last resort" collection gave back the pages its heap kept, KiB. */
  readonly rssReducedPerConnection: number
  readonly heapReducedPerConnection: number
  /** How long the load took to open and subscribe the connections, s. */
  readonly connectSeconds: number
  /** Connections that did not receive the probes, or that the server closed. */
  readonly missing: number
  readonly closed: number
}

const memory = async (server: Server, round: number): Promise<Memory> => {
  const port = await freePort()
  const channel = channelOf("memory", server, round)
  const child = await startServer(serverCpu, server.file, port, { env: gcHookEnv() })
  // connections from loopback addresses of their own (127.0.<n>.x): the source ports the measurement
  // before left in TIME_WAIT (10,000 of them) do not slow these connects down
  const network = nextLoopbackNetwork()
  const loads: Array<Load> = []
  try {
    // one connection first, through the whole path (upgrade, subscribe, publish, deliver), so that
    // what the first connection loads or compiles once is not charged to the idle ones
    const publisher = await Load.start(loadCpu, publisherFile, [
      String(port),
      channel,
      String(bodyBytes),
      "-",
      protocolOf(server)
    ])
    loads.push(publisher)
    const stats = () => Promise.all(loads.map((load) => load.request<Stats>({ type: "stats" }, 20_000)))
    await settle(stats, publisher)
    const before = await memoryFloor(child)
    const started = now()
    for (const count of spread(connections, idleProcesses)) {
      loads.push(
        await Load.start(loadCpu, subscribersFile, [
          String(port),
          channel,
          String(count),
          protocolOf(server) === "socketio" ? "socketio" : "websocket",
          String(sourceAddresses),
          "0",
          "-",
          String(network)
        ])
      )
    }
    const connectSeconds = (now() - started) / 1000
    await settle(stats, publisher)
    const final = await stats()
    const after = await memoryAfterGc(child)
    return {
      rssBefore: before.rss,
      rssAfter: after.rss,
      heapBefore: before.heap,
      heapAfter: after.heap,
      rssPerConnection: ((after.rss - before.rss) * 1024) / connections,
      heapPerConnection: ((after.heap - before.heap) * 1024) / connections,
      rssReducedPerConnection: ((after.rssReduced - before.rssReduced) * 1024) / connections,
      heapReducedPerConnection: ((after.heapReduced - before.heapReduced) * 1024) / connections,
      connectSeconds,
      missing: final.reduce((n, s) => n + (s.min >= 1 ? 0 : 1), 0),
      closed: final.reduce((n, s) => n + s.closed, 0)
    }
  } finally {
    for (const load of loads) kill(load.child)
    kill(child)
  }
}

// ---------------------------------------------------------------------------
// 3. publish-to-deliver latency at a fixed rate

/** The server's GC pauses in the measured window, from its --trace-gc lines. */
interface GcPauses {
  readonly scavenges: number
  readonly scavengeMs: number
  readonly maxScavengeMs: number
  /** Mark-compact collections: their pause (the last, atomic step; the marking before is incremental). */
  readonly markCompacts: number
  readonly maxMarkCompactMs: number
}

interface Latency extends LatencyResult {
  /** CPU over the sending window, as a share of one core. */
  readonly serverCpu: number
  readonly loadCpu: number
  readonly gc: GcPauses
}

// "[pid:0x..]   1234 ms: Scavenge 68.0 (115.9) -> 42.5 (115.9) MB, pooled: 0 MB, 1.29 / 0.00 ms ..."
const gcLine = /: (Scavenge|Mark-Compact|Minor Mark-Sweep)\b.*?, ([\d.]+) \/ [\d.]+ ms/

/** Collects a server's GC pauses as its --trace-gc lines arrive, between `from` and `to` (this clock). */
const traceGc = (child: ChildProcess) => {
  const pauses: Array<{ readonly at: number; readonly kind: string; readonly ms: number }> = []
  let rest = ""
  child.stdout!.on("data", (chunk: string) => {
    const lines = (rest + chunk).split("\n")
    rest = lines.pop()!
    const at = now()
    for (const line of lines) {
      const match = gcLine.exec(line)
      if (match !== null) pauses.push({ at, kind: match[1]!, ms: Number(match[2]) })
    }
  })
  return (from: number, to: number): GcPauses => {
    const inWindow = pauses.filter((p) => p.at >= from && p.at <= to)
    const minor = inWindow.filter((p) => p.kind !== "Mark-Compact").map((p) => p.ms)
    const major = inWindow.filter((p) => p.kind === "Mark-Compact").map((p) => p.ms)
    return {
      scavenges: minor.length,
      scavengeMs: minor.reduce((a, b) => a + b, 0),
      maxScavengeMs: Math.max(0, ...minor),
      markCompacts: major.length,
      maxMarkCompactMs: Math.max(0, ...major)
    }
  }
}

const latency = async (server: Server, round: number): Promise<Latency> => {
  const port = await freePort()
  const child = await startServer(serverCpu, server.file, port, {
    env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --import ${traceGcFile}`.trim() }
  })
  const gcIn = traceGc(child)
  let load: Load<RelayCommand, RelayReply> | undefined
  try {
    load = await startLoad(port, channelOf("latency", server, round), latencySubscribers, protocolOf(server))
    const started = now()
    const serverBefore = cpuMs(child.pid!)
    const loadBefore = cpuMs(load.pid)
    const result = revive(
      await load.request<LatencyResult>(
        { type: "latency", rate: publishRate, warmupMs: latencyWarmupMs, measureMs: latencyMs },
        latencyWarmupMs + latencyMs + 15_000
      )
    )
    const wallMs = now() - started
    return {
      ...result,
      serverCpu: (cpuMs(child.pid!) - serverBefore) / wallMs,
      loadCpu: (cpuMs(load.pid) - loadBefore) / wallMs,
      gc: gcIn(started + latencyWarmupMs, started + latencyWarmupMs + latencyMs)
    }
  } finally {
    if (load !== undefined) kill(load.child)
    kill(child)
  }
}

// ---------------------------------------------------------------------------
// report

const ms = (n: number) => Number.isNaN(n) ? "-" : `${n.toFixed(1)} ms`
const us = (n: number) => Number.isNaN(n) ? "-" : `${n.toFixed(0)} µs`
const kib = (n: number) => `${n.toFixed(1)} KiB`
const mib = (n: number) => `${n.toFixed(0)} MiB`
const times = (n: number) => Number.isNaN(n) ? "-" : `${n.toFixed(2)}x`
const percent = (share: number) => `${(share * 100).toFixed(0)}%`
const rate = (n: number) => n >= 1e6 ? `${(n / 1e6).toFixed(2)}M/s` : `${(n / 1e3).toFixed(0)}k/s`

const describeBurst = (run: Burst) =>
  `written ${ms(run.writtenMs)}, delivered ${ms(run.deliveredMs)} (${rate(run.count / (run.deliveredMs / 1000))}), ` +
  `cold ${ms(run.coldMs)}, server CPU ${Number.isNaN(run.serverCpuMs) ? "-" : run.serverCpuMs.toFixed(0)} ms` +
  (run.received !== run.count ? `, LOST ${run.count - run.received}` : "") +
  (run.closed ? " (the server CLOSED the subscriber)" : "")
const describeMemory = (run: Memory) =>
  `RSS ${mib(run.rssBefore)} -> ${mib(run.rssAfter)}: ${kib(run.rssPerConnection)} per connection, heap ${
    mib(run.heapBefore)
  } -> ${mib(run.heapAfter)}: ${kib(run.heapPerConnection)}; after a last-resort GC ${
    kib(run.rssReducedPerConnection)
  } RSS, ${kib(run.heapReducedPerConnection)} heap; connected in ${run.connectSeconds.toFixed(1)} s` +
  (run.missing > 0 || run.closed > 0 ? `, ${run.missing} processes MISSING probes, ${run.closed} CLOSED` : "")
const describeLatency = (run: Latency) =>
  `p50 ${us(run.p50)}, p90 ${us(run.p90)}, p99 ${us(run.p99)}, p99.9 ${us(run.p999)}, max ${us(run.max)}; ` +
  `${((run.sent - 1) * 1000 / run.sendingMs).toFixed(0)} publishes/s sent (publisher late by ${
    run.maxLagMs.toFixed(1)
  } ms at most), ` +
  `server CPU ${percent(run.serverCpu)}, load CPU ${percent(run.loadCpu)}; GC in the window: ` +
  `${run.gc.scavenges} scavenges (${run.gc.scavengeMs.toFixed(1)} ms, at most ${run.gc.maxScavengeMs.toFixed(2)}), ` +
  `${run.gc.markCompacts} mark-compacts (at most ${run.gc.maxMarkCompactMs.toFixed(2)} ms)` +
  (run.samples !== run.expected ? `, ${run.expected - run.samples} deliveries MISSING` : "")

// the driver itself (and its threads) runs beside the load, off the server's core
pinSelf(loadCpu)

console.log(
  `relay benchmark, node ${process.version}: ${servers.map((s) => s.name).join(", ")}; a fresh server per ` +
    `measurement; ` +
    `server on CPU ${serverCpu}, load on CPU ${loadCpu}\n` +
    `burst:   ${burstCount} publishes (${bodyBytes} B body) from one connection to one subscriber, ${rounds} rounds; ` +
    `per run ${burstWarmups} warm-up bursts (the first is "cold"), then the median of ${burstsMeasured}\n` +
    `memory:  ${connections} idle connections subscribed to one channel (${idleProcesses} load processes, ${sourceAddresses} source addresses), ` +
    `${memoryRounds} round${
      memoryRounds === 1 ? "" : "s"
    }; RSS after a full GC, with one warm connection and with all\n` +
    `latency: ${latencySubscribers} subscribers, ${publishRate} publishes/s (${
      rate(publishRate * latencySubscribers)
    } deliveries), ${latencyWarmupMs / 1000} s warm-up + ${latencyMs / 1000} s measured, ${rounds} rounds\n`
)

/** The 1, 5 and 15 minute load averages: other work on the machine shows there. */
const loadAverage = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")
const startedAt = new Date()
const loadAtStart = loadAverage()
const bursts = new Map<string, Array<Burst>>(servers.map((server) => [server.name, []]))
const memories = new Map<string, Array<Memory>>(servers.map((server) => [server.name, []]))
const latencies = new Map<string, Array<Latency>>(servers.map((server) => [server.name, []]))
for (let round = 1; round <= Math.max(rounds, memoryRounds); round++) {
  // the order of the servers turns from round to round
  const order = servers.map((_, i) => servers[(i + round - 1) % servers.length]!)
  if (round <= rounds) {
    for (const server of order) {
      const run = await burst(server, round)
      bursts.get(server.name)!.push(run)
      console.log(`round ${round} burst   ${server.name.padEnd(12)} ${describeBurst(run)}`)
    }
    for (const server of order) {
      const run = await latency(server, round)
      latencies.get(server.name)!.push(run)
      console.log(`round ${round} latency ${server.name.padEnd(12)} ${describeLatency(run)}`)
    }
  }
  if (round <= memoryRounds) {
    for (const server of order) {
      const run = await memory(server, round)
      memories.get(server.name)!.push(run)
      console.log(`round ${round} memory  ${server.name.padEnd(12)} ${describeMemory(run)}`)
    }
  }
}

const finishedAt = new Date()
const ofEach = <A>(runs: Map<string, Array<A>>, key: (run: A) => number) =>
  runs.get(servers[0].name)!.length === 0
    ? undefined
    : Object.fromEntries(servers.map((s) => [s.name, medianBy(runs.get(s.name)!, key)]))
const burstOf = ofEach(bursts, deliveredKey)
const memoryOf = ofEach(memories, (run) => run.rssPerConnection)
const latencyOf = ofEach(latencies, (run) => run.p99)
const p50Of = ofEach(latencies, (run) => run.p50)

if (burstOf !== undefined) {
  console.log(`\n${burstCount} publishes 1 to 1, median round of each server (times from the first write)\n`)
  console.table(Object.fromEntries(servers.map((server) => {
    const run = burstOf[server.name]!
    return [server.name, {
      "cold server": ms(run.coldMs),
      "all written": ms(run.writtenMs),
      "last delivered": ms(run.deliveredMs),
      "delivered/s": run.received === run.count ? rate(run.count / (run.deliveredMs / 1000)) : "-",
      "server CPU": Number.isNaN(run.serverCpuMs) ? "-" : `${run.serverCpuMs.toFixed(0)} ms`,
      lost: run.count - run.received,
      "subscriber closed": run.closed ? "YES" : "no"
    }]
  })))
}

if (memoryOf !== undefined) {
  console.log(`\nRSS per idle subscribed connection (${connections} connections), median round\n`)
  console.table(Object.fromEntries(servers.map((server) => {
    const run = memoryOf[server.name]!
    return [server.name, {
      "RSS before->after": `${mib(run.rssBefore)}->${mib(run.rssAfter)}`,
      "RSS/connection": kib(run.rssPerConnection),
      "heap before->after": `${mib(run.heapBefore)}->${mib(run.heapAfter)}`,
      "heap/connection": kib(run.heapPerConnection),
      "RSS/connection, last-resort GC": kib(run.rssReducedPerConnection),
      "heap/connection, last-resort GC": kib(run.heapReducedPerConnection),
      "connect time": `${run.connectSeconds.toFixed(1)} s`,
      closed: run.closed
    }]
  })))
}

if (latencyOf !== undefined && p50Of !== undefined) {
  console.log(
    `\npublish to deliver at ${publishRate} publishes/s to ${latencySubscribers} subscribers, ` +
      `median round by p99 (p50: its own median round)\n`
  )
  console.table(Object.fromEntries(servers.map((server) => {
    const run = latencyOf[server.name]!
    return [server.name, {
      p50: us(p50Of[server.name]!.p50),
      p90: us(run.p90),
      p99: us(run.p99),
      "p99.9": us(run.p999),
      max: us(run.max),
      "server CPU": percent(run.serverCpu),
      "load CPU": percent(run.loadCpu),
      "publisher late": `${run.maxLagMs.toFixed(1)} ms`,
      missing: run.expected - run.samples,
      "GC: scavenges (ms, max)": `${run.gc.scavenges} (${run.gc.scavengeMs.toFixed(1)}, ${
        run.gc.maxScavengeMs.toFixed(2)
      })`,
      "mark-compacts (max)": `${run.gc.markCompacts} (${run.gc.maxMarkCompactMs.toFixed(2)})`
    }]
  })))
}

writeResult({
  burst: { count: burstCount, bodyBytes, rounds, servers: burstOf },
  memory: { connections, sourceAddresses, rounds: memoryRounds, servers: memoryOf },
  latency: {
    subscribers: latencySubscribers,
    rate: publishRate,
    measureMs: latencyMs,
    rounds,
    // each server's median round by p99, and its median p50 (of its own median round by p50)
    servers: latencyOf === undefined || p50Of === undefined
      ? undefined
      : Object.fromEntries(servers.map((s) => [s.name, { ...latencyOf[s.name]!, p50: p50Of[s.name]!.p50 }]))
  }
})

// effect-lhttp (the lean server) and the main job against each raw server: times as ws ÷ ours, bytes and
// latencies as ours ÷ ws. Each has its aims: the lean server's earlier ones against ws corked, and issue 23's
// for the main job (ingest warm and cold, p99 against ws corked; memory against ws naive)
interface Aim {
  readonly text: string
  readonly against: "ws naive" | "ws corked"
  readonly met: (ratio: number) => boolean
}
interface Row {
  readonly name: string
  readonly value: (server: string) => number
  readonly show: (server: string) => string
  readonly ratio: (ws: number, ours: number) => number
  readonly aims: Partial<Record<"effect-lhttp" | "main job", Aim>>
}
const atLeast = (n: number, against: Aim["against"] = "ws corked"): Aim => ({
  text: `>= ${n.toFixed(2)}x ${against}`,
  against,
  met: (r) => r >= n
})
const atMost = (n: number, against: Aim["against"] = "ws corked"): Aim => ({
  text: `<= ${n.toFixed(2)}x ${against}`,
  against,
  met: (r) => r <= n
})
const rows: Array<Row> = []
if (burstOf !== undefined) {
  const showBurst = (s: string, key: "deliveredMs" | "coldMs") => {
    const run = burstOf[s]!
    const failed = bursts.get(s)!.filter((b) => b.received !== b.count).length
    return run.received === run.count
      ? ms(run[key])
      : `${run.received} delivered${run.closed ? ", closed" : ""} (${failed} of ${bursts.get(s)!.length} runs)`
  }
  rows.push({
    name: `${burstCount} publishes 1 to 1: last delivered (ws ÷ ours)`,
    value: (s) => burstOf[s]!.deliveredMs,
    show: (s) => showBurst(s, "deliveredMs"),
    ratio: (ws, ours) => ws / ours,
    aims: { "effect-lhttp": atLeast(0.8), "main job": atLeast(0.9) }
  }, {
    name: `the same, first burst on a fresh server (ws ÷ ours)`,
    value: (s) => burstOf[s]!.coldMs,
    show: (s) => showBurst(s, "coldMs"),
    ratio: (ws, ours) => ws / ours,
    aims: { "main job": atLeast(0.9) }
  })
}
if (memoryOf !== undefined) {
  rows.push({
    name: "RSS per idle subscribed connection (ours ÷ ws)",
    value: (s) => memoryOf[s]!.rssPerConnection,
    show: (s) => kib(memoryOf[s]!.rssPerConnection),
    ratio: (ws, ours) => ours / ws,
    aims: { "effect-lhttp": atMost(1.5), "main job": atMost(1, "ws naive") }
  }, {
    name: "RSS per idle connection, last-resort GC (ours ÷ ws)",
    value: (s) => memoryOf[s]!.rssReducedPerConnection,
    show: (s) => kib(memoryOf[s]!.rssReducedPerConnection),
    ratio: (ws, ours) => ours / ws,
    aims: {}
  })
}
if (latencyOf !== undefined && p50Of !== undefined) {
  rows.push({
    name: `p50 publish to deliver, ${publishRate}/s (ours ÷ ws)`,
    value: (s) => p50Of[s]!.p50,
    show: (s) => us(p50Of[s]!.p50),
    ratio: (ws, ours) => ours / ws,
    aims: {}
  }, {
    name: `p99 publish to deliver, ${publishRate}/s (ours ÷ ws)`,
    value: (s) => latencyOf[s]!.p99,
    show: (s) => us(latencyOf[s]!.p99),
    ratio: (ws, ours) => ours / ws,
    aims: { "effect-lhttp": atMost(1.5), "main job": atMost(1.3) }
  }, {
    name: `p99.9 publish to deliver, ${publishRate}/s (ours ÷ ws)`,
    value: (s) => latencyOf[s]!.p999,
    show: (s) => us(latencyOf[s]!.p999),
    ratio: (ws, ours) => ours / ws,
    aims: {}
  })
}
for (const ours of ["effect-lhttp", "main job"] as const) {
  console.log(`\n${ours} against the other servers of the same run\n`)
  console.table(Object.fromEntries(rows.map((row) => {
    const aim = row.aims[ours]
    const ratio = (other: string) => row.ratio(row.value(other), row.value(ours))
    return [row.name, {
      "ws naive": row.show("ws naive"),
      "ws corked": row.show("ws corked"),
      "socket.io": row.show("socket.io"),
      [ours]: row.show(ours),
      "vs naive": times(ratio("ws naive")),
      "vs corked": times(ratio("ws corked")),
      "vs socket.io": times(ratio("socket.io")),
      aim: aim?.text ?? "-",
      met: aim === undefined ? "-" : aim.met(ratio(aim.against)) ? "yes" : "NO"
    }]
  })))
}
console.log(
  `run from ${startedAt.toISOString()} to ${finishedAt.toISOString()} ` +
    `(${((finishedAt.getTime() - startedAt.getTime()) / 1000).toFixed(0)} s); ` +
    `load average ${loadAtStart} at the start, ${loadAverage()} at the end\n`
)

const allLatencies = Array.from(latencies.values()).flat()
if (allLatencies.some((run) => run.loadCpu > 0.7 || run.maxLagMs > 20)) {
  console.log(
    "WARNING: in some latency run the load used more than 70% of its core or its publisher's timer ran more than\n" +
      "20 ms late: the load's own delays may be in the latencies"
  )
}
if (allLatencies.some((run) => run.samples !== run.expected)) {
  console.log("WARNING: some latency runs missed deliveries (see the rounds above)")
}
for (const server of servers) {
  const failed = bursts.get(server.name)!.filter((run) => run.received !== run.count)
  if (failed.length > 0) {
    console.log(
      `WARNING: ${server.name} lost deliveries in ${failed.length} of ${bursts.get(server.name)!.length} burst runs` +
        (failed.some((run) => run.closed) ? " (it closed the subscriber: see the rounds above)" : "")
    )
  }
}
if (Array.from(memories.values()).flat().some((run) => run.missing > 0 || run.closed > 0)) {
  console.log("WARNING: some idle connections missed the probes or were closed (see the rounds above)")
}
