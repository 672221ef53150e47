/**
 * The browser SDK's tokens (for a server with the `tokens` option). Connection
 * tokens (option `getToken`): the token of each connection attempt, put in its
 * URL as `?token=`, and the server's `refresh` frame, which the client answers
 * with a fresh token. Subscription tokens (option `getSubscriptionToken`): the
 * `token` header of a subscribe to a private channel.
 */
import { Command, Header, HttpQuery, TokenHeader } from "../internal/wire/protocol.ts"
import type { Message } from "./message.ts"

/** What gives the connection token: option `getToken`. */
export type GetToken = () => string | Promise<string>

/** The token `getToken` gives; rejects with what it threw, or a `TypeError` when it gave no string. */
export const tokenOf = async (getToken: GetToken): Promise<string> => {
  const token: unknown = await getToken()
  if (typeof token !== "string") throw new TypeError(`getToken gave ${typeof token}, not a token`)
  return token
}

/** What gives a private channel's subscription token: option `getSubscriptionToken`. */
export type GetSubscriptionToken = (channel: string) => string | Promise<string>

/**
 * The subscription token `getSubscriptionToken` gives for `channel`; rejects with what it threw,
 * or a `TypeError` when it gave no string.
 */
export const subscriptionTokenOf = async (get: GetSubscriptionToken, channel: string): Promise<string> => {
  const token: unknown = await get(channel)
  if (typeof token !== "string") throw new TypeError(`getSubscriptionToken gave ${typeof token}, not a token`)
  return token
}

/** `url` with `?token=<token>`; `url` as it is without a token. */
export const withToken = (url: string, token: string | undefined): string => {
  if (token === undefined) return url
  const target = new URL(url, (globalThis.location as Location | undefined)?.href)
  target.searchParams.set(HttpQuery.token, token)
  return target.href
}

/**
 * Whether a frame is the server's `refresh` (with `expires`): not a delivery
 * that a publisher happened to name so.
 */
export const isRefresh = (message: Message): boolean =>
  message.command === Command.refresh && message.headers.has(TokenHeader.expires) &&
  !message.headers.has(Header.publish)
