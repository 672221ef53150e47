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
import { Config, Context, Effect, Layer, Result, type Scope } from "effect"
import * as Bus from "./Bus.ts"
import * as History from "./History.ts"
import * as NatsConfig from "./internal/nats/config.ts"
import * as internal from "./internal/nats/history.ts"
import { checkedOr, refine, stringKeepingEmpty } from "./internal/server/config.ts"
import * as NatsBus from "./NatsBus.ts"

/**
 * Options of the bus with JetStream history: the NATS bus's
 * ({@link NatsBus.Options}), the `policies` (which channels keep history),
 * and the stream's (`stream`, `republishPrefix`, `maxBytes`, `storage`,
 * `streamCheckInterval`); each field says its default.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends internal.Options {}

/**
 * The default prefix of the subjects the stream republishes to.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultRepublishPrefix: string = internal.defaultRepublishPrefix

/**
 * The policies of `LHTTP_HISTORY` when it is not set: `*`, every channel
 * keeps its last 100 messages for 10 minutes ({@link History.defaults}).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultPolicies = "*"

/**
 * Makes the bus and the history: the bus connects as the NATS bus does (not
 * waiting for NATS), and on every connection makes sure the stream is there.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (
  options: Options
) => Effect.Effect<
  { readonly bus: Bus.Bus["Service"]; readonly history: History.History["Service"] },
  Bus.BusError,
  Scope.Scope
> = internal.make

/**
 * The bus with JetStream history as a Layer: the `Bus` and the `History`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Bus.Bus | History.History, Bus.BusError> =>
  Layer.effectContext(
    Effect.map(make(options), ({ bus, history }) =>
      Context.make(Bus.Bus, bus).pipe(Context.add(History.History, history)))
  )

/**
 * `LHTTP_HISTORY_STREAM`, the stream (default `LHTTP_HISTORY`; letters,
 * digits, `_` and `-`).
 *
 * @since 0.1.0
 * @category config
 */
export const streamConfig: Config.Config<string> = checkedOr(
  "LHTTP_HISTORY_STREAM",
  "LHTTP_HISTORY",
  NatsConfig.parseName
)

/**
 * `LHTTP_HISTORY`, the policies ({@link History.parsePolicies}):
 * {@link defaultPolicies} when it is not set, none when it is set and empty;
 * a malformed one fails with a `ConfigError` at `LHTTP_HISTORY` saying what
 * is wrong.
 *
 * @since 0.1.0
 * @category config
 */
export const policiesConfig: Config.Config<Array<History.Policy>> = stringKeepingEmpty("LHTTP_HISTORY", defaultPolicies)
  .pipe(refine("LHTTP_HISTORY", (text) =>
    Result.try({
      try: () => History.parsePolicies(text),
      catch: (cause) => cause instanceof Error ? cause.message : String(cause)
    })))

/**
 * The settings of the bus with history from the environment: the NATS bus's
 * ({@link NatsBus.config}; `LHTTP_NATS_URL` is required), the policies of
 * {@link policiesConfig} and the stream of {@link streamConfig}.
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = Config.all({
  bus: NatsBus.config,
  policies: policiesConfig,
  stream: streamConfig,
  replicas: NatsConfig.replicasConfig
}).pipe(Config.map(({ bus, ...history }) => ({ ...bus, ...history })))

/**
 * {@link layer} with the settings of {@link config}: `LHTTP_NATS_URL` is
 * required.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: Layer.Layer<Bus.Bus | History.History, Bus.BusError | Config.ConfigError> = Layer.unwrap(
  Effect.map(config, layer)
)

// without NATS: the memory bus, and the memory history with the policies of LHTTP_HISTORY
const layerMemory: Layer.Layer<Bus.Bus | History.History, Config.ConfigError> = Layer.unwrap(
  Effect.map(policiesConfig, (policies) => Layer.merge(Bus.layerMemory(), History.layerMemory({ policies })))
)

/**
 * The bus and history of a program configured by the environment:
 * {@link layerConfig} (the NATS bus with history in JetStream) when
 * `LHTTP_NATS_URL` is set, the memory bus and history when it is not; the
 * policies of `LHTTP_HISTORY` either way ({@link policiesConfig}: every
 * channel when it is not set). `LHTTP_NATS_URL`, `LHTTP_NATS_PREFIX`,
 * `LHTTP_HISTORY` and `LHTTP_HISTORY_STREAM` are checked either way.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFromEnv: Layer.Layer<Bus.Bus | History.History, Bus.BusError | Config.ConfigError> = NatsConfig
  .layerWhenNats(
    Config.all([policiesConfig, streamConfig, NatsBus.subjectPrefixConfig]),
    layerConfig,
    layerMemory
  )
