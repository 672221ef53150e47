/**
 * Chat room: a `chat` processor that gives each connection a name, announces
 * who joins and leaves a room, and stamps every message said in a room with
 * its sender.
 *
 * What it shows:
 * - per-connection data with a typed key (`Connection.key`, `connection.get`
 *   and `connection.set`);
 * - publishing from the server with `Hub.publish` (join and leave notices);
 * - the built-in `publish` header, and changing the message before it is
 *   published (`exchange.setHeader("from", name)`: a client cannot speak for
 *   someone else);
 * - an `onClose` hook that runs however the connection ends.
 *
 * The protocol of the room (`\r\n` spelled out):
 *
 *   join:  LHTTP/1.0 chat\r\nsubscribe:room-1\r\nname:alice\r\n\r\n
 *          the room, the joiner included, hears
 *          LHTTP/1.0 chat\r\nevent:join\r\nfrom:alice\r\n\r\nalice joined room-1
 *   say:   LHTTP/1.0 chat\r\npublish:room-1\r\n\r\nhello
 *          the room hears
 *          LHTTP/1.0 chat\r\npublish:room-1\r\nfrom:alice\r\n\r\nhello
 *   leave: disconnect; the rooms the connection was in hear
 *          LHTTP/1.0 chat\r\nevent:leave\r\nfrom:alice\r\n\r\nalice left
 *
 * Run it:
 *
 *   PORT=8081 node examples/chat-room.ts
 *
 * Try it with two terminals and wscat (`npm i -g wscat`): `-x` sends one
 * message after connecting, `-w` keeps listening; `printf` writes the CRLFs
 * that LHTTP needs.
 *
 *   # terminal 1: alice joins room-1 and listens for a minute
 *   wscat -c ws://127.0.0.1:8081/ -w 60 -x "$(printf 'LHTTP/1.0 chat\r\nsubscribe:room-1\r\nname:alice\r\n\r\n')"
 *
 *   # terminal 2: bob joins and speaks in one message (headers combine)
 *   wscat -c ws://127.0.0.1:8081/ -w 1 -x "$(printf 'LHTTP/1.0 chat\r\nsubscribe:room-1\r\npublish:room-1\r\nname:bob\r\n\r\nhi alice')"
 *
 * Terminal 1 shows alice's join, bob's join, bob's message (with `from:bob`)
 * and, a second later, bob's leave.
 *
 * Environment: PORT (default 8081), HOST (default 127.0.0.1).
 */
import { Config, Effect, Layer } from "effect"
import { Bus, Connection, Hub, Processor } from "../src/index.ts"
import * as NodeLhttpServer from "../src/NodeLhttpServer.ts"

const Chat = Processor.make("chat")

// Per-connection data: the name this connection chose.
const Name = Connection.key<string>("chat-room/name")

// Names end up in header values: no control characters, at most 32 characters.
const cleanName = (name: string): string => {
  const clean = name.replace(/[\x00-\x1f\x7f]/g, "").trim().slice(0, 32)
  return clean === "" ? "anonymous" : clean
}

const ChatLive = Chat.toLayer(Effect.gen(function*() {
  // The processor's dependencies are its Layer's requirements: here the hub.
  const hub = yield* Hub.Hub

  return {
    onMessage: (exchange) =>
      Effect.gen(function*() {
        const { connection } = exchange
        const given = exchange.header("name")
        if (given !== undefined) connection.set(Name, cleanName(given))
        const name = connection.get(Name) ?? "anonymous"

        const rooms = exchange.header("subscribe")
        if (rooms) {
          // The built-in `subscribe` header is applied after this processor;
          // subscribing now lets the joiner hear its own join notice. It is
          // idempotent, so the built-in subscribe that follows changes nothing.
          // An invalid channel fails here with `400 InvalidChannel`.
          yield* connection.subscribe(rooms.split(" "))
          yield* hub.publish(rooms, "chat", { event: "join", from: name }, `${name} joined ${rooms}`)
        }

        // The built-in `publish` header runs after this processor and
        // publishes the message as changed: with the sender's name.
        if (exchange.header("publish")) exchange.setHeader("from", name)
      }),

    // Runs when the connection ends, before its subscriptions are dropped.
    onClose: (connection) => {
      const name = connection.get(Name) ?? "anonymous"
      return hub.publish(connection.channels, "chat", { event: "leave", from: name }, `${name} left`).pipe(
        Effect.ignore
      )
    }
  }
}))

const Server = Layer.unwrap(Effect.gen(function*() {
  const port = yield* Config.Port("PORT").pipe(Config.withDefault(8081))
  const host = yield* Config.String("HOST").pipe(Config.withDefault("127.0.0.1"))
  return NodeLhttpServer.layer({ port, host, processors: [Chat] })
}))

const Main = Server.pipe(
  Layer.provide(ChatLive),
  // provideMerge: the server and the chat processor share this one hub
  Layer.provideMerge(Hub.layer()),
  Layer.provide(Bus.layerMemory())
)

NodeLhttpServer.launch(Main)
