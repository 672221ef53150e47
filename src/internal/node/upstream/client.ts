/**
 * The HTTP client of upstream calls, pinned to checked addresses. A call
 * resolves its host once, checks every address, and pins the host to them;
 * the client's connections then look the host up in the pins only, never in
 * DNS, so a name that resolves elsewhere between the check and the connection
 * (DNS rebinding) cannot move the connection. The request URL keeps the name:
 * the `Host` header, the TLS server name (SNI) and the certificate check are
 * the original host's.
 *
 * Pins are per host name and hold the addresses of its latest check, so a
 * connection (new, or kept alive from an earlier call) only ever goes to an
 * address that passed the check. A host name is pinned only after it matched
 * the allowlist, so the pins stay as small as the allowlist.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Effect, type Scope } from "effect"
import type { HttpClient } from "effect/http"
import type { LookupFunction } from "node:net"
import { family } from "./address.ts"

/** Host names and the checked addresses their connections may use. */
interface Pins {
  /** Pins a host name to addresses that passed the check (replacing earlier ones). */
  readonly pin: (hostname: string, addresses: ReadonlyArray<string>) => void
  /** The `net.connect` lookup: answers with the pinned addresses only, fails for a host never pinned. */
  readonly lookup: LookupFunction
}

/** Makes an empty set of pins. */
export const makePins = (): Pins => {
  const pinned = new Map<string, ReadonlyArray<string>>()
  const lookup: LookupFunction = (hostname, options, callback) => {
    const wanted = options.family === 4 || options.family === "IPv4"
      ? 4
      : options.family === 6 || options.family === "IPv6"
      ? 6
      : 0
    const addresses = (pinned.get(hostname.toLowerCase()) ?? []).filter((address) =>
      wanted === 0 || family(address) === wanted
    )
    const first = addresses[0]
    if (first === undefined) {
      const error: NodeJS.ErrnoException = new Error(`upstream: ${hostname} was not checked before connecting`)
      error.code = "ENOTFOUND"
      return process.nextTick(() => callback(error, ""))
    }
    process.nextTick(() =>
      options.all === true
        ? callback(null, addresses.map((address) => ({ address, family: family(address) })))
        : callback(null, first, family(first))
    )
  }
  return {
    pin: (hostname, addresses) => {
      pinned.set(hostname.toLowerCase(), addresses)
    },
    lookup
  }
}

/** TLS settings of the client. */
interface TlsOptions {
  /** The certificate authorities (PEM) trusted instead of Node's default ones. */
  readonly ca?: string | ReadonlyArray<string> | undefined
}

/**
 * An undici `HttpClient` whose connections resolve host names through the
 * pins only; its dispatcher is closed with the scope.
 */
export const make = (pins: Pins, tls: TlsOptions = {}): Effect.Effect<HttpClient.HttpClient, never, Scope.Scope> =>
  Effect.gen(function*() {
    const dispatcher = yield* NodeHttpClient.makeDispatcherOptions({
      connect: tls.ca === undefined
        ? { lookup: pins.lookup }
        : { lookup: pins.lookup, ca: typeof tls.ca === "string" ? tls.ca : [...tls.ca] }
    })
    return yield* NodeHttpClient.makeUndici.pipe(Effect.provideService(NodeHttpClient.Dispatcher, dispatcher))
  })
