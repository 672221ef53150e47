/**
 * The NATS client connection shared by the NATS modules (the bus, the
 * history, the session store): how to reach NATS (servers and credentials),
 * one attempt to connect, the servers as logs show them, and what a NATS
 * without JetStream answers.
 */
import { connect, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node"
import { Duration, Effect, Redacted } from "effect"

/** How to reach NATS: the servers and the credentials, if any. */
export interface ClientOptions {
  /** The NATS server(s): `nats://host:port`, one or a list. */
  readonly servers: string | ReadonlyArray<string>
  /** A token, for servers that require one. */
  readonly token?: Redacted.Redacted<string> | string | undefined
  /** A user and password, for servers that require them. */
  readonly user?: string | undefined
  readonly pass?: Redacted.Redacted<string> | string | undefined
}

/** How one module's connection behaves: its name in NATS's monitoring, and its reconnects. */
export interface Connecting {
  /** The client name NATS shows in its monitoring. */
  readonly name: string
  /** The wait between reconnect attempts (the NATS client's default, 2 s, when undefined). */
  readonly reconnectTimeWait?: Duration.Duration | undefined
  /** Reconnect attempts per server before giving up; -1 never gives up (default). */
  readonly maxReconnectAttempts?: number | undefined
}

const reveal = (value: Redacted.Redacted<string> | string | undefined): string =>
  value === undefined ? "" : typeof value === "string" ? value : Redacted.value(value)

/** The servers of options, as a list. */
const serversOf = (options: ClientOptions): Array<string> =>
  typeof options.servers === "string" ? [options.servers] : [...options.servers]

/** The servers of options for logs: comma-separated, without the credentials a URL may carry. */
export const serversShown = (options: ClientOptions): string =>
  serversOf(options).map((server) => server.replace(/^([a-z][a-z0-9+.-]*:\/\/)?[^/@]*@/i, "$1")).join(", ")

/** Whether a JetStream call failed because that NATS has no JetStream. */
export const noJetStream = (cause: unknown): boolean => {
  const text = String(cause)
  return /jetstream/i.test(text) && /not (enabled|available)|503|no responders/i.test(text)
}

/** The options of `connect` for these settings: once connected, reconnecting as `connecting` says. */
const connectionOptions = (options: ClientOptions, connecting: Connecting): ConnectionOptions => ({
  servers: serversOf(options),
  name: connecting.name,
  reconnect: true,
  maxReconnectAttempts: connecting.maxReconnectAttempts ?? -1,
  ...(connecting.reconnectTimeWait === undefined
    ? {}
    : { reconnectTimeWait: Duration.toMillis(connecting.reconnectTimeWait) }),
  ...(options.token === undefined ? {} : { token: reveal(options.token) }),
  ...(options.user === undefined ? {} : { user: options.user, pass: reveal(options.pass) })
})

/**
 * One attempt to connect, without a scope: the caller owns the connection
 * and closes it. Interrupting it while the attempt is in flight closes the
 * connection the attempt opens, if it opens. `unreachable` makes the error
 * when NATS cannot be reached.
 */
export const dial = <E>(
  options: ClientOptions,
  connecting: Connecting,
  unreachable: (cause: unknown) => E
): Effect.Effect<NatsConnection, E> =>
  Effect.callback<NatsConnection, E>((resume, signal) => {
    connect(connectionOptions(options, connecting)).then(
      (nc) => {
        if (signal.aborted) void nc.close().catch(() => undefined)
        else resume(Effect.succeed(nc))
      },
      (cause) => {
        if (!signal.aborted) resume(Effect.fail(unreachable(cause)))
      }
    )
  })
