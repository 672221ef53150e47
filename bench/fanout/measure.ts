/**
 * What both drivers measure with: waiting for subscriptions to settle, and
 * for the last deliveries to arrive.
 */
import { setTimeout as sleep } from "node:timers/promises"
import type { Load } from "./children.ts"
import { within } from "./children.ts"
import type { Stats } from "./ipc.ts"

/** Now, in milliseconds, on a monotonic clock. */
export const now = () => performance.timeOrigin + performance.now()

/** The sum of numbers. */
export const sum = (values: ReadonlyArray<number>) => values.reduce((a, b) => a + b, 0)

export type Counts = ReadonlyArray<Stats>
export const totalOf = (counts: Counts) => sum(counts.map((s) => s.total))

/** Subscriptions are not acknowledged: probes until every connection has received one, then waits for quiet. */
export const settle = async (stats: () => Promise<Counts>, publisher: Load) => {
  await within(
    15_000,
    "every subscriber to receive a probe",
    (async () => {
      while (!(await stats()).every((s) => s.min >= 1)) {
        await publisher.request({ type: "probe" })
        await sleep(50)
      }
    })()
  )
  for (let before = -1, after = totalOf(await stats()); before !== after; after = totalOf(await stats())) {
    before = after
    await sleep(100)
  }
}

/** Waits until every connection has all `published` messages, or nothing has moved for a second. */
export const drain = async (stats: () => Promise<Counts>, published: number): Promise<Counts> => {
  let counts = await stats()
  let quietSince = now()
  while (!counts.every((s) => s.min >= published) && now() - quietSince < 1000) {
    await sleep(50)
    const next = await stats()
    if (totalOf(next) !== totalOf(counts)) quietSince = now()
    counts = next
  }
  return counts
}

/** What `measure` samples at both ends of its window: the counts, and the caller's own readings. */
export interface Sample {
  readonly at: number
  readonly counts: Counts
}

/**
 * One measured window: starts the publisher with `window` messages in flight,
 * warms up, samples, waits `measureMs`, samples again, stops the publisher and
 * waits for the last deliveries. The rate sums each load process's count over
 * its own clock, so that the late answer of a busy process costs nothing.
 */
export const measure = async <S extends Sample>(options: {
  readonly publisher: Load
  readonly stats: () => Promise<Counts>
  readonly sample: () => Promise<S>
  readonly window: number
  readonly warmupMs: number
  readonly measureMs: number
}) => {
  await options.publisher.request({ type: "start", window: options.window })
  await sleep(options.warmupMs)
  const first = await options.sample()
  await sleep(options.measureMs)
  const last = await options.sample()
  const { published } = await options.publisher.request<{ type: "stopped"; published: number }>({ type: "stop" })
  const final = await drain(options.stats, published)
  const rate = sum(last.counts.map((s, i) => {
    const before = first.counts[i]!
    return (s.total - before.total) / ((s.at - before.at) / 1000)
  }))
  return { first, last, published, final, rate }
}
