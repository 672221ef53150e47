/**
 * Who may connect, and who may do what where: what the server's hooks see.
 * `authenticate` (at the connection's request) and `authenticateMessage`
 * (at its first message) admit a connection and may set its principal through
 * an {@link Admission}; `authorize` decides on every subscribe, publish and
 * unsubscribe, described by an {@link Authorization}. The hooks themselves are
 * options of `LhttpServer`.
 *
 * @since 0.1.0
 */
import type * as Connection from "./Connection.ts"

/**
 * What `authorize` decides on: the action, its channels, and the connection
 * asking (`undefined` for `POST /publish`, a backend).
 *
 * @since 0.1.0
 * @category models
 */
export interface Authorization {
  /** `send`: a client addresses a user or a connection (the `send` command); its `channels` are none. */
  readonly action: "subscribe" | "publish" | "unsubscribe" | "send"
  readonly channels: ReadonlyArray<string>
  /** The connection asking; `undefined` for `POST /publish`. */
  readonly connection: Connection.Connection | undefined
  /** For `send`: the user addressed. */
  readonly user?: string | undefined
  /** For `send`: the connection addressed. */
  readonly target?: string | undefined
}

/**
 * What `authenticate` and `authenticateMessage` may set on the connection
 * they admit.
 *
 * @since 0.1.0
 * @category models
 */
export interface Admission {
  /** Sets per-connection data, read by processors and filters with `connection.get(key)`. */
  readonly set: <A>(key: Connection.Key<A>, value: A) => void
}

/**
 * The per-connection data `authenticate` set for a connection it admitted
 * (`undefined`: none), which a transport hands to `LhttpServer.accept`.
 *
 * @since 0.1.0
 * @category models
 */
export type Admitted = ReadonlyMap<string, unknown> | undefined
