/**
 * The server's open connections, counted by address, and the caps on new
 * ones over all transports: `maxConnections`, `maxConnectionsPerAddress`,
 * the connection rate per address and the node's admission rate. A transport that asks first (an upgrade,
 * the opening of an SSE or long-poll connection) is refused with a 503
 * `Rejection`; the server closes one that accepts without asking.
 */
import { Rejection } from "../../Rejection.ts"
import type { LiveConnection } from "./connection.ts"
import { Bucket, Buckets, type Rate } from "./rate.ts"

const tooManyConnections = new Rejection({
  status: 503,
  reason: "TooManyConnections",
  message: "the server holds as many connections as it may: try again later"
})

const tooManyFromAddress = new Rejection({
  status: 503,
  reason: "TooManyFromAddress",
  message: "this address holds as many connections as it may: try again later"
})

const connectingTooFast = new Rejection({
  status: 503,
  reason: "ConnectingTooFast",
  message: "too many new connections from this address: try again later"
})

const nodeConnectingTooFast = new Rejection({
  status: 503,
  reason: "NodeConnectingTooFast",
  message: "this node is taking as many new connections a second as it may: try again later"
})

/** The caps on connections. */
interface Limits {
  readonly maxConnections: number
  readonly maxConnectionsPerAddress: number
  /** New connections a second from one address (none: no limit). */
  readonly connectionRate: Rate | undefined
  /** New connections a second on the node, from every address (none: no limit). */
  readonly admissionRate: Rate | undefined
}

/** The open connections and their counts by address (of those whose transport knows it). */
export class Connections {
  /** The open connections. */
  readonly open = new Set<LiveConnection>()
  /** The open connections by id. */
  readonly byId = new Map<string, LiveConnection>()
  readonly #byAddress = new Map<string, number>()
  readonly #limits: Limits
  readonly #rate: Buckets | undefined
  readonly #admission: Bucket | undefined

  constructor(limits: Limits) {
    this.#limits = limits
    this.#rate = limits.connectionRate === undefined ? undefined : new Buckets(limits.connectionRate)
    this.#admission = limits.admissionRate === undefined ? undefined : new Bucket(limits.admissionRate)
  }

  #fromAddress(address: string | undefined): number {
    return address === undefined ? 0 : this.#byAddress.get(address) ?? 0
  }

  /** Why a new connection from `address` is refused now, if it is; one that may come takes a token of the rate. */
  refusal(address: string | undefined): Rejection | undefined {
    if (this.open.size >= this.#limits.maxConnections) return tooManyConnections
    if (this.#fromAddress(address) >= this.#limits.maxConnectionsPerAddress) return tooManyFromAddress
    if (this.#rate !== undefined && !this.#rate.take(address ?? "")) return connectingTooFast
    if (this.#admission !== undefined && !this.#admission.take()) return nodeConnectingTooFast
    return undefined
  }

  /** Whether one more connection from `address` would pass a cap (the rate is not asked). */
  isFull(address: string | undefined): boolean {
    return this.open.size >= this.#limits.maxConnections ||
      this.#fromAddress(address) >= this.#limits.maxConnectionsPerAddress
  }

  add(connection: LiveConnection): void {
    const address = connection.remoteAddress
    if (address !== undefined) this.#byAddress.set(address, this.#fromAddress(address) + 1)
    this.open.add(connection)
    this.byId.set(connection.id, connection)
  }

  delete(connection: LiveConnection): void {
    if (!this.open.delete(connection)) return
    this.byId.delete(connection.id)
    const address = connection.remoteAddress
    if (address === undefined) return
    const count = this.#byAddress.get(address)! - 1
    if (count > 0) this.#byAddress.set(address, count)
    else this.#byAddress.delete(address)
  }
}
