/**
 * The operator's page, `/admin` (docs/operations.md): off without a password
 * (`LHTTP_ADMIN_PASSWORD`, else the API key); a login form, then a session
 * cookie (`HttpOnly`, `SameSite=Strict`, `Path=/admin`, expiring) signed with
 * a key derived from the password, so that every node of a cluster with the
 * same password takes it; failed logins limited per address; every request
 * after the login checked for the cookie, and those that act checked for
 * their origin (CSRF). Behind it: `GET /admin/stream`, the cluster's state
 * every second as Server-Sent Events (the server API's `info` and
 * `channels`); `GET /admin/tail?channel=<c>`, a channel's frames as they
 * pass, or `?user=<u>`, the frames sent to a user's connections on every
 * node, bounded; `POST /admin/api/<operation>`, the server API's operations
 * the page offers.
 */
import { ByteSize, Duration, Effect, Queue, Redacted, Schedule, Stream } from "effect"
import { type HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import { Buffer } from "node:buffer"
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto"
import { readFileSync } from "node:fs"
import * as Channel from "../../Channel.ts"
import type { ChannelId } from "../../Channel.ts"
import type * as Hub from "../../Hub.ts"
import type { ServerApi } from "../../ServerApi.ts"
import { statusOf } from "../../ServerApi.ts"
import type * as Transport from "../../Transport.ts"

/** Options of the operator's page. */
export interface Options {
  /** The password; without one the page is off (404). */
  readonly password: Redacted.Redacted<string> | undefined
  /** How long a login lasts (default 8 hours). */
  readonly sessionTtl?: Duration.Input | undefined
}

/** The limits of the page, documented in docs/operations.md. */
export const limits = {
  /** Failed logins from one address within the window before it is locked out for the rest of it. */
  failedLogins: 5,
  /** The window of failed logins, ms. */
  failureWindow: 15 * 60_000,
  /** Addresses whose failures are remembered (past it, the oldest go). */
  rememberedAddresses: 10_000,
  /** The busiest channels the state lists. */
  busiest: 50,
  /** Frames a live tail holds for a page that does not read; past it the oldest are dropped and counted. */
  tailBuffer: 1_000,
  /** Live tails open at once on a node. */
  tails: 20,
  /** A request's body, bytes. */
  maxBodyBytes: 256 * 1024
} as const

/** The server API's operations the page may call. */
const operations: ReadonlySet<string> = new Set([
  "publish",
  "disconnect",
  "unsubscribe",
  "history_remove",
  "presence",
  "history",
  "channels",
  "info",
  "send"
])

const cookieName = "lhttp_admin"
const page = readFileSync(new URL("../../admin/page.html", import.meta.url), "utf8")
// built by scripts/build-admin.mjs from src/admin/page.ts, its styles and uPlot
const script = readFileSync(new URL("../../admin/admin.js", import.meta.url), "utf8")
const styles = readFileSync(new URL("../../admin/admin.css", import.meta.url), "utf8")
// the page's icon (without one the browser asks for /favicon.ico, which a WebSocket path answers 426)
const icon =
  "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\"><rect width=\"16\" height=\"16\" rx=\"3\" " +
  "fill=\"#1d2330\"/><path d=\"M4 4v8h7\" stroke=\"#fff\" stroke-width=\"2\" fill=\"none\"/></svg>"

// what every answer of the page carries: not cached, not framed, scripts and styles of its own only
const guarded = {
  "cache-control": "no-store",
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  // same-origin: a form posted from the page says its origin (no-referrer makes it "null")
  "referrer-policy": "same-origin",
  "content-security-policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  HttpServerResponse.jsonUnsafe(body, { status, headers: { ...guarded, ...headers } })

const refusal = (status: number, reason: string, message: string, headers?: Record<string, string>) =>
  json(status, { reason, message }, headers)

const html = (text: string, status = 200, headers: Record<string, string> = {}) =>
  HttpServerResponse.text(text, {
    status,
    contentType: "text/html; charset=utf-8",
    headers: { ...guarded, ...headers }
  })

const loginPage = (status: number, message: string, headers?: Record<string, string>) =>
  html(
    page.replace("<!--login-->", message === "" ? "" : `<p class="refused">${message}</p>`).replace(
      "<body>",
      "<body class=\"signed-out\">"
    ),
    status,
    headers
  )

/** The cookie's signature: HMAC-SHA256 of its text under a key derived from the password. */
const signer = (password: Redacted.Redacted<string>) => {
  const key = createHmac("sha256", Redacted.value(password)).update("effect-lhttp admin session").digest()
  const sign = (text: string) => createHmac("sha256", key).update(text).digest("base64url")
  const digest = (text: string) => createHmac("sha256", key).update(`password:${text}`).digest()
  const expected = digest(Redacted.value(password))
  return {
    /** A session until `expires` (ms since the epoch). */
    issue: (expires: number) => {
      const text = `${expires}.${randomBytes(16).toString("base64url")}`
      return `${text}.${sign(text)}`
    },
    /** Whether a cookie's value is a session of ours not yet expired. */
    valid: (value: string | undefined, now: number) => {
      if (value === undefined) return false
      const dot = value.lastIndexOf(".")
      if (dot === -1) return false
      const given = Buffer.from(value.slice(dot + 1))
      const wanted = Buffer.from(sign(value.slice(0, dot)))
      return given.length === wanted.length && timingSafeEqual(given, wanted) && Number(value.split(".")[0]) > now
    },
    /** Whether a password is the one, compared in constant time (digests of equal length). */
    matches: (candidate: string) => timingSafeEqual(digest(candidate), expected)
  }
}

/** The failed logins of each address, and whether it is locked out. */
class Failures {
  readonly #byAddress = new Map<string, { count: number; since: number }>()

  /** How long (ms) an address stays locked out; 0 when it may try. */
  lockedFor(address: string, now: number): number {
    const entry = this.#byAddress.get(address)
    if (entry === undefined || now - entry.since >= limits.failureWindow) return 0
    return entry.count >= limits.failedLogins ? limits.failureWindow - (now - entry.since) : 0
  }

  failed(address: string, now: number): void {
    const entry = this.#byAddress.get(address)
    if (entry === undefined || now - entry.since >= limits.failureWindow) {
      this.#byAddress.delete(address)
      if (this.#byAddress.size >= limits.rememberedAddresses) {
        this.#byAddress.delete(this.#byAddress.keys().next().value!)
      }
      this.#byAddress.set(address, { count: 1, since: now })
    } else entry.count++
  }

  succeeded(address: string): void {
    this.#byAddress.delete(address)
  }
}

/** Whether a request that acts comes from the page itself: its `Origin` names the host it was sent to. */
const sameOrigin = (request: HttpServerRequest.HttpServerRequest): boolean => {
  const origin = request.headers["origin"]
  const host = request.headers["host"]
  if (origin === undefined || host === undefined || !URL.canParse(origin)) return false
  return new URL(origin).host === host
}

const isSecure = (request: HttpServerRequest.HttpServerRequest) =>
  request.headers["x-forwarded-proto"] === "https" || request.url.startsWith("https:")

const eventOf = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`

const encoder = new TextEncoder()

/** Adds the page's routes to a router, over the server API and the hub. */
export const add = (
  router: HttpRouter.HttpRouter,
  api: ServerApi["Service"],
  hub: Hub.Hub["Service"],
  options: Options
) =>
  Effect.gen(function*() {
    const password = options.password
    const ttl = Duration.toMillis(Duration.fromInputUnsafe(options.sessionTtl ?? Duration.hours(8)))
    const signed = password === undefined ? undefined : signer(password)
    const failures = new Failures()
    let tails = 0

    const addressOf = (request: HttpServerRequest.HttpServerRequest) =>
      request.remoteAddress._tag === "Some" ? request.remoteAddress.value : "unknown"

    const sessionOf = (request: HttpServerRequest.HttpServerRequest) =>
      signed !== undefined && signed.valid(request.cookies[cookieName], Date.now())

    const cookie = (request: HttpServerRequest.HttpServerRequest, value: string, maxAge: number) =>
      `${cookieName}=${value}; HttpOnly; SameSite=Strict; Path=/admin; Max-Age=${maxAge}${
        isSecure(request) ? "; Secure" : ""
      }`

    const login = (request: HttpServerRequest.HttpServerRequest) =>
      Effect.gen(function*() {
        if (!sameOrigin(request)) return loginPage(403, "Refused: this form is sent from its own page only.")
        const now = Date.now()
        const address = addressOf(request)
        const locked = failures.lockedFor(address, now)
        if (locked > 0) {
          return loginPage(429, "Too many failed logins: try again later.", {
            "retry-after": String(Math.ceil(locked / 1000))
          })
        }
        // (a login form is small: a body past 4 KiB is read as none)
        const form = yield* request.text.pipe(
          Effect.provideService(HttpServerRequest.MaxBodySize, ByteSize.kibibytes(4)),
          Effect.orElseSucceed(() => "")
        )
        const given = new URLSearchParams(form.slice(0, 4096)).get("password") ?? ""
        if (!signed!.matches(given)) {
          failures.failed(address, now)
          return loginPage(401, "Wrong password.")
        }
        failures.succeeded(address)
        return HttpServerResponse.empty({
          status: 303,
          headers: {
            ...guarded,
            location: "/admin",
            "set-cookie": cookie(request, signed!.issue(now + ttl), Math.floor(ttl / 1000))
          }
        })
      })

    // the cluster's state, every second, as long as the page reads
    const state = Effect.gen(function*() {
      const [info, channels] = yield* Effect.all([
        api.info(),
        api.channels({}).pipe(
          Effect.orElseSucceed(() => ({ channels: {} as Record<string, { subscribers: number }>, complete: false }))
        )
      ], { concurrency: 2 })
      const busiest = Object.entries(channels.channels)
        .sort(([, a], [, b]) => b.subscribers - a.subscribers)
        .slice(0, limits.busiest)
        .map(([name, { subscribers }]) => ({ name, subscribers }))
      return {
        time: Date.now(),
        nodes: info.nodes,
        complete: info.complete && channels.complete,
        channels: busiest,
        channelCount: Object.keys(channels.channels).length
      }
    }).pipe(
      Effect.map((value) => eventOf("state", value)),
      Effect.catch((error) => Effect.succeed(eventOf("unavailable", { reason: error.reason, message: error.message })))
    )

    const streamed = (body: Stream.Stream<string>) =>
      HttpServerResponse.stream(Stream.map(body, (text) => encoder.encode(text)), {
        contentType: "text/event-stream; charset=utf-8",
        headers: guarded
      })

    // a channel's frames as they pass on this node (every node's publishes reach it over the bus), at most
    // `tailBuffer` waiting for a page that does not read (the oldest dropped, counted in a `dropped` event)
    const tail = (channel: ChannelId) =>
      Effect.gen(function*() {
        const queue = yield* Queue.sliding<string>(limits.tailBuffer)
        const subscriber: Hub.Subscriber = {
          channels: new Set(),
          deliver: (frame: Transport.Outbound) => Queue.offerUnsafe(queue, frame.text)
        }
        yield* hub.subscribe(subscriber, [channel])
        yield* Effect.addFinalizer(() => hub.unsubscribeAll(subscriber))
        return Stream.concat(
          Stream.make(eventOf("tailing", { channel })),
          Stream.fromQueue(queue).pipe(Stream.map((text) => eventOf("frame", { time: Date.now(), text })))
        )
      })

    const act = (request: HttpServerRequest.HttpServerRequest, operation: string) =>
      Effect.gen(function*() {
        if (request.method !== "POST") return refusal(405, "MethodNotAllowed", "POST a JSON object", { allow: "POST" })
        if (!sameOrigin(request)) return refusal(403, "CrossOrigin", "the page's actions come from the page only")
        if (!operations.has(operation)) return refusal(404, "UnknownOperation", `the page offers no ${operation}`)
        if (Number(request.headers["content-length"] ?? 0) > limits.maxBodyBytes) {
          return refusal(413, "TooLarge", `a request's body is at most ${limits.maxBodyBytes} bytes`)
        }
        const body = yield* request.json.pipe(
          Effect.provideService(HttpServerRequest.MaxBodySize, ByteSize.bytes(limits.maxBodyBytes)),
          Effect.orElseSucceed(() => undefined)
        )
        if (typeof body !== "object" || body === null || Array.isArray(body)) {
          return refusal(400, "InvalidJson", "the body is a JSON object")
        }
        return yield* api.call(operation, body).pipe(
          Effect.map((answer) => json(200, answer)),
          Effect.catch((error) => Effect.succeed(refusal(statusOf(error), error.reason, error.message)))
        )
      })

    const handle = (request: HttpServerRequest.HttpServerRequest) =>
      Effect.gen(function*() {
        if (signed === undefined) {
          return HttpServerResponse.text("the operator's page is off: set LHTTP_ADMIN_PASSWORD\n", {
            status: 404,
            headers: guarded
          })
        }
        const [path, query = ""] = request.url.split("?") as [string, string?]
        if (path === "/admin/login") {
          return request.method === "POST" ? yield* login(request) : HttpServerResponse.redirect("/admin")
        }
        if (path === "/admin/admin.js") {
          return HttpServerResponse.text(script, { contentType: "text/javascript; charset=utf-8", headers: guarded })
        }
        if (path === "/admin/icon.svg") {
          return HttpServerResponse.text(icon, { contentType: "image/svg+xml", headers: guarded })
        }
        if (path === "/admin/admin.css") {
          return HttpServerResponse.text(styles, { contentType: "text/css; charset=utf-8", headers: guarded })
        }
        const session = sessionOf(request)
        if (path === "/admin" || path === "/admin/") {
          return session
            ? html(page.replace("<!--login-->", ""))
            : loginPage(200, "")
        }
        if (!session) return refusal(401, "Unauthorized", "log in at /admin")
        if (path === "/admin/logout") {
          if (request.method !== "POST" || !sameOrigin(request)) {
            return refusal(403, "CrossOrigin", "log out from the page")
          }
          return HttpServerResponse.empty({
            status: 303,
            headers: { ...guarded, location: "/admin", "set-cookie": cookie(request, "", 0) }
          })
        }
        if (path === "/admin/stream") {
          return streamed(Stream.fromEffectSchedule(state, Schedule.spaced("1 second")))
        }
        if (path === "/admin/tail") {
          const params = new URLSearchParams(query)
          const user = params.get("user")
          // the frames sent to a user's connections on every node, or a channel's
          let frames: Stream.Stream<string, { readonly reason: string }>
          if (user !== null) {
            frames = Stream.concat(
              Stream.make(eventOf("tailing", { user })),
              api.tailUser(user).pipe(Stream.map((frame) => eventOf("frame", frame)))
            )
          } else {
            const channel = Channel.validate(params.get("channel") ?? "")
            if (channel._tag === "Failure") return refusal(400, channel.failure.reason, channel.failure.message)
            frames = Stream.unwrap(tail(channel.success))
          }
          if (tails >= limits.tails) return refusal(503, "TooManyTails", `at most ${limits.tails} live tails at once`)
          tails++
          return streamed(
            frames.pipe(
              Stream.catch((error) => Stream.make(eventOf("unavailable", { reason: error.reason }))),
              Stream.ensuring(Effect.sync(() => tails--))
            )
          )
        }
        if (path.startsWith("/admin/api/")) return yield* act(request, path.slice("/admin/api/".length))
        return refusal(404, "NotFound", "no such page")
      })

    // (the wildcard takes `/admin` itself too)
    yield* router.add("*", "/admin/*", handle)
  })
