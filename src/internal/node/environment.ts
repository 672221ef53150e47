/**
 * The stand-alone server's `LHTTP_*` environment variables (README.md):
 * each read and checked, and laid over the options the program gives.
 */
import { Config, type Duration, Effect, Option, Redacted } from "effect"
import * as LhttpServer from "../../LhttpServer.ts"
import type * as Tokens from "../../Tokens.ts"
import * as StartupConfig from "../server/config.ts"

/** The largest `LHTTP_MAX_MESSAGE_BYTES`: 16 MiB. */
const maxMessageBytesLimit = 16 * 1024 * 1024

/** The largest `LHTTP_MAX_CONNECTIONS`. */
const maxConnectionsLimit = 10_000_000

/** The variables, each checked (a bad one fails with a `ConfigError` at its name saying what is expected). */
export const config = Config.all({
  port: StartupConfig.checkedOr("LHTTP_PORT", 8081, StartupConfig.parsePort),
  host: StartupConfig.checked("LHTTP_HOST", StartupConfig.parseHost),
  publishToken: StartupConfig.checked("LHTTP_PUBLISH_TOKEN", StartupConfig.parseSecret).pipe(
    Config.map(Option.map(Redacted.make))
  ),
  apiKey: StartupConfig.checked("LHTTP_API_KEY", StartupConfig.parseSecret).pipe(
    Config.map(Option.map(Redacted.make))
  ),
  adminPassword: StartupConfig.checked("LHTTP_ADMIN_PASSWORD", StartupConfig.parseAdminPassword).pipe(
    Config.map(Option.map(Redacted.make))
  ),
  maxMessageBytes: StartupConfig.checkedOr(
    "LHTTP_MAX_MESSAGE_BYTES",
    LhttpServer.defaults.maxMessageBytes,
    StartupConfig.parseWholeNumber(1, maxMessageBytesLimit)
  ),
  allowedOrigins: StartupConfig.checked(
    "LHTTP_ALLOWED_ORIGINS",
    StartupConfig.parseList(
      "comma-separated origins such as https://chat.example.com (scheme, host, optional port; no path)",
      StartupConfig.parseOrigin
    )
  ),
  maxConnections: StartupConfig.checkedOr(
    "LHTTP_MAX_CONNECTIONS",
    LhttpServer.defaults.maxConnections,
    StartupConfig.parseWholeNumber(1, maxConnectionsLimit)
  ),
  maxConnectionsPerAddress: StartupConfig.checked(
    "LHTTP_MAX_CONNECTIONS_PER_ADDRESS",
    StartupConfig.parseWholeNumber(1, maxConnectionsLimit)
  ),
  maxDetachedPerAddress: StartupConfig.checked(
    "LHTTP_MAX_DETACHED_PER_ADDRESS",
    StartupConfig.parseWholeNumber(1, maxConnectionsLimit)
  ),
  maxUrlChannels: StartupConfig.checked("LHTTP_MAX_URL_CHANNELS", StartupConfig.parseWholeNumber(1, 10_000)),
  urlRecoveryBytes: StartupConfig.checked("LHTTP_URL_RECOVERY_BYTES", StartupConfig.parseWholeNumber(0, 2 ** 30)),
  connectionsPerSecond: StartupConfig.checked("LHTTP_CONNECTIONS_PER_SECOND", StartupConfig.parseRate),
  messagesPerSecond: StartupConfig.checked("LHTTP_MESSAGES_PER_SECOND", StartupConfig.parseRate),
  admissionsPerSecond: StartupConfig.checked("LHTTP_ADMISSIONS_PER_SECOND", StartupConfig.parseRate),
  drainWindow: StartupConfig.checked("LHTTP_DRAIN_WINDOW", StartupConfig.parseDuration),
  jwtSecret: StartupConfig.checked("LHTTP_JWT_SECRET", StartupConfig.parseJwtSecret).pipe(
    Config.map(Option.map(Redacted.make))
  ),
  jwtPublicKey: StartupConfig.checked("LHTTP_JWT_PUBLIC_KEY", StartupConfig.parsePublicKey),
  jwtJwksUrl: StartupConfig.checked("LHTTP_JWT_JWKS_URL", StartupConfig.parseHttpUrl),
  jwtAudience: StartupConfig.checked("LHTTP_JWT_AUDIENCE", StartupConfig.parseText),
  jwtIssuer: StartupConfig.checked("LHTTP_JWT_ISSUER", StartupConfig.parseText),
  privatePrefixes: StartupConfig.checked(
    "LHTTP_PRIVATE_PREFIXES",
    StartupConfig.parseList("comma-separated channel name prefixes", StartupConfig.parseChannelPrefix)
  ),
  userLimitedChannels: StartupConfig.checked("LHTTP_USER_LIMITED_CHANNELS", StartupConfig.parseFlag)
}).pipe(
  // the token variables together: one key (a public key or a JWKS URL, not both; a secret beside either), and
  // the others only beside one
  Config.mapEffect((env) => {
    const keys = [env.jwtSecret, env.jwtPublicKey, env.jwtJwksUrl].filter((key: Option.Option<unknown>) =>
      Option.isSome(key)
    ).length
    if (Option.isSome(env.jwtPublicKey) && Option.isSome(env.jwtJwksUrl)) {
      return Effect.fail(StartupConfig.invalid("LHTTP_JWT_JWKS_URL", "expected it or LHTTP_JWT_PUBLIC_KEY, not both"))
    }
    const needing: ReadonlyArray<readonly [string, Option.Option<unknown>]> = [
      ["LHTTP_JWT_AUDIENCE", env.jwtAudience],
      ["LHTTP_JWT_ISSUER", env.jwtIssuer],
      ["LHTTP_PRIVATE_PREFIXES", env.privatePrefixes]
    ]
    const alone = needing.find(([, value]) => Option.isSome(value))
    if (keys === 0 && alone !== undefined) {
      return Effect.fail(
        StartupConfig.invalid(
          alone[0],
          "takes tokens: set LHTTP_JWT_SECRET, LHTTP_JWT_PUBLIC_KEY or LHTTP_JWT_JWKS_URL too"
        )
      )
    }
    return Effect.succeed(env)
  })
)

/** What the variables say. */
type Environment = Config.Success<typeof config>

/** The options the variables set. */
interface Overridden {
  readonly port?: number | undefined
  readonly host?: string | undefined
  readonly publishToken?: Redacted.Redacted<string> | string | undefined
  readonly apiKey?: Redacted.Redacted<string> | string | undefined
  readonly adminPassword?: Redacted.Redacted<string> | string | undefined
  readonly maxMessageBytes?: number | undefined
  readonly allowedOrigins?: ReadonlyArray<string> | undefined
  readonly maxConnections?: number | undefined
  readonly maxConnectionsPerAddress?: number | undefined
  readonly maxDetachedPerAddress?: number | undefined
  readonly maxUrlChannels?: number | undefined
  readonly urlRecoveryBytes?: number | undefined
  readonly connectionRate?: LhttpServer.Rate | undefined
  readonly messageRate?: LhttpServer.Rate | undefined
  readonly admissionRate?: LhttpServer.Rate | false | undefined
  readonly drainWindow?: Duration.Input | undefined
  readonly tokens?: Tokens.Options | undefined
  readonly userLimitedChannels?: boolean | undefined
}

// a rate from the environment: that many a second, twice as many at once
const rateOf = (perSecond: number) => ({ perSecond, burst: Math.max(1, Math.ceil(2 * perSecond)) })

/**
 * `options` with what the variables say laid over them: the port, the host,
 * the publish token, the message size and the connection cap as read (or
 * their defaults); the others where they are set.
 */
export const over = <O extends Overridden>(options: O, env: Environment): O => ({
  ...options,
  port: env.port,
  host: Option.getOrUndefined(env.host),
  publishToken: Option.getOrUndefined(env.publishToken),
  apiKey: Option.getOrElse(env.apiKey, () => options.apiKey),
  adminPassword: Option.getOrElse(env.adminPassword, () => options.adminPassword),
  maxMessageBytes: env.maxMessageBytes,
  allowedOrigins: Option.getOrElse(env.allowedOrigins, () => options.allowedOrigins),
  maxConnections: env.maxConnections,
  maxConnectionsPerAddress: Option.getOrElse(env.maxConnectionsPerAddress, () => options.maxConnectionsPerAddress),
  maxDetachedPerAddress: Option.getOrElse(env.maxDetachedPerAddress, () => options.maxDetachedPerAddress),
  maxUrlChannels: Option.getOrElse(env.maxUrlChannels, () => options.maxUrlChannels),
  urlRecoveryBytes: Option.getOrElse(env.urlRecoveryBytes, () => options.urlRecoveryBytes),
  connectionRate: Option.match(env.connectionsPerSecond, { onNone: () => options.connectionRate, onSome: rateOf }),
  messageRate: Option.match(env.messagesPerSecond, { onNone: () => options.messageRate, onSome: rateOf }),
  admissionRate: Option.match(env.admissionsPerSecond, { onNone: () => options.admissionRate, onSome: rateOf }),
  drainWindow: Option.getOrElse(env.drainWindow, () => options.drainWindow),
  tokens: tokensOf(env) ?? options.tokens,
  userLimitedChannels: Option.getOrElse(env.userLimitedChannels, () => options.userLimitedChannels)
})

// the tokens the LHTTP_JWT_* variables configure (any of them: one without a key fails at the server's start)
const tokensOf = (env: Environment): Tokens.Options | undefined => {
  const { jwtAudience, jwtIssuer, jwtJwksUrl, jwtPublicKey, jwtSecret, privatePrefixes } = env
  if (
    [jwtSecret, jwtPublicKey, jwtJwksUrl, jwtAudience, jwtIssuer, privatePrefixes].every((
      value: Option.Option<unknown>
    ) => Option.isNone(value))
  ) {
    return undefined
  }
  return {
    secret: Option.getOrUndefined(jwtSecret),
    publicKey: Option.getOrUndefined(jwtPublicKey),
    jwksUrl: Option.getOrUndefined(jwtJwksUrl),
    audience: Option.getOrUndefined(jwtAudience),
    issuer: Option.getOrUndefined(jwtIssuer),
    privatePrefixes: Option.getOrUndefined(privatePrefixes)
  }
}

/** A port that cannot be listened on, as one line naming the port and its variable. */
export const listenError = (cause: unknown, env: Environment) =>
  StartupConfig.listenError(cause, {
    port: env.port,
    host: Option.getOrUndefined(env.host),
    portVariable: "LHTTP_PORT",
    hostVariable: "LHTTP_HOST"
  })
