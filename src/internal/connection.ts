/**
 * A live connection: the Connection handle of processors and filters, the
 * Hub's subscriber, and the owner of the connection's outbox.
 */
import { Effect, type Queue, Result, type Scope } from "effect"
import * as Channel from "../Channel.ts"
import type { Connection, Key } from "../Connection.ts"
import * as Frame from "../Frame.ts"
import type { Delivery, Hub, Subscriber } from "../Hub.ts"
import type { ProtocolError } from "../ProtocolError.ts"
import type { Rejection } from "../Rejection.ts"
import { Outbound, type Transport } from "./outbound.ts"
import { Outbox, type SlowConsumerPolicy } from "./outbox.ts"

/** Who is connected, as the transport saw it. */
export interface Peer {
  readonly url: string
  readonly requestHeaders: Readonly<Record<string, string | undefined>>
  readonly remoteAddress: string | undefined
}

/** The per-connection limits. */
export interface Limits {
  readonly maxOutboundBytes: number
  readonly slowConsumer: SlowConsumerPolicy
}

let sequence = 0
const prefix = Math.random().toString(36).slice(2, 8)

/** A connection while it lives. */
export class LiveConnection implements Connection, Subscriber {
  readonly id = `${prefix}-${(++sequence).toString(36)}`
  readonly url: string
  readonly requestHeaders: Readonly<Record<string, string | undefined>>
  readonly remoteAddress: string | undefined
  readonly channels = new Set<string>()
  readonly outbox: Outbox
  readonly #hub: Hub["Service"]
  readonly #data = new Map<string, unknown>()
  /** Set while a message is being processed. */
  busy = false
  /** A close asked for while a message was being processed. */
  pendingClose: { readonly code: number; readonly reason: string } | undefined
  /** The connection's upstream calls, run in order off the message path; opened on first use. */
  upstreamLane: Queue.Queue<Effect.Effect<void>> | undefined
  /** Upstream calls queued or running. */
  upstreamInFlight = 0
  /** Lives as long as the connection: what the connection forks runs in it. */
  readonly scope: Scope.Closeable

  constructor(peer: Peer, transport: Transport, hub: Hub["Service"], limits: Limits, scope: Scope.Closeable) {
    this.scope = scope
    this.url = peer.url
    this.requestHeaders = peer.requestHeaders
    this.remoteAddress = peer.remoteAddress
    this.outbox = new Outbox(transport, limits.maxOutboundBytes, limits.slowConsumer)
    this.#hub = hub
  }

  deliver(delivery: Delivery): void {
    this.outbox.offer(delivery as Outbound)
  }

  /** Queues a frame known to be valid. */
  write(frame: Frame.Frame): void {
    this.outbox.offer(new Outbound(Frame.render(frame)))
  }

  get<A>(key: Key<A>): A | undefined {
    return this.#data.get(key.name) as A | undefined
  }

  set<A>(key: Key<A>, value: A): void {
    this.#data.set(key.name, value)
  }

  send(frame: Frame.Frame): Effect.Effect<void, ProtocolError> {
    return Effect.suspend(() => {
      const checked = Frame.validate(frame)
      if (Result.isFailure(checked)) return Effect.fail(checked.failure)
      this.write(frame)
      return Effect.void
    })
  }

  subscribe(channels: Iterable<string>): Effect.Effect<void, ProtocolError | Rejection> {
    return Effect.suspend((): Effect.Effect<void, ProtocolError | Rejection> => {
      const list = Array.from(new Set(channels))
      for (const channel of list) {
        const checked = Channel.validate(channel)
        if (Result.isFailure(checked)) return Effect.fail(checked.failure)
      }
      return this.#hub.subscribe(this, list)
    })
  }

  unsubscribe(channels: Iterable<string>): Effect.Effect<void> {
    return this.#hub.unsubscribe(this, channels)
  }

  close(code = 1000, reason = ""): Effect.Effect<void> {
    return Effect.sync(() => this.closeNow(code, reason))
  }

  /** Closes now, or after the message being processed when asked to wait for it. */
  closeNow(code: number, reason: string): void {
    this.outbox.close(code, reason)
  }

  /** Closes once the message being processed, if any, is done. */
  closeWhenIdle(code: number, reason: string): void {
    if (this.busy) this.pendingClose = { code, reason }
    else this.closeNow(code, reason)
  }
}
