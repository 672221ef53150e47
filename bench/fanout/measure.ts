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
  await within(15_000, "every subscriber to receive a probe", (async () => {
    while (!(await stats()).every((s) => s.min >= 1)) {
      await publisher.request({ type: "probe" })
      await sleep(50)
    }
  })())
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

