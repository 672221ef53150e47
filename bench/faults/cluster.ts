/**
 * The fault campaign's cluster, all real processes on loopback: three
 * `nats-server`s joined by routes with JetStream (not advertising the
 * cluster to clients, so that a node reaches NATS only through its proxies),
 * three effect-lhttp nodes (the main job, `src/main.ts`, as `npm start`
 * runs it, with `LHTTP_NATS_REPLICAS=3`), each node's NATS connection
 * through proxies of its own (one per nats-server: a cut is all three), and
 * the ways to fault them: a node stopped (SIGTERM) or killed (SIGKILL) and
 * started again, a nats-server killed and started again, a node cut from
 * NATS.
 */
import { jetstreamManager } from "@nats-io/jetstream"
import { connect as natsConnect } from "@nats-io/transport-node"
import { type ChildProcess, spawn } from "node:child_process"
import { createWriteStream, existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { freePort } from "../fanout/children.ts"
import { Proxy } from "./proxy.ts"
import * as Timings from "./timings.ts"

const natsCandidates = ["/usr/sbin/nats-server", "/usr/local/sbin/nats-server", "/usr/bin/nats-server"]
const root = fileURLToPath(new URL("../..", import.meta.url))

/** Waits until `check` holds, polling every 50 ms; fails naming `what` after `ms`. */
export const until = async (check: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> => {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

const exited = (child: ChildProcess): Promise<void> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => child.once("exit", () => resolve()))

/** One nats-server of the cluster. */
export interface NatsServer {
  readonly name: string
  readonly port: number
  child: ChildProcess | undefined
}

/** One effect-lhttp node. */
export interface Node {
  readonly name: string
  readonly port: number
  /** The proxies in front of its NATS connection, one per nats-server. */
  readonly natsProxies: ReadonlyArray<Proxy>
  child: ChildProcess | undefined
  /** Whether it is up and ready (clients' proxies route only to those). */
  up: boolean
}

/** The running cluster. */
export interface Cluster {
  readonly nats: ReadonlyArray<NatsServer>
  readonly nodes: ReadonlyArray<Node>
  /** The ports of the nodes that are up. */
  readonly livePorts: () => ReadonlyArray<number>
  readonly stopNode: (node: Node, signal: "SIGTERM" | "SIGKILL") => Promise<void>
  readonly startNode: (node: Node) => Promise<void>
  readonly killNats: (server: NatsServer) => Promise<void>
  readonly startNats: (server: NatsServer) => Promise<void>
  /** From now on, the nodes' timings of reconnect steps are counted (timings.ts). */
  readonly startTimings: () => Promise<void>
  /** What the nodes timed since `startTimings`, those stopped meanwhile included. */
  readonly timings: () => Promise<Timings.Timings>
  /** The nats-server that leads the history stream now. */
  readonly streamLeader: () => Promise<NatsServer>
  readonly close: () => Promise<void>
}

/** Starts the cluster; `logs` is the folder its processes write their output to. */
export const start = async (logs: string): Promise<Cluster> => {
  const natsServer = natsCandidates.find((path) => existsSync(path))
  if (natsServer === undefined) throw new Error("nats-server is not installed: apt-get install nats-server")
  const store = mkdtempSync(Path.join(tmpdir(), "lhttp-faults-"))
  const specs = await Promise.all([0, 1, 2].map(async (k) => ({
    name: `nats-${k}`,
    port: await freePort(),
    clusterPort: await freePort()
  })))
  const launchNats = (k: number): Promise<ChildProcess> =>
    new Promise((resolve, reject) => {
      const spec = specs[k]!
      const routes = specs.filter((other) => other !== spec).map((other) => `nats://127.0.0.1:${other.clusterPort}`)
      const child = spawn(natsServer, [
        "-a",
        "127.0.0.1",
        "-p",
        String(spec.port),
        "-n",
        spec.name,
        "-js",
        "-sd",
        Path.join(store, spec.name),
        "--cluster_name",
        "faults",
        "--cluster",
        `nats://127.0.0.1:${spec.clusterPort}`,
        "--routes",
        routes.join(","),
        "--no_advertise=true"
      ], { stdio: ["ignore", "pipe", "pipe"] })
      const log = createWriteStream(Path.join(logs, `${spec.name}.log`), { flags: "a" })
      let output = ""
      const onData = (chunk: Buffer) => {
        log.write(chunk)
        if (output.length < 100_000) output += chunk.toString()
        if (output.includes("Server is ready")) {
          output = "\u0000ready"
          resolve(child)
        }
      }
      child.stdout!.on("data", onData)
      child.stderr!.on("data", onData)
      child.once("exit", (code) => {
        if (output !== "\u0000ready") reject(new Error(`${spec.name} exited with ${code}`))
      })
    })
  const nats: Array<NatsServer> = await Promise.all(
    specs.map(async (spec, k) => ({ name: spec.name, port: spec.port, child: await launchNats(k) }))
  )

  const nodes: Array<Node> = await Promise.all(["a", "b", "c"].map(async (name) => ({
    name: `node-${name}`,
    port: await freePort(),
    natsProxies: await Promise.all(nats.map((server) => new Proxy(() => [server.port]).listen())),
    child: undefined,
    up: false
  })))

  const ready = async (node: Node) => {
    try {
      return (await fetch(`http://127.0.0.1:${node.port}/readyz`)).status === 200
    } catch {
      return false
    }
  }

  const startNode = async (node: Node) => {
    const log = createWriteStream(Path.join(logs, `${node.name}.log`), { flags: "a" })
    const child = spawn(process.execPath, [Path.join(root, "src/main.ts")], {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        ...process.env,
        LHTTP_PORT: String(node.port),
        LHTTP_HOST: "127.0.0.1",
        LHTTP_NATS_URL: node.natsProxies.map((proxy) => `nats://127.0.0.1:${proxy.port}`).join(","),
        LHTTP_NATS_NAME: node.name,
        LHTTP_NATS_REPLICAS: "3",
        // the campaign's retention: every message of its runs is kept (a client away is never past it)
        LHTTP_HISTORY: "h-:100000:30m"
      }
    })
    child.stdout!.pipe(log)
    child.stderr!.pipe(log)
    node.child = child
    await until(() => ready(node), `${node.name} to be ready`, 60_000)
    node.up = true
  }

  // the nodes' timings: what the stopped ones counted, and what each running one had counted at the start
  let counted = Timings.empty()
  const baselines = new Map<Node, Timings.Timings>()
  const takeTimings = async (node: Node) => {
    Timings.add(counted, await Timings.scrape(node.port))
    Timings.add(counted, baselines.get(node) ?? Timings.empty(), -1)
    // a node started again counts from 0
    baselines.delete(node)
  }

  const stopNode = async (node: Node, signal: "SIGTERM" | "SIGKILL") => {
    const child = node.child
    if (child === undefined) return
    await takeTimings(node)
    // a node that stops is out of the balancer at once, as a load balancer's health check would take it out
    node.up = false
    child.kill(signal)
    await exited(child)
    node.child = undefined
  }

  for (const node of nodes) await startNode(node)

  const streamLeader = async () => {
    for (const server of nats) {
      if (server.child === undefined) continue
      const nc = await natsConnect({ servers: `nats://127.0.0.1:${server.port}` })
      try {
        const info = await (await jetstreamManager(nc)).streams.info("LHTTP_HISTORY")
        const leader = nats.find((candidate) => candidate.name === info.cluster?.leader)
        if (leader !== undefined) return leader
      } finally {
        await nc.close()
      }
    }
    throw new Error("no nats-server leads the history stream")
  }

  return {
    nats,
    nodes,
    livePorts: () => nodes.filter((node) => node.up).map((node) => node.port),
    stopNode,
    startNode,
    killNats: async (server) => {
      const child = server.child
      if (child === undefined) return
      child.kill("SIGKILL")
      await exited(child)
      server.child = undefined
    },
    startNats: async (server) => {
      server.child = await launchNats(nats.indexOf(server))
    },
    streamLeader,
    startTimings: async () => {
      counted = Timings.empty()
      for (const node of nodes) if (node.child !== undefined) baselines.set(node, await Timings.scrape(node.port))
    },
    timings: async () => {
      for (const node of nodes) if (node.child !== undefined) await takeTimings(node)
      return counted
    },
    close: async () => {
      for (const node of nodes) await stopNode(node, "SIGKILL")
      for (const node of nodes) for (const proxy of node.natsProxies) await proxy.close()
      for (const server of nats) {
        server.child?.kill("SIGKILL")
        if (server.child !== undefined) await exited(server.child)
      }
      rmSync(store, { recursive: true, force: true })
    }
  }
}
