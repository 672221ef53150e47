/**
 * The JetStream history's implementation (the public face, its Layers and
 * its environment, is `NatsHistory.ts`): its options; the stream, found or
 * made (and brought to the options' settings) on every connection of the
 * bus, its epoch the stream's creation time and subjects; and the recovery
 * of a channel's messages after a position, by JetStream direct gets.
 */
import {
  jetstream,
  type JetStreamClient,
  type JetStreamManager,
  jetstreamManager,
  type MsgRequest,
  type StreamConfig,
  type StreamInfo
} from "@nats-io/jetstream"
import type { NatsConnection } from "@nats-io/transport-node"
import { Duration, Effect } from "effect"
import * as History from "../../History.ts"
import * as Bus from "./bus.ts"
import { noJetStream } from "./client.ts"
import { defaultSubjectPrefix } from "./config.ts"

/** The default prefix of the subjects the stream republishes to. */
export const defaultRepublishPrefix = "lhttp-positions."

/** Options of the bus with JetStream history: the NATS bus's, the policies, and the stream's. */
export interface Options extends Bus.Options {
  /** Which channels keep history (the first policy whose prefix matches counts). */
  readonly policies: ReadonlyArray<History.Policy>
  /** The stream (default `LHTTP_HISTORY`). */
  readonly stream?: string | undefined
  /** Where the stream republishes what it stored (default `lhttp-positions.`, then the bus subject). */
  readonly republishPrefix?: string | undefined
  /** The most the stream holds, all channels together (default 1 GiB): past it, the oldest messages go. */
  readonly maxBytes?: number | undefined
  /** How many servers of a NATS cluster keep the stream (default 1; 3 outlive one server). */
  readonly replicas?: number | undefined
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

const noJetStreamLine = "channel history is off: this NATS has no JetStream (start nats-server with -js to keep it)"

// a short, stable hash of a text, in base 36 (the stream's subjects, in its epoch)
const hashOf = (text: string): string => {
  let hash = 2166136261
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 16777619)
  return (hash >>> 0).toString(36)
}

/** The stream as the options want it: its name and settings. */
interface Stream {
  readonly name: string
  readonly storage: "file" | "memory"
  readonly subjects: ReadonlyArray<string>
  readonly wanted: Partial<StreamConfig>
}

const streamOf = (options: Options, subjects: Array<string>, republishPrefix: string): Stream => ({
  name: options.stream ?? "LHTTP_HISTORY",
  storage: options.storage === "memory" ? "memory" : "file",
  subjects,
  wanted: {
    subjects,
    republish: { src: ">", dest: `${republishPrefix}>` },
    max_msgs_per_subject: Math.max(1, ...options.policies.map((policy) => policy.size)),
    max_age: Math.max(1, ...options.policies.map((policy) => Duration.toMillis(policy.ttl))) * 1_000_000,
    max_bytes: options.maxBytes ?? 2 ** 30,
    num_replicas: options.replicas ?? 1,
    allow_direct: true
  }
})

// whether an existing stream's settings differ from the wanted ones
const differs = (config: StreamConfig, stream: Stream) =>
  config.subjects?.join(" ") !== stream.subjects.join(" ") ||
  config.republish?.src !== stream.wanted.republish?.src ||
  config.republish?.dest !== stream.wanted.republish?.dest ||
  config.max_msgs_per_subject !== stream.wanted.max_msgs_per_subject ||
  config.max_age !== stream.wanted.max_age ||
  config.max_bytes !== stream.wanted.max_bytes ||
  config.num_replicas !== stream.wanted.num_replicas ||
  config.allow_direct !== true

// the stream on a manager: found (and brought to the wanted settings) or made; its epoch
const ensure = async (jsm: JetStreamManager, stream: Stream): Promise<string> => {
  const info = await jsm.streams.info(stream.name).then(
    (existing) =>
      differs(existing.config, stream)
        ? jsm.streams.update(stream.name, { ...existing.config, ...stream.wanted })
        : existing,
    () =>
      jsm.streams.add(
        {
          name: stream.name,
          storage: stream.storage,
          ...stream.wanted
        } as Parameters<JetStreamManager["streams"]["add"]>[0]
      ).catch(() =>
        // another node made it meanwhile
        jsm.streams.info(stream.name)
      )
  )
  return `${Date.parse(info.created).toString(36)}-${hashOf(stream.subjects.join(" "))}`
}

/**
 * The channel's messages after `since` on `subject`, as far as the stream and
 * the policy keep them (exported for its tests, which interleave its reads).
 */
//
// What a subscriber must have once its recovery is done is the channel's last message (its sequence is the
// channel's position). A replica behind must not set it: what was stored between its state and the
// subscriber's gate would reach the subscriber neither in the recovery nor live (found by the fault campaign).
// So a replica's answer is taken when it is at least what this node delivered live on the channel (which the
// subscriber, new in the channel, may have missed); else, and on a channel this node did not deliver yet, the
// stream's leader says it. The messages up to it are read by direct gets, which any replica answers: a
// replica holds a prefix of the stream, so what it answers is right, and one that answers nothing before the
// last message is behind: that get is asked of the leader. When the message at `since` is still there,
// nothing after it was dropped (the stream drops oldest first); else the stream's state says.
export const recover = async (
  jsm: JetStreamManager,
  stream: string,
  epoch: string,
  subject: string,
  policy: History.Policy,
  since: History.Position | undefined,
  maxBytes: number,
  reached: History.Position | undefined
): Promise<History.Recovery> => {
  // `since:now`: the stream's state, in one request, as soon as the live subscription is in place (the
  // shorter the read, the fewer messages published meanwhile fall before the position: see docs/reliability.md)
  if (since === undefined) {
    return { messages: [], position: { epoch, offset: (await jsm.streams.info(stream)).state.last_seq } }
  }
  // where the channel is: when this node delivered it live, at least there (a replica may answer, and reading
  // up to there passes a replica behind); else the leader's word
  const live = reached?.epoch === epoch ? reached.offset : undefined
  const replica = live === undefined ? null : await jsm.direct.getMessage(stream, { last_by_subj: subject })
  // (behind what was delivered live: that replica lags, or the node's last position was the stream's, not one
  // of the channel's messages; the leader says which)
  const latest = replica !== null && replica.seq >= live!
    ? replica
    : await jsm.streams.getMessage(stream, { last_by_subj: subject })
  let last = latest?.seq ?? 0
  let position = { epoch, offset: last }
  if (last === 0 || (since !== undefined && since.epoch === epoch && since.offset > last)) {
    // nothing of the channel after `since`, as far as that answer goes: the stream's state gives the position,
    // and the channel's last message asked after it (stored meanwhile, it is at or before that position, so it
    // is read: found by the fault campaign, where such a message reached the subscriber neither way)
    const info = await jsm.streams.info(stream)
    const again = await jsm.streams.getMessage(stream, { last_by_subj: subject })
    if (again === null || since === undefined || since.epoch !== epoch || again.seq <= since.offset) {
      return byState(info, epoch, since, again !== null)
    }
    last = again.seq
    position = { epoch, offset: info.state.last_seq }
  }
  if (since === undefined) return { messages: [], position }
  if (since.epoch !== epoch) return { messages: [], position, reason: "EpochChanged" }
  if (since.offset === last) return { messages: [], position }
  // the first message of the channel at or after `since`, then each one after it, up to the last
  const next = async (seq: number) =>
    (await jsm.direct.getMessage(stream, { seq, next_by_subj: subject })) ??
      // (the leader answers next_by_subj too, since nats-server 2.9; the client's type does not say so)
      (await jsm.streams.getMessage(stream, { seq, next_by_subj: subject } as unknown as MsgRequest))
  const oldest = Date.now() - Duration.toMillis(policy.ttl)
  const found: Array<History.Stored & { readonly at: number }> = []
  let bytes = 0
  let anchored = false
  let done = false
  for (let seq = since.offset; !done;) {
    const message = await next(seq)
    // nothing up to the last one: it went meanwhile (its age), so may have others after `since`
    if (message === null || message.seq > last) break
    seq = message.seq + 1
    done = message.seq === last
    if (message.seq === since.offset) {
      anchored = true
      continue
    }
    // past the bound nothing is handed over: no need to read the rest
    bytes += message.data.length
    if (bytes > maxBytes) return { messages: [], position, reason: "RecoveryLimit" }
    found.push({ text: message.string(), position: { epoch, offset: message.seq }, at: message.time.getTime() })
  }
  const kept = found.filter((message) => message.at > oldest).slice(-policy.size)
  const messages = kept.map(({ position, text }) => ({ position, text }))
  if (kept.length < found.length || !done) return { messages, position, reason: "Trimmed" }
  if (anchored) return { messages, position }
  // the message at `since` is gone (or was another channel's): nothing of the channel after it was dropped when
  // one of its messages before it is still there, or when the stream still starts at or before `since` and the
  // channel is under its per-subject limit
  const info = await jsm.streams.info(stream)
  const earlier = await jsm.streams.getMessage(stream, { seq: 1, next_by_subj: subject } as unknown as MsgRequest)
  const perSubject = info.config.max_msgs_per_subject
  const complete = (earlier !== null && earlier.seq < since.offset) ||
    (info.state.first_seq <= since.offset + 1 &&
      (perSubject === undefined || perSubject < 0 || found.length < perSubject))
  return complete ? { messages, position } : { messages, position, reason: "Trimmed" }
}

// The recovery of a channel with nothing after `since` to read (no message of it kept, or `since` at or past its
// last one), by the stream's state: its last sequence is the position; nothing after `since` was dropped when
// the channel still has a message (at or before `since`), or when the stream still starts at or before `since`.
const byState = (
  info: StreamInfo,
  epoch: string,
  since: History.Position | undefined,
  kept: boolean
): History.Recovery => {
  const position = { epoch, offset: info.state.last_seq }
  if (since === undefined) return { messages: [], position }
  if (since.epoch !== epoch) return { messages: [], position, reason: "EpochChanged" }
  if (since.offset > position.offset) return { messages: [], position, reason: "UnknownPosition" }
  return kept || info.state.first_seq <= since.offset + 1
    ? { messages: [], position }
    : { messages: [], position, reason: "Trimmed" }
}

/**
 * Makes the bus and the history: the bus connects as the NATS bus does (not
 * waiting for NATS), and on every connection makes sure the stream is there.
 * Without a policy there is no stream: the plain NATS bus.
 */
export const make = Effect.fnUntraced(function*(options: Options) {
  const prefix = options.subjectPrefix ?? defaultSubjectPrefix
  const republishPrefix = options.republishPrefix ?? defaultRepublishPrefix
  const stream = streamOf(options, prefix === "" ? ["*"] : [`${prefix}>`], republishPrefix)
  const lookup = History.policyLookup(options.policies)
  const context = yield* Effect.context<never>()
  let limitation: string | undefined
  let manager: JetStreamManager | undefined

  // the stream on a connection, or none (said once) when that NATS has no JetStream
  const setup = async (nc: NatsConnection): Promise<string | undefined> => {
    let jsm: JetStreamManager
    try {
      jsm = await jetstreamManager(nc)
    } catch (cause) {
      if (!noJetStream(cause)) throw cause
      if (limitation !== noJetStreamLine) Effect.runForkWith(context)(Effect.logWarning(noJetStreamLine))
      limitation = noJetStreamLine
      return undefined
    }
    const epoch = await ensure(jsm, stream)
    manager = jsm
    limitation = undefined
    return epoch
  }

  // one JetStream client per connection (a connection lives across its reconnects)
  let client: { readonly nc: NatsConnection; readonly js: JetStreamClient } | undefined
  const store = (nc: NatsConnection, subject: string, payload: string, timeout: number): Promise<number> => {
    if (client?.nc !== nc) client = { nc, js: jetstream(nc) }
    return client.js.publish(subject, payload, { timeout }).then((ack) => ack.seq)
  }

  const made = yield* Bus.make(
    options,
    options.policies.length === 0 ? undefined : {
      setup,
      store,
      leaderElected: `$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.${stream.name}`,
      republishPrefix,
      checkInterval: Duration.toMillis(Duration.fromInputUnsafe(options.streamCheckInterval ?? "10 seconds"))
    }
  )

  const history = History.History.of({
    policyOf: (channel) => {
      if (made.numbering()._tag === "Off") return undefined
      // with the empty prefix the stream records one-token subjects only
      if (prefix === "" && channel.includes(".")) return undefined
      return lookup(channel)
    },
    numbering: options.policies.length === 0 ? "none" : "bus",
    recover: (channel, policy, since, maxBytes, reached) =>
      Effect.suspend(() => {
        const state = made.numbering()
        if (state._tag !== "Numbered" || manager === undefined) {
          return Effect.fail(
            new History.HistoryError({
              reason: "Unavailable",
              message: state._tag === "Off" ? limitation ?? "no JetStream" : "NATS is not reached yet"
            })
          )
        }
        const jsm = manager
        return Effect.tryPromise({
          try: () =>
            recover(
              jsm,
              stream.name,
              state.epoch,
              prefix + channel,
              policy,
              since,
              maxBytes ?? Number.POSITIVE_INFINITY,
              reached
            ),
          catch: (cause) =>
            new History.HistoryError({
              reason: "ReadFailed",
              message: `the history failed to read a channel: ${String(cause)}`,
              cause
            })
        })
      }),
    remove: (channel) =>
      Effect.suspend(() => {
        const jsm = manager
        if (made.numbering()._tag !== "Numbered" || jsm === undefined) {
          return Effect.fail(new History.HistoryError({ reason: "Unavailable", message: "NATS is not reached yet" }))
        }
        return Effect.tryPromise({
          try: () => jsm.streams.purge(stream.name, { filter: prefix + channel }),
          catch: (cause) =>
            new History.HistoryError({
              reason: "ReadFailed",
              message: `the history failed to remove a channel: ${String(cause)}`,
              cause
            })
        }).pipe(Effect.asVoid)
      }),
    isReady: Effect.sync(() => made.numbering()._tag !== "Pending"),
    limitation: Effect.sync(() => limitation)
  })
  return { bus: made.bus, history }
})
