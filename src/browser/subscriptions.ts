/**
 * What the browser SDK subscribed, to subscribe again on each new connection:
 * the app's own subscription messages, minus what must not be repeated, each
 * channel since its known position (internal/wire/positions.ts) or from now;
 * a private channel's (`{ token: true }`) in a message of its own, with a
 * fresh subscription token.
 */
import { channelsOf, type Positions } from "../internal/wire/positions.ts"
import { Command, Header, sinceNow, TokenHeader, upstreamReplyHeader } from "../internal/wire/protocol.ts"
import { encode, Message } from "./message.ts"

// headers that must not be repeated when a subscription is re-sent after a reconnect
const notResent: ReadonlyArray<string> = [
  Header.publish,
  Header.unsubscribe,
  Header.id,
  Header.upstream,
  upstreamReplyHeader
]

/** One subscription message, as it is sent again. */
interface Subscription {
  readonly channels: Set<string>
  readonly command: string
  readonly headers: ReadonlyMap<string, string>
  readonly body: string
  /** The message had its own `since` (the app asked for positions, or a recovery, itself). */
  readonly ownSince: boolean
  /**
   * A private channel's (`{ token: true }`, one channel): its `token` header is not kept but
   * given fresh (option `getSubscriptionToken`) each time it is sent.
   */
  readonly withToken: boolean
}

/** Whether a message subscribes without `since`: the client asks for positions for it. */
const subscribesPlain = (message: Message): boolean => {
  const subscribe = message.headers.get(Header.subscribe)
  return subscribe !== undefined && !message.headers.has(Header.since) && channelsOf(subscribe).length > 0
}

/**
 * A copy of `headers` where `since` (any the app gave is dropped) says `from`,
 * right after `subscribe`, which says `subscribe` (default: as it was).
 */
const asking = (headers: ReadonlyMap<string, string>, from: string, subscribe?: string) => {
  const copy = new Map<string, string>()
  for (const [name, value] of headers) {
    if (name === Header.since) continue
    copy.set(name, name === Header.subscribe ? subscribe ?? value : value)
    if (name === Header.subscribe) copy.set(Header.since, from)
  }
  return copy
}

/** A copy of a message that subscribes, with `since:now` right after its `subscribe`. */
const withSinceNow = (message: Message): Message =>
  new Message(message.command, asking(message.headers, sinceNow), message.body)

/** `headers` with `token:<token>` last (none when `token` is undefined). */
const withTokenHeader = (headers: Map<string, string>, token: string | undefined): Map<string, string> => {
  headers.delete(TokenHeader.token)
  if (token !== undefined) headers.set(TokenHeader.token, token)
  return headers
}

/** The subscriptions of one client, oldest first. */
export class Subscriptions {
  #list: Array<Subscription> = []

  /** The channels subscribed to. */
  get channels(): Array<string> {
    return this.#list.flatMap((subscription) => Array.from(subscription.channels))
  }

  /** Whether a channel is subscribed to. */
  has(channel: string): boolean {
    return this.#list.some((subscription) => subscription.channels.has(channel))
  }

  /** The channels of the private subscriptions (`{ token: true }`), whose tokens each new connection asks. */
  get privateChannels(): Array<string> {
    return this.#list.flatMap((subscription) => subscription.withToken ? Array.from(subscription.channels) : [])
  }

  /** Whether the app gave the `since` of the channel's subscription itself. */
  askedByApp(channel: string): boolean {
    return this.#list.some((subscription) => subscription.ownSince && subscription.channels.has(channel))
  }

  /**
   * Notes what a message subscribes to and unsubscribes from, in the server's
   * order: subscribe, then unsubscribe (`ownSince`: the message had its own
   * `since`; `withToken`: a private channel's). Returns the channels it
   * unsubscribes from, and whether the message does nothing but subscribe (it
   * is sent again anyway).
   */
  track(
    message: Message,
    ownSince: boolean,
    withToken = false
  ): { readonly unsubscribed: Array<string>; readonly onlySubscribes: boolean } {
    const { headers } = message
    const subscribe = channelsOf(headers.get(Header.subscribe))
    const unsubscribed = channelsOf(headers.get(Header.unsubscribe))
    if (subscribe.length > 0) {
      for (const subscription of this.#list) for (const channel of subscribe) subscription.channels.delete(channel)
      const kept = new Map(headers)
      for (const name of notResent) kept.delete(name)
      // asked by this client: again on the next connection, now or since a position
      if (!ownSince) kept.delete(Header.since)
      if (withToken) kept.delete(TokenHeader.token)
      const published = headers.has(Header.publish)
      if (published) kept.delete(Header.multipart)
      this.#list.push({
        channels: new Set(subscribe),
        command: message.command,
        headers: kept,
        body: published ? "" : message.body,
        ownSince,
        withToken
      })
    }
    for (const subscription of this.#list) for (const channel of unsubscribed) subscription.channels.delete(channel)
    this.#list = this.#list.filter((subscription) => subscription.channels.size > 0)
    return { unsubscribed, onlySubscribes: subscribe.length > 0 && !notResent.some((name) => headers.has(name)) }
  }

  /**
   * Notes a message the app sends: one that subscribes without `since` asks
   * for positions (`since:now` right after its `subscribe`); the positions of
   * the channels it unsubscribes from are forgotten. Returns the message as
   * it goes, its text, and whether it does nothing but subscribe.
   */
  note(
    message: Message,
    positions: Positions
  ): { readonly sending: Message; readonly text: string; readonly onlySubscribes: boolean } {
    const ownSince = !subscribesPlain(message)
    const sending = ownSince ? message : withSinceNow(message)
    const text = encode(sending)
    const { onlySubscribes, unsubscribed } = this.track(sending, ownSince)
    for (const channel of unsubscribed) positions.forget(channel)
    return { sending, text, onlySubscribes }
  }

  /**
   * Notes a private subscription (`{ token: true }`): one subscription a
   * channel, the app's message with `subscribe:<channel>` (and `since:now`
   * right after it, unless the message has its own `since`), without a token
   * yet. Returns those messages, to send each with its token. Throws a
   * `TypeError` for a message that subscribes to nothing, or does more than
   * subscribe (a `publish`, `unsubscribe` or `id` would go once a channel).
   */
  notePrivate(message: Message): Array<Message> {
    const channels = channelsOf(message.headers.get(Header.subscribe))
    if (channels.length === 0) throw new TypeError("a subscription with a token subscribes to a channel")
    const extra = notResent.find((name) => message.headers.has(name))
    if (extra !== undefined) throw new TypeError(`a subscription with a token only subscribes (not ${extra})`)
    return channels.map((channel) => {
      const headers = new Map(message.headers).set(Header.subscribe, channel)
      headers.delete(TokenHeader.token)
      const one = new Message(message.command, headers, message.body)
      const ownSince = !subscribesPlain(one)
      const sending = ownSince ? one : withSinceNow(one)
      this.track(sending, ownSince, true)
      return sending
    })
  }

  /**
   * The messages that subscribe a new connection again. A history channel
   * with a known position is subscribed since it: in its subscription's own
   * message when it is its only channel, else in a `subscribe` message of its
   * own (with the subscription's `token` header, if the app gave one: a
   * private channel's); the other channels as the app asked (its own
   * `since`), or from now. A private subscription (`{ token: true }`) goes
   * with `token:<tokens.get(channel)>` (none when its token could not be had).
   */
  again(positions: Positions, tokens: ReadonlyMap<string, string | undefined> = new Map()): Array<Message> {
    const messages: Array<Message> = []
    for (const subscription of this.#list) {
      const { fresh, positioned } = positions.split(subscription.channels)
      // a private subscription has one channel: its own message, alone or fresh below
      const token = subscription.withToken
        ? tokens.get(Array.from(subscription.channels)[0]!)
        : subscription.headers.get(TokenHeader.token)
      const headersOf = (from: string, channels: string) => {
        const headers = asking(subscription.headers, from, channels)
        return subscription.withToken ? withTokenHeader(headers, token) : headers
      }
      const alone = positioned.length === 1 && fresh.length === 0 ? positioned[0] : undefined
      if (alone !== undefined) {
        messages.push(new Message(subscription.command, headersOf(alone[1], alone[0]), subscription.body))
        continue
      }
      for (const [channel, since] of positioned) {
        const headers = new Map([[Header.subscribe, channel], [Header.since, since]])
        messages.push(new Message(Command.subscribe, withTokenHeader(headers, token), ""))
      }
      if (fresh.length > 0) {
        const from = subscription.headers.get(Header.since) ?? sinceNow
        messages.push(new Message(subscription.command, headersOf(from, fresh.join(" ")), subscription.body))
      }
    }
    return messages
  }
}
