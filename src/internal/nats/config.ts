/**
 * The environment of the NATS modules: the `LHTTP_NATS_*` variables (the
 * servers, the credentials, the client name, the subject prefix) and the
 * names of a KV bucket or a stream, each checked (a bad value is a
 * `ConfigError` at its name, with a line saying what is expected); and the
 * switch every `layerFromEnv` of them shares: NATS when `LHTTP_NATS_URL` is
 * set, something else when not.
 */
import { Config, Effect, Layer, Option, Result } from "effect"
import * as Channel from "../../Channel.ts"
import {
  checked,
  checkedOr,
  expected,
  parseList,
  parseWholeNumber,
  refine,
  required,
  stringKeepingEmpty
} from "../server/config.ts"
import type { ClientOptions } from "./client.ts"

/** The default subject prefix (`LHTTP_NATS_PREFIX` unset). */
export const defaultSubjectPrefix = "lhttp."

const schemes = new Set(["nats:", "tls:", "ws:", "wss:"])

/** One NATS server: `nats://host:port` (or `tls:`, `ws:`, `wss:`), or `host[:port]`. */
const parseServer = (text: string): Result.Result<string, string> => {
  const withScheme = text.includes("://") ? text : `nats://${text}`
  if (!URL.canParse(withScheme)) return Result.fail(" (not a URL)")
  const url = new URL(withScheme)
  if (!schemes.has(url.protocol)) return Result.fail(` (the scheme is ${url.protocol.slice(0, -1)})`)
  if (url.hostname === "") return Result.fail(" (no host)")
  if (url.protocol !== "ws:" && url.protocol !== "wss:" && url.pathname !== "" && url.pathname !== "/") {
    return Result.fail(" (a NATS server has no path)")
  }
  return Result.succeed(text)
}

/** `LHTTP_NATS_URL`'s servers: comma-separated `nats://host:port` (or `tls:`, `ws:`, `wss:`, or `host:port`). */
const parseServers = parseList("comma-separated NATS servers such as nats://127.0.0.1:4222", parseServer)

/** `LHTTP_NATS_URL`, required: the NATS servers (see {@link parseServers}). */
const serversConfig: Config.Config<Array<string>> = required("LHTTP_NATS_URL", parseServers)

/** `LHTTP_NATS_URL`, optional: none when it is not set, the servers when it is (checked). */
const serversOption: Config.Config<Option.Option<Array<string>>> = checked("LHTTP_NATS_URL", parseServers)

/** A subject prefix: empty, or channel name tokens ending with `.`. */
export const parseSubjectPrefix = (raw: string): Result.Result<string, string> =>
  raw === "" || (raw.endsWith(".") && Result.isSuccess(Channel.validate(raw.slice(0, -1))))
    ? Result.succeed(raw)
    : Result.fail(expected("empty or channel name tokens ending with \".\", such as \"lhttp.\"", raw))

/**
 * `LHTTP_NATS_PREFIX`, where set and empty means the empty prefix: only a
 * variable that is not set at all gives {@link defaultSubjectPrefix} (see
 * `stringKeepingEmpty`). A prefix must be empty or channel name tokens
 * ending with `.`.
 */
export const subjectPrefixConfig: Config.Config<string> = stringKeepingEmpty("LHTTP_NATS_PREFIX", defaultSubjectPrefix)
  .pipe(refine("LHTTP_NATS_PREFIX", parseSubjectPrefix))

/**
 * `LHTTP_NATS_REPLICAS`: how many copies a NATS cluster keeps of the history
 * stream and the session bucket (1 to 5, default 1; a cluster of 3 keeps 3 to
 * outlive one server).
 */
export const replicasConfig: Config.Config<number> = checkedOr("LHTTP_NATS_REPLICAS", 1, parseWholeNumber(1, 5))

/** A name for NATS (a KV bucket, a JetStream stream): letters, digits, `_` and `-`, at most 255. */
export const parseName = (raw: string): Result.Result<string, string> =>
  /^[A-Za-z0-9_-]{1,255}$/.test(raw)
    ? Result.succeed(raw)
    : Result.fail(expected("a name of letters, digits, _ and - (at most 255)", raw))

/**
 * How to reach NATS, from the environment: `LHTTP_NATS_URL` (required;
 * comma-separated, each server checked), `LHTTP_NATS_TOKEN`,
 * `LHTTP_NATS_USER`, `LHTTP_NATS_PASS`.
 */
export const clientConfig: Config.Config<ClientOptions> = Config.all({
  servers: serversConfig,
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
 * `nats` when `LHTTP_NATS_URL` is set, `otherwise` when it is not. The URL
 * and `checks` (the other variables of the module) are read either way: a
 * bad value is a mistake with or without NATS.
 */
export const layerWhenNats = <ROut, E1, E2>(
  checks: Config.Config<unknown>,
  nats: Layer.Layer<ROut, E1>,
  otherwise: Layer.Layer<ROut, E2>
): Layer.Layer<ROut, E1 | E2 | Config.ConfigError> =>
  Layer.unwrap(
    Effect.map(
      Config.all([serversOption, checks]),
      ([url]): Layer.Layer<ROut, E1 | E2> => Option.isSome(url) ? nats : otherwise
    )
  )
