/**
 * Every benchmark in one run, with every baseline: the codec; fan-out to 100,
 * 1,000 and 5,000 subscribers on one channel; 10,000 publishes 1 to 1 (warm,
 * and the first burst on a fresh server); p50, p99 and p99.9 publish-to-deliver
 * at a fixed rate; RSS per idle subscribed connection at 10,000 connections;
 * the 10,000 publishes again with the servers' own client libraries (a
 * cross-check); as many idle subscribed connections as one process may hold
 * here (19,000: RSS per connection, idle CPU with the heartbeats on, the time
 * to accept them); the NATS cluster path of fan-out and of the 10,000
 * publishes; the cost of history (a history channel, half its subscribers
 * positioned, on the memory store and on JetStream, and 10,000 publishes to a
 * positioned subscriber on JetStream). The servers: effect-lhttp twice, the
 * lean server (bench/fanout/servers/lhttp.ts: memory bus, no processors, no
 * history; WebSocket, and SSE for fan-out) and the main job as `npm start`
 * runs it ("main job", bench/fanout/servers/main.ts: processors, sessions,
 * presence, history on every channel; on NATS in the cluster scenario);
 * naive and corked raw `ws` servers; and Socket.IO 4 (rooms and
 * `to(room).emit`, WebSocket transport only).
 *
 *   npm run bench                 (about 14 minutes on 2 cores)
 *   npm run bench -- --quick      (about 4 minutes: one short round of each, fewer connections)
 *
 * Each scenario is its own script (bench/codec.ts, bench/fanout.ts,
 * bench/relay.ts, bench/clients.ts, bench/connections.ts, bench/cluster.ts,
 * also runnable alone), run here as a child process with shorter settings;
 * its tables print as it goes and its medians come back as JSON. At the end:
 * the ratios of the lean server and of the main job against each baseline,
 * the targets, and the files:
 *
 * - bench/results/latest.json (--quick: bench/results/quick.json): every
 *   median, the settings, Node's version, the CPU count and model, the commit;
 * - docs/benchmarks-fanout.svg (--quick: bench/results/quick-fanout.svg):
 *   deliveries/s by subscriber count for each server.
 *
 * The many-connections scenario holds CONNECTIONS_COUNT connections (19000;
 * --quick 4000) for CONNECTIONS_IDLE_SECONDS (30; --quick 10), both read from
 * the environment. The run is bounded: BENCH_DEADLINE seconds (1200; --quick
 * 420), after which it stops its scenario and every process it started.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as Os from "node:os"
import { fileURLToPath } from "node:url"
import * as Chart from "./chart.ts"

const quick = process.argv.includes("--quick")
const file = (path: string) => fileURLToPath(new URL(path, import.meta.url))
const root = file("../")
const resultsDir = file("./results/")
const jsonFile = `${resultsDir}${quick ? "quick.json" : "latest.json"}`
const chartFile = quick ? `${resultsDir}quick-fanout.svg` : file("../docs/benchmarks-fanout.svg")
const deadlineMs = Number(process.env.BENCH_DEADLINE ?? (quick ? 420 : 1200)) * 1000

/** The subscriber counts of the fan-out curve. */
const subscriberCounts = quick ? [100, 1000] : [100, 1000, 5000]

/** Each scenario's settings in this run (the scripts' environment variables). */
const settings = {
  codec: { BENCH_MS: quick ? "150" : "400" },
  fanout: { FANOUT_ROUNDS: quick ? "1" : "3", FANOUT_SECONDS: quick ? "1" : "2" },
  relay: {
    RELAY_ROUNDS: quick ? "1" : "3",
    RELAY_SECONDS: quick ? "1" : "3",
    RELAY_WARMUP_SECONDS: quick ? "2" : "3",
    RELAY_CONNECTIONS: quick ? "2000" : "10000",
    RELAY_SOURCE_ADDRESSES: "4",
    RELAY_DEADLINE: quick ? "200" : "500"
  },
  clients: { CLIENTS_ROUNDS: quick ? "1" : "3" },
  connections: {
    CONNECTIONS_COUNT: process.env.CONNECTIONS_COUNT ?? (quick ? "4000" : "19000"),
    CONNECTIONS_IDLE_SECONDS: process.env.CONNECTIONS_IDLE_SECONDS ?? (quick ? "10" : "30"),
    CONNECTIONS_SOURCE_ADDRESSES: "4",
    CONNECTIONS_DEADLINE: quick ? "150" : "300"
  },
  cluster: {
    CLUSTER_ROUNDS: quick ? "1" : "3",
    CLUSTER_SECONDS: quick ? "1" : "2",
    CLUSTER_DEADLINE: quick ? "150" : "400"
  }
} as const

// ---------------------------------------------------------------------------
// running the scenarios

let current: ChildProcess | undefined
setTimeout(() => {
  console.error(`bench: not done within ${deadlineMs / 1000} s, giving up`)
  current?.kill("SIGTERM")
  process.exit(1)
}, deadlineMs).unref()
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    current?.kill("SIGTERM")
    process.exit(130)
  })
}

mkdirSync(resultsDir, { recursive: true })
const failures: Array<string> = []

/** Runs one scenario script with `env` added; resolves with what it wrote to $BENCH_JSON, or undefined if it failed. */
const scenario = async <A>(name: string, script: string, env: Record<string, string>): Promise<A | undefined> => {
  const output = `${resultsDir}.${name}-${process.pid}.json`
  console.log(`\n=== ${name} ===\n`)
  const child = spawn(process.execPath, [file(script)], {
    cwd: root,
    env: { ...process.env, ...env, BENCH_JSON: output },
    stdio: "inherit"
  })
  current = child
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve))
  current = undefined
  try {
    if (code !== 0) throw new Error(`exited with ${code}`)
    return JSON.parse(readFileSync(output, "utf8")) as A
  } catch (error) {
    failures.push(`${name}: ${error instanceof Error ? error.message : String(error)}`)
    return undefined
  } finally {
    rmSync(output, { force: true })
  }
}

/** A fan-out run's median round of one server (bench/fanout.ts). */
interface FanOutRun {
  readonly rate: number
  readonly cpuPerDelivery: number
  readonly rssIdle: number
  readonly rssPeak: number
  readonly lost: number
  readonly closed: number
}
interface FanOutResult {
  readonly subscribers: number
  readonly servers: Record<string, FanOutRun>
}
interface RelayBurstRun {
  readonly deliveredMs: number | null
  readonly coldMs?: number | null
  readonly received: number
  readonly count: number
  readonly closed: boolean
}
interface RelayResult {
  readonly burst: {
    readonly count: number
    readonly servers?: Record<string, RelayBurstRun>
  }
  readonly memory: {
    readonly connections: number
    readonly servers?: Record<
      string,
      { rssPerConnection: number; heapPerConnection: number; rssReducedPerConnection: number }
    >
  }
  readonly latency: {
    readonly subscribers: number
    readonly rate: number
    readonly servers?: Record<string, { p50: number | null; p99: number | null; p999?: number | null }>
  }
}
interface ClientsResult {
  readonly count: number
  readonly servers: Record<string, { coldMs: number; deliveredMs: number }>
}
/** The many-connections scenario's median round of each server (bench/connections.ts). */
interface ConnectionsResult {
  readonly connections: number
  readonly idleSeconds: number
  readonly servers: Record<string, {
    readonly rssPerConnection: number
    readonly rssReducedPerConnection: number
    readonly heapPerConnection: number
    readonly idleCpu: number
    readonly acceptSeconds: number
    readonly subscribedSeconds: number
    readonly pingsPerConnection: number
    readonly missing: number
    readonly closed: number
  }>
}
interface ClusterBurst {
  readonly deliveredMs: number | null
  readonly received: number
  readonly count: number
  readonly closed?: boolean
  readonly nodeCpuMs?: ReadonlyArray<number>
  readonly natsCpuMs?: number
}
interface ClusterResult {
  readonly natsServer: string
  readonly fanout:
    & Record<"one node" | "two nodes" | "two nodes, history", FanOutRun & { natsPerDelivery?: number }>
    & Partial<Record<"main job, two nodes", FanOutRun & { natsPerDelivery?: number }>>
  readonly burst:
    & Record<"one node" | "two nodes", ClusterBurst>
    & Partial<
      Record<
        "two nodes, history" | "history, 4 MiB outbound" | "history, plain subscriber" | "main job, two nodes",
        ClusterBurst
      >
    >
}

const git = (...args: Array<string>) => {
  try {
    return execFileSync("git", args, { cwd: root, encoding: "utf8" }).trim()
  } catch {
    return undefined
  }
}
const versionOf = (pkg: string) => {
  try {
    return (JSON.parse(readFileSync(file(`../node_modules/${pkg}/package.json`), "utf8")) as { version: string })
      .version
  } catch {
    return undefined
  }
}
const loadAverage = () => Os.loadavg().map((n) => n.toFixed(2)).join(" ")

const startedAt = new Date()
const meta = {
  node: process.version,
  cpus: Os.cpus().length,
  cpuModel: Os.cpus()[0]?.model,
  memoryGiB: Math.round(Os.totalmem() / 2 ** 30),
  kernel: `${Os.type()} ${Os.release()}`,
  commit: git("rev-parse", "HEAD"),
  // files changed against the commit (tracked ones): a run of uncommitted code says so
  uncommittedChanges: (git("status", "--porcelain", "--untracked-files=no") ?? "") !== "",
  versions: { ws: versionOf("ws"), "socket.io": versionOf("socket.io"), effect: versionOf("effect") },
  quick,
  startedAt: startedAt.toISOString(),
  loadAverageAtStart: loadAverage()
}
console.log(
  `bench${quick ? " --quick" : ""}: node ${meta.node}, ${meta.cpus} CPUs (${meta.cpuModel}), commit ${
    meta.commit?.slice(0, 10) ?? "unknown"
  }${meta.uncommittedChanges ? " with uncommitted changes" : ""}; load average ${meta.loadAverageAtStart}`
)

const codec = await scenario<unknown>("codec", "./codec.ts", settings.codec)
const fanout: Record<string, FanOutResult | undefined> = {}
for (const count of subscriberCounts) {
  fanout[count] = await scenario<FanOutResult>(`fan-out to ${count}`, "./fanout.ts", {
    ...settings.fanout,
    FANOUT_SUBSCRIBERS: String(count),
    // the history channel at 1,000 subscribers only: its row is the cost of history, not a curve
    ...(count === 1000 ? {} : { FANOUT_SERVERS: "ws naive,ws corked,effect-lhttp,main job,lhttp SSE,socket.io" })
  })
}
const relay = await scenario<RelayResult>("relay: bursts, memory, latency", "./relay.ts", settings.relay)
const clients = await scenario<ClientsResult>("10,000 publishes with library clients", "./clients.ts", settings.clients)
const connections = await scenario<ConnectionsResult>(
  `${Number(settings.connections.CONNECTIONS_COUNT).toLocaleString("en-US")} idle connections`,
  "./connections.ts",
  settings.connections
)
const cluster = await scenario<ClusterResult>("cluster on NATS", "./cluster.ts", settings.cluster)
const finishedAt = new Date()

// ---------------------------------------------------------------------------
// the summary: the lean server and the main job against each baseline

const lhttp = "effect-lhttp"
const mainJob = "main job"
/** Ours: the lean benchmark server and the main job as `npm start` runs it. */
const ours = [lhttp, mainJob] as const
type Ours = typeof ours[number]
const baselines = ["ws naive", "ws corked", "socket.io"] as const
type Baseline = typeof baselines[number]
const fanoutServers = ["ws naive", "ws corked", lhttp, mainJob, "lhttp SSE", "lhttp history", "socket.io"]
const connectionCount = connections?.connections ?? Number(settings.connections.CONNECTIONS_COUNT)

/** A number, or NaN where the run has none (a failed scenario, a time never reached). */
const num = (value: number | null | undefined) => typeof value === "number" ? value : NaN
const burstMs = (server: string, key: "deliveredMs" | "coldMs") => {
  const run = relay?.burst.servers?.[server]
  return run === undefined || run.received !== run.count ? NaN : num(run[key])
}

/** A comparison of ours with a baseline: the ratio is "how many times better" when `higherIsBetter`. */
interface Ratio {
  readonly name: string
  readonly value: (server: string) => number
  readonly unit: string
  /** Our value against the baseline's, oriented as the name says. */
  readonly ratio: (ours: number, theirs: number) => number
}
const deliveries = `${(relay?.latency.rate ?? 0) * (relay?.latency.subscribers ?? 0) / 1000}k deliveries/s`
const ratios: Array<Ratio> = [
  ...subscriberCounts.map((count): Ratio => ({
    name: `fan-out to ${count.toLocaleString("en-US")}: deliveries/s (ours ÷ other)`,
    value: (s) => num(fanout[count]?.servers[s]?.rate),
    unit: "/s",
    ratio: (ours, theirs) => ours / theirs
  })),
  ...subscriberCounts.map((count): Ratio => ({
    name: `fan-out to ${count.toLocaleString("en-US")}: server CPU per delivery (other ÷ ours)`,
    value: (s) => num(fanout[count]?.servers[s]?.cpuPerDelivery),
    unit: "µs",
    ratio: (ours, theirs) => theirs / ours
  })),
  {
    name: `${(relay?.burst.count ?? 10000).toLocaleString("en-US")} publishes 1 to 1: rate (other's time ÷ ours)`,
    value: (s) => burstMs(s, "deliveredMs"),
    unit: "ms",
    ratio: (ours, theirs) => theirs / ours
  },
  {
    name: `the same, first burst on a fresh server: rate (other's time ÷ ours)`,
    value: (s) => burstMs(s, "coldMs"),
    unit: "ms",
    ratio: (ours, theirs) => theirs / ours
  },
  {
    name: `${
      (clients?.count ?? 10000).toLocaleString("en-US")
    } publishes 1 to 1, ws / socket.io-client: rate (other ÷ ours)`,
    value: (s) => num(clients?.servers[s]?.deliveredMs),
    unit: "ms",
    ratio: (ours, theirs) => theirs / ours
  },
  {
    name: `RSS per idle subscribed connection at ${
      (relay?.memory.connections ?? 0).toLocaleString("en-US")
    } (ours ÷ other)`,
    value: (s) => num(relay?.memory.servers?.[s]?.rssPerConnection),
    unit: "KiB",
    ratio: (ours, theirs) => ours / theirs
  },
  {
    name: `the same after V8's last-resort GC gave back its spare heap pages (ours ÷ other)`,
    value: (s) => num(relay?.memory.servers?.[s]?.rssReducedPerConnection),
    unit: "KiB",
    ratio: (ours, theirs) => ours / theirs
  },
  {
    name: `p50 publish to deliver at ${deliveries} (ours ÷ other)`,
    value: (s) => num(relay?.latency.servers?.[s]?.p50),
    unit: "µs",
    ratio: (ours, theirs) => ours / theirs
  },
  {
    name: `p99 publish to deliver at ${deliveries} (ours ÷ other)`,
    value: (s) => num(relay?.latency.servers?.[s]?.p99),
    unit: "µs",
    ratio: (ours, theirs) => ours / theirs
  },
  {
    name: `p99.9 publish to deliver at ${deliveries} (ours ÷ other)`,
    value: (s) => num(relay?.latency.servers?.[s]?.p999),
    unit: "µs",
    ratio: (ours, theirs) => ours / theirs
  },
  {
    name: `${connectionCount.toLocaleString("en-US")} idle connections: RSS per connection (ours ÷ other)`,
    value: (s) => num(connections?.servers[s]?.rssPerConnection),
    unit: "KiB",
    ratio: (ours, theirs) => ours / theirs
  },
  {
    name: `${connectionCount.toLocaleString("en-US")} idle connections: the same after a last-resort GC (ours ÷ other)`,
    value: (s) => num(connections?.servers[s]?.rssReducedPerConnection),
    unit: "KiB",
    ratio: (ours, theirs) => ours / theirs
  },
  {
    name: `${connectionCount.toLocaleString("en-US")} idle connections: server CPU, % of a core (ours ÷ other)`,
    value: (s) => num(connections?.servers[s]?.idleCpu) * 100,
    unit: "%",
    ratio: (ours, theirs) => ours / theirs
  },
  {
    name: `${connectionCount.toLocaleString("en-US")} idle connections: time to accept them (other ÷ ours)`,
    value: (s) => num(connections?.servers[s]?.acceptSeconds),
    unit: "s",
    ratio: (ours, theirs) => theirs / ours
  }
]
const fixed = (n: number, digits = 2) => Number.isFinite(n) ? Number(n.toFixed(digits)) : null
const shown = (n: number, unit: string) =>
  !Number.isFinite(n)
    ? "-"
    : unit === "/s"
    ? `${Chart.short(n)}/s`
    : unit === "µs" && n >= 1000
    ? `${(n / 1000).toFixed(2)} ms`
    : unit === "%"
    ? `${n.toFixed(2)}%`
    : `${n.toFixed(unit === "µs" ? 2 : 1)} ${unit}`
const times = (n: number | null) => n === null ? "-" : `${n.toFixed(2)}x`

const summary = ratios.map((row) => ({
  name: row.name,
  values: Object.fromEntries([...ours, ...baselines].map((s) => [s, fixed(row.value(s), 3)])),
  unit: row.unit,
  // each of ours against each baseline
  ratios: Object.fromEntries(ours.map((us) => [
    us,
    Object.fromEntries(baselines.map((s) => [s, fixed(row.ratio(row.value(us), row.value(s)))]))
  ]))
}))

/** A target: a ratio of ours against a baseline (from the summary's rows, by the start of their names). */
interface Target {
  readonly target: string
  readonly ratio: number | null
  readonly met: boolean | null
}
const ratioOf = (prefix: string, baseline: Baseline, us: Ours = lhttp) =>
  summary.find((row) => row.name.startsWith(prefix))?.ratios[us]?.[baseline] ?? null
const target = (text: string, ratio: number | null, met: (r: number) => boolean): Target => ({
  target: text,
  ratio,
  met: ratio === null ? null : met(ratio)
})

// the lean server's targets: issue 14's against Socket.IO, and the earlier aims against the corked ws server
const targets = [
  target(
    "fan-out to 1,000: at least 10x Socket.IO's deliveries/s",
    ratioOf("fan-out to 1,000: deliveries", "socket.io"),
    (r) => r >= 10
  ),
  target(
    "10,000 publishes 1 to 1: at least 1.2x Socket.IO's rate",
    ratioOf("10,000 publishes 1 to 1: rate", "socket.io"),
    (r) => r >= 1.2
  ),
  target(
    "the same with the libraries' clients: at least 1.2x Socket.IO's rate",
    ratioOf("10,000 publishes 1 to 1, ws", "socket.io"),
    (r) => r >= 1.2
  ),
  target("RSS per idle connection: at most 0.5x Socket.IO's", ratioOf("RSS per idle", "socket.io"), (r) => r <= 0.5),
  target(
    "the same after a last-resort GC: at most 0.5x Socket.IO's",
    ratioOf("the same after V8", "socket.io"),
    (r) => r <= 0.5
  ),
  target("p99 at 50k deliveries/s: below Socket.IO's", ratioOf("p99 ", "socket.io"), (r) => r < 1),
  target(
    "10,000 publishes 1 to 1: at least 0.8x ws corked's rate",
    ratioOf("10,000 publishes 1 to 1: rate", "ws corked"),
    (r) => r >= 0.8
  ),
  target("RSS per idle connection: at most 1.5x ws corked's", ratioOf("RSS per idle", "ws corked"), (r) => r <= 1.5),
  target("p99 at 50k deliveries/s: at most 1.5x ws corked's", ratioOf("p99 ", "ws corked"), (r) => r <= 1.5)
]

// issue 23's targets, for the main job: the physical limit (ws corked) for speed and latency, ws naive for memory
const perConnectionAim = 8
const mainJobRssAt = num(connections?.servers[mainJob]?.rssPerConnection)
const mainJobTargets = [
  ...subscriberCounts.map((count) =>
    target(
      `fan-out to ${count.toLocaleString("en-US")}: at least 0.95x ws corked's deliveries/s`,
      ratioOf(`fan-out to ${count.toLocaleString("en-US")}: deliveries`, "ws corked", mainJob),
      (r) => r >= 0.95
    )
  ),
  target(
    "10,000 publishes 1 to 1, warm: at least 0.9x ws corked's rate",
    ratioOf("10,000 publishes 1 to 1: rate", "ws corked", mainJob),
    (r) => r >= 0.9
  ),
  target(
    "the same, first burst on a fresh server: at least 0.9x ws corked's rate",
    ratioOf("the same, first burst", "ws corked", mainJob),
    (r) => r >= 0.9
  ),
  target("p99 at 50k deliveries/s: at most 1.3x ws corked's", ratioOf("p99 ", "ws corked", mainJob), (r) => r <= 1.3),
  target(
    `RSS per idle connection at ${(relay?.memory.connections ?? 0).toLocaleString("en-US")}: at most 1.0x ws naive's`,
    ratioOf("RSS per idle", "ws naive", mainJob),
    (r) => r <= 1
  ),
  target(
    `${connectionCount.toLocaleString("en-US")} idle connections: RSS per connection at most 1.0x ws naive's`,
    ratioOf(`${connectionCount.toLocaleString("en-US")} idle connections: RSS`, "ws naive", mainJob),
    (r) => r <= 1
  ),
  target(
    `${connectionCount.toLocaleString("en-US")} idle connections: below ${perConnectionAim} KiB per connection ` +
      `(RSS ÷ ${perConnectionAim} KiB)`,
    fixed(mainJobRssAt / perConnectionAim),
    (r) => r < 1
  )
]

/** The cluster's setups side by side: one node, two nodes and the main job on two nodes, with their ratios. */
const clusterSummary = cluster === undefined ? undefined : (() => {
  const one = cluster.fanout["one node"]
  const two = cluster.fanout["two nodes"]
  const main = cluster.fanout["main job, two nodes"]
  const burstOne = cluster.burst["one node"]
  const burstTwo = cluster.burst["two nodes"]
  const burstMain = cluster.burst["main job, two nodes"]
  const burstMs = (run: ClusterBurst | undefined) => run === undefined ? NaN : num(run.deliveredMs)
  return {
    "fan-out deliveries/s": {
      "one node": one.rate,
      "two nodes": two.rate,
      "main job, two nodes": num(main?.rate),
      "two ÷ one": fixed(two.rate / one.rate),
      "main job ÷ two": fixed(num(main?.rate) / two.rate)
    },
    "fan-out node CPU per delivery, µs": {
      "one node": fixed(one.cpuPerDelivery, 3),
      "two nodes": fixed(two.cpuPerDelivery, 3),
      "main job, two nodes": fixed(num(main?.cpuPerDelivery), 3),
      "two ÷ one": fixed(one.cpuPerDelivery / two.cpuPerDelivery),
      "main job ÷ two": fixed(two.cpuPerDelivery / num(main?.cpuPerDelivery))
    },
    "10,000 publishes: last delivered, ms": {
      "one node": fixed(burstMs(burstOne), 1),
      "two nodes": fixed(burstMs(burstTwo), 1),
      "main job, two nodes": fixed(burstMs(burstMain), 1),
      "two ÷ one": fixed(burstMs(burstOne) / burstMs(burstTwo)),
      "main job ÷ two": fixed(burstMs(burstTwo) / burstMs(burstMain))
    }
  }
})()

/** A burst's delivered rate (messages/s); NaN when some were not delivered. */
const burstRateOf = (run: ClusterBurst | undefined) =>
  run === undefined || run.received !== run.count ? NaN : run.count / (num(run.deliveredMs) / 1000)

// the cost of history: a history channel ÷ a plain one, on the memory bus (fan-out: half the subscribers
// positioned) and on NATS (the cluster: fan-out, half positioned; the burst, to a positioned subscriber)
const historySummary = {
  "memory bus, fan-out to 1,000 (half positioned): deliveries/s": {
    plain: num(fanout[1000]?.servers[lhttp]?.rate),
    history: num(fanout[1000]?.servers["lhttp history"]?.rate),
    "history ÷ plain": fixed(
      num(fanout[1000]?.servers["lhttp history"]?.rate) / num(fanout[1000]?.servers[lhttp]?.rate)
    )
  },
  ...(cluster === undefined ? {} : {
    "NATS, two nodes, fan-out to 1,000 (half positioned): deliveries/s": {
      plain: cluster.fanout["two nodes"].rate,
      history: cluster.fanout["two nodes, history"].rate,
      "history ÷ plain": fixed(cluster.fanout["two nodes, history"].rate / cluster.fanout["two nodes"].rate)
    },
    "NATS, two nodes, 10,000 publishes to a positioned subscriber: delivered/s": {
      plain: burstRateOf(cluster.burst["two nodes"]),
      history: burstRateOf(cluster.burst["two nodes, history"]),
      "history ÷ plain": fixed(
        burstRateOf(cluster.burst["two nodes, history"]) / burstRateOf(cluster.burst["two nodes"])
      )
    },
    "the same to a plain subscriber (the history channel's ingest)": {
      plain: burstRateOf(cluster.burst["two nodes"]),
      history: burstRateOf(cluster.burst["history, plain subscriber"]),
      "history ÷ plain": fixed(
        burstRateOf(cluster.burst["history, plain subscriber"]) / burstRateOf(cluster.burst["two nodes"])
      )
    },
    "the same, outbound bound 4 MiB (1 MiB above)": {
      plain: burstRateOf(cluster.burst["two nodes"]),
      history: burstRateOf(cluster.burst["history, 4 MiB outbound"]),
      "history ÷ plain": fixed(
        burstRateOf(cluster.burst["history, 4 MiB outbound"]) / burstRateOf(cluster.burst["two nodes"])
      )
    }
  })
}

// issue 19's targets for history: a history channel keeps up with a plain one
const historyTarget = (name: string) =>
  (Object.entries(historySummary).find(([key]) => key.startsWith(name))?.[1]["history ÷ plain"]) ?? null
const historyTargets = [
  {
    target: "history fan-out to 1,000, half positioned (memory): at least 0.85x a plain channel",
    ratio: historyTarget("memory bus, fan-out"),
    met: (r: number) => r >= 0.85
  },
  {
    target: "10,000 publishes to a NATS history channel: at least 0.5x the rate without history",
    ratio: historyTarget("NATS, two nodes, 10,000"),
    met: (r: number) => r >= 0.5,
    burst: cluster?.burst["two nodes, history"]
  },
  {
    target: "the same to a plain subscriber (the ingest, default settings): at least 0.5x",
    ratio: historyTarget("the same to a plain subscriber"),
    met: (r: number) => r >= 0.5,
    burst: cluster?.burst["history, plain subscriber"]
  },
  {
    target: "the same with a 4 MiB outbound bound: at least 0.5x",
    ratio: historyTarget("the same, outbound bound"),
    met: (r: number) => r >= 0.5,
    burst: cluster?.burst["history, 4 MiB outbound"]
  }
].map(({ met, ratio, target, ...rest }) => {
  // a burst that ran and did not get through (the subscriber closed as a slow consumer) misses its target
  const burst = "burst" in rest ? rest.burst : undefined
  const failed = burst !== undefined && burst.received !== burst.count
  return { target, ratio, met: failed ? false : ratio === null ? null : met(ratio) }
})

console.log(`\n=== summary ===\n`)
console.log("fan-out: deliveries/s (server CPU per delivery) by subscriber count, median round of each server\n")
console.table(Object.fromEntries(fanoutServers.map((server) => [
  server,
  Object.fromEntries(subscriberCounts.map((count) => {
    const run = fanout[count]?.servers[server]
    return [
      count.toLocaleString("en-US"),
      run === undefined
        ? "-"
        : `${Chart.short(run.rate)}/s (${run.cpuPerDelivery.toFixed(2)} µs)${run.lost > 0 ? " LOST" : ""}`
    ]
  }))
])))
for (const us of ours) {
  console.log(
    `\n${us === lhttp ? "effect-lhttp (the lean server)" : "the main job (npm start)"} against each baseline ` +
      `(ratios above 1 favour ${us})\n`
  )
  console.table(Object.fromEntries(summary.map((row) => [row.name, {
    [us]: shown(num(row.values[us]), row.unit),
    ...Object.fromEntries(baselines.map((s) => [s, `${shown(num(row.values[s]), row.unit)}`])),
    ...Object.fromEntries(baselines.map((s) => [`vs ${s}`, times(row.ratios[us]?.[s] ?? null)]))
  }])))
}
if (connections !== undefined) {
  console.log(
    `\n${connectionCount.toLocaleString("en-US")} idle subscribed connections, heartbeats at their defaults ` +
      `(${connections.idleSeconds} s idle window)\n`
  )
  console.table(Object.fromEntries(
    Object.entries(connections.servers).map(([server, run]) => [server, {
      "RSS/connection": `${run.rssPerConnection.toFixed(1)} KiB`,
      "last-resort GC": `${run.rssReducedPerConnection.toFixed(1)} KiB`,
      "idle CPU": `${(run.idleCpu * 100).toFixed(2)}%`,
      "pings/connection": run.pingsPerConnection.toFixed(2),
      "accepted in": `${run.acceptSeconds.toFixed(1)} s`,
      closed: run.closed
    }])
  ))
}
if (clusterSummary !== undefined) {
  console.log(
    `\nthe NATS cluster path: two effect-lhttp nodes on nats-server ${cluster!.natsServer} ÷ one node, and the main ` +
      `job on two nodes (history in JetStream) ÷ the two lean nodes\n`
  )
  const rate = (name: string, n: number | null) =>
    name.startsWith("fan-out deliveries") ? `${Chart.short(n ?? NaN)}/s` : n === null || Number.isNaN(n) ? "-" : n
  console.table(Object.fromEntries(
    Object.entries(clusterSummary).map(([name, row]) => [name, {
      "one node": rate(name, row["one node"]),
      "two nodes": rate(name, row["two nodes"]),
      "main job, two nodes": rate(name, row["main job, two nodes"]),
      "two ÷ one": times(row["two ÷ one"]),
      "main job ÷ two": times(row["main job ÷ two"])
    }])
  ))
}
console.log("\nthe cost of history: a channel keeping history ÷ a plain one (memory store; JetStream on NATS)\n")
console.table(Object.fromEntries(
  Object.entries(historySummary).map(([name, row]) => [name, {
    plain: Number.isFinite(row.plain) ? `${Chart.short(row.plain)}/s` : "-",
    history: Number.isFinite(row.history) ? `${Chart.short(row.history)}/s` : "-",
    "history ÷ plain": times(row["history ÷ plain"])
  }])
))
const showTargets = (list: ReadonlyArray<Target>) =>
  console.table(Object.fromEntries(list.map((t) => [t.target, {
    ratio: times(t.ratio),
    met: t.met === null ? "-" : t.met ? "yes" : "NO"
  }])))
console.log("\ntargets: effect-lhttp, the lean server (issue 14, the earlier aims, issue 19's for history)\n")
showTargets([...targets, ...historyTargets])
console.log("\ntargets: the main job (issue 23)\n")
showTargets(mainJobTargets)

// ---------------------------------------------------------------------------
// the files

const chart = Chart.render({
  title: "Fan-out on one channel: deliveries per second",
  subtitle: `npm run bench${quick ? " -- --quick" : ""}: node ${meta.node}, ${meta.cpus} CPUs, commit ${
    meta.commit?.slice(0, 10) ?? "?"
  }, ${startedAt.toISOString().slice(0, 10)}`,
  xLabel: "subscribers on the channel",
  yLabel: "deliveries per second",
  // (the history channel runs at 1,000 subscribers only: no curve of its own)
  series: fanoutServers.filter((server) => server !== "lhttp history").map((server) => ({
    name: server,
    points: subscriberCounts.map((count) => ({ x: count, y: num(fanout[count]?.servers[server]?.rate) }))
  }))
})
writeFileSync(chartFile, chart)
writeFileSync(
  jsonFile,
  JSON.stringify(
    {
      meta: {
        ...meta,
        finishedAt: finishedAt.toISOString(),
        seconds: Math.round((finishedAt.getTime() - startedAt.getTime()) / 1000),
        loadAverageAtEnd: loadAverage()
      },
      settings: { ...settings, fanoutSubscribers: subscriberCounts },
      summary,
      targets,
      historyTargets,
      mainJobTargets,
      cluster: clusterSummary,
      history: historySummary,
      scenarios: { codec, fanout, relay, clients, connections, cluster },
      failures
    },
    null,
    2
  ) + "\n"
)
console.log(
  `\n${Math.round((finishedAt.getTime() - startedAt.getTime()) / 1000)} s; results in ${
    jsonFile.slice(root.length)
  }, ` +
    `chart in ${chartFile.slice(root.length)}`
)
if (failures.length > 0) {
  console.error(`FAILED scenarios:\n  ${failures.join("\n  ")}`)
  process.exit(1)
}
