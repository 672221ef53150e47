/**
 * Configuration helpers shared by the Layers that read the environment: the
 * checked readers of the `LHTTP_*` variables (each failure a `ConfigError`
 * at the variable's name, with a one-line message saying what is expected),
 * the error of a server that cannot listen, and the one line a startup
 * failure prints.
 */
import { Cause, Config, ConfigProvider, Data, Duration, Effect, Option, Result, Schema, SchemaIssue } from "effect"
import * as Channel from "../../Channel.ts"
import { minSecretBytes } from "../../Tokens.ts"
import * as Allowlist from "./allowlist.ts"

/**
 * A string variable where set-but-empty is a value of its own: Effect's
 * environment providers read an empty variable as missing, so a plain
 * `withDefault` would turn `NAME=` into the default. When the current
 * provider has no value, the environment is read again keeping empty
 * strings; only a variable that is not set at all gives `fallback`.
 */
export const stringKeepingEmpty = (name: string, fallback: string): Config.Config<string> =>
  Config.String(name).pipe(
    Config.option,
    Config.mapEffect(Option.match({
      onSome: Effect.succeed,
      onNone: () =>
        Config.String(name).pipe(Config.withDefault(fallback)).parse(
          ConfigProvider.fromEnv({ preserveEmptyStrings: true })
        )
    }))
  )

// ---------------------------------------------------------------------------
// checked variables
// ---------------------------------------------------------------------------

/** The `ConfigError` of a variable whose value is not valid: `message` says what is expected. */
export const invalid = (name: string, message: string): Config.ConfigError =>
  new Config.ConfigError(
    new Schema.SchemaError(new SchemaIssue.Pointer([name], new SchemaIssue.InvalidValue({ message })))
  )

/** `expected <what>, got "<raw>"`: the message of a value that is not valid. */
export const expected = (what: string, raw: string): string => `expected ${what}, got ${JSON.stringify(raw)}`

/**
 * An optional variable checked by `parse` (which returns the value, or the
 * message saying what is expected): none when it is not set (or empty).
 */
export const checked = <A>(
  name: string,
  parse: (raw: string) => Result.Result<A, string>
): Config.Config<Option.Option<A>> =>
  Config.option(Config.String(name)).pipe(
    Config.mapEffect(Option.match({
      onNone: () => Effect.succeedNone,
      onSome: (raw) =>
        Result.match(parse(raw), {
          onSuccess: (value) => Effect.succeedSome(value),
          onFailure: (message) => Effect.fail(invalid(name, message))
        })
    }))
  )

/** An optional variable checked by `parse`, `fallback` when it is not set. */
export const checkedOr = <A>(
  name: string,
  fallback: A,
  parse: (raw: string) => Result.Result<A, string>
): Config.Config<A> => checked(name, parse).pipe(Config.map(Option.getOrElse(() => fallback)))

/** Checks the value of `self` (read from the variable `name`) with `parse`. */
export const refine =
  <A, B>(name: string, parse: (value: A) => Result.Result<B, string>) => (self: Config.Config<A>): Config.Config<B> =>
    self.pipe(
      Config.mapEffect((value) =>
        Result.match(parse(value), {
          onSuccess: (parsed) => Effect.succeed(parsed),
          onFailure: (message) => Effect.fail(invalid(name, message))
        })
      )
    )

/** A required variable checked by `parse`: missing fails as Effect's `Config.String` does. */
export const required = <A>(name: string, parse: (raw: string) => Result.Result<A, string>): Config.Config<A> =>
  Config.String(name).pipe(refine(name, parse))

/** A whole number from `min` to `max` (digits, an optional sign: no `1e3`, no `0x10`). */
export const parseWholeNumber = (min: number, max: number) => (raw: string): Result.Result<number, string> => {
  const text = raw.trim()
  const value = /^[-+]?\d+$/.test(text) ? Number(text) : Number.NaN
  return Number.isSafeInteger(value) && value >= min && value <= max
    ? Result.succeed(value)
    : Result.fail(expected(`a whole number from ${min} to ${max}`, raw))
}

/** A TCP port: a whole number from 1 to 65535. */
export const parsePort = (raw: string): Result.Result<number, string> =>
  Result.mapError(parseWholeNumber(1, 65535)(raw), () => expected("a port number from 1 to 65535", raw))

/** The largest rate a variable may set (a second). */
const maxRate = 1_000_000

/** A rate a second: a number above 0 (fractions allowed: `0.5` is one every two seconds), at most {@link maxRate}. */
export const parseRate = (raw: string): Result.Result<number, string> => {
  const text = raw.trim()
  const value = /^\+?(\d+\.?\d*|\.\d+)$/.test(text) ? Number(text) : Number.NaN
  return Number.isFinite(value) && value > 0 && value <= maxRate
    ? Result.succeed(value)
    : Result.fail(expected(`a number above 0 and at most ${maxRate} (a second)`, raw))
}

/** A positive duration such as `5 seconds` or `500 millis`. */
export const parseDuration = (raw: string): Result.Result<Duration.Duration, string> =>
  Option.match(Duration.fromInput(raw.trim() as Duration.Input), {
    onNone: () => Result.fail(expected("a duration such as \"5 seconds\" or \"500 millis\"", raw)),
    onSome: (duration) =>
      Duration.isFinite(duration) && Duration.toMillis(duration) > 0
        ? Result.succeed(duration)
        : Result.fail(expected("a duration above 0 such as \"5 seconds\" or \"500 millis\"", raw))
  })

/** `1`, `true`, `yes`, `on` or `0`, `false`, `no`, `off` (any case). */
export const parseFlag = (raw: string): Result.Result<boolean, string> => {
  const text = raw.trim().toLowerCase()
  if (["1", "true", "yes", "on"].includes(text)) return Result.succeed(true)
  if (["0", "false", "no", "off"].includes(text)) return Result.succeed(false)
  return Result.fail(expected("1 or 0 (true or false)", raw))
}

const hostName =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/
const ipv4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/

// an IPv6 address, as the URL parser reads one (this module runs in browsers too: no node:net)
const isIpv6 = (text: string): boolean => {
  if (!text.includes(":") || !/^[0-9A-Fa-f:.]+$/.test(text)) return false
  try {
    new URL(`http://[${text}]/`)
    return true
  } catch {
    return false
  }
}

/** An address to listen on: an IPv4 or IPv6 address, or a host name. */
export const parseHost = (raw: string): Result.Result<string, string> => {
  const text = raw.trim()
  const bare = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text
  return ipv4.test(bare) || isIpv6(bare) || hostName.test(bare)
    ? Result.succeed(bare)
    : Result.fail(expected("an IP address or a host name", raw))
}

/**
 * A secret sent in a header (a bearer token): visible ASCII, no spaces. The
 * message never shows the value.
 */
export const parseSecret = (raw: string): Result.Result<string, string> =>
  /^[\x21-\x7e]+$/.test(raw)
    ? Result.succeed(raw)
    : Result.fail("expected visible ASCII characters without spaces (the value is not shown)")

/**
 * A comma-separated list (entries trimmed, empty ones dropped), each entry
 * checked by `entry`, which returns the value or what is wrong with it. At
 * least one entry unless `allowEmpty`.
 */
export const parseList = <A>(
  what: string,
  entry: (text: string) => Result.Result<A, string>,
  options?: { readonly allowEmpty?: boolean | undefined }
) =>
(raw: string): Result.Result<Array<A>, string> => {
  const entries = raw.split(",").map((part) => part.trim()).filter((part) => part !== "")
  if (entries.length === 0 && options?.allowEmpty !== true) return Result.fail(expected(what, raw))
  const values: Array<A> = []
  for (const text of entries) {
    const parsed = entry(text)
    if (Result.isFailure(parsed)) return Result.fail(`expected ${what}, got ${JSON.stringify(text)}${parsed.failure}`)
    values.push(parsed.success)
  }
  return Result.succeed(values)
}

/** One origin as a browser sends it: `scheme://host[:port]`, lower case, no path (or `null`, an opaque origin). */
export const parseOrigin = (text: string): Result.Result<string, string> => {
  if (text === "null") return Result.succeed(text)
  if (!URL.canParse(text)) return Result.fail(" (not a URL)")
  const url = new URL(text)
  if (url.protocol !== "http:" && url.protocol !== "https:") return Result.fail(" (not http or https)")
  return url.origin === text ? Result.succeed(text) : Result.fail(` (an origin is written ${url.origin})`)
}

const entryProblem: { readonly [P in Allowlist.EntryProblem]: string } = {
  Unparsable: " (not a URL)",
  NotHttp: " (not http or https)",
  Userinfo: " (has user:password@)"
}

/** One upstream allowlist entry: an `http:` or `https:` URL prefix without userinfo. */
export const parseUpstreamEntry = (text: string): Result.Result<string, string> =>
  Result.match(Allowlist.parseEntry(text), {
    onSuccess: () => Result.succeed(text),
    onFailure: (problem) => Result.fail(entryProblem[problem])
  })

/** The operator page's password: at least 12 characters, visible ones and spaces. Never shown. */
export const parseAdminPassword = (raw: string): Result.Result<string, string> =>
  /^[\x20-\x7e]{12,}$/.test(raw)
    ? Result.succeed(raw)
    : Result.fail("expected at least 12 visible characters (the value is not shown)")

/** A JWT's HMAC secret: visible ASCII without spaces, at least `Tokens.minSecretBytes`. Never shown. */
export const parseJwtSecret = (raw: string): Result.Result<string, string> =>
  Result.flatMap(
    parseSecret(raw),
    (secret) =>
      secret.length >= minSecretBytes
        ? Result.succeed(secret)
        : Result.fail(`expected a secret of at least ${minSecretBytes} bytes (the value is not shown)`)
  )

/** A public key in PEM (SPKI); `\n` written as two characters (one line in an env file) reads as a newline. */
export const parsePublicKey = (raw: string): Result.Result<string, string> => {
  const pem = raw.replaceAll("\\n", "\n").trim()
  return /^-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+/=\s]+\n-----END PUBLIC KEY-----$/.test(pem)
    ? Result.succeed(pem)
    : Result.fail("expected a public key in PEM: -----BEGIN PUBLIC KEY----- ... (the value is not shown)")
}

/** An `http:` or `https:` URL. */
export const parseHttpUrl = (raw: string): Result.Result<string, string> =>
  URL.canParse(raw) && /^https?:$/.test(new URL(raw).protocol)
    ? Result.succeed(raw)
    : Result.fail(expected("an http or https URL", raw))

/** A value of visible characters (a JWT's audience or issuer). */
export const parseText = (raw: string): Result.Result<string, string> =>
  /^[\x21-\x7e][\x20-\x7e]*$/.test(raw) ? Result.succeed(raw) : Result.fail(expected("visible characters", raw))

/** One channel name prefix (`*`: every channel). */
export const parseChannelPrefix = (text: string): Result.Result<string, string> =>
  text === "*" || Result.isSuccess(Channel.validate(text)) || Result.isSuccess(Channel.validate(`${text}x`))
    ? Result.succeed(text)
    : Result.fail(" (not the start of a channel name)")

/** `LHTTP_DEBUG`: a startup failure prints its full cause after its one line. */
export const debugConfig: Config.Config<boolean> = checkedOr("LHTTP_DEBUG", false, parseFlag)

// ---------------------------------------------------------------------------
// startup failures
// ---------------------------------------------------------------------------

/**
 * A server that cannot listen: the port is in use or not allowed, or the
 * host is not an address of this machine. `message` is one line naming the
 * port and the variables.
 */
export class ListenError extends Data.TaggedError("ListenError")<{
  readonly reason: "PortInUse" | "PortNotAllowed" | "AddressNotAvailable" | "HostNotFound" | "Other"
  readonly message: string
  readonly cause?: unknown
}> {}

const codeOf = (cause: unknown): string | undefined =>
  typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string"
    ? cause.code
    : undefined

/**
 * The {@link ListenError} of a listen that failed with `cause` (Node's error,
 * with its `code`), for `port` on `host` (all interfaces when undefined) as
 * the variables `portVariable` and `hostVariable` set them.
 */
export const listenError = (
  cause: unknown,
  where: {
    readonly port: number
    readonly host: string | undefined
    readonly portVariable: string
    readonly hostVariable: string
  }
): ListenError => {
  const on = where.host === undefined ? "all interfaces" : where.host
  const code = codeOf(cause)
  switch (code) {
    case "EADDRINUSE":
      return new ListenError({
        reason: "PortInUse",
        message: `port ${where.port} on ${on} is in use (${where.portVariable})`,
        cause
      })
    case "EACCES":
    case "EPERM":
      return new ListenError({
        reason: "PortNotAllowed",
        message: `port ${where.port} on ${on} is not allowed for this user (${where.portVariable})`,
        cause
      })
    case "EADDRNOTAVAIL":
      return new ListenError({
        reason: "AddressNotAvailable",
        message: `${on} is not an address of this machine (${where.hostVariable})`,
        cause
      })
    case "ENOTFOUND":
    case "EAI_AGAIN":
    case "EAI_NONAME":
      return new ListenError({
        reason: "HostNotFound",
        message: `host ${on} was not found (${where.hostVariable})`,
        cause
      })
    default: {
      const text = cause instanceof Error ? cause.message : String(cause)
      return new ListenError({
        reason: "Other",
        message: `cannot listen on port ${where.port} on ${on}: ${
          text.split("\n")[0]
        } (${where.portVariable}, ${where.hostVariable})`,
        cause
      })
    }
  }
}

const formatIssues = SchemaIssue.makeFormatterStandardSchemaV1()

const firstLine = (text: string) => text.split("\n")[0]!.trim()

/** The one line of a `ConfigError`: `<VARIABLE>: <what is expected>`. */
export const configErrorLine = (error: Config.ConfigError): string => {
  const cause = error.cause
  if (!Schema.isSchemaError(cause)) return `configuration: ${firstLine(cause.message)}`
  const lines = formatIssues(cause.issue).issues.map((issue) => {
    const path = (issue.path ?? []).map((segment) => String(typeof segment === "object" ? segment.key : segment))
    const message = firstLine(issue.message)
    return path.length === 0 ? message : `${path.join(".")}: ${message}`
  })
  return lines.join("; ")
}

/**
 * The one line a startup failure prints (a bad variable, a server that
 * cannot listen), or none for other failures (which keep their full cause).
 */
const startupLine = (cause: Cause.Cause<unknown>): Option.Option<string> => {
  for (const reason of cause.reasons) {
    if (!Cause.isFailReason(reason)) continue
    const error = reason.error
    if (error instanceof Config.ConfigError) return Option.some(configErrorLine(error))
    if (error instanceof ListenError) return Option.some(error.message)
  }
  return Option.none()
}

/**
 * Reports a failure of the main program: a startup failure as its one line
 * on stderr (then, with `debug`, its full cause with the stack traces, on
 * stderr too); any other failure as Effect's runtime would (logged with its
 * full cause). Interruptions print nothing.
 */
export const reportFailure = (cause: Cause.Cause<unknown>, debug: boolean): Effect.Effect<void> =>
  Cause.hasInterruptsOnly(cause) ? Effect.void : Option.match(startupLine(cause), {
    onNone: () => Effect.logError(cause),
    onSome: (line) =>
      Effect.sync(() => {
        process.stderr.write(debug ? `${line}\n${Cause.pretty(cause)}\n` : `${line}\n`)
      })
  })
