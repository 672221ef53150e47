/**
 * The Node implementation of upstream calls (`Upstream`): the checks, the
 * requests through an undici client of its own, redirects, bounds and
 * signatures.
 *
 * - Off until an allowlist of target URL prefixes is configured; a target
 *   outside it, another scheme or port on an allowed host, userinfo, or a
 *   host that resolves to a link-local, unspecified or multicast address is
 *   refused before any request is made; redirects are followed only to
 *   allowed targets.
 * - The host is resolved once per target and the connection goes to the
 *   addresses that were checked (no DNS rebinding between the check and the
 *   connection), with the original name in the `Host` header and, for
 *   `https`, in the TLS server name and certificate check.
 * - A timeout, a cap on the response size read, the methods allowed.
 * - Only allowed headers are forwarded; the connection id and the command
 *   are added, and optionally an HMAC-SHA256 signature.
 * - Every failure is an `UpstreamError`: a defect in a call is logged and
 *   answered as `Transport`, never passed on.
 *
 * @since 0.1.0
 */
import {
  Cause,
  Clock,
  Config,
  Data,
  Duration,
  Effect,
  Layer,
  Metric,
  Option,
  Redacted,
  Result,
  type Scope,
  Stream
} from "effect"
import { HttpClient, HttpClientRequest, HttpMethod } from "effect/http"
import * as Address from "./internal/node/upstream/address.ts"
import * as PinnedClient from "./internal/node/upstream/client.ts"
import * as RequestHeaders from "./internal/node/upstream/headers.ts"
import * as Signing from "./internal/node/upstream/signing.ts"
import * as Allowlist from "./internal/server/allowlist.ts"
import * as StartupConfig from "./internal/server/config.ts"
import { type Call, type Reason, type Response, Upstream, UpstreamError } from "./Upstream.ts"

/**
 * Settings of upstream calls.
 *
 * @since 0.1.0
 * @category models
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
  /**
   * The certificate authorities (PEM) trusted for `https` backends, instead of
   * Node's default ones: for backends with a private CA.
   */
  readonly ca?: string | ReadonlyArray<string> | undefined
  /**
   * Resolves a host name to all its addresses (default: the system resolver,
   * `dns.lookup`). Called once per target; the connection uses its answer.
   */
  readonly lookup?: ((hostname: string) => Effect.Effect<ReadonlyArray<string>, unknown>) | undefined
  /**
   * Whether calls carry the trace context of the message that made them
   * (`traceparent` and `b3` headers, from Effect's tracer): for backends of the
   * app's own that join its traces. Default false: a backend outside the app
   * learns nothing of its traces.
   */
  readonly propagateTrace?: boolean | undefined
}

/**
 * Upstream settings that cannot be used: an allowlist entry that is not an
 * `http:` or `https:` URL without userinfo, or a timeout that is not a
 * duration.
 *
 * @since 0.1.0
 * @category errors
 */
export class UpstreamConfigError extends Data.TaggedError("UpstreamConfigError")<{
  readonly reason: "InvalidAllowlist" | "InvalidTimeout"
  readonly message: string
}> {}

/**
 * The signature of a request: hex HMAC-SHA256 of
 * `<timestamp>\n<METHOD>\n<url>\n<body>` with the secret. A backend
 * recomputes it to trust a request.
 *
 * @since 0.1.0
 * @category utils
 */
export const sign: (secret: string, timestamp: string, method: string, url: string, body: string) => string =
  Signing.sign

const entryProblem: { readonly [P in Allowlist.EntryProblem]: string } = {
  Unparsable: "is not a URL",
  NotHttp: "is not http or https",
  Userinfo: "has userinfo"
}

const parseAllowlist = (entries: ReadonlyArray<string>) =>
  Effect.forEach(entries, (entry) =>
    Result.match(Allowlist.parseEntry(entry), {
      onSuccess: Effect.succeed,
      onFailure: (problem) =>
        Effect.fail(
          new UpstreamConfigError({
            reason: "InvalidAllowlist",
            message: `upstream allowlist: ${entry} ${entryProblem[problem]}`
          })
        )
    }))

const parseTimeout = (input: Duration.Input) =>
  Option.match(Duration.fromInput(input), {
    onNone: () =>
      Effect.fail(new UpstreamConfigError({ reason: "InvalidTimeout", message: "upstream timeout: not a duration" })),
    onSome: Effect.succeed
  })

const fail = (reason: Reason, message: string) => Effect.fail(new UpstreamError({ reason, message }))

/**
 * Makes the upstream service with an HTTP client of its own, closed with the
 * scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options: Options) => Effect.Effect<Upstream["Service"], UpstreamConfigError, Scope.Scope> = Effect
  .fnUntraced(function*(options: Options) {
    const allowlist = yield* parseAllowlist(options.allow)
    const timeout = yield* parseTimeout(options.timeout ?? "5 seconds")
    const methods = new Set(options.methods ?? ["GET", "POST", "PUT", "PATCH", "DELETE"])
    const maxResponseBytes = options.maxResponseBytes ?? 256 * 1024
    const maxRedirects = options.maxRedirects ?? 3
    const propagateTrace = options.propagateTrace ?? false
    const lookup = options.lookup ?? Address.systemLookup
    const policy: RequestHeaders.Policy = {
      forward: new Set((options.forwardHeaders ?? ["content-type"]).map((name) => name.toLowerCase())),
      forwardPrefix: (options.forwardPrefix ?? "x-").toLowerCase(),
      secret: options.secret === undefined
        ? undefined
        : typeof options.secret === "string"
        ? options.secret
        : Redacted.value(options.secret)
    }
    const pins = PinnedClient.makePins()
    const client = yield* PinnedClient.make(pins, { ca: options.ca })

    // Refuses a target outside the allowlist or on a forbidden address, before
    // anything is sent; pins its host to the addresses checked.
    const check = (raw: string, base?: string) =>
      Effect.gen(function*() {
        if (!URL.canParse(raw, base)) return yield* fail("InvalidTarget", "the upstream URL does not parse")
        const url = new URL(raw, base)
        if (!Allowlist.isHttp(url)) return yield* fail("NotAllowed", `the scheme ${url.protocol} is not allowed`)
        if (Allowlist.hasUserinfo(url)) return yield* fail("NotAllowed", "userinfo is not allowed")
        if (!Allowlist.allows(allowlist, url)) {
          return yield* fail("NotAllowed", `${url.origin}${url.pathname} is not an allowed upstream target`)
        }
        const literal = Address.literal(url.hostname)
        const addresses = literal !== undefined ? [literal] : yield* lookup(url.hostname).pipe(
          Effect.mapError(() => new UpstreamError({ reason: "Transport", message: `cannot resolve ${url.hostname}` }))
        )
        if (addresses.length === 0) return yield* fail("Transport", `cannot resolve ${url.hostname}`)
        if (addresses.some(Address.isForbidden)) {
          return yield* fail("NotAllowed", `${url.hostname} resolves to a link-local, unspecified or multicast address`)
        }
        if (literal === undefined) pins.pin(url.hostname, addresses)
        return url
      })

    // Reads at most maxResponseBytes of the body.
    const readBody = <E>(stream: Stream.Stream<Uint8Array, E>) =>
      Stream.runFoldEffect(stream, () => ({ chunks: [] as Array<Uint8Array>, size: 0 }), (read, chunk) => {
        const size = read.size + chunk.byteLength
        if (size > maxResponseBytes) return fail("TooLarge", `the backend's response is over ${maxResponseBytes} bytes`)
        read.chunks.push(chunk)
        return Effect.succeed({ chunks: read.chunks, size })
      }).pipe(
        Effect.map(({ chunks }) => Buffer.concat(chunks).toString("utf8")),
        Effect.mapError((error) =>
          error instanceof UpstreamError
            ? error
            : new UpstreamError({ reason: "Transport", message: "reading the backend's response failed" })
        )
      )

    const send = (call: Call) =>
      Effect.gen(function*() {
        const requested = call.method
        if (!methods.has(requested) || !HttpMethod.isHttpMethod(requested)) {
          return yield* fail("MethodNotAllowed", `the method ${requested} is not allowed`)
        }
        let url = yield* check(call.url)
        let method: HttpMethod.HttpMethod = requested
        let body = method === "GET" ? "" : call.body
        for (let hop = 0;; hop++) {
          const now = yield* Clock.currentTimeMillis
          const headers = RequestHeaders.requestHeaders(policy, call, method, url.href, body, now)
          let request = HttpClientRequest.make(method)(url.href).pipe(HttpClientRequest.setHeaders(headers))
          if (method !== "GET" && method !== "HEAD") {
            request = HttpClientRequest.bodyText(request, body, headers["content-type"] ?? "text/plain; charset=utf-8")
          }
          const origin = url.origin
          const response = yield* client.execute(request).pipe(
            Effect.provideService(HttpClient.TracerPropagationEnabled, propagateTrace),
            Effect.mapError(() =>
              new UpstreamError({ reason: "Transport", message: `the backend at ${origin} could not be reached` })
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
          return {
            status: response.status,
            contentType: response.headers["content-type"],
            body: text
          } satisfies Response
        }
      }).pipe(
        Effect.scoped,
        Effect.timeoutOrElse({
          duration: timeout,
          orElse: () => fail("Timeout", `the backend did not answer within ${Duration.format(timeout)}`)
        }),
        // a defect (a bug, a throwing setting) must not reach the connection
        Effect.catchCauseIf(
          Cause.hasDies,
          (cause) =>
            Effect.logWarning("an upstream call failed with a defect", cause).pipe(
              Effect.andThen(fail("Transport", "the upstream call failed"))
            )
        )
      )

    // the calls' series and the duration histogram there from the start, empty (reading a metric registers it)
    yield* Metric.update(upstreamCalls, 0).pipe(
      Effect.provideService(Metric.CurrentMetricAttributes, { outcome: "ok" })
    )
    yield* Metric.value(upstreamDuration)

    // each call's outcome and duration in the metrics (lhttp_upstream_calls_total, lhttp_upstream_duration_seconds)
    const measured = (call: Call) =>
      Effect.gen(function*() {
        const started = yield* Clock.currentTimeMillis
        const exit = yield* Effect.exit(send(call))
        const seconds = ((yield* Clock.currentTimeMillis) - started) / 1000
        const error = exit._tag === "Failure" ? Cause.findErrorOption(exit.cause) : Option.none()
        const outcome = exit._tag === "Success" ? "ok" : Option.match(error, {
          onNone: () => "Interrupted",
          onSome: (failure) => failure.reason
        })
        yield* Metric.update(upstreamCalls, 1).pipe(Effect.provideService(Metric.CurrentMetricAttributes, { outcome }))
        yield* Metric.update(upstreamDuration, seconds)
        return yield* exit
      })

    return Upstream.of({ maxInFlight: options.maxInFlight ?? 16, call: measured })
  })

const upstreamCalls = Metric.counter("lhttp_upstream_calls_total", {
  description: "upstream calls, by outcome (ok, or the UpstreamError reason)",
  incremental: true
})

const upstreamDuration = Metric.histogram("lhttp_upstream_duration_seconds", {
  description: "how long upstream calls took, redirects and reading the response included",
  boundaries: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
})

/**
 * The upstream service as a Layer, with an HTTP client of its own.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Upstream, UpstreamConfigError> =>
  Layer.effect(Upstream, make(options))

// LHTTP_UPSTREAM_ALLOW: at least one entry, each an http(s) URL prefix without userinfo
const parseAllowConfig = StartupConfig.parseList(
  "comma-separated http or https URL prefixes such as https://api.example.com/hooks/",
  StartupConfig.parseUpstreamEntry
)

// LHTTP_UPSTREAM_TIMEOUT: a duration above 0
const timeoutConfig = StartupConfig.checked("LHTTP_UPSTREAM_TIMEOUT", StartupConfig.parseDuration)

/**
 * Upstream settings from the environment, each checked (a bad one fails
 * with a `ConfigError` at its name): `LHTTP_UPSTREAM_ALLOW` (comma-separated
 * `http:` or `https:` URL prefixes without userinfo), `LHTTP_UPSTREAM_SECRET`,
 * `LHTTP_UPSTREAM_TIMEOUT` (a duration above 0, e.g. `5 seconds`).
 *
 * @since 0.1.0
 * @category config
 */
export const config = Config.all({
  allow: StartupConfig.required("LHTTP_UPSTREAM_ALLOW", parseAllowConfig),
  secret: Config.option(Config.Redacted("LHTTP_UPSTREAM_SECRET")),
  timeout: timeoutConfig
})

/**
 * The upstream service configured by the environment (`config`);
 * `LHTTP_UPSTREAM_ALLOW` is required.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: Layer.Layer<Upstream, Config.ConfigError | UpstreamConfigError> = Layer.unwrap(
  Effect.map(config, (env) =>
    layer({
      allow: env.allow,
      secret: Option.getOrUndefined(env.secret),
      timeout: Option.getOrUndefined(env.timeout)
    }))
)

/**
 * The upstream service of a program configured by the environment:
 * {@link layerConfig} when `LHTTP_UPSTREAM_ALLOW` is set, none when it is
 * not (upstream stays off). `LHTTP_UPSTREAM_ALLOW` and
 * `LHTTP_UPSTREAM_TIMEOUT` are checked either way.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFromEnv: Layer.Layer<never, Config.ConfigError | UpstreamConfigError> = Layer.unwrap(
  Effect.map(
    // the timeout is checked even when upstream stays off: a bad value is a mistake either way
    Config.all([StartupConfig.checked("LHTTP_UPSTREAM_ALLOW", parseAllowConfig), timeoutConfig]),
    ([allow]): Layer.Layer<never, Config.ConfigError | UpstreamConfigError> =>
      Option.isSome(allow) ? layerConfig : Layer.empty
  )
)
