/**
 * Runs each program of examples/ for real: servers on a free port of
 * 127.0.0.1, real WebSocket clients, real HTTP, and asserts what goes over
 * the wire byte for byte.
 */
import { afterAll, afterEach, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { fileURLToPath } from "node:url"
import { Multipart } from "../src/index.ts"
import { type Client, connect } from "./utils/client.ts"
import { natsServer } from "./utils/nats.ts"
import { freePort, type Program, run, start } from "./utils/process.ts"

const example = (name: string): string => fileURLToPath(new URL(`../examples/${name}.ts`, import.meta.url))

const programs: Array<Program> = []
const clients: Array<Client> = []

afterEach(async () => {
  for (const client of clients.splice(0)) client.terminate()
  await Promise.all(programs.splice(0).map((program) => program.stop("SIGTERM", 3_000)))
})

/** Starts an example server on a free port and waits for its listening line. */
const launch = async (name: string, track: (program: Program) => void) => {
  const port = await freePort()
  const program = start(example(name), { env: { PORT: String(port), HOST: "127.0.0.1" } })
  track(program)
  const line = await program.waitFor(/listening on/, 15_000)
  assert.include(line, `listening on http://127.0.0.1:${port}`)
  return { program, port, url: `ws://127.0.0.1:${port}/` }
}

/** A server of one test, stopped after it. */
const startServer = (name: string) => launch(name, (program) => programs.push(program))

/**
 * One server for the tests of a `describe` block: started before its first
 * test, stopped after its last; each test opens its own clients.
 */
const useServer = (name: string) => {
  let program: Program | undefined
  let server: Awaited<ReturnType<typeof launch>> | undefined
  beforeAll(async () => {
    server = await launch(name, (started) => (program = started))
  })
  afterAll(async () => {
    await program?.stop("SIGTERM", 3_000)
  })
  return () => {
    if (server === undefined) throw new Error(`${name} is not running`)
    return server
  }
}

const open = async (url: string): Promise<Client> => {
  const client = await connect(url)
  clients.push(client)
  return client
}

const errorFrame = (status: number, reason: string, message: string, id?: string) =>
  `LHTTP/1.0 error\r\nstatus:${status}\r\nreason:${reason}\r\n${id === undefined ? "" : `id:${id}\r\n`}\r\n${message}`

let probes = 0

/**
 * Nothing is waiting for `client`, and everything it sent before is processed: a probe sent now
 * (a command no example has, with an id) is answered 404, and that answer is its next frame, as a
 * connection's messages are processed in order.
 */
const nothingMore = async (client: Client) => {
  const id = `probe-${++probes}`
  client.send(`LHTTP/1.0 test-probe\r\nid:${id}\r\n\r\n`)
  const answer = errorFrame(404, "UnknownCommand", `no processor for the command "test-probe"`, id)
  assert.strictEqual(await client.next(), answer)
}

/** POSTs `message` to the server's /publish, as examples/publish-from-backend.ts does; 204 expected. */
const postPublish = async (port: number, message: string) => {
  const response = await fetch(`http://127.0.0.1:${port}/publish`, { method: "POST", body: message })
  assert.strictEqual(response.status, 204, await response.text())
}

describe("examples/echo-server.ts", () => {
  const server = useServer("echo-server")

  it("echoes the body byte for byte, with the request's id", async () => {
    const { url } = server()
    const client = await open(url)

    client.send("LHTTP/1.0 echo\r\n\r\nhello")
    assert.strictEqual(await client.next(), "LHTTP/1.0 echo\r\n\r\nhello")

    client.send("LHTTP/1.0 echo\r\nid:42\r\n\r\nline 1\r\n\r\nline 2 ✓ héllo")
    assert.strictEqual(await client.next(), "LHTTP/1.0 echo\r\nid:42\r\n\r\nline 1\r\n\r\nline 2 ✓ héllo")

    client.send("LHTTP/1.0 echo")
    assert.strictEqual(await client.next(), "LHTTP/1.0 echo\r\n\r\n")
  })

  it("answers an unknown command and a non-LHTTP message with error frames and keeps the connection", async () => {
    const { url } = server()
    const client = await open(url)

    client.send("LHTTP/1.0 nope\r\nid:7\r\n\r\nbody")
    assert.strictEqual(
      await client.next(),
      errorFrame(404, "UnknownCommand", `no processor for the command "nope"`, "7")
    )
    client.send("hello?")
    assert.strictEqual(await client.next(), errorFrame(400, "NotLhttp", `a frame starts with "LHTTP/1.0 <command>"`))
    client.send("LHTTP/1.0 echo\r\n\r\nstill open")
    assert.strictEqual(await client.next(), "LHTTP/1.0 echo\r\n\r\nstill open")
  })

  it("drains on SIGTERM: open connections are closed with 1012 and a wait, then the process exits", async () => {
    const { program, url } = await startServer("echo-server")
    const client = await open(url)
    client.send("LHTTP/1.0 echo\r\n\r\nbefore")
    assert.strictEqual(await client.next(), "LHTTP/1.0 echo\r\n\r\nbefore")

    const exit = await program.stop("SIGTERM", 10_000)
    // LhttpServer.launch: a stop by signal, after the drain, is a clean exit
    assert.deepStrictEqual(exit, { code: 0, signal: null }, program.output())
    const closed = await client.closed
    assert.strictEqual(closed.code, 1012)
    assert.match(closed.reason, /^reconnect:\d+$/)
    assert.notMatch(program.output(), /ERROR|WARN/)
  })
})

describe("examples/chat-room.ts", () => {
  const server = useServer("chat-room")

  it("announces joins and leaves, and stamps messages with their sender", async () => {
    const { url } = server()
    const alice = await open(url)
    const bob = await open(url)

    alice.send("LHTTP/1.0 chat\r\nsubscribe:room-1\r\nname:alice\r\n\r\n")
    assert.strictEqual(await alice.next(), "LHTTP/1.0 chat\r\nevent:join\r\nfrom:alice\r\n\r\nalice joined room-1")

    bob.send("LHTTP/1.0 chat\r\nsubscribe:room-1\r\nname:bob\r\n\r\n")
    const bobJoined = "LHTTP/1.0 chat\r\nevent:join\r\nfrom:bob\r\n\r\nbob joined room-1"
    assert.strictEqual(await bob.next(), bobJoined)
    assert.strictEqual(await alice.next(), bobJoined)

    // a `from` sent by the client is overwritten: nobody speaks for someone else
    bob.send("LHTTP/1.0 chat\r\npublish:room-1\r\nfrom:mallory\r\n\r\nhi alice ✓")
    const said = "LHTTP/1.0 chat\r\npublish:room-1\r\nfrom:bob\r\n\r\nhi alice ✓"
    assert.strictEqual(await alice.next(), said)
    assert.strictEqual(await bob.next(), said)

    // someone without a name, not in the room, may still speak in it
    const carol = await open(url)
    carol.send("LHTTP/1.0 chat\r\npublish:room-1\r\n\r\nhello all")
    const anonymous = "LHTTP/1.0 chat\r\npublish:room-1\r\nfrom:anonymous\r\n\r\nhello all"
    assert.strictEqual(await alice.next(), anonymous)
    assert.strictEqual(await bob.next(), anonymous)

    await bob.close()
    assert.strictEqual(await alice.next(), "LHTTP/1.0 chat\r\nevent:leave\r\nfrom:bob\r\n\r\nbob left")
    // nothing more from the room: a marker published to it after the leave is alice's next frame
    alice.send("LHTTP/1.0 chat\r\npublish:room-1\r\n\r\nmarker")
    assert.strictEqual(await alice.next(), "LHTTP/1.0 chat\r\npublish:room-1\r\nfrom:alice\r\n\r\nmarker")
    // and carol, who never joined, heard none of it
    await nothingMore(carol)
  })

  it("refuses an invalid room with an error frame", async () => {
    const { url } = server()
    const client = await open(url)
    client.send("LHTTP/1.0 chat\r\nsubscribe:a..b\r\nid:5\r\nname:eve\r\n\r\n")
    assert.strictEqual(
      await client.next(),
      errorFrame(400, "InvalidChannel", `channel "a..b" has an empty dot-separated token`, "5")
    )
  })
})

describe("examples/multipart-upload.ts", () => {
  const server = useServer("multipart-upload")

  it("answers with one line per part", async () => {
    const { url } = server()
    const client = await open(url)

    const body = "content-type:text/plain\r\nname:a.txt\r\n\r\nhello" + "content-type:application/json\r\n\r\n{\"x\":1}"
    client.send(`LHTTP/1.0 upload\r\nmultipart:0 44\r\n\r\n${body}`)
    assert.strictEqual(
      await client.next(),
      "LHTTP/1.0 upload\r\n\r\na.txt text/plain 5 bytes\n- application/json 7 bytes"
    )

    // offsets are UTF-8 bytes; parts may have no headers
    const joined = Multipart.join([
      { headers: new Map([["name", "é.txt"], ["content-type", "text/plain; charset=utf-8"]]), body: "héllo ✓" },
      { headers: new Map(), body: "" },
      { headers: new Map(), body: "\r\n\r\nraw" }
    ])
    assert.strictEqual(joined.offsets, "0 65 69")
    client.send(`LHTTP/1.0 upload\r\nid:u1\r\nmultipart:${joined.offsets}\r\n\r\n${joined.body}`)
    assert.strictEqual(
      await client.next(),
      "LHTTP/1.0 upload\r\nid:u1\r\n\r\né.txt text/plain; charset=utf-8 10 bytes\n- - 0 bytes\n- - 7 bytes"
    )
  })

  it("answers invalid offsets with InvalidMultipart before the processor runs", async () => {
    const { url } = server()
    const client = await open(url)
    const body = "k:v\r\n\r\nabc" // 10 bytes

    const cases: ReadonlyArray<readonly [string, string]> = [
      ["0 999", "offset 999 is past the end of the 10-byte body"],
      ["5 0", "offsets must not decrease"],
      ["0  5", `offset "" is not a decimal number (offsets are separated by single spaces)`],
      ["x", `offset "x" is not a decimal number (offsets are separated by single spaces)`],
      ["0 3", "part 0 has no header block ended by CRLF CRLF"]
    ]
    for (const [offsets, message] of cases) {
      client.send(`LHTTP/1.0 upload\r\nid:m\r\nmultipart:${offsets}\r\n\r\n${body}`)
      assert.strictEqual(await client.next(), errorFrame(400, "InvalidMultipart", message, "m"), offsets)
    }
    // an offset inside the two bytes of "é"
    client.send("LHTTP/1.0 upload\r\nmultipart:0 5\r\n\r\n\r\n\r\néa\r\n\r\nb")
    assert.strictEqual(
      await client.next(),
      errorFrame(400, "InvalidMultipart", "part 0 does not start or end on a UTF-8 character boundary")
    )

    // the connection is still open, and the processor refuses a message without parts itself
    client.send("LHTTP/1.0 upload\r\nid:9\r\n\r\njust text")
    assert.strictEqual(
      await client.next(),
      errorFrame(400, "NoParts", "send a multipart message: a multipart header with the offsets of the parts", "9")
    )
    client.send(`LHTTP/1.0 upload\r\nmultipart:0\r\n\r\n${body}`)
    assert.strictEqual(await client.next(), "LHTTP/1.0 upload\r\n\r\n- - 3 bytes")
  })
})

describe("examples/typed-body.ts", () => {
  const server = useServer("typed-body")

  it("hands the processor a typed body and answers bodies that do not decode with InvalidBody", async () => {
    const { url } = server()
    const client = await open(url)

    client.send(`LHTTP/1.0 move\r\nid:1\r\n\r\n{"x":3,"y":4}`)
    assert.strictEqual(await client.next(), `LHTTP/1.0 move\r\nid:1\r\n\r\n{"x":3,"y":4}`)
    client.send(`LHTTP/1.0 move\r\nid:2\r\n\r\n{"x":1,"y":-1.5}`)
    assert.strictEqual(await client.next(), `LHTTP/1.0 move\r\nid:2\r\n\r\n{"x":4,"y":2.5}`)

    const refused: ReadonlyArray<readonly [string, string]> = [
      [`{"x":"left-secret","y":1}`, `["x"]`], // not a number
      [`{"x":1}`, `["y"]`], // missing key
      [`{"x":1e999,"y":0}`, `["x"]`], // JSON's 1e999 is Infinity, not a finite number
      ["not json secret", "JSON"]
    ]
    for (const [i, [body, mentions]] of refused.entries()) {
      client.send(`LHTTP/1.0 move\r\nid:bad-${i}\r\n\r\n${body}`)
      const frame = await client.next()
      const head = `LHTTP/1.0 error\r\nstatus:400\r\nreason:InvalidBody\r\nid:bad-${i}\r\n\r\n`
      assert.strictEqual(frame.slice(0, head.length), head, frame)
      const explanation = frame.slice(head.length)
      assert.include(explanation, mentions)
      assert.notInclude(explanation, "secret") // the explanation never quotes the body
    }

    // refused moves did not move: the position is where the last valid move left it
    client.send(`LHTTP/1.0 move\r\n\r\n{"x":-4,"y":-2.5}`)
    assert.strictEqual(await client.next(), `LHTTP/1.0 move\r\n\r\n{"x":0,"y":0}`)
  })

  it("keeps the position per connection", async () => {
    const { url } = server()
    const a = await open(url)
    const b = await open(url)
    a.send(`LHTTP/1.0 move\r\n\r\n{"x":1,"y":1}`)
    assert.strictEqual(await a.next(), `LHTTP/1.0 move\r\n\r\n{"x":1,"y":1}`)
    b.send(`LHTTP/1.0 move\r\n\r\n{"x":10,"y":0}`)
    assert.strictEqual(await b.next(), `LHTTP/1.0 move\r\n\r\n{"x":10,"y":0}`)
  })
})

describe("examples/publish-from-backend.ts", () => {
  const server = useServer("echo-server")
  const backend = example("publish-from-backend")

  it("delivers exactly the posted message to the channel's subscribers and exits 0", async () => {
    const { port, url } = server()
    const subscriber = await open(url)
    const bystander = await open(url)
    // messages of a connection are processed in order: once the echo is back,
    // the subscription of the message before it is in place
    subscriber.send("LHTTP/1.0 sub\r\nsubscribe:news\r\n\r\n")
    subscriber.send("LHTTP/1.0 echo\r\n\r\nready")
    assert.strictEqual(await subscriber.next(), "LHTTP/1.0 echo\r\n\r\nready")

    const text = "breaking: ✓ héllo\r\n\r\nsecond paragraph"
    const result = await run(backend, { args: ["news", text], env: { LHTTP_URL: `http://127.0.0.1:${port}` } })
    assert.strictEqual(result.code, 0, result.output)
    assert.strictEqual(await subscriber.next(), `LHTTP/1.0 notify\r\npublish:news\r\n\r\n${text}`)

    // the optional third argument is the command
    const again = await run(backend, { args: ["news", "hi", "chat"], env: { LHTTP_URL: `http://127.0.0.1:${port}/` } })
    assert.strictEqual(again.code, 0, again.output)
    assert.strictEqual(await subscriber.next(), "LHTTP/1.0 chat\r\npublish:news\r\n\r\nhi")

    // nothing more: a marker posted the same way after them is the subscriber's next frame,
    // and the bystander, never subscribed, has nothing waiting
    await postPublish(port, "LHTTP/1.0 marker\r\npublish:news\r\n\r\nend")
    assert.strictEqual(await subscriber.next(), "LHTTP/1.0 marker\r\npublish:news\r\n\r\nend")
    await nothingMore(bystander)
  })

  it("exits non-zero when the server refuses the message", async () => {
    const { port, url } = server()
    const subscriber = await open(url)
    subscriber.send("LHTTP/1.0 sub\r\nsubscribe:news\r\n\r\n")
    subscriber.send("LHTTP/1.0 echo\r\n\r\nready")
    assert.strictEqual(await subscriber.next(), "LHTTP/1.0 echo\r\n\r\nready")

    // past the server's 64 KiB limit: 413
    const result = await run(backend, {
      args: ["news", "x".repeat(70_000)],
      env: { LHTTP_URL: `http://127.0.0.1:${port}` }
    })
    assert.strictEqual(result.code, 1, result.output)
    assert.include(result.output, "413")
    // nothing was delivered: a marker posted the same way after it is the subscriber's next frame
    await postPublish(port, "LHTTP/1.0 marker\r\npublish:news\r\n\r\nend")
    assert.strictEqual(await subscriber.next(), "LHTTP/1.0 marker\r\npublish:news\r\n\r\nend")
  })

  it("exits non-zero when nothing listens, and on bad arguments", async () => {
    const port = await freePort()
    const env = { LHTTP_URL: `http://127.0.0.1:${port}` }
    const [refused, usage, channel] = await Promise.all([
      run(backend, { args: ["news", "hello"], env }),
      run(backend, { args: [], env }),
      run(backend, { args: ["a..b", "hello"], env })
    ])
    assert.strictEqual(refused.code, 1, refused.output)
    assert.include(refused.output, "ECONNREFUSED")
    assert.strictEqual(usage.code, 1, usage.output)
    assert.include(usage.output, "usage: node examples/publish-from-backend.ts <channel> <text> [command]")
    assert.strictEqual(channel.code, 1, channel.output)
    assert.include(channel.output, `channel "a..b" has an empty dot-separated token`)
  })
})

describe("examples/memory-transport.ts", () => {
  it("tests a processor over the in-memory transport, without a port", async () => {
    const result = await run(example("memory-transport"), { timeoutMs: 20_000 })
    assert.strictEqual(result.code, 0, result.output)
    assert.include(result.output, "ok: bob hears alice, shouted")
    assert.include(result.output, "ok: a bad channel is refused with an error frame")
  })
})

describe("examples/cluster.ts", () => {
  it("runs two nodes on one NATS and shows a message crossing them", async () => {
    const result = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const nats = yield* natsServer
      return yield* Effect.promise(() =>
        run(example("cluster"), { env: { LHTTP_NATS_URL: nats.url }, timeoutMs: 20_000 })
      )
    })))
    assert.strictEqual(result.code, 0, result.output)
    assert.include(result.output, "NATS: connected")
    assert.include(
      result.output,
      String.raw`node A received: "LHTTP/1.0 chat\r\npublish:lobby\r\n\r\nhello from node B"`
    )
  })
})

describe("examples/upstream-recorder.ts", () => {
  it("publishes to the room and stores the record in the backend; refuses other targets", async () => {
    const backendPort = await freePort()
    const port = await freePort()
    const program = start(example("upstream-recorder"), {
      env: { PORT: String(port), HOST: "127.0.0.1", BACKEND_PORT: String(backendPort) }
    })
    programs.push(program)
    await program.waitFor(/listening on/, 15_000)
    const alice = await open(`ws://127.0.0.1:${port}/`)
    const bob = await open(`ws://127.0.0.1:${port}/`)
    bob.send("LHTTP/1.0 chat\r\nsubscribe:room\r\n\r\n")
    await nothingMore(bob) // bob is subscribed once the probe is answered
    const message =
      `LHTTP/1.0 chat\r\npublish:room\r\nupstream:POST http://127.0.0.1:${backendPort}/records\r\n\r\nhello room`
    alice.send(message)
    assert.strictEqual(await bob.next(), message)
    await program.waitFor(/backend: stored record #1/, 5_000)
    const records = await (await fetch(`http://127.0.0.1:${backendPort}/records`)).json()
    assert.strictEqual(records.length, 1)
    assert.deepInclude(records[0], { command: "chat", text: "hello room" })
    alice.send(`LHTTP/1.0 chat\r\nid:x\r\nupstream:POST http://127.0.0.1:${backendPort}/admin\r\n\r\nsneaky`)
    assert.match(await alice.next(), /^LHTTP\/1\.0 error\r\nstatus:403\r\nreason:UpstreamNotAllowed\r\nid:x\r\n/)
    assert.strictEqual((await (await fetch(`http://127.0.0.1:${backendPort}/records`)).json()).length, 1)
  })
})

describe("examples/node-client.ts", () => {
  it("joins the room of the main job, gets an echo reply and hears its own message", async () => {
    const port = await freePort()
    const server = start(fileURLToPath(new URL("../src/main.ts", import.meta.url)), {
      env: { LHTTP_PORT: String(port), LHTTP_HOST: "127.0.0.1" }
    })
    programs.push(server)
    await server.waitFor(/listening on/, 15_000)
    const result = await run(example("node-client"), { args: ["alice"], env: { LHTTP_URL: `ws://127.0.0.1:${port}/` } })
    assert.strictEqual(result.code, 0, result.output)
    assert.include(result.output, "connection: open")
    assert.include(result.output, "echo replied: are you there?")
    assert.include(result.output, "lobby: alice: hello from alice")
  })
})

/**
 * What a program printed itself: its output lines without the logger's (`[hh:mm:ss.mmm] LEVEL …`) and the blank
 * ones.
 */
const printed = (output: string): Array<string> =>
  output.split("\n").filter((line) => line !== "" && !/^\[\d\d:\d\d:\d\d\.\d\d\d\] [A-Z]+ /.test(line))

describe("examples/typed-request.ts", () => {
  it("calls a typed processor: a typed reply, a declared error caught by its tag, calls completing in the order answered", async () => {
    const result = await run(example("typed-request"), { timeoutMs: 20_000 })
    assert.strictEqual(result.code, 0, result.output)
    assert.match(result.output, /effect-lhttp listening on http:\/\/127\.0\.0\.1:\d+/)
    assert.deepStrictEqual(printed(result.output), [
      "forecast: Paris 18°C",
      "declared error: UnknownCity Atlantis (404)",
      "asked: Oslo (600 ms), Lima (100 ms), Cairo (350 ms)",
      // the fastest answer first: the three were in flight at once, each got its own reply
      "answered: Lima 22°C",
      "answered: Cairo 31°C",
      "answered: Oslo 7°C",
      "in the order asked: Oslo, Lima, Cairo"
    ])
  })
})

describe("examples/backend-api.ts", () => {
  it("a backend calls the server API; the client connected with a JWT sees each effect, then is disconnected for good", async () => {
    const result = await run(example("backend-api"), { timeoutMs: 20_000 })
    assert.strictEqual(result.code, 0, result.output)
    assert.deepStrictEqual(printed(result.output), [
      "alice is connected with her token",
      "backend publish: {}",
      "alice got headline: tokens landed",
      "backend send: {\"delivered\":1,\"complete\":true}",
      "alice got dm: your order shipped",
      "backend presence_stats: {\"connections\":1,\"users\":1,\"complete\":true}",
      "backend disconnect: {\"disconnected\":1,\"complete\":true}",
      "alice was disconnected: 4500 disconnected, reconnect: false",
      "alice's client is closed"
    ])
  })
})

describe("examples/history.ts", () => {
  it("a reader whose connection drops gets what was published meanwhile, in order, then the position frame, then live ones", async () => {
    const result = await run(example("history"), { timeoutMs: 20_000 })
    assert.strictEqual(result.code, 0, result.output)
    assert.deepStrictEqual(printed(result.output), [
      "position: offset 0, recovered -",
      "first (offset 1)",
      "away since offset 1",
      // published while it was away, recovered by the client by itself when it was back
      "second (offset 2)",
      "third (offset 3)",
      "fourth (offset 4)",
      "position: offset 4, recovered yes",
      "live again (offset 5)",
      "last position: 5"
    ])
  })
})

describe("examples/login-session.ts", () => {
  it("logs in to the main job, and a second client given the key restores the session, which the server knows", async () => {
    const port = await freePort()
    const server = start(fileURLToPath(new URL("../src/main.ts", import.meta.url)), {
      env: { LHTTP_PORT: String(port), LHTTP_HOST: "127.0.0.1" }
    })
    programs.push(server)
    await server.waitFor(/listening on/, 15_000)
    const result = await run(example("login-session"), {
      args: ["alice"],
      env: { LHTTP_URL: `ws://127.0.0.1:${port}/` }
    })
    assert.strictEqual(result.code, 0, result.output)
    const lines = printed(result.output)
    const key = /^session key: ([A-Za-z0-9_-]{22})$/.exec(lines[1] ?? "")?.[1]
    assert.isDefined(key, result.output)
    assert.deepStrictEqual(lines, [
      "logged in as alice",
      `session key: ${key}`,
      "first client closed",
      "session event: Restored",
      "restored as alice, same key",
      // the second client never said its name: the chat processor read it from the restored session
      "login-demo: alice: hello again"
    ])
    assert.notMatch(server.output(), /ERROR|WARN/)
  })
})
