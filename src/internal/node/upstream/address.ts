/**
 * The addresses an upstream host resolves to, and the ones a call may never
 * reach even when its host is allowlisted: link-local (`169.254.0.0/16`,
 * where cloud metadata lives; `fe80::/10`), unspecified (`0.0.0.0/8`, `::`),
 * multicast and reserved (`224.0.0.0` and above, `ff00::/8`), IPv4-mapped
 * IPv6 forms included.
 */
import { Effect } from "effect"
import { lookup } from "node:dns/promises"
import { isIP } from "node:net"

/** Resolves a host name to all its addresses. */
type Lookup = (hostname: string) => Effect.Effect<ReadonlyArray<string>, unknown>

/** The system resolver (`dns.lookup`, every address): what `net.connect` would use. */
export const systemLookup: Lookup = (hostname) =>
  Effect.tryPromise(() => lookup(hostname, { all: true })).pipe(
    Effect.map((found) => found.map((entry) => entry.address))
  )

/** The IP address a URL host names literally (brackets of IPv6 removed), if it is one. */
export const literal = (hostname: string): string | undefined => {
  const bare = hostname.replace(/^\[|\]$/g, "")
  return isIP(bare) === 0 ? undefined : bare
}

/** 4 or 6 for an IP address, 0 for anything else. */
export const family = (address: string): number => isIP(address)

/** Whether an upstream call must never connect to this address. */
export const isForbidden = (address: string): boolean => {
  if (isIP(address) === 4) {
    const [a, b] = address.split(".").map(Number) as [number, number]
    return a === 0 || (a === 169 && b === 254) || a >= 224
  }
  const lower = address.toLowerCase()
  if (lower.startsWith("::ffff:")) return isForbidden(lower.slice(7))
  return isIP(lower) !== 6 || lower === "::" || /^fe[89ab]/.test(lower) || lower.startsWith("ff")
}
