/**
 * One incoming message while the server processes it, and the connection it
 * came on: what processors and filters read and change. It gives what the
 * original lhttp's WsHandler gave (command, headers, body, multipart parts,
 * send) plus a way to stop processing.
 *
 * The message comes decoded (`message`): its channel lists validated, its
 * `since` read, its upstream target split, its multipart parts cut, so that
 * a processor reads them rather than parsing headers again.
 *
 * Changing the message (`setHeader`, `setCommand`, `setBody`) changes what
 * runs after: the built-in `subscribe` / `publish` / `unsubscribe` headers are
 * read after the processor, and what is published is the message as changed.
 *
 * @since 0.1.0
 */
import type { Effect } from "effect"
import type { Connection } from "./Connection.ts"
import type * as Message from "./Message.ts"
import type { Part } from "./Multipart.ts"
import type { ProtocolError } from "./ProtocolError.ts"

/**
 * An incoming message being processed.
 *
 * ```ts
 * const Join = Processor.make("join")
 * const JoinLive = Join.toLayer({
 *   // `subscribe:<room>` with `since:<epoch>:<offset>`: the rooms, validated, and the position, read
 *   onMessage: ({ connection, message }) => connection.subscribe(message.subscribe, { since: message.since })
 * })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Exchange<Body = string> {
  /** The connection the message came on. */
  readonly connection: Connection
  /**
   * The message, decoded: its `subscribe`, `publish` and `unsubscribe`
   * channels (validated), its `since`, `upstream` and `multipart` parts, its
   * `id` when it is a `Request`. A step that changes a built-in header with
   * `setHeader` (or the body of a multipart message) has it decoded again
   * when it is next read; should that fail, it stays as last decoded, and the
   * message is refused at its next step.
   */
  readonly message: Message.Notify | Message.Request
  /** The message's command as received. */
  readonly command: string
  /** The message's headers, as changed so far. */
  readonly headers: ReadonlyMap<string, string>
  /** The body: decoded by the processor's Schema when it has one, else the text. */
  readonly body: Body
  /** The body's text, as changed so far. */
  readonly text: string
  /** The parts of a `multipart` message (empty otherwise). */
  readonly parts: ReadonlyArray<Part>
  /** The `id` header of a request, echoed by replies and error frames. */
  readonly id: string | undefined
  /** Reads a header of the message. */
  readonly header: (name: string) => string | undefined
  /** Changes a header of the message (`undefined` removes it), e.g. to cancel a publish. */
  readonly setHeader: (name: string, value: string | undefined) => void
  /** Sets the command of replies and of the copy that is published. */
  readonly setCommand: (command: string) => void
  /** Sets the body of the copy that is published. */
  readonly setBody: (body: string) => void
  /** Adds a header to the next reply (headers accumulate until it is sent). */
  readonly addHeader: (name: string, value: string) => void
  /**
   * Sends a reply frame on this connection: the command set by `setCommand`
   * (else the message's), the headers added since the last reply, the
   * message's `id` when it has one, and this body.
   */
  readonly send: (body: string) => Effect.Effect<void, ProtocolError>
  /** Stops processing this message: nothing after the current step runs. */
  readonly drop: () => void
  /** Whether `drop` was called. */
  readonly isDropped: boolean
}
