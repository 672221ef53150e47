/**
 * The live tail of a user (the server API's `tailUser`): every node taps the
 * frames sent to the user's connections there (`LhttpServer.tapUser`) and
 * publishes them on the tail's internal channel while the tail renews its
 * lease; the tail reads that channel, bounded.
 */
import { type Context, Duration, Effect, Queue, Result, Schedule, Stream } from "effect"
import type { Bus } from "../../Bus.ts"
import * as Channel from "../../Channel.ts"
import type * as Cluster from "../../Cluster.ts"
import type { LhttpServer } from "../../LhttpServer.ts"
import { ApiError, invalid } from "./errors.ts"
import { isRecord, kinds } from "./questions.ts"

/** A frame sent to a connection of a tailed user. */
export interface TailFrame {
  readonly node: string
  readonly connection: string
  readonly text: string
  /** When the node sent it, ms since the epoch. */
  readonly time: number
}

/** Frames of a tail waiting for its reader; past it the oldest go. */
export const tailBuffer = 1_000

/** How long a node taps a tailed user without a renewal of the tail's lease, and how often the tail renews it. */
const tailLease = { ttl: 15_000, renew: Duration.seconds(5) } as const

/** What the tails of a node need. */
interface Options {
  readonly cluster: Cluster.Cluster["Service"]
  readonly server: LhttpServer["Service"]
  readonly bus: Bus["Service"]
  readonly context: Context.Context<never>
  readonly timeout: Duration.Duration
}

/** The tails of one node: what it answers the others, and its own tails of users. */
export const make = (options: Options) => {
  const { bus, cluster, context, server, timeout } = options

  /** Taps users for the tails that ask, until the scope closes. */
  const serve = Effect.gen(function*() {
    // the tails of users this node taps, by the tail's id: each frame of the user's connections here goes to the
    // tail's internal channel, for as long as its lease is renewed
    const taps = new Map<string, { readonly stop: () => void; expires: number }>()
    yield* cluster.serve(kinds.tail, (asked) =>
      Effect.sync(() => {
        if (!isRecord(asked) || typeof asked.id !== "string" || !/^[a-z0-9]{1,32}$/.test(asked.id)) return false
        const held = taps.get(asked.id)
        if (asked.stop === true || typeof asked.user !== "string") {
          held?.stop()
          taps.delete(asked.id)
          return true
        }
        if (held !== undefined) {
          held.expires = Date.now() + tailLease.ttl
          return true
        }
        const channel = Channel.internal(`api.tail.${asked.id}`)
        if (Result.isFailure(channel)) return false
        const stop = server.tapUser(asked.user, (connection, text) => {
          const frame: TailFrame = { node: cluster.node, connection, text, time: Date.now() }
          Effect.runForkWith(context)(Effect.ignore(bus.publish(channel.success, JSON.stringify(frame))))
        })
        taps.set(asked.id, { stop, expires: Date.now() + tailLease.ttl })
        return true
      }))
    // leases not renewed (a tail whose node went away) end
    yield* Effect.forkScoped(
      Effect.repeat(
        Effect.sync(() => {
          const now = Date.now()
          for (const [id, held] of taps) {
            if (held.expires < now) {
              held.stop()
              taps.delete(id)
            }
          }
        }),
        Schedule.spaced(tailLease.renew)
      )
    )
    yield* Effect.addFinalizer(() => Effect.sync(() => taps.forEach((held) => held.stop())))
  })

  /** The frames sent to a user's connections on every node, as they pass. */
  const tailUser = (user: string): Stream.Stream<TailFrame, ApiError> =>
    Stream.unwrap(Effect.gen(function*() {
      if (user === "" || user.length > 256) return yield* invalid("a user id of 1 to 256 characters")
      const id = Math.random().toString(36).slice(2, 14)
      const channel = Channel.internal(`api.tail.${id}`)
      if (Result.isFailure(channel)) return yield* invalid(channel.failure.message)
      const queue = yield* Queue.sliding<TailFrame>(tailBuffer)
      yield* bus.subscribe(channel.success, (payload) => {
        Queue.offerUnsafe(queue, JSON.parse(payload) as TailFrame)
      }).pipe(Effect.mapError((error) => new ApiError({ reason: "BusUnavailable", message: error.message })))
      const lease = cluster.ask<boolean>(kinds.tail, { id, user }, timeout).pipe(
        Effect.mapError((error) => new ApiError({ reason: "BusUnavailable", message: error.message }))
      )
      yield* lease
      yield* Effect.forkScoped(Effect.repeat(Effect.ignore(lease), Schedule.spaced(tailLease.renew)))
      yield* Effect.addFinalizer(() => Effect.ignore(cluster.ask(kinds.tail, { id, stop: true }, timeout)))
      return Stream.fromQueue(queue)
    }))

  return { serve, tailUser }
}
