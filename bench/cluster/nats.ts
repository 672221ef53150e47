/**
 * The benchmark's own nats-server: on a free loopback port, pinned to a core,
 * with JetStream (for the history rows), killed when the driver exits,
 * whatever happens.
 */
import { jetstreamManager } from "@nats-io/jetstream"
import { connect } from "@nats-io/transport-node"
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { freePort, within } from "../fanout/children.ts"

const candidates = [
  "/usr/sbin/nats-server",
  "/usr/local/sbin/nats-server",
  "/usr/bin/nats-server",
  "/usr/local/bin/nats-server"
]

/** Finds nats-server on PATH or in the sbin folders. */
const findNatsServer = (): string => {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    if (dir !== "" && existsSync(`${dir}/nats-server`)) return `${dir}/nats-server`
  }
  const found = candidates.find((path) => existsSync(path))
  if (found === undefined) throw new Error("nats-server is not installed: apt-get install nats-server")
  return found
}

/** A running nats-server. */
export interface NatsServer {
  readonly url: string
  readonly pid: number
  readonly version: string
  readonly stop: () => void
  /**
   * Deletes every JetStream stream: a history stream records every subject of
   * the bus, so one left over from a history setup would record the next
   * setup's messages too.
   */
  readonly deleteStreams: () => Promise<void>
}

const running = new Set<ChildProcess>()
const stores = new Set<string>()
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL")
  for (const dir of stores) rmSync(dir, { recursive: true, force: true })
})

/** Starts nats-server on `cpu`; resolves once it says it is ready. */
export const startNats = async (cpu: string): Promise<NatsServer> => {
  const port = await freePort()
  // JetStream on (for the history rows), storing in a folder of its own, removed at the end
  const storeDir = mkdtempSync(Path.join(tmpdir(), "lhttp-bench-nats-"))
  stores.add(storeDir)
  const args = [
    "-c",
    cpu,
    findNatsServer(),
    "-a",
    "127.0.0.1",
    "-p",
    String(port),
    "-n",
    "lhttp-bench",
    "-js",
    "-sd",
    storeDir
  ]
  const child = spawn("taskset", args, { stdio: ["ignore", "pipe", "pipe"] })
  running.add(child)
  const stop = () => {
    running.delete(child)
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
    rmSync(storeDir, { recursive: true, force: true })
  }
  try {
    const output = await within(
      10_000,
      "nats-server to be ready",
      new Promise<string>((resolve, reject) => {
        let output = ""
        const onData = (chunk: Buffer) => {
          output += chunk.toString()
          if (output.includes("Server is ready")) resolve(output)
        }
        child.stdout.on("data", onData)
        child.stderr.on("data", onData)
        child.once("exit", (code) => reject(new Error(`nats-server exited with ${code}:\n${output}`)))
      })
    )
    // keep reading its output, so that a full pipe never blocks it
    child.stdout.resume()
    child.stderr.resume()
    const url = `nats://127.0.0.1:${port}`
    const deleteStreams = async () => {
      const nc = await connect({ servers: url })
      try {
        const jsm = await jetstreamManager(nc)
        for await (const name of jsm.streams.names()) await jsm.streams.delete(name)
      } finally {
        await nc.close()
      }
    }
    return { url, pid: child.pid!, version: /Version:\s+(\S+)/.exec(output)?.[1] ?? "?", stop, deleteStreams }
  } catch (error) {
    stop()
    throw error
  }
}
