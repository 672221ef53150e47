/**
 * The driver's child processes: each runs under `taskset` on its core, is
 * tracked, and is killed when the run ends or the driver exits, whatever
 * happens.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { createServer } from "node:net"
import type { Command, Reply } from "./ipc.ts"

const children = new Set<ChildProcess>()

/** Kills a child (SIGKILL): benchmark processes have nothing to save. */
export const kill = (child: ChildProcess): void => {
  children.delete(child)
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
}

process.on("exit", () => {
  for (const child of children) kill(child)
})
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => process.exit(130))

/** Fails with a message naming what took too long. */
export const within = <A>(ms: number, what: string, promise: Promise<A>): Promise<A> => {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** A free port on 127.0.0.1. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() =>
        typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))
      )
    }).on("error", reject)
  })

const pinned = (
  cpu: string,
  file: string,
  args: ReadonlyArray<string>,
  options: { readonly env?: NodeJS.ProcessEnv; readonly ipc?: boolean }
): ChildProcess => {
  // taskset execs node in place, so the child's pid is node's pid
  const child = spawn("taskset", ["-c", cpu, process.execPath, file, ...args], {
    env: options.env ?? process.env,
    stdio: options.ipc === true ? ["ignore", "inherit", "inherit", "ipc"] : ["ignore", "pipe", "inherit"]
  })
  children.add(child)
  return child
}

/**
 * Starts a server on `cpu` with $PORT set; resolves once it prints a line with "listening" (and
 * every other `ready` string, when given). `env` adds variables.
 */
export const startServer = (
  cpu: string,
  file: string,
  port: number,
  options?: { readonly env?: NodeJS.ProcessEnv; readonly ready?: ReadonlyArray<string> }
): Promise<ChildProcess> => {
  const child = pinned(cpu, file, [], { env: { ...process.env, ...options?.env, PORT: String(port) } })
  const ready = ["listening", ...(options?.ready ?? [])]
  return within(
    15_000,
    `${file} to listen`,
    new Promise((resolve, reject) => {
      let output = ""
      child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
        output += chunk
        if (ready.every((text) => output.includes(text))) resolve(child)
      })
      child.on("exit", (code) => reject(new Error(`${file} exited with ${code} before listening:\n${output}`)))
    })
  )
}

/**
 * A load process on `cpu`, spoken to over IPC: one reply per command, in order. The fan-out
 * load's commands and replies by default; other load processes name their own.
 */
export class Load<C extends { readonly type: string } = Command, Rp extends { readonly type: string } = Reply> {
  readonly child: ChildProcess
  readonly #waiting: Array<(reply: Rp) => void> = []

  private constructor(cpu: string, file: string, args: ReadonlyArray<string>) {
    this.child = pinned(cpu, file, args, { ipc: true })
    this.child.on("message", (reply: Rp) => this.#waiting.shift()?.(reply))
  }

  /** Starts a load process; resolves once it says it is ready. */
  static async start<
    C extends { readonly type: string } = Command,
    Rp extends { readonly type: string } = Reply
  >(cpu: string, file: string, args: ReadonlyArray<string>): Promise<Load<C, Rp>> {
    const load = new Load<C, Rp>(cpu, file, args)
    const exited = new Promise<never>((_, reject) =>
      load.child.on("exit", (code) => reject(new Error(`${file} exited with ${code}`)))
    )
    exited.catch(() => {})
    await within(30_000, `${file} to connect`, Promise.race([load.#next(), exited]))
    return load
  }

  get pid(): number {
    return this.child.pid!
  }

  /** Sends a command and waits for its reply (10 s at most, unless told). */
  request<R extends Rp>(command: C, timeoutMs = 10_000): Promise<R> {
    this.child.send(command)
    return within(timeoutMs, `the reply to ${command.type}`, this.#next() as Promise<R>)
  }

  #next(): Promise<Rp> {
    return new Promise((resolve) => this.#waiting.push(resolve))
  }
}

/**
 * Pins this process and all its threads to `cpu`. `taskset -a` lists the
 * threads and then sets each: a thread that ends in between makes it fail, so
 * it is tried a few times before the run goes on unpinned (with a warning).
 */
export const pinSelf = (cpu: string): void => {
  for (let attempt = 1; attempt <= 5; attempt++) {
    try {
      execFileSync("taskset", ["-a", "-pc", cpu, String(process.pid)], { stdio: "ignore" })
      return
    } catch (error) {
      if (attempt === 5) console.log(`WARNING: could not pin the driver to CPU ${cpu}: ${String(error)}`)
    }
  }
}

/**
 * Bounds a whole benchmark run: past `ms` it says so and exits with 1 (the exit hooks kill every
 * child).
 */
export const giveUpAfter = (what: string, ms: number): void => {
  setTimeout(() => {
    console.error(`${what}: not done within ${ms / 1000} s, giving up`)
    process.exit(1)
  }, ms).unref()
}

let network = 0

/**
 * The next loopback network (1 to 250) for a measurement's connections to come from
 * (127.0.<n>.x): the source ports the measurement before left in TIME_WAIT (tens of thousands of
 * them) do not slow its connects down.
 */
export const nextLoopbackNetwork = (): number => network = (network % 250) + 1
