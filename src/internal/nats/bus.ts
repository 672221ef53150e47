/**
 * The NATS bus's implementation (the public face, its options and Layers, is
 * `NatsBus.ts`): the connection and its states, the subscriptions, the
 * reconnect buffer; and, for the JetStream history (`NatsHistory.ts`), the
 * subscriptions delivered as the history stream numbered them.
 */
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node"
import { Duration, Effect, Result, Schedule } from "effect"
import { Bus, BusError } from "../../Bus.ts"
import * as Channel from "../../Channel.ts"
import type { Position } from "../../History.ts"
import type { Options } from "../../NatsBus.ts"
import { connectionOptions } from "./client.ts"
import { busReconnects } from "../server/metrics.ts"

/** The default subject prefix. */
export const defaultSubjectPrefix = "lhttp."

/** The default bound, in bytes, of what waits while NATS is disconnected. */
export const defaultMaxPendingBytes = 8 * 1024 * 1024

/** The default bound, in messages, of what waits while NATS is disconnected. */
export const defaultMaxPendingMessages = 100_000

/** What a buffered message costs beyond its subject and payload, in bytes. */
export const messageOverhead = 32

// the header in which JetStream's republished copy of a message carries its stream sequence
const sequenceHeader = "Nats-Sequence"
// and the sequence of the message before it on the same subject (0 for the first)
const previousHeader = "Nats-Last-Sequence"

const validPrefix = (prefix: string): boolean =>
  prefix === "" || (prefix.endsWith(".") && Result.isSuccess(Channel.validate(prefix.slice(0, -1))))

type Handler = (payload: string, position: Position | undefined, previous?: number | undefined) => void

interface Entry {
  readonly channel: string
  readonly handlers: Set<Handler>
  /** Called after a reconnect: what was published meanwhile may be missing. */
  readonly resumes: Set<() => void>
  /** Whether the channel is delivered as the history stream numbered it (when there is one). */
  readonly positioned: boolean
  subscription: Subscription | undefined
}

/**
 * What a JetStream history adds to the bus: a stream that records the bus's
 * own subjects and republishes each message it stored, with its sequence in
 * a header, to `republishPrefix` + the subject.
 */
export interface Numbering {
  /**
   * Makes sure the stream is there, on every connection (the first and each
   * reconnect): answers its epoch, or undefined when this NATS cannot keep it
   * (no JetStream). Fails on anything else (tried again after a while).
   */
  readonly setup: (nc: NatsConnection) => Promise<string | undefined>
  /** Where the stream republishes what it stored. */
  readonly republishPrefix: string
  /** How often (ms) a connected bus checks the stream again (one deleted while NATS stays up is made again). */
  readonly checkInterval: number
}

/** Where the numbering stands: not known yet, a stream with its epoch, or none on this NATS. */
export type NumberingState =
  | { readonly _tag: "Pending" }
  | { readonly _tag: "Numbered"; readonly epoch: string }
  | { readonly _tag: "Off" }

/** The bus, its connection (once there is one) and, with a {@link Numbering}, where that stands. */
export interface NatsBus {
  readonly bus: Bus["Service"]
  readonly connection: () => NatsConnection | undefined
  readonly numbering: () => NumberingState
}

/** A publish waiting for the connection. */
interface Pending {
  readonly subject: string
  readonly data: Uint8Array
}

/**
 * Where the bus stands:
 * - `connecting`: never connected yet; publishes fail.
 * - `connected`: publishes go to NATS at once.
 * - `disconnected`: the connection is lost and the client is reconnecting; publishes wait in the buffer.
 * - `holding`: reconnected, subscriptions restored; publishes still wait in the buffer until `replayDelay` has passed.
 * - `closed`: the bus is shut down, or the client gave up; publishes fail.
 */
type State = "connecting" | "connected" | "disconnected" | "holding" | "closed"

/** Makes the NATS bus. It does not wait for NATS: see `NatsBus.ts`'s notes. */
export const make = Effect.fnUntraced(function*(options: Options, numbering?: Numbering) {
  const prefix = options.subjectPrefix ?? defaultSubjectPrefix
  if (!validPrefix(prefix)) {
    return yield* new BusError({
      reason: "Unavailable",
      message: `the subject prefix ${JSON.stringify(prefix)} must be empty or valid channel tokens ending with "."`
    })
  }
  const servers = typeof options.servers === "string" ? [options.servers] : Array.from(options.servers)
  const maxPendingBytes = options.maxPendingBytes ?? defaultMaxPendingBytes
  const maxPendingMessages = options.maxPendingMessages ?? defaultMaxPendingMessages
  const reconnectTimeWait = Duration.fromInputUnsafe(options.reconnectTimeWait ?? "1 second")
  const replayDelay = Duration.toMillis(
    options.replayDelay === undefined
      ? Duration.sum(reconnectTimeWait, Duration.millis(250))
      : Duration.fromInputUnsafe(options.replayDelay)
  )
  const context = yield* Effect.context<never>()
  const log = (message: string) => {
    Effect.runForkWith(context)(Effect.logInfo(message))
  }
  // plain subscriptions by channel; those delivered as the stream numbered them apart
  const channels = new Map<string, Entry>()
  const positionedChannels = new Map<string, Entry>()
  let numbered: NumberingState = { _tag: "Pending" }
  const decoder = new TextDecoder()
  const encoder = new TextEncoder()
  let connection: NatsConnection | undefined
  let state: State = "connecting"
  let pending: Array<Pending> = []
  let pendingBytes = 0
  // whether a publish was refused since the last replay (logged once)
  let full = false
  // whether the first connection's failure was logged (once, however often it is retried)
  let toldUnreachable = false
  let replayTimer: ReturnType<typeof setTimeout> | undefined
  let streamCheck: ReturnType<typeof setInterval> | undefined

  const open = (entry: Entry) => {
    if (connection === undefined || connection.isClosed()) return
    const subject = prefix + entry.channel
    const state = numbered
    if (!entry.positioned || state._tag !== "Numbered" || numbering === undefined) {
      entry.subscription = connection.subscribe(subject, {
        callback: (error, message) => {
          if (error !== null) return
          const payload = decoder.decode(message.data)
          for (const handler of entry.handlers) handler(payload, undefined)
        }
      })
      return
    }
    // the stream's copy of each message it stored, with its sequence beside the text
    const epoch = state.epoch
    entry.subscription = connection.subscribe(numbering.republishPrefix + subject, {
      callback: (error, message) => {
        if (error !== null) return
        const payload = decoder.decode(message.data)
        const offset = Number(message.headers?.get(sequenceHeader))
        const position = Number.isSafeInteger(offset) && offset > 0 ? { epoch, offset } : undefined
        const before = Number(message.headers?.get(previousHeader))
        const previous = position !== undefined && Number.isSafeInteger(before) && before >= 0 ? before : undefined
        for (const handler of entry.handlers) handler(payload, position, previous)
      }
    })
  }

  const resumeAll = () => {
    for (const entry of positionedChannels.values()) {
      for (const resume of entry.resumes) resume()
    }
  }

  const reopen = (entry: Entry) => {
    if (entry.subscription !== undefined && !entry.subscription.isClosed()) entry.subscription.unsubscribe()
    entry.subscription = undefined
    open(entry)
  }

  // the stream, checked on a connection: subscriptions that depend on it follow what it answers
  const setUp = (nc: NatsConnection): Promise<void> =>
    numbering === undefined ? Promise.resolve() : numbering.setup(nc).then((epoch) => {
      const next: NumberingState = epoch === undefined ? { _tag: "Off" } : { _tag: "Numbered", epoch }
      const changed = next._tag !== numbered._tag || (next._tag === "Numbered" && numbered._tag === "Numbered" && next.epoch !== numbered.epoch)
      numbered = next
      // (before the first connection is announced, every subscription opens after this anyway)
      if (changed && connection === nc && state !== "connecting") for (const entry of positionedChannels.values()) reopen(entry)
    })

  const cancelReplay = () => {
    if (replayTimer !== undefined) clearTimeout(replayTimer)
    replayTimer = undefined
  }

  // Sends the buffer, in order, then flushes. Synchronous up to the flush: nothing published later can
  // overtake it, since the state becomes `connected` only once every buffered message is with the client.
  const replay = () => {
    cancelReplay()
    const nc = connection
    if (state !== "holding" || nc === undefined) return
    const batch = pending
    pending = []
    pendingBytes = 0
    full = false
    state = "connected"
    if (batch.length === 0) return
    let refused = 0
    for (const message of batch) {
      try {
        nc.publish(message.subject, message.data)
      } catch {
        refused++
      }
    }
    log(`NATS: sent ${batch.length - refused} messages published while disconnected`)
    if (refused > 0) log(`NATS: the client refused ${refused} buffered messages`)
    nc.flush().catch(() => log("NATS: the connection dropped while sending the buffer; some of it may be lost"))
  }

  const watch = async (nc: NatsConnection) => {
    for await (const status of nc.status()) {
      switch (status.type) {
        case "disconnect":
          if (state === "connected" || state === "holding") {
            log(`NATS: disconnected from ${status.server}; buffering publishes`)
            cancelReplay()
            state = "disconnected"
          }
          break
        case "reconnect":
          busReconnects.updateUnsafe(1, context)
          // a nats-server that restarted may have lost the stream (or its JetStream); once it is checked,
          // the positioned subscriptions are told to look for what they missed meanwhile
          if (numbering !== undefined) {
            setUp(nc).then(
              () => resumeAll(),
              (cause) => log(`NATS: the history stream could not be checked after a reconnect: ${String(cause)}`)
            )
          }
          if (state === "disconnected") {
            log(`NATS: reconnected to ${status.server}`)
            state = "holding"
            replayTimer = setTimeout(replay, replayDelay)
          }
          break
        case "close":
          cancelReplay()
          if (state !== "closed" && pending.length > 0) {
            log(`NATS: connection closed; ${pending.length} buffered messages dropped`)
          }
          state = "closed"
          pending = []
          pendingBytes = 0
          break
      }
    }
  }

  // a connection that opens after the bus was closed (the dial interrupted) is closed at once
  const dial = Effect.callback<NatsConnection, BusError>((resume, signal) => {
    connect({
      ...connectionOptions(options, options.name ?? "effect-lhttp"),
      maxReconnectAttempts: options.maxReconnectAttempts ?? -1,
      reconnectTimeWait: Duration.toMillis(reconnectTimeWait)
    }).then(
      (nc) => {
        if (signal.aborted) void nc.close()
        else resume(Effect.succeed(nc))
      },
      (cause) => resume(Effect.fail(new BusError({ reason: "Unavailable", message: "NATS is unreachable", cause })))
    )
  })

  // the stream is set up before the bus says it is connected; a setup that fails is tried again
  const setUpFirst = (nc: NatsConnection) =>
    Effect.tryPromise({
      try: () => setUp(nc),
      catch: (cause) => new BusError({ reason: "Unavailable", message: "the history stream could not be set up", cause })
    }).pipe(
      Effect.tapError((error) => Effect.sync(() => log(`NATS: ${error.message}: ${String(error.cause)}; retrying`))),
      Effect.retry(Schedule.spaced(options.connectRetry ?? "1 second")),
      Effect.as(nc)
    )

  yield* dial.pipe(
    Effect.tapError(() =>
      Effect.sync(() => {
        if (state === "connecting" && connection === undefined && !toldUnreachable) {
          toldUnreachable = true
          log(`NATS: unreachable at ${servers.join(", ")}, retrying`)
        }
      })
    ),
    Effect.retry(Schedule.spaced(options.connectRetry ?? "1 second")),
    Effect.tap((nc) =>
      Effect.sync(() => {
        // held from here, so that a shutdown during the setup closes it
        connection = nc
        void watch(nc)
      })
    ),
    Effect.flatMap(setUpFirst),
    Effect.tap((nc) =>
      Effect.sync(() => {
        // the stream checked again now and then: one deleted while NATS stays up is made again
        if (numbering !== undefined) {
          streamCheck = setInterval(() => {
            if (connection !== nc || (state !== "connected" && state !== "holding")) return
            setUp(nc).catch((cause) => log(`NATS: the history stream could not be checked: ${String(cause)}`))
          }, numbering.checkInterval)
          streamCheck.unref?.()
        }
        state = "connected"
        log(`NATS: connected to ${nc.getServer()}`)
        for (const entry of channels.values()) open(entry)
        for (const entry of positionedChannels.values()) open(entry)
      })
    ),
    Effect.forkScoped
  )

  yield* Effect.addFinalizer(() =>
    Effect.promise(async () => {
      if (streamCheck !== undefined) clearInterval(streamCheck)
      const nc = connection
      // what waits for the replay goes out now; what waits for a reconnect cannot
      if (state === "holding") replay()
      const wasConnected = state === "connected"
      cancelReplay()
      if (pending.length > 0) log(`NATS: shutting down while disconnected; ${pending.length} buffered messages dropped`)
      state = "closed"
      pending = []
      pendingBytes = 0
      connection = undefined
      if (nc === undefined || nc.isClosed()) return
      // draining waits for the server: only when there is one
      if (wasConnected) await nc.drain().catch(() => nc.close())
      else await nc.close()
    })
  )

  const unavailable = (message: string) => Effect.fail(new BusError({ reason: "Unavailable", message }))

  const buffer = (subject: string, payload: string) => {
    const data = encoder.encode(payload)
    const maxPayload = connection?.info?.max_payload
    if (maxPayload !== undefined && data.length > maxPayload) {
      return Effect.fail(
        new BusError({ reason: "PublishFailed", message: `the payload exceeds NATS's max_payload (${maxPayload} bytes)` })
      )
    }
    const cost = data.length + subject.length + messageOverhead
    if (pendingBytes + cost > maxPendingBytes || pending.length >= maxPendingMessages) {
      if (!full) log(`NATS: the reconnect buffer is full (${pending.length} messages); publishes fail until it is sent`)
      full = true
      return unavailable("NATS is disconnected and the reconnect buffer is full")
    }
    pending.push({ subject, data })
    pendingBytes += cost
    return Effect.void
  }

  const bus = Bus.of({
    publish: (channel, payload) =>
      Effect.suspend(() => {
        const subject = prefix + channel
        if (state === "disconnected" || state === "holding") return buffer(subject, payload)
        if (state !== "connected" || connection === undefined) {
          return unavailable(state === "closed" ? "the NATS connection is closed" : "not connected to NATS")
        }
        try {
          connection.publish(subject, payload)
          return Effect.void
        } catch (cause) {
          return Effect.fail(new BusError({ reason: "PublishFailed", message: "NATS refused the publish", cause }))
        }
      }),
    subscribe: (channel, onMessage, subscribeOptions) => {
      const onResume = subscribeOptions?.onResume
      const table = subscribeOptions?.positions === true && numbering !== undefined ? positionedChannels : channels
      return Effect.acquireRelease(
        Effect.sync(() => {
          let entry = table.get(channel)
          if (entry === undefined) {
            entry = {
              channel,
              handlers: new Set(),
              resumes: new Set(),
              positioned: table === positionedChannels,
              subscription: undefined
            }
            table.set(channel, entry)
            entry.handlers.add(onMessage)
            // before the first connection, subscriptions open once it is made (and the stream set up)
            if (state !== "connecting") open(entry)
          } else {
            entry.handlers.add(onMessage)
          }
          if (onResume !== undefined) entry.resumes.add(onResume)
        }),
        () =>
          Effect.sync(() => {
            const entry = table.get(channel)
            if (entry === undefined) return
            entry.handlers.delete(onMessage)
            if (onResume !== undefined) entry.resumes.delete(onResume)
            if (entry.handlers.size > 0) return
            table.delete(channel)
            if (entry.subscription !== undefined && !entry.subscription.isClosed()) entry.subscription.unsubscribe()
          })
      )
    },
    isReady: Effect.sync(() => state === "connected" || state === "holding"),
    numbering: numbering === undefined ? "none" : "bus"
  })
  return { bus, connection: () => connection, numbering: () => numbered } satisfies NatsBus
})

