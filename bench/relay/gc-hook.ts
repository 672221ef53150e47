/**
 * Preloaded into a server under test for the memory measurement
 * (NODE_OPTIONS="--expose-gc --import <this file>"), so the servers stay as
 * they are: on SIGUSR2 it runs a full garbage collection and prints one line,
 * `relay-memory {json}`, with the process's memory usage after it.
 */
process.on("SIGUSR2", () => {
  const gc = (globalThis as { gc?: () => void }).gc
  // twice: the first may leave objects that only a second full collection frees (weak refs, finalizers)
  gc?.()
  gc?.()
  const usage = process.memoryUsage()
  process.stdout.write(
    `relay-memory ${
      JSON.stringify({
        gc: gc !== undefined,
        rss: usage.rss,
        heapUsed: usage.heapUsed,
        heapTotal: usage.heapTotal,
        external: usage.external
      })
    }\n`
  )
})
