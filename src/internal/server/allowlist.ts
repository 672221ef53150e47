/**
 * The upstream allowlist: URL prefixes a call may target. A target matches an
 * entry with the same scheme, host (as written: `localhost` is not
 * `127.0.0.1`) and port (the default one when none is written), and a path
 * equal to the entry's or below it at a `/` boundary. Pure URL logic: the
 * addresses a host resolves to are checked elsewhere (`address.ts`).
 */
import { Result } from "effect"

/** One allowed prefix, or the parts of a target compared with it. */
interface Target {
  readonly protocol: string
  readonly hostname: string
  readonly port: string
  readonly path: string
}

/** Why an allowlist entry is refused. */
export type EntryProblem = "Unparsable" | "NotHttp" | "Userinfo"

const defaultPort = (protocol: string) => protocol === "https:" ? "443" : "80"

/** The parts of a parsed URL the allowlist compares. */
const targetOf = (url: URL): Target => ({
  protocol: url.protocol,
  hostname: url.hostname.toLowerCase(),
  port: url.port === "" ? defaultPort(url.protocol) : url.port,
  path: url.pathname
})

/** Whether a URL's scheme is one upstream calls use. */
export const isHttp = (url: URL): boolean => url.protocol === "http:" || url.protocol === "https:"

/** Whether a URL carries a user name or password. */
export const hasUserinfo = (url: URL): boolean => url.username !== "" || url.password !== ""

/** Parses one allowlist entry: an `http:` or `https:` URL without userinfo. */
export const parseEntry = (entry: string): Result.Result<Target, EntryProblem> => {
  if (!URL.canParse(entry)) return Result.fail("Unparsable")
  const url = new URL(entry)
  if (!isHttp(url)) return Result.fail("NotHttp")
  if (hasUserinfo(url)) return Result.fail("Userinfo")
  return Result.succeed(targetOf(url))
}

const withinPath = (path: string, prefix: string) =>
  prefix === "/" || path === prefix || path.startsWith(prefix.endsWith("/") ? prefix : prefix + "/")

/** Whether a (normalized, parsed) target URL is under one of the entries. */
export const allows = (allowlist: ReadonlyArray<Target>, url: URL): boolean => {
  const target = targetOf(url)
  return allowlist.some((entry) =>
    entry.protocol === target.protocol && entry.hostname === target.hostname && entry.port === target.port &&
    withinPath(target.path, entry.path)
  )
}
