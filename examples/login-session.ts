/**
 * A session that outlives its connection, with the Effect client, against
 * the main job (`npm start`): log in, keep the session's key, and restore the
 * session from a second client, as a page after a reload or a program after
 * a restart would.
 *
 *   npm start                                  # in another terminal
 *   LHTTP_URL=ws://127.0.0.1:8081/ node examples/login-session.ts alice
 *
 * What it shows:
 * - `client.call(Login, { name })` with the main job's `login` definition:
 *   the server creates a session and answers with its `session` frame; the
 *   client keeps it (`client.session`);
 * - `LhttpClient.connect(url, { session: key })`: a new client restores the
 *   session on its first connection (`LHTTP/1.0 session` with
 *   `restore:<key>`) before it sends anything, and `client.sessions` says
 *   `Restored`; the same happens by itself after every reconnect;
 * - the server knows the restored session: the `chat` processor takes the
 *   name from it (this client never says its name).
 *
 * The frames (`\r\n` spelled out):
 *
 *   > LHTTP/1.0 login\r\nid:r1\r\n\r\n{"name":"alice"}
 *   < LHTTP/1.0 session\r\nsession-key:<key>\r\nid:r1\r\n\r\n{"name":"alice"}
 *   (second client)
 *   > LHTTP/1.0 session\r\nrestore:<key>\r\nid:r1\r\n\r\n
 *   < LHTTP/1.0 session\r\nsession-key:<key>\r\nid:r1\r\n\r\n{"name":"alice"}
 */
import { NodeWS } from "@effect/platform-node"
import { Console, Effect, Fiber, Option, Schema, Stream } from "effect"
import { Login } from "../src/demo/Login.ts"
import { LhttpClient } from "../src/index.ts"

const url = process.env.LHTTP_URL ?? "ws://127.0.0.1:8081/"
const name = process.argv[2] ?? "alice"
const room = "login-demo"

// what the main job keeps in a session
const SessionData = Schema.Struct({ name: Schema.String })
const nameOf = (session: LhttpClient.Session) => Schema.decodeUnknownSync(SessionData)(session.data).name

const opened = (client: LhttpClient.Service) =>
  client.states.pipe(Stream.filter((state) => state === "open"), Stream.take(1), Stream.runDrain)

// the first client logs in, keeps the key, and goes away
const login = Effect.gen(function*() {
  const client = yield* LhttpClient.connect(url)
  yield* opened(client)
  yield* client.call(Login, { name })
  const session = Option.getOrThrow(yield* client.session)
  yield* Console.log(`logged in as ${nameOf(session)}`)
  yield* Console.log(`session key: ${session.key}`)
  return session.key
}).pipe(Effect.scoped) // closing the scope closes the client and its connection

const program = Effect.gen(function*() {
  const key = yield* login
  yield* Console.log("first client closed")

  // a second client with the key: it restores the session before anything else
  const client = yield* LhttpClient.connect(url, { session: key })
  const first = yield* client.sessions.pipe(
    Stream.take(1),
    Stream.runCollect,
    Effect.forkChild({ startImmediately: true })
  )
  yield* opened(client)
  for (const event of yield* Fiber.join(first)) yield* Console.log(`session event: ${event._tag}`)
  const session = Option.getOrThrow(yield* client.session)
  yield* Console.log(`restored as ${nameOf(session)}, ${session.key === key ? "same key" : "another key"}`)

  // the server knows it too: chat takes the name from the session
  const said = yield* client.channel(room).pipe(
    Stream.filter((message) => message._tag !== "Failure" && message.body !== ""),
    Stream.take(1),
    Stream.runCollect,
    Effect.forkChild({ startImmediately: true })
  )
  yield* client.command("chat", { subscribe: room })
  yield* client.publish([room], "chat", {}, "hello again")
  for (const message of yield* Fiber.join(said)) {
    if (message._tag !== "Failure") yield* Console.log(`${room}: ${message.headers.get("from")}: ${message.body}`)
  }
})

Effect.runPromise(
  program.pipe(Effect.scoped, Effect.timeout("10 seconds"), Effect.provide(NodeWS.layerWebSocketConstructor))
).then(
  () => process.exit(0),
  (error) => {
    console.error(String(error))
    process.exit(1)
  }
)
