/**
 * The browser SDK's session: the shared session state (internal/wire/sessionState.ts)
 * and where its key is kept across page loads (option `sessionStorage`).
 */
import { type Change, notFound, SessionState } from "../internal/wire/sessionState.ts"
import { report } from "./httpLink.ts"
import type { LhttpError } from "./message.ts"
import type { LhttpOptions, Session, SessionChange } from "./options.ts"

/** What `on_session`'s context says of a change. */
export interface Told {
  readonly change: SessionChange
  readonly session: Session | undefined
  readonly key: string
  readonly reason?: string
  readonly error?: LhttpError
}

const changeOf = (change: Change): SessionChange =>
  change._tag === "Created"
    ? "created"
    : change._tag === "Updated"
    ? "updated"
    : change._tag === "Restored"
    ? "restored"
    : "closed"

/** The session of one client, and its key in `sessionStorage`. */
export class SessionKeeper {
  /** What the server last said of the session, the key to restore, the restore in flight. */
  readonly state: SessionState
  readonly #storage: LhttpOptions["sessionStorage"]
  readonly #name: string
  #session: Session | undefined

  /** Reads the key to restore: option `session`, else the one in `sessionStorage`. */
  constructor(options: LhttpOptions) {
    this.#storage = options.sessionStorage ?? undefined
    this.#name = String(options.sessionStorageKey ?? "lhttp.session")
    const saved = options.session ?? this.#load()
    this.state = new SessionState(saved == null ? undefined : String(saved))
  }

  /** The session as the server last told it (frozen), or undefined. */
  get session(): Session | undefined {
    return this.#session
  }

  /**
   * After a change of the state: the session as it is now, its key saved (or
   * removed), and what `on_session` is told (`error`: the one that refused a
   * restore).
   */
  changed(change: Change, error?: LhttpError): Told {
    const current = this.state.current
    const session = current === undefined ? undefined : Object.freeze({ key: current.key, data: current.data })
    this.#session = session
    if (change._tag !== "Closed") {
      this.#save(change.session.key)
      return { change: changeOf(change), session, key: change.session.key }
    }
    this.#save(undefined)
    const reason = change.reason === "NotFound" ? notFound : change.reason
    return { change: "closed", session, key: change.key, reason, ...(error === undefined ? {} : { error }) }
  }

  #load(): string | undefined {
    try {
      return this.#storage?.getItem(this.#name) ?? undefined
    } catch {
      return undefined // storage refused (a browser's private mode): nothing saved
    }
  }

  #save(key: string | undefined): void {
    const storage = this.#storage
    if (storage === undefined) return
    try {
      if (key === undefined) storage.removeItem(this.#name)
      else storage.setItem(this.#name, key)
    } catch (error) {
      report(error)
    }
  }
}
