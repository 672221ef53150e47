/**
 * Cluster benchmark: the fan-out and 10,000-publish scenarios on two
 * effect-lhttp nodes joined through NATS, beside the same scenarios on one
 * node with the in-memory bus, as ratios measured in one run.
 *
 *   npm run bench:cluster            (or: node bench/cluster.ts)
 *
 * The run starts its own nats-server on a free port. Each measurement starts
 * fresh server processes: one node (bench/fanout/servers/lhttp.ts), or two
 * nodes (bench/cluster/servers/lhttp-nats.ts, each with
 * `NatsBus.layer({ servers })`) where the publisher connects to node B and the
 * subscribers to node A, so every message crosses NATS once.
 *
 * - Fan-out: the method of bench/fanout.ts. 999 lean raw-socket subscribers
 *   and the publisher's acknowledging connection (1,000 subscribers) on the
 *   subscribers' node; the publisher writes on its own connection to the
 *   publishing node and keeps a window of messages in flight. Deliveries/s and
 *   server CPU per delivery (both nodes' CPU summed; nats-server's apart).
 * - 10,000 publishes (reference §15): one publisher connection writes 10,000
 *   `LHTTP/1.0 bench\r\npublish:<channel>\r\n\r\n<n>` frames as fast as it
 *   can, one subscriber counts them: the time until the last is written,
 *   until the last is delivered, and the rate. Each run warms up with two
 *   bursts and reports the median of the next three.
 * - NATS only: 10,000 publishes with @nats-io/transport-node, then flush()
 *   (the original claim's scope), and the time until a subscriber has them.
 *
 * A third setup is the two nodes with the benchmark's channels keeping history
 * in JetStream (the nats-server runs with -js): each node's bus and history are
 * `NatsHistory.layer({ servers, policies })`, a stream that records the bus's
 * own subjects and republishes each stored message with its sequence, which
 * the subscribers' node delivers (publishers do not wait for an append). Its
 * fan-out has half the subscribers asking for positions (`since:now`: a
 * `position` frame first, not counted, then positioned messages) and half
 * plain, as the memory store's row in bench/fanout.ts; its burst subscriber
 * asks for positions. The cost of history on the NATS bus: history ÷ without,
 * for the fan-out and for the burst's delivered rate. A fourth setup runs the
 * history burst only, with the connections' outbound bound at 4 MiB instead of
 * the default 1 MiB (`maxOutboundBytes`): a positioned frame is about twice a
 * plain one's bytes, and 10,000 of them can pass 1 MiB while the subscriber
 * falls behind, which closes it as a slow consumer (4001). A fifth setup is
 * the main job (src/main.ts as `npm start` runs it, bench/fanout/servers/main.ts)
 * on two nodes with `LHTTP_NATS_URL` set: the NATS bus, sessions in a KV
 * bucket, and history on every channel in JetStream (its defaults), its
 * fan-out and burst subscribers plain.
 *
 * Rounds interleave the setups (their order alternates); each setup's median
 * round is reported, and the ratios are two nodes ÷ one node, and history ÷ without.
 *
 * Settings (environment): CLUSTER_ROUNDS (5), CLUSTER_SECONDS measured (4,
 * after 1 s of warm-up), CLUSTER_WINDOW messages in flight (64), CLUSTER_BODY
 * bytes (64), CLUSTER_BURST messages (10000), CLUSTER_SERVER_CPU for the
 * effect-lhttp nodes (0), CLUSTER_NODE_B_CPU for the publisher's node (the
 * same as the others), CLUSTER_NATS_CPU for nats-server (1),
 * CLUSTER_LOAD_CPU (1), CLUSTER_DEADLINE seconds for the whole run (900).
 */
import type { ChildProcess } from "node:child_process"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import type { BurstCommand, BurstReply, BurstResult, LoopCommand, LoopReply, LoopResult } from "./cluster/ipc.ts"
import { startNats } from "./cluster/nats.ts"
import { freePort, giveUpAfter, kill, Load, pinSelf, startServer, within } from "./fanout/children.ts"
import type { Stats } from "./fanout/ipc.ts"
import { measure, now, settle, sum, totalOf } from "./fanout/measure.ts"
import { coreTicks, cpuMs, memoryMiB } from "./fanout/proc.ts"
import { writeResult } from "./result.ts"

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback)
const rounds = env("CLUSTER_ROUNDS", 5)
const measureMs = env("CLUSTER_SECONDS", 4) * 1000
const warmupMs = 1000
const window = env("CLUSTER_WINDOW", 64)
const bodyBytes = env("CLUSTER_BODY", 64)
const burstCount = env("CLUSTER_BURST", 10_000)
const serverCpu = process.env.CLUSTER_SERVER_CPU ?? "0"
// node B (the publisher's) shares node A's core unless told otherwise
const nodeBCpu = process.env.CLUSTER_NODE_B_CPU ?? serverCpu
const natsCpu = process.env.CLUSTER_NATS_CPU ?? "1"
const loadCpu = process.env.CLUSTER_LOAD_CPU ?? "1"
const deadlineMs = env("CLUSTER_DEADLINE", 900) * 1000
// bursts (and NATS-only loops) per run: to warm up, then measured (the run's median counts)
const burstWarmups = 2
const burstsMeasured = 3
const subscribers = 1000

giveUpAfter("cluster benchmark", deadlineMs)

const file = (path: string) => fileURLToPath(new URL(path, import.meta.url))
const singleNodeFile = file("./fanout/servers/lhttp.ts")
const clusterNodeFile = file("./cluster/servers/lhttp-nats.ts")
const mainJobFile = file("./fanout/servers/main.ts")
const subscribersFile = file("./fanout/subscribers.ts")
const publisherFile = file("./fanout/publisher.ts")
const burstFile = file("./cluster/burst.ts")
const loopFile = file("./cluster/nats-loop.ts")

/** A burst that lost messages sorts last. */
const deliveredKey = (run: BurstResult) => run.received === run.count ? run.deliveredMs : Infinity
/** The median element (the lower one of an even count) by a key. */
const medianBy = <A>(runs: ReadonlyArray<A>, key: (run: A) => number): A =>
  [...runs].sort((a, b) => key(a) - key(b))[(runs.length - 1) >> 1]!

/** Server processes serving one measurement: where the publisher and the subscribers connect. */
interface Setup {
  readonly publishPort: number
  readonly subscribePort: number
  /** The effect-lhttp processes; the subscribers' node first. */
  readonly nodes: ReadonlyArray<ChildProcess>
}

/**
 * Stops a setup's nodes, and deletes the history stream a history setup made (it would record the next setup's
 * messages).
 */
const stop = async (kind: Kind, setup: Setup) => {
  for (const node of setup.nodes) kill(node)
  if (kind.history) await within(10_000, "the history stream to be deleted", nats.deleteStreams())
}

interface Kind {
  readonly name:
    | "one node"
    | "two nodes"
    | "two nodes, history"
    | "history, 4 MiB outbound"
    | "history, plain subscriber"
    | "main job, two nodes"
  readonly start: () => Promise<Setup>
  /** Whether the fan-out runs on it. */
  readonly fanOut: boolean
  /** Whether the 10,000 publishes run on it. */
  readonly burst: boolean
  /** Whether its nodes keep history (in JetStream, a stream deleted after each measurement). */
  readonly history: boolean
  /**
   * The share of the fan-out's subscribers that ask for positions (`since:now`); the burst's subscriber asks when
   * above 0.
   */
  readonly positioned: number
}

const kinds: ReadonlyArray<Kind> = [
  {
    name: "one node",
    fanOut: true,
    burst: true,
    history: false,
    positioned: 0,
    start: async () => {
      const port = await freePort()
      const node = await startServer(serverCpu, singleNodeFile, port)
      return { publishPort: port, subscribePort: port, nodes: [node] }
    }
  },
  { name: "two nodes", fanOut: true, burst: true, history: false, positioned: 0, start: () => twoNodes({}) },
  // the same, the fan-out's and the burst's channels keeping history in JetStream
  // (docs/history-and-presence.md): half the fan-out's subscribers, and the burst's one, ask for positions
  {
    name: "two nodes, history",
    fanOut: true,
    burst: true,
    history: true,
    positioned: 0.5,
    start: () => twoNodes({ LHTTP_BENCH_HISTORY: "fanout-,bench-" })
  },
  // the burst again with the connections' outbound bound at 4 MiB instead of 1 MiB: 10,000 positioned
  // frames (about twice a plain frame's bytes) pass 1 MiB when the subscriber falls behind, and the
  // server closes it as a slow consumer (4001) before the burst is delivered
  {
    name: "history, 4 MiB outbound",
    fanOut: false,
    burst: true,
    history: true,
    positioned: 0.5,
    start: () =>
      twoNodes({ LHTTP_BENCH_HISTORY: "fanout-,bench-", LHTTP_BENCH_MAX_OUTBOUND_BYTES: String(4 * 2 ** 20) })
  },
  // the burst with the defaults and a subscriber that does not ask for positions: what a history channel's
  // ingest costs (every message recorded by JetStream and delivered from its copy), without the positioned frames
  {
    name: "history, plain subscriber",
    fanOut: false,
    burst: true,
    history: true,
    positioned: 0,
    start: () => twoNodes({ LHTTP_BENCH_HISTORY: "fanout-,bench-" })
  },
  // the main job on two nodes, as `npm start` runs with LHTTP_NATS_URL: every channel keeps history in JetStream
  // (a stream deleted after each measurement, with the sessions' KV bucket), the subscribers plain
  {
    name: "main job, two nodes",
    fanOut: true,
    burst: true,
    history: true,
    positioned: 0,
    start: () => twoNodes({ LHTTP_NATS_URL: nats.url }, mainJobFile)
  }
]

/** Two effect-lhttp nodes (the lean cluster node unless told) on the run's nats-server, with `env` added. */
async function twoNodes(env: Record<string, string>, nodeFile = clusterNodeFile): Promise<Setup> {
  const nodes: Array<ChildProcess> = []
  try {
    const ports = [await freePort(), await freePort()] as const
    for (const [i, port] of ports.entries()) {
      nodes.push(
        await startServer(i === 0 ? serverCpu : nodeBCpu, nodeFile, port, {
          env: { NATS_URL: nats.url, ...env },
          ready: ["NATS: connected"]
        })
      )
    }
    // node A (subscribers) is the first, node B (publisher) the second
    return { subscribePort: ports[0], publishPort: ports[1], nodes }
  } catch (error) {
    for (const node of nodes) kill(node)
    throw error
  }
}

// ---------------------------------------------------------------------------
// fan-out

/** What one fan-out run measured. */
interface FanOut {
  readonly rate: number
  /** CPU time of the effect-lhttp nodes (summed) per delivery, µs. */
  readonly cpuPerDelivery: number
  /** Each node's CPU over the window as a share of one core, the subscribers' node first. */
  readonly nodeCpu: ReadonlyArray<number>
  /** nats-server's CPU per delivery (µs) and share of a core. */
  readonly natsPerDelivery: number
  readonly natsCpu: number
  readonly loadCpu: number
  /** The share of the window the server core sat idle. */
  readonly coreIdle: number
  /** RSS of the subscribers' node with the subscribers connected, and its peak, MiB. */
  readonly rssIdle: number
  readonly rssPeak: number
  readonly lost: number
  readonly closed: number
}

const fanOut = async (kind: Kind, round: number): Promise<FanOut> => {
  const channel = `fanout-${process.pid}-${round}-${kind.name.replace(/\W/g, "")}`
  const setup = await kind.start()
  const loads: Array<Load> = []
  try {
    // the subscribers asking for positions: a share of all of them (the publisher's own one is plain)
    const positioned = Math.round(subscribers * kind.positioned)
    loads.push(
      await Load.start(loadCpu, subscribersFile, [
        String(setup.subscribePort),
        channel,
        String(subscribers - 1),
        "websocket",
        "1",
        String(positioned)
      ])
    )
    const publisher = await Load.start(loadCpu, publisherFile, [
      String(setup.publishPort),
      channel,
      String(bodyBytes),
      String(setup.subscribePort)
    ])
    loads.push(publisher)
    const stats = () => Promise.all(loads.map((load) => load.request<Stats>({ type: "stats" })))
    await settle(stats, publisher)
    await Promise.all(loads.map((load) => load.request({ type: "reset" })))
    const subscribersNode = setup.nodes[0]!.pid!
    const rssIdle = memoryMiB(subscribersNode).rss

    const sample = async () => {
      const counts = await stats()
      return {
        at: now(),
        counts,
        nodes: setup.nodes.map((node) => cpuMs(node.pid!)),
        nats: cpuMs(nats.pid),
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
    const deliveries = totalOf(last.counts) - totalOf(first.counts)
    const wallMs = last.at - first.at
    const nodeMs = last.nodes.map((ms, i) => ms - first.nodes[i]!)
    return {
      rate,
      cpuPerDelivery: (sum(nodeMs) * 1000) / deliveries,
      nodeCpu: nodeMs.map((ms) => ms / wallMs),
      natsPerDelivery: ((last.nats - first.nats) * 1000) / deliveries,
      natsCpu: (last.nats - first.nats) / wallMs,
      loadCpu: (last.load - first.load) / wallMs,
      coreIdle: (last.core.idle - first.core.idle) / (last.core.total - first.core.total),
      rssIdle,
      rssPeak: memoryMiB(subscribersNode).peak,
      lost: published * subscribers - totalOf(final),
      closed: sum(final.map((s) => s.closed))
    }
  } finally {
    for (const load of loads) kill(load.child)
    await stop(kind, setup)
  }
}

// ---------------------------------------------------------------------------
// 10,000 publishes

interface Burst extends BurstResult {
  /** CPU time each node used during the burst, ms (10 ms ticks), the subscribers' node first. */
  readonly nodeCpuMs: ReadonlyArray<number>
  readonly natsCpuMs: number
}

const burst = async (kind: Kind, round: number): Promise<Burst> => {
  const channel = `bench-${process.pid}-${round}-${kind.name.replace(/\W/g, "")}`
  const setup = await kind.start()
  let load: Load<BurstCommand, BurstReply> | undefined
  try {
    load = await Load.start<BurstCommand, BurstReply>(loadCpu, burstFile, [
      String(setup.publishPort),
      String(setup.subscribePort),
      channel,
      kind.positioned > 0 ? "positioned" : "plain"
    ])
    const probing = load
    await within(
      15_000,
      "the burst subscriber to receive a probe",
      (async () => {
        while ((await probing.request<{ type: "probed"; received: number }>({ type: "probe" })).received < 1) {
          await sleep(50)
        }
      })()
    )
    // let the probes in flight land; then bursts to warm up, then the measured ones
    await sleep(300)
    const once = async () => {
      const result = await load!.request<BurstResult>({ type: "burst", count: burstCount }, 20_000)
      await sleep(200)
      return result
    }
    for (let i = 0; i < burstWarmups; i++) {
      const warm = await once()
      // reported, not thrown: the measured bursts then say what they lost (and the summary warns)
      if (warm.received !== burstCount) {
        console.log(
          `${kind.name}: warm-up burst ${i + 1}: ${warm.received} of ${burstCount} delivered within the limit`
        )
      }
    }
    const nodesBefore = setup.nodes.map((node) => cpuMs(node.pid!))
    const natsBefore = cpuMs(nats.pid)
    const results: Array<BurstResult> = []
    for (let i = 0; i < burstsMeasured; i++) results.push(await once())
    // the CPU of the measured bursts (and the pauses between them, where the nodes sit idle), per burst
    return {
      ...medianBy(results, deliveredKey),
      nodeCpuMs: setup.nodes.map((node, i) => (cpuMs(node.pid!) - nodesBefore[i]!) / burstsMeasured),
      natsCpuMs: (cpuMs(nats.pid) - natsBefore) / burstsMeasured
    }
  } finally {
    if (load !== undefined) kill(load.child)
    await stop(kind, setup)
  }
}

// ---------------------------------------------------------------------------
// NATS only

const natsLoop = async (round: number): Promise<LoopResult> => {
  // the publishing client where a node would run, nats-server where it runs for the nodes
  const load = await Load.start<LoopCommand, LoopReply>(serverCpu, loopFile, [
    nats.url,
    `bench.loop.${process.pid}.${round}`
  ])
  try {
    for (let i = 0; i < burstWarmups; i++) await load.request({ type: "loop", count: burstCount }, 20_000)
    const results: Array<LoopResult> = []
    for (let i = 0; i < burstsMeasured; i++) {
      results.push(await load.request<LoopResult>({ type: "loop", count: burstCount }, 20_000))
      await sleep(100)
    }
    return medianBy(results, (run) => run.flushMs)
  } finally {
    kill(load.child)
  }
}

// ---------------------------------------------------------------------------
// report

const rate = (n: number) =>
  Number.isNaN(n) ? "-" : n >= 1e6 ? `${(n / 1e6).toFixed(2)}M/s` : `${(n / 1e3).toFixed(0)}k/s`
const percent = (share: number) => `${(share * 100).toFixed(0)}%`
// (a NaN crossed IPC as null)
const ms = (n: number | null) => n === null || Number.isNaN(n) ? "-" : `${n.toFixed(1)} ms`
const times = (n: number) => Number.isFinite(n) ? `${n.toFixed(2)}x` : "-"
/** Messages delivered per second of the burst; NaN when some were not delivered. */
const burstRate = (run: BurstResult) =>
  run.received === run.count && typeof run.deliveredMs === "number" ? run.count / (run.deliveredMs / 1000) : NaN

const describeFanOut = (run: FanOut) =>
  `${rate(run.rate)}, ${run.cpuPerDelivery.toFixed(2)} µs node CPU per delivery (nodes ${
    run.nodeCpu.map(percent).join(" + ")
  }, core idle ${percent(run.coreIdle)}), nats ${run.natsPerDelivery.toFixed(3)} µs (${percent(run.natsCpu)}), load ${
    percent(run.loadCpu)
  }, RSS ${run.rssIdle.toFixed(0)}->${run.rssPeak.toFixed(0)} MiB` +
  (run.lost > 0 || run.closed > 0 ? `, LOST ${run.lost} deliveries, ${run.closed} connections closed` : "")

const describeBurst = (run: Burst) =>
  `written ${ms(run.writtenMs)} (loop ${ms(run.loopMs)}), delivered ${ms(run.deliveredMs)}, ${
    rate(burstRate(run))
  }, node CPU ${run.nodeCpuMs.map((n) => n.toFixed(0)).join(" + ")} ms, nats ${run.natsCpuMs.toFixed(0)} ms` +
  (run.received !== run.count ? `, LOST ${run.count - run.received}` : "") +
  (run.closed ? ", the subscriber was closed by the server" : "")

const describeLoop = (run: LoopResult) =>
  `publish loop ${ms(run.publishMs)}, + flush ${ms(run.flushMs)}, delivered ${ms(run.deliveredMs)}, ${
    rate(run.count / (run.flushMs / 1000))
  } published` + (run.received !== run.count ? `, LOST ${run.count - run.received}` : "")

// the driver itself (and its threads) runs beside the load, off the server core
pinSelf(loadCpu)

// the run's nats-server (the functions above use it once it runs)
const nats = await startNats(natsCpu)
try {
  console.log(
    `cluster benchmark, node ${process.version}, nats-server ${nats.version}: one effect-lhttp node with the memory\n` +
      `bus beside two nodes on NATS (publisher on node B, subscribers on node A), ${rounds} interleaved rounds\n` +
      `fan-out: ${subscribers} subscribers, ${bodyBytes} B body, ${window} messages in flight, ` +
      `${warmupMs / 1000} s warm-up + ${measureMs / 1000} s measured\n` +
      `burst: ${burstCount} publishes from one connection to one subscriber; per run ${burstWarmups} warm-up ` +
      `bursts, then the median of ${burstsMeasured} (NATS only: the same)\n` +
      `one node and node A on CPU ${serverCpu}, node B on CPU ${nodeBCpu}, nats-server on CPU ${natsCpu}, ` +
      `load on CPU ${loadCpu}\n`
  )

  const fanOuts = new Map<string, Array<FanOut>>(kinds.map((kind) => [kind.name, []]))
  const bursts = new Map<string, Array<Burst>>(kinds.map((kind) => [kind.name, []]))
  const loops: Array<LoopResult> = []
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 === 1 ? kinds : [...kinds].reverse()
    for (const kind of order.filter((kind) => kind.fanOut)) {
      const run = await fanOut(kind, round)
      fanOuts.get(kind.name)!.push(run)
      console.log(`round ${round} fan-out   ${kind.name.padEnd(25)} ${describeFanOut(run)}`)
    }
    for (const kind of order.filter((kind) => kind.burst)) {
      const run = await burst(kind, round)
      bursts.get(kind.name)!.push(run)
      console.log(`round ${round} burst     ${kind.name.padEnd(25)} ${describeBurst(run)}`)
    }
    const loop = await natsLoop(round)
    loops.push(loop)
    console.log(`round ${round} NATS only           ${describeLoop(loop)}`)
  }

  const fan = Object.fromEntries(
    kinds.filter((kind) => kind.fanOut).map((kind) => [kind.name, medianBy(fanOuts.get(kind.name)!, (run) => run.rate)])
  )
  const bur = Object.fromEntries(
    kinds.filter((kind) => kind.burst).map((kind) => [kind.name, medianBy(bursts.get(kind.name)!, deliveredKey)])
  )
  const loop = medianBy(loops, (run) => run.flushMs)
  const one = { fan: fan["one node"]!, burst: bur["one node"]! }
  const two = { fan: fan["two nodes"]!, burst: bur["two nodes"]! }
  const kept = { fan: fan["two nodes, history"]!, burst: bur["two nodes, history"]! }
  const roomy = bur["history, 4 MiB outbound"]!
  const plainOnHistory = bur["history, plain subscriber"]!
  const mainJob = { fan: fan["main job, two nodes"]!, burst: bur["main job, two nodes"]! }

  writeResult({
    natsServer: nats.version,
    subscribers,
    bodyBytes,
    burstCount,
    rounds,
    fanout: fan,
    burst: bur,
    natsOnly: loop
  })

  console.log("\nfan-out, median round of each setup\n")
  console.table(Object.fromEntries(
    kinds.filter((kind) => kind.fanOut).map((kind) => {
      const run = fan[kind.name]!
      return [kind.name, {
        "deliveries/s": rate(run.rate),
        "node CPU/delivery": `${run.cpuPerDelivery.toFixed(2)} µs`,
        "node CPU": run.nodeCpu.map(percent).join(" + "),
        "core idle": percent(run.coreIdle),
        "nats CPU/delivery": kind.name === "one node" ? "-" : `${run.natsPerDelivery.toFixed(3)} µs`,
        "nats CPU": kind.name === "one node" ? "-" : percent(run.natsCpu),
        "load CPU": percent(run.loadCpu),
        "node A RSS idle->peak": `${run.rssIdle.toFixed(0)}->${run.rssPeak.toFixed(0)} MiB`,
        lost: run.lost
      }]
    })
  ))

  console.log(`\n${burstCount} publishes, median round of each setup (times from the first write)\n`)
  console.table(Object.fromEntries(
    kinds.filter((kind) => kind.burst).map((kind) => {
      const run = bur[kind.name]!
      return [kind.name, {
        "write loop": ms(run.loopMs),
        "all written": ms(run.writtenMs),
        "last delivered": ms(run.deliveredMs),
        "delivered/s": rate(burstRate(run)),
        "node CPU": `${run.nodeCpuMs.map((n) => n.toFixed(0)).join(" + ")} ms`,
        "nats CPU": kind.name === "one node" ? "-" : `${run.natsCpuMs.toFixed(0)} ms`,
        lost: run.count - run.received,
        "subscriber closed": run.closed ? "yes" : "no"
      }]
    })
  ))

  console.log(`\nNATS only: ${burstCount} publishes with @nats-io/transport-node, median round\n`)
  console.table({
    "NATS only": {
      "publish loop": ms(loop.publishMs),
      "publish + flush": ms(loop.flushMs),
      "published/s": rate(loop.count / (loop.flushMs / 1000)),
      "last delivered": ms(loop.deliveredMs),
      lost: loop.count - loop.received
    }
  })

  console.log("\ntwo nodes on NATS ÷ one node with the memory bus (higher is better for the cluster)\n")
  console.table({
    "fan-out deliveries/s": {
      "one node": rate(one.fan.rate),
      "two nodes": rate(two.fan.rate),
      "two ÷ one": times(two.fan.rate / one.fan.rate)
    },
    "fan-out deliveries per node CPU-second": {
      "one node": rate(1e6 / one.fan.cpuPerDelivery),
      "two nodes": rate(1e6 / two.fan.cpuPerDelivery),
      "two ÷ one": times(one.fan.cpuPerDelivery / two.fan.cpuPerDelivery)
    },
    "fan-out, nats-server's CPU counted too": {
      "one node": rate(1e6 / one.fan.cpuPerDelivery),
      "two nodes": rate(1e6 / (two.fan.cpuPerDelivery + two.fan.natsPerDelivery)),
      "two ÷ one": times(one.fan.cpuPerDelivery / (two.fan.cpuPerDelivery + two.fan.natsPerDelivery))
    },
    [`${burstCount} publishes: all written`]: {
      "one node": ms(one.burst.writtenMs),
      "two nodes": ms(two.burst.writtenMs),
      "two ÷ one": times(one.burst.writtenMs / two.burst.writtenMs)
    },
    [`${burstCount} publishes: last delivered`]: {
      "one node": ms(one.burst.deliveredMs),
      "two nodes": ms(two.burst.deliveredMs),
      "two ÷ one": times(one.burst.deliveredMs / two.burst.deliveredMs)
    }
  })
  // CPU per message of a burst, µs: the nodes' summed, and nats-server's
  const burstNodeUs = (run: Burst) => (sum(run.nodeCpuMs) * 1000) / run.count
  const burstNatsUs = (run: Burst) => (run.natsCpuMs * 1000) / run.count
  console.log(
    "\ntwo nodes, the channels keeping history in JetStream ÷ without history (higher is better for history;\n" +
      "fan-out: half the subscribers positioned; burst: the subscriber positioned; CPU per message: 10 ms ticks)\n"
  )
  console.table({
    "fan-out deliveries/s": {
      "without": rate(two.fan.rate),
      "history": rate(kept.fan.rate),
      "history ÷ without": times(kept.fan.rate / two.fan.rate)
    },
    "fan-out node CPU per delivery": {
      "without": `${two.fan.cpuPerDelivery.toFixed(3)} µs`,
      "history": `${kept.fan.cpuPerDelivery.toFixed(3)} µs`,
      "history ÷ without": times(two.fan.cpuPerDelivery / kept.fan.cpuPerDelivery)
    },
    "fan-out nats-server CPU per delivery": {
      "without": `${two.fan.natsPerDelivery.toFixed(3)} µs`,
      "history": `${kept.fan.natsPerDelivery.toFixed(3)} µs`,
      "history ÷ without": times(two.fan.natsPerDelivery / kept.fan.natsPerDelivery)
    },
    [`${burstCount} publishes: delivered/s`]: {
      "without": rate(burstRate(two.burst)),
      "history": rate(burstRate(kept.burst)) + (kept.burst.closed ? " (subscriber closed)" : ""),
      "history ÷ without": times(burstRate(kept.burst) / burstRate(two.burst))
    },
    [`${burstCount} publishes: delivered/s, to a plain subscriber`]: {
      "without": rate(burstRate(two.burst)),
      "history": rate(burstRate(plainOnHistory)) + (plainOnHistory.closed ? " (subscriber closed)" : ""),
      "history ÷ without": times(burstRate(plainOnHistory) / burstRate(two.burst))
    },
    [`${burstCount} publishes: delivered/s, 4 MiB outbound bound`]: {
      "without": rate(burstRate(two.burst)),
      "history": rate(burstRate(roomy)) + (roomy.closed ? " (subscriber closed)" : ""),
      "history ÷ without": times(burstRate(roomy) / burstRate(two.burst))
    },
    [`${burstCount} publishes: node CPU per message (4 MiB)`]: {
      "without": `${burstNodeUs(two.burst).toFixed(1)} µs`,
      "history": `${burstNodeUs(roomy).toFixed(1)} µs`,
      "history ÷ without": times(burstNodeUs(two.burst) / burstNodeUs(roomy))
    },
    [`${burstCount} publishes: nats-server CPU per message (4 MiB)`]: {
      "without": `${burstNatsUs(two.burst).toFixed(1)} µs`,
      "history": `${burstNatsUs(roomy).toFixed(1)} µs`,
      "history ÷ without": times(burstNatsUs(two.burst) / burstNatsUs(roomy))
    }
  })

  console.log(
    "\nthe main job on two nodes (history on every channel in JetStream, subscribers plain) ÷ the lean nodes\n"
  )
  console.table({
    "fan-out deliveries/s": {
      "two nodes": rate(two.fan.rate),
      "main job, two nodes": rate(mainJob.fan.rate),
      "main job ÷ lean": times(mainJob.fan.rate / two.fan.rate)
    },
    "fan-out node CPU per delivery": {
      "two nodes": `${two.fan.cpuPerDelivery.toFixed(3)} µs`,
      "main job, two nodes": `${mainJob.fan.cpuPerDelivery.toFixed(3)} µs`,
      "main job ÷ lean": times(two.fan.cpuPerDelivery / mainJob.fan.cpuPerDelivery)
    },
    [`${burstCount} publishes: delivered/s`]: {
      "two nodes": rate(burstRate(two.burst)),
      "main job, two nodes": rate(burstRate(mainJob.burst)) + (mainJob.burst.closed ? " (subscriber closed)" : ""),
      "main job ÷ lean": times(burstRate(mainJob.burst) / burstRate(two.burst))
    }
  })

  console.log(
    "for times, two ÷ one is one node's time over two nodes' time (a rate ratio). Node CPU is the effect-lhttp\n" +
      "processes' CPU time (softirq work done on their behalf included), both nodes summed for the cluster;\n" +
      "burst CPU is read in 10 ms ticks.\n"
  )

  const fanRuns = Array.from(fanOuts.values()).flat()
  if (fanRuns.some((run) => run.loadCpu > sum(run.nodeCpu))) {
    console.log("WARNING: in some fan-out run the load used more CPU than the nodes: the load may be the bottleneck")
  }
  if (fanRuns.some((run) => run.lost > 0 || run.closed > 0)) {
    console.log("WARNING: some fan-out deliveries were lost or connections closed (see the rounds above)")
  }
  const burstRuns = Array.from(bursts.values()).flat()
  if (burstRuns.some((run) => run.received !== run.count) || loops.some((run) => run.received !== run.count)) {
    console.log("WARNING: some burst or NATS-only messages were not delivered (see the rounds above)")
  }
} finally {
  nats.stop()
}
