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
import { Command, Header, sinceNow } from "../wire/protocol.ts"
import { type ClientError, invalidFrame } from "./clientError.ts"

const subscribeFrame = (channels: string, since: string) =>
  Frame.render(Frame.make(Command.subscribe, { [Header.subscribe]: channels, [Header.since]: since }))

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

  /** `subscribe`: the channels are held from now on. */
  hold(channels: Iterable<string>): void {
    for (const channel of channels) this.#held.add(channel)
  }

  /** `unsubscribe`: the channels are no longer held, noted, nor positioned. */
  release(channels: Iterable<string>): void {
    for (const channel of channels) {
      this.#held.delete(channel)
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
  again(resumed: boolean): Array<string> {
    if (!resumed) return this.#subscribeAgain(this.#held)
    const added = Array.from(this.#held).filter((channel) => !this.#heldAtDrop.has(channel))
    const removed = Array.from(this.#heldAtDrop).filter((channel) => !this.#held.has(channel))
    const frames = this.#subscribeAgain(added)
    if (removed.length > 0) {
      frames.push(Frame.render(Frame.make(Command.unsubscribe, { [Header.unsubscribe]: removed.join(" ") })))
    }
    return frames
  }

  /** An open connection went down: what it had on the server is what is held now. */
  dropped(): void {
    this.#heldAtDrop = new Set(this.#held)
  }

  // history channels with a known position since it, one frame each; the others in one frame asking for positions
  #subscribeAgain(channels: Iterable<string>): Array<string> {
    const { fresh, positioned } = this.#positions.split(channels)
    const frames = positioned.map(([channel, since]) => subscribeFrame(channel, since))
    if (fresh.length > 0) frames.unshift(subscribeFrame(fresh.join(" "), sinceNow))
    return frames
  }
}
