/**
 * The fault campaign's conversation with its client processes over Node IPC:
 * what the campaign asks, and what a client process answers (its clients'
 * records, from which the campaign checks the delivery guarantees).
 */

/** The campaign's scenarios, in the order it runs them (campaign.ts says what each does). */
export const scenarioNames = [
  "rolling-restart",
  "node-kill",
  "nats-leader-kill",
  "nats-cut",
  "client-stall",
  "slow-consumer"
] as const

/** One client of a client process: its name, its channels, and whether it publishes. */
export interface ClientSpec {
  readonly name: string
  readonly channels: ReadonlyArray<string>
  readonly publishes: boolean
}

/** What the campaign asks. */
export type Command =
  | {
    readonly type: "start"
    /** The URL the clients connect to (the client process's proxy). */
    readonly url: string
    readonly clients: ReadonlyArray<ClientSpec>
    /** The wait between two publishes of one publisher, in ms. */
    readonly interval: number
  }
  | { readonly type: "publish" }
  | { readonly type: "stop" }
  | { readonly type: "progress" }
  | { readonly type: "published" }
  | {
    readonly type: "check"
    /** Every acknowledged message of the run, by channel: its body and offset. */
    readonly acked: Readonly<Record<string, ReadonlyArray<readonly [body: string, offset: number | null]>>>
  }

/** How one acknowledged publish ended. */
export interface Published {
  readonly channel: string
  /** `<client>:<n>`: the message's body, unique in the campaign. */
  readonly body: string
  /** The offset of the acknowledgement, or the error (`Rejected 503 BusUnavailable`, `Closed`, `Timeout`…). */
  readonly offset?: number | undefined
  readonly error?: string | undefined
}

/**
 * What a client process's clients saw, checked against every acknowledged
 * message of the run (in the process: its clients' deliveries stay there).
 */
export interface Checked {
  readonly clients: number
  readonly delivered: number
  /** Acknowledged messages of a subscriber's channels it does not have, and was not told about. */
  readonly lost: number
  /** Those it does not have and was told it cannot (`recovered:no`). */
  readonly told: number
  /** Messages handed to an application twice. */
  readonly duplicated: number
  /** Deliveries whose offset does not grow, or differs from their acknowledgement's. */
  readonly reordered: number
  /** Connections opened after the first. */
  readonly reconnects: number
  /** Sessions restored by the server on a new connection. */
  readonly restored: number
  /** For each reconnect, ms from the connection lost to every channel's position known again. */
  readonly catchUps: ReadonlyArray<number>
  /** Per reconnect, ms from the connection lost to open again (session restored), before catching up. */
  readonly reopens: ReadonlyArray<number>
  /** Some of the lost, in words. */
  readonly lostSample: ReadonlyArray<string>
}

/** What a client process answers. */
export type Reply =
  | { readonly type: "ready" }
  | { readonly type: "publishing" }
  | { readonly type: "stopped" }
  /** Every delivery so far, and whether every client is connected. */
  | { readonly type: "progress"; readonly delivered: number; readonly open: boolean }
  | { readonly type: "published"; readonly published: ReadonlyArray<Published> }
  | { readonly type: "checked"; readonly checked: Checked }
