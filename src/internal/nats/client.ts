/**
 * The NATS client connection of the session store: the settings it reads
 * from the environment, as the NATS bus reads them, one attempt to connect,
 * and what a NATS without JetStream answers (the history, which is the NATS
 * bus's own connection, reads that too).
 */
import { connect, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node"
import { Config, Effect, Option, Redacted } from "effect"
import { natsServersConfig } from "../server/config.ts"

/** How to reach NATS: the servers and the credentials, if any. */
export interface ClientOptions {
  /** The NATS servers, e.g. `nats://127.0.0.1:4222`. */
  readonly servers: string | ReadonlyArray<string>
  /** A token, for servers that require one. */
  readonly token?: Redacted.Redacted<string> | string | undefined
  /** A user and password, for servers that require them. */
  readonly user?: string | undefined
  readonly pass?: Redacted.Redacted<string> | string | undefined
}

const reveal = (value: Redacted.Redacted<string> | string | undefined): string =>
  value === undefined ? "" : typeof value === "string" ? value : Redacted.value(value)

/** The servers of options, as a list. */
export const serversOf = (options: ClientOptions): Array<string> =>
  typeof options.servers === "string" ? [options.servers] : [...options.servers]

/** Whether a JetStream call failed because that NATS has no JetStream. */
export const noJetStream = (cause: unknown): boolean => {
  const text = String(cause)
  return /jetstream/i.test(text) && /not (enabled|available)|503|no responders/i.test(text)
}

/**
 * The connection settings from the environment: `LHTTP_NATS_URL`
 * (comma-separated, each server checked), `LHTTP_NATS_TOKEN`, `LHTTP_NATS_USER`, `LHTTP_NATS_PASS`.
 */
export const clientConfig: Config.Config<ClientOptions> = Config.all({
  servers: natsServersConfig,
  token: Config.option(Config.Redacted("LHTTP_NATS_TOKEN")),
  user: Config.option(Config.String("LHTTP_NATS_USER")),
  pass: Config.option(Config.Redacted("LHTTP_NATS_PASS"))
}).pipe(Config.map((env) => ({
  servers: env.servers,
  token: Option.getOrUndefined(env.token),
  user: Option.getOrUndefined(env.user),
  pass: Option.getOrUndefined(env.pass)
})))

/**
 * The options of `connect` for these settings under `name`: reconnecting for
 * ever once connected.
 */
export const connectionOptions = (options: ClientOptions, name: string): ConnectionOptions => ({
  servers: serversOf(options),
  name,
  reconnect: true,
  maxReconnectAttempts: -1,
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
  name: string,
  unreachable: (servers: string, cause: unknown) => E
): Effect.Effect<NatsConnection, E> =>
  Effect.callback<NatsConnection, E>((resume, signal) => {
    connect(connectionOptions(options, name)).then(
      (nc) => {
        if (signal.aborted) void nc.close().catch(() => undefined)
        else resume(Effect.succeed(nc))
      },
      (cause) => {
        if (!signal.aborted) resume(Effect.fail(unreachable(serversOf(options).join(", "), cause)))
      }
    )
  })

/** The servers of options for logs: comma-separated, without the credentials a URL may carry. */
export const serversShown = (options: ClientOptions): string =>
  serversOf(options).map((server) => server.replace(/^([a-z][a-z0-9+.-]*:\/\/)?[^/@]*@/i, "$1")).join(", ")
