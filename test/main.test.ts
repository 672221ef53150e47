/**
 * The main job (`src/main.ts`, what `npm start` runs) as a process: the
 * settings it reads from the environment. One process serves every test of
 * this file.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { fileURLToPath } from "node:url"
import { connect, frame, request } from "./utils/lhttp.ts"
import { freePort, type Program, start } from "./utils/process.ts"

const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))

describe("the main job reads LHTTP_PUBLISH_TOKEN, LHTTP_MAX_MESSAGE_BYTES and LHTTP_ALLOWED_ORIGINS", () => {
  let program: Program | undefined
  let port = 0
  beforeAll(async () => {
    port = await freePort()
    program = start(main, {
      env: {
        LHTTP_PORT: String(port),
        LHTTP_HOST: "127.0.0.1",
        LHTTP_PUBLISH_TOKEN: "main-s3cret",
        LHTTP_MAX_MESSAGE_BYTES: "1024",
        // a comma-separated list; spaces around an origin do not count
        LHTTP_ALLOWED_ORIGINS: "https://a.example, https://b.example"
      }
    })
    const line = await program.waitFor(/listening on/, 15_000)
    assert.include(line, `listening on http://127.0.0.1:${port}`)
  })
  afterAll(async () => {
    await program?.stop("SIGTERM", 3_000)
  })
  const ws = () => `ws://127.0.0.1:${port}/`
  const publish = () => `http://127.0.0.1:${port}/publish`

  it.live("LHTTP_PUBLISH_TOKEN: POST /publish wants the bearer token, from loopback too", () =>
    Effect.gen(function*() {
      const subscriber = yield* connect(ws())
      yield* subscriber.send(frame("x", { subscribe: "news" }))
      yield* subscriber.nothing()
      const refused = yield* request(publish(), { method: "POST", body: "LHTTP/1.0 n\r\npublish:news\r\n\r\nno token" })
      assert.deepStrictEqual([refused.status, refused.body], [401, "a bearer token is required\n"])
      const wrong = yield* request(publish(), {
        method: "POST",
        body: "LHTTP/1.0 n\r\npublish:news\r\n\r\nwrong token",
        headers: { authorization: "Bearer nope" }
      })
      assert.strictEqual(wrong.status, 401)
      const body = "LHTTP/1.0 n\r\npublish:news\r\n\r\nright token"
      const accepted = yield* request(publish(), { method: "POST", body, headers: { authorization: "Bearer main-s3cret" } })
      assert.strictEqual(accepted.status, 204)
      // the refused ones were not delivered: the accepted one is the next frame
      assert.strictEqual(yield* subscriber.next(), body)
    }))

  it.live("LHTTP_MAX_MESSAGE_BYTES: a message over it closes with 1009, a POST over it gets 413", () =>
    Effect.gen(function*() {
      const client = yield* connect(ws())
      // 18 bytes of start line and blank line, 1,000 of body: within 1,024
      const fits = "x".repeat(1000)
      yield* client.send(frame("echo", {}, fits))
      assert.strictEqual(yield* client.next(), `LHTTP/1.0 echo\r\n\r\n${fits}`)
      yield* client.send(frame("echo", {}, "x".repeat(1100)))
      assert.strictEqual((yield* client.closed).code, 1009)
      const big = yield* request(publish(), {
        method: "POST",
        body: `LHTTP/1.0 n\r\npublish:news\r\n\r\n${"x".repeat(1100)}`,
        headers: { authorization: "Bearer main-s3cret" }
      })
      assert.deepStrictEqual([big.status, big.body], [413, "a message is at most 1024 bytes\n"])
    }))

  it.live("LHTTP_ALLOWED_ORIGINS: other origins get 403; listed ones and requests without an Origin pass", () =>
    Effect.gen(function*() {
      const refused = yield* connect(ws(), { origin: "https://evil.example" }).pipe(Effect.flip)
      assert.include(String(refused), "Unexpected server response: 403")
      for (const origin of ["https://a.example", "https://b.example", undefined]) {
        const client = yield* connect(ws(), origin === undefined ? {} : { origin })
        yield* client.send(frame("echo", {}, `from ${origin}`))
        assert.strictEqual(yield* client.next(), `LHTTP/1.0 echo\r\n\r\nfrom ${origin}`)
      }
    }))
})
