/**
 * Channel history in a JetStream stream: positions hold across nodes and
 * restarts, so a client recovers on any node of a cluster, after every node
 * (and nats-server, with file storage) restarted. Import it as
 * `effect-lhttp/NatsHistory`; it needs `@nats-io/transport-node` and
 * `@nats-io/jetstream`, and a nats-server with JetStream (`-js`).
 *
 * One stream (`LHTTP_HISTORY` by default) holds every history channel, each
 * on its own subject (`lhttp-history.<channel>`); its limits are the largest
 * of the policies (messages per subject, age), and each channel's own policy
 * is applied when it is read. A message's offset is its stream sequence:
 * offsets grow along a channel but skip the numbers other channels took.
 * Each stored message names the offset of the one before it on its channel
 * (header `Lhttp-Prev`), and a publish only lands when that is still the
 * channel's last (JetStream's expected last subject sequence; a node that
 * lost the race reads the new last and tries again), so the chain has no
 * fork and a recovery can tell a trimmed history from offsets other channels
 * used. The epoch is the stream's creation time: a deleted and recreated
 * stream is a new epoch.
 *
 * What it costs: a publish on a history channel waits for JetStream's
 * acknowledgement before it goes on the bus (one round trip to nats-server,
 * and the stream's write), in order per channel on each node; a recovery
 * reads the channel's messages one request each (JetStream direct get).
 *
 * @since 0.1.0
 */
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream"
import { headers as natsHeaders } from "@nats-io/transport-node"
import { Config, Duration, Effect, Layer, Option } from "effect"
import type { ChannelId } from "./Channel.ts"
import * as History from "./History.ts"
import { stringKeepingEmpty } from "./internal/config.ts"
import { clientConfig, type ClientOptions, connectScoped, noJetStream, serversOf } from "./internal/natsClient.ts"

/**
 * Options of the JetStream history.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends History.Options, ClientOptions {
  /** The stream (default `LHTTP_HISTORY`). */
  readonly stream?: string | undefined
  /** What a channel's subject starts with (default `lhttp-history.`). */
  readonly subjectPrefix?: string | undefined
  /** The most the stream holds, all channels together (default 1 GiB): past it, the oldest messages go. */
  readonly maxBytes?: number | undefined
  /** Where the stream keeps its messages (default `"file"`: they outlive a nats-server restart). */
  readonly storage?: "file" | "memory" | undefined
  /** The client name NATS shows in its monitoring (default `effect-lhttp-history`). */
  readonly name?: string | undefined
}

const unavailable = (message: string, cause?: unknown) =>
  new History.HistoryError({ reason: "Unavailable", message, cause })

// JetStream's answer when the expected last subject sequence is not the channel's last
const wrongLastSequence = 10071
const prevHeader = "Lhttp-Prev"
// how many times a publish that lost the race to another node tries again
const attempts = 64
// how many channels' last offsets a node remembers
const maxRemembered = 10_000

/**
 * The channel's actual last offset when a publish lost the race (JetStream
 * says it: "wrong last sequence: <n>"), or undefined for any other failure
 * (NaN when the number is not in the message: it is read again).
 */
const lastFromConflict = (cause: unknown): number | undefined => {
  if (typeof cause !== "object" || cause === null) return undefined
  const code = (cause as { code?: unknown }).code
  const text = String((cause as { message?: unknown }).message ?? cause)
  if (code !== wrongLastSequence && !/wrong last sequence/i.test(text)) return undefined
  const match = /wrong last sequence: (\d+)/i.exec(text)
  return match === null ? NaN : Number(match[1])
}

/**
 * Makes the history: connects to NATS and creates (or updates) the stream.
 * Fails when NATS is unreachable or has no JetStream.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function*(options: Options) {
  const servers = serversOf(options).join(", ")
  const streamName = options.stream ?? "LHTTP_HISTORY"
  const prefix = options.subjectPrefix ?? "lhttp-history."
  const policyOf = History.policyLookup(options.policies)
  const nc = yield* connectScoped(
    options,
    options.name ?? "effect-lhttp-history",
    (at, cause) => unavailable(`the history cannot reach NATS at ${at}`, cause)
  )
  const maxSize = Math.max(1, ...options.policies.map((policy) => policy.size))
  const maxAge = Math.max(1, ...options.policies.map((policy) => Duration.toMillis(policy.ttl)))
  const { epoch, jsm } = yield* Effect.tryPromise({
    try: async () => {
      const jsm: JetStreamManager = await jetstreamManager(nc)
      const config = {
        subjects: [`${prefix}>`],
        max_msgs_per_subject: maxSize,
        max_age: maxAge * 1_000_000,
        max_bytes: options.maxBytes ?? 2 ** 30,
        allow_direct: true
      }
      const info = await jsm.streams.info(streamName).then(
        (existing) => jsm.streams.update(streamName, { ...existing.config, ...config }),
        () =>
          jsm.streams.add({
            name: streamName,
            storage: options.storage === "memory" ? "memory" : "file",
            ...config
          } as Parameters<JetStreamManager["streams"]["add"]>[0])
      )
      return { epoch: Date.parse(info.created).toString(36), jsm }
    },
    catch: (cause) =>
      unavailable(
        noJetStream(cause)
          ? `NATS at ${servers} has no JetStream: channel history needs it (start nats-server with -js)`
          : `the history cannot open the stream ${JSON.stringify(streamName)}: ${String(cause)}`,
        cause
      )
  })
  const js: JetStreamClient = jetstream(nc)

  // each channel's last offset as this node last knew it (the channels appended to most recently: a
  // channel forgotten is read again); and its appends in order, one at a time
  const lastKnown = new Map<ChannelId, number>()
  const remember = (channel: ChannelId, offset: number) => {
    lastKnown.delete(channel)
    if (lastKnown.size >= maxRemembered) lastKnown.delete(lastKnown.keys().next().value!)
    lastKnown.set(channel, offset)
  }
  const queues = new Map<ChannelId, Promise<unknown>>()
  const serially = <A>(channel: ChannelId, task: () => Promise<A>): Promise<A> => {
    const previous = queues.get(channel) ?? Promise.resolve()
    const next = previous.then(task, task)
    const settled = next.then(() => undefined, () => undefined)
    queues.set(channel, settled)
    void settled.then(() => {
      if (queues.get(channel) === settled) queues.delete(channel)
    })
    return next
  }

  const lastOf = async (subject: string): Promise<number> => {
    const message = await jsm.direct.getMessage(streamName, { last_by_subj: subject })
    return message === null ? 0 : message.seq
  }

  const append = async (channel: ChannelId, text: string) => {
    const subject = prefix + channel
    for (let attempt = 1;; attempt++) {
      const prev = lastKnown.get(channel) ?? await lastOf(subject)
      const header = natsHeaders()
      header.set(prevHeader, String(prev))
      try {
        const ack = await js.publish(subject, text, { headers: header, expect: { lastSubjectSequence: prev } })
        remember(channel, ack.seq)
        const position = { epoch, offset: ack.seq }
        return { position, text: History.positioned(text, channel, position) }
      } catch (cause) {
        lastKnown.delete(channel)
        const last = lastFromConflict(cause)
        if (last === undefined || attempt >= attempts) throw cause
        // the channel's last, as JetStream said it: the next attempt chains to it at once
        if (!Number.isNaN(last)) remember(channel, last)
      }
    }
  }

  // the channel's messages after `since`, as far as its policy keeps them
  const recover = async (channel: ChannelId, policy: History.Policy, since: History.Position | undefined) => {
    const subject = prefix + channel
    const last = await lastOf(subject)
    const position = { epoch, offset: last }
    if (since === undefined) return { frames: [], position }
    if (since.epoch !== epoch) return { frames: [], position, reason: "EpochChanged" as const }
    if (since.offset > last) return { frames: [], position, reason: "UnknownPosition" as const }
    if (since.offset === last) return { frames: [], position }
    const oldest = Date.now() - Duration.toMillis(policy.ttl)
    const kept: Array<{ readonly prev: number; readonly text: string }> = []
    let seq = since.offset + 1
    for (;;) {
      const message = await jsm.direct.getMessage(streamName, { seq, next_by_subj: subject })
      if (message === null) break
      if (message.time.getTime() > oldest) {
        kept.push({
          prev: Number(message.header.get(prevHeader)),
          text: History.positioned(message.string(), channel, { epoch, offset: message.seq })
        })
      }
      if (message.seq >= last) break
      seq = message.seq + 1
    }
    const frames = kept.slice(-policy.size)
    // the first message kept after `since` must follow it directly, or some were trimmed
    const first = kept.length - frames.length
    const complete = frames.length > 0 && first === 0 && kept[0]!.prev === since.offset
    return complete
      ? { frames: frames.map((frame) => frame.text), position }
      : { frames: frames.map((frame) => frame.text), position, reason: "Trimmed" as const }
  }

  const failed = (reason: "AppendFailed" | "ReadFailed", what: string) => (cause: unknown) =>
    new History.HistoryError({ reason, message: `the history failed to ${what}: ${String(cause)}`, cause })

  return History.History.of({
    policyOf,
    append: (channel, _policy, text) =>
      Effect.tryPromise({
        try: () => serially(channel, () => append(channel, text)),
        catch: failed("AppendFailed", "append a message")
      }),
    recover: (channel, policy, since) =>
      Effect.tryPromise({ try: () => recover(channel, policy, since), catch: failed("ReadFailed", "read a channel") })
  })
})

/**
 * The JetStream history as a Layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<History.History, History.HistoryError> =>
  Layer.effect(History.History, make(options))

/**
 * The history's settings from the environment, as the NATS bus reads them:
 * `LHTTP_NATS_URL` (comma-separated), `LHTTP_NATS_TOKEN`, `LHTTP_NATS_USER`,
 * `LHTTP_NATS_PASS`, and `LHTTP_HISTORY_STREAM` (default `LHTTP_HISTORY`).
 *
 * @since 0.1.0
 * @category config
 */
export const config = Config.all([
  clientConfig,
  Config.String("LHTTP_HISTORY_STREAM").pipe(Config.withDefault("LHTTP_HISTORY"))
]).pipe(Config.map(([client, stream]) => ({ ...client, stream })))

/**
 * The history of the main job: the policies of `LHTTP_HISTORY`
 * ({@link History.parsePolicies}; `fallback` when it is not set, none when it
 * is empty), kept in JetStream when `LHTTP_NATS_URL` is set (failing at start
 * when that NATS has no JetStream), in memory when not.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFromEnv = (
  fallback: string
): Layer.Layer<History.History, History.HistoryError | Config.ConfigError> =>
  Layer.unwrap(Effect.gen(function*() {
    const text = yield* stringKeepingEmpty("LHTTP_HISTORY", fallback)
    const policies = yield* Effect.try({
      try: () => History.parsePolicies(text),
      catch: (cause) =>
        new History.HistoryError({
          reason: "InvalidPolicy",
          message: `LHTTP_HISTORY: ${cause instanceof Error ? cause.message : String(cause)}`,
          cause
        })
    })
    const url = yield* Config.option(Config.String("LHTTP_NATS_URL"))
    if (Option.isNone(url) || policies.length === 0) return History.layerMemory({ policies })
    return layer({ ...(yield* config), policies })
  }))
