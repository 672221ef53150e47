/**
 * The cluster benchmark's conversation with its burst and NATS-loop processes
 * (the fan-out load speaks bench/fanout/ipc.ts). One reply per command, in
 * order; a process says "ready" once connected and exits when the driver goes
 * away.
 */

/** What the driver asks the burst process. */
export type BurstCommand =
  | { readonly type: "probe" }
  | { readonly type: "burst"; readonly count: number }

/** What one burst measured, in ms from the first write, on the burst process's clock. */
export interface BurstResult {
  readonly type: "burst"
  readonly count: number
  /** The write loop returned: every frame handed to the socket. */
  readonly loopMs: number
  /** The last write's callback ran: every frame taken by the kernel. */
  readonly writtenMs: number
  /** The subscriber received the last frame (NaN when it did not within the time limit). */
  readonly deliveredMs: number
  /** Frames the subscriber received. */
  readonly received: number
  /** Whether the server closed the subscriber (e.g. 4001, a slow consumer). */
  readonly closed: boolean
}

export type BurstReply =
  | { readonly type: "ready" }
  | { readonly type: "probed"; readonly received: number }
  | BurstResult

/** What the driver asks the NATS-loop process. */
export type LoopCommand = { readonly type: "loop"; readonly count: number }

/** What one NATS publish loop measured, in ms from its start. */
export interface LoopResult {
  readonly type: "loop"
  readonly count: number
  /** The publish loop returned (every message in the client's buffer). */
  readonly publishMs: number
  /** `flush()` resolved: the server answered a PING sent after the last message. */
  readonly flushMs: number
  /** A subscriber on a second connection received the last one (NaN when it did not in time). */
  readonly deliveredMs: number
  readonly received: number
}

export type LoopReply = { readonly type: "ready" } | LoopResult

/** Sends a reply to the driver. */
export const reply = <R>(message: R): void => {
  process.send?.(message)
}

/**
 * The frame of the 10,000-publish scenario (reference §15): `LHTTP/1.0 bench`, a publish header, the number
 * (`bench` names no processor of the main job's: its publish header goes to the built-ins).
 */
export const burstMessage = (channel: string, n: number): string => `LHTTP/1.0 bench\r\npublish:${channel}\r\n\r\n${n}`

export const now = (): number => performance.timeOrigin + performance.now()
