/**
 * The connections of the HTTP transports: a Server-Sent Events stream, or
 * long-polls, with `POST /send` for what the peer sends. An `HttpConnection`
 * is one connection of the core (a `Transport`) that outlives the HTTP
 * requests carrying it: each frame written gets the next sequence number and
 * is kept in a bounded buffer, so that a stream that reconnects
 * (`Last-Event-ID`) or the next poll (its cursor) gets what it has not had
 * yet.
 *
 * Platform-neutral: the requests and responses are the caller's (see
 * `internal/node/httpConnections.ts`, `sse.ts` and `longPoll.ts` for Node).
 */
import { Result } from "effect"
import * as Frame from "../../Frame.ts"
import type { Inbound, Outbound, Peer, Transport } from "../../Transport.ts"
import { eventId } from "../wire/eventStream.ts"
import { secretKey } from "../wire/ids.ts"
import { Outbound as OutboundFrame } from "../wire/outbound.ts"
import { Command, PositionHeader, startLine, StreamEvent } from "../wire/protocol.ts"

/** Which HTTP transport a connection serves. */
type Kind = "sse" | "poll"

/** Where an SSE connection writes its events: a streaming response. */
export interface Sink {
  readonly write: (chunk: string) => void
  readonly end: () => void
  /** Bytes written to the response and not yet taken by the peer. */
  readonly bufferedBytes: () => number
}

/** How a poll is answered: a status and a JSON body. */
export type Reply = (status: number, body: string) => void

/** How a connection ended. */
interface Ended {
  readonly code: number
  readonly reason: string
}

/** The command of a frame's text: its start line after `LHTTP/1.0 `. */
const commandOf = (text: string): string => {
  const end = text.indexOf("\r\n")
  return text.slice(startLine.length, end === -1 ? text.length : end).replace(/[\r\n]/g, " ")
}

const lineBreak = /\r\n|\r|\n/

// a frame's event without its id, made once per frame and shared by every SSE connection it goes to
const events = new WeakMap<Outbound, string>()

/**
 * A frame as the lines of an SSE event after its `id:`: `event:` the
 * command, and one `data:` line per line of the frame (CRLF, CR or LF).
 */
export const eventOf = (frame: Outbound): string => {
  let event = events.get(frame)
  if (event === undefined) {
    event = `event: ${commandOf(frame.text)}\ndata: ${frame.text.split(lineBreak).join("\ndata: ")}\n\n`
    events.set(frame, event)
  }
  return event
}

/** A control event of the SSE stream (`connected`, `gap`, `reset`, `close`). */
export const controlEvent = (name: string, data: string): string => `event: ${name}\ndata: ${data}\n\n`

/** What a poll answers: the frames after the cursor and the next cursor. */
export const pollBody = (key: string, cursor: number, frames: ReadonlyArray<string>): string =>
  `{"connection":${JSON.stringify(key)},"cursor":${cursor},"frames":${JSON.stringify(frames)}}`

/** What a poll of a closed connection answers (410). */
export const closedBody = (key: string, ended: Ended): string =>
  JSON.stringify({ connection: key, code: ended.code, reason: ended.reason })

/** Frames with consecutive sequence numbers, the oldest dropped first, in amortised constant time. */
class Kept {
  #frames: Array<Outbound | undefined> = []
  #start = 0
  /** The sequence number of the oldest frame kept (of the next one, when none is). */
  oldest = 1
  /** The bytes of the frames kept. */
  bytes = 0

  get size(): number {
    return this.#frames.length - this.#start
  }

  push(frame: Outbound): void {
    this.#frames.push(frame)
    this.bytes += frame.bytes.length
  }

  /** The frame with sequence number `seq`, which must be kept. */
  at(seq: number): Outbound {
    return this.#frames[this.#start + seq - this.oldest]!
  }

  /** Drops the oldest frame; its size. */
  dropOldest(): number {
    const size = this.#frames[this.#start]!.bytes.length
    this.#frames[this.#start++] = undefined
    this.oldest++
    this.bytes -= size
    if (this.#start >= 1024 && this.#start * 2 >= this.#frames.length) {
      this.#frames = this.#frames.slice(this.#start)
      this.#start = 0
    }
    return size
  }
}

/** The start of a `position` frame's text (docs/history-and-presence.md). */
const positionStart = `${startLine}${Command.position}\r\n`

/**
 * The reason a `position` frame gives when the history a connection's URL
 * asked to recover passed the budget of one request (`recovered:no`).
 */
const recoveryLimitReason = "RecoveryLimit"

// the channel a position frame without a position (no history) names
const channelLine = `\r\n${PositionHeader.channel}:`
const channelOfText = (text: string): string | undefined => {
  const at = text.indexOf(channelLine)
  if (at === -1) return undefined
  const start = at + channelLine.length
  const end = text.indexOf("\r\n", start)
  return text.slice(start, end === -1 ? text.length : end)
}

// the position frame of a recovery that was cut: recovered:no with the reason, the position kept
const cutPosition = (frame: Outbound): Outbound => {
  const parsed = Frame.parse(frame.text)
  if (Result.isFailure(parsed)) return frame
  const headers = new Map(parsed.success.headers)
  headers.set(PositionHeader.recovered, "no")
  headers.delete(PositionHeader.reason)
  headers.set(PositionHeader.reason, recoveryLimitReason)
  return new OutboundFrame(Frame.render(Frame.make(parsed.success.command, headers)), frame.position)
}

interface Waiter {
  readonly reply: Reply
  readonly timer: ReturnType<typeof setTimeout>
}

/** One connection of an HTTP transport. */
export class HttpConnection implements Transport {
  readonly key = secretKey()
  readonly kind: Kind
  readonly peer: Peer
  /** The core's side, set once the server accepted the connection. */
  inbound: Inbound | undefined
  /** The last time a request of the peer ended or started (ms): an idle connection expires. */
  lastActive = Date.now()
  /** When the connection ended (ms), kept a while so that its peer learns how. */
  endedAt = 0
  /** Whether the core asked to stop reading: `POST /send` answers 429 meanwhile. */
  paused = false
  /** Whether a stream or a poll was ever attached: before, the connection lives shorter. */
  started = false
  #onDetached: ((connection: HttpConnection, detached: boolean) => void) | undefined
  #detached = false
  readonly #retain: number
  #seq = 0
  // the frames kept: SSE, written ones for a reconnect and those not written yet; poll, those not acknowledged
  readonly #kept = new Kept()
  // SSE: the last sequence number written to a sink; poll: the last one the peer acknowledged
  #delivered = 0
  #pendingBytes = 0
  #sink: Sink | undefined
  #waiter: Waiter | undefined
  #ended: Ended | undefined
  // the history channels the URL asked to recover, until their position frames came; the bytes of
  // recovered messages the request may send, and those taken (sent or waiting); each channel's
  // recovered messages waiting for its position frame, or the mark that its recovery was cut
  #recovering: Set<string> | undefined
  #recoveryBudget = 0
  #reserved = 0
  readonly #waiting = new Map<string, { frames: Array<Outbound>; bytes: number; cut: boolean }>()

  /**
   * @param retain bytes of written frames an SSE connection keeps for a
   * reconnect; a poll connection keeps what is not acknowledged, bounded by the
   * outbox
   */
  constructor(kind: Kind, peer: Peer, retain: number) {
    this.kind = kind
    this.peer = peer
    this.#retain = retain
  }

  /** The last sequence number given to a frame. */
  get sequence(): number {
    return this.#seq
  }

  /**
   * The last position of each history channel among the frames kept up to
   * sequence number `upTo` (the last one the peer had), as `<epoch>:<offset>`:
   * what a stream whose connection expired is subscribed again since.
   */
  positionsUpTo(upTo: number): Map<string, string> {
    const positions = new Map<string, string>()
    for (let seq = Math.min(upTo, this.#seq); seq >= this.#kept.oldest; seq--) {
      // the position the hub gave the frame, never one read from its text (which a publisher wrote)
      const found = this.#kept.at(seq).position
      if (found !== undefined && !positions.has(found.channel)) {
        positions.set(found.channel, `${found.epoch}:${found.offset}`)
      }
    }
    return positions
  }

  /** How the connection ended, once it has. */
  get ended(): Ended | undefined {
    return this.#ended
  }

  /** Whether a stream or a poll is attached: an attached connection does not expire. */
  get attached(): boolean {
    return this.#sink !== undefined || this.#waiter !== undefined
  }

  // ---- Transport ----

  write(frames: ReadonlyArray<Outbound>): void {
    if (this.#ended !== undefined) return
    for (let i = 0; i < frames.length; i++) {
      if (this.#recovering !== undefined) this.#recover(frames[i]!)
      else this.#keep(frames[i]!)
    }
    if (this.#sink !== undefined) this.#stream(this.#sink)
    else if (this.#waiter !== undefined) this.#answer()
  }

  bufferedBytes(): number {
    return this.#pendingBytes + (this.#sink === undefined ? 0 : this.#sink.bufferedBytes())
  }

  close(code: number, reason: string): void {
    if (this.#ended !== undefined) return
    this.#ended = { code, reason }
    this.endedAt = Date.now()
    const sink = this.#sink
    if (sink !== undefined) {
      this.#sink = undefined
      sink.write(controlEvent(StreamEvent.close, JSON.stringify(this.#ended)))
      sink.end()
    }
    // a waiting poll gets what is left, or the end
    if (this.#waiter !== undefined) this.#answer()
    this.#check()
    const inbound = this.inbound
    if (inbound !== undefined) queueMicrotask(() => inbound.closed())
  }

  isOpen(): boolean {
    return this.#ended === undefined
  }

  pause(): void {
    this.paused = true
  }

  resume(): void {
    this.paused = false
  }

  // ---- what the peer holds ----

  /** Whether the connection counts as detached: open, with no stream and no poll attached. */
  get detached(): boolean {
    return this.#detached
  }

  /**
   * Calls `listener` now and whenever the connection starts or stops counting
   * as detached (an ended connection does not count).
   */
  watch(listener: (connection: HttpConnection, detached: boolean) => void): void {
    this.#onDetached = listener
    this.#detached = false
    this.#check()
  }

  // tells the listener when whether the connection is detached changed
  #check(): void {
    const detached = this.#ended === undefined && this.#sink === undefined && this.#waiter === undefined
    if (detached === this.#detached) return
    this.#detached = detached
    this.#onDetached?.(this, detached)
  }

  /** Drops the frames kept (a peer that closed its connection will not read them). */
  forget(): void {
    while (this.#kept.size > 0) this.#kept.dropOldest()
    this.#pendingBytes = 0
  }

  // ---- recovery of the URL's history channels ----

  /**
   * The URL that opened the connection recovers `channels` since positions:
   * their recovered messages may take `budget` bytes in all. A channel's
   * messages wait for its `position` frame and go with it, whole; a channel
   * whose messages would pass the budget gets none of them, and its
   * `position` frame says `recovered:no` with the reason `RecoveryLimit`
   * (the channel stays subscribed with positions from then on).
   */
  recover(channels: Iterable<string>, budget: number): void {
    const recovering = new Set(channels)
    if (recovering.size === 0) return
    this.#recovering = recovering
    this.#recoveryBudget = budget
  }

  // a frame written while the URL's channels recover: a channel's recovered messages wait for its
  // position frame, then go with it, whole; or, past the budget, not at all (recovered:no)
  #recover(frame: Outbound): void {
    const recovering = this.#recovering!
    const isPosition = frame.text.startsWith(positionStart)
    const channel = frame.position?.channel ?? (isPosition ? channelOfText(frame.text) : undefined)
    if (channel === undefined || !recovering.has(channel)) return this.#keep(frame)
    const waiting = this.#waiting.get(channel)
    if (isPosition) {
      recovering.delete(channel)
      this.#waiting.delete(channel)
      if (recovering.size === 0) this.#recovering = undefined
      if (waiting === undefined) return this.#keep(frame)
      if (waiting.cut) return this.#keep(cutPosition(frame))
      for (const message of waiting.frames) this.#keep(message)
      return this.#keep(frame)
    }
    // a message recovered before the channel's position frame
    if (waiting?.cut === true) return
    const size = frame.bytes.length
    if (this.#reserved + size > this.#recoveryBudget) {
      if (waiting === undefined) this.#waiting.set(channel, { frames: [], bytes: 0, cut: true })
      else {
        this.#reserved -= waiting.bytes
        waiting.frames = []
        waiting.cut = true
      }
      return
    }
    this.#reserved += size
    if (waiting === undefined) this.#waiting.set(channel, { frames: [frame], bytes: size, cut: false })
    else {
      waiting.frames.push(frame)
      waiting.bytes += size
    }
  }

  #keep(frame: Outbound): void {
    this.#kept.push(frame)
    this.#seq++
    this.#pendingBytes += frame.bytes.length
  }

  // ---- SSE ----

  /**
   * Attaches a stream after the frames up to `after` (a reconnect's
   * `Last-Event-ID`), ending the one attached before. What the buffer no
   * longer holds is reported as a `gap` event, not hidden.
   */
  attach(sink: Sink, after: number): void {
    const previous = this.#sink
    this.#sink = undefined
    if (previous !== undefined) previous.end()
    this.lastActive = Date.now()
    after = Math.min(after, this.#seq)
    if (after < this.#delivered) {
      // the frames after `after` were written to the previous stream: write them again from the buffer
      const oldest = this.#kept.oldest
      if (oldest > after + 1) sink.write(controlEvent(StreamEvent.gap, `{"from":${after + 1},"to":${oldest - 1}}`))
      this.#delivered = Math.max(after, oldest - 1)
      this.#pendingBytes = 0
      for (let seq = this.#delivered + 1; seq <= this.#seq; seq++) this.#pendingBytes += this.#kept.at(seq).bytes.length
    }
    this.#sink = sink
    this.started = true
    this.#check()
    this.#stream(sink)
  }

  /** The stream went away (the peer left): the connection waits for a reconnect until it expires. */
  detach(sink: Sink): void {
    if (this.#sink !== sink) return
    this.#sink = undefined
    this.lastActive = Date.now()
    this.#check()
  }

  /** Writes a comment to the attached stream, which keeps proxies from timing it out. */
  heartbeat(): void {
    if (this.#sink !== undefined) this.#sink.write(":\n\n")
  }

  #stream(sink: Sink): void {
    if (this.#delivered === this.#seq) return
    let chunk = ""
    for (let seq = this.#delivered + 1; seq <= this.#seq; seq++) {
      chunk += `id: ${eventId(this.key, seq)}\n${eventOf(this.#kept.at(seq))}`
    }
    this.#delivered = this.#seq
    this.#pendingBytes = 0
    sink.write(chunk)
    // what was written is kept for a reconnect, up to the bound, oldest dropped first
    while (this.#kept.bytes > this.#retain && this.#kept.size > 0) this.#kept.dropOldest()
  }

  // ---- long-poll ----

  /**
   * A poll with the cursor of the last frame the peer has: the frames up to
   * it are acknowledged (dropped); those after it are answered now, or as
   * soon as there are any, or an empty list after `timeout` ms. A poll that
   * comes while another waits answers the earlier one at once.
   */
  poll(cursor: number, reply: Reply, timeout: number): void {
    this.lastActive = Date.now()
    while (this.#kept.size > 0 && this.#kept.oldest <= cursor) this.#pendingBytes -= this.#kept.dropOldest()
    if (cursor > this.#delivered) this.#delivered = cursor
    const previous = this.#waiter
    if (previous !== undefined) {
      this.#waiter = undefined
      clearTimeout(previous.timer)
      previous.reply(200, pollBody(this.key, cursor, []))
    }
    const timer = setTimeout(() => {
      if (this.#waiter?.timer !== timer) return
      this.#waiter = undefined
      this.lastActive = Date.now()
      reply(200, pollBody(this.key, cursor, []))
      this.#check()
    }, timeout)
    this.#waiter = { reply, timer }
    this.started = true
    this.#check()
    if (this.#kept.size > 0 || this.#ended !== undefined) this.#answer()
  }

  /** The waiting poll's request went away. */
  abandon(reply: Reply): void {
    if (this.#waiter?.reply !== reply) return
    clearTimeout(this.#waiter.timer)
    this.#waiter = undefined
    this.lastActive = Date.now()
    this.#check()
  }

  #answer(): void {
    const waiter = this.#waiter!
    this.#waiter = undefined
    clearTimeout(waiter.timer)
    this.lastActive = Date.now()
    if (this.#kept.size === 0) {
      // nothing left to give: how the connection ended
      waiter.reply(410, closedBody(this.key, this.#ended!))
    } else {
      const texts: Array<string> = []
      for (let seq = this.#kept.oldest; seq <= this.#seq; seq++) texts.push(this.#kept.at(seq).text)
      waiter.reply(200, pollBody(this.key, this.#seq, texts))
    }
    this.#check()
  }

  /** Ends whatever is attached, without a word: the server is gone. */
  detachAll(): void {
    const sink = this.#sink
    this.#sink = undefined
    if (sink !== undefined) sink.end()
    const waiter = this.#waiter
    this.#waiter = undefined
    if (waiter !== undefined) {
      clearTimeout(waiter.timer)
      waiter.reply(503, JSON.stringify({ connection: this.key, reason: "server shutting down" }))
    }
  }
}
