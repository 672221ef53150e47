/**
 * The headers of an upstream request: the client's headers that may be
 * forwarded (never hop-by-hop or identity headers, never a value that is not
 * printable ASCII), then the ones the server adds and the client cannot
 * forge: the connection id, the command and, with a secret, a timestamp and
 * a signature.
 */
import { AddedHeader, type Call } from "../../../Upstream.ts"
import { sign } from "./signing.ts"

// never forwarded from a client, whatever the settings say
const hopByHop = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
  "content-length",
  "expect"
])
const identity =
  /^(authorization|cookie|forwarded|via|x-real-ip|x-forwarded-.*|x-lhttp-.*|x-client-ip|true-client-ip|cf-connecting-ip)$/
const token = /^[!#$%&'*+.^_`|~0-9a-z-]+$/
const printable = /^[\x20-\x7e]*$/

/** Which client headers are forwarded, and the secret to sign with. */
export interface Policy {
  /** Header names (lower case) forwarded as they are. */
  readonly forward: ReadonlySet<string>
  /** Names with this prefix (lower case) are forwarded too; empty for none. */
  readonly forwardPrefix: string
  /** The signing secret, if requests are signed. */
  readonly secret: string | undefined
}

/** The headers of one request (one hop) of a call, by lower-case name. */
export const requestHeaders = (
  policy: Policy,
  call: Call,
  method: string,
  url: string,
  body: string,
  now: number
): Record<string, string> => {
  const headers: Record<string, string> = {}
  for (const [name, value] of call.headers) {
    const lower = name.toLowerCase()
    if (hopByHop.has(lower) || identity.test(lower) || !printable.test(value) || !token.test(lower)) continue
    if (policy.forward.has(lower) || (policy.forwardPrefix !== "" && lower.startsWith(policy.forwardPrefix))) {
      headers[lower] = value
    }
  }
  headers[AddedHeader.connection] = call.connectionId
  headers[AddedHeader.command] = printable.test(call.command) ? call.command : encodeURIComponent(call.command)
  if (policy.secret !== undefined) {
    const timestamp = String(Math.floor(now / 1000))
    headers[AddedHeader.timestamp] = timestamp
    headers[AddedHeader.signature] = `sha256=${sign(policy.secret, timestamp, method, url, body)}`
  }
  return headers
}
