/**
 * The members of the hub's channels: the connections subscribed to each, and
 * the watchers told when one joins (after its subscription succeeded) or
 * leaves (at an unsubscribe or a disconnect). A watcher that fails or dies is
 * reported; the others still run.
 */
import { Effect, type Scope } from "effect"
import type * as Channel from "../../Channel.ts"
import type { Connection } from "../../Connection.ts"
import type { Entry, Receiver } from "./fanOut.ts"

/** A connection joining or leaving a channel (a `Hub.Membership`). */
interface Change {
  readonly channel: Channel.ChannelId
  readonly connection: Connection
  readonly joined: boolean
}

/** Makes the membership of a hub's channels; `entryOf` finds a channel's entry. */
export const make = <S extends Receiver>(
  entryOf: (channel: Channel.ChannelId) => Entry<S> | undefined,
  onDefect: (defect: unknown) => void
) => {
  const watchers = new Set<(change: Change) => Effect.Effect<void>>()

  const tell = (change: Change) =>
    Effect.forEach(Array.from(watchers), (watcher) =>
      Effect.suspend(() => watcher(change)).pipe(
        Effect.catchCause((cause) => Effect.sync(() => onDefect(cause)))
      ), { discard: true })

  return {
    /** Runs `listener` for every change until the scope closes. */
    watch: (listener: (change: Change) => Effect.Effect<void>): Effect.Effect<void, never, Scope.Scope> =>
      Effect.acquireRelease(
        Effect.sync(() => void watchers.add(listener)),
        () => Effect.sync(() => void watchers.delete(listener))
      ),

    /** The connection of a subscription that succeeded joins its channels. */
    joined: (subscriber: S, channels: ReadonlyArray<Channel.ChannelId>): Effect.Effect<void> =>
      Effect.suspend(() => {
        const connection = subscriber.connection
        if (connection === undefined) return Effect.void
        const told: Array<Change> = []
        for (const channel of channels) {
          const entry = entryOf(channel)
          if (entry === undefined || !entry.subscribers.has(subscriber) || entry.members.has(connection)) continue
          entry.members.add(connection)
          if (watchers.size > 0) told.push({ channel, connection, joined: true })
        }
        return told.length === 0 ? Effect.void : Effect.forEach(told, tell, { discard: true })
      }),

    /** The connection of a subscriber that left a channel leaves its members. */
    left: (subscriber: S, entry: Entry<S>): Effect.Effect<void> => {
      const connection = subscriber.connection
      return connection !== undefined && entry.members.delete(connection) && watchers.size > 0
        ? tell({ channel: entry.channel, connection, joined: false })
        : Effect.void
    }
  }
}
