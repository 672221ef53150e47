/**
 * The connections of each user on this server: the index the server API
 * finds a user's connections by, kept as `Connection.user` is set on a
 * connection (by an `authenticate` hook, a token, a processor) and as it ends.
 */
/** Each user's open connections here (`C`: the server's connections). */
export class Users<C> {
  readonly #byUser = new Map<string, Set<C>>()

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
