/**
 * Upstream: the `upstream:<METHOD> <URL>` header also sends a message to an
 * HTTP backend, through the Effect `HttpClient` service, safely:
 *
 * - off until an allowlist of target URL prefixes is configured; a target
 *   outside it, another scheme or port on an allowed host, userinfo, or a
 *   host that resolves to a link-local, unspecified or multicast address is
 *   refused before any request is made; redirects are followed only to
 *   allowed targets;
 * - a timeout, a cap on the response size read, the methods allowed;
 * - only allowed headers are forwarded (never hop-by-hop or identity headers
 *   chosen by the client); the connection id and the command are added, and
 *   optionally an HMAC-SHA256 signature so the backend can trust the request;
 * - every failure is an `UpstreamError` with a reason, answered with an error
 *   frame that echoes the message's `id`;
 * - opt-in reply mode (`upstream-reply` header): the backend's response comes
 *   back as an LHTTP frame.
 *
 * `GET` sends no body; any other method sends the LHTTP body. The call runs
 * after pub/sub, so a `publish` in the same message has already gone out.
 *
 * @since 0.1.0
 */
import { Config, Context, Duration, Effect, Layer, Option, Redacted, Schema, Stream } from "effect"
import { HttpClient, HttpClientRequest } from "effect/http"
import { createHmac } from "node:crypto"
import { lookup } from "node:dns/promises"
import { isIP } from "node:net"
import * as ErrorFrame from "./ErrorFrame.ts"
import type { Frame } from "./Frame.ts"

/**
 * Why an upstream call failed.
 *
 * @since 0.1.0
 */
export const Reason = Schema.Literals([
  "NotAllowed",
  "InvalidTarget",
  "MethodNotAllowed",
  "Transport",
  "Timeout",
  "Status",
  "TooLarge",
  "TooMany"
])

/**
 * @since 0.1.0
 */
export type Reason = typeof Reason.Type

const statusOf: { readonly [R in Reason]: number } = {
  NotAllowed: 403,
  InvalidTarget: 400,
  MethodNotAllowed: 405,
  Transport: 502,
  Timeout: 504,
  Status: 502,
  TooLarge: 502,
  TooMany: 429
}

/**
 * An upstream call that failed or was refused. Its error frame has the
 * reason `Upstream<Reason>`, e.g. `UpstreamTimeout`.
 *
 * @since 0.1.0
 */
export class UpstreamError extends Schema.TaggedError<UpstreamError>()("UpstreamError", {
  reason: Reason,
  message: Schema.String
}) {
  /** The status of the error frame. */
  get status(): number {
    return statusOf[this.reason]
  }

  /** The error frame the client receives, echoing the message's `id` when given. */
  toFrame(id?: string): Frame {
    return ErrorFrame.make({ status: this.status, reason: `Upstream${this.reason}`, message: this.message, id })
  }
}

/**
 * Settings of upstream calls.
 *
 * @since 0.1.0
 */
export interface Options {
  /** URL prefixes that may be called, e.g. `https://api.example.com/hooks/`. Required. */
  readonly allow: ReadonlyArray<string>
  /** The methods allowed (default GET, POST, PUT, PATCH, DELETE). */
  readonly methods?: ReadonlyArray<string> | undefined
  /** The time a call may take, redirects and reading the response included (default 5 s). */
  readonly timeout?: Duration.Input | undefined
  /** The most response bytes read (default 256 KiB); more fails with `TooLarge`. */
  readonly maxResponseBytes?: number | undefined
  /** Calls one connection may have queued or running (default 16); more fail with `TooMany`. */
  readonly maxInFlight?: number | undefined
  /** Header names forwarded as they are (default `content-type`). */
  readonly forwardHeaders?: ReadonlyArray<string> | undefined
  /** Header names with this prefix are forwarded too (default `x-`), identity headers excepted. */
  readonly forwardPrefix?: string | undefined
  /** A secret to sign requests with (HMAC-SHA256); unsigned without one. */
  readonly secret?: Redacted.Redacted<string> | string | undefined
  /** Redirects followed, each to an allowed target (default 3). */
  readonly maxRedirects?: number | undefined
}

/**
 * What one upstream call sends.
 *
 * @since 0.1.0
 */
export interface Call {
  readonly method: string
  readonly url: string
  readonly body: string
  readonly headers: ReadonlyMap<string, string>
  readonly connectionId: string
  readonly command: string
}

/**
 * What a backend answered.
 *
 * @since 0.1.0
 */
export interface Response {
  readonly status: number
  readonly contentType: string | undefined
  readonly body: string
}

/**
 * The upstream service: the server finds it in context; without it an
 * `upstream` header is answered `501 UpstreamNotConfigured`.
 *
 * @since 0.1.0
 */
export class Upstream extends Context.Service<Upstream, {
  readonly maxInFlight: number
  /** Makes one call: checks, sends, follows allowed redirects, reads the response. */
  readonly call: (call: Call) => Effect.Effect<Response, UpstreamError>
}>()("effect-lhttp/Upstream") {}

/**
 * The header that asks for the backend's response to come back as a frame.
 *
 * @since 0.1.0
 */
export const replyHeader = "upstream-reply"

/**
 * The header of a reply frame that carries the backend's status.
 *
 * @since 0.1.0
 */
export const statusHeader = "upstream-status"

/**
 * The headers the server adds to every upstream request.
 *
 * @since 0.1.0
 */
export const AddedHeader = {
  connection: "x-lhttp-connection",
  command: "x-lhttp-command",
  timestamp: "x-lhttp-timestamp",
  signature: "x-lhttp-signature"
} as const

// never forwarded from a client, whatever the allowlist says
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
const identity = /^(authorization|cookie|forwarded|via|x-real-ip|x-forwarded-.*|x-lhttp-.*|x-client-ip|true-client-ip|cf-connecting-ip)$/

const printable = /^[\x20-\x7e]*$/

/**
 * The signature of a request: hex HMAC-SHA256 of
 * `<timestamp>\n<METHOD>\n<url>\n<body>` with the secret.
 *
 * @since 0.1.0
 */
export const sign = (secret: string, timestamp: string, method: string, url: string, body: string): string =>
  createHmac("sha256", secret).update(`${timestamp}\n${method}\n${url}\n${body}`).digest("hex")

interface Target {
  readonly protocol: string
  readonly hostname: string
  readonly port: string
  readonly path: string
}

const defaultPort = (protocol: string) => protocol === "https:" ? "443" : "80"

const targetOf = (url: URL): Target => ({
  protocol: url.protocol,
  hostname: url.hostname.toLowerCase(),
  port: url.port === "" ? defaultPort(url.protocol) : url.port,
  path: url.pathname
})

const parseAllowed = (entry: string): Target => {
  const url = new URL(entry)
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`upstream allowlist: ${entry} is not http or https`)
  }
  if (url.username !== "" || url.password !== "") throw new Error(`upstream allowlist: ${entry} has userinfo`)
  return targetOf(url)
}

const withinPath = (path: string, prefix: string) =>
  prefix === "/" || path === prefix || path.startsWith(prefix.endsWith("/") ? prefix : prefix + "/")

// 169.254/16 (link-local, cloud metadata), 0/8, multicast and reserved; fe80::/10, ::, ff00::/8
const forbiddenAddress = (address: string): boolean => {
  if (isIP(address) === 4) {
    const [a, b] = address.split(".").map(Number) as [number, number]
    return a === 0 || (a === 169 && b === 254) || a >= 224
  }
  const lower = address.toLowerCase()
  if (lower.startsWith("::ffff:")) return forbiddenAddress(lower.slice(7))
  return lower === "::" || /^fe[89ab]/.test(lower) || lower.startsWith("ff")
}

const fail = (reason: Reason, message: string) => Effect.fail(new UpstreamError({ reason, message }))

/**
 * Makes the upstream service over the `HttpClient` in context.
 *
 * @since 0.1.0
 */
export const make = Effect.fnUntraced(function*(options: Options) {
  const allowed = options.allow.map(parseAllowed)
  const methods = new Set(options.methods ?? ["GET", "POST", "PUT", "PATCH", "DELETE"])
  const timeout = Duration.fromInputUnsafe(options.timeout ?? "5 seconds")
  const maxResponseBytes = options.maxResponseBytes ?? 256 * 1024
  const maxRedirects = options.maxRedirects ?? 3
  const forward = new Set((options.forwardHeaders ?? ["content-type"]).map((name) => name.toLowerCase()))
  const forwardPrefix = (options.forwardPrefix ?? "x-").toLowerCase()
  const secret = options.secret === undefined
    ? undefined
    : typeof options.secret === "string"
    ? options.secret
    : Redacted.value(options.secret)
  const client = yield* HttpClient.HttpClient

  // Refuses a target outside the allowlist, before anything is sent.
  const check = (raw: string, base?: string) =>
    Effect.gen(function*() {
      let url: URL
      try {
        url = base === undefined ? new URL(raw) : new URL(raw, base)
      } catch {
        return yield* fail("InvalidTarget", "the upstream URL does not parse")
      }
      if (url.protocol !== "http:" && url.protocol !== "https:") {
        return yield* fail("NotAllowed", `the scheme ${url.protocol} is not allowed`)
      }
      if (url.username !== "" || url.password !== "") return yield* fail("NotAllowed", "userinfo is not allowed")
      const target = targetOf(url)
      const match = allowed.some((entry) =>
        entry.protocol === target.protocol && entry.hostname === target.hostname && entry.port === target.port &&
        withinPath(target.path, entry.path)
      )
      if (!match) return yield* fail("NotAllowed", `${url.origin}${url.pathname} is not an allowed upstream target`)
      const host = url.hostname.replace(/^\[|\]$/g, "")
      const addresses = isIP(host) !== 0
        ? [host]
        : yield* Effect.tryPromise({
          try: () => lookup(host, { all: true }).then((found) => found.map((entry) => entry.address)),
          catch: () => new UpstreamError({ reason: "Transport", message: `cannot resolve ${host}` })
        })
      if (addresses.some(forbiddenAddress)) {
        return yield* fail("NotAllowed", `${host} resolves to a link-local, unspecified or multicast address`)
      }
      return url
    })

  const headersOf = (call: Call, method: string, url: string, body: string) => {
    const headers: Record<string, string> = {}
    for (const [name, value] of call.headers) {
      const lower = name.toLowerCase()
      if (hopByHop.has(lower) || identity.test(lower) || !printable.test(value) || !/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(lower)) {
        continue
      }
      if (forward.has(lower) || (forwardPrefix !== "" && lower.startsWith(forwardPrefix))) headers[lower] = value
    }
    headers[AddedHeader.connection] = call.connectionId
    headers[AddedHeader.command] = printable.test(call.command) ? call.command : encodeURIComponent(call.command)
    if (secret !== undefined) {
      const timestamp = String(Math.floor(Date.now() / 1000))
      headers[AddedHeader.timestamp] = timestamp
      headers[AddedHeader.signature] = `sha256=${sign(secret, timestamp, method, url, body)}`
    }
    return headers
  }

  const readBody = (stream: Stream.Stream<Uint8Array, unknown>) =>
    Stream.runFold(stream, () => ({ chunks: [] as Array<Uint8Array>, size: 0 }), (acc, chunk) => {
      acc.size += chunk.byteLength
      if (acc.size > maxResponseBytes) throw new UpstreamError({ reason: "TooLarge", message: "" })
      acc.chunks.push(chunk)
      return acc
    }).pipe(
      Effect.map(({ chunks }) => Buffer.concat(chunks).toString("utf8")),
      Effect.catchDefect((defect) =>
        defect instanceof UpstreamError
          ? fail("TooLarge", `the backend's response is over ${maxResponseBytes} bytes`)
          : Effect.die(defect)
      ),
      Effect.mapError((error) =>
        error instanceof UpstreamError
          ? error
          : new UpstreamError({ reason: "Transport", message: "reading the backend's response failed" })
      )
    )

  const send = (call: Call) =>
    Effect.gen(function*() {
      if (!methods.has(call.method)) return yield* fail("MethodNotAllowed", `the method ${call.method} is not allowed`)
      let url = yield* check(call.url)
      let method = call.method
      let body = method === "GET" ? "" : call.body
      for (let hop = 0;; hop++) {
        const headers = headersOf(call, method, url.href, body)
        let request = HttpClientRequest.make(method as "GET")(url.href).pipe(HttpClientRequest.setHeaders(headers))
        if (method !== "GET" && method !== "HEAD") {
          request = HttpClientRequest.bodyText(request, body, headers["content-type"] ?? "text/plain; charset=utf-8")
        }
        const response = yield* client.execute(request).pipe(
          Effect.mapError(() =>
            new UpstreamError({ reason: "Transport", message: `the backend at ${url.origin} could not be reached` })
          )
        )
        const location = response.headers["location"]
        if (response.status >= 300 && response.status < 400 && location !== undefined) {
          if (hop >= maxRedirects) return yield* fail("NotAllowed", `more than ${maxRedirects} redirects`)
          url = yield* check(location, url.href)
          if (response.status !== 307 && response.status !== 308) {
            method = "GET"
            body = ""
          }
          continue
        }
        const text = yield* readBody(response.stream)
        if (response.status < 200 || response.status >= 300) {
          return yield* fail("Status", `the backend answered ${response.status}`)
        }
        return { status: response.status, contentType: response.headers["content-type"], body: text } satisfies Response
      }
    }).pipe(
      Effect.scoped,
      Effect.timeoutOrElse({
        duration: timeout,
        orElse: () => fail("Timeout", `the backend did not answer within ${Duration.format(timeout)}`)
      })
    )

  return Upstream.of({ maxInFlight: options.maxInFlight ?? 16, call: send })
})

/**
 * The upstream service as a Layer, over the `HttpClient` in context.
 *
 * @since 0.1.0
 */
export const layer = (options: Options): Layer.Layer<Upstream, never, HttpClient.HttpClient> =>
  Layer.effect(Upstream, make(options))

/**
 * Upstream settings from the environment: `LHTTP_UPSTREAM_ALLOW`
 * (comma-separated URL prefixes), `LHTTP_UPSTREAM_SECRET`,
 * `LHTTP_UPSTREAM_TIMEOUT` (e.g. `5 seconds`).
 *
 * @since 0.1.0
 */
export const config = Config.all({
  allow: Config.String("LHTTP_UPSTREAM_ALLOW").pipe(
    Config.map((value) => value.split(",").map((entry) => entry.trim()).filter((entry) => entry !== ""))
  ),
  secret: Config.option(Config.Redacted("LHTTP_UPSTREAM_SECRET")),
  timeout: Config.option(Config.Duration("LHTTP_UPSTREAM_TIMEOUT"))
})

/**
 * The upstream service when `LHTTP_UPSTREAM_ALLOW` is set, none otherwise.
 *
 * @since 0.1.0
 */
export const layerFromEnv: Layer.Layer<never, Config.ConfigError, HttpClient.HttpClient> = Layer.unwrap(
  Effect.map(Config.option(config), (settings) =>
    Option.match(settings, {
      onNone: () => Layer.empty,
      onSome: (env) =>
        layer({
          allow: env.allow,
          secret: Option.getOrUndefined(env.secret),
          timeout: Option.getOrUndefined(env.timeout)
        })
    }))
) as any
