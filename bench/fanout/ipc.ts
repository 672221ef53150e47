/**
 * The driver's conversation with its load processes over Node IPC. Every
 * command gets exactly one reply, in order; a load process says "ready" once
 * its connections are subscribed, and exits when the driver goes away.
 */
import type { Protocol } from "./client.ts"

/** A load connection: how many messages it received, and whether the server closed it. */
export interface Counted {
  count: number
  readonly closed: boolean
  /** Heartbeat pings received (WebSocket connections). */
  readonly pings?: number
}

/** What the driver asks. `probe`, `start` and `stop` go to the publisher only. */
export type Command =
  | { readonly type: "stats" }
  | { readonly type: "reset" }
  | { readonly type: "probe" }
  | { readonly type: "start"; readonly window: number }
  | { readonly type: "stop" }

/** The commands only the publisher serves. */
export type PublisherCommand = Exclude<Command, { readonly type: "stats" | "reset" }>

/** The counts of one load process, stamped with its own clock (ms since the epoch). */
export interface Stats {
  readonly type: "stats"
  readonly at: number
  /** Messages received over all its connections. */
  readonly total: number
  /** The fewest and most one connection received. */
  readonly min: number
  readonly max: number
  /** Connections the server closed. */
  readonly closed: number
  /** Heartbeat pings received over all its connections. */
  readonly pings: number
}

/** What a load process answers. */
export type Reply =
  | Stats
  | { readonly type: "ready" }
  | { readonly type: "ok" }
  | { readonly type: "stopped"; readonly published: number }

export const reply = (message: Reply): void => {
  process.send?.(message)
}

/** The counts of a set of connections now. */
export const statsOf = (clients: ReadonlyArray<Counted>): Stats => {
  let total = 0
  let min = Infinity
  let max = 0
  let closed = 0
  let pings = 0
  for (const client of clients) {
    pings += client.pings ?? 0
    total += client.count
    min = Math.min(min, client.count)
    max = Math.max(max, client.count)
    if (client.closed) closed++
  }
  return { type: "stats", at: performance.timeOrigin + performance.now(), total, min, max, closed, pings }
}

/**
 * Serves the driver's commands for a set of connections: `stats` and `reset`
 * here, anything else through `other`. Exits when the driver disconnects.
 */
export const serve = (clients: ReadonlyArray<Counted>, other?: (command: PublisherCommand) => Reply): void => {
  process.on("disconnect", () => process.exit(0))
  process.on("message", (command: Command) => {
    if (command.type === "stats") return reply(statsOf(clients))
    if (command.type === "reset") {
      for (const client of clients) client.count = 0
      return reply({ type: "ok" })
    }
    if (other !== undefined) reply(other(command))
  })
  reply({ type: "ready" })
}

/**
 * The message that subscribes a connection to a channel: LHTTP, or Socket.IO's
 * `join` event. `positioned` asks for positions (LHTTP `since:now`): on a
 * history channel the server answers with a `position` frame, and each
 * message comes with its `channel:`, `offset:` and `epoch:` headers.
 */
export const subscribeMessage = (channel: string, protocol: Protocol = "lhttp", positioned = false): string =>
  protocol === "socketio"
    ? `42${JSON.stringify(["join", channel])}`
    : `LHTTP/1.0 bench\r\nsubscribe:${channel}\r\n${positioned ? "since:now\r\n" : ""}\r\n`

/** The message a publisher sends to a channel: LHTTP, or Socket.IO's `publish` event. */
export const publishMessage = (channel: string, body: string, protocol: Protocol = "lhttp"): string =>
  protocol === "socketio"
    ? `42${JSON.stringify(["publish", channel, body])}`
    : `LHTTP/1.0 bench\r\npublish:${channel}\r\n\r\n${body}`
