/**
 * Preloaded into a server under test for the memory measurement
 * (NODE_OPTIONS="--expose-gc --import <this file>"), so the servers stay as
 * they are: on SIGUSR2 it collects garbage and prints one line,
 * `relay-memory {json}`, with the process's memory after two kinds of
 * collection, each followed by half a second for the allocator to settle:
 *
 * - `rss`, `heapUsed`: after a regular full GC (twice: the first may leave
 *   objects only a second frees). V8 keeps the heap pages it committed, such
 *   as the young generation grown while connections were opened: what the
 *   process holds.
 * - `rssReduced`, `heapReduced`: after V8's "last resort" collection, the one
 *   it runs under memory pressure, which also gives those pages back: what
 *   the live objects hold. It is the steadier figure from run to run.
 */
type Gc = (options?: { type: "major"; execution: "sync"; flavor: "regular" | "last-resort" }) => void

const settle = () => new Promise((resolve) => setTimeout(resolve, 500))

process.on("SIGUSR2", async () => {
  const gc = (globalThis as { gc?: Gc }).gc
  gc?.()
  gc?.()
  await settle()
  const regular = process.memoryUsage()
  gc?.({ type: "major", execution: "sync", flavor: "last-resort" })
  gc?.({ type: "major", execution: "sync", flavor: "last-resort" })
  await settle()
  const reduced = process.memoryUsage()
  process.stdout.write(
    `relay-memory ${
      JSON.stringify({
        gc: gc !== undefined,
        rss: regular.rss,
        heapUsed: regular.heapUsed,
        rssReduced: reduced.rss,
        heapReduced: reduced.heapUsed
      })
    }\n`
  )
})
