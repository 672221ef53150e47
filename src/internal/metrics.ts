/**
 * The server's metrics in Effect's metric registry, read when they are
 * exported (Prometheus text at `/metrics`, or any exporter the app plugs in):
 * each series is registered once with a hook that reads the server's own
 * counters, so no message pays for an Effect `Metric` update.
 */
import { Context, Effect, Metric, Scope } from "effect"
import type { Hub } from "../Hub.ts"
import type { LiveConnection } from "./connection.ts"
import type { Stats } from "./stats.ts"

const noop = () => {}

const counter = (name: string, description: string) => Metric.counter(name, { description, incremental: true })

/**
 * Registers the server's series in the registry of `context` until `scope`
 * closes. `sawTransport` adds the connection gauge of a transport seen for
 * the first time; error frames get a series per reason as they appear.
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
    metric: Metric.Metric<any, S>,
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
      return { value: found._tag === "Success" && found.value.some((limitation) => limitation.feature === feature) ? 1 : 0 }
    }, { feature })
  }
  const counters: ReadonlyArray<readonly [string, string, () => number]> = [
    ["lhttp_messages_in_total", "messages taken from clients", () => stats.messagesIn],
    ["lhttp_frames_out_total", "frames written to clients", () => stats.framesOut],
    ["lhttp_bytes_out_total", "bytes of the frames written to clients", () => stats.bytesOut],
    ["lhttp_slow_consumer_closes_total", "connections closed as slow consumers (4001)", () => stats.slowConsumerCloses],
    ["lhttp_rate_limited_total", "messages refused by the message rate (429)", () => stats.rateLimited]
  ]
  for (const [name, description, read] of counters) register(counter(name, description), () => ({ count: read(), incremental: true }))

  const connectionGauge = Metric.gauge("lhttp_connections", { description: "open connections, by transport" })
  const transports = new Set<string>()
  const errorFrames = counter("lhttp_error_frames_total", "error frames sent, by reason")
  stats.onNewReason = (reason) =>
    register(errorFrames, () => ({ count: stats.errorFrames.get(reason) ?? 0, incremental: true }), { reason })

  Effect.runSync(Scope.addFinalizer(scope, Effect.sync(() => {
    for (const registration of registrations) registration.remove()
  })))

  return {
    /** Adds the connection gauge of a transport seen for the first time. */
    sawTransport: (kind: string) => {
      if (transports.has(kind)) return
      transports.add(kind)
      register(connectionGauge, () => {
        let value = 0
        for (const connection of connections) if ((connection.transport.kind ?? "other") === kind) value++
        return { value }
      }, { transport: kind })
    }
  }
}
