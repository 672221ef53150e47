/**
 * The message being processed, as processors and filters see it (the
 * `Exchange`): the decoded message, what steps changed of it, the reply being
 * built. Its headers are the decoded message's until a step changes one: then
 * the exchange works on a copy, and the decoded message is never written.
 */
import { Effect, Result } from "effect"
import type { Exchange } from "../../Exchange.ts"
import * as Frame from "../../Frame.ts"
import * as Message from "../../Message.ts"
import type * as Multipart from "../../Multipart.ts"
import type { ProtocolError } from "../../ProtocolError.ts"
import type { LiveConnection } from "./connection.ts"

const noParts: ReadonlyArray<Multipart.Part> = []
const { Header } = Message

/** The message being processed. */
export class LiveExchange implements Exchange<unknown> {
  readonly connection: LiveConnection
  readonly command: string
  readonly id: string | undefined
  body: unknown
  text: string
  /** The message as last classified. */
  #message: Message.Notify | Message.Request
  /** The headers as changed, once a step changed one (a copy of the decoded message's). */
  #headers: Map<string, string> | undefined
  /** A built-in header (or a multipart body) changed since the last classification. */
  stale = false
  /** The message changed since it was parsed (then it is validated before it is published). */
  changed = false
  replyCommand: string | undefined
  replyHeaders: Map<string, string> | undefined
  isDropped = false
  /** A reply with the message's `id` was sent (then its publish is not acknowledged besides). */
  answered = false

  constructor(connection: LiveConnection, message: Message.Notify | Message.Request) {
    this.connection = connection
    this.#message = message
    this.command = message.command
    this.body = message.body
    this.text = message.body
    this.id = message._tag === "Request" ? message.id : undefined
  }

  get headers(): ReadonlyMap<string, string> {
    return this.#headers ?? this.#message.headers
  }

  /**
   * The message, re-classified first when a step changed what it derives
   * from; when that fails, the last classification (the failure answers the
   * message at the next step that reads it).
   */
  get message(): Message.Notify | Message.Request {
    if (this.stale) this.current()
    return this.#message
  }

  get parts(): ReadonlyArray<Multipart.Part> {
    return this.message.multipart ?? noParts
  }

  header(name: string): string | undefined {
    return this.headers.get(name)
  }

  setHeader(name: string, value: string | undefined): void {
    this.changed = true
    if (Message.isBuiltinName(name)) this.stale = true
    const headers = (this.#headers ??= new Map(this.#message.headers))
    if (value === undefined) headers.delete(name)
    else headers.set(name, value)
  }

  setCommand(command: string): void {
    this.changed = true
    this.replyCommand = command
  }

  setBody(body: string): void {
    this.text = body
    if (this.headers.has(Header.multipart)) this.stale = true
  }

  addHeader(name: string, value: string): void {
    ;(this.replyHeaders ??= new Map()).set(name, value)
  }

  send(body: string): Effect.Effect<void, ProtocolError> {
    return Effect.suspend(() => {
      const headers = this.replyHeaders ?? new Map<string, string>()
      this.replyHeaders = undefined
      if (this.id !== undefined) {
        headers.set(Header.id, this.id)
        this.answered = true
      }
      return this.connection.send({ command: this.replyCommand ?? this.command, headers, body })
    })
  }

  drop(): void {
    this.isDropped = true
  }

  /** The frame published for this message: the message as changed. */
  published(): Frame.Frame {
    return { command: this.replyCommand ?? this.command, headers: this.headers, body: this.text }
  }

  /** The text published for this message: validated when a step changed it. */
  publishedText(): Result.Result<string, ProtocolError> {
    const frame = this.published()
    if (!this.changed) return Result.succeed(Frame.render(frame))
    const checked = Frame.validate(frame)
    return Result.isFailure(checked) ? Result.fail(checked.failure) : Result.succeed(Frame.render(frame))
  }

  /** The message, re-classified first when a step changed what it derives from. */
  current(): Result.Result<Message.Notify | Message.Request, ProtocolError> {
    if (!this.stale) return Result.succeed(this.#message)
    const message = Message.classify(this.published())
    if (Result.isFailure(message)) return message
    this.stale = false
    this.#message = message.success
    return message
  }
}
