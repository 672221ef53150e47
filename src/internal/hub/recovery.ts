/**
 * The recovery of a history channel for one subscriber: while its live
 * subscription is in place, what arrives for it waits at its gate; the store
 * gives the messages since the position it asked for, then the `position`
 * frame goes, then what waited, less what the recovery already gave. The same
 * runs for every positioned subscriber after a gap in what the bus delivered
 * (`heal`).
 */
import { Clock, type Context, Deferred, Effect, type Exit, Metric, Schedule } from "effect"
import type * as Channel from "../../Channel.ts"
import * as Frame from "../../Frame.ts"
import * as History from "../../History.ts"
import * as Rejection from "../../Rejection.ts"
import { Outbound, utf8Length } from "../wire/outbound.ts"
import { CloseCode } from "../wire/protocol.ts"
import { advance, deliverSafely, type Entry, positionedFrame, type Receiver } from "./fanOut.ts"

/**
 * The `position` frame that answers a subscription's `since` on a channel
 * (`recovered` only when it asked since a position; without a recovery: no history).
 */
const positionFrame = (
  channel: Channel.ChannelId,
  recovery: History.Recovery | undefined,
  asked: boolean
): Outbound => {
  const headers = new Map<string, string>([[History.Header.channel, channel]])
  if (recovery !== undefined) {
    headers.set(History.Header.epoch, recovery.position.epoch)
    headers.set(History.Header.offset, String(recovery.position.offset))
  }
  const reason = recovery === undefined ? "NoHistory" : recovery.reason
  if (asked) headers.set(History.Header.recovered, reason === undefined ? "yes" : "no")
  if (reason !== undefined) headers.set(History.Header.reason, reason)
  const text = Frame.render(Frame.make(History.positionCommand, headers))
  return recovery === undefined
    ? new Outbound(text)
    : new Outbound(text, { channel, epoch: recovery.position.epoch, offset: recovery.position.offset })
}

/** A failure of the store, as the subscription's answer. */
export const toHistoryRejection = (error: History.HistoryError): Rejection.Rejection =>
  Rejection.historyUnavailable(error.message)

/** Puts up a subscriber's gate on a channel (one already there, for a recovery still running, is kept). */
export const raiseGate = <S extends Receiver>(entry: Entry<S>, subscriber: S): void => {
  const gates = (entry.gates ??= new Map())
  if (!gates.has(subscriber)) gates.set(subscriber, [])
}

/** A subscriber's gate goes; with the last one the map goes too, and fan-out looks up nothing again. */
export const removeGate = <S extends Receiver>(entry: Entry<S>, subscriber: S): void => {
  if (entry.gates?.delete(subscriber) === true && entry.gates.size === 0) entry.gates = undefined
}

/** How long recoveries took: the store's read, until the subscriber has its messages and position frame. */
export const recoveryDuration = Metric.histogram("lhttp_recovery_duration_seconds", {
  description: "how long recoveries of history channels took (reading the store), for subscriptions and for gaps",
  boundaries: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
})

/** A read of the store shared by the recoveries of one entry from one position. */
interface Slot {
  readonly read: Effect.Effect<History.Recovery, History.HistoryError>
  running: boolean
  queued: Array<Deferred.Deferred<History.Recovery, History.HistoryError>>
  /** Forgets the slot: nothing is queued or running. */
  readonly done: () => void
}

/** What recovery needs from its hub. */
interface Options {
  /** The store, when channels keep history here. */
  readonly history: History.History["Service"] | undefined
  /** The hub's services, for the recoveries a gap starts. */
  readonly context: Context.Context<never>
  /** Reports a subscriber that threw. */
  readonly onDefect: (defect: unknown) => void
  /** The most bytes of messages one recovery hands a subscriber; past it, none and `RecoveryLimit`. */
  readonly maxBytes: number
}

/** Makes the recovery of a hub. */
export const make = <S extends Receiver>(options: Options) => {
  const { context, history, maxBytes, onDefect } = options

  // the position a subscriber is at once it has a recovery's messages: the store's, or its last message's when
  // that is later in the same epoch (a store that reads the position before the messages, as NatsHistory's two
  // reads can, answers messages stored in between: found by the fault campaign as a duplicate, the message given
  // by the recovery and again from the gate, and a position frame behind what the client had)
  const caughtUp = (recovery: History.Recovery): History.Recovery => {
    const last = recovery.messages.at(-1)?.position
    return last !== undefined && last.epoch === recovery.position.epoch && last.offset > recovery.position.offset
      ? { ...recovery, position: last }
      : recovery
  }

  // a recovery whose messages would pass the budget: none of them, and a position frame that says so
  const bounded = (recovery: History.Recovery): History.Recovery => {
    let bytes = 0
    for (const message of recovery.messages) {
      bytes += utf8Length(message.text)
      if (bytes > maxBytes) return { messages: [], position: recovery.position, reason: "RecoveryLimit" }
    }
    return recovery
  }

  // Reads of the store shared by the subscribers recovering a channel's entry from the same position (a herd
  // back after a restart, every positioned subscriber of a channel after a gap): while one read is in flight,
  // the recoveries that come wait for the next one, which serves them all. A read that started before a
  // subscriber's gate went up could miss what arrived in between, so none is joined once started.
  const reads = new WeakMap<Entry<S>, Map<string, Slot>>()
  const readShared = (
    entry: Entry<S>,
    policy: History.Policy,
    since: History.Position | undefined
  ): Effect.Effect<History.Recovery, History.HistoryError> =>
    Effect.suspend(() => {
      let slots = reads.get(entry)
      if (slots === undefined) reads.set(entry, slots = new Map())
      const key = since === undefined ? "now" : `${since.epoch}:${since.offset}`
      let slot = slots.get(key)
      if (slot === undefined) {
        // each read reaches at least what the channel delivered here live when it starts (later: at the gates);
        // a store that fails is asked again a few times (a cluster under load times out now and then)
        const read = Effect.suspend(() =>
          history!.recover(
            entry.channel,
            policy,
            since,
            maxBytes,
            entry.last === undefined || entry.lastEpoch === undefined
              ? undefined
              : { epoch: entry.lastEpoch, offset: entry.last }
          )
        ).pipe(Effect.retry({ schedule: Schedule.exponential("200 millis"), times: 3 }))
        slots.set(key, slot = { read, running: false, queued: [], done: () => slots.delete(key) })
      }
      const done = Deferred.makeUnsafe<History.Recovery, History.HistoryError>()
      slot.queued.push(done)
      if (!slot.running) start(slot)
      return Deferred.await(done)
    })
  const start = (slot: Slot): void => {
    slot.running = true
    const batch = slot.queued
    slot.queued = []
    Effect.runForkWith(context)(
      Effect.flatMap(
        Effect.exit(slot.read),
        (exit: Exit.Exit<History.Recovery, History.HistoryError>) =>
          Effect.sync(() => {
            for (const done of batch) Deferred.doneUnsafe(done, exit)
            slot.running = false
            if (slot.queued.length > 0) start(slot)
            else slot.done()
          })
      )
    )
  }

  // what waited at a subscriber's gate goes on after `last` (all of it without one); the gate goes
  const openGate = (subscriber: S, entry: Entry<S>, last: number | undefined) => {
    const waited = entry.gates?.get(subscriber) ?? []
    removeGate(entry, subscriber)
    if (!entry.subscribers.has(subscriber)) return
    for (const frame of waited) {
      // a frame the bus could not number has no position: it goes as it is
      if (last === undefined || frame.position === undefined || frame.position.offset > last) {
        deliverSafely(subscriber, frame, onDefect)
      }
    }
  }

  // A history channel's recovery for one subscriber, once the live subscription is in place (what
  // arrives meanwhile waits at its gate): the messages since the position asked for, the position
  // frame, then what waited, less what the recovery already gave. When the store fails, what waited
  // goes on and the subscription's answer is the failure.
  const recover = (
    subscriber: S,
    entry: Entry<S>,
    policy: History.Policy,
    since: History.Position | undefined
  ): Effect.Effect<void, Rejection.Rejection> =>
    Effect.flatMap(Clock.currentTimeMillis, (started) =>
      readShared(entry, policy, since).pipe(
        Effect.onExit(() =>
          Effect.flatMap(Clock.currentTimeMillis, (ended) => Metric.update(recoveryDuration, (ended - started) / 1000))
        ),
        Effect.mapError(toHistoryRejection),
        // what waited is not delivered: positioned frames after a gap the subscriber was not told of would move
        // its position past what it missed (found by the fault campaign); the subscription is undone, or, after a
        // gap in live delivery, the subscriber is closed to recover on its next connection
        Effect.tapError(() => Effect.sync(() => removeGate(entry, subscriber))),
        Effect.map((found) => {
          const recovery = bounded(caughtUp(found))
          advance(entry, recovery.position)
          if (entry.subscribers.has(subscriber)) {
            for (const message of recovery.messages) {
              deliverSafely(subscriber, positionedFrame(entry.channel, message.text, message.position), onDefect)
            }
            deliverSafely(subscriber, positionFrame(entry.channel, recovery, since !== undefined), onDefect)
          }
          openGate(subscriber, entry, recovery.position.offset)
        })
      ))

  // After a gap in what the bus delivered: every positioned subscriber not recovering already gets what
  // is missing since the last offset it had, then a position frame, then what came meanwhile (gated).
  const heal = (entry: Entry<S>, since: History.Position): void => {
    const policy = entry.policy
    if (policy === undefined || history === undefined) return
    for (const subscriber of entry.positioned) {
      if (entry.gates?.has(subscriber) === true) continue
      raiseGate(entry, subscriber)
      Effect.runForkWith(context)(
        recover(subscriber, entry, policy, since).pipe(
          Effect.catchCause((cause) =>
            Effect.andThen(
              Effect.logWarning("a channel's history could not fill a gap in live delivery", cause),
              // a connection goes: its client recovers on the next one, since the last position it has
              subscriber.connection?.close(CloseCode.serviceRestart, "history unavailable") ?? Effect.void
            )
          )
        )
      )
    }
  }

  // a subscription asking for positions on a channel without history: its position frame says so
  const noHistory = (subscriber: S, channel: Channel.ChannelId, asked: boolean): Effect.Effect<void> =>
    Effect.sync(() => deliverSafely(subscriber, positionFrame(channel, undefined, asked), onDefect))

  return { recover, heal, noHistory }
}
