import { assert, describe, it } from "@effect/vitest"
import { Cause, ConfigProvider, Context, Effect, Exit, Layer, Logger, Option } from "effect"
import { HttpClientRequest } from "effect/http"
import { execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { createServer, type IncomingHttpHeaders } from "node:http"
import { createServer as createHttpsServer } from "node:https"
import { tmpdir } from "node:os"
import { createSecureContext } from "node:tls"
import { join } from "node:path"
import * as PinnedClient from "../src/internal/upstream/client.ts"
import * as NodeUpstream from "../src/NodeUpstream.ts"
import * as Upstream from "../src/Upstream.ts"
import { connect, frame, startServer } from "./utils/lhttp.ts"
import { eventually } from "./utils/wait.ts"

interface Recorded {
  readonly method: string
  readonly url: string
  readonly headers: IncomingHttpHeaders
  readonly body: string
}

/** A real HTTP backend that records every request; its paths choose how it answers. */
const recorder = Effect.acquireRelease(
  Effect.callback<{
    readonly port: number
    readonly base: string
    readonly requests: Array<Recorded>
    /** Stops answering: later calls find nothing listening. */
    readonly close: () => void
  }>((resume) => {
    const requests: Array<Recorded> = []
    const server = createServer((request, response) => {
      let body = ""
      request.setEncoding("utf8")
      request.on("data", (chunk) => (body += chunk))
      request.on("end", () => {
        requests.push({ method: request.method!, url: request.url!, headers: request.headers, body })
        const path = request.url!.split("?")[0]
        const query = new URLSearchParams(request.url!.split("?")[1] ?? "")
        switch (path) {
          case "/hooks/slow":
            return setTimeout(() => response.end("late"), Number(query.get("ms") ?? 2000))
          case "/hooks/fail":
            response.statusCode = 500
            return response.end("broken")
          case "/hooks/big":
            return response.end("b".repeat(300 * 1024))
          case "/hooks/redirect":
            response.statusCode = 302
            response.setHeader("location", query.get("to")!)
            return response.end()
          case "/hooks/json":
            response.setHeader("content-type", "application/json")
            return response.end(JSON.stringify({ saved: body }))
          default:
            return response.end("saved")
        }
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      const close = () => {
        server.close()
        server.closeAllConnections()
      }
      resume(Effect.succeed({ port, base: `http://127.0.0.1:${port}`, requests, close }))
    })
  }),
  (recorded) => Effect.sync(recorded.close)
)

const upstreamServer = (options: NodeUpstream.Options) => startServer({}, NodeUpstream.layer(options))

describe("Upstream: what the backend receives", () => {
  it.live("POST sends the LHTTP body, the allowed headers, the connection and command, and a signature", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const { url } = yield* upstreamServer({ allow: [`${backend.base}/hooks/`], secret: "s3cret" })
      const client = yield* connect(url)
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
      yield* eventually(() => backend.requests.length === 1)
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
      const timestamp = String(headers[Upstream.AddedHeader.timestamp])
      const expected = NodeUpstream.sign("s3cret", timestamp, "POST", `${backend.base}/hooks/record?room=1`, request!.body)
      assert.strictEqual(headers[Upstream.AddedHeader.signature], `sha256=${expected}`)
      yield* client.nothing()
    }))

  it.live("GET sends no body", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const { url } = yield* upstreamServer({ allow: [`${backend.base}/hooks`] })
      const client = yield* connect(url)
      yield* client.send(frame("report", { upstream: `GET ${backend.base}/hooks/reports?id=1` }, "ignored body"))
      yield* eventually(() => backend.requests.length === 1)
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
      const { url } = yield* upstreamServer({ allow: [`${backend.base}/hooks/`] })
      const alice = yield* connect(url)
      const bob = yield* connect(url)
      yield* bob.send(frame("chat", { subscribe: "room" }))
      yield* Effect.sleep("50 millis")
      const message = frame("chat", { publish: "room", upstream: `POST ${backend.base}/hooks/chat-records` }, "hi bob")
      yield* alice.send(message)
      assert.strictEqual(yield* bob.next(), message)
      yield* eventually(() => backend.requests.length === 1)
      assert.deepStrictEqual([backend.requests[0]!.url, backend.requests[0]!.body], ["/hooks/chat-records", "hi bob"])
    }))

  it.live("reply mode: the backend's response comes back as a frame", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const { url } = yield* upstreamServer({ allow: [`${backend.base}/hooks/`] })
      const client = yield* connect(url)
      yield* client.send(frame("save", { upstream: `POST ${backend.base}/hooks/json`, "upstream-reply": "1", id: "r1" }, "x"))
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 save\r\nupstream-status:200\r\ncontent-type:application/json\r\nid:r1\r\n\r\n{\"saved\":\"x\"}"
      )
    }))
})

describe("Upstream: SSRF attempts are refused without a request", () => {
  it.live("targets outside the allowlist, other ports and schemes, file:, userinfo, traversal, bad URLs", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const other = yield* recorder
      const { url } = yield* upstreamServer({ allow: [`${backend.base}/hooks/`] })
      const client = yield* connect(url)
      const attempts: ReadonlyArray<readonly [string, string]> = [
        [`POST ${backend.base}/admin`, "UpstreamNotAllowed"],
        [`POST ${backend.base}/hooks-evil/x`, "UpstreamNotAllowed"],
        [`POST ${backend.base}/hooks/../admin`, "UpstreamNotAllowed"],
        [`POST ${other.base}/hooks/x`, "UpstreamNotAllowed"],
        [`POST https://127.0.0.1:${backend.port}/hooks/x`, "UpstreamNotAllowed"],
        [`POST http://localhost:${backend.port}/hooks/x`, "UpstreamNotAllowed"],
        ["GET file:///etc/passwd", "UpstreamNotAllowed"],
        [`POST http://127.0.0.1:${backend.port}@127.0.0.1:${other.port}/hooks/x`, "UpstreamNotAllowed"],
        [`POST http://user:pass@127.0.0.1:${backend.port}/hooks/x`, "UpstreamNotAllowed"],
        ["POST http://[::1", "UpstreamInvalidTarget"],
        ["POST not-a-url", "UpstreamInvalidTarget"],
        [`TRACE ${backend.base}/hooks/x`, "UpstreamMethodNotAllowed"]
      ]
      for (const [target, reason] of attempts) {
        yield* client.send(frame("c", { upstream: target, id: "s" }))
        const answer = yield* client.next()
        assert.match(answer, new RegExp(`^LHTTP/1\\.0 error\\r\\nstatus:\\d{3}\\r\\nreason:${reason}\\r\\nid:s\\r\\n`), target)
      }
      yield* Effect.sleep("100 millis")
      assert.deepStrictEqual([backend.requests.length, other.requests.length], [0, 0])
    }))

  it.live("a redirect to a disallowed target is not followed; one to an allowed target is", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const other = yield* recorder
      const { url } = yield* upstreamServer({ allow: [`${backend.base}/hooks/`] })
      const client = yield* connect(url)
      const away = encodeURIComponent(`${other.base}/secret`)
      yield* client.send(frame("c", { upstream: `GET ${backend.base}/hooks/redirect?to=${away}`, id: "r" }))
      assert.match(yield* client.next(), /^LHTTP\/1\.0 error\r\nstatus:403\r\nreason:UpstreamNotAllowed\r\nid:r\r\n/)
      assert.strictEqual(other.requests.length, 0)
      const inside = encodeURIComponent("/hooks/json")
      yield* client.send(frame("c", { upstream: `POST ${backend.base}/hooks/redirect?to=${inside}`, "upstream-reply": "1" }, "b"))
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

  it.live("link-local and metadata addresses are refused even when allowlisted", () =>
    Effect.gen(function*() {
      const { url } = yield* upstreamServer({ allow: ["http://169.254.169.254/", "http://0.0.0.0:9/", "http://[fe80::1]/"] })
      const client = yield* connect(url)
      for (const target of ["http://169.254.169.254/latest/meta-data", "http://0.0.0.0:9/x", "http://[fe80::1]/x"]) {
        yield* client.send(frame("c", { upstream: `GET ${target}` }))
        assert.match(yield* client.next(), /reason:UpstreamNotAllowed\r\n\r\n.*link-local, unspecified or multicast/, target)
      }
    }))
})

describe("Upstream: failures are typed error frames and nothing stalls", () => {
  it.live("backend down, too slow, 500, too large: each its error frame; the connection keeps working meanwhile", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const down = yield* recorder
      down.close()
      const { url } = yield* upstreamServer({
        allow: [`${backend.base}/hooks/`, `${down.base}/`],
        timeout: "500 millis",
        maxResponseBytes: 100 * 1024
      })
      const client = yield* connect(url)
      yield* client.send(frame("c", { subscribe: "live" }))
      yield* client.send(frame("c", { upstream: `POST ${backend.base}/hooks/slow?ms=3000`, id: "slow" }))
      // the slow call does not hold the connection's other messages
      yield* client.send(frame("c", { publish: "live" }, "meanwhile"))
      assert.strictEqual(yield* client.next("300 millis"), "LHTTP/1.0 c\r\npublish:live\r\n\r\nmeanwhile")
      assert.match(yield* client.next(), /^LHTTP\/1\.0 error\r\nstatus:504\r\nreason:UpstreamTimeout\r\nid:slow\r\n/)
      yield* client.send(frame("c", { upstream: `POST ${down.base}/x`, id: "down" }))
      assert.match(yield* client.next(), /^LHTTP\/1\.0 error\r\nstatus:502\r\nreason:UpstreamTransport\r\nid:down\r\n/)
      yield* client.send(frame("c", { upstream: `POST ${backend.base}/hooks/fail`, id: "500" }))
      assert.match(yield* client.next(), /^LHTTP\/1\.0 error\r\nstatus:502\r\nreason:UpstreamStatus\r\nid:500\r\n\r\nthe backend answered 500/)
      yield* client.send(frame("c", { upstream: `GET ${backend.base}/hooks/big`, id: "big" }))
      assert.match(yield* client.next(), /^LHTTP\/1\.0 error\r\nstatus:502\r\nreason:UpstreamTooLarge\r\nid:big\r\n/)
      yield* client.send(frame("c", { publish: "live" }, "still here"))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 c\r\npublish:live\r\n\r\nstill here")
    }))

  it.live("one connection's calls run in order; past maxInFlight they are refused with 429", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const { url } = yield* upstreamServer({ allow: [`${backend.base}/hooks/`], maxInFlight: 3 })
      const client = yield* connect(url)
      yield* client.send(frame("c", { upstream: `POST ${backend.base}/hooks/slow?ms=300` }, "1"))
      yield* client.send(frame("c", { upstream: `POST ${backend.base}/hooks/record` }, "2"))
      yield* client.send(frame("c", { upstream: `POST ${backend.base}/hooks/record` }, "3"))
      yield* client.send(frame("c", { upstream: `POST ${backend.base}/hooks/record`, id: "4" }, "4"))
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 error\r\nstatus:429\r\nreason:UpstreamTooMany\r\nid:4\r\n\r\na connection has at most 3 upstream calls in flight"
      )
      yield* eventually(() => backend.requests.length === 3)
      assert.deepStrictEqual(backend.requests.map((request) => request.body), ["1", "2", "3"])
      // once they are done, calls are taken again
      yield* client.send(frame("c", { upstream: `POST ${backend.base}/hooks/record` }, "5"))
      yield* eventually(() => backend.requests.length === 4)
    }))

  it.live("without an allowlist, upstream stays off: 501", () =>
    Effect.gen(function*() {
      const { url } = yield* startServer({})
      const client = yield* connect(url)
      yield* client.send(frame("c", { upstream: "POST http://127.0.0.1:1/x" }))
      assert.match(yield* client.next(), /^LHTTP\/1\.0 error\r\nstatus:501\r\nreason:UpstreamNotConfigured\r\n/)
    }))
})

/** A name no resolver knows: only an injected lookup gives it an address. */
const unresolvable = "upstream.test"

/** An https backend on 127.0.0.1 with a fresh self-signed certificate for `upstream.test`; records the TLS server names asked for. */
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
      const { url } = yield* upstreamServer({ allow: [`http://${unresolvable}:${backend.port}/hooks/`], lookup })
      const client = yield* connect(url)
      yield* client.send(frame("c", { upstream: `POST ${target}`, "upstream-reply": "1", id: "1" }, "x"))
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 c\r\nupstream-status:200\r\ncontent-type:application/json\r\nid:1\r\n\r\n{\"saved\":\"x\"}"
      )
      // one lookup for the check; the connection asked no resolver (DNS does not know the name at all)
      assert.deepStrictEqual(asked, [unresolvable])
      assert.strictEqual(backend.requests[0]!.headers.host, `${unresolvable}:${backend.port}`)
      yield* client.send(frame("c", { upstream: `POST ${target}`, id: "2" }, "y"))
      assert.match(yield* client.next(), /^LHTTP\/1\.0 error\r\nstatus:403\r\nreason:UpstreamNotAllowed\r\nid:2\r\n/)
      assert.deepStrictEqual([asked.length, backend.requests.length], [2, 1])
    }))

  it.live("localhost, allowlisted by name, is reached with its name in the Host header", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const { url } = yield* upstreamServer({ allow: [`http://localhost:${backend.port}/hooks/`] })
      const client = yield* connect(url)
      yield* client.send(frame("c", { upstream: `POST http://localhost:${backend.port}/hooks/json`, "upstream-reply": "1" }, "z"))
      assert.strictEqual(
        yield* client.next(),
        "LHTTP/1.0 c\r\nupstream-status:200\r\ncontent-type:application/json\r\n\r\n{\"saved\":\"z\"}"
      )
      assert.strictEqual(backend.requests[0]!.headers.host, `localhost:${backend.port}`)
    }))

  it.live("https: the TLS server name and the certificate check are the original name's, not the address's", () =>
    Effect.gen(function*() {
      const backend = yield* tlsBackend
      const { url } = yield* upstreamServer({
        allow: [`https://${unresolvable}:${backend.port}/`, `https://other.test:${backend.port}/`],
        lookup: () => Effect.succeed(["127.0.0.1"]),
        ca: backend.cert
      })
      const client = yield* connect(url)
      yield* client.send(frame("c", { upstream: `GET https://${unresolvable}:${backend.port}/x`, "upstream-reply": "1" }))
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 c\r\nupstream-status:200\r\n\r\nsecure")
      assert.deepStrictEqual(backend.servernames, [unresolvable])
      // the same address under another name: its certificate is not for that name
      yield* client.send(frame("c", { upstream: `GET https://other.test:${backend.port}/x`, id: "o" }))
      assert.match(yield* client.next(), /^LHTTP\/1\.0 error\r\nstatus:502\r\nreason:UpstreamTransport\r\nid:o\r\n/)
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

const call = (method: string, url: string): Upstream.Call => ({
  method,
  url,
  body: "",
  headers: new Map(),
  connectionId: "c-1",
  command: "c"
})

describe("Upstream: a defect in a call is an error frame, never a crash", () => {
  it.live("a setting that throws: the call answers UpstreamTransport, and the connection's later calls work", () =>
    Effect.gen(function*() {
      const backend = yield* recorder
      const { url } = yield* upstreamServer({
        allow: ["http://boom.test/", `${backend.base}/hooks/`],
        lookup: () =>
          Effect.sync((): ReadonlyArray<string> => {
            throw new Error("a resolver bug")
          })
      })
      const client = yield* connect(url)
      yield* client.send(frame("c", { subscribe: "live" }))
      for (const id of ["d1", "d2"]) {
        yield* client.send(frame("c", { upstream: "GET http://boom.test/x", id }))
        assert.match(
          yield* client.next(),
          new RegExp(`^LHTTP/1\\.0 error\\r\\nstatus:502\\r\\nreason:UpstreamTransport\\r\\nid:${id}\\r\\n\\r\\nthe upstream call failed$`)
        )
        yield* client.send(frame("c", { upstream: `POST ${backend.base}/hooks/json`, "upstream-reply": "1", id: `ok-${id}` }, id))
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

  it.effect("layerFromEnv: off without LHTTP_UPSTREAM_ALLOW, on with it, a typed error for a bad entry", () =>
    Effect.gen(function*() {
      const build = (env: Record<string, string>) =>
        Layer.build(NodeUpstream.layerFromEnv).pipe(
          Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env)))
        )
      const off = yield* build({})
      assert.isTrue(Option.isNone(Context.getOption(off, Upstream.Upstream)))
      const on = yield* build({ LHTTP_UPSTREAM_ALLOW: "http://127.0.0.1:1/hooks/", LHTTP_UPSTREAM_TIMEOUT: "2 seconds" })
      assert.isTrue(Option.isSome(Context.getOption(on, Upstream.Upstream)))
      const error = yield* Effect.flip(build({ LHTTP_UPSTREAM_ALLOW: "http://127.0.0.1:1/hooks/, file:///etc/passwd" }))
      assert.strictEqual(error._tag, "UpstreamConfigError")
      assert.strictEqual(error.message, "upstream allowlist: file:///etc/passwd is not http or https")
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
