/**
 * The NATS bus with channel history in JetStream: positions hold across
 * nodes and restarts, so a client recovers on any node of a cluster, after
 * every node (and nats-server, with file storage) restarted. Import it as
 * `effect-lhttp/NatsHistory`; it needs `@nats-io/transport-node` and
 * `@nats-io/jetstream`. It provides both the `Bus` and the `History`.
 *
 * One stream (`LHTTP_HISTORY` by default) records the bus's own subjects
 * (`<prefix>>`; with the empty prefix of original lhttp nodes, `*`: the
 * channels without a dot). So every message published on the bus, by any
 * node, `POST /publish` or an original lhttp node, is recorded and numbered
 * by JetStream itself, in one order per channel across nodes; nobody waits
 * for an append, and the NATS payload stays the LHTTP text as it was
 * published. The stream republishes each message it stored, with its
 * sequence in a NATS header, to `lhttp-positions.<subject>`: the nodes
 * deliver a history channel from there, so a position travels beside the
 * text and never inside it. A message's offset is its stream sequence:
 * offsets grow along a channel but skip the numbers other channels took. The
 * epoch is the stream's creation time (and its subjects): a deleted and
 * recreated stream is a new epoch.
 *
 * A recovery reads the channel's messages after the position (JetStream
 * direct get, one request each) and says `recovered:yes` only when none of
 * the channel's messages after it can have been dropped: the stream drops
 * oldest first (by age and bytes overall, by count per subject), so nothing
 * after the position is gone when one of the channel's messages at or
 * before it is still kept, or when the stream still holds everything from
 * the position on and the channel has fewer messages than the per-subject
 * limit; otherwise it answers `Trimmed`.
 *
 * On a NATS without JetStream the bus works (a node of the cluster like any
 * other) and no channel keeps history: one warning line says so, and the
 * history's `limitation` too. Before NATS is reached the bus and the history
 * are not ready.
 *
 * @since 0.1.0
 */
import { jetstreamManager, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream"
import type { NatsConnection } from "@nats-io/transport-node"
import { Config, Context, Duration, Effect, Layer, Option, Result } from "effect"
import * as Bus from "./Bus.ts"
import type { ChannelId } from "./Channel.ts"
import * as History from "./History.ts"
import { checkedOr, natsServersOption, parseNatsName, refine, stringKeepingEmpty } from "./internal/server/config.ts"
import { noJetStream } from "./internal/nats/client.ts"
import * as internal from "./internal/nats/bus.ts"
import * as NatsBus from "./NatsBus.ts"

/**
 * Options of the bus with JetStream history: the NATS bus's, the policies,
 * and the stream's.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends NatsBus.Options {
  /** Which channels keep history (the first policy whose prefix matches counts). */
  readonly policies: ReadonlyArray<History.Policy>
  /** The stream (default `LHTTP_HISTORY`). */
  readonly stream?: string | undefined
  /** Where the stream republishes what it stored (default `lhttp-positions.`, then the bus subject). */
  readonly republishPrefix?: string | undefined
  /** The most the stream holds, all channels together (default 1 GiB): past it, the oldest messages go. */
  readonly maxBytes?: number | undefined
  /** Where the stream keeps its messages (default `"file"`: they outlive a nats-server restart). */
  readonly storage?: "file" | "memory" | undefined
  /**
   * How often the node checks that the stream is still there, besides at
   * every (re)connection (default 10 s): a stream deleted while NATS stays up
   * is made again (a new epoch); meanwhile the history channels deliver
   * nothing on this node.
   */
  readonly streamCheckInterval?: Duration.Input | undefined
}

/**
 * The default prefix of the subjects the stream republishes to.
 *
 * @since 0.1.0
 */
export const defaultRepublishPrefix = "lhttp-positions."

const unavailable = (message: string, cause?: unknown) =>
  new History.HistoryError({ reason: "Unavailable", message, cause })

// a short, stable hash of a text, in base 36 (the stream's subjects, in its epoch)
const hashOf = (text: string): string => {
  let hash = 2166136261
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 16777619)
  return (hash >>> 0).toString(36)
}

/**
 * Makes the bus and the history: the bus connects as the NATS bus does (not
 * waiting for NATS), and on every connection makes sure the stream is there.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function*(options: Options) {
  const streamName = options.stream ?? "LHTTP_HISTORY"
  const prefix = options.subjectPrefix ?? NatsBus.defaultSubjectPrefix
  const republishPrefix = options.republishPrefix ?? defaultRepublishPrefix
  const lookup = History.policyLookup(options.policies)
  const maxSize = Math.max(1, ...options.policies.map((policy) => policy.size))
  const maxAge = Math.max(1, ...options.policies.map((policy) => Duration.toMillis(policy.ttl)))
  const subjects = prefix === "" ? ["*"] : [`${prefix}>`]
  const context = yield* Effect.context<never>()
  let limitation: string | undefined
  let manager: JetStreamManager | undefined

  const wanted: Partial<StreamConfig> = {
    subjects,
    republish: { src: ">", dest: `${republishPrefix}>` },
    max_msgs_per_subject: maxSize,
    max_age: maxAge * 1_000_000,
    max_bytes: options.maxBytes ?? 2 ** 30,
    allow_direct: true
  }
  const differs = (config: StreamConfig) =>
    config.subjects?.join(" ") !== subjects.join(" ") ||
    config.republish?.src !== wanted.republish!.src ||
    config.republish?.dest !== wanted.republish!.dest ||
    config.max_msgs_per_subject !== wanted.max_msgs_per_subject ||
    config.max_age !== wanted.max_age ||
    config.max_bytes !== wanted.max_bytes ||
    config.allow_direct !== true

  // the stream on a connection: found (and brought to these settings) or made; its epoch
  const setup = async (nc: NatsConnection): Promise<string | undefined> => {
    let jsm: JetStreamManager
    try {
      jsm = await jetstreamManager(nc)
    } catch (cause) {
      if (!noJetStream(cause)) throw cause
      const line = "channel history is off: this NATS has no JetStream (start nats-server with -js to keep it)"
      if (limitation !== line) Effect.runForkWith(context)(Effect.logWarning(line))
      limitation = line
      return undefined
    }
    const info = await jsm.streams.info(streamName).then(
      (existing) => differs(existing.config) ? jsm.streams.update(streamName, { ...existing.config, ...wanted }) : existing,
      () =>
        jsm.streams.add({
          name: streamName,
          storage: options.storage === "memory" ? "memory" : "file",
          ...wanted
        } as Parameters<JetStreamManager["streams"]["add"]>[0]).catch(() =>
          // another node made it meanwhile
          jsm.streams.info(streamName)
        )
    )
    manager = jsm
    limitation = undefined
    return `${Date.parse(info.created).toString(36)}-${hashOf(subjects.join(" "))}`
  }

  // no policy, no stream: the plain NATS bus
  const made = yield* internal.make(options, options.policies.length === 0 ? undefined : {
    setup,
    republishPrefix,
    checkInterval: Duration.toMillis(Duration.fromInputUnsafe(options.streamCheckInterval ?? "10 seconds"))
  })

  // the channel's messages after `since`, as far as the stream and its policy keep them
  const recover = async (
    jsm: JetStreamManager,
    epoch: string,
    channel: ChannelId,
    policy: History.Policy,
    since: History.Position | undefined
  ): Promise<History.Recovery> => {
    const subject = prefix + channel
    const info = await jsm.streams.info(streamName)
    const last = info.state.last_seq
    const position = { epoch, offset: last }
    if (since === undefined) return { messages: [], position }
    if (since.epoch !== epoch) return { messages: [], position, reason: "EpochChanged" }
    if (since.offset > last) return { messages: [], position, reason: "UnknownPosition" }
    if (since.offset === last) return { messages: [], position }
    const oldest = Date.now() - Duration.toMillis(policy.ttl)
    const found: Array<History.Stored & { readonly at: number }> = []
    for (let seq = since.offset + 1; seq <= last;) {
      const message = await jsm.direct.getMessage(streamName, { seq, next_by_subj: subject })
      if (message === null || message.seq > last) break
      found.push({ text: message.string(), position: { epoch, offset: message.seq }, at: message.time.getTime() })
      seq = message.seq + 1
    }
    const kept = found.filter((message) => message.at > oldest).slice(-policy.size)
    const messages = kept.map(({ position, text }) => ({ position, text }))
    if (kept.length < found.length) return { messages, position, reason: "Trimmed" }
    // nothing of the channel after `since` was dropped when one of its messages at or before it is still
    // there, or when the stream still starts at or before `since` and the channel is under its per-subject limit
    const earlier = await jsm.direct.getMessage(streamName, { seq: 1, next_by_subj: subject })
    const perSubject = info.config.max_msgs_per_subject
    const complete = (earlier !== null && earlier.seq <= since.offset) ||
      (info.state.first_seq <= since.offset + 1 && (perSubject === undefined || perSubject < 0 || found.length < perSubject))
    return complete ? { messages, position } : { messages, position, reason: "Trimmed" }
  }

  const history = History.History.of({
    policyOf: (channel) => {
      if (made.numbering()._tag === "Off") return undefined
      // with the empty prefix the stream records one-token subjects only
      if (prefix === "" && channel.includes(".")) return undefined
      return lookup(channel)
    },
    numbering: options.policies.length === 0 ? "none" : "bus",
    recover: (channel, policy, since) =>
      Effect.suspend(() => {
        const state = made.numbering()
        if (state._tag !== "Numbered" || manager === undefined) {
          return Effect.fail(unavailable(state._tag === "Off" ? limitation ?? "no JetStream" : "NATS is not reached yet"))
        }
        const jsm = manager
        return Effect.tryPromise({
          try: () => recover(jsm, state.epoch, channel, policy, since),
          catch: (cause) =>
            new History.HistoryError({ reason: "ReadFailed", message: `the history failed to read a channel: ${String(cause)}`, cause })
        })
      }),
    isReady: Effect.sync(() => made.numbering()._tag !== "Pending"),
    limitation: Effect.sync(() => limitation)
  })
  return { bus: made.bus, history }
})

/**
 * The bus with JetStream history as a Layer: the `Bus` and the `History`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Bus.Bus | History.History, Bus.BusError> =>
  Layer.effectContext(Effect.map(make(options), ({ bus, history }) =>
    Context.make(Bus.Bus, bus).pipe(Context.add(History.History, history))))

/**
 * The history's settings from the environment, beside the NATS bus's
 * ({@link NatsBus.config}): `LHTTP_HISTORY_STREAM` (default `LHTTP_HISTORY`;
 * letters, digits, `_` and `-`).
 *
 * @since 0.1.0
 * @category config
 */
export const streamConfig: Config.Config<string> = checkedOr("LHTTP_HISTORY_STREAM", "LHTTP_HISTORY", parseNatsName)

/**
 * The bus and history of the main job: the policies of `LHTTP_HISTORY`
 * ({@link History.parsePolicies}; `fallback` when it is not set, none when it
 * is empty; a malformed one fails with a `ConfigError` at `LHTTP_HISTORY`
 * saying what is wrong); with `LHTTP_NATS_URL`, the NATS bus ({@link NatsBus.config})
 * with history in JetStream; without, the memory bus and history.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFromEnv = (
  fallback: string
): Layer.Layer<Bus.Bus | History.History, Bus.BusError | Config.ConfigError> =>
  Layer.unwrap(Effect.gen(function*() {
    const policies = yield* stringKeepingEmpty("LHTTP_HISTORY", fallback).pipe(refine("LHTTP_HISTORY", (text) =>
      Result.try({
        try: () => History.parsePolicies(text),
        catch: (cause) => cause instanceof Error ? cause.message : String(cause)
      })))
    const url = yield* natsServersOption
    // the NATS settings are checked without NATS too: a bad value is a mistake either way
    const stream = yield* streamConfig
    yield* NatsBus.subjectPrefixConfig
    if (Option.isNone(url)) return Layer.merge(Bus.layerMemory(), History.layerMemory({ policies }))
    const env = yield* NatsBus.config
    return layer({
      servers: env.servers,
      subjectPrefix: env.subjectPrefix,
      name: Option.getOrUndefined(env.name),
      token: Option.getOrUndefined(env.token),
      user: Option.getOrUndefined(env.user),
      pass: Option.getOrUndefined(env.pass),
      policies,
      stream
    })
  }))
