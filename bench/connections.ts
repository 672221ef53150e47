/**
 * Many connections: as many idle subscribed connections as one process may
 * hold here (this machine allows a process 20,000 open files: 19,000
 * connections), on the main job (src/main.ts as `npm start` runs it), the lean
 * effect-lhttp server and the naive raw `ws` server, at the same count, with
 * the heartbeats at their defaults (effect-lhttp pings every connection every
 * 25 s and closes one that does not answer within 10 s; the raw `ws` servers
 * send none). For each server, in one run:
 *
 * 1. a fresh server pinned to one core, with the GC hook preloaded
 *    (bench/relay/gc-hook.ts), and one publisher connection through the
 *    whole path (upgrade, subscribe, publish, deliver); its memory at its
 *    floor (after a last-resort GC gave back the pages its start-up filled:
 *    bench/relay/memory.ts);
 * 2. the connections: load processes started at once (bench/fanout/subscribers.ts,
 *    lean raw sockets that answer pings, not pacing their event loop), each
 *    opening its share from loopback source addresses in turn (127.0.0.1,
 *    .2, ...: one address has about 28,000 source ports) and subscribing it
 *    to one channel. The time to accept them all: from the start of the load
 *    processes until each has every connection upgraded and its subscribe
 *    frame written; then until every connection has received a probe;
 * 3. the memory after a full GC, per connection (RSS and heap, after a
 *    regular and after a last-resort collection, as bench/relay.ts reads it);
 * 4. the idle window (30 s, longer than the 25 s heartbeat interval, so that
 *    every connection is pinged at least once): the server's CPU as a share
 *    of one core, the pings the connections received, and the connections the
 *    server closed (a missed heartbeat closes one).
 *
 *   npm run bench:connections        (or: node bench/connections.ts)
 *
 * Settings (environment): CONNECTIONS_COUNT (19000: the server holds one
 * descriptor per connection, so the count stays under the process's open-file
 * limit with room for the server's own), CONNECTIONS_PROCESSES of load (4),
 * CONNECTIONS_SOURCE_ADDRESSES (4; the main job admits at most 10,000
 * connections from one address by default: keep count ÷ addresses under
 * that), CONNECTIONS_IDLE_SECONDS (30), CONNECTIONS_ROUNDS (1),
 * CONNECTIONS_SERVERS (comma-separated names; default "ws naive,effect-lhttp,main job";
 * "ws corked" also runs), CONNECTIONS_SERVER_CPU (0), CONNECTIONS_LOAD_CPU
 * (1), CONNECTIONS_DEADLINE seconds for the whole run (600).
 */
import type { ChildProcess } from "node:child_process"
import { readFileSync } from "node:fs"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { freePort, giveUpAfter, kill, Load, nextLoopbackNetwork, pinSelf, startServer } from "./fanout/children.ts"
import type { Stats } from "./fanout/ipc.ts"
import { now, settle, sum } from "./fanout/measure.ts"
import { cpuMs } from "./fanout/proc.ts"
import { gcHookEnv, memoryAfterGc, memoryFloor, spread } from "./relay/memory.ts"
import { writeResult } from "./result.ts"

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback)
const connections = env("CONNECTIONS_COUNT", 19_000)
const processes = env("CONNECTIONS_PROCESSES", 4)
const sourceAddresses = env("CONNECTIONS_SOURCE_ADDRESSES", 4)
const idleMs = env("CONNECTIONS_IDLE_SECONDS", 30) * 1000
const rounds = env("CONNECTIONS_ROUNDS", 1)
const serverCpu = process.env.CONNECTIONS_SERVER_CPU ?? "0"
const loadCpu = process.env.CONNECTIONS_LOAD_CPU ?? "1"
const deadlineMs = env("CONNECTIONS_DEADLINE", 600) * 1000
const bodyBytes = 64

/** The soft limit of open files of this process, which its children inherit (Infinity when unlimited). */
const openFilesLimit = (): number => {
  const line = /^Max open files\s+(\S+)/m.exec(readFileSync("/proc/self/limits", "utf8"))?.[1]
  return line === undefined || line === "unlimited" ? Infinity : Number(line)
}
// the server's own descriptors beside its connections: the listening socket, the publisher's connection,
// stdio, epoll, the event loop's and libuv's threads' handles
const spareFiles = 200
if (connections + spareFiles > openFilesLimit()) {
  console.error(
    `CONNECTIONS_COUNT=${connections}: the server holds one descriptor per connection, and a process may open ` +
      `${openFilesLimit()} files here (ulimit -n); keep it under ${openFilesLimit() - spareFiles}`
  )
  process.exit(2)
}

giveUpAfter("connections benchmark", deadlineMs)

const file = (path: string) => fileURLToPath(new URL(path, import.meta.url))
const servers = [
  { name: "ws naive", file: file("./fanout/servers/ws-naive.ts") },
  { name: "ws corked", file: file("./fanout/servers/ws-corked.ts") },
  { name: "effect-lhttp", file: file("./fanout/servers/lhttp.ts") },
  { name: "main job", file: file("./fanout/servers/main.ts") }
] as const
const only = (process.env.CONNECTIONS_SERVERS ?? "ws naive,effect-lhttp,main job").split(",").map((s) => s.trim())
const chosen = servers.filter((server) => only.includes(server.name))
const subscribersFile = file("./fanout/subscribers.ts")
const publisherFile = file("./fanout/publisher.ts")

/** What one server measured. */
interface Run {
  /** With the publisher's one warm connection, then with every connection, after a full GC, MiB. */
  readonly rssBefore: number
  readonly rssAfter: number
  readonly heapBefore: number
  readonly heapAfter: number
  /** Per idle connection, KiB: after a regular full GC, and after a last-resort one. */
  readonly rssPerConnection: number
  readonly heapPerConnection: number
  readonly rssReducedPerConnection: number
  readonly heapReducedPerConnection: number
  /** From the start of the load processes until every connection was upgraded and had written its subscribe, s. */
  readonly acceptSeconds: number
  /** From the same start until every connection had received a probe (subscribed), s. */
  readonly subscribedSeconds: number
  /** The server's CPU over the idle window, as a share of one core; the load's, likewise. */
  readonly idleCpu: number
  readonly loadCpu: number
  /** The window, s, and the heartbeat pings the connections received in it, per connection. */
  readonly idleSeconds: number
  readonly pingsPerConnection: number
  /** Connections that did not receive the probes, and that the server closed (by the end of the window). */
  readonly missing: number
  readonly closed: number
}

const runOnce = async (server: typeof servers[number], round: number): Promise<Run> => {
  const port = await freePort()
  const channel = `connections-${process.pid}-${round}-${servers.indexOf(server)}`
  const child: ChildProcess = await startServer(serverCpu, server.file, port, { env: gcHookEnv() })
  const loads: Array<Load> = []
  try {
    // one connection first, through the whole path, so that what the first connection loads or compiles
    // once is not charged to the idle ones
    const publisher = await Load.start(loadCpu, publisherFile, [String(port), channel, String(bodyBytes)])
    loads.push(publisher)
    const stats = () => Promise.all(loads.map((load) => load.request<Stats>({ type: "stats" }, 20_000)))
    await settle(stats, publisher)
    const before = await memoryFloor(child)

    const started = now()
    const idle = await Promise.all(
      spread(connections, processes).map((count) =>
        Load.start(loadCpu, subscribersFile, [
          String(port),
          channel,
          String(count),
          "websocket",
          String(sourceAddresses),
          "0",
          "idle",
          String(nextLoopbackNetwork())
        ])
      )
    )
    const acceptSeconds = (now() - started) / 1000
    loads.push(...idle)
    await settle(stats, publisher)
    const subscribedSeconds = (now() - started) / 1000
    const after = await memoryAfterGc(child)

    const pingsBefore = sum((await stats()).map((s) => s.pings))
    const serverBefore = cpuMs(child.pid!)
    const loadBefore = sum(loads.map((load) => cpuMs(load.pid)))
    const windowStart = now()
    await sleep(idleMs)
    const windowMs = now() - windowStart
    const idleCpu = (cpuMs(child.pid!) - serverBefore) / windowMs
    const loadShare = (sum(loads.map((load) => cpuMs(load.pid))) - loadBefore) / windowMs
    const final = await stats()
    const perConnection = (mib: number) => (mib * 1024) / connections
    return {
      rssBefore: before.rss,
      rssAfter: after.rss,
      heapBefore: before.heap,
      heapAfter: after.heap,
      rssPerConnection: perConnection(after.rss - before.rss),
      heapPerConnection: perConnection(after.heap - before.heap),
      rssReducedPerConnection: perConnection(after.rssReduced - before.rssReduced),
      heapReducedPerConnection: perConnection(after.heapReduced - before.heapReduced),
      acceptSeconds,
      subscribedSeconds,
      idleCpu,
      loadCpu: loadShare,
      idleSeconds: windowMs / 1000,
      pingsPerConnection: (sum(final.map((s) => s.pings)) - pingsBefore) / connections,
      missing: final.reduce((n, s) => n + (s.min >= 1 ? 0 : 1), 0),
      closed: sum(final.map((s) => s.closed))
    }
  } finally {
    for (const load of loads) kill(load.child)
    kill(child)
  }
}

const kib = (n: number) => `${n.toFixed(1)} KiB`
const mib = (n: number) => `${n.toFixed(0)} MiB`
const percent = (share: number) => `${(share * 100).toFixed(2)}%`
const describe = (run: Run) =>
  `RSS ${mib(run.rssBefore)} -> ${mib(run.rssAfter)}: ${kib(run.rssPerConnection)} per connection (heap ${
    kib(run.heapPerConnection)
  }; after a last-resort GC ${kib(run.rssReducedPerConnection)} RSS, ${kib(run.heapReducedPerConnection)} heap); ` +
  `accepted in ${run.acceptSeconds.toFixed(1)} s, subscribed in ${run.subscribedSeconds.toFixed(1)} s; idle CPU ${
    percent(run.idleCpu)
  } of a core over ${run.idleSeconds.toFixed(0)} s (load ${percent(run.loadCpu)}), ${
    run.pingsPerConnection.toFixed(2)
  } pings per connection` +
  (run.missing > 0 || run.closed > 0 ? `, ${run.missing} processes MISSING probes, ${run.closed} CLOSED` : "")

// the driver itself (and its threads) runs beside the load, off the server's core
pinSelf(loadCpu)

console.log(
  `connections benchmark, node ${process.version}: ${connections} idle subscribed connections per server ` +
    `(${processes} load processes, ${sourceAddresses} source addresses), heartbeats at their defaults, ` +
    `${idleMs / 1000} s idle window, ${rounds} round${rounds === 1 ? "" : "s"}; ${
      chosen.map((s) => s.name).join(", ")
    }; ` +
    `server on CPU ${serverCpu}, load on CPU ${loadCpu}\n`
)

const results = new Map<string, Array<Run>>(chosen.map((server) => [server.name, []]))
for (let round = 1; round <= rounds; round++) {
  const order = chosen.map((_, i) => chosen[(i + round - 1) % chosen.length]!)
  for (const server of order) {
    const run = await runOnce(server, round)
    results.get(server.name)!.push(run)
    console.log(`round ${round} ${server.name.padEnd(12)} ${describe(run)}`)
  }
}

const median = (runs: ReadonlyArray<Run>) =>
  [...runs].sort((a, b) => a.rssPerConnection - b.rssPerConnection)[(runs.length - 1) >> 1]!
const medians = Object.fromEntries(chosen.map((server) => [server.name, median(results.get(server.name)!)]))
const naive = medians["ws naive"]
console.log(`\n${connections} idle subscribed connections, median round by RSS per connection\n`)
console.table(Object.fromEntries(chosen.map((server) => {
  const run = medians[server.name]!
  return [server.name, {
    "RSS before->after": `${mib(run.rssBefore)}->${mib(run.rssAfter)}`,
    "RSS/connection": kib(run.rssPerConnection),
    "vs ws naive": naive === undefined ? "-" : `${(run.rssPerConnection / naive.rssPerConnection).toFixed(2)}x`,
    "heap/connection": kib(run.heapPerConnection),
    "RSS/connection, last-resort GC": kib(run.rssReducedPerConnection),
    "idle CPU": percent(run.idleCpu),
    "pings/connection": run.pingsPerConnection.toFixed(2),
    "accepted in": `${run.acceptSeconds.toFixed(1)} s`,
    "subscribed in": `${run.subscribedSeconds.toFixed(1)} s`,
    closed: run.closed
  }]
})))

writeResult({ connections, processes, sourceAddresses, idleSeconds: idleMs / 1000, rounds, servers: medians })

const all = Array.from(results.values()).flat()
if (all.some((run) => run.missing > 0 || run.closed > 0)) {
  console.log("WARNING: some connections missed the probes or were closed (see the rounds above)")
}
