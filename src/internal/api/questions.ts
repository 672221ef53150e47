/**
 * The questions the server API's nodes ask each other over the cluster (`Cluster.ask`): their kinds, the one
 * that acts on connections (a user's or one), and how its answers add up.
 */
import type * as Cluster from "../../Cluster.ts"

/** The kinds of the questions between nodes. */
export const kinds = {
  connections: "api.connections",
  channels: "api.channels",
  info: "api.info",
  tail: "api.tail"
} as const

/** How many connections the nodes' answers count. */
export const sumOf = (answers: ReadonlyArray<Cluster.Answer<number>>) =>
  answers.reduce((sum, { answer }) => sum + (typeof answer === "number" ? answer : 0), 0)

/** The close code of a `disconnect` that gives none: 4500, which tells the clients not to reconnect. */
export const defaultDisconnectCode = 4500

/** What a node does to the connections a question names here (a user's, or one). */
export interface ConnectionsQuestion {
  readonly user?: string | undefined
  readonly connection?: string | undefined
  readonly action: "subscribe" | "unsubscribe" | "disconnect" | "send"
  readonly channels?: ReadonlyArray<string> | undefined
  /** For `send`: the frame's text. */
  readonly frame?: string | undefined
  readonly code?: number | undefined
  readonly reason?: string | undefined
}

/** Whether a question's JSON is an object. */
export const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null
