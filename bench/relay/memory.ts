/**
 * What the idle-connection measurements (bench/relay.ts, bench/connections.ts)
 * read of a server's memory: its RSS and heap after the collections of the
 * preloaded GC hook (bench/relay/gc-hook.ts), asked for with SIGUSR2; and how
 * idle connections are spread over load processes.
 */
import type { ChildProcess } from "node:child_process"
import { fileURLToPath } from "node:url"
import { within } from "../fanout/children.ts"

/** The hook to preload into a server whose memory is read. */
export const gcHookFile = fileURLToPath(new URL("./gc-hook.ts", import.meta.url))

/** The server's environment for memory readings: `--expose-gc` and the hook preloaded, beside NODE_OPTIONS. */
export const gcHookEnv = (): NodeJS.ProcessEnv => ({
  NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --expose-gc --import ${gcHookFile}`.trim()
})

/** What the GC hook prints: memory after a regular full collection, then after a "last resort" one (bytes). */
interface GcReport {
  readonly gc: boolean
  readonly rss: number
  readonly heapUsed: number
  readonly rssReduced: number
  readonly heapReduced: number
}

/** Asks the server to collect garbage (SIGUSR2 to the preloaded hook) and waits for its report. */
const collect = (child: ChildProcess): Promise<GcReport> => {
  const stdout = child.stdout!
  let output = ""
  let listener: ((chunk: string) => void) | undefined
  return within(
    10_000,
    "the server's GC report",
    new Promise<GcReport>((resolve) => {
      listener = (chunk: string) => {
        output += chunk
        const match = /relay-memory (\{.*\})\n/.exec(output)
        if (match !== null) resolve(JSON.parse(match[1]!) as GcReport)
      }
      stdout.on("data", listener)
      child.kill("SIGUSR2")
    })
  ).finally(() => stdout.off("data", listener!))
}

/** The server's memory after the hook's collections (see bench/relay/gc-hook.ts), MiB. */
export const memoryAfterGc = async (child: ChildProcess) => {
  const report = await collect(child)
  if (!report.gc) throw new Error("the server has no gc(): --expose-gc did not take")
  return {
    rss: report.rss / 2 ** 20,
    heap: report.heapUsed / 2 ** 20,
    rssReduced: report.rssReduced / 2 ** 20,
    heapReduced: report.heapReduced / 2 ** 20
  }
}

/**
 * The server's memory before its idle connections come: the floor its RSS and
 * heap settle at, read after the hook's last-resort collection (MiB). A
 * regular collection keeps the heap pages the server's start-up filled (45
 * MiB for effect-lhttp, 6 MiB for a raw `ws` server), and the first
 * last-resort collection gives them back for good: the reading after the
 * connections, taken later, no longer holds them. Taken as the start, they
 * would be subtracted from what the connections added.
 */
export const memoryFloor = async (child: ChildProcess) => {
  const memory = await memoryAfterGc(child)
  return { ...memory, rss: memory.rssReduced, heap: memory.heapReduced }
}

/** `total` connections spread over `parts` processes. */
export const spread = (total: number, parts: number): Array<number> =>
  Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0))
