/**
 * The fault campaign (`npm run faults`): a cluster of real processes
 * (cluster.ts: three nats-servers with JetStream, the history stream and the
 * session bucket replicated 3 times; three effect-lhttp nodes, each on NATS
 * through proxies of its own), client processes (client.ts) of the
 * project's Effect client, each process behind a proxy that balances over
 * the nodes that are up, with sessions and positions, publishing with
 * acknowledgements on many channels. Each scenario runs with a seed: steady
 * traffic, the fault, steady traffic again, then every client's record is
 * checked:
 *
 * - no acknowledged message lost: every subscriber has every acknowledged
 *   message of its channels, or was told it could not (`recovered:no`);
 * - no duplicate handed to an application;
 * - one order per channel: each subscriber's offsets grow, and a message has
 *   the same offset for everyone (its acknowledgement's too);
 * - sessions restored: restores ÷ reconnects;
 * - the busiest second of new connections per node, against its admission
 *   rate (2,000 a second, 4,000 at once);
 * - time from a connection lost to every channel's position known again,
 *   p50 and p99.
 *
 * The load is the same whatever the size: a channel per 20 connections
 * (about 40 subscribers each) and `--rate` publishes a second in all (400;
 * quick 120), shared by a fifth of the clients.
 *
 * Usage: `npm run faults -- [--quick] [--seeds n] [--connections n]
 * [--scenarios a,b] [--rate n] [--settle s] [--report file] [--json]
 * [--burst n] [--quiet n]` (`--burst`: the slow reader's burst in KiB
 * messages; `--quiet`: the polls of 500 ms without a delivery that end the
 * wait before the checks; `--settle`: the longest wait, 90 s). `--quick`
 * (what `npm test` runs): one seed of each scenario, 150 connections,
 * shorter faults (a NATS cut of 3 s, a stalled client of 5 s). The long
 * form: 1,500 connections (`--connections`), the faults at full length
 * (10 s, 30 s), as many seeds as asked; it writes a report (`--report`,
 * default bench/results/faults.md). Exit status 1 when a property fails.
 */
import { type ChildProcess, fork } from "node:child_process"
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as LhttpServer from "../../src/LhttpServer.ts"
import { type Cluster, start, until } from "./cluster.ts"
import { type Checked, type ClientSpec, type Command, type Published, type Reply, scenarioNames } from "./ipc.ts"
import { Proxy } from "./proxy.ts"
import * as Timings from "./timings.ts"

// ---------------------------------------------------------------------------------------------
// settings

const argv = process.argv.slice(2)
const flag = (name: string) => argv.includes(`--${name}`)
const option = (name: string): string | undefined => {
  const at = argv.indexOf(`--${name}`)
  return at === -1 ? undefined : argv[at + 1]
}
const quick = flag("quick")
const seeds = Number(option("seeds") ?? 1)
const connections = Number(option("connections") ?? (quick ? 150 : 1_500))
const perProcess = quick ? 50 : 250
// a steady load whatever the size: about 40 subscribers per channel (each client holds 2 of them) and the
// same publishes a second in all, shared by a fifth of the clients (the long form: 16,000 deliveries a second)
const channelCount = Math.max(10, Math.round(connections / 20))
const publishRate = Number(option("rate") ?? (quick ? 120 : 400))
const publisherShare = 0.2
const publishEvery = Math.round(connections * publisherShare / publishRate * 1_000) // ms, per publisher
// how long the checks wait for clients still catching up after the last publish
const settleMs = Number(option("settle") ?? 90) * 1_000
const steadyMs = quick ? 2_000 : 5_000
const scenariosRun: ReadonlyArray<string> = option("scenarios")?.split(",") ?? scenarioNames
// the nodes run with the default admission rate: no second of new connections may pass its burst
const admission = LhttpServer.defaults.admissionRate
const here = Path.dirname(fileURLToPath(import.meta.url))

/** A seeded random number generator (mulberry32): the scenario's choices follow from its seed. */
const random = (seed: number) => () => {
  seed = (seed + 0x6D2B79F5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const log = (line: string) => {
  if (!flag("json")) console.log(line)
}

// ---------------------------------------------------------------------------------------------
// client processes

/** A client process and its proxy. */
interface Load {
  readonly child: ChildProcess
  readonly proxy: Proxy
  readonly ask: (command: Command) => Promise<Reply>
}

const startLoad = async (cluster: Cluster): Promise<Load> => {
  const proxy = await new Proxy(cluster.livePorts).listen()
  const child = fork(Path.join(here, "client.ts"), [], { stdio: ["ignore", "inherit", "inherit", "ipc"] })
  // the commands waiting for their replies, in order; a process that exits fails those still waiting
  const waiting: Array<
    { readonly command: Command; readonly resolve: (reply: Reply) => void; readonly reject: (error: Error) => void }
  > = []
  child.on("message", (reply: Reply) => waiting.shift()?.resolve(reply))
  child.once("exit", (code, signal) => {
    for (const { command, reject } of waiting.splice(0)) {
      reject(new Error(`a client process exited (${code ?? signal}) while asked to ${command.type}`))
    }
  })
  const ask = (command: Command) =>
    new Promise<Reply>((resolve, reject) => {
      waiting.push({ command, resolve, reject })
      child.send(command)
    })
  return { child, proxy, ask }
}

// ---------------------------------------------------------------------------------------------
// scenarios: the fault, between two spells of steady traffic

interface Context {
  readonly cluster: Cluster
  readonly loads: ReadonlyArray<Load>
  /** The channel only the first few clients of a load hold. */
  readonly slowChannelOf: (load: Load) => string
  /** Where a scenario's own publishes go, to be checked as the clients' are. */
  readonly published: Array<Published>
  readonly pick: <A>(items: ReadonlyArray<A>) => A
}

/**
 * Publishes `count` messages of 1 KiB to each of `channels` from a raw WebSocket on a node, as fast
 * as it takes them (no acknowledgement): a burst the channels' readers must take.
 */
const burst = (port: number, channel: string, count: number) =>
  new Promise<ReadonlyArray<Published>>((resolve, reject) => {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/`)
    const published: Array<Published> = []
    socket.onerror = () => reject(new Error("the burst's connection failed"))
    socket.onopen = () => {
      const filler = "x".repeat(1024)
      // each with an id: its acknowledgement says where the stream put it (or that it was not taken)
      socket.onmessage = (event) => {
        const text = String(event.data)
        const id = /\r\nid:b(\d+)\r\n/.exec(text)?.[1]
        if (id === undefined) return
        const offset = /\r\npositions:[^\r]*:(\d+)\r\n/.exec(text)?.[1]
        const body = `burst:${id}`
        published.push(
          text.startsWith("LHTTP/1.0 error")
            ? { channel, body, error: /reason:(\w+)/.exec(text)?.[1] ?? "error" }
            : { channel, body, offset: Number(offset) }
        )
        if (published.length === count) {
          socket.close()
          resolve(published)
        }
      }
      for (let i = 0; i < count; i++) {
        socket.send(`LHTTP/1.0 m\r\npublish:${channel}\r\nid:b${i}\r\n\r\nburst:${i}\n${filler}`)
      }
    }
  })

const natsCut = quick ? 3_000 : 10_000
const slowReaders = 5
// a burst of 8 MiB (quick) or 48 MiB to the slow readers' channel: past what the sockets on the way hold and the
// nodes' outbound bound (1 MiB), they are closed (4001) and their recovery is past its bound (told RecoveryLimit)
const burstMessages = Number(option("burst") ?? (quick ? 8_192 : 49_152))
const quietPolls = Number(option("quiet") ?? 4)
const clientStall = quick ? 5_000 : 30_000

const scenarios: Record<string, (context: Context) => Promise<string>> = {
  "rolling-restart": async ({ cluster }) => {
    for (const node of cluster.nodes) {
      await cluster.stopNode(node, "SIGTERM")
      await cluster.startNode(node)
    }
    return "each node SIGTERM, then started again and ready before the next"
  },
  "node-kill": async ({ cluster, pick }) => {
    const node = pick(cluster.nodes)
    await cluster.stopNode(node, "SIGKILL")
    await sleep(1_000)
    await cluster.startNode(node)
    return `${node.name} SIGKILL while publishing, started again after 1 s`
  },
  "nats-leader-kill": async ({ cluster }) => {
    const leader = await cluster.streamLeader()
    await cluster.killNats(leader)
    await sleep(3_000)
    await cluster.startNats(leader)
    return `${leader.name} (the history stream's leader) SIGKILL, started again after 3 s`
  },
  "nats-cut": async ({ cluster, pick }) => {
    const node = pick(cluster.nodes)
    for (const proxy of node.natsProxies) proxy.cut()
    await sleep(natsCut)
    for (const proxy of node.natsProxies) proxy.mend()
    return `${node.name} cut from NATS for ${natsCut / 1000} s`
  },
  "client-stall": async ({ loads, pick }) => {
    const load = pick(loads)
    load.proxy.stall("both")
    await sleep(clientStall)
    load.proxy.unstall()
    return `one client process's network (${perProcess} connections) stalled both ways for ${clientStall / 1000} s`
  },
  "slow-consumer": async ({ cluster, loads, pick, published, slowChannelOf }) => {
    const load = pick(loads)
    load.proxy.stall("down")
    // a burst to the channel its first clients hold: past what the sockets hold and the nodes' outbound bound
    // (1 MiB), the nodes close them as slow consumers (4001); they come back and recover
    const started = Date.now()
    published.push(...await burst(pick(cluster.livePorts()), slowChannelOf(load), burstMessages))
    await sleep(Math.max(0, clientStall - (Date.now() - started)))
    load.proxy.unstall()
    return `one client process (${perProcess} connections) read nothing for ${clientStall / 1000} s while ${
      burstMessages / 1024
    } MiB went to a channel ${slowReaders} of its clients hold`
  }
}

// ---------------------------------------------------------------------------------------------
// the checks

/** What one run found: the client processes' checks summed, and the campaign's own. */
export interface Result extends Omit<Checked, "clients" | "catchUps" | "reopens"> {
  readonly scenario: string
  readonly seed: number
  readonly fault: string
  readonly connections: number
  readonly acknowledged: number
  readonly unacknowledged: number
  /** The unacknowledged publishes by how they failed. */
  readonly refusals: Readonly<Record<string, number>>
  readonly catchUpP50: number
  readonly catchUpP99: number
  /** From a connection lost to open again (the hinted wait, the upgrade, the session restore), p50 and p99. */
  readonly reopenP50: number
  readonly reopenP99: number
  readonly peakAcceptsPerNode: number
  /** The nodes' own timings of a reconnect's server-side steps: session restores and recoveries. */
  readonly restores: ReturnType<typeof Timings.summary>
  readonly recoveries: ReturnType<typeof Timings.summary>
  readonly failures: ReadonlyArray<string>
}

const percentile = (values: ReadonlyArray<number>, p: number) => {
  if (values.length === 0) return 0
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}

const summarize = (
  scenario: string,
  seed: number,
  fault: string,
  published: ReadonlyArray<Published>,
  checked: ReadonlyArray<Checked>,
  loads: ReadonlyArray<Load>,
  timings: Timings.Timings
): Result => {
  const failures: Array<string> = []
  const refusals: Record<string, number> = {}
  let acknowledged = 0
  for (const outcome of published) {
    if (outcome.error === undefined) acknowledged++
    else refusals[outcome.error] = (refusals[outcome.error] ?? 0) + 1
  }
  const total = (
    field: "clients" | "delivered" | "lost" | "told" | "duplicated" | "reordered" | "reconnects" | "restored"
  ) => checked.reduce((sum, one) => sum + one[field], 0)
  const lost = total("lost")
  const duplicated = total("duplicated")
  const reordered = total("reordered")
  const reconnects = total("reconnects")
  const restored = total("restored")
  if (lost > 0) failures.push(`${lost} acknowledged deliveries lost`)
  if (duplicated > 0) failures.push(`${duplicated} duplicates handed to applications`)
  if (reordered > 0) failures.push(`${reordered} deliveries out of the channel's order`)
  if (reconnects > 0 && restored / reconnects < 0.999) {
    failures.push(`sessions restored ${restored} of ${reconnects} reconnects`)
  }
  const catchUps = checked.flatMap((one) => one.catchUps)
  // the busiest second of new connections per node, summed over the client processes' proxies
  const perNodeSecond = new Map<string, number>()
  for (const load of loads) {
    for (const [port, seconds] of load.proxy.connects) {
      for (const [second, count] of seconds) {
        const key = `${port}:${second}`
        perNodeSecond.set(key, (perNodeSecond.get(key) ?? 0) + count)
      }
    }
  }
  const peakAcceptsPerNode = Math.max(0, ...perNodeSecond.values())
  if (peakAcceptsPerNode > admission.burst) failures.push(`a node took ${peakAcceptsPerNode} connections in a second`)
  if (acknowledged === 0) failures.push("no message was acknowledged")
  return {
    scenario,
    seed,
    fault,
    connections: total("clients"),
    acknowledged,
    unacknowledged: published.length - acknowledged,
    refusals,
    delivered: total("delivered"),
    lost,
    told: total("told"),
    duplicated,
    reordered,
    reconnects,
    restored,
    catchUpP50: percentile(catchUps, 50),
    catchUpP99: percentile(catchUps, 99),
    reopenP50: percentile(checked.flatMap((one) => one.reopens), 50),
    reopenP99: percentile(checked.flatMap((one) => one.reopens), 99),
    peakAcceptsPerNode,
    restores: Timings.summary(timings.restore),
    recoveries: Timings.summary(timings.recovery),
    failures,
    lostSample: checked.flatMap((one) => one.lostSample).slice(0, 8)
  }
}

// ---------------------------------------------------------------------------------------------
// one run

const run = async (cluster: Cluster, scenario: string, seed: number): Promise<Result> => {
  const pick = random(seed)
  const choose = <A>(items: ReadonlyArray<A>): A => items[Math.floor(pick() * items.length)]!
  // channels of this run only; each client on 2 of them, a fifth of the clients publish
  const channels = Array.from({ length: channelCount }, (_, i) => `h-${scenario}-${seed}-${i}`)
  // and the first few clients of each client process on a channel of their own, for a burst (slow-consumer)
  const slowChannel = (load: number) => `h-${scenario}-${seed}-slow-${load}`
  const specs: Array<ClientSpec> = Array.from({ length: connections }, (_, i) => {
    const first = Math.floor(pick() * channels.length)
    const second = (first + 1 + Math.floor(pick() * (channels.length - 1))) % channels.length
    const own = i % perProcess < slowReaders ? [slowChannel(Math.floor(i / perProcess))] : []
    return {
      name: `c${seed}-${i}`,
      channels: [channels[first]!, channels[second]!, ...own],
      publishes: pick() < publisherShare
    }
  })
  const loads: Array<Load> = []
  try {
    for (let i = 0; i < specs.length; i += perProcess) {
      const load = await startLoad(cluster)
      loads.push(load)
      await load.ask({
        type: "start",
        url: `ws://127.0.0.1:${load.proxy.port}/`,
        clients: specs.slice(i, i + perProcess),
        interval: publishEvery
      })
    }
    await Promise.all(loads.map((load) => load.ask({ type: "publish" })))
    await cluster.startTimings()
    await sleep(steadyMs)
    const published: Array<Published> = []
    const fault = await scenarios[scenario]!({
      cluster,
      loads,
      published,
      slowChannelOf: (load) => slowChannel(loads.indexOf(load)),
      pick: choose
    })
    await sleep(steadyMs)
    await Promise.all(loads.map((load) => load.ask({ type: "stop" })))
    // what is in flight arrives, clients still catching up finish: until every client is connected and
    // nothing more arrives for 2 s (at most --settle)
    let before = -1
    let quiet = 0
    for (const deadline = Date.now() + settleMs; quiet < quietPolls && Date.now() < deadline;) {
      await sleep(500)
      const progress = await Promise.all(loads.map((load) => load.ask({ type: "progress" })))
      const delivered = progress.reduce((sum, p) => sum + (p.type === "progress" ? p.delivered : 0), 0)
      const open = progress.every((p) => p.type === "progress" && p.open)
      quiet = open && delivered === before ? quiet + 1 : 0
      before = delivered
    }
    // what was acknowledged, from every client and the scenario's own publishes; each process checks its
    // clients' deliveries against it (they stay there: thousands of clients' deliveries are too much to move)
    const all = [
      ...published,
      ...(await Promise.all(loads.map((load) => load.ask({ type: "published" })))).flatMap((reply) =>
        reply.type === "published" ? reply.published : []
      )
    ]
    const acked: Record<string, Array<readonly [string, number | null]>> = {}
    for (const outcome of all) {
      if (outcome.error === undefined) (acked[outcome.channel] ??= []).push([outcome.body, outcome.offset ?? null])
    }
    const checked = (await Promise.all(loads.map((load) => load.ask({ type: "check", acked })))).flatMap((reply) =>
      reply.type === "checked" ? [reply.checked] : []
    )
    return summarize(scenario, seed, fault, all, checked, loads, await cluster.timings())
  } finally {
    for (const load of loads) {
      load.child.kill("SIGKILL")
      await load.proxy.close()
    }
  }
}

// ---------------------------------------------------------------------------------------------
// the campaign

const report = (results: ReadonlyArray<Result>) => {
  const lines = [
    "| scenario | seed | connections | acknowledged | not acknowledged | delivered | lost | told | duplicated | reordered | sessions restored | catch-up p50 / p99 | open again p50 / p99 | peak accepts per node and second | node: restores p50 / p99 | node: recoveries p50 / p99 |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  ]
  const step = (timed: Result["restores"]) => `${timed.count}: ${timed.p50} / ${timed.p99}`
  for (const r of results) {
    lines.push(
      `| ${r.scenario} | ${r.seed} | ${r.connections} | ${r.acknowledged} | ${r.unacknowledged} | ${r.delivered} | ${r.lost} | ${r.told} | ${r.duplicated} | ${r.reordered} | ${r.restored} of ${r.reconnects} | ${r.catchUpP50} / ${r.catchUpP99} ms | ${r.reopenP50} / ${r.reopenP99} ms | ${r.peakAcceptsPerNode} | ${
        step(r.restores)
      } | ${step(r.recoveries)} |`
    )
  }
  return lines.join("\n")
}

const main = async () => {
  const logs = mkdtempSync(Path.join(tmpdir(), "lhttp-faults-logs-"))
  log(`fault campaign: ${quick ? "quick" : "long"}, ${connections} connections, ${seeds} seed(s), logs in ${logs}`)
  const cluster = await start(logs)
  const results: Array<Result> = []
  try {
    for (let s = 1; s <= seeds; s++) {
      for (const scenario of scenariosRun) {
        if (scenarios[scenario] === undefined) throw new Error(`no scenario ${scenario}`)
        // every node and nats-server up before a run
        for (const server of cluster.nats) if (server.child === undefined) await cluster.startNats(server)
        for (const node of cluster.nodes) if (!node.up) await cluster.startNode(node)
        await until(() => cluster.livePorts().length === 3, "every node")
        const started = Date.now()
        const result = await run(cluster, scenario, s)
        results.push(result)
        log(
          `${scenario} seed ${s} (${((Date.now() - started) / 1000).toFixed(1)} s): ${result.fault}; ` +
            `${result.acknowledged} acknowledged, ${result.lost} lost, ${result.told} told, ${result.duplicated} duplicated, ` +
            `${result.reordered} reordered, sessions ${result.restored}/${result.reconnects}, catch-up p50 ` +
            `${result.catchUpP50} ms p99 ${result.catchUpP99} ms (open again p50 ${result.reopenP50} ms p99 ${result.reopenP99} ms), peak ${result.peakAcceptsPerNode} accepts/s/node, ` +
            `node restores ${result.restores.p50} / ${result.restores.p99}, recoveries ${result.recoveries.p50} / ${result.recoveries.p99}, ` +
            `not acknowledged: ${JSON.stringify(result.refusals)}` +
            (result.failures.length > 0 ? ` FAILED: ${result.failures.join("; ")}` : "") +
            (result.lostSample.length > 0 ? `\n  lost, e.g.:\n  ${result.lostSample.join("\n  ")}` : "")
        )
      }
    }
  } finally {
    await cluster.close()
  }
  if (flag("json")) console.log(JSON.stringify(results))
  else log(`\n${report(results)}`)
  if (!quick || option("report") !== undefined) {
    const file = option("report") ?? Path.join(here, "../results/faults.md")
    mkdirSync(Path.dirname(file), { recursive: true })
    writeFileSync(file, `# Fault campaign, ${new Date().toISOString()}\n\n${report(results)}\n`)
  }
  process.exit(results.some((result) => result.failures.length > 0) ? 1 : 0)
}

main().catch((error) => {
  console.error(error)
  process.exit(2)
})
