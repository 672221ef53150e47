/**
 * The fault campaign's conversation with its client processes over Node IPC:
 * what the campaign asks, and what a client process answers (its clients'
 * records, from which the campaign checks the delivery guarantees).
 */

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
  | { readonly type: "report" }

/** How one acknowledged publish ended. */
export interface Published {
  readonly channel: string
  /** `<client>:<n>`: the message's body, unique in the campaign. */
  readonly body: string
  /** The offset of the acknowledgement, or the error (`Rejected 503 BusUnavailable`, `Closed`, `Timeout`…). */
  readonly offset?: number | undefined
  readonly error?: string | undefined
}

/** What one client saw. */
export interface ClientRecord {
  readonly name: string
  readonly published: ReadonlyArray<Published>
  /** Per channel, what was handed to the app in order: `[offset, epoch, body]`. */
  readonly delivered: Readonly<Record<string, ReadonlyArray<readonly [number, string, string]>>>
  /** Per channel, the recoveries that said `recovered:no`, with their reason. */
  readonly told: Readonly<Record<string, ReadonlyArray<string>>>
  /** Connections opened after the first. */
  readonly reconnects: number
  /** Sessions restored by the server on a new connection. */
  readonly restored: number
  /** For each reconnect, ms from the connection lost to every channel's position known again. */
  readonly catchUps: ReadonlyArray<number>
}

/** What a client process answers. */
export type Reply =
  | { readonly type: "ready" }
  | { readonly type: "publishing" }
  | { readonly type: "stopped" }
  /** Every delivery so far, and whether every client is connected. */
  | { readonly type: "progress"; readonly delivered: number; readonly open: boolean }
  | { readonly type: "report"; readonly clients: ReadonlyArray<ClientRecord> }
