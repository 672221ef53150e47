/**
 * The `chat` demo processor: chat rooms on channels, with names.
 *
 * - Join: `LHTTP/1.0 chat\r\nsubscribe:<room>\r\nname:<name>\r\n\r\n`. The
 *   room hears `LHTTP/1.0 chat\r\nevent:join\r\nroom:<room>\r\nfrom:<name>`,
 *   the joiner first; the joiner also gets `event:members` with the names
 *   present on this server, one per line.
 * - Say: `LHTTP/1.0 chat\r\npublish:<room>\r\n\r\n<text>`. The room receives
 *   the message with a `from:<name>` header that the server sets (a client
 *   cannot speak for someone else).
 * - Leave (unsubscribe or disconnect): the room hears `event:leave`.
 *
 * Without a `name` header, the name is the one of the connection's session
 * (see the `login` demo processor), when the server has `Sessions`.
 *
 * @since 0.1.0
 */
import { Effect, Option } from "effect"
import * as Connection from "../Connection.ts"
import * as Hub from "../Hub.ts"
import * as Message from "../Message.ts"
import * as Presence from "../Presence.ts"
import * as Processor from "../Processor.ts"
import * as Sessions from "../Sessions.ts"

/**
 * The `chat` processor.
 *
 * @since 0.1.0
 * @category processors
 */
export const Chat = Processor.make("chat")

const Name = Connection.key<string>("chat/name")

const sanitizeName = (name: string | undefined): string => {
  const clean = (name ?? "").replace(/[\x00-\x1f\x7f]/g, "").trim().slice(0, 32)
  return clean === "" ? "anonymous" : clean
}

/**
 * Its implementation: keeps the names present in each room on this server.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = Chat.toLayer(Effect.gen(function*() {
  const hub = yield* Hub.Hub
  const sessions = yield* Effect.serviceOption(Sessions.Sessions)

  // the name of the connection's session, read once, when it has none of its own
  const sessionName = (connection: Connection.Connection) =>
    Option.match(sessions, {
      onNone: () => Effect.succeed(undefined),
      onSome: (service) =>
        service.current(connection).pipe(
          Effect.map(Option.flatMap((session) => {
            const name = (session.data as { readonly name?: unknown } | null)?.name
            return typeof name === "string" ? Option.some(sanitizeName(name)) : Option.none()
          })),
          Effect.map(Option.getOrUndefined),
          Effect.orElseSucceed(() => undefined)
        )
    })
  const rooms = new Map<string, Map<string, string>>() // room -> connection id -> name

  const announce = (room: string, event: string, name: string) =>
    hub.publish(room, "chat", { event, room, from: name }, "")

  const leave = (connection: Connection.Connection, room: string) =>
    Effect.suspend(() => {
      const members = rooms.get(room)
      const name = members?.get(connection.id)
      if (members === undefined || name === undefined) return Effect.void
      members.delete(connection.id)
      if (members.size === 0) rooms.delete(room)
      return announce(room, "leave", name).pipe(Effect.ignore)
    })

  return {
    onMessage: (exchange) =>
      Effect.gen(function*() {
        const { connection, message } = exchange
        const given = exchange.header("name")
        if (given !== undefined) connection.set(Name, sanitizeName(given))
        else if (connection.get(Name) === undefined) {
          const fromSession = yield* sessionName(connection)
          if (fromSession !== undefined) connection.set(Name, fromSession)
        }
        const name = connection.get(Name) ?? "anonymous"
        // back from a reconnect with the room's position (or asking for positions): what was said meanwhile
        // comes first; the since is used here, so the built-in subscription after this has none to answer again
        const since = message.since
        let joinedHere = false
        for (const room of message.subscribe) {
          let members = rooms.get(room)
          if (members === undefined) rooms.set(room, members = new Map())
          if (members.has(connection.id)) continue
          // what presence shows of this connection: its name (the page's member list asks presence)
          connection.set(Presence.info, { name })
          yield* connection.subscribe([room], { since })
          joinedHere = true
          members.set(connection.id, name)
          yield* connection.send({
            command: "chat",
            headers: new Map([["event", "members"], ["room", room]]),
            body: Array.from(members.values()).join("\n")
          })
          yield* announce(room, "join", name)
        }
        if (joinedHere) exchange.setHeader(Message.Header.since, undefined)
        if (message.publish.length > 0) exchange.setHeader("from", name)
        for (const room of message.unsubscribe) yield* leave(connection, room)
      }),
    onClose: (connection) =>
      Effect.forEach(Array.from(rooms.keys()), (room) => leave(connection, room), { discard: true })
  }
}))
