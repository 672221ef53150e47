/**
 * The session as a client keeps it (docs/requests-and-sessions.md): what the
 * server last said of it (`session` frames), the key to restore on each new
 * connection, and the restore in flight. Both clients keep theirs with it and
 * tell its changes in their own words.
 */
import { Command, Header, SessionHeader } from "./protocol.ts"

/** A session: its key and its data (the `session` frame's body: JSON, or the text itself when it is not JSON). */
export interface Session {
  readonly key: string
  readonly data: unknown
}

/**
 * Why a session is gone: the server closed it (`closed:<key>`), a restore was
 * refused `SessionNotFound`, or the client was told to forget it.
 */
type ClosedReason = "Closed" | "NotFound" | "Cleared"

/** A change of the session. */
export type Change =
  | { readonly _tag: "Created" | "Updated" | "Restored"; readonly session: Session }
  | { readonly _tag: "Closed"; readonly key: string; readonly reason: ClosedReason }

/** What the state reads of a received frame. */
interface Received {
  readonly command: string
  readonly headers: ReadonlyMap<string, string>
  readonly body: string
}

/** The reason of the error frame that refuses a restore of a session the server does not have. */
export const notFound = "SessionNotFound"

/**
 * A session frame's data: its body as JSON, `null` when empty, the text itself
 * when it is not JSON (kept, never dropped).
 */
export const dataOf = (body: string): unknown => {
  if (body === "") return null
  try {
    return JSON.parse(body)
  } catch {
    return body
  }
}

const hasLineBreak = (text: string) => text.includes("\r") || text.includes("\n")

/** The session state of one client. */
export class SessionState {
  #current: Session | undefined
  #key: string | undefined
  #restoring: { readonly id: string; readonly key: string } | undefined

  /** `key`: a session to restore on the first connection (one kept from before), if any. */
  constructor(key?: string) {
    this.#key = key === undefined || key === "" ? undefined : key
  }

  /** The session as the server last told it. */
  get current(): Session | undefined {
    return this.#current
  }

  /** The key to restore on the next new connection: the session's, or one given and not refused yet. */
  get key(): string | undefined {
    return this.#key
  }

  /** The id of the restore in flight. */
  get restoring(): string | undefined {
    return this.#restoring?.id
  }

  /**
   * The frame that restores the session on a new connection (`session` with
   * `restore:<key>` and `id:<id>`), now in flight; undefined when there is no
   * key. A key that cannot be written in a header is no session the server
   * has: it is forgotten (`change`).
   */
  restore(id: string): {
    readonly frame?: { readonly command: string; readonly headers: ReadonlyMap<string, string>; readonly body: string }
    readonly change?: Change
  } {
    const key = this.#key
    if (key === undefined) return {}
    if (hasLineBreak(key)) return { change: this.#forget("NotFound") }
    this.#restoring = { id, key }
    return {
      frame: { command: Command.session, headers: new Map([[SessionHeader.restore, key], [Header.id, id]]), body: "" }
    }
  }

  /** The restore `id` is over (answered, failed or given up): its answer is no longer awaited. */
  settled(id: string): void {
    if (this.#restoring?.id === id) this.#restoring = undefined
  }

  /** The connection closed: no restore is in flight. */
  abandon(): void {
    this.#restoring = undefined
  }

  /**
   * An error answered the restore `id`: `SessionNotFound` forgets the session
   * (unless its key changed meanwhile); any other keeps the key for the next
   * connection.
   */
  refused(id: string, reason: string): Change | undefined {
    const restoring = this.#restoring
    if (restoring?.id !== id) return undefined
    this.#restoring = undefined
    return reason === notFound && this.#key === restoring.key ? this.#forget("NotFound") : undefined
  }

  /** Forgets the session here (the server is not told); undefined when there was none. */
  clear(): Change | undefined {
    return this.#key === undefined ? undefined : this.#forget("Cleared")
  }

  /**
   * Keeps what a `session` frame says (`id`: its `id` header, if any): a
   * closed session (`closed:<key>`, when it is this client's), or a session
   * created, updated, or restored (the answer to the restore in flight).
   */
  observe(frame: Received): Change | undefined {
    if (frame.command !== Command.session) return undefined
    const closed = frame.headers.get(SessionHeader.closed)
    if (closed !== undefined) return closed === this.#key ? this.#forget("Closed") : undefined
    const key = frame.headers.get(SessionHeader.key)
    if (key === undefined || key === "") return undefined
    const id = frame.headers.get(Header.id)
    const restored = id !== undefined && id === this.#restoring?.id
    if (restored) this.#restoring = undefined
    const session: Session = { key, data: dataOf(frame.body) }
    const known = this.#current?.key === key
    this.#current = session
    this.#key = key
    return { _tag: restored ? "Restored" : known ? "Updated" : "Created", session }
  }

  #forget(reason: ClosedReason): Change {
    const key = this.#key ?? ""
    this.#current = undefined
    this.#key = undefined
    return { _tag: "Closed", key, reason }
  }
}
