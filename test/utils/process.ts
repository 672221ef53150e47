/**
 * Spawning example programs for tests: start one, wait for a line of its
 * output, stop it, or run one to completion. Every program is started with
 * the Node binary that runs the tests.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"

// Node's on-disk compile cache makes every start after the first faster (the
// programs load all of Effect); a program never depends on it.
const compileCache = Path.join(Os.tmpdir(), "effect-lhttp-test-compile-cache")

/** How a program ended. */
export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

/** A running program. */
export interface Program {
  readonly child: ChildProcess
  /** Everything it wrote so far, stdout and stderr interleaved. */
  readonly output: () => string
  /** Settles when the program has exited. */
  readonly exited: Promise<Exit>
  /** Resolves with the first output line matching `pattern`; rejects, with the output, on timeout or exit. */
  readonly waitFor: (pattern: RegExp, timeoutMs?: number) => Promise<string>
  /** Sends `signal` and waits for the exit; kills with SIGKILL after `graceMs`. */
  readonly stop: (signal?: NodeJS.Signals, graceMs?: number) => Promise<Exit>
}

export interface Options {
  readonly args?: ReadonlyArray<string>
  readonly env?: Readonly<Record<string, string>>
  readonly cwd?: string
}

/** Starts `script` with `process.execPath`. */
export const start = (script: string, options: Options = {}): Program => {
  const child = spawn(process.execPath, [script, ...(options.args ?? [])], {
    cwd: options.cwd,
    env: { NODE_COMPILE_CACHE: compileCache, ...process.env, NO_COLOR: "1", ...options.env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  const listeners = new Set<() => void>()
  const onData = (chunk: Buffer) => {
    output += chunk.toString("utf8")
    for (const listener of listeners) listener()
  }
  child.stdout!.on("data", onData)
  child.stderr!.on("data", onData)
  let exit: Exit | undefined
  const exited = new Promise<Exit>((resolve) => {
    child.on("exit", (code, signal) => {
      exit = { code, signal }
      resolve(exit)
      for (const listener of listeners) listener()
    })
    child.on("error", (error) => {
      output += `\n[spawn error] ${error.message}\n`
      exit = { code: null, signal: null }
      resolve(exit)
      for (const listener of listeners) listener()
    })
  })

  const waitFor = (pattern: RegExp, timeoutMs = 10_000) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const line = output.split("\n").find((line) => pattern.test(line))
        if (line !== undefined) return done(() => resolve(line))
        if (exit !== undefined) {
          return done(() =>
            reject(
              new Error(`${script} exited (${JSON.stringify(exit)}) before printing ${pattern}; output:\n${output}`)
            )
          )
        }
      }
      const timer = setTimeout(
        () =>
          done(() =>
            reject(new Error(`${script} did not print ${pattern} within ${timeoutMs} ms; output:\n${output}`))
          ),
        timeoutMs
      )
      const done = (settle: () => void) => {
        clearTimeout(timer)
        listeners.delete(check)
        settle()
      }
      listeners.add(check)
      check()
    })

  const stop = async (signal: NodeJS.Signals = "SIGTERM", graceMs = 5_000): Promise<Exit> => {
    if (exit !== undefined) return exit
    child.kill(signal)
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs)
    const result = await exited
    clearTimeout(timer)
    return result
  }

  return { child, output: () => output, exited, waitFor, stop }
}

/** Runs `script` to completion; kills it after `timeoutMs`. */
export const run = async (
  script: string,
  options: Options & { readonly timeoutMs?: number } = {}
): Promise<Exit & { readonly output: string }> => {
  const program = start(script, options)
  const timer = setTimeout(() => program.child.kill("SIGKILL"), options.timeoutMs ?? 15_000)
  const exit = await program.exited
  clearTimeout(timer)
  return { ...exit, output: program.output() }
}

// ports handed out by this process: never twice
const handedOut = new Set<number>()

// a port is free if it can be listened on now
const probe = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const server = Net.createServer()
    server.unref()
    server.once("error", () => resolve(false))
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)))
  })

/**
 * A TCP port on 127.0.0.1 that was free a moment ago, for a server a test
 * starts later (nats-server, the main job). It is drawn from 20000-32767,
 * below the kernel's ephemeral range (32768-60999 here), so that no client
 * socket of the suite takes it before the server binds it, and never handed
 * out twice by one process.
 */
export const freePort = async (): Promise<number> => {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_768)
    if (handedOut.has(port)) continue
    handedOut.add(port)
    if (await probe(port)) return port
  }
  throw new Error("no free port in 20000-32767")
}
