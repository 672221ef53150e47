/**
 * The channels the Effect client holds, and how a new connection gets them
 * back: the channels of `subscribe` (held: subscribed again after every
 * reconnect, asking for positions), those of frames given to `send` (noted,
 * never subscribed again), the positions of the history channels
 * (internal/wire/positions.ts: a new connection subscribes since them), and
 * what a resumed connection still has on the server.
 */
import { Effect, Result } from "effect"
import * as Channel from "../../Channel.ts"
import * as Frame from "../../Frame.ts"
import type * as Message from "../../Message.ts"
import { channelsOf, isUnasked, type Position, Positions } from "../wire/positions.ts"
import { Command, Header, sinceNow, TokenHeader } from "../wire/protocol.ts"
import { type ClientError, invalidFrame } from "./clientError.ts"

const subscribeFrame = (channels: string, since: string, token?: string) =>
  Frame.render(
    Frame.make(
      Command.subscribe,
      token === undefined
        ? { [Header.subscribe]: channels, [Header.since]: since }
        : { [Header.subscribe]: channels, [Header.since]: since, [TokenHeader.token]: token }
    )
  )

/** Where a private channel's subscription token comes from, asked on every subscribe (each reconnect too). */
export type TokenSource = Effect.Effect<string, unknown>

/**
 * Runs `f` with the channels of `subscribe`, `unsubscribe` or `publish`,
 * deduplicated and validated (protocol.md §4.1) before anything is sent: one
 * that is not valid, or none, fails `InvalidFrame`.
 */
export const withChannels = <A>(
  channels: Iterable<string>,
  f: (list: ReadonlyArray<string>) => Effect.Effect<A, ClientError>
): Effect.Effect<A, ClientError> =>
  Effect.suspend(() => {
    const list = Array.from(new Set(channels))
    for (const channel of list) {
      const checked = Channel.validate(channel)
      if (Result.isFailure(checked)) return Effect.fail(invalidFrame(checked.failure.message))
    }
    return list.length === 0 ? Effect.fail(invalidFrame("no channel")) : f(list)
  })

/** The channels of one client. */
export class Subscriptions {
  readonly #held = new Set<string>()
  // the subscription tokens of held private channels
  readonly #tokens = new Map<string, TokenSource>()
  // the channels subscribed by frames given to `send` (not subscribed again after a reconnect)
  readonly #sentTo = new Set<string>()
  // the last position of each subscribed history channel whose subscription has positions
  readonly #positions = new Positions()
  // the channels held when the last open connection went down: what a resumed one has on the server
  #heldAtDrop: ReadonlySet<string> = new Set()

  /** The channels subscribed with `subscribe`, subscribed again on every new connection. */
  get held(): ReadonlySet<string> {
    return this.#held
  }

  /** The last position of a subscribed history channel, if known. */
  position(channel: string): Position | undefined {
    return this.#positions.get(channel)
  }

  /** `subscribe`: the channels are held from now on (with where their subscription token comes from, if any). */
  hold(channels: Iterable<string>, token?: TokenSource): void {
    for (const channel of channels) {
      this.#held.add(channel)
      if (token === undefined) this.#tokens.delete(channel)
      else this.#tokens.set(channel, token)
    }
  }

  // the frame that subscribes a private channel: its own, with a token fresh from its source (none when the
  // source fails: the server refuses it, and the app sees the error frame)
  #subscribePrivate(channel: string, since: string): Effect.Effect<string> {
    const token = this.#tokens.get(channel)
    return token === undefined
      ? Effect.succeed(subscribeFrame(channel, since))
      : Effect.map(
        Effect.option(token),
        (fresh) => subscribeFrame(channel, since, fresh._tag === "Some" ? fresh.value : undefined)
      )
  }

  /** `unsubscribe`: the channels are no longer held, noted, nor positioned. */
  release(channels: Iterable<string>): void {
    for (const channel of channels) {
      this.#held.delete(channel)
      this.#tokens.delete(channel)
      this.#sentTo.delete(channel)
      this.#positions.forget(channel)
    }
  }

  /**
   * Notes the channels a frame given to `send` subscribes to and unsubscribes
   * from (in the server's order), before it goes: what answers it may come
   * before the send returns.
   */
  noteSent(frame: Frame.Frame): void {
    for (const channel of channelsOf(frame.headers.get(Header.subscribe))) this.#sentTo.add(channel)
    for (const channel of channelsOf(frame.headers.get(Header.unsubscribe))) {
      this.#sentTo.delete(channel)
      this.#positions.forget(channel)
    }
  }

  /**
   * Keeps the position a received frame carries; false for the answer to a
   * `since:now` the client added by itself for a channel without history
   * (not for the app; one answering a `since` given to `send` is the app's),
   * and for a frame seen already by its position (dropped).
   */
  receive(message: Message.Message): boolean {
    if (message._tag === "Failure") return true
    if (!this.#positions.observe(message, (channel) => this.#held.has(channel) || this.#sentTo.has(channel))) {
      return false
    }
    return !isUnasked(message, (channel) => this.#sentTo.has(channel))
  }

  /**
   * The frames that give a connection its channels: all the held ones for a
   * new connection; for a resumed one (the server kept it and its
   * subscriptions), only what changed while it was down.
   */
  again(resumed: boolean): Effect.Effect<Array<string>> {
    if (!resumed) return this.#subscribeAgain(this.#held)
    const added = Array.from(this.#held).filter((channel) => !this.#heldAtDrop.has(channel))
    const removed = Array.from(this.#heldAtDrop).filter((channel) => !this.#held.has(channel))
    return Effect.map(this.#subscribeAgain(added), (frames) => {
      if (removed.length > 0) {
        frames.push(Frame.render(Frame.make(Command.unsubscribe, { [Header.unsubscribe]: removed.join(" ") })))
      }
      return frames
    })
  }

  /** An open connection went down: what it had on the server is what is held now. */
  dropped(): void {
    this.#heldAtDrop = new Set(this.#held)
  }

  // history channels with a known position since it, one frame each; the others in one frame asking for
  // positions; a private channel in a frame of its own, with a fresh subscription token
  #subscribeAgain(channels: Iterable<string>): Effect.Effect<Array<string>> {
    const { fresh, positioned } = this.#positions.split(channels)
    const isPrivate = (channel: string) => this.#tokens.has(channel)
    const publicFresh = fresh.filter((channel) => !isPrivate(channel))
    const frames = positioned.filter(([channel]) => !isPrivate(channel)).map(([channel, since]) =>
      subscribeFrame(channel, since)
    )
    if (publicFresh.length > 0) frames.unshift(subscribeFrame(publicFresh.join(" "), sinceNow))
    const privates = [
      ...fresh.filter(isPrivate).map((channel) => [channel, sinceNow] as const),
      ...positioned.filter(([channel]) => isPrivate(channel))
    ]
    if (privates.length === 0) return Effect.succeed(frames)
    return Effect.map(
      Effect.forEach(privates, ([channel, since]) => this.#subscribePrivate(channel, since)),
      (tokened) => [...frames, ...tokened]
    )
  }
}
