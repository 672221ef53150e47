/**
 * The server's side of tokens (Tokens.ts): the connection token of a request
 * (`?token=` or the `authorization` header) checked before any connection
 * exists, or the first message's (`token` command); what its claims set on
 * the connection (user, presence info) and subscribe; the `refresh` frame
 * before it expires and the close (4003) when no fresh one came; a fresh
 * token taken over the connection; subscription tokens for private channels
 * and the users of user-limited channels (`chat#42,43`).
 */
import { Effect } from "effect"
import type { Admission } from "../../Authorization.ts"
import type { ChannelId } from "../../Channel.ts"
import * as Connection from "../../Connection.ts"
import type { Frame } from "../../Frame.ts"
import type { Hub } from "../../Hub.ts"
import type * as Message from "../../Message.ts"
import { Rejection } from "../../Rejection.ts"
import type * as Tokens from "../../Tokens.ts"
import type { Peer } from "../../Transport.ts"
import { CloseCode, Command, Header, HttpQuery, TokenHeader } from "../wire/protocol.ts"
import type { LiveConnection } from "./connection.ts"

/** The claims of the token a connection was admitted or last refreshed with. */
export const claimsKey: Connection.Key<Tokens.Claims> = Connection.key<Tokens.Claims>("effect-lhttp/Tokens/claims")

/** A request's connection token: `?token=` in its URL, else the bearer token of its `authorization` header. */
export const tokenOf = (peer: Peer): string | undefined => {
  const query = peer.url.indexOf("?")
  if (query !== -1) {
    const token = new URLSearchParams(peer.url.slice(query + 1)).get(HttpQuery.token)
    if (token !== null) return token
  }
  const header = peer.requestHeaders.authorization
  return header !== undefined && header.slice(0, 7).toLowerCase() === "bearer " ? header.slice(7).trim() : undefined
}

const admitClaims = (set: Admission["set"], claims: Tokens.Claims): void => {
  set(Connection.user, claims.user)
  set(claimsKey, claims)
  if (claims.info !== undefined) set(Connection.info, claims.info)
}

const tokenAnswer = (id: string | undefined, claims: Tokens.Claims): Frame => {
  const headers = new Map<string, string>()
  if (id !== undefined) headers.set(Header.id, id)
  headers.set(TokenHeader.user, claims.user)
  if (claims.expires !== undefined) headers.set(TokenHeader.expires, String(claims.expires))
  return { command: Command.token, headers, body: "" }
}

const refreshFrame = (expires: number): Frame => ({
  command: Command.refresh,
  headers: new Map([[TokenHeader.expires, String(expires)]]),
  body: ""
})

// setTimeout's longest wait (2^31 - 1 ms, about 24.8 days): a longer one is waited in steps
const longestWait = 2 ** 31 - 1

const forbidden = (reason: string, message: string) => new Rejection({ status: 403, reason, message })

/**
 * The users a user-limited channel admits: the comma-separated list after its
 * last `#` (`chat#42,43`); undefined for a channel without one.
 */
export const channelUsers = (channel: string): ReadonlyArray<string> | undefined => {
  const mark = channel.lastIndexOf("#")
  return mark === -1 ? undefined : channel.slice(mark + 1).split(",")
}

/** What the server does with tokens and user-limited channels; undefined parts are off. */
export interface Options {
  readonly tokens: Tokens.Tokens | undefined
  readonly userLimitedChannels: boolean
  readonly hub: Hub["Service"]
}

/** Makes the server's handling of tokens. */
export const make = (options: Options) => {
  const { hub, tokens, userLimitedChannels } = options
  const timers = new Map<LiveConnection, ReturnType<typeof setTimeout>>()

  const clear = (connection: LiveConnection) => {
    const timer = timers.get(connection)
    if (timer === undefined) return
    clearTimeout(timer)
    timers.delete(connection)
  }

  // the refresh frame before the token expires (at most half its remaining life before), then the close at `exp`
  const schedule = (connection: LiveConnection, claims: Tokens.Claims) => {
    clear(connection)
    const expires = claims.expires
    if (expires === undefined || tokens === undefined) return
    const left = expires - Date.now()
    if (left <= 0) return connection.closeNow(CloseCode.tokenExpired, "token expired")
    const refreshIn = left - Math.min(tokens.refreshBefore, left / 2)
    const at = (wait: number, then: () => void) => {
      timers.set(
        connection,
        setTimeout(() => {
          timers.delete(connection)
          then()
        }, Math.min(wait, longestWait))
      )
    }
    if (refreshIn > longestWait) return at(longestWait, () => schedule(connection, claims))
    at(refreshIn, () => {
      if (connection.get(claimsKey) !== claims) return
      connection.write(refreshFrame(expires))
      at(expires - Date.now(), () => {
        if (connection.get(claimsKey) === claims) connection.closeNow(CloseCode.tokenExpired, "token expired")
      })
    })
  }

  // a `token` message: the first of a connection that needs one, or a fresh token of one that has a user
  const take = (connection: LiveConnection, message: Message.Notify | Message.Request) =>
    Effect.suspend(() => {
      if (tokens === undefined) return Effect.fail(unknownTokens)
      const id = message._tag === "Request" ? message.id : undefined
      return tokens.verify(message.body.trim()).pipe(
        Effect.flatMap((claims) => {
          const user = connection.user
          if (user !== undefined && user !== claims.user) {
            return Effect.fail(forbidden("TokenUserChanged", "a fresh token names the connection's user"))
          }
          admitClaims((key, value) => connection.set(key, value), claims)
          schedule(connection, claims)
          return Effect.sync(() => connection.write(tokenAnswer(id, claims)))
        })
      )
    })

  const unknownTokens = new Rejection({
    status: 404,
    reason: "UnknownCommand",
    message: "this server takes no tokens"
  })

  return {
    /** Whether the server takes tokens (the `token` command is then its own). */
    enabled: tokens !== undefined,

    /** Whether publishes are checked (user-limited channels): no publish skips {@link checkPublish} then. */
    checksPublish: userLimitedChannels,

    /**
     * Checks a request's connection token before any connection exists and
     * sets what it says; a request without one passes (its first message
     * must then be a token when tokens are required).
     */
    admit: (peer: Peer, admission: Admission): Effect.Effect<void, Rejection> => {
      if (tokens === undefined) return Effect.void
      const token = tokenOf(peer)
      if (token === undefined) return Effect.void
      return Effect.map(tokens.verify(token), (claims) => admitClaims(admission.set, claims))
    },

    /** Whether a connection must still give a token as its first message. */
    needsToken: (connection: LiveConnection): boolean =>
      tokens !== undefined && tokens.required && connection.get(claimsKey) === undefined,

    /** Takes a `token` message (a first message, or a fresh token). */
    take,

    /** After the connection opened: the channels of its token subscribed, and its expiry watched. */
    open: (connection: LiveConnection): Effect.Effect<void, Rejection> =>
      Effect.suspend(() => {
        const claims = connection.get(claimsKey)
        if (claims === undefined) return Effect.void
        schedule(connection, claims)
        return claims.channels.length === 0 ? Effect.void : hub.subscribe(connection, claims.channels)
      }),

    /**
     * Checks a subscribe to private channels (a subscription token for each:
     * `sub` the connection's user, `channel` the channel) and to user-limited
     * ones (the connection's user among the channel's).
     */
    checkSubscribe: (
      connection: LiveConnection,
      channels: ReadonlyArray<ChannelId>,
      headers: ReadonlyMap<string, string>
    ): Effect.Effect<void, Rejection> | undefined => {
      if (!userLimitedChannels && (tokens === undefined || tokens.privatePrefixes.length === 0)) return undefined
      let privates: Array<ChannelId> | undefined
      for (const channel of channels) {
        if (userLimitedChannels) {
          const users = channelUsers(channel)
          if (users !== undefined && (connection.user === undefined || !users.includes(connection.user))) {
            return Effect.fail(forbidden("NotChannelUser", `only its users may subscribe to ${channel}`))
          }
        }
        if (tokens?.isPrivate(channel) === true) (privates ??= []).push(channel)
      }
      if (privates === undefined || tokens === undefined) return undefined
      const token = headers.get(TokenHeader.token)
      if (token === undefined || token === "") {
        return Effect.fail(
          forbidden("SubscriptionTokenRequired", `a subscription token is required for ${privates[0]}`)
        )
      }
      return Effect.flatMap(tokens.verify(token), (claims) => {
        if (connection.user === undefined || claims.user !== connection.user) {
          return Effect.fail(forbidden("SubscriptionTokenRefused", "the subscription token is for another user"))
        }
        const other = privates.find((channel) => channel !== claims.channel)
        return other === undefined
          ? Effect.void
          : Effect.fail(forbidden("SubscriptionTokenRefused", `the subscription token is not for ${other}`))
      })
    },

    /** Checks a publish to user-limited channels: only their users (a backend always). */
    checkPublish: (connection: LiveConnection, channels: ReadonlyArray<ChannelId>): Rejection | undefined => {
      if (!userLimitedChannels) return undefined
      for (const channel of channels) {
        const users = channelUsers(channel)
        if (users !== undefined && (connection.user === undefined || !users.includes(connection.user))) {
          return forbidden("NotChannelUser", `only its users may publish to ${channel}`)
        }
      }
      return undefined
    },

    /** The connection ended: its expiry is no longer watched. */
    close: clear
  }
}

/** The server's handling of tokens. */
export type ServerTokens = ReturnType<typeof make>
