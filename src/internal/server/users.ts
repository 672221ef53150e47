/**
 * The connections of each user on this server: the index the server API
 * finds a user's connections by, kept as `Connection.user` is set on a
 * connection (by an `authenticate` hook, a token, a processor) and as it ends.
 */
/** What a tap of a user's connections is told: the connection's id and the text of a frame it was sent. */
export type Tap = (connection: string, text: string) => void

/** Each user's open connections here (`C`: the server's connections), and the taps on users' frames. */
export class Users<C> {
  readonly #byUser = new Map<string, Set<C>>()
  readonly #taps = new Map<string, Set<Tap>>()

  /** Whether any user's frames are tapped (checked on each frame a connection is sent: one comparison). */
  get tapping(): boolean {
    return this.#taps.size > 0
  }

  /** Taps the frames sent to `user`'s connections here, until the returned function is called. */
  tap(user: string, tap: Tap): () => void {
    let taps = this.#taps.get(user)
    if (taps === undefined) this.#taps.set(user, taps = new Set())
    taps.add(tap)
    return () => {
      taps.delete(tap)
      if (taps.size === 0 && this.#taps.get(user) === taps) this.#taps.delete(user)
    }
  }

  /** A frame was sent to a connection of `user` (undefined: of none): its taps are told. */
  sent(user: string | undefined, connection: string, text: string): void {
    if (user === undefined) return
    const taps = this.#taps.get(user)
    if (taps !== undefined) { for (const tap of taps) tap(connection, text) }
  }

  /** The connection now belongs to `user` (undefined: to none), and no more to `previous`. */
  assign(connection: C, previous: string | undefined, user: string | undefined): void {
    if (previous === user) return
    if (previous !== undefined) this.remove(connection, previous)
    if (user === undefined) return
    let connections = this.#byUser.get(user)
    if (connections === undefined) this.#byUser.set(user, connections = new Set<C>())
    connections.add(connection)
  }

  /** The connection of `user` ended (or belongs to another). */
  remove(connection: C, user: string): void {
    const connections = this.#byUser.get(user)
    if (connections?.delete(connection) === true && connections.size === 0) this.#byUser.delete(user)
  }

  /** The user's open connections here. */
  of(user: string): ReadonlyArray<C> {
    const connections = this.#byUser.get(user)
    return connections === undefined ? [] : Array.from(connections)
  }
}
