/**
 * The nodes' own timings of a reconnect's server-side steps, read from their
 * `/metrics` histograms: a session restore (`lhttp_session_duration_seconds`,
 * `operation="restore"`: the read from the replicated KV bucket, the write
 * that renews it, the session's channel) and a recovery
 * (`lhttp_recovery_duration_seconds`: the read of the stream). A node's
 * histograms count from its start; the campaign takes what each node counted
 * during a run: what it read before a node stops, then the difference at the
 * end of the run.
 */

/** The steps timed, each a histogram series of the nodes' metrics. */
export const steps: Record<"restore" | "recovery", { readonly family: string; readonly labels: string }> = {
  restore: { family: "lhttp_session_duration_seconds", labels: "operation=\"restore\"" },
  recovery: { family: "lhttp_recovery_duration_seconds", labels: "" }
}

/** The step's cumulative counts by bucket bound (seconds; `Infinity` for `+Inf`). */
export type Histogram = Map<number, number>

/** The histograms of every step. */
export type Timings = Record<keyof typeof steps, Histogram>

export const empty = (): Timings => ({ restore: new Map(), recovery: new Map() })

/** Reads a node's histograms of the steps from its Prometheus text. */
export const parse = (text: string): Timings => {
  const timings = empty()
  for (const line of text.split("\n")) {
    for (
      const [step, { family, labels }] of Object.entries(steps) as Array<[keyof Timings, (typeof steps)[keyof Timings]]>
    ) {
      if (!line.startsWith(`${family}_bucket{`) || (labels !== "" && !line.includes(labels))) continue
      const match = /le="([^"]+)"\}\s+(\S+)/.exec(line)
      if (match === null) continue
      const bound = match[1] === "+Inf" ? Infinity : Number(match[1])
      timings[step].set(bound, (timings[step].get(bound) ?? 0) + Number(match[2]))
    }
  }
  return timings
}

/** `into` plus `sign` times `other`, bucket by bucket. */
export const add = (into: Timings, other: Timings, sign: 1 | -1 = 1): void => {
  for (const step of Object.keys(steps) as Array<keyof Timings>) {
    for (const [bound, count] of other[step]) into[step].set(bound, (into[step].get(bound) ?? 0) + sign * count)
  }
}

/** Reads a node's timings; a node that does not answer counted nothing that can be read. */
export const scrape = async (port: number): Promise<Timings> => {
  try {
    return parse(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())
  } catch {
    return empty()
  }
}

/** How many a histogram counted, and the bucket bound (ms) below which `p` percent of them fell. */
export const summary = (
  histogram: Histogram
): { readonly count: number; readonly p50: string; readonly p99: string } => {
  const bounds = [...histogram.keys()].sort((a, b) => a - b)
  const count = histogram.get(Infinity) ?? 0
  const at = (p: number) => {
    if (count === 0) return "-"
    const bound = bounds.find((b) => histogram.get(b)! >= count * p / 100)!
    return bound === Infinity ? `> ${bounds.at(-2)! * 1000} ms` : `≤ ${bound * 1000} ms`
  }
  return { count, p50: at(50), p99: at(99) }
}
