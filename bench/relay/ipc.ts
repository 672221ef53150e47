/**
 * The relay benchmark's conversation with its load process (bench/relay/load.ts):
 * one reply per command, in order; the process says "ready" once its
 * connections are subscribed and exits when the driver goes away. The burst's
 * result is the cluster benchmark's (bench/cluster/ipc.ts).
 */
import type { BurstResult } from "../cluster/ipc.ts"

/** One burst: the cluster benchmark's result, and whether the server closed a subscriber. */
export interface RelayBurst extends BurstResult {
  readonly closed: boolean
}

/** What the driver asks. */
export type RelayCommand =
  | { readonly type: "probe" }
  | { readonly type: "burst"; readonly count: number }
  | { readonly type: "latency"; readonly rate: number; readonly warmupMs: number; readonly measureMs: number }

/**
 * What one fixed-rate run measured: latencies from the publisher's write of a
 * message to its arrival at each subscriber, in µs, over the messages sent
 * after the warm-up (one sample per message and subscriber).
 */
export interface LatencyResult {
  readonly type: "latency"
  /** Messages published (warm-up included), and over how long, ms. */
  readonly sent: number
  readonly sendingMs: number
  /** Samples expected (measured messages × subscribers) and taken. */
  readonly expected: number
  readonly samples: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly p999: number
  readonly max: number
  /** How late the publisher's timer sent a message at worst, ms (the load's own jitter). */
  readonly maxLagMs: number
}

export type RelayReply =
  | { readonly type: "ready" }
  | { readonly type: "probed"; readonly received: number }
  | RelayBurst
  | LatencyResult
