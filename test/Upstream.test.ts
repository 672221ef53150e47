import { assert, describe, it } from "@effect/vitest"
import {
  Cause,
  Config,
  ConfigProvider,
  Context,
  Duration,
  Effect,
  Exit,
  Fiber,
  Layer,
  Logger,
  Option,
  Redacted,
  Tracer
} from "effect"
import { HttpClientRequest } from "effect/http"
import { PrometheusMetrics } from "effect/observability"
import { TestClock } from "effect/testing"
import { execFileSync } from "node:child_process"
import { createHmac } from "node:crypto"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { createServer, type IncomingHttpHeaders } from "node:http"
import { createServer as createHttpsServer } from "node:https"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createSecureContext } from "node:tls"
import { fileURLToPath } from "node:url"
import * as PinnedClient from "../src/internal/node/upstream/client.ts"
import { configErrorLine } from "../src/internal/server/config.ts"
import * as NodeUpstream from "../src/NodeUpstream.ts"
import * as Processor from "../src/Processor.ts"
import * as Upstream from "../src/Upstream.ts"
import { connect, frame } from "./utils/lhttp.ts"
import { startMemoryServer } from "./utils/memory.ts"
import { freePort, start } from "./utils/process.ts"
import { eventually } from "./utils/wait.ts"

interface Recorded {
  readonly method: string
  readonly url: string
  readonly headers: IncomingHttpHeaders
  readonly body: string
  /** The port the request's connection came from: the same for requests on one kept-alive connection. */
  readonly remotePort: number | undefined
}

interface Backend {
  readonly port: number
  readonly base: string
  /** Every request, once its body was read. */
  readonly requests: Array<Recorded>
  /** The most requests it was answering at the same time. */
  readonly maxInFlight: () => number
  /** Opens the gate: the requests waiting at `/hooks/hold` go on, and later ones pass. */
  readonly open: () => void
  /** Waits until `count` requests have arrived. */
  readonly arrived: (count: number) => Effect.Effect<void>
  /** Stops answering: later calls find nothing listening. */
  readonly close: () => void
}

/** A real HTTP backend that records every request; its paths choose how it answers. */
const recorder = Effect.acquireRelease(
  Effect.callback<Backend>((resume) => {
    const requests: Array<Recorded> = []
    const listeners = new Set<() => void>()
    let inFlight = 0
    let maxInFlight = 0
    let opened = false
    const gate: Array<() => void> = []
    const server = createServer((request, response) => {
      inFlight++
      maxInFlight = Math.max(maxInFlight, inFlight)
      let answered = false
      // counted out before the answer is written: the caller cannot see it earlier
      const done = () => {
        if (!answered) inFlight--
        answered = true
      }
      response.on("close", done)
      const answer = (body: string, status = 200, headers: Record<string, string> = {}) => {
        done()
        response.writeHead(status, headers)
        response.end(body)
      }
      let body = ""
      request.setEncoding("utf8")
      request.on("data", (chunk) => (body += chunk))
      request.on("end", () => {
        requests.push({
          method: request.method!,
          url: request.url!,
          headers: request.headers,
          body,
          remotePort: request.socket.remotePort
        })
        for (const listener of listeners) listener()
        const path = request.url!.split("?")[0]
        const query = new URLSearchParams(request.url!.split("?")[1] ?? "")
        switch (path) {
          case "/hooks/hold": {
            // held until the gate opens, then `ms` more (the backend's own latency)
            const go = () => setTimeout(() => answer("held"), Number(query.get("ms") ?? 0))
            return opened ? go() : gate.push(go)
          }
          case "/hooks/fail":
            return answer("broken", 500)
          case "/hooks/big":
            return answer("b".repeat(300 * 1024))
          case "/hooks/bytes":
            return answer("b".repeat(Number(query.get("n"))))
          case "/hooks/redirect":
            return answer("", Number(query.get("status") ?? 302), { location: query.get("to")! })
          case "/hooks/json":
            return answer(JSON.stringify({ saved: body }), 200, { "content-type": "application/json" })
          default:
            return answer("saved")
        }
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      resume(Effect.succeed({
        port,
        base: `http://127.0.0.1:${port}`,
        requests,
        maxInFlight: () => maxInFlight,
        open: () => {
          opened = true
          for (const go of gate.splice(0)) go()
        },
        arrived: (count) =>
          Effect.callback<void>((resumeArrived) => {
            const check = () => {
              if (requests.length < count) return
              listeners.delete(check)
              resumeArrived(Effect.void)
            }
            listeners.add(check)
            check()
            return Effect.sync(() => listeners.delete(check))
          }),
        close: () => {
          server.close()
          server.closeAllConnections()
        }
      }))
    })
  }),
  (backend) => Effect.sync(backend.close)
)

/** A server whose upstream calls use these options, with clients on the in-memory transport. */
const upstreamServer = (options: NodeUpstream.Options) => startMemoryServer({}, NodeUpstream.layer(options))

/** The error frame of an upstream failure, byte for byte. */
const errorFrame = (status: number, reason: string, message: string, id?: string) =>
  `LHTTP/1.0 error\r\nstatus:${status}\r\nreason:${reason}\r\n${id === undefined ? "" : `id:${id}\r\n`}\r\n${message}`

/** The documented signature, computed here with node:crypto. */
const hmac = (secret: string, timestamp: string, method: string, url: string, body: string) =>
  `sha256=${createHmac("sha256", secret).update(`${timestamp}\n${method}\n${url}\n${body}`).digest("hex")}`

/** A path that redirects `hops` times (302) before reaching `end`. */
const redirectChain = (hops: number, end = "/hooks/json") => {
  let target = end
  for (let hop = 0; hop < hops; hop++) target = `/hooks/redirect?to=${encodeURIComponent(target)}`
  return target
}

/** One call as the server makes it, for tests of the service itself. */
const call = (method: string, url: string): Upstream.Call => ({
  method,
  url,
  body: "",
  headers: new Map(),
  connectionId: "c-1",
  command: "c"
})

const forbidden = (hostname: string) => `${hostname} resolves to a link-local, unspecified or multicast address`

describe("Upstream: what the backend receives", () => {
  it.live("POST sends the LHTTP body, the allowed headers, the connection and command, and a fresh signature", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const server = yield* upstreamServer({ allow: [`${backend.base}/hooks/`], secret: "s3cret" })
      const client = yield* server.connect()
      const before = Math.floor(Date.now() / 1000)
      yield* client.send(frame("chat", {
        upstream: `POST ${backend.base}/hooks/record?room=1`,
        "content-type": "application/json",
        "x-trace": "t-1",
        authorization: "Bearer stolen",
        "x-forwarded-for": "6.6.6.6",
        "x-lhttp-connection": "forged",
        cookie: "session=1",
        connection: "close",
        host: "evil.example",
        private: "not forwarded"
      }, "{\"text\":\"hello\"}"))
      yield* backend.arrived(1)
      const after = Math.ceil(Date.now() / 1000)
      const [request] = backend.requests
      assert.strictEqual(request!.method, "POST")
      assert.strictEqual(request!.url, "/hooks/record?room=1")
      assert.strictEqual(request!.body, "{\"text\":\"hello\"}")
      const headers = request!.headers
      assert.strictEqual(headers["content-type"], "application/json")
      assert.strictEqual(headers["x-trace"], "t-1")
      for (const name of ["authorization", "x-forwarded-for", "cookie", "private", "upstream"]) {
        assert.isUndefined(headers[name], name)
      }
      assert.strictEqual(headers["host"], `127.0.0.1:${backend.port}`)
      assert.strictEqual(headers[Upstream.AddedHeader.command], "chat")
      assert.match(String(headers[Upstream.AddedHeader.connection]), /^[a-z0-9]+-[a-z0-9]+$/)
      // Unix seconds, taken while the call was made
      const timestamp = String(headers[Upstream.AddedHeader.timestamp])
      assert.match(timestamp, /^\d+$/)
      assert.isAtLeast(Number(timestamp), before)
      assert.isAtMost(Number(timestamp), after)
      assert.strictEqual(
        headers[Upstream.AddedHeader.signature],
        hmac("s3cret", timestamp, "POST", `${backend.base}/hooks/record?room=1`, "{\"text\":\"hello\"}")
      )
      yield* client.nothing()
    }))

  it.live("trace headers (traceparent, b3) go out only with propagateTrace", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      for (const [propagateTrace, expected] of [[undefined, false], [true, true]] as const) {
        const server = yield* upstreamServer({ allow: [`${backend.base}/hooks/`], propagateTrace })
        const client = yield* server.connect()
        yield* client.send(frame("chat", { upstream: `POST ${backend.base}/hooks/record` }, "traced?"))
        const count = backend.requests.length + 1
        yield* backend.arrived(count)
        const headers = backend.requests[count - 1]!.headers
        assert.strictEqual(
          headers["traceparent"] !== undefined,
          expected,
          `traceparent, propagateTrace ${propagateTrace}`
        )
        assert.strictEqual(headers["b3"] !== undefined, expected, `b3, propagateTrace ${propagateTrace}`)
        if (expected) assert.match(String(headers["traceparent"]), /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/)
      }
    }))

  it.live("each call's outcome and duration are in the metrics", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const server = yield* upstreamServer({ allow: [`${backend.base}/hooks/`] })
      const count = (text: string, outcome: string) =>
        Number(new RegExp(`^lhttp_upstream_calls_total\\{outcome="${outcome}"\\} (\\d+)$`, "m").exec(text)?.[1] ?? 0)
      const before = yield* PrometheusMetrics.format()
      const client = yield* server.connect()
      yield* client.send(frame("chat", { upstream: `POST ${backend.base}/hooks/record` }, "counted"))
      yield* backend.arrived(backend.requests.length + 1)
      yield* client.send(frame("chat", { upstream: `POST ${backend.base}/hooks/fail`, id: "f" }, "fails"))
      assert.match(yield* client.next(), /^LHTTP\/1\.0 error\r\nstatus:502\r\nreason:UpstreamStatus\r\nid:f\r\n/)
      const after = yield* PrometheusMetrics.format()
      assert.strictEqual(count(after, "ok") - count(before, "ok"), 1)
      assert.strictEqual(count(after, "Status") - count(before, "Status"), 1)
      assert.match(after, /^lhttp_upstream_duration_seconds_count \d+$/m)
    }))

  it.live("with tracing, the call is an lhttp.upstream span under its message's, the HTTP client's inside it", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const spans: Array<readonly [string, string | undefined]> = []
      const names = new Map<string, string>()
      const made: Array<Tracer.Span> = []
      const recording = Tracer.make({
        span(options) {
          const span = Tracer.nativeTracer.span(options)
          names.set(span.spanId, options.name)
          const parent = Option.getOrUndefined(options.parent)
          spans.push([options.name, parent === undefined ? undefined : names.get(parent.spanId)])
          made.push(span)
          return span
        }
      })
      const server = yield* startMemoryServer(
        { tracing: true },
        NodeUpstream.layer({ allow: [`${backend.base}/hooks/`] })
      ).pipe(
        Effect.provideService(Tracer.Tracer, recording)
      )
      const client = yield* server.connect()
      yield* client.send(frame("chat", { upstream: `POST ${backend.base}/hooks/record` }, "traced"))
      yield* backend.arrived(backend.requests.length + 1)
      yield* eventually(() => spans.some(([, parent]) => parent === "lhttp.upstream"))
      assert.deepStrictEqual(spans.find(([name]) => name === "lhttp.upstream"), ["lhttp.upstream", "lhttp.message"])
      assert.strictEqual(spans.find(([, parent]) => parent === "lhttp.upstream")![0], "POST")
      // the attributes (operations.md, Traces): the call's method and URL; the message's command and connection
      const attributes = (name: string) => Object.fromEntries(made.find((span) => span.name === name)!.attributes)
      assert.deepStrictEqual(attributes("lhttp.upstream"), {
        "lhttp.upstream.method": "POST",
        "lhttp.upstream.url": `${backend.base}/hooks/record`
      })
      const connection = backend.requests.at(-1)!.headers[Upstream.AddedHeader.connection]
      assert.isString(connection)
      assert.deepStrictEqual(attributes("lhttp.message"), { "lhttp.command": "chat", "lhttp.connection": connection })
    }))

  it.live("GET sends no body", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const server = yield* upstreamServer({ allow: [`${backend.base}/hooks`] })
      const client = yield* server.connect()
      yield* client.send(frame("report", { upstream: `GET ${backend.base}/hooks/reports?id=1` }, "ignored body"))
      yield* backend.arrived(1)
      assert.deepStrictEqual([backend.requests[0]!.method, backend.requests[0]!.url, backend.requests[0]!.body], [
        "GET",
        "/hooks/reports?id=1",
        ""
      ])
      assert.isUndefined(backend.requests[0]!.headers[Upstream.AddedHeader.signature])
    }))

  it.live("the seed's chat record: publish and upstream in one message", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const server = yield* upstreamServer({ allow: [`${backend.base}/hooks/`] })
      const alice = yield* server.connect()
      const bob = yield* server.connect()
      yield* bob.send(frame("chat", { subscribe: "room" }))
      // the probe's answer comes after the subscription was made
      yield* bob.nothing()
      const message = frame("chat", { publish: "room", upstream: `POST ${backend.base}/hooks/chat-records` }, "hi bob")
      yield* alice.send(message)
      assert.strictEqual(yield* bob.next(), message)
      yield* backend.arrived(1)
      assert.deepStrictEqual([backend.requests[0]!.url, backend.requests[0]!.body], ["/hooks/chat-records", "hi bob"])
    }))

  it.live("reply mode: the backend's response comes back as a frame", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const server = yield* upstreamServer({ allow: [`${backend.base}/hooks/`] })
      const client = yield* server.connect()
      yield* client.send(
        frame("save", { upstream: `POST ${backend.base}/hooks/json`, "upstream-reply": "1", id: "r1" }, "x")
      )
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 save\r\nupstream-status:200\r\ncontent-type:application/json\r\nid:r1\r\n\r\n{\"saved\":\"x\"}"
      )
    }))

  it.live("reply mode: the frame has the command a processor set with setCommand", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const Rename = Processor.make("save")
      const server = yield* startMemoryServer(
        { processors: [Rename] },
        Layer.merge(
          Rename.toLayer({ onMessage: (exchange) => Effect.sync(() => exchange.setCommand("saved")) }),
          NodeUpstream.layer({ allow: [`${backend.base}/hooks/`] })
        )
      )
      const client = yield* server.connect()
      yield* client.send(
        frame("save", { upstream: `POST ${backend.base}/hooks/json`, "upstream-reply": "1", id: "r2" }, "y")
      )
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 saved\r\nupstream-status:200\r\ncontent-type:application/json\r\nid:r2\r\n\r\n{\"saved\":\"y\"}"
      )
      // the backend is told the command the reply has
      assert.strictEqual(backend.requests[0]!.headers[Upstream.AddedHeader.command], "saved")
    }))

  it.live("hop-by-hop and identity headers and values that are not printable ASCII are never forwarded, even when named", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const never = [
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
        "expect",
        "authorization",
        "cookie",
        "forwarded",
        "via",
        "x-real-ip",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-client-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "x-lhttp-connection",
        "x-lhttp-command",
        "x-lhttp-timestamp",
        "x-lhttp-signature"
      ]
      const server = yield* upstreamServer({
        allow: [`${backend.base}/hooks/`],
        forwardHeaders: ["content-type", "x-tab", "x-utf", "x-control", ...never]
      })
      const client = yield* server.connect()
      yield* client.send(frame("c", {
        upstream: `POST ${backend.base}/hooks/record`,
        "upstream-reply": "1",
        ...Object.fromEntries(never.map((name) => [name, `forged-${name}`])),
        "x-tab": "a\tb",
        "x-utf": "café",
        "x-control": "a\u0001b",
        "x-ok": "printable ~ too"
      }, "body"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 c\r\nupstream-status:200\r\n\r\nsaved")
      const headers = backend.requests[0]!.headers
      for (const name of never) assert.notStrictEqual(headers[name], `forged-${name}`, name)
      for (const name of ["x-tab", "x-utf", "x-control"]) assert.isUndefined(headers[name], name)
      assert.strictEqual(headers["x-ok"], "printable ~ too")
      assert.strictEqual(headers["host"], `127.0.0.1:${backend.port}`)
      assert.strictEqual(headers["content-length"], "4")
      assert.strictEqual(headers[Upstream.AddedHeader.command], "c")
      assert.match(String(headers[Upstream.AddedHeader.connection]), /^[a-z0-9]+-[a-z0-9]+$/)
      assert.isUndefined(headers[Upstream.AddedHeader.signature])
      assert.isUndefined(headers[Upstream.AddedHeader.timestamp])
    }))

  it.live("custom forwardHeaders and forwardPrefix replace the defaults", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const server = yield* upstreamServer({
        allow: [`${backend.base}/hooks/`],
        forwardHeaders: ["Accept-Language", "id"],
        forwardPrefix: "App-"
      })
      const client = yield* server.connect()
      yield* client.send(frame("c", {
        upstream: `POST ${backend.base}/hooks/record`,
        "content-type": "application/json",
        "accept-language": "fr",
        "app-trace": "t-2",
        "x-trace": "t-1",
        id: "m1"
      }, "{}"))
      yield* backend.arrived(1)
      const headers = backend.requests[0]!.headers
      assert.deepStrictEqual(
        [headers["accept-language"], headers["app-trace"], headers["id"], headers["x-trace"]],
        ["fr", "t-2", "m1", undefined]
      )
      // content-type is not among the names forwarded: the body goes as text
      assert.strictEqual(headers["content-type"], "text/plain; charset=utf-8")
      // an empty prefix forwards no name by prefix
      const none = yield* NodeUpstream.make({ allow: [`${backend.base}/hooks/`], forwardPrefix: "" })
      yield* none.call({
        ...call("POST", `${backend.base}/hooks/record`),
        headers: new Map([["x-trace", "t-3"], ["content-type", "application/json"]])
      })
      assert.deepStrictEqual(
        [backend.requests[1]!.headers["x-trace"], backend.requests[1]!.headers["content-type"]],
        [undefined, "application/json"]
      )
    }))

  it.live("the command header is percent-encoded when it is not printable ASCII", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const server = yield* upstreamServer({ allow: [`${backend.base}/hooks/`] })
      const client = yield* server.connect()
      yield* client.send(frame("grüße 1", { upstream: `POST ${backend.base}/hooks/record` }))
      yield* client.send(frame("a b~", { upstream: `POST ${backend.base}/hooks/record` }))
      yield* backend.arrived(2)
      assert.deepStrictEqual(backend.requests.map((request) => request.headers[Upstream.AddedHeader.command]), [
        "gr%C3%BC%C3%9Fe%201",
        "a b~"
      ])
    }))

  it.live("custom methods: exactly those, case-sensitive; any other method sends the LHTTP body", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const server = yield* upstreamServer({ allow: [`${backend.base}/hooks/`], methods: ["PUT", "DELETE"] })
      const client = yield* server.connect()
      for (const [method, id] of [["PUT", "p"], ["DELETE", "d"]] as const) {
        yield* client.send(
          frame("c", { upstream: `${method} ${backend.base}/hooks/record`, "upstream-reply": "1", id }, id)
        )
        assert.strictEqual(yield* client.next(), `LHTTP/1.0 c\r\nupstream-status:200\r\nid:${id}\r\n\r\nsaved`)
      }
      for (const method of ["POST", "GET", "put"]) {
        yield* client.send(frame("c", { upstream: `${method} ${backend.base}/hooks/record`, id: method }))
        assert.strictEqual(
          yield* client.next(),
          errorFrame(405, "UpstreamMethodNotAllowed", `the method ${method} is not allowed`, method)
        )
      }
      // a marker call after the refused ones: the only other request the backend saw
      yield* client.send(frame("c", { upstream: `PUT ${backend.base}/hooks/record`, "upstream-reply": "1" }, "marker"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 c\r\nupstream-status:200\r\n\r\nsaved")
      assert.deepStrictEqual(backend.requests.map((request) => [request.method, request.body]), [
        ["PUT", "p"],
        ["DELETE", "d"],
        ["PUT", "marker"]
      ])
    }))
})

describe("Upstream: SSRF attempts are refused without a request", () => {
  it.live("targets outside the allowlist, other ports and schemes, file:, userinfo, traversal, bad URLs and headers", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const other = yield* recorder
      const server = yield* upstreamServer({ allow: [`${backend.base}/hooks/`] })
      const client = yield* server.connect()
      const outside = (url: string) => [403, "UpstreamNotAllowed", `${url} is not an allowed upstream target`] as const
      const attempts: ReadonlyArray<readonly [string, readonly [number, string, string]]> = [
        [`POST ${backend.base}/admin`, outside(`${backend.base}/admin`)],
        [`POST ${backend.base}/hooks-evil/x`, outside(`${backend.base}/hooks-evil/x`)],
        [`POST ${backend.base}/hooks/../admin`, outside(`${backend.base}/admin`)],
        [`POST ${other.base}/hooks/x`, outside(`${other.base}/hooks/x`)],
        [`POST https://127.0.0.1:${backend.port}/hooks/x`, outside(`https://127.0.0.1:${backend.port}/hooks/x`)],
        [`POST http://localhost:${backend.port}/hooks/x`, outside(`http://localhost:${backend.port}/hooks/x`)],
        ["GET file:///etc/passwd", [403, "UpstreamNotAllowed", "the scheme file: is not allowed"]],
        [`POST http://127.0.0.1:${backend.port}@127.0.0.1:${other.port}/hooks/x`, [
          403,
          "UpstreamNotAllowed",
          "userinfo is not allowed"
        ]],
        [`POST http://user:pass@127.0.0.1:${backend.port}/hooks/x`, [
          403,
          "UpstreamNotAllowed",
          "userinfo is not allowed"
        ]],
        ["POST http://[::1", [400, "UpstreamInvalidTarget", "the upstream URL does not parse"]],
        ["POST not-a-url", [400, "UpstreamInvalidTarget", "the upstream URL does not parse"]],
        [`TRACE ${backend.base}/hooks/x`, [405, "UpstreamMethodNotAllowed", "the method TRACE is not allowed"]],
        [`${backend.base}/hooks/x`, [400, "InvalidUpstream", "an upstream header is \"<METHOD> <URL>\""]]
      ]
      for (const [target, [status, reason, message]] of attempts) {
        yield* client.send(frame("c", { upstream: target, id: "s" }))
        assert.strictEqual(yield* client.next(), errorFrame(status, reason, message, "s"), target)
      }
      // a marker call on the same lane, after the refused ones: the only request either backend saw
      yield* client.send(frame("c", { upstream: `POST ${backend.base}/hooks/record`, "upstream-reply": "1" }, "marker"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 c\r\nupstream-status:200\r\n\r\nsaved")
      assert.deepStrictEqual(backend.requests.map((request) => request.body), ["marker"])
      assert.strictEqual(other.requests.length, 0)
    }))

  it.live("a redirect to a disallowed target is not followed; one to an allowed target is", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const other = yield* recorder
      const server = yield* upstreamServer({ allow: [`${backend.base}/hooks/`] })
      const client = yield* server.connect()
      const away = encodeURIComponent(`${other.base}/secret`)
      yield* client.send(frame("c", { upstream: `GET ${backend.base}/hooks/redirect?to=${away}`, id: "r" }))
      assert.strictEqual(
        yield* client.next(),
        errorFrame(403, "UpstreamNotAllowed", `${other.base}/secret is not an allowed upstream target`, "r")
      )
      assert.strictEqual(other.requests.length, 0)
      const inside = encodeURIComponent("/hooks/json")
      yield* client.send(
        frame("c", { upstream: `POST ${backend.base}/hooks/redirect?to=${inside}`, "upstream-reply": "1" }, "b")
      )
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 c\r\nupstream-status:200\r\ncontent-type:application/json\r\n\r\n{\"saved\":\"\"}"
      )
      assert.deepStrictEqual(backend.requests.map((request) => request.url), [
        `/hooks/redirect?to=${away}`,
        `/hooks/redirect?to=${inside}`,
        "/hooks/json"
      ])
    }))

  it.live("301, 302 and 303 continue as GET without a body; 307 and 308 keep the method and body; each hop is signed", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const server = yield* upstreamServer({ allow: [`${backend.base}/hooks/`], secret: "s3cret" })
      const client = yield* server.connect()
      const cases = [[301, "GET", ""], [302, "GET", ""], [303, "GET", ""], [307, "POST", "payload"], [
        308,
        "POST",
        "payload"
      ]] as const
      for (const [status, method, body] of cases) {
        const first = `${backend.base}/hooks/redirect?status=${status}&to=${encodeURIComponent("/hooks/json")}`
        yield* client.send(
          frame("c", { upstream: `POST ${first}`, "upstream-reply": "1", id: String(status) }, "payload")
        )
        assert.strictEqual(
          yield* client.next(),
          `LHTTP/1.0 c\r\nupstream-status:200\r\ncontent-type:application/json\r\nid:${status}\r\n\r\n${
            JSON.stringify({ saved: body })
          }`
        )
        const [redirect, followed] = backend.requests.splice(0)
        assert.deepStrictEqual([redirect!.method, redirect!.body], ["POST", "payload"])
        assert.deepStrictEqual(
          [followed!.method, followed!.url, followed!.body],
          [method, "/hooks/json", body],
          String(status)
        )
        const timestamp = String(followed!.headers[Upstream.AddedHeader.timestamp])
        assert.strictEqual(
          followed!.headers[Upstream.AddedHeader.signature],
          hmac("s3cret", timestamp, method, `${backend.base}/hooks/json`, body)
        )
      }
    }))

  it.live("maxRedirects: that many redirects are followed, one more is refused", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const server = yield* upstreamServer({ allow: [`${backend.base}/hooks/`], maxRedirects: 1 })
      const client = yield* server.connect()
      yield* client.send(frame("c", { upstream: `POST ${backend.base}${redirectChain(1)}`, "upstream-reply": "1" }))
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 c\r\nupstream-status:200\r\ncontent-type:application/json\r\n\r\n{\"saved\":\"\"}"
      )
      backend.requests.length = 0
      yield* client.send(frame("c", { upstream: `POST ${backend.base}${redirectChain(2)}`, id: "far" }))
      assert.strictEqual(yield* client.next(), errorFrame(403, "UpstreamNotAllowed", "more than 1 redirects", "far"))
      // the second redirect was not followed
      assert.deepStrictEqual(backend.requests.map((request) => request.url), [redirectChain(2), redirectChain(1)])
    }))

  it.effect("maxRedirects is 3 by default", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const upstream = yield* NodeUpstream.make({ allow: [`${backend.base}/hooks/`] })
      const response = yield* upstream.call(call("GET", `${backend.base}${redirectChain(3)}`))
      assert.deepStrictEqual([response.status, response.body], [200, "{\"saved\":\"\"}"])
      const error = yield* Effect.flip(upstream.call(call("GET", `${backend.base}${redirectChain(4)}`)))
      assert.deepStrictEqual([error.reason, error.message], ["NotAllowed", "more than 3 redirects"])
    }))

  it.effect("a prefix without a port matches its scheme's default port written out, and no other port", () =>
    Effect.gen(function*() {
      const asked: Array<string> = []
      // every name resolves to the metadata address: a target that passes the allowlist is refused
      // after its lookup, so nothing is ever sent
      const upstream = yield* NodeUpstream.make({
        allow: ["http://plain.test/hooks/", "https://secure.test/hooks/", "http://written.test:80/hooks/"],
        lookup: (hostname) =>
          Effect.sync(() => {
            asked.push(hostname)
            return ["169.254.169.254"]
          })
      })
      const refusal = (url: string) =>
        Effect.flip(upstream.call(call("GET", url))).pipe(Effect.map((error) => error.message))
      for (
        const [url, hostname] of [
          ["http://plain.test:80/hooks/x", "plain.test"],
          ["https://secure.test:443/hooks/x", "secure.test"],
          ["http://written.test/hooks/x", "written.test"]
        ] as const
      ) {
        assert.strictEqual(yield* refusal(url), forbidden(hostname), url)
      }
      for (
        const url of [
          "http://plain.test:8080/hooks/x",
          "http://plain.test:443/hooks/x",
          "https://plain.test/hooks/x",
          "https://secure.test:8443/hooks/x",
          "http://written.test:8080/hooks/x"
        ]
      ) {
        assert.strictEqual(yield* refusal(url), `${url} is not an allowed upstream target`, url)
      }
      assert.deepStrictEqual(asked, ["plain.test", "secure.test", "written.test"])
    }))

  it.live("link-local, unspecified, multicast and reserved addresses are refused even when allowlisted", () =>
    Effect.gen(function*() {
      const targets = [
        ["http://169.254.169.254/latest/meta-data", "169.254.169.254"],
        ["http://0.0.0.0:9/x", "0.0.0.0"],
        ["http://[fe80::1]/x", "[fe80::1]"],
        ["http://[::]/x", "[::]"],
        ["http://224.0.0.1/x", "224.0.0.1"],
        ["http://239.255.255.250:1900/x", "239.255.255.250"],
        ["http://[ff02::1]/x", "[ff02::1]"],
        ["http://240.0.0.1/x", "240.0.0.1"],
        ["http://255.255.255.255/x", "255.255.255.255"],
        ["http://[::ffff:169.254.169.254]/x", "[::ffff:a9fe:a9fe]"]
      ] as const
      // a timeout bounds a call that wrongly went out
      const server = yield* upstreamServer({
        allow: targets.map(([target]) => new URL(target).origin + "/"),
        timeout: "1 second"
      })
      const client = yield* server.connect()
      for (const [target, hostname] of targets) {
        yield* client.send(frame("c", { upstream: `GET ${target}`, id: "a" }))
        assert.strictEqual(
          yield* client.next(),
          errorFrame(403, "UpstreamNotAllowed", forbidden(hostname), "a"),
          target
        )
      }
    }))

  it.live("a host name is resolved and every address checked: one forbidden address refuses the call", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const answers: Record<string, ReadonlyArray<string>> = {
        "meta.test": ["169.254.169.254"],
        "mixed.test": ["127.0.0.1", "fe80::1"],
        "mapped.test": ["127.0.0.1", "::ffff:169.254.169.254"],
        "multicast.test": ["127.0.0.1", "ff02::1"],
        "reserved.test": ["127.0.0.1", "240.0.0.1"],
        "zero.test": ["127.0.0.1", "0.0.0.0"],
        "bogus.test": ["127.0.0.1", "not-an-address"],
        "empty.test": [],
        "ok.test": ["127.0.0.1"]
      }
      const server = yield* upstreamServer({
        allow: [...Object.keys(answers), "failing.test"].map((name) => `http://${name}:${backend.port}/hooks/`),
        lookup: (hostname) => hostname in answers ? Effect.succeed(answers[hostname]!) : Effect.fail("no such host"),
        timeout: "1 second"
      })
      const client = yield* server.connect()
      const target = (name: string) => `POST http://${name}:${backend.port}/hooks/record`
      for (
        const name of [
          "meta.test",
          "mixed.test",
          "mapped.test",
          "multicast.test",
          "reserved.test",
          "zero.test",
          "bogus.test"
        ]
      ) {
        yield* client.send(frame("c", { upstream: target(name), id: "n" }, name))
        assert.strictEqual(yield* client.next(), errorFrame(403, "UpstreamNotAllowed", forbidden(name), "n"), name)
      }
      for (const name of ["empty.test", "failing.test"]) {
        yield* client.send(frame("c", { upstream: target(name), id: "n" }, name))
        assert.strictEqual(
          yield* client.next(),
          errorFrame(502, "UpstreamTransport", `cannot resolve ${name}`, "n"),
          name
        )
      }
      // a marker on the same lane: the only request that reached the backend
      yield* client.send(frame("c", { upstream: target("ok.test"), "upstream-reply": "1" }, "marker"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 c\r\nupstream-status:200\r\n\r\nsaved")
      assert.deepStrictEqual(backend.requests.map((request) => [request.headers.host, request.body]), [
        [`ok.test:${backend.port}`, "marker"]
      ])
    }))
})

describe("Upstream: failures are typed error frames and nothing stalls", () => {
  it.live("backend down, too slow, 500, too large: each its error frame; the connection keeps working meanwhile", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const down = yield* recorder
      down.close()
      const server = yield* upstreamServer({
        allow: [`${backend.base}/hooks/`, `${down.base}/`],
        timeout: "300 millis",
        maxResponseBytes: 100 * 1024
      })
      const client = yield* server.connect()
      yield* client.send(frame("c", { subscribe: "live" }))
      // held at the backend until the timeout: the gate never opens
      yield* client.send(frame("c", { upstream: `POST ${backend.base}/hooks/hold`, id: "slow" }))
      // the waiting call does not hold the connection's other messages: the publish comes back before its answer
      yield* client.send(frame("c", { publish: "live" }, "meanwhile"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 c\r\npublish:live\r\n\r\nmeanwhile")
      assert.strictEqual(
        yield* client.next(),
        errorFrame(504, "UpstreamTimeout", "the backend did not answer within 300ms", "slow")
      )
      yield* client.send(frame("c", { upstream: `POST ${down.base}/x`, id: "down" }))
      assert.strictEqual(
        yield* client.next(),
        errorFrame(502, "UpstreamTransport", `the backend at ${down.base} could not be reached`, "down")
      )
      yield* client.send(frame("c", { upstream: `POST ${backend.base}/hooks/fail`, id: "500" }))
      assert.strictEqual(yield* client.next(), errorFrame(502, "UpstreamStatus", "the backend answered 500", "500"))
      yield* client.send(frame("c", { upstream: `GET ${backend.base}/hooks/big`, id: "big" }))
      assert.strictEqual(
        yield* client.next(),
        errorFrame(502, "UpstreamTooLarge", "the backend's response is over 102400 bytes", "big")
      )
      yield* client.send(frame("c", { publish: "live" }, "still here"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 c\r\npublish:live\r\n\r\nstill here")
    }))

  it.live("one connection's calls run one at a time, in order; past maxInFlight they are refused with 429", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const server = yield* upstreamServer({ allow: [`${backend.base}/hooks/`], maxInFlight: 3 })
      const client = yield* server.connect()
      // each call waits at the backend for the gate, then 50 ms more: calls running together would overlap there
      for (const id of ["1", "2", "3"]) {
        yield* client.send(
          frame("c", { upstream: `POST ${backend.base}/hooks/hold?ms=50`, "upstream-reply": "1", id }, id)
        )
      }
      yield* client.send(frame("c", { upstream: `POST ${backend.base}/hooks/record`, id: "4" }, "4"))
      assert.strictEqual(
        yield* client.next(),
        errorFrame(429, "UpstreamTooMany", "a connection has at most 3 upstream calls in flight", "4")
      )
      backend.open()
      for (const id of ["1", "2", "3"]) {
        assert.strictEqual(yield* client.next(), `LHTTP/1.0 c\r\nupstream-status:200\r\nid:${id}\r\n\r\nheld`)
      }
      assert.deepStrictEqual(backend.requests.map((request) => request.body), ["1", "2", "3"])
      assert.strictEqual(backend.maxInFlight(), 1)
      // once they are done, calls are taken again
      yield* client.send(
        frame("c", { upstream: `POST ${backend.base}/hooks/record`, "upstream-reply": "1", id: "5" }, "5")
      )
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 c\r\nupstream-status:200\r\nid:5\r\n\r\nsaved")
    }))

  it.live("by default: GET, POST, PUT, PATCH and DELETE are allowed, no other method", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const server = yield* upstreamServer({ allow: [`${backend.base}/hooks/`] })
      const client = yield* server.connect()
      for (const method of ["GET", "POST", "PUT", "PATCH", "DELETE"]) {
        yield* client.send(
          frame("c", { upstream: `${method} ${backend.base}/hooks/record`, "upstream-reply": "1", id: method })
        )
        assert.strictEqual(yield* client.next(), `LHTTP/1.0 c\r\nupstream-status:200\r\nid:${method}\r\n\r\nsaved`)
      }
      for (const method of ["OPTIONS", "HEAD", "TRACE", "patch"]) {
        yield* client.send(frame("c", { upstream: `${method} ${backend.base}/hooks/record`, id: method }))
        assert.strictEqual(
          yield* client.next(),
          errorFrame(405, "UpstreamMethodNotAllowed", `the method ${method} is not allowed`, method)
        )
      }
      assert.deepStrictEqual(backend.requests.map((request) => request.method), [
        "GET",
        "POST",
        "PUT",
        "PATCH",
        "DELETE"
      ])
    }))

  it.effect("by default a response of 256 KiB is read whole; one byte more fails TooLarge", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const upstream = yield* NodeUpstream.make({ allow: [`${backend.base}/hooks/`] })
      const fits = yield* upstream.call(call("GET", `${backend.base}/hooks/bytes?n=${256 * 1024}`))
      assert.strictEqual(fits.body.length, 256 * 1024)
      const over = yield* Effect.flip(upstream.call(call("GET", `${backend.base}/hooks/bytes?n=${256 * 1024 + 1}`)))
      assert.deepStrictEqual([over.reason, over.message], [
        "TooLarge",
        `the backend's response is over ${256 * 1024} bytes`
      ])
    }))

  it.live("by default a connection has 16 calls in flight; the 17th is refused with 429", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const server = yield* upstreamServer({ allow: [`${backend.base}/hooks/`] })
      const client = yield* server.connect()
      // the first waits at the backend for the gate, the 15 after it in the connection's lane
      for (let i = 1; i <= 16; i++) {
        yield* client.send(
          frame("c", { upstream: `POST ${backend.base}/hooks/hold`, "upstream-reply": "1", id: `${i}` }, `${i}`)
        )
      }
      yield* client.send(frame("c", { upstream: `POST ${backend.base}/hooks/record`, id: "17" }, "17"))
      assert.strictEqual(
        yield* client.next(),
        errorFrame(429, "UpstreamTooMany", "a connection has at most 16 upstream calls in flight", "17")
      )
      backend.open()
      for (let i = 1; i <= 16; i++) {
        assert.strictEqual(yield* client.next(), `LHTTP/1.0 c\r\nupstream-status:200\r\nid:${i}\r\n\r\nheld`)
      }
      assert.strictEqual(backend.requests.length, 16)
    }))

  it.live("without an allowlist, upstream stays off: 501", () =>
    Effect.gen(function*() {
      const server = yield* startMemoryServer({})
      const client = yield* server.connect()
      yield* client.send(frame("c", { upstream: "POST http://127.0.0.1:1/x", id: "u" }))
      assert.strictEqual(
        yield* client.next(),
        errorFrame(501, "UpstreamNotConfigured", "upstream is not configured on this server", "u")
      )
    }))
})

/** A name no resolver knows: only an injected lookup gives it an address. */
const unresolvable = "upstream.test"

/**
 * An https backend on 127.0.0.1 with a fresh self-signed certificate for
 * `upstream.test`; records the TLS server names asked for.
 */
const tlsBackend = Effect.acquireRelease(
  Effect.callback<{
    readonly port: number
    readonly cert: string
    readonly servernames: Array<string>
    readonly close: () => void
  }>((resume) => {
    const dir = mkdtempSync(join(tmpdir(), "upstream-tls-"))
    execFileSync("openssl", [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      join(dir, "key.pem"),
      "-out",
      join(dir, "cert.pem"),
      "-days",
      "1",
      "-subj",
      `/CN=${unresolvable}`,
      "-addext",
      `subjectAltName=DNS:${unresolvable}`
    ], { stdio: "ignore" })
    const key = readFileSync(join(dir, "key.pem"), "utf8")
    const cert = readFileSync(join(dir, "cert.pem"), "utf8")
    rmSync(dir, { recursive: true, force: true })
    const servernames: Array<string> = []
    const context = createSecureContext({ key, cert })
    const server = createHttpsServer({
      key,
      cert,
      SNICallback: (servername, done) => {
        servernames.push(servername)
        done(null, context)
      }
    }, (_request, response) => response.end("secure"))
    server.on("tlsClientError", () => {})
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      const close = () => {
        server.close()
        server.closeAllConnections()
      }
      resume(Effect.succeed({ port, cert, servernames, close }))
    })
  }),
  (backend) => Effect.sync(backend.close)
)

describe("Upstream: the connection goes to the address that was checked", () => {
  it.live("a name is resolved once per call and the request goes to that answer; a later forbidden answer is refused", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const asked: Array<string> = []
      // the first answer is allowed, every later one is the metadata address
      const lookup = (hostname: string) =>
        Effect.sync(() => {
          asked.push(hostname)
          return asked.length === 1 ? ["127.0.0.1"] : ["169.254.169.254"]
        })
      const target = `http://${unresolvable}:${backend.port}/hooks/json`
      const server = yield* upstreamServer({ allow: [`http://${unresolvable}:${backend.port}/hooks/`], lookup })
      const client = yield* server.connect()
      yield* client.send(frame("c", { upstream: `POST ${target}`, "upstream-reply": "1", id: "1" }, "x"))
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 c\r\nupstream-status:200\r\ncontent-type:application/json\r\nid:1\r\n\r\n{\"saved\":\"x\"}"
      )
      // one lookup for the check; the connection asked no resolver (DNS does not know the name at all)
      assert.deepStrictEqual(asked, [unresolvable])
      assert.strictEqual(backend.requests[0]!.headers.host, `${unresolvable}:${backend.port}`)
      yield* client.send(frame("c", { upstream: `POST ${target}`, id: "2" }, "y"))
      assert.strictEqual(yield* client.next(), errorFrame(403, "UpstreamNotAllowed", forbidden(unresolvable), "2"))
      assert.deepStrictEqual([asked.length, backend.requests.length], [2, 1])
    }))

  it.live("a kept-alive connection is reused only by a call whose own check passed: it goes to the earlier call's checked address", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      // the backend listens on 127.0.0.1 only: a new connection to 127.0.0.2 finds nothing
      const answers: ReadonlyArray<ReadonlyArray<string>> = [["127.0.0.1"], ["127.0.0.2"], ["169.254.169.254"]]
      let asked = 0
      const lookup = () => Effect.sync(() => answers[Math.min(asked++, answers.length - 1)]!)
      const target = `http://${unresolvable}:${backend.port}/hooks/json`
      const server = yield* upstreamServer({ allow: [`http://${unresolvable}:${backend.port}/hooks/`], lookup })
      const client = yield* server.connect()
      const saved = (id: string, body: string) =>
        `LHTTP/1.0 c\r\nupstream-status:200\r\ncontent-type:application/json\r\nid:${id}\r\n\r\n{"saved":"${body}"}`
      yield* client.send(frame("c", { upstream: `POST ${target}`, "upstream-reply": "1", id: "1" }, "x"))
      assert.strictEqual(yield* client.next(), saved("1", "x"))
      // the second check answers 127.0.0.2 (allowed): the connection kept alive from the first call, to
      // 127.0.0.1 (which passed the first call's check), carries it; a new one would have failed
      yield* client.send(frame("c", { upstream: `POST ${target}`, "upstream-reply": "1", id: "2" }, "y"))
      assert.strictEqual(yield* client.next(), saved("2", "y"))
      assert.strictEqual(backend.requests[1]!.remotePort, backend.requests[0]!.remotePort)
      // the third check answers a forbidden address: refused, the kept-alive connection is not used
      yield* client.send(frame("c", { upstream: `POST ${target}`, id: "3" }, "z"))
      assert.strictEqual(yield* client.next(), errorFrame(403, "UpstreamNotAllowed", forbidden(unresolvable), "3"))
      assert.deepStrictEqual([asked, backend.requests.length], [3, 2])
    }))

  it.live("localhost, allowlisted by name, is reached with its name in the Host header", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const server = yield* upstreamServer({ allow: [`http://localhost:${backend.port}/hooks/`] })
      const client = yield* server.connect()
      yield* client.send(
        frame("c", { upstream: `POST http://localhost:${backend.port}/hooks/json`, "upstream-reply": "1" }, "z")
      )
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 c\r\nupstream-status:200\r\ncontent-type:application/json\r\n\r\n{\"saved\":\"z\"}"
      )
      assert.strictEqual(backend.requests[0]!.headers.host, `localhost:${backend.port}`)
    }))

  it.live("https: the TLS server name and the certificate check are the original name's, not the address's", () =>
    Effect.gen(function*() {
      const backend = yield* tlsBackend
      const server = yield* upstreamServer({
        allow: [`https://${unresolvable}:${backend.port}/`, `https://other.test:${backend.port}/`],
        lookup: () => Effect.succeed(["127.0.0.1"]),
        ca: backend.cert
      })
      const client = yield* server.connect()
      yield* client.send(
        frame("c", { upstream: `GET https://${unresolvable}:${backend.port}/x`, "upstream-reply": "1" })
      )
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 c\r\nupstream-status:200\r\n\r\nsecure")
      assert.deepStrictEqual(backend.servernames, [unresolvable])
      // the same address under another name: its certificate is not for that name
      yield* client.send(frame("c", { upstream: `GET https://other.test:${backend.port}/x`, id: "o" }))
      assert.strictEqual(
        yield* client.next(),
        errorFrame(
          502,
          "UpstreamTransport",
          `the backend at https://other.test:${backend.port} could not be reached`,
          "o"
        )
      )
      assert.deepStrictEqual(backend.servernames, [unresolvable, "other.test"])
    }))

  it.effect("the client connects only to pinned hosts, and only to their pinned addresses", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const pins = PinnedClient.makePins()
      const client = yield* PinnedClient.make(pins)
      const get = client.execute(HttpClientRequest.get(`http://${unresolvable}:${backend.port}/hooks/x`)).pipe(
        Effect.flatMap((response) => response.text),
        Effect.scoped
      )
      const unpinned = yield* Effect.flip(get)
      assert.strictEqual(unpinned.reason._tag, "TransportError")
      pins.pin(unresolvable, ["127.0.0.1"])
      assert.strictEqual(yield* get, "saved")
      assert.strictEqual(backend.requests.length, 1)
    }))
})

describe("Upstream: a defect in a call is an error frame, never a crash", () => {
  it.live("a setting that throws: the call answers UpstreamTransport, and the connection's later calls work", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const server = yield* upstreamServer({
        allow: ["http://boom.test/", `${backend.base}/hooks/`],
        lookup: () =>
          Effect.sync((): ReadonlyArray<string> => {
            throw new Error("a resolver bug")
          })
      })
      const client = yield* server.connect()
      yield* client.send(frame("c", { subscribe: "live" }))
      for (const id of ["d1", "d2"]) {
        yield* client.send(frame("c", { upstream: "GET http://boom.test/x", id }))
        assert.strictEqual(yield* client.next(), errorFrame(502, "UpstreamTransport", "the upstream call failed", id))
        yield* client.send(
          frame("c", { upstream: `POST ${backend.base}/hooks/json`, "upstream-reply": "1", id: `ok-${id}` }, id)
        )
        assert.strictEqual(
          yield* client.next(),
          `LHTTP/1.0 c\r\nupstream-status:200\r\ncontent-type:application/json\r\nid:ok-${id}\r\n\r\n{"saved":"${id}"}`
        )
      }
      yield* client.send(frame("c", { publish: "live" }, "still here"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 c\r\npublish:live\r\n\r\nstill here")
    }))

  it.effect("call fails only with UpstreamError: the defect's cause is logged as a warning, without the message", () =>
    Effect.gen(function*() {
      const logged: Array<{ readonly level: string; readonly text: string; readonly cause: Cause.Cause<unknown> }> = []
      const logger = Logger.make(({ cause, logLevel, message }) => {
        logged.push({ level: logLevel, text: String(message), cause })
      })
      const upstream = yield* NodeUpstream.make({
        allow: ["http://boom.test/"],
        lookup: () => Effect.die(new Error("a resolver bug"))
      })
      const exit = yield* upstream.call({ ...call("POST", "http://boom.test/x"), body: "secret body" }).pipe(
        Effect.exit,
        Effect.provide(Logger.layer([logger]))
      )
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        assert.isFalse(Cause.hasDies(exit.cause))
        const error = Cause.squash(exit.cause)
        assert.instanceOf(error, Upstream.UpstreamError)
        assert.strictEqual(error instanceof Upstream.UpstreamError ? error.reason : undefined, "Transport")
      }
      assert.strictEqual(logged.length, 1)
      assert.strictEqual(logged[0]!.level, "Warn")
      assert.isTrue(Cause.hasDies(logged[0]!.cause))
      assert.notInclude(logged[0]!.text, "secret body")
    }))

  it.effect("a response over maxResponseBytes is a typed TooLarge failure, not a defect", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const upstream = yield* NodeUpstream.make({ allow: [`${backend.base}/hooks/`], maxResponseBytes: 1024 })
      const exit = yield* upstream.call(call("GET", `${backend.base}/hooks/big`)).pipe(Effect.exit)
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        assert.isFalse(Cause.hasDies(exit.cause))
        const error = Cause.squash(exit.cause)
        assert.strictEqual(error instanceof Upstream.UpstreamError ? error.reason : undefined, "TooLarge")
      }
    }))
})

describe("Upstream: settings", () => {
  it.effect("an invalid allowlist entry is a typed UpstreamConfigError when the Layer is built", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [string, string]> = [
        ["ftp://x.example/", "is not http or https"],
        ["http://user:pass@x.example/", "has userinfo"],
        ["not a url", "is not a URL"]
      ]
      for (const [entry, problem] of cases) {
        const error = yield* Effect.flip(Layer.build(NodeUpstream.layer({ allow: ["http://ok.example/", entry] })))
        assert.strictEqual(error._tag, "UpstreamConfigError")
        assert.strictEqual(error.reason, "InvalidAllowlist")
        assert.strictEqual(error.message, `upstream allowlist: ${entry} ${problem}`)
      }
    }))

  /** The environment as the main job reads it (empty values count as unset), from a map. */
  const environment = (env: Record<string, string>) => ConfigProvider.layer(ConfigProvider.fromEnv({ env }))

  it.effect("config reads LHTTP_UPSTREAM_ALLOW (comma-separated), _SECRET and _TIMEOUT", () =>
    Effect.gen(function*() {
      const read = yield* NodeUpstream.config.pipe(Effect.provide(environment({
        LHTTP_UPSTREAM_ALLOW: " http://a.example/hooks/ ,,http://b.example:8080/ ",
        LHTTP_UPSTREAM_SECRET: "env-secret",
        LHTTP_UPSTREAM_TIMEOUT: "2 seconds"
      })))
      assert.deepStrictEqual(read.allow, ["http://a.example/hooks/", "http://b.example:8080/"])
      assert.strictEqual(Option.map(read.secret, Redacted.value).pipe(Option.getOrUndefined), "env-secret")
      assert.strictEqual(Option.map(read.timeout, Duration.toMillis).pipe(Option.getOrUndefined), 2000)
      const unset = yield* NodeUpstream.config.pipe(
        Effect.provide(environment({ LHTTP_UPSTREAM_ALLOW: "http://a.example/" }))
      )
      assert.isTrue(Option.isNone(unset.secret) && Option.isNone(unset.timeout))
    }))

  it.effect("layerConfig calls what LHTTP_UPSTREAM_ALLOW allows, signs with _SECRET, times out after _TIMEOUT (5 s unset)", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const build = (env: Record<string, string>) =>
        Layer.build(NodeUpstream.layerConfig).pipe(
          Effect.provide(environment(env)),
          Effect.map((context) => Context.get(context, Upstream.Upstream))
        )
      const configured = yield* build({
        LHTTP_UPSTREAM_ALLOW: `http://other.example/, ${backend.base}/hooks/`,
        LHTTP_UPSTREAM_SECRET: "env-secret",
        LHTTP_UPSTREAM_TIMEOUT: "300 millis"
      })
      yield* configured.call({ ...call("POST", `${backend.base}/hooks/record`), body: "signed" })
      const signed = backend.requests[0]!.headers
      assert.strictEqual(
        signed[Upstream.AddedHeader.signature],
        hmac(
          "env-secret",
          String(signed[Upstream.AddedHeader.timestamp]),
          "POST",
          `${backend.base}/hooks/record`,
          "signed"
        )
      )
      const outside = yield* Effect.flip(configured.call(call("POST", `${backend.base}/admin`)))
      assert.strictEqual(outside.reason, "NotAllowed")
      // the timeouts run on the test clock: the call waits at the backend's closed gate
      const timesOut = (upstream: Upstream.Upstream["Service"], after: Duration.Input) =>
        Effect.gen(function*() {
          const arrived = backend.requests.length + 1
          const fiber = yield* upstream.call(call("GET", `${backend.base}/hooks/hold`)).pipe(
            Effect.flip,
            Effect.forkChild
          )
          yield* backend.arrived(arrived)
          yield* TestClock.adjust(after)
          const error = yield* Fiber.join(fiber)
          return [error.reason, error.message]
        })
      assert.deepStrictEqual(yield* timesOut(configured, "300 millis"), [
        "Timeout",
        "the backend did not answer within 300ms"
      ])
      const defaults = yield* build({ LHTTP_UPSTREAM_ALLOW: `${backend.base}/hooks/`, LHTTP_UPSTREAM_SECRET: "" })
      assert.deepStrictEqual(yield* timesOut(defaults, "5 seconds"), [
        "Timeout",
        "the backend did not answer within 5s"
      ])
      // no secret (an empty one counts as unset): unsigned
      assert.isUndefined(backend.requests.at(-1)!.headers[Upstream.AddedHeader.signature])
      const missing = yield* Effect.flip(build({}))
      assert.strictEqual(missing._tag, "ConfigError")
    }))

  it.effect("layerFromEnv: off without LHTTP_UPSTREAM_ALLOW (or with it empty), on with it, a ConfigError naming it for a bad entry", () =>
    Effect.gen(function*() {
      const build = (env: Record<string, string>) =>
        Layer.build(NodeUpstream.layerFromEnv).pipe(Effect.provide(environment(env)))
      for (const env of [{}, { LHTTP_UPSTREAM_ALLOW: "" }]) {
        const off = yield* build(env)
        assert.isTrue(Option.isNone(Context.getOption(off, Upstream.Upstream)), JSON.stringify(env))
      }
      const on = yield* build({
        LHTTP_UPSTREAM_ALLOW: "http://127.0.0.1:1/hooks/",
        LHTTP_UPSTREAM_TIMEOUT: "2 seconds"
      })
      assert.isTrue(Option.isSome(Context.getOption(on, Upstream.Upstream)))
      const error = yield* Effect.flip(build({ LHTTP_UPSTREAM_ALLOW: "http://127.0.0.1:1/hooks/, file:///etc/passwd" }))
      if (!(error instanceof Config.ConfigError)) return assert.fail(`not a ConfigError: ${String(error)}`)
      assert.strictEqual(
        configErrorLine(error),
        "LHTTP_UPSTREAM_ALLOW: expected comma-separated http or https URL prefixes such as https://api.example.com/hooks/, got \"file:///etc/passwd\" (not http or https)"
      )
    }))

  it.live("the main job (npm start) reads LHTTP_UPSTREAM_ALLOW, _SECRET and _TIMEOUT", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const port = yield* Effect.promise(freePort)
      const program = yield* Effect.acquireRelease(
        Effect.sync(() =>
          start(fileURLToPath(new URL("../src/main.ts", import.meta.url)), {
            env: {
              LHTTP_PORT: String(port),
              LHTTP_HOST: "127.0.0.1",
              LHTTP_UPSTREAM_ALLOW: `${backend.base}/hooks/`,
              LHTTP_UPSTREAM_SECRET: "main-secret",
              LHTTP_UPSTREAM_TIMEOUT: "300 millis"
            }
          })
        ),
        (program) => Effect.promise(() => program.stop())
      )
      yield* Effect.promise(() => program.waitFor(/listening on/, 15_000))
      const client = yield* connect(`ws://127.0.0.1:${port}/`)
      yield* client.send(
        frame("c", { upstream: `POST ${backend.base}/hooks/json`, "upstream-reply": "1", id: "1" }, "hi")
      )
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 c\r\nupstream-status:200\r\ncontent-type:application/json\r\nid:1\r\n\r\n{\"saved\":\"hi\"}"
      )
      const headers = backend.requests[0]!.headers
      assert.strictEqual(
        headers[Upstream.AddedHeader.signature],
        hmac("main-secret", String(headers[Upstream.AddedHeader.timestamp]), "POST", `${backend.base}/hooks/json`, "hi")
      )
      yield* client.send(frame("c", { upstream: `POST ${backend.base}/admin`, id: "2" }))
      assert.strictEqual(
        yield* client.next(),
        errorFrame(403, "UpstreamNotAllowed", `${backend.base}/admin is not an allowed upstream target`, "2")
      )
      yield* client.send(frame("c", { upstream: `POST ${backend.base}/hooks/hold`, id: "3" }))
      assert.strictEqual(
        yield* client.next(),
        errorFrame(504, "UpstreamTimeout", "the backend did not answer within 300ms", "3")
      )
    }))
})

describe("Upstream: the service module is platform-neutral", () => {
  it("src/Upstream.ts and every module it loads import nothing Node-only", () => {
    const seen = new Set<string>()
    const visit = (file: URL) => {
      if (seen.has(file.href)) return
      seen.add(file.href)
      const source = readFileSync(file, "utf8")
      for (const [, specifier] of source.matchAll(/^import\s[^;]*?from\s+"([^"]+)"/gms)) {
        if (specifier!.startsWith(".")) visit(new URL(specifier!, file))
        else assert.match(specifier!, /^effect(\/|$)/, `${file.pathname} imports ${specifier}`)
      }
    }
    visit(new URL("../src/Upstream.ts", import.meta.url))
    assert.isAbove(seen.size, 1)
  })
})
