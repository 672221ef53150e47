/**
 * The main job (`src/main.ts`, what `npm start` runs) as a process: the
 * settings it reads from the environment. One process serves every test of
 * this file.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { fileURLToPath } from "node:url"
import { getJson, sse } from "./utils/http.ts"
import { connect, frame, request } from "./utils/lhttp.ts"
import { freePort, type Program, start } from "./utils/process.ts"

const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))

describe("the main job reads LHTTP_PUBLISH_TOKEN, LHTTP_MAX_MESSAGE_BYTES, LHTTP_ALLOWED_ORIGINS and LHTTP_HISTORY", () => {
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
        LHTTP_ALLOWED_ORIGINS: "https://a.example, https://b.example",
        // empty: no channel keeps history (frames are delivered byte for byte, no position frames)
        LHTTP_HISTORY: ""
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
      const accepted = yield* request(publish(), {
        method: "POST",
        body,
        headers: { authorization: "Bearer main-s3cret" }
      })
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

describe("the main job: login, sessions, and the three transports", () => {
  let program: Program | undefined
  let port = 0
  beforeAll(async () => {
    port = await freePort()
    program = start(main, { env: { LHTTP_PORT: String(port), LHTTP_HOST: "127.0.0.1" } })
    await program.waitFor(/listening on/, 15_000)
  })
  afterAll(async () => {
    await program?.stop("SIGTERM", 3_000)
  })
  const ws = () => `ws://127.0.0.1:${port}/`

  it.live("login creates a session and answers its frame with the id; a new connection restores it and chats under that name", () =>
    Effect.gen(function*() {
      const first = yield* connect(ws())
      yield* first.send(frame("login", { id: "l1" }, "{\"name\":\"alice\"}"))
      const answer = yield* first.next()
      const match = /^LHTTP\/1\.0 session\r\nsession-key:([A-Za-z0-9_-]{22})\r\nid:l1\r\n\r\n\{"name":"alice"\}$/.exec(
        answer
      )
      assert.isNotNull(match, answer)
      const key = match![1]!
      // a reload: a new connection restores the session by its key
      const second = yield* connect(ws())
      yield* second.send(frame("session", { restore: key, id: "r1" }))
      assert.strictEqual(
        yield* second.next(),
        `LHTTP/1.0 session\r\nsession-key:${key}\r\nid:r1\r\n\r\n{"name":"alice"}`
      )
      // a plain join: the members and the join, as the original gave them, no position
      const plain = yield* connect(ws())
      yield* plain.send(frame("chat", { subscribe: "main-lobby", name: "carol" }))
      assert.strictEqual(yield* plain.next(), "LHTTP/1.0 chat\r\nevent:members\r\nroom:main-lobby\r\n\r\ncarol")
      assert.strictEqual(yield* plain.next(), "LHTTP/1.0 chat\r\nevent:join\r\nroom:main-lobby\r\nfrom:carol\r\n\r\n")
      yield* second.send(frame("chat", { subscribe: "main-lobby", since: "now" }))
      // by default every channel keeps history: a subscription that asks gets its position first
      const position = /^LHTTP\/1\.0 position\r\nchannel:main-lobby\r\nepoch:([\w-]+)\r\noffset:1\r\n\r\n$/.exec(
        yield* second.next()
      )
      assert.isNotNull(position)
      const epoch = position![1]!
      assert.strictEqual(yield* second.next(), "LHTTP/1.0 chat\r\nevent:members\r\nroom:main-lobby\r\n\r\ncarol\nalice")
      yield* second.send(frame("chat", { publish: "main-lobby" }, "hi"))
      const at = (offset: number) => `LHTTP/1.0 chat\r\nchannel:main-lobby\r\noffset:${offset}\r\nepoch:${epoch}\r\n`
      const joined = `${at(2)}event:join\r\nroom:main-lobby\r\nfrom:alice\r\n\r\n`
      const said = `${at(3)}publish:main-lobby\r\nfrom:alice\r\n\r\nhi`
      assert.strictEqual(yield* second.next(), joined)
      assert.strictEqual(yield* second.next(), said)
      // the plain member gets the same messages as they were published
      assert.strictEqual(yield* plain.next(), "LHTTP/1.0 chat\r\nevent:join\r\nroom:main-lobby\r\nfrom:alice\r\n\r\n")
      assert.strictEqual(yield* plain.next(), "LHTTP/1.0 chat\r\npublish:main-lobby\r\nfrom:alice\r\n\r\nhi")
      // a client back since carol's join gets the rest, then the position frame
      const back = yield* connect(ws())
      yield* back.send(frame("subscribe", { subscribe: "main-lobby", since: `${epoch}:1` }))
      assert.deepStrictEqual([yield* back.next(), yield* back.next(), yield* back.next()], [
        joined,
        said,
        `LHTTP/1.0 position\r\nchannel:main-lobby\r\nepoch:${epoch}\r\noffset:3\r\nrecovered:yes\r\n\r\n`
      ])
      // a name that is not valid is refused
      yield* first.send(frame("login", { id: "l2" }, "{\"name\":\"\"}"))
      assert.match(yield* first.next(), /^LHTTP\/1\.0 error\r\nstatus:400\r\nreason:InvalidBody\r\nid:l2\r\n/)
      // the session operations are in the metrics
      const metrics = (yield* request(`http://127.0.0.1:${port}/metrics`)).body
      for (const operation of ["create", "restore"]) {
        assert.match(
          metrics,
          new RegExp(
            `^lhttp_session_operations_total\\{(?=[^}]*operation="${operation}")(?=[^}]*outcome="ok")[^}]*\\} 1$`,
            "m"
          )
        )
      }
    }))

  it.live("the defaults speak plain LHTTP: plain subscribers on WebSocket, SSE and long-poll get each publish byte for byte, nothing else", () =>
    Effect.gen(function*() {
      const http = `http://127.0.0.1:${port}`
      // an original SDK's subscription (reference §12.4), on a channel that keeps history by default
      const original = yield* connect(ws())
      yield* original.send("LHTTP/1.0 subpub\r\nsubscribe:plain-room\r\n\r\n")
      const events = yield* sse(`${http}/sse?subscribe=plain-room`)
      assert.strictEqual((yield* events.next).event, "connected")
      const opened = yield* getJson(`${http}/poll?subscribe=plain-room`)
      const key = opened.body.connection
      const publisher = yield* connect(ws())
      const sent = "LHTTP/1.0 subpub\r\npublish:plain-room\r\nx-a:1\r\n\r\nover ws"
      yield* publisher.send(sent)
      yield* original.next().pipe(Effect.flatMap((text) => Effect.sync(() => assert.strictEqual(text, sent))))
      // the original node's headers too: a payload's own offset and epoch are its text
      const posted = "LHTTP/1.0 chat\r\nx-order:2\r\npublish:plain-room\r\noffset:5\r\nepoch:e\r\n\r\nhello"
      assert.strictEqual((yield* request(`${http}/publish`, { method: "POST", body: posted })).status, 204)
      assert.strictEqual(yield* original.next(), posted)
      yield* original.nothing()
      const fromSse = [yield* events.next, yield* events.next]
      assert.deepStrictEqual(
        fromSse.map((event) => event.data),
        [sent, posted].map((text) => text.replace(/\r\n/g, "\n"))
      )
      const polled: Array<string> = []
      for (let cursor = 0; polled.length < 2;) {
        const answer = yield* getJson(`${http}/poll?connection=${key}&cursor=${cursor}`)
        polled.push(...answer.body.frames!)
        cursor = answer.body.cursor!
      }
      assert.deepStrictEqual(polled, [sent, posted])
    }))

  it.live("npm start serves SSE and long-poll beside WebSocket", () =>
    Effect.gen(function*() {
      const http = `http://127.0.0.1:${port}`
      const opened = yield* request(`${http}/poll`)
      assert.strictEqual(opened.status, 200)
      const key = (JSON.parse(opened.body) as { connection: string }).connection
      const sent = yield* request(`${http}/send?connection=${key}`, {
        method: "POST",
        body: frame("echo", { id: "p" }, "over poll")
      })
      assert.strictEqual(sent.status, 202)
      const polled = yield* request(`${http}/poll?connection=${key}&cursor=0`)
      assert.deepStrictEqual(JSON.parse(polled.body), {
        connection: key,
        cursor: 1,
        frames: [frame("echo", { id: "p" }, "over poll")]
      })
      // an SSE stream opens with its connected event
      const controller = new AbortController()
      const stream = yield* Effect.promise(() => fetch(`${http}/sse`, { signal: controller.signal }))
      assert.strictEqual(stream.headers.get("content-type"), "text/event-stream; charset=utf-8")
      const reader = stream.body!.getReader()
      let text = ""
      while (!text.includes("event: connected\ndata: ")) {
        text += new TextDecoder().decode((yield* Effect.promise(() => reader.read())).value)
      }
      controller.abort()
      assert.match(text, /^retry: 1000\n\nevent: connected\ndata: [A-Za-z0-9_-]{22}\n\n/)
    }))
})

describe("the main job reads LHTTP_MAX_CONNECTIONS and LHTTP_MESSAGES_PER_SECOND", () => {
  let program: Program | undefined
  let port = 0
  beforeAll(async () => {
    port = await freePort()
    program = start(main, {
      env: {
        LHTTP_PORT: String(port),
        LHTTP_HOST: "127.0.0.1",
        LHTTP_MAX_CONNECTIONS: "2",
        LHTTP_MESSAGES_PER_SECOND: "1"
      }
    })
    await program.waitFor(/listening on/, 15_000)
  })
  afterAll(async () => {
    await program?.stop("SIGTERM", 3_000)
  })

  it.live("two connections at most; a burst of two messages, then 429 RateLimited", () =>
    Effect.gen(function*() {
      const ws = `ws://127.0.0.1:${port}/`
      const client = yield* connect(ws)
      yield* connect(ws)
      const refused = yield* connect(ws).pipe(Effect.flip)
      assert.include(String(refused), "Unexpected server response: 503")
      // 1 a second, 2 at once: the third of a burst is refused with its id
      for (const id of ["a", "b"]) yield* client.send(frame("echo", { id }, id))
      yield* client.send(frame("echo", { id: "c" }, "c"))
      const answers = [yield* client.next(), yield* client.next(), yield* client.next()].sort()
      assert.deepStrictEqual(answers, [
        "LHTTP/1.0 echo\r\nid:a\r\n\r\na",
        "LHTTP/1.0 echo\r\nid:b\r\n\r\nb",
        "LHTTP/1.0 error\r\nstatus:429\r\nreason:RateLimited\r\nid:c\r\n\r\nmore than 1 messages a second: this one was not processed"
      ])
    }))
})
