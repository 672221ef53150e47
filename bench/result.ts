/**
 * How a benchmark script hands its results to `npm run bench` (bench/all.ts):
 * when $BENCH_JSON names a file, the script writes its medians there as JSON
 * (a time never reached, NaN, becomes null).
 */
import { writeFileSync } from "node:fs"

/** Writes a scenario's results to $BENCH_JSON, when the one-command run asked for them. */
export const writeResult = (result: unknown): void => {
  const path = process.env.BENCH_JSON
  if (path !== undefined && path !== "") writeFileSync(path, JSON.stringify(result, null, 2))
}
