/**
 * Real `nats-server` processes for tests: one server (optionally with its HTTP
 * monitoring port, or requiring a token or a user and password), or a cluster
 * joined by routes, on free loopback ports, stopped when the test's scope
 * closes.
 */
import { Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { freePort } from "./process.ts"

const candidates = [
  "/usr/sbin/nats-server",
  "/usr/local/sbin/nats-server",
  "/usr/bin/nats-server",
  "/usr/local/bin/nats-server"
]

/** Finds nats-server on PATH or in the sbin folders; fails naming the install command. */
export const findNatsServer = (): string => {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    if (dir !== "" && existsSync(`${dir}/nats-server`)) return `${dir}/nats-server`
  }
  const found = candidates.find((path) => existsSync(path))
  if (found === undefined) {
    throw new Error("nats-server is not installed: apt-get install nats-server (the cluster tests run real servers)")
  }
  return found
}

/** A running nats-server. */
export interface NatsServer {
  readonly port: number
  readonly url: string
  readonly clusterPort: number | undefined
  /** The monitoring endpoint (`http://127.0.0.1:<port>`, serving `/connz`, `/subsz`…), when asked for. */
  readonly monitor: string | undefined
  /** Kills the process (SIGKILL), as a crash would. */
  readonly kill: () => Promise<void>
  /** Starts it again on the same ports (after `kill`). */
  readonly restart: () => Promise<void>
  /** Stops the process (SIGSTOP): its connections stay open but nothing is answered, until `resume`. */
  readonly pause: () => void
  /** Lets a paused process go on (SIGCONT). */
  readonly resume: () => void
}

interface Spec {
  readonly port: number
  readonly clusterPort?: number | undefined
  readonly routes?: ReadonlyArray<number> | undefined
  readonly monitorPort?: number | undefined
  readonly auth?: Auth | undefined
  /** JetStream on, storing in this folder. */
  readonly storeDir?: string | undefined
  readonly name: string
}

/** What a server requires of its clients: a token, or a user and password. */
export type Auth = { readonly token: string } | { readonly user: string; readonly pass: string }

const launch = (spec: Spec): Promise<ChildProcess> =>
  new Promise((resolve, reject) => {
    const args = ["-a", "127.0.0.1", "-p", String(spec.port), "-n", spec.name]
    if (spec.monitorPort !== undefined) args.push("-m", String(spec.monitorPort))
    if (spec.storeDir !== undefined) args.push("-js", "-sd", spec.storeDir)
    if (spec.auth !== undefined) {
      if ("token" in spec.auth) args.push("--auth", spec.auth.token)
      else args.push("--user", spec.auth.user, "--pass", spec.auth.pass)
    }
    if (spec.clusterPort !== undefined) {
      args.push("--cluster_name", "lhttp-test", "--cluster", `nats://127.0.0.1:${spec.clusterPort}`)
      if (spec.routes !== undefined && spec.routes.length > 0) {
        args.push("--routes", spec.routes.map((port) => `nats://127.0.0.1:${port}`).join(","))
      }
    }
    const child = spawn(findNatsServer(), args, { stdio: ["ignore", "pipe", "pipe"] })
    let output = ""
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`nats-server did not become ready:\n${output}`))
    }, 10_000)
    const onData = (chunk: Buffer) => {
      output += chunk.toString()
      if (output.includes("Server is ready")) {
        clearTimeout(timer)
        child.stdout?.off("data", onData)
        child.stderr?.off("data", onData)
        resolve(child)
      }
    }
    child.stdout?.on("data", onData)
    child.stderr?.on("data", onData)
    child.once("exit", (code) => {
      clearTimeout(timer)
      reject(new Error(`nats-server exited with ${code}:\n${output}`))
    })
  })

const stop = (child: ChildProcess | undefined): Promise<void> =>
  new Promise((resolve) => {
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once("exit", () => resolve())
    child.kill("SIGKILL")
  })

const makeServer = (spec: Spec, child: ChildProcess | undefined): NatsServer => {
  let current = child
  return {
    port: spec.port,
    url: `nats://127.0.0.1:${spec.port}`,
    clusterPort: spec.clusterPort,
    monitor: spec.monitorPort === undefined ? undefined : `http://127.0.0.1:${spec.monitorPort}`,
    kill: async () => {
      await stop(current)
      current = undefined
    },
    restart: async () => {
      current = await launch(spec)
    },
    pause: () => {
      if (current?.pid === undefined) return
      current.kill("SIGSTOP")
      // stopped once the kernel says so (state T), not when the signal is sent
      const deadline = Date.now() + 2_000
      while (Date.now() < deadline && readFileSync(`/proc/${current.pid}/stat`, "utf8").split(") ")[1]?.[0] !== "T") {
        // the signal is on its way
      }
    },
    resume: () => void current?.kill("SIGCONT")
  }
}

/**
 * Starts one nats-server until the scope closes: with its monitoring port if `monitor`, requiring
 * `auth` if given, with JetStream (stored in a temporary folder, removed after) if `jetstream`.
 */
export const natsServerWith = (
  options: { readonly monitor?: boolean; readonly auth?: Auth; readonly jetstream?: boolean } = {}
) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const spec: Spec = {
        port: await freePort(),
        name: "lhttp-test-solo",
        monitorPort: options.monitor === true ? await freePort() : undefined,
        auth: options.auth,
        storeDir: options.jetstream === true ? mkdtempSync(Path.join(tmpdir(), "lhttp-nats-")) : undefined
      }
      return { server: makeServer(spec, await launch(spec)), storeDir: spec.storeDir }
    }),
    ({ server, storeDir }) =>
      Effect.promise(async () => {
        await server.kill()
        if (storeDir !== undefined) rmSync(storeDir, { recursive: true, force: true })
      })
  ).pipe(Effect.map(({ server }) => server))

/** Starts one nats-server until the scope closes. */
export const natsServer = natsServerWith()

/** Starts a cluster of `size` nats-servers joined by routes until the scope closes. */
export const natsCluster = (size: number) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const specs: Array<Spec> = []
      for (let i = 0; i < size; i++) {
        specs.push({ port: await freePort(), clusterPort: await freePort(), name: `lhttp-test-${i}` })
      }
      const withRoutes = specs.map((spec) => ({
        ...spec,
        routes: specs.filter((other) => other !== spec).map((other) => other.clusterPort!)
      }))
      const children = await Promise.all(withRoutes.map(launch))
      return withRoutes.map((spec, i) => makeServer(spec, children[i]!))
    }),
    (servers) => Effect.promise(() => Promise.all(servers.map((server) => server.kill())).then(() => undefined))
  )

/** A server whose port is reserved but which is not started until `restart` (for "NATS down at start"). */
export const natsServerLater = Effect.acquireRelease(
  Effect.promise(async () => makeServer({ port: await freePort(), name: "lhttp-test-later" }, undefined)),
  (server) => Effect.promise(() => server.kill())
)

/**
 * A server whose port is reserved but which is not started until `restart`, with JetStream (stored in a
 * temporary folder, removed after) if `jetstream`: for "NATS comes after the node".
 */
export const natsServerLaterWith = (options: { readonly jetstream?: boolean } = {}) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const storeDir = options.jetstream === true ? mkdtempSync(Path.join(tmpdir(), "lhttp-nats-")) : undefined
      return { server: makeServer({ port: await freePort(), name: "lhttp-test-later", storeDir }, undefined), storeDir }
    }),
    ({ server, storeDir }) =>
      Effect.promise(async () => {
        await server.kill()
        if (storeDir !== undefined) rmSync(storeDir, { recursive: true, force: true })
      })
  ).pipe(Effect.map(({ server }) => server))
