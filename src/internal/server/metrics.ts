/**
 * The server's metrics in Effect's metric registry, read when they are
 * exported (Prometheus text at `/metrics`, or any exporter the app plugs in):
 * each series is registered once with a hook that reads the server's own
 * counters, so no message pays for an Effect `Metric` update.
 */
import { Context, Effect, Metric, Scope } from "effect"
import type { Hub } from "../../Hub.ts"
import * as ProtocolError from "../../ProtocolError.ts"
import * as Rejection from "../../Rejection.ts"
import * as Upstream from "../../Upstream.ts"
import type { LiveConnection } from "./connection.ts"
import type { Stats } from "./stats.ts"

const noop = () => {}

/**
 * Reconnections of the NATS bus, counted by the NATS bus. Defined here, with
 * no NATS import, so that every node shows it from the start (at 0 on a
 * memory bus, which never reconnects): the same families on every node.
 */
export const busReconnects = Metric.counter("lhttp_bus_reconnects_total", {
  description: "reconnections of the NATS bus",
  incremental: true
})

/**
 * The transports of the Node server (`NodeLhttpServer`): their connection
 * gauges are there from the start, at 0. Another kind (`memory`, an app's
 * own transport) gets its gauge with its first connection.
 */
const nodeTransports: ReadonlyArray<string> = ["websocket", "sse", "poll"]

/**
 * The reasons of the error frames the server itself sends, each at 0 from
 * the start. A reason of an app's own (a `Rejection` of a processor or
 * filter, a declared error of a typed request) gets its series when it is
 * first sent.
 */
const errorReasons: ReadonlyArray<string> = [
  // what reads the wire
  ...ProtocolError.Reason.literals,
  // the server's own refusals
  Rejection.unknownCommand("").reason,
  Rejection.tooManySubscriptions(0).reason,
  Rejection.invalidBody("").reason,
  Rejection.internal.reason,
  Rejection.upstreamNotConfigured.reason,
  Rejection.forbidden("").reason,
  Rejection.shuttingDown.reason,
  Rejection.busUnavailable("").reason,
  Rejection.publishUnconfirmed("").reason,
  Rejection.historyUnavailable("").reason,
  Rejection.invalidSince("").reason,
  // the message rate (internal/server/connection.ts)
  "RateLimited",
  // upstream calls: `Upstream<Reason>`
  ...Upstream.Reason.literals.map((reason) => `Upstream${reason}`),
  // the sessions (Sessions.ts `SessionError`; not imported: the core does not load the sessions)
  "SessionNotFound",
  "SessionStoreUnavailable",
  "InvalidSessionData"
]

const counter = (name: string, description: string) => Metric.counter(name, { description, incremental: true })

/**
 * Registers the server's series in the registry of `context` until `scope`
 * closes. Every family is there from the start: the connection gauges of the
 * Node server's transports and the error frames of the server's own reasons
 * at 0, and `lhttp_bus_reconnects_total` at 0. `sawTransport` adds the
 * connection gauge of another transport seen for the first time; an app's
 * own error reason gets its series when it is first sent.
 */
export const registerMetrics = (
  stats: Stats,
  connections: ReadonlySet<LiveConnection>,
  hub: Hub["Service"],
  services: {
    /** Whether the bus works. */
    readonly isReady: Effect.Effect<boolean>
    /** What the services cannot do here, by feature. */
    readonly limitations: Effect.Effect<ReadonlyArray<{ readonly feature: string }>>
  },
  context: Context.Context<never>,
  scope: Scope.Scope
) => {
  const registrations: Array<{ readonly remove: () => void }> = []
  const register = <S>(
    metric: Metric.Metric<never, S>,
    get: () => S,
    attributes?: Readonly<Record<string, string>>
  ) => {
    const at = attributes === undefined ? context : Context.add(context, Metric.CurrentMetricAttributes, attributes)
    registrations.push(Metric.registerUnsafe(metric, at, { get, update: noop, modify: noop }))
  }

  register(Metric.gauge("lhttp_channels", { description: "channels with local subscribers" }), () => ({
    value: hub.channelCount()
  }))
  register(Metric.gauge("lhttp_subscriptions", { description: "subscriptions held by connections" }), () => {
    let value = 0
    for (const connection of connections) value += connection.channels.size
    return { value }
  })
  register(Metric.gauge("lhttp_bus_ready", { description: "1 while the bus works (NATS connected), else 0" }), () => {
    const ready = Effect.runSyncExit(services.isReady)
    return { value: ready._tag === "Success" && ready.value ? 1 : 0 }
  })
  const limited = Metric.gauge("lhttp_limited", {
    description: "1 while a feature runs limited here (e.g. history or sessions on a NATS without JetStream), else 0"
  })
  for (const feature of ["history", "sessions"]) {
    register(limited, () => {
      const found = Effect.runSyncExit(services.limitations)
      return {
        value: found._tag === "Success" && found.value.some((limitation) => limitation.feature === feature) ? 1 : 0
      }
    }, { feature })
  }
  const counters: ReadonlyArray<readonly [string, string, () => number]> = [
    ["lhttp_messages_in_total", "messages taken from clients", () => stats.messagesIn],
    ["lhttp_frames_out_total", "frames written to clients", () => stats.framesOut],
    ["lhttp_bytes_out_total", "bytes of the frames written to clients", () => stats.bytesOut],
    ["lhttp_slow_consumer_closes_total", "connections closed as slow consumers (4001)", () => stats.slowConsumerCloses],
    ["lhttp_rate_limited_total", "messages refused by the message rate (429)", () => stats.rateLimited]
  ]
  for (const [name, description, read] of counters) {
    register(counter(name, description), () => ({ count: read(), incremental: true }))
  }

  const connectionGauge = Metric.gauge("lhttp_connections", { description: "open connections, by transport" })
  const transports = new Set<string>()
  const sawTransport = (kind: string) => {
    if (transports.has(kind)) return
    transports.add(kind)
    register(connectionGauge, () => {
      let value = 0
      for (const connection of connections) if ((connection.transport.kind ?? "other") === kind) value++
      return { value }
    }, { transport: kind })
  }
  for (const kind of nodeTransports) sawTransport(kind)

  const errorFrames = counter("lhttp_error_frames_total", "error frames sent, by reason")
  const reasons = new Set<string>()
  const sawReason = (reason: string) => {
    if (reasons.has(reason)) return
    reasons.add(reason)
    register(errorFrames, () => ({ count: stats.errorFrames.get(reason) ?? 0, incremental: true }), { reason })
  }
  for (const reason of errorReasons) sawReason(reason)
  stats.onNewReason = sawReason

  // a series of the process, not of this server (the NATS bus adds to it, and it is never removed):
  // made here at 0, so that it is there before the first reconnection
  busReconnects.updateUnsafe(0, context)

  Effect.runSync(Scope.addFinalizer(
    scope,
    Effect.sync(() => {
      for (const registration of registrations) registration.remove()
    })
  ))

  return {
    /** Adds the connection gauge of a transport seen for the first time. */
    sawTransport
  }
}
