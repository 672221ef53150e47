/**
 * The operator's page's server side (`/admin`, docs/operations.md): off
 * without a password; the login (wrong password, another origin, the
 * lockout after repeated failures, the cookie's attributes); the state
 * stream moving as connections open; the actions, same-origin only, on real
 * connections; the live tail; a cookie another node with the same password
 * takes, a forged one refused.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Connection from "../src/Connection.ts"
import type * as LhttpServer from "../src/LhttpServer.ts"
import type * as Transport from "../src/Transport.ts"
import { connect, frame, startServer } from "./utils/lhttp.ts"
import { until } from "./utils/wait.ts"

const password = "correct horse battery"

/** A request to the test server: status, headers, body. */
const send = (url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}) =>
  Effect.promise(async () => {
    const response = await fetch(url, { ...init, redirect: "manual" })
    return { status: response.status, headers: response.headers, body: await response.text() }
  })

const login = (http: string, given = password, origin = http) =>
  send(`${http}/admin/login`, {
    method: "POST",
    headers: { origin, "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ password: given }).toString()
  })

/** The session cookie of a successful login. */
const session = (http: string) =>
  Effect.map(login(http), (answer) => {
    assert.strictEqual(answer.status, 303, answer.body)
    return answer.headers.get("set-cookie")!.split(";")[0]!
  })

const act = (http: string, cookie: string, operation: string, request: unknown, origin: string | null = http) =>
  Effect.map(
    send(`${http}/admin/api/${operation}`, {
      method: "POST",
      headers: { cookie, "content-type": "application/json", ...(origin === null ? {} : { origin }) },
      body: JSON.stringify(request)
    }),
    (answer) => ({ status: answer.status, json: JSON.parse(answer.body) as Record<string, unknown> })
  )

interface Events {
  readonly status: number
  readonly next: Effect.Effect<{ readonly event: string; readonly data: string }>
  readonly request: Http.ClientRequest
}

/** The events of an event stream (`GET <url>` with the cookie), until the scope closes. */
const events = (url: string, cookie: string) =>
  Effect.acquireRelease(
    Effect.callback<Events>((resume) => {
      const request = Http.get(url, { headers: { cookie } }, (response) => {
        const queue: Array<{ event: string; data: string }> = []
        const waiting: Array<(item: { event: string; data: string }) => void> = []
        let buffer = ""
        response.setEncoding("utf8")
        response.on("data", (chunk: string) => {
          buffer += chunk
          let end: number
          while ((end = buffer.indexOf("\n\n")) !== -1) {
            const block = buffer.slice(0, end)
            buffer = buffer.slice(end + 2)
            const item = {
              event: /^event: (.*)$/m.exec(block)?.[1] ?? "message",
              data: /^data: (.*)$/m.exec(block)?.[1] ?? ""
            }
            const waiter = waiting.shift()
            if (waiter) waiter(item)
            else queue.push(item)
          }
        })
        resume(Effect.succeed({
          status: response.statusCode ?? 0,
          request,
          next: Effect.callback((resumeNext) => {
            const item = queue.shift()
            if (item !== undefined) return resumeNext(Effect.succeed(item))
            waiting.push((value) => resumeNext(Effect.succeed(value)))
          })
        }))
      })
    }),
    (stream) => Effect.sync(() => stream.request.destroy())
  )

// each connection's user from its URL (`?user=`), as an authenticate hook would from a token
const authenticate = (peer: Transport.Peer, data: LhttpServer.Admission) =>
  Effect.sync(() => {
    const user = new URL(peer.url, "http://localhost").searchParams.get("user")
    if (user !== null) data.set(Connection.user, user)
  })

describe("Admin: the page's assets", () => {
  it(
    "admin.js and admin.css are a fresh build of src/admin/ and uPlot (npm run build:admin), importing nothing",
    () => {
      const root = Path.join(import.meta.dirname, "..")
      const out = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-lhttp-admin-"))
      try {
        const built = ChildProcess.spawnSync(process.execPath, [Path.join(root, "scripts", "build-admin.mjs"), out], {
          encoding: "utf8"
        })
        assert.strictEqual(built.status, 0, built.stderr)
        for (const name of ["admin.js", "admin.css"]) {
          const committed = Fs.readFileSync(Path.join(root, "src", "admin", name), "utf8")
          const fresh = Fs.readFileSync(Path.join(out, name), "utf8")
          assert.isTrue(committed === fresh, `src/admin/${name} is not the build's: run \`npm run build:admin\``)
        }
        assert.notMatch(Fs.readFileSync(Path.join(out, "admin.js"), "utf8"), /^\s*import\b|\brequire\(/m)
      } finally {
        Fs.rmSync(out, { recursive: true, force: true })
      }
    },
    60_000
  )
})

describe("Admin: the door", () => {
  it.live("off without a password (nor an API key): 404, whoever asks", () =>
    Effect.gen(function*() {
      const { http } = yield* startServer({})
      assert.strictEqual((yield* send(`${http}/admin`)).status, 404)
      assert.strictEqual((yield* login(http)).status, 404)
    }))

  it.live("the login: a wrong password 401, another origin 403, then the cookie: HttpOnly, SameSite=Strict, expiring", () =>
    Effect.gen(function*() {
      const { http } = yield* startServer({ adminPassword: password })
      const page = yield* send(`${http}/admin`)
      assert.strictEqual(page.status, 200)
      assert.include(page.body, "<body class=\"signed-out\">")
      assert.strictEqual(page.headers.get("x-frame-options"), "DENY")
      assert.include(page.headers.get("content-security-policy")!, "default-src 'self'")
      assert.strictEqual((yield* login(http, "wrong password")).status, 401)
      assert.strictEqual((yield* login(http, password, "https://evil.example")).status, 403)
      const answer = yield* login(http)
      assert.strictEqual(answer.status, 303)
      assert.strictEqual(answer.headers.get("location"), "/admin")
      const cookie = answer.headers.get("set-cookie")!
      assert.match(cookie, /^lhttp_admin=[^;]+; HttpOnly; SameSite=Strict; Path=\/admin; Max-Age=28800$/)
      // behind a TLS proxy that says so, the cookie is Secure too
      const behindTls = yield* send(`${http}/admin/login`, {
        method: "POST",
        headers: { origin: http, "x-forwarded-proto": "https", "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ password }).toString()
      })
      assert.match(behindTls.headers.get("set-cookie")!, /; Secure$/)
      const signedIn = yield* send(`${http}/admin`, { headers: { cookie: cookie.split(";")[0]! } })
      assert.notInclude(signedIn.body, "signed-out")
      // the password never in a URL: a GET of the login only sends back to the page
      assert.strictEqual((yield* send(`${http}/admin/login?password=${encodeURIComponent(password)}`)).status, 302)
    }))

  it.live("a login body past 4 KiB without a length (chunked) is read as no password: 401, nothing buffered", () =>
    Effect.gen(function*() {
      const { http } = yield* startServer({ adminPassword: password })
      const status = yield* Effect.promise(() =>
        new Promise<number>((resolve, reject) => {
          const request = Http.request(`${http}/admin/login`, {
            method: "POST",
            headers: { origin: http, "content-type": "application/x-www-form-urlencoded" }
          }, (response) => {
            response.resume()
            resolve(response.statusCode ?? 0)
          })
          request.on("error", reject)
          request.write(`password=${encodeURIComponent(password)}&`)
          for (let i = 0; i < 64; i++) request.write(`x${i}=${"y".repeat(1024)}&`)
          request.end()
        })
      )
      assert.strictEqual(status, 401)
    }))

  it.live("five failed logins from an address lock it out (429 with Retry-After), the right password included", () =>
    Effect.gen(function*() {
      const { http } = yield* startServer({ adminPassword: password })
      for (let i = 0; i < 5; i++) assert.strictEqual((yield* login(http, `guess ${i}`)).status, 401)
      const locked = yield* login(http)
      assert.strictEqual(locked.status, 429)
      assert.isAbove(Number(locked.headers.get("retry-after")), 800)
    }))

  it.live("the API key is the password without LHTTP_ADMIN_PASSWORD; a forged or expired cookie is 401", () =>
    Effect.gen(function*() {
      const { http } = yield* startServer({ apiKey: "the-api-key-of-this-node" })
      assert.strictEqual((yield* login(http, "the-api-key-of-this-node")).status, 303)
      const forged = `lhttp_admin=${Date.now() + 60_000}.AAAA.${"A".repeat(43)}`
      assert.strictEqual((yield* send(`${http}/admin/stream`, { headers: { cookie: forged } })).status, 401)
      assert.strictEqual((yield* act(http, forged, "info", {})).status, 401)
    }))

  it.live("a login on one node is taken by another with the same password (the cookie is signed, not stored)", () =>
    Effect.gen(function*() {
      const one = yield* startServer({ adminPassword: password })
      const two = yield* startServer({ adminPassword: password })
      const other = yield* startServer({ adminPassword: "another password entirely" })
      const cookie = yield* session(one.http)
      assert.strictEqual((yield* act(two.http, cookie, "info", {})).status, 200)
      assert.strictEqual((yield* act(other.http, cookie, "info", {})).status, 401)
    }))
})

describe("Admin: what the page shows and does", () => {
  it.live("the state stream: the nodes and the busiest channels, every second, moving as connections come", () =>
    Effect.gen(function*() {
      const { http, url } = yield* startServer({ adminPassword: password })
      const cookie = yield* session(http)
      const stream = yield* events(`${http}/admin/stream`, cookie)
      assert.strictEqual(stream.status, 200)
      const first = yield* stream.next
      assert.strictEqual(first.event, "state")
      assert.strictEqual(JSON.parse(first.data).nodes[0].connections, 0)
      const client = yield* connect(url)
      yield* client.send(frame("join", { subscribe: "room" }))
      yield* client.nothing()
      yield* until(Effect.map(stream.next, (event) => {
        const state = JSON.parse(event.data)
        return state.nodes[0].connections === 1 &&
          state.channels.some((channel: { name: string; subscribers: number }) =>
            channel.name === "room" && channel.subscribers === 1
          )
      }))
    }))

  it.live("actions: same-origin only; publish reaches a subscriber, disconnect closes a real connection; the tail shows a frame", () =>
    Effect.gen(function*() {
      const { http, url } = yield* startServer({ adminPassword: password, authenticate })
      const cookie = yield* session(http)
      const client = yield* connect(`${url}/?user=carol`)
      yield* client.send(frame("join", { subscribe: "room" }))
      yield* client.nothing()
      const tail = yield* events(`${http}/admin/tail?channel=room`, cookie)
      assert.strictEqual((yield* tail.next).event, "tailing")
      assert.strictEqual((yield* act(http, cookie, "publish", { channel: "room", command: "x" }, null)).status, 403)
      assert.strictEqual(
        (yield* act(http, cookie, "publish", { channel: "room", command: "x" }, "https://evil.example")).status,
        403
      )
      assert.strictEqual((yield* act(http, cookie, "batch", { commands: [] })).status, 404)
      const published = yield* act(http, cookie, "publish", { channel: "room", command: "notice", body: "hello" })
      assert.strictEqual(published.status, 200)
      assert.strictEqual(yield* client.next(), "LHTTP/1.0 notice\r\npublish:room\r\n\r\nhello")
      const tailed = yield* tail.next
      assert.strictEqual(tailed.event, "frame")
      assert.strictEqual(JSON.parse(tailed.data).text, "LHTTP/1.0 notice\r\npublish:room\r\n\r\nhello")
      const disconnected = yield* act(http, cookie, "disconnect", { user: "carol", reason: "maintenance" })
      assert.deepStrictEqual(disconnected.json, { disconnected: 1, complete: true })
      assert.deepStrictEqual(yield* client.closed, { code: 4500, reason: "maintenance" })
    }))
})
