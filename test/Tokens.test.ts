/**
 * JWT connection and subscription tokens on the Node server: a token in the
 * URL, the `authorization` header or the first message; each algorithm
 * family; a JWKS served by a real HTTP server, its keys rotated; refused
 * tokens answered 401 before any connection exists; `channels` and `info`;
 * the refresh frame and the close at `exp` over WebSocket, SSE and
 * long-poll; subscription tokens for private channels; user-limited
 * channels; the main job's `LHTTP_JWT_*`.
 */
import { NodeWS } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Result, Stream } from "effect"
import * as Jose from "jose"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { fileURLToPath } from "node:url"
import WebSocket from "ws"
import * as Connection from "../src/Connection.ts"
import * as Frame from "../src/Frame.ts"
import * as LhttpClient from "../src/LhttpClient.ts"
import type * as Tokens from "../src/Tokens.ts"
import { getJson, send, sse } from "./utils/http.ts"
import { connect, frame, request, startServer } from "./utils/lhttp.ts"
import { freePort, run, start } from "./utils/process.ts"
import { until } from "./utils/wait.ts"

const secret = "a-secret-of-at-least-32-bytes-long!!"
const secretKey = new TextEncoder().encode(secret)

/** A token signed with `key` by `alg`, for `sub`, with more claims; `exp` in seconds from now unless given. */
const sign = (
  key: Jose.CryptoKey | Uint8Array,
  alg: string,
  claims: Jose.JWTPayload & Record<string, unknown>,
  header: Partial<Jose.JWTHeaderParameters> = {}
) => Effect.promise(() => new Jose.SignJWT(claims).setProtectedHeader({ alg, ...header }).sign(key))

const hs = (claims: Jose.JWTPayload & Record<string, unknown>) => sign(secretKey, "HS256", claims)

const now = () => Math.floor(Date.now() / 1000)

const headerOf = (text: string, name: string) => Result.getOrThrow(Frame.parse(text)).headers.get(name)

/** The status and body a WebSocket upgrade was answered with when it was refused. */
const refusedUpgrade = (url: string) =>
  Effect.callback<{ status: number; body: string }, Error>((resume) => {
    const ws = new WebSocket(url)
    ws.on("open", () => {
      ws.terminate()
      resume(Effect.fail(new Error("the upgrade was accepted")))
    })
    ws.on("unexpected-response", (_request, response) => {
      let body = ""
      response.on("data", (chunk) => body += String(chunk))
      response.on("end", () => resume(Effect.succeed({ status: response.statusCode ?? 0, body })))
    })
    ws.on("error", () => {})
  })

const server = (tokens: Tokens.Options, more: { readonly userLimitedChannels?: boolean } = {}) =>
  startServer({ tokens, ...more })

describe("Tokens: connection tokens", () => {
  it.live("a token in ?token=, in the authorization header, or as the first message: its sub is the user", () =>
    Effect.gen(function*() {
      const { server: lhttp, url } = yield* server({ secret })
      const token = yield* hs({ sub: "alice", exp: now() + 60 })
      const byUrl = yield* connect(`${url}/?token=${token}`)
      yield* byUrl.nothing()
      const byHeader = yield* connect(url, { headers: { authorization: `Bearer ${token}` } })
      yield* byHeader.nothing()
      assert.strictEqual(lhttp.connectionsOf("alice").length, 2)
      const byMessage = yield* connect(url)
      yield* byMessage.send(frame("token", { id: "t" }, token))
      const answer = yield* byMessage.next()
      assert.strictEqual(headerOf(answer, "id"), "t")
      assert.strictEqual(headerOf(answer, "user"), "alice")
      assert.approximately(Number(headerOf(answer, "expires")), (now() + 60) * 1000, 2000)
      yield* byMessage.nothing()
      assert.strictEqual(lhttp.connectionsOf("alice").length, 3)
    }))

  it.live("without a token, a first message that is not one is refused 401 TokenMissing and closes 1008", () =>
    Effect.gen(function*() {
      const { server: lhttp, url } = yield* server({ secret })
      const client = yield* connect(url)
      yield* client.send(frame("chat", { id: "c", publish: "room" }, "hi"))
      const refused = yield* client.next()
      assert.deepStrictEqual([headerOf(refused, "status"), headerOf(refused, "reason")], ["401", "TokenMissing"])
      assert.strictEqual((yield* client.closed).code, 1008)
      const bad = yield* connect(url)
      yield* bad.send(frame("token", { id: "t" }, "not.a.token"))
      assert.strictEqual(headerOf(yield* bad.next(), "reason"), "TokenMalformed")
      assert.strictEqual((yield* bad.closed).code, 1008)
      yield* until(Effect.sync(() => lhttp.connectionCount() === 0))
    }))

  it.live("with required: false a connection without a token comes in with no user; one may be given later", () =>
    Effect.gen(function*() {
      const { server: lhttp, url } = yield* server({ secret, required: false })
      const client = yield* connect(url)
      yield* client.nothing()
      assert.strictEqual(lhttp.connectionsOf("bob").length, 0)
      yield* client.send(frame("token", { id: "t" }, yield* hs({ sub: "bob" })))
      assert.strictEqual(headerOf(yield* client.next(), "user"), "bob")
      assert.strictEqual(lhttp.connectionsOf("bob").length, 1)
    }))

  it.live("each algorithm family: HS256/384/512 with a secret; RS256, PS256, ES256, ES384, EdDSA with a public key", () =>
    Effect.gen(function*() {
      const { url } = yield* server({ secret })
      for (const alg of ["HS256", "HS384", "HS512"]) {
        const client = yield* connect(`${url}/?token=${yield* sign(secretKey, alg, { sub: alg })}`)
        yield* client.nothing()
      }
      for (const alg of ["RS256", "PS256", "ES256", "ES384", "EdDSA"]) {
        const pair = yield* Effect.promise(() => Jose.generateKeyPair(alg, { extractable: true }))
        const publicKey = yield* Effect.promise(() => Jose.exportSPKI(pair.publicKey))
        const { server: lhttp, url: other } = yield* server({ publicKey })
        const client = yield* connect(`${other}/?token=${yield* sign(pair.privateKey, alg, { sub: alg })}`)
        yield* client.nothing()
        assert.strictEqual(lhttp.connectionsOf(alg).length, 1, alg)
        // the family's other key does not verify: a token of another key pair of the same algorithm
        const stranger = yield* Effect.promise(() => Jose.generateKeyPair(alg))
        const forged = yield* refusedUpgrade(`${other}/?token=${yield* sign(stranger.privateKey, alg, { sub: alg })}`)
        assert.strictEqual(forged.status, 401, alg)
        assert.match(forged.body, /^TokenSignatureInvalid: /, alg)
      }
    }))

  it.live("refused tokens are 401 before any connection exists, with their reason, on WebSocket, SSE and long-poll", () =>
    Effect.gen(function*() {
      const pair = yield* Effect.promise(() => Jose.generateKeyPair("RS256", { extractable: true }))
      const publicKey = yield* Effect.promise(() => Jose.exportSPKI(pair.publicKey))
      const { http, server: lhttp, url } = yield* server({ publicKey, audience: "chat", issuer: "https://id.example" })
      const good = { sub: "alice", aud: "chat", iss: "https://id.example" }
      const rs = (claims: Jose.JWTPayload) => sign(pair.privateKey, "RS256", claims)
      const cases: Array<[string, string]> = [
        [yield* rs({ ...good, exp: now() - 60 }), "TokenExpired"],
        [yield* rs({ ...good, nbf: now() + 600 }), "TokenNotYetValid"],
        [yield* rs({ ...good, aud: "billing" }), "TokenClaimsInvalid"],
        [yield* rs({ ...good, iss: "https://evil.example" }), "TokenClaimsInvalid"],
        [yield* rs({ aud: "chat", iss: "https://id.example" }), "TokenClaimsInvalid"],
        [(yield* rs(good)).slice(0, -4) + "AAAA", "TokenSignatureInvalid"],
        [new Jose.UnsecuredJWT(good).encode(), "TokenAlgorithmRefused"],
        // algorithm confusion: an HMAC token whose secret is the public key's PEM
        [yield* sign(new TextEncoder().encode(publicKey), "HS256", good), "TokenAlgorithmRefused"],
        // an algorithm the key does not take: an ES256 token for an RSA key
        [
          yield* sign((yield* Effect.promise(() => Jose.generateKeyPair("ES256"))).privateKey, "ES256", good),
          "TokenAlgorithmRefused"
        ],
        ["not-a-token", "TokenMalformed"]
      ]
      for (const [token, reason] of cases) {
        const upgrade = yield* refusedUpgrade(`${url}/?token=${encodeURIComponent(token)}`)
        assert.strictEqual(upgrade.status, 401, reason)
        assert.match(upgrade.body, new RegExp(`^${reason}: `))
        const stream = yield* request(`${http}/sse?token=${encodeURIComponent(token)}`)
        assert.deepStrictEqual([stream.status, stream.body.split(":")[0]], [401, reason])
        const poll = yield* request(`${http}/poll`, { headers: { authorization: `Bearer ${token}` } })
        assert.deepStrictEqual([poll.status, poll.body.split(":")[0]], [401, reason])
      }
      assert.strictEqual(lhttp.connectionCount(), 0)
      const accepted = yield* connect(`${url}/?token=${yield* rs({ ...good, exp: now() + 60 })}`)
      yield* accepted.nothing()
    }))

  it.live("channels subscribes the connection server-side; info is what presence shows", () =>
    Effect.gen(function*() {
      const { hub, server: lhttp, url } = yield* server({ secret })
      const token = yield* hs({ sub: "alice", channels: ["news", "alerts"], info: { name: "Alice" } })
      const client = yield* connect(`${url}/?token=${token}`)
      yield* client.nothing()
      const [connection] = lhttp.connectionsOf("alice")
      assert.deepStrictEqual(Array.from(connection!.channels).sort(), ["alerts", "news"])
      assert.deepStrictEqual(connection!.get(Connection.info), { name: "Alice" })
      yield* hub.publish("news", "headline", { publish: "news" }, "up")
      assert.strictEqual(Result.getOrThrow(Frame.parse(yield* client.next())).body, "up")
      // a channels claim that names no channel is refused with the token
      const bad = yield* refusedUpgrade(`${url}/?token=${yield* hs({ sub: "x", channels: ["a..b"] })}`)
      assert.match(bad.body, /^TokenClaimsInvalid: /)
    }))
})

describe("Tokens: expiry and refresh", () => {
  it.live("over WebSocket: a refresh frame before exp; a fresh token keeps the connection, none closes it 4003", () =>
    Effect.gen(function*() {
      const { url } = yield* server({ secret, refreshBefore: "1 second" })
      const exp = now() + 3
      const refreshing = yield* connect(`${url}/?token=${yield* hs({ sub: "alice", exp })}`)
      const idle = yield* connect(`${url}/?token=${yield* hs({ sub: "alice", exp })}`)
      const refresh = yield* refreshing.next("4 seconds")
      assert.strictEqual(refresh, `LHTTP/1.0 refresh\r\nexpires:${exp * 1000}\r\n\r\n`)
      // another user's token is refused, and the connection goes on with its own
      yield* refreshing.send(frame("token", { id: "x" }, yield* hs({ sub: "mallory", exp: now() + 60 })))
      assert.deepStrictEqual(headerOf(yield* refreshing.next(), "reason"), "TokenUserChanged")
      yield* refreshing.send(frame("token", { id: "r" }, yield* hs({ sub: "alice", exp: now() + 60 })))
      const answer = yield* refreshing.next()
      assert.deepStrictEqual([headerOf(answer, "id"), headerOf(answer, "user")], ["r", "alice"])
      assert.deepStrictEqual(yield* idle.next("4 seconds"), refresh)
      assert.deepStrictEqual(yield* idle.closed, { code: 4003, reason: "token expired" })
      // past the first token's exp the refreshed connection is open
      yield* Effect.sleep("1500 millis")
      yield* refreshing.nothing()
      assert.strictEqual(refreshing.ws.readyState, WebSocket.OPEN)
    }))

  it.live("over SSE and long-poll: the refresh frame comes as any frame, the fresh token goes by POST /send", () =>
    Effect.gen(function*() {
      const { http, server: lhttp } = yield* server({ secret, refreshBefore: "1 second" })
      const exp = now() + 3
      const stream = yield* sse(`${http}/sse?token=${yield* hs({ sub: "sse-user", exp })}`)
      assert.strictEqual(stream.status, 200)
      const key = (yield* stream.next).data
      const first = yield* getJson(`${http}/poll?token=${yield* hs({ sub: "poll-user", exp })}`)
      assert.strictEqual(first.status, 200)
      const pollKey = first.body.connection
      const refresh = yield* Effect.retry(stream.next, { times: 2 })
      assert.strictEqual(refresh.data.trimEnd(), `LHTTP/1.0 refresh\nexpires:${exp * 1000}`)
      const sent = yield* send(http, key, frame("token", { id: "r" }, yield* hs({ sub: "sse-user", exp: now() + 60 })))
      assert.strictEqual(sent.status, 202)
      assert.include((yield* stream.next).data, "LHTTP/1.0 token\nid:r\nuser:sse-user")
      const polled = yield* getJson(`${http}/poll?connection=${pollKey}&cursor=0`)
      assert.deepStrictEqual(polled.body.frames, [`LHTTP/1.0 refresh\r\nexpires:${exp * 1000}\r\n\r\n`])
      yield* send(http, pollKey, frame("token", { id: "p" }, yield* hs({ sub: "poll-user", exp: now() + 60 })))
      const answered = yield* getJson(`${http}/poll?connection=${pollKey}&cursor=${polled.body.cursor}`)
      assert.include(answered.body.frames![0], "LHTTP/1.0 token\r\nid:p\r\nuser:poll-user")
      yield* Effect.sleep("2 seconds")
      assert.strictEqual(lhttp.connectionsOf("sse-user").length, 1)
      assert.strictEqual(lhttp.connectionsOf("poll-user").length, 1)
    }))
})

describe("Tokens: the Effect client", () => {
  const transports = ["websocket", "sse", "poll"] as const
  const clientOf = (url: string, transport: LhttpClient.TransportKind, getToken: Effect.Effect<string, unknown>) =>
    LhttpClient.connect(url, {
      transport,
      getToken,
      reconnect: { initialDelay: "50 millis", maxDelay: "200 millis" }
    }).pipe(Effect.provide(NodeWS.layerWebSocketConstructor))

  for (const transport of transports) {
    it.live(`over ${transport}: getToken's token opens the connection; a refresh frame gets a fresh one, the connection stays`, () =>
      Effect.gen(function*() {
        const { server: lhttp, url } = yield* server({ secret, refreshBefore: "1 second" })
        let asked = 0
        const getToken = Effect.suspend(() => {
          asked++
          return hs({ sub: "alice", exp: now() + 3 })
        })
        const client = yield* clientOf(url, transport, getToken)
        const closes: Array<LhttpClient.Disconnect> = []
        yield* client.disconnects.pipe(
          Stream.runForEach((close) => Effect.sync(() => closes.push(close))),
          Effect.forkScoped
        )
        yield* until(Effect.sync(() => lhttp.connectionsOf("alice").length === 1))
        const [first] = lhttp.connectionsOf("alice")
        // past the first token's exp (3 s), its connection is still the one, refreshed
        yield* Effect.sleep("3500 millis")
        assert.isAtLeast(asked, 2)
        assert.deepStrictEqual(lhttp.connectionsOf("alice"), [first!])
        assert.strictEqual(yield* client.state, "open")
        assert.deepStrictEqual(closes, [])
      }))
  }

  it.live("a refresh that fails: closed 4003 at exp, told so, and connected again with a fresh token", () =>
    Effect.gen(function*() {
      const { server: lhttp, url } = yield* server({ secret, refreshBefore: "1 second" })
      let asked = 0
      const getToken = Effect.suspend(() =>
        ++asked === 2 ? Effect.fail("the identity provider is down") : hs({ sub: "alice", exp: now() + 2 })
      )
      const client = yield* clientOf(url, "websocket", getToken)
      const expired = yield* client.disconnects.pipe(Stream.take(1), Stream.runCollect, Effect.forkScoped)
      assert.deepStrictEqual(Array.from(yield* Fiber.join(expired)), [
        { code: 4003, reason: "token expired", reconnect: true }
      ])
      yield* until(Effect.sync(() => asked >= 3 && lhttp.connectionsOf("alice").length === 1))
      yield* until(Effect.map(client.state, (state) => state === "open"))
    }))

  it.live("a private channel: subscribed with a subscription token, and with a fresh one after a reconnect", () =>
    Effect.gen(function*() {
      const { hub, server: lhttp, url } = yield* server({ secret, privatePrefixes: ["private-"] })
      const client = yield* clientOf(url, "websocket", hs({ sub: "alice" }))
      let asked = 0
      const token = Effect.suspend(() => {
        asked++
        return hs({ sub: "alice", channel: "private-a" })
      })
      yield* until(Effect.map(client.state, (state) => state === "open"))
      yield* client.subscribe(["public-b"])
      yield* client.subscribe(["private-a"], undefined, { token })
      const received = yield* client.channel("private-a").pipe(Stream.take(2), Stream.runCollect, Effect.forkScoped)
      yield* until(Effect.sync(() => lhttp.connectionsOf("alice")[0]?.channels.has("private-a") === true))
      yield* hub.publish("private-a", "say", { publish: "private-a" }, "one")
      // the server restarts the connection: the client subscribes again, with a fresh token
      yield* lhttp.connectionsOf("alice")[0]!.close(1012, "reconnect:0")
      yield* until(
        Effect.sync(() => asked === 2 && lhttp.connectionsOf("alice")[0]?.channels.has("private-a") === true)
      )
      yield* hub.publish("private-a", "say", { publish: "private-a" }, "two")
      const bodies = Array.from(yield* Fiber.join(received)).map((message) =>
        message._tag === "Failure" ? "" : message.body
      )
      assert.deepStrictEqual(bodies, ["one", "two"])
    }))

  for (const transport of transports) {
    it.live(`over ${transport}: a close from 4500 to 4999 (a backend's disconnect for good) ends the client, told reconnect: false`, () =>
      Effect.gen(function*() {
        const { server: lhttp, url } = yield* server({ secret })
        const client = yield* clientOf(url, transport, hs({ sub: "mallory" }))
        const told = yield* client.disconnects.pipe(Stream.take(1), Stream.runCollect, Effect.forkScoped)
        yield* until(Effect.sync(() => lhttp.connectionsOf("mallory").length === 1))
        yield* lhttp.connectionsOf("mallory")[0]!.close(4501, "banned")
        assert.deepStrictEqual(Array.from(yield* Fiber.join(told)), [{
          code: 4501,
          reason: "banned",
          reconnect: false
        }])
        yield* until(Effect.map(client.state, (state) => state === "closed"))
        yield* Effect.sleep("300 millis")
        assert.strictEqual(lhttp.connectionsOf("mallory").length, 0)
      }))
  }
})

describe("Tokens: subscription tokens and user-limited channels", () => {
  it.live("a private channel needs a subscription token for the connection's user and that channel", () =>
    Effect.gen(function*() {
      const { hub, url } = yield* server({ secret, privatePrefixes: ["private-"] })
      const client = yield* connect(`${url}/?token=${yield* hs({ sub: "alice" })}`)
      const tries: Array<[Record<string, string>, string]> = [
        [{}, "SubscriptionTokenRequired"],
        [{ token: yield* hs({ sub: "alice", channel: "private-other" }) }, "SubscriptionTokenRefused"],
        [{ token: yield* hs({ sub: "bob", channel: "private-room" }) }, "SubscriptionTokenRefused"],
        [{ token: yield* hs({ sub: "alice", channel: "private-room", exp: now() - 60 }) }, "TokenExpired"]
      ]
      for (const [headers, reason] of tries) {
        yield* client.send(frame("join", { id: "j", subscribe: "private-room", ...headers }))
        assert.strictEqual(headerOf(yield* client.next(), "reason"), reason)
      }
      // a public channel needs none
      yield* client.send(frame("join", { subscribe: "public-room" }))
      const token = yield* hs({ sub: "alice", channel: "private-room" })
      yield* client.send(frame("join", { subscribe: "private-room", token }))
      yield* client.nothing()
      yield* hub.publish("private-room", "say", { publish: "private-room" }, "psst")
      assert.strictEqual(Result.getOrThrow(Frame.parse(yield* client.next())).body, "psst")
    }))

  it.live("a user-limited channel (chat#alice,bob) takes its users' subscribes and publishes only", () =>
    Effect.gen(function*() {
      const { url } = yield* server({ secret }, { userLimitedChannels: true })
      const alice = yield* connect(`${url}/?token=${yield* hs({ sub: "alice" })}`)
      const carol = yield* connect(`${url}/?token=${yield* hs({ sub: "carol" })}`)
      yield* alice.send(frame("join", { subscribe: "chat#alice,bob" }))
      yield* alice.nothing()
      yield* carol.send(frame("join", { id: "s", subscribe: "chat#alice,bob" }))
      const refused = yield* carol.next()
      assert.deepStrictEqual([headerOf(refused, "status"), headerOf(refused, "reason")], ["403", "NotChannelUser"])
      yield* carol.send(frame("say", { id: "p", publish: "chat#alice,bob" }, "spam"))
      assert.strictEqual(headerOf(yield* carol.next(), "reason"), "NotChannelUser")
      yield* alice.nothing()
      const bob = yield* connect(`${url}/?token=${yield* hs({ sub: "bob" })}`)
      yield* bob.send(frame("say", { publish: "chat#alice,bob" }, "hello"))
      assert.strictEqual(Result.getOrThrow(Frame.parse(yield* alice.next())).body, "hello")
    }))
})

describe("Tokens: keys from a JWKS URL", () => {
  it.live("a JWKS served over HTTP, its keys rotated; a JWKS that cannot be fetched is 503 TokenKeysUnavailable", () =>
    Effect.gen(function*() {
      const first = yield* Effect.promise(() => Jose.generateKeyPair("ES256", { extractable: true }))
      const second = yield* Effect.promise(() => Jose.generateKeyPair("RS256", { extractable: true }))
      const jwk = (key: Jose.CryptoKey, kid: string, alg: string) =>
        Effect.map(Effect.promise(() => Jose.exportJWK(key)), (exported) => ({ ...exported, kid, alg, use: "sig" }))
      let keys = [yield* jwk(first.publicKey, "k1", "ES256")]
      let fetches = 0
      const jwks = Http.createServer((_request, response) => {
        fetches++
        response.writeHead(200, { "content-type": "application/json" })
        response.end(JSON.stringify({ keys }))
      })
      yield* Effect.promise(() => new Promise<void>((resolve) => jwks.listen(0, "127.0.0.1", resolve)))
      yield* Effect.addFinalizer(() =>
        Effect.promise(() => new Promise<void>((resolve) => jwks.close(() => resolve())))
      )
      const jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/keys`
      const { url } = yield* server({ jwksUrl, jwksCooldown: "200 millis" })
      const one = yield* connect(`${url}/?token=${yield* sign(first.privateKey, "ES256", { sub: "a" }, { kid: "k1" })}`)
      yield* one.nothing()
      yield* connect(`${url}/?token=${yield* sign(first.privateKey, "ES256", { sub: "a" }, { kid: "k1" })}`)
      assert.strictEqual(fetches, 1)
      // rotated: the new key's token makes the server fetch again; the old key is gone
      keys = [yield* jwk(second.publicKey, "k2", "RS256")]
      yield* Effect.sleep("300 millis")
      const two = yield* connect(
        `${url}/?token=${yield* sign(second.privateKey, "RS256", { sub: "b" }, { kid: "k2" })}`
      )
      yield* two.nothing()
      assert.strictEqual(fetches, 2)
      yield* Effect.sleep("300 millis")
      const old = yield* refusedUpgrade(
        `${url}/?token=${yield* sign(first.privateKey, "ES256", { sub: "a" }, { kid: "k1" })}`
      )
      assert.match(old.body, /^TokenSignatureInvalid: /)
      // unknown kids within the cooldown do not fetch again
      const before = fetches
      for (let i = 0; i < 5; i++) {
        yield* refusedUpgrade(`${url}/?token=${yield* sign(first.privateKey, "ES256", { sub: "a" }, { kid: `x${i}` })}`)
      }
      assert.isAtMost(fetches - before, 1)
      // the JWKS server gone: 503
      yield* Effect.promise(() => new Promise<void>((resolve) => jwks.close(() => resolve())))
      jwks.closeAllConnections()
      yield* Effect.sleep("300 millis")
      const gone = yield* refusedUpgrade(
        `${url}/?token=${yield* sign(second.privateKey, "RS256", { sub: "b" }, { kid: "k9" })}`
      )
      assert.deepStrictEqual([gone.status, gone.body.split(":")[0]], [503, "TokenKeysUnavailable"])
    }))
})

describe("Tokens: the main job", () => {
  const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))

  it.live("LHTTP_JWT_SECRET: a token's user is the connection's; a bad token is 401; a short secret stops the start", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(() => freePort())
      const program = start(main, {
        env: { LHTTP_PORT: String(port), LHTTP_HOST: "127.0.0.1", LHTTP_JWT_SECRET: secret, LHTTP_JWT_AUDIENCE: "chat" }
      })
      yield* Effect.addFinalizer(() => Effect.promise(() => program.stop("SIGTERM", 3_000)))
      yield* Effect.promise(() => program.waitFor(/listening on/, 15_000))
      const url = `ws://127.0.0.1:${port}`
      const client = yield* connect(`${url}/?token=${yield* hs({ sub: "alice", aud: "chat", channels: ["room"] })}`)
      yield* client.send(frame("presence", { id: "p", channel: "room" }))
      assert.include(yield* client.next(), "alice")
      const refused = yield* refusedUpgrade(`${url}/?token=${yield* hs({ sub: "alice", aud: "other" })}`)
      assert.strictEqual(refused.status, 401)
      const short = yield* Effect.promise(() =>
        run(main, { env: { LHTTP_PORT: String(port), LHTTP_JWT_SECRET: "short" } })
      )
      assert.notStrictEqual(short.code, 0)
      assert.include(short.output, "at least 32 bytes")
      assert.notInclude(short.output, "short\n")
    }))
})
